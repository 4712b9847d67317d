//! A store on either backend, and the copy of a whole store between them.
//!
//! [`AnyStore`] opens a GeoPackage path or a PostgreSQL URL and offers what
//! both backends share: the layers, their schemas, counts and features, the
//! project metadata and the version tables. [`copy`] moves a whole store
//! from one to the other (or to another store of the same kind), keeping
//! every layer with its columns, every fid, the metadata, versions and
//! locks.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use geo_types::{Geometry, Rect};

use crate::codes::{AdminCode, CommunityCode, GridCode};
use crate::model::Layer;
use crate::postgis::{PgLayerWriter, PgStore, is_postgres_url};
use crate::versions::{Tx, VersionContents, VersionInfo};
use crate::{
    AdminCounts, BuildingCounts, Feature, LayerInfo, LayerSchema, LayerWriter, Selection, Store,
    StoreError, Value,
};

/// The metadata key counting writes that record neither a version nor a
/// change ([`AnyStore::note_unlogged_write`]).
pub const WRITE_GENERATION: &str = "write_generation";

/// Calls the same method on whichever backend `$self` is.
macro_rules! both {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Gpkg($s) => $call,
            AnyStore::Postgis($s) => $call,
        }
    };
    ($self:expr, $s:ident => $call:expr, AnyWriter) => {
        match $self {
            AnyWriter::Gpkg($s) => $call,
            AnyWriter::Pg($s) => $call,
        }
    };
}

/// A store on one of the two backends.
#[derive(Debug)]
pub enum AnyStore {
    /// A GeoPackage file.
    Gpkg(Store),
    /// A PostgreSQL + PostGIS database.
    Postgis(Box<PgStore>),
}

impl AnyStore {
    /// Opens the store at `location`: a PostgreSQL URL (`postgres://…`) or
    /// a GeoPackage path.
    pub fn open(location: &Path) -> Result<AnyStore, StoreError> {
        match url(location) {
            Some(u) => PgStore::open(&u).map(|p| AnyStore::Postgis(Box::new(p))),
            None => Store::open(location).map(AnyStore::Gpkg),
        }
    }

