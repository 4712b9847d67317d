//! What a tile server serves: the [`TileSource`] trait, and the store's
//! vector tiles ([`crate::Tiler`]) as sources: every layer as source
//! `wangge`, and each layer alone as a source named after it (martin's one
//! source per table), all sharing one loaded tiler.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use wangge_engine::store::AnyStore;

use crate::{Changes, FieldType, TileCoord, Tiler, Touched};

/// A vector layer of a tile source, as listed in TileJSON.
#[derive(Debug, Clone, Serialize)]
pub struct VectorLayer {
    /// The MVT layer name.
    pub id: String,
    /// What it holds.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// First zoom with features.
    pub minzoom: u8,
    /// Last zoom with features.
    pub maxzoom: u8,
    /// Attribute name → type (`String`, `Number`, `Boolean`).
    pub fields: BTreeMap<String, String>,
}

/// Something that makes vector tiles; the server caches, compresses and
/// serves them. Implemented for the store's tiler by [`StoreTiles`].
pub trait TileSource: Send + Sync {
    /// The source id in URLs (`/tiles/{id}/…`).
    fn id(&self) -> &str;
    /// A one-line description.
    fn description(&self) -> String {
        String::new()
    }
    /// The layers of its tiles.
    fn layers(&self) -> Vec<VectorLayer>;
    /// `[min_lon, min_lat, max_lon, max_lat]` of its data.
    fn bounds(&self) -> [f64; 4];
    /// First zoom served.
    fn minzoom(&self) -> u8;
    /// Last zoom served.
    fn maxzoom(&self) -> u8;
    /// The uncompressed MVT of tile z/x/y; empty when it has no features.
    /// Called off the async executor.
    ///
    /// # Errors
    /// Store or encoding failures (answered with a 500).
    fn tile(&self, t: TileCoord) -> Result<Vec<u8>, String>;
    /// Re-reads the grids (and their counts) of one community after an
    /// edit, and whatever else the edit may have changed; returns what
    /// changed, from which the server drops exactly the cached tiles that
    /// may differ ([`Changes::everything`] drops them all, an empty
    /// [`Changes`] none). Not called on a source that is a
    /// [`TileSource::view_of`] another.
    ///
    /// # Errors
    /// Store failures (the server then drops every cached tile).
    fn reload_grids(&self, store: &AnyStore, community: &str) -> Result<Changes, String>;
    /// After a batch of the change feed: updates what the batch touched
    /// (see [`crate::Tiler::apply_changes`]) and returns what changed. Not
    /// called on a view.
    ///
    /// # Errors
    /// Store failures (the server then drops every cached tile).
    fn apply_changes(&self, store: &AnyStore, touched: &Touched) -> Result<Changes, String>;
    /// After a write the logs do not describe (an import, a re-index of
    /// entity layers by another process): reads everything again; returns
    /// [`Changes::everything`]. Not called on a view.
    ///
    /// # Errors
    /// Store failures.
    fn reload_all(&self) -> Result<Changes, String>;
    /// The id of the source whose data this one shows part of (its
    /// [`TileSource::layers`]), when it shares that source's data: it is not
    /// reloaded itself, and that source's [`Changes`], restricted to this
    /// source's layers, decide which of its tiles are dropped. Views are
    /// listed in the catalog but left out of `/style.json`, which draws the
    /// full sources.
    fn view_of(&self) -> Option<&str> {
        None
    }
}

/// Vector tiles of a store: all its layers (source `wangge`), or one layer
/// (a *view*, source id = the layer name) of the same loaded tiler.
#[derive(Debug)]
pub struct StoreTiles {
    // Written only by `reload_grids` after an edit; tiles read it. Views
    // share their main source's.
    tiler: Arc<RwLock<Tiler>>,
    /// The one layer of a view; `None` for the main source.
    layer: Option<String>,
}

impl StoreTiles {
    /// The id of the source of every layer.
    pub const ID: &'static str = "wangge";

