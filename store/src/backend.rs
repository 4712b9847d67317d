//! A store on either backend, and the copy of a whole store between them.
//!
//! [`AnyStore`] opens a GeoPackage path or a PostgreSQL URL and offers what
//! both backends share: the layers, their schemas, counts and features, the
//! project metadata and the version tables. [`copy`] moves a whole store
//! from one to the other (or to another store of the same kind), keeping
//! every layer with its columns, every fid, the metadata, versions and
//! locks.

use std::path::Path;

use crate::postgis::{PgStore, is_postgres_url};
use crate::{Feature, LayerInfo, LayerSchema, Store, StoreError};

/// A store on one of the two backends.
#[derive(Debug)]
pub enum AnyStore {
    /// A GeoPackage file.
    Gpkg(Store),
    /// A PostgreSQL + PostGIS database.
    Postgis(PgStore),
}

impl AnyStore {
    /// Opens the store at `location`: a PostgreSQL URL (`postgres://…`) or
    /// a GeoPackage path.
    pub fn open(location: &Path) -> Result<AnyStore, StoreError> {
        match url(location) {
            Some(u) => PgStore::open(&u).map(AnyStore::Postgis),
            None => Store::open(location).map(AnyStore::Gpkg),
        }
    }

    /// Creates a new, empty store at `location` (a new GeoPackage file, or
    /// an empty PostgreSQL database made a store).
    pub fn create(location: &Path) -> Result<AnyStore, StoreError> {
        match url(location) {
            Some(u) => PgStore::create(&u).map(AnyStore::Postgis),
            None => Store::create(location).map(AnyStore::Gpkg),
        }
    }

    /// Where the store is, for messages (a URL without its password).
    pub fn location(&self) -> String {
        match self {
            AnyStore::Gpkg(s) => s.path().display().to_string(),
            AnyStore::Postgis(p) => p.url().to_owned(),
        }
    }

    /// Every feature layer with its type, count and extent, sorted by name.
    pub fn layers(&self) -> Result<Vec<LayerInfo>, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.layers(),
            AnyStore::Postgis(p) => p.layers(),
        }
    }

    /// The schema of one layer, every column of its table included.
    pub fn schema(&self, layer: &str) -> Result<LayerSchema, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.schema(layer),
            AnyStore::Postgis(p) => p.schema(layer),
        }
    }

    /// Number of features in one layer.
    pub fn count(&self, layer: &str) -> Result<u64, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.count(layer),
            AnyStore::Postgis(p) => p.count(layer),
        }
    }

    /// Calls `f` with every feature of `layer` in ascending fid order.
    pub fn for_each(
        &self,
        layer: &str,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.for_each(layer, f),
            AnyStore::Postgis(p) => p.for_each(layer, f),
        }
    }

    /// Calls `f` with the features of `layer` whose bounding box meets
    /// `bbox`, through the spatial index, in ascending fid order.
    pub fn for_each_in(
        &self,
        layer: &str,
        bbox: Option<[f64; 4]>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.for_each_in(layer, bbox, f),
            AnyStore::Postgis(p) => p.for_each_in(layer, bbox, f),
        }
    }

    /// Every project metadata entry, sorted by key.
    pub fn meta_entries(&self) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.meta_entries(),
            AnyStore::Postgis(p) => p.meta_entries(),
        }
    }

    /// A project metadata entry.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.meta(key),
            AnyStore::Postgis(p) => p.meta(key),
        }
    }

    /// Every row of the version and lock tables.
    pub fn dump_versions(&self) -> Result<crate::versions::VersionDump, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.dump_versions(),
            AnyStore::Postgis(p) => p.dump_versions(),
        }
    }
}

/// The URL in a store argument, if it is one.
fn url(location: &Path) -> Option<String> {
    let s = location.to_string_lossy();
    is_postgres_url(&s).then(|| s.into_owned())
}

/// What [`copy`] moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Each layer and its number of features, by name.
    pub layers: Vec<(String, u64)>,
    /// Metadata entries.
    pub meta: usize,
    /// Recorded versions.
    pub versions: usize,
    /// Locked grids.
    pub locks: usize,
}

/// Copies every layer (all columns, fids kept), the metadata, the versions
/// and the locks of `from` into `to`, which must be new (no layers).
/// `progress` hears each layer's name before it is copied and every
/// 10,000 features.
///
/// Each layer is one transaction on `to`; on an error the layers copied so
/// far stay, and the error names the layer and feature.
pub fn copy(
    from: &AnyStore,
    to: &mut AnyStore,
    mut progress: impl FnMut(&str, u64),
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    if !to.layers()?.is_empty() {
        return Err(StoreError::Unsupported {
            what: format!(
                "{} already has layers; a copy goes into a new store",
                to.location()
            ),
        });
    }
    for info in from.layers()? {
        let schema = from.schema(&info.name)?;
        let name = info.name.as_str();
        progress(name, 0);
        let mut n = 0u64;
        let mut tick = |n: &mut u64| {
            *n += 1;
            if (*n).is_multiple_of(10_000) {
                progress(name, *n);
            }
        };
        match to {
            AnyStore::Gpkg(t) => {
                t.create_layer(&schema)?;
                let mut w = t.writer_keeping_fids(name)?;
                from.for_each(name, |f| {
                    w.insert_with_fid(f.fid, &f.geometry, &f.values)?;
                    tick(&mut n);
                    Ok(())
                })?;
                w.commit()?;
            }
            AnyStore::Postgis(t) => {
                t.create_layer(&schema)?;
                let mut w = t.writer(name)?;
                from.for_each(name, |f| {
                    w.insert_with_fid(f.fid, &f.geometry, &f.values)?;
                    tick(&mut n);
                    Ok(())
                })?;
                w.commit()?;
            }
        }
        progress(name, n);
        report.layers.push((info.name, n));
    }
    let meta = from.meta_entries()?;
    let dump = from.dump_versions()?;
    match to {
        AnyStore::Gpkg(t) => {
            for (k, v) in &meta {
                t.set_meta(k, v)?;
            }
            if dump != Default::default() {
                t.load_versions(&dump)?;
            }
        }
        AnyStore::Postgis(t) => {
            for (k, v) in &meta {
                t.set_meta(k, v)?;
            }
            t.load_versions(&dump)?;
        }
    }
    report.meta = meta.len();
    report.versions = dump.versions.len();
    report.locks = dump.locks.len();
    Ok(report)
}