    /// Creates a new, empty store at `location` (a new GeoPackage file, or
    /// an empty PostgreSQL database made a store).
    pub fn create(location: &Path) -> Result<AnyStore, StoreError> {
        match url(location) {
            Some(u) => PgStore::create(&u).map(|p| AnyStore::Postgis(Box::new(p))),
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
        bbox: Option<Rect<f64>>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let bbox = bbox.map(corners);
        match self {
            AnyStore::Gpkg(s) => s.for_each_in(layer, bbox, f),
            AnyStore::Postgis(p) => p.for_each_in(layer, bbox, f),
        }
    }

    /// Like [`AnyStore::for_each_in`], but [`Feature::values`] holds the
    /// named `columns` (NULL for one the layer lacks).
    pub fn for_each_columns(
        &self,
        layer: &str,
        columns: &[&str],
        bbox: Option<Rect<f64>>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        both!(self, s => s.for_each_columns(layer, columns, bbox.map(corners), f))
    }

    /// A number that changes whenever another process commits a write a
    /// server must follow: SQLite's `PRAGMA data_version` on a GeoPackage,
    /// the position of the last recorded version on PostgreSQL.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.data_version(),
            // The logs and the count of other writes only grow, so their
            // sum changes with any of them.
            AnyStore::Postgis(p) => {
                Ok(p.last_version_position()? + p.last_change_seq()? + self.write_generation()?)
            }
        }
    }

    /// How many writes that record neither a version nor a change (see
    /// [`AnyStore::note_unlogged_write`]) the store has seen.
    pub fn write_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .meta(WRITE_GENERATION)?
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// After a write that records neither a version nor a change (an
    /// import, a re-index of entity layers): counts it in the metadata, so
    /// that servers on the store notice and read it again whole; on
    /// PostgreSQL with a NOTIFY.
    pub fn note_unlogged_write(&mut self) -> Result<(), StoreError> {
        let n = self.write_generation()? + 1;
        self.set_meta(WRITE_GENERATION, &n.to_string())?;
        if let AnyStore::Postgis(p) = self {
            p.execute(&format!("NOTIFY {}, 'write'", crate::postgis::CHANNEL))?;
        }
        Ok(())
    }

    /// Applies one batch of the change feed in one transaction (see
    /// [`crate::changes`]): one outcome per change, in order.
    ///
    /// # Errors
    /// Store errors; nothing of the batch is written then.
    pub fn apply_changes(
        &mut self,
        at: &str,
        changes: &[crate::changes::EntityChange],
        cell_of: &dyn Fn(f64, f64) -> Option<i64>,
    ) -> Result<Vec<crate::changes::Outcome>, StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.apply_changes(at, changes, cell_of),
            AnyStore::Postgis(p) => p.apply_changes(at, changes, cell_of),
        }
    }

    /// The position of the last change in the change log (0 without one).
    pub fn last_change_seq(&self) -> Result<i64, StoreError> {
        both!(self, s => s.last_change_seq())
    }

    /// The changes logged after position `after`, in order, at most `limit`.
    pub fn changes_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::changes::LoggedChange>, StoreError> {
        both!(self, s => s.changes_after(after, limit))
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

impl AnyStore {
    /// Whether a feature layer of this name exists.
    pub fn has_layer(&self, name: &str) -> Result<bool, StoreError> {
        both!(self, s => s.has_layer(name))
    }

    /// True when `layer` exists and holds at least one feature.
    pub fn has_features(&self, layer: &str) -> Result<bool, StoreError> {
        both!(self, s => s.has_features(layer))
    }

    /// Every selected feature of `layer` in fid order, with its geometry
    /// and the values of `columns` (see [`Store::read_features`]).
    pub fn read_features<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        f: impl FnMut(i64, Option<Result<Geometry<f64>, String>>, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        both!(self, s => s.read_features(layer, columns, selection, f))
    }

    /// Like [`AnyStore::read_features`] without the geometries.
    pub fn read_rows<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        f: impl FnMut(i64, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        both!(self, s => s.read_rows(layer, columns, selection, f))
    }

    /// The box of the district, street, community or grid with `code`
    /// (from its level's layer), through the spatial index; `None` when
    /// the store has no such unit.
    pub fn bbox_of(&self, code: AdminCode) -> Result<Option<Rect<f64>>, StoreError> {
        let layer = match code {
            AdminCode::District(_) => Layer::Districts,
            AdminCode::Street(_) => Layer::Streets,
            AdminCode::Community(_) => Layer::Communities,
            AdminCode::Grid(_) => Layer::Grids,
        };
        both!(self, s => s.bbox_of(layer, &code.to_string()))
    }

    /// How many features of `layer` have each value of `column`, within
    /// `region` when given.
    pub fn count_values(
        &self,
        layer: Layer,
        column: &str,
        region: Option<Rect<f64>>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        both!(self, s => s.count_values(layer, column, region))
    }

    /// The codes of the features of `layer` whose box meets `bbox`.
    pub fn codes_in(&self, layer: Layer, bbox: Rect<f64>) -> Result<Vec<String>, StoreError> {
        both!(self, s => s.codes_in(layer, bbox))
    }

    /// A community's grids as stored, `(code, geometry)` in code order.
    pub fn grids_of(
        &self,
        community: CommunityCode,
    ) -> Result<Vec<(String, Geometry<f64>)>, StoreError> {
        both!(self, s => s.grids_of(&community.to_string()))
    }

    /// The `grid_code` of features of `layer` by fid, in the order given.
    pub fn grid_codes(
        &self,
        layer: Layer,
        fids: &[i64],
    ) -> Result<Vec<Option<String>>, StoreError> {
        both!(self, s => s.grid_codes(layer, fids))
    }

    /// `code, parent_code, households, persons` of the units of admin
    /// `layer` (districts, streets, communities, grids) that `selection`
    /// picks, in code order; empty when the layer is absent or has no
    /// `code`. A missing column or NULL reads as none (parent) or 0
    /// (counts), so a foreign store publishes nothing it cannot vouch for.
    pub fn admin_counts(
        &self,
        layer: Layer,
        selection: Selection<'_>,
    ) -> Result<Vec<AdminCounts>, StoreError> {
        let name = layer.name();
        if !self.has_layer(name)? || !self.schema(name)?.columns.iter().any(|c| c.name == "code") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let cols = ["code", "parent_code", "households", "persons"];
        self.read_rows(name, &cols, selection, |_, v| {
            if let Some(code) = code_text(&v[0]) {
                out.push(AdminCounts {
                    code,
                    parent: code_text(&v[1]),
                    households: v[2].as_i64().unwrap_or(0),
                    persons: v[3].as_i64().unwrap_or(0),
                });
            }
            Ok::<(), StoreError>(())
        })?;
        out.sort_by(|a, b| a.code.cmp(&b.code));
        Ok(out)
    }

    /// `fid, grid_code, community_code, households` of the buildings that
    /// `selection` picks, in fid order; empty without a `buildings` layer.
    pub fn building_counts(
        &self,
        selection: Selection<'_>,
    ) -> Result<Vec<BuildingCounts>, StoreError> {
        let name = Layer::Buildings.name();
        if !self.has_layer(name)? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let cols = ["grid_code", "community_code", "households"];
        self.read_rows(name, &cols, selection, |fid, v| {
            out.push(BuildingCounts {
                fid,
                grid_code: code_text(&v[0]),
                community_code: code_text(&v[1]),
                households: v[2].as_i64().unwrap_or(0),
            });
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// How many of the features of `layer` that `selection` picks have
    /// each (non-empty) value of the code column `column`.
    pub fn count_codes(
        &self,
        layer: Layer,
        column: &str,
        selection: Selection<'_>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let mut out: HashMap<String, u32> = HashMap::new();
        if !self.has_layer(layer.name())? {
            return Ok(out);
        }
        self.read_rows(layer.name(), &[column], selection, |_, v| {
            if let Some(code) = code_text(&v[0]) {
                *out.entry(code).or_default() += 1;
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// Rewrites `columns` of every feature of a point layer from its
    /// position, `chunk` features at a time, in one transaction (see
    /// [`Store::update_from_points`], [`PgStore::update_from_points`]).
    pub fn update_from_points(
        &mut self,
        layer: &str,
        columns: &[&str],
        chunk: usize,
        f: impl FnMut(&[(i64, f64, f64)]) -> Vec<Vec<Value>>,
    ) -> Result<u64, StoreError> {
        both!(self, s => s.update_from_points(layer, columns, chunk, f))
    }

    /// The latest version of a community (0 when it has none).
    pub fn latest_version(&self, community: CommunityCode) -> Result<i64, StoreError> {
        both!(self, s => s.latest_version(&community.to_string()))
    }

    /// The locked grids of a community.
    pub fn locks(&self, community: CommunityCode) -> Result<HashSet<String>, StoreError> {
        both!(self, s => s.locks(&community.to_string()))
    }

    /// True when the grid is locked.
    pub fn is_locked(&self, grid: GridCode) -> Result<bool, StoreError> {
        both!(self, s => s.is_locked(&grid.to_string()))
    }

    /// The position of the last recorded version in the store's log.
    pub fn last_version_position(&self) -> Result<i64, StoreError> {
        both!(self, s => s.last_version_position())
    }

    /// The versions recorded after log position `after`.
    pub fn versions_after(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        both!(self, s => s.versions_after(after))
    }

    /// Every grid code a community ever had in a recorded version.
    pub fn past_grid_codes(&self, community: CommunityCode) -> Result<Vec<String>, StoreError> {
        both!(self, s => s.past_grid_codes(&community.to_string()))
    }

    /// The versions of one community (or of all), newest first.
    pub fn history(
        &self,
        community: Option<CommunityCode>,
        limit: usize,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        let community = community.map(|c| c.to_string());
        both!(self, s => s.history(community.as_deref(), limit))
    }

    /// The grids and buildings of one version of a community.
    pub fn version(
        &self,
        community: CommunityCode,
        version: i64,
    ) -> Result<VersionContents, StoreError> {
        both!(self, s => s.version(&community.to_string(), version))
    }

    /// Prepares this connection for [`AnyStore::wait_for_change`]
    /// (PostgreSQL: `LISTEN`).
    pub fn listen(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Gpkg(_) => Ok(()),
            AnyStore::Postgis(p) => p.listen(),
        }
    }

    /// Waits up to `timeout` for a sign that another process wrote:
    /// a PostgreSQL notice (returning early), or just the time on a
    /// GeoPackage, which has no notices (poll [`AnyStore::data_version`]).
    pub fn wait_for_change(&self, timeout: std::time::Duration) -> Result<(), StoreError> {
        match self {
            AnyStore::Gpkg(_) => {
                std::thread::sleep(timeout);
                Ok(())
            }
            AnyStore::Postgis(p) => p.wait_for_notice(timeout).map(drop),
        }
    }

    /// Whether the connection is gone and the store must be opened again
    /// (a PostgreSQL server restarted); a GeoPackage never is.
    pub fn is_broken(&self) -> bool {
        match self {
            AnyStore::Gpkg(_) => false,
            AnyStore::Postgis(p) => p.is_closed(),
        }
    }
}

/// A writer into one layer of either backend: one transaction, committed
/// by [`AnyWriter::commit`], rolled back when dropped.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per write, never in a collection
pub enum AnyWriter<'a> {
    /// A GeoPackage writer.
    Gpkg(LayerWriter<'a>),
    /// A PostgreSQL writer.
    Pg(PgLayerWriter<'a>),
}

impl AnyWriter<'_> {
    /// Inserts one feature and returns its fid (see [`LayerWriter::insert`]).
    pub fn insert(
        &mut self,
        geometry: &Geometry<f64>,
        values: &[Value],
    ) -> Result<i64, StoreError> {
        both!(self, w => w.insert(geometry, values), AnyWriter)
    }

    /// The other statements of this writer's transaction.
    pub fn tx(&self) -> Tx<'_> {
        both!(self, w => w.tx(), AnyWriter)
    }

    /// Number of features inserted so far.
    pub fn rows(&self) -> u64 {
        both!(self, w => w.rows(), AnyWriter)
    }

    /// Commits everything written; returns the number of features.
    pub fn commit(self) -> Result<u64, StoreError> {
        both!(self, w => w.commit(), AnyWriter)
    }
}

impl AnyStore {
    /// Creates the version and lock tables when missing (a PostgreSQL
    /// store has them from the start).
    pub fn ensure_version_tables(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Gpkg(s) => s.ensure_version_tables(),
            AnyStore::Postgis(_) => Ok(()),
        }
    }

    /// Creates an empty feature layer.
    pub fn create_layer(&mut self, schema: &LayerSchema) -> Result<(), StoreError> {
        both!(self, s => s.create_layer(schema))
    }

    /// A writer for the columns of `schema`, carrying the table's other
    /// columns over by `carry_key` (see [`Store::writer_for`]).
    pub fn writer_for(
        &mut self,
        schema: &LayerSchema,
        carry_key: Option<&str>,
    ) -> Result<AnyWriter<'_>, StoreError> {
        Ok(match self {
            AnyStore::Gpkg(s) => AnyWriter::Gpkg(s.writer_for(schema, carry_key)?),
            AnyStore::Postgis(p) => AnyWriter::Pg(p.writer_for(schema, carry_key)?),
        })
    }

    /// A writer for every column of `layer`, in table order (see
    /// [`Store::writer`]).
    pub fn writer(&mut self, layer: &str) -> Result<AnyWriter<'_>, StoreError> {
        Ok(match self {
            AnyStore::Gpkg(s) => AnyWriter::Gpkg(s.writer(layer)?),
            AnyStore::Postgis(p) => AnyWriter::Pg(p.writer(layer)?),
        })
    }

    /// Sets a project metadata entry.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        both!(self, s => s.set_meta(key, value))
    }
}

/// The reads every backend offers, for code that takes either a
/// GeoPackage [`Store`], a [`PgStore`] or an [`AnyStore`].
pub trait Reads {
    /// The schema of one layer.
    fn schema(&self, layer: &str) -> Result<LayerSchema, StoreError>;
    /// Whether a feature layer of this name exists.
    fn has_layer(&self, name: &str) -> Result<bool, StoreError>;
    /// The features of `layer` meeting `bbox` (all without), in fid order,
    /// with the values of the named `columns`.
    fn for_each_columns(
        &self,
        layer: &str,
        columns: &[&str],
        bbox: Option<Rect<f64>>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError>;
    /// The selected rows of `layer` in fid order, without geometries.
    fn read_rows<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        f: impl FnMut(i64, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E>;
}

macro_rules! reads {
    ($($t:ty => $bbox:path),*) => {$(
        impl Reads for $t {
            fn schema(&self, layer: &str) -> Result<LayerSchema, StoreError> {
                <$t>::schema(self, layer)
            }
            fn has_layer(&self, name: &str) -> Result<bool, StoreError> {
                <$t>::has_layer(self, name)
            }
            fn for_each_columns(
                &self,
                layer: &str,
                columns: &[&str],
                bbox: Option<Rect<f64>>,
                f: impl FnMut(Feature) -> Result<(), StoreError>,
            ) -> Result<u64, StoreError> {
                <$t>::for_each_columns(self, layer, columns, bbox.map($bbox), f)
            }
            fn read_rows<E: From<StoreError>>(
                &self,
                layer: &str,
                columns: &[&str],
                selection: Selection<'_>,
                f: impl FnMut(i64, &[Value]) -> Result<(), E>,
            ) -> Result<u64, E> {
                <$t>::read_rows(self, layer, columns, selection, f)
            }
        }
    )*};
}

reads!(Store => corners, PgStore => corners, AnyStore => std::convert::identity);

/// `[west, south, east, north]` of a box, as the backends take it.
fn corners(r: Rect<f64>) -> [f64; 4] {
    [r.min().x, r.min().y, r.max().x, r.max().y]
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

/// A code column's value as text: none for NULL or empty, and an integer
/// (a column retyped by QGIS) in decimal.
fn code_text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) if !s.is_empty() => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}