    /// Loads the store's tile layers into memory as the main source.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open(store: &Path) -> Result<StoreTiles, crate::TilerError> {
        StoreTiles::open_with(store, crate::TilerOptions::default())
    }

    /// [`StoreTiles::open`] with tiler options (the privacy rule).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open_with(
        store: &Path,
        options: crate::TilerOptions,
    ) -> Result<StoreTiles, crate::TilerError> {
        Ok(StoreTiles {
            tiler: Arc::new(RwLock::new(Tiler::open_with(store, options)?)),
            layer: None,
        })
    }

    /// One source per layer, each encoding only its layer from this
    /// source's tiler (nothing is loaded again; an edit reloaded through
    /// this source shows in them too).
    #[must_use]
    pub fn layer_views(&self) -> Vec<StoreTiles> {
        self.read()
            .layers()
            .iter()
            .map(|l| StoreTiles {
                tiler: Arc::clone(&self.tiler),
                layer: Some(l.name.clone()),
            })
            .collect()
    }

    /// What loading skipped.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.read().warnings().to_vec()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tiler> {
        self.tiler.read().unwrap_or_else(|p| p.into_inner())
    }

    fn infos(&self) -> Vec<crate::LayerInfo> {
        self.read()
            .layers()
            .iter()
            .filter(|l| self.layer.as_ref().is_none_or(|x| *x == l.name))
            .cloned()
            .collect()
    }
}

impl TileSource for StoreTiles {
    fn id(&self) -> &str {
        self.layer.as_deref().unwrap_or(Self::ID)
    }

    fn description(&self) -> String {
        match &self.layer {
            None => "Districts, streets, communities, grids, roads, buildings, places, objects, events, organizations; persons only as counts per hexagon".into(),
            Some(_) => self
                .infos()
                .first()
                .map(|l| l.description.clone())
                .unwrap_or_default(),
        }
    }

    fn layers(&self) -> Vec<VectorLayer> {
        self.infos()
            .into_iter()
            .map(|l| VectorLayer {
                id: l.name,
                description: l.description,
                minzoom: l.minzoom,
                maxzoom: l.maxzoom,
                fields: l
                    .fields
                    .into_iter()
                    .map(|(k, t)| {
                        let t = match t {
                            FieldType::String => "String",
                            FieldType::Number => "Number",
                        };
                        (k, t.to_owned())
                    })
                    .collect(),
            })
            .collect()
    }

    fn bounds(&self) -> [f64; 4] {
        let t = self.read();
        match &self.layer {
            None => t.bounds(),
            Some(l) => t.layer_bounds(l).unwrap_or_else(|| t.bounds()),
        }
    }

    fn minzoom(&self) -> u8 {
        match &self.layer {
            None => self.read().minzoom(),
            Some(_) => self.infos().first().map_or(0, |l| l.minzoom),
        }
    }

    fn maxzoom(&self) -> u8 {
        match &self.layer {
            None => self.read().maxzoom(),
            Some(_) => self
                .infos()
                .first()
                .map_or(crate::source::MAX_ZOOM, |l| l.maxzoom),
        }
    }

    fn tile(&self, t: TileCoord) -> Result<Vec<u8>, String> {
        // The address is validated already: encode directly.
        Ok(self.read().encode_only(t, self.layer.as_deref()))
    }

    fn reload_grids(&self, store: &AnyStore, community: &str) -> Result<Changes, String> {
        if self.layer.is_some() {
            // The main source reloads the shared tiler.
            return Ok(Changes::default());
        }
        self.tiler
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reload_grids(store, community)
            .map_err(|e| e.to_string())
    }

    fn apply_changes(&self, store: &AnyStore, touched: &Touched) -> Result<Changes, String> {
        if self.layer.is_some() {
            return Ok(Changes::default());
        }
        self.tiler
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply_changes(store, touched)
            .map_err(|e| e.to_string())
    }

    fn reload_all(&self) -> Result<Changes, String> {
        if self.layer.is_some() {
            return Ok(Changes::default());
        }
        let (path, options) = {
            let t = self.read();
            (t.path().to_owned(), t.options())
        };
        // Read outside the lock: tiles keep being served meanwhile.
        let fresh = Tiler::open_with(&path, options).map_err(|e| e.to_string())?;
        *self.tiler.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(Changes::everything())
    }

    fn view_of(&self) -> Option<&str> {
        self.layer.as_ref().map(|_| Self::ID)
    }
}
