//! The store's vector tiles ([`wangge_tiler::Tiler`]) as [`TileSource`]s:
//! every layer as source `wangge`, and each layer alone as a source named
//! after it (martin's one source per table), all sharing one loaded tiler.

use std::path::Path;
use std::sync::{Arc, RwLock};

use wangge_engine::store::Store;
use wangge_tiler::{Changes, FieldType, Tiler};

use super::tiles::{TileSource, VectorLayer};

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
    pub fn open(store: &Path) -> Result<StoreTiles, wangge_tiler::TilerError> {
        StoreTiles::open_with(store, wangge_tiler::TilerOptions::default())
    }

    /// [`StoreTiles::open`] with tiler options (the privacy rule).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open_with(
        store: &Path,
        options: wangge_tiler::TilerOptions,
    ) -> Result<StoreTiles, wangge_tiler::TilerError> {
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

    fn infos(&self) -> Vec<wangge_tiler::LayerInfo> {
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
                .map_or(wangge_tiler::source::MAX_ZOOM, |l| l.maxzoom),
        }
    }

    fn tile(&self, z: u8, x: u32, y: u32) -> Result<Vec<u8>, String> {
        let t = self.read();
        match &self.layer {
            None => t.tile(z, x, y),
            Some(l) => t.tile_layer(z, x, y, l),
        }
        .map_err(|e| e.to_string())
    }

    fn reload_grids(&self, store: &Store, community: &str) -> Result<Changes, String> {
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

    fn view_of(&self) -> Option<&str> {
        self.layer.as_ref().map(|_| Self::ID)
    }
}
