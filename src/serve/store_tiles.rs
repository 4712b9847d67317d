//! The store's vector tiles ([`wangge_tiler::Tiler`]) as a [`TileSource`].

use std::path::Path;
use std::sync::RwLock;

use wangge_engine::store::Store;
use wangge_tiler::{FieldType, Tiler};

use super::tiles::{TileSource, VectorLayer};

/// Every layer of a store as one tile source, `wangge`.
#[derive(Debug)]
pub struct StoreTiles {
    // Written only by `reload_grids` after an edit; tiles read it.
    tiler: RwLock<Tiler>,
}

impl StoreTiles {
    /// The source id.
    pub const ID: &'static str = "wangge";

    /// Loads the store's tile layers into memory.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn open(store: &Path) -> Result<StoreTiles, wangge_tiler::TilerError> {
        Ok(StoreTiles {
            tiler: RwLock::new(Tiler::open(store)?),
        })
    }

    /// What loading skipped.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.read().warnings().to_vec()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tiler> {
        self.tiler.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl TileSource for StoreTiles {
    fn id(&self) -> &str {
        Self::ID
    }

    fn description(&self) -> String {
        "Districts, streets, communities, grids, roads, buildings, places, objects, events, organizations; persons only as counts per hexagon".into()
    }

    fn layers(&self) -> Vec<VectorLayer> {
        self.read()
            .layers()
            .iter()
            .map(|l| VectorLayer {
                id: l.name.clone(),
                description: l.description.clone(),
                minzoom: l.minzoom,
                maxzoom: l.maxzoom,
                fields: l
                    .fields
                    .iter()
                    .map(|(k, t)| {
                        let t = match t {
                            FieldType::String => "String",
                            FieldType::Number => "Number",
                        };
                        (k.clone(), t.to_owned())
                    })
                    .collect(),
            })
            .collect()
    }

    fn bounds(&self) -> [f64; 4] {
        self.read().bounds()
    }

    fn minzoom(&self) -> u8 {
        self.read().minzoom()
    }

    fn maxzoom(&self) -> u8 {
        self.read().maxzoom()
    }

    fn tile(&self, z: u8, x: u32, y: u32) -> Result<Vec<u8>, String> {
        self.read().tile(z, x, y).map_err(|e| e.to_string())
    }

    fn reload_grids(&self, store: &Store, community: &str) -> Result<(), String> {
        self.tiler
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reload_grids(store, community)
            .map_err(|e| e.to_string())
    }
}
