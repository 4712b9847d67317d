//! The project store: one GeoPackage file that QGIS and GDAL open directly.
//!
//! A project is a single SQLite file laid out as an OGC GeoPackage 1.3.1
//! (OGC 12-128r18): the `gpkg_*` metadata tables, one feature table per
//! layer (`fid INTEGER PRIMARY KEY AUTOINCREMENT`, a `geom` column holding
//! GeoPackage geometry blobs, then typed attribute columns) and an R-tree
//! spatial index per layer kept current by the standard triggers of the
//! `gpkg_rtree_index` extension. All geometries are WGS 84 longitude/latitude
//! (`srs_id` 4326).
//!
//! The rollback journal is used (never WAL), so the file is always
//! self-contained and a crash in the middle of a write leaves the state of the
//! last commit.
//!
//! ```no_run
//! use geo_types::{Geometry, point};
//! use wangge_store::{Column, ColumnType, GeomType, LayerSchema, Store, Value};
//!
//! let mut store = Store::create("city.gpkg".as_ref())?;
//! store.create_layer(&LayerSchema {
//!     name: "buildings".into(),
//!     geometry: GeomType::Point,
//!     columns: vec![Column { name: "floors".into(), ty: ColumnType::Integer }],
//! })?;
//! let mut writer = store.writer("buildings")?;
//! writer.insert(&Geometry::Point(point!(x: 116.39, y: 39.91)), &[Value::from(12)])?;
//! writer.commit()?;
//! # Ok::<(), wangge_store::StoreError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Statement, ToSql, Transaction};
use serde::{Deserialize, Serialize};

use crate::model::Layer;

/// SQLite `application_id` of a GeoPackage: `"GPKG"` in ASCII.
pub const APPLICATION_ID: i32 = 0x4750_4B47;

/// SQLite `user_version` written to new files: GeoPackage 1.3 (OGC 12-128r18).
///
/// 1.3 rather than 1.4 on purpose: GDAL before 3.8 (Debian 12 ships 3.6)
/// warns "may only be partially supported" on every open of a 10400 file and
/// its validator rejects the 1.4 R-tree triggers. The 1.3 layout is otherwise
/// identical and every GDAL/QGIS since 2021 reads it silently.
pub const USER_VERSION: i32 = 10300;

/// The `srs_id` of WGS 84 longitude/latitude (EPSG:4326), used by every layer.
pub const SRS_WGS84: i32 = 4326;

/// Name of the key/value metadata table (a GeoPackage attributes table).
pub const META_TABLE: &str = "wangge_meta";

/// Older application ids still accepted on open: GeoPackage 1.0 and 1.1.
const LEGACY_APPLICATION_IDS: [i32; 2] = [0x4750_3130, 0x4750_3131];

/// SQL expression for `last_change`: ISO-8601 UTC with milliseconds.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

const WGS84_WKT: &str = "GEOGCS[\"WGS 84\",DATUM[\"WGS_1984\",SPHEROID[\"WGS 84\",6378137,\
298.257223563,AUTHORITY[\"EPSG\",\"7030\"]],AUTHORITY[\"EPSG\",\"6326\"]],PRIMEM[\"Greenwich\",0,\
AUTHORITY[\"EPSG\",\"8901\"]],UNIT[\"degree\",0.0174532925199433,AUTHORITY[\"EPSG\",\"9122\"]],\
AXIS[\"Latitude\",NORTH],AXIS[\"Longitude\",EAST],AUTHORITY[\"EPSG\",\"4326\"]]";

/// Required tables of a new GeoPackage (OGC 12-128r18 annex C) and the three
/// required `gpkg_spatial_ref_sys` rows.
const CORE_SCHEMA: &str = "
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL PRIMARY KEY,
  organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL,
  definition TEXT NOT NULL,
  description TEXT
);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY,
  data_type TEXT NOT NULL,
  identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE,
  min_y DOUBLE,
  max_x DOUBLE,
  max_y DOUBLE,
  srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id)
);
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL,
  column_name TEXT NOT NULL,
  geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL,
  z TINYINT NOT NULL,
  m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);
CREATE TABLE gpkg_extensions (
  table_name TEXT,
  column_name TEXT,
  extension_name TEXT NOT NULL,
  definition TEXT NOT NULL,
  scope TEXT NOT NULL,
  CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name)
);
INSERT INTO gpkg_spatial_ref_sys VALUES
  ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined',
   'undefined cartesian coordinate reference system'),
  ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined',
   'undefined geographic coordinate reference system');
";

/// Everything that can go wrong in the store. Each message is a sentence
/// naming the file, layer, feature or column concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed on the store file.
    #[error("SQLite error on {}: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file exists but is not a GeoPackage.
    #[error("{} is not a GeoPackage: {reason}", path.display())]
    NotGeoPackage {
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// [`Store::create`] was given a path that already exists.
    #[error("cannot create the GeoPackage {}: the file already exists", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// No feature layer has this name.
    #[error("there is no layer {layer:?}; available layers: {}", list(available))]
    UnknownLayer {
        /// The requested name.
        layer: String,
        /// The feature layers that do exist, sorted.
        available: Vec<String>,
    },
    /// [`Store::create_layer`] was given the name of an existing table.
    #[error("cannot create layer {layer:?}: a table of that name already exists")]
    LayerExists {
        /// The requested name.
        layer: String,
    },
    /// A layer name that is not `[a-z_][a-z0-9_]*` or is reserved.
    #[error("{name:?} is not a valid layer name: {reason}")]
    BadLayerName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A layer schema with invalid or duplicate column names.
    #[error("invalid schema for layer {layer:?}: {reason}")]
    BadSchema {
        /// The layer being created.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// [`LayerWriter::insert`] got a different number of values than the
    /// layer has attribute columns.
    #[error("layer {layer:?} has {expected} attribute columns but {got} values were given")]
    Arity {
        /// The layer written to.
        layer: String,
        /// Number of attribute columns.
        expected: usize,
        /// Number of values given.
        got: usize,
    },
    /// A geometry whose type the layer does not hold.
    #[error("layer {layer:?} holds {expected} geometries; cannot insert a {got}")]
    WrongGeometryType {
        /// The layer written to.
        layer: String,
        /// The layer's declared geometry type.
        expected: GeomType,
        /// The kind of geometry given.
        got: &'static str,
    },
    /// A value whose type does not match its column.
    #[error("column {column:?} of layer {layer:?} is {expected}; cannot store a {got} value")]
    ValueType {
        /// The layer written to.
        layer: String,
        /// The column.
        column: String,
        /// The column's type.
        expected: ColumnType,
        /// The kind of value given.
        got: &'static str,
    },
    /// A stored geometry could not be decoded.
    #[error("feature {fid} of layer {layer:?} has an unreadable geometry: {reason}")]
    Geometry {
        /// The layer read.
        layer: String,
        /// The feature id.
        fid: i64,
        /// What is wrong with the blob.
        reason: String,
    },
    /// A stored attribute value of a type the store does not model (a BLOB).
    #[error(
        "feature {fid} of layer {layer:?} has an unreadable value in column {column:?}: {reason}"
    )]
    Value {
        /// The layer read.
        layer: String,
        /// The feature id.
        fid: i64,
        /// The column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// [`decode_geometry`] was given bytes that are not a GeoPackage geometry.
    #[error("invalid GeoPackage geometry blob: {reason}")]
    Blob {
        /// What is wrong with the blob.
        reason: String,
    },
    /// A file-system error on the store file.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Something asked for by key is not in the store.
    #[error("there is no {what}")]
    NotFound {
        /// What was looked for, e.g. `community 110101001001` or `version 3
        /// of community 110101001001`.
        what: String,
    },
    /// A write lost a race with another writer and was rolled back.
    #[error("{what}: {reason}")]
    Conflict {
        /// What was being written.
        what: String,
        /// What happened.
        reason: String,
    },
    /// PostgreSQL failed on the store, or could not be reached.
    #[error("PostgreSQL error on {url}: {source}")]
    Postgres {
        /// The store's URL, without its password.
        url: String,
        /// What the client or the server said.
        source: postgres::Error,
    },
    /// The PostgreSQL URL is malformed, or the database cannot hold a
    /// wangge store (no PostGIS, tables of another application).
    #[error("{url}: {reason}")]
    NotWangge {
        /// The URL as given, without its password.
        url: String,
        /// Why it was rejected, with what to do.
        reason: String,
    },
    /// An operation this backend does not offer (yet).
    #[error("{what}")]
    Unsupported {
        /// What was asked for, and what to do instead.
        what: String,
    },
    /// Layers whose columns, geometry or index differ from what is needed
    /// (a column dropped or retyped in another tool, a file written by
    /// another tool without the derived columns).
    #[error("{}: {}{hint}", path.display(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Layout {
        /// The store file.
        path: PathBuf,
        /// Every difference found, each naming its layer.
        problems: Vec<LayoutProblem>,
        /// What to do about them (empty, or a sentence starting with ". ").
        hint: String,
    },
}

/// One way a stored layer differs from the layout it is expected to have
/// (see [`Store::layout_problems`]). Each names the layer, the column and
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum LayoutProblem {
    /// An expected column is not in the table.
    MissingColumn {
        /// The layer.
        layer: String,
        /// The column.
        column: String,
        /// Its expected type.
        expected: ColumnType,
    },
    /// A column is declared with a type that reads as another [`ColumnType`].
    ColumnType {
        /// The layer.
        layer: String,
        /// The column.
        column: String,
        /// The expected type.
        expected: ColumnType,
        /// The SQL type the table declares.
        declared: String,
    },
    /// The geometry column is not called `geom`.
    GeometryColumn {
        /// The layer.
        layer: String,
        /// The name the layer uses.
        found: String,
    },
    /// The integer primary key is not called `fid`.
    FidColumn {
        /// The layer.
        layer: String,
        /// The primary key found (`rowid` when the table has none).
        found: String,
    },
    /// The declared geometry type does not hold what is written to the layer.
    GeometryType {
        /// The layer.
        layer: String,
        /// The expected type.
        expected: GeomType,
        /// The `geometry_type_name` declared.
        declared: String,
    },
    /// The layer has no R-tree spatial index.
    NoSpatialIndex {
        /// The layer.
        layer: String,
    },
    /// The layer's coordinates are not WGS 84 (or CGCS2000) longitude/latitude.
    Srs {
        /// The layer.
        layer: String,
        /// Its `srs_id`.
        srs_id: i64,
    },
}

impl LayoutProblem {
    /// The layer concerned.
    pub fn layer(&self) -> &str {
        match self {
            LayoutProblem::MissingColumn { layer, .. }
            | LayoutProblem::ColumnType { layer, .. }
            | LayoutProblem::GeometryColumn { layer, .. }
            | LayoutProblem::FidColumn { layer, .. }
            | LayoutProblem::GeometryType { layer, .. }
            | LayoutProblem::NoSpatialIndex { layer }
            | LayoutProblem::Srs { layer, .. } => layer,
        }
    }
}

impl fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutProblem::MissingColumn {
                layer,
                column,
                expected,
            } => write!(
                f,
                "layer {layer:?} has no column {column:?} (expected {expected})"
            ),
            LayoutProblem::ColumnType {
                layer,
                column,
                expected,
                declared,
            } => write!(
                f,
                "column {column:?} of layer {layer:?} is declared {declared} (expected {expected})"
            ),
            LayoutProblem::GeometryColumn { layer, found } => write!(
                f,
                "layer {layer:?} keeps its geometry in column {found:?} (expected \"geom\", \
                 GDAL's default; re-create the layer with `ogr2ogr -lco GEOMETRY_NAME=geom`)"
            ),
            LayoutProblem::FidColumn { layer, found } => write!(
                f,
                "layer {layer:?} has the primary key {found:?} (expected an INTEGER \"fid\", \
                 GDAL's default; re-create the layer with `ogr2ogr -lco FID=fid`)"
            ),
            LayoutProblem::GeometryType {
                layer,
                expected,
                declared,
            } => write!(
                f,
                "layer {layer:?} declares {declared} geometries (expected {expected})"
            ),
            LayoutProblem::NoSpatialIndex { layer } => {
                write!(f, "layer {layer:?} has no R-tree spatial index")
            }
            LayoutProblem::Srs { layer, srs_id } => write!(
                f,
                "layer {layer:?} is in srs_id {srs_id} (expected 4326, WGS 84 longitude/latitude, \
                 or 4490, CGCS2000; reproject it with `ogr2ogr -t_srs EPSG:4326`)"
            ),
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Attaches the store path to SQLite errors.
pub(crate) trait At<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })
    }
}

/// The geometry type a layer declares in `gpkg_geometry_columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GeomType {
    /// `POINT`.
    Point,
    /// `LINESTRING` (also accepts a [`geo_types::Line`]).
    LineString,
    /// `MULTIPOINT`.
    MultiPoint,
    /// `MULTILINESTRING`.
    MultiLineString,
    /// `POLYGON` (also accepts a [`geo_types::Rect`] or [`geo_types::Triangle`]).
    Polygon,
    /// `MULTIPOLYGON`.
    MultiPolygon,
    /// `GEOMETRY`: any geometry, including collections.
    Geometry,
}

impl GeomType {
    /// The GeoPackage `geometry_type_name`, e.g. `"MULTIPOLYGON"`.
    pub fn gpkg_name(self) -> &'static str {
        match self {
            GeomType::Point => "POINT",
            GeomType::LineString => "LINESTRING",
            GeomType::MultiPoint => "MULTIPOINT",
            GeomType::MultiLineString => "MULTILINESTRING",
            GeomType::Polygon => "POLYGON",
            GeomType::MultiPolygon => "MULTIPOLYGON",
            GeomType::Geometry => "GEOMETRY",
        }
    }

    /// Parses a `geometry_type_name` case-insensitively. Types this store does
    /// not model (curves, surfaces, collections) map to [`GeomType::Geometry`].
    pub fn from_gpkg_name(name: &str) -> GeomType {
        [
            GeomType::Point,
            GeomType::LineString,
            GeomType::MultiPoint,
            GeomType::MultiLineString,
            GeomType::Polygon,
            GeomType::MultiPolygon,
        ]
        .into_iter()
        .find(|t| t.gpkg_name().eq_ignore_ascii_case(name))
        .unwrap_or(GeomType::Geometry)
    }

    /// Whether a layer of this type may hold `geometry` (GeoPackage requires
    /// stored geometries to match the declared type).
    pub fn accepts(self, geometry: &Geometry<f64>) -> bool {
        matches!(
            (self, geometry),
            (GeomType::Geometry, _)
                | (GeomType::Point, Geometry::Point(_))
                | (
                    GeomType::LineString,
                    Geometry::LineString(_) | Geometry::Line(_)
                )
                | (GeomType::MultiPoint, Geometry::MultiPoint(_))
                | (GeomType::MultiLineString, Geometry::MultiLineString(_))
                | (
                    GeomType::Polygon,
                    Geometry::Polygon(_) | Geometry::Rect(_) | Geometry::Triangle(_)
                )
                | (GeomType::MultiPolygon, Geometry::MultiPolygon(_))
        )
    }
}

impl fmt::Display for GeomType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gpkg_name())
    }
}

/// The type of an attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// 64-bit signed integer (`INTEGER`).
    Integer,
    /// Double-precision float (`REAL`).
    Real,
    /// UTF-8 text (`TEXT`).
    Text,
}

impl ColumnType {
    /// The SQL type declared for the column.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Text => "TEXT",
        }
    }

    /// Maps a declared SQL type to the closest column type: integer types
    /// and BOOLEAN to `Integer`, floating types to `Real`, everything else
    /// (TEXT, DATE, DATETIME, ...) to `Text`.
    pub fn from_sql_name(declared: &str) -> ColumnType {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") || t == "BOOLEAN" {
            ColumnType::Integer
        } else if t.contains("REAL") || t.contains("DOUB") || t.contains("FLOA") {
            ColumnType::Real
        } else {
            ColumnType::Text
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// An attribute column of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    /// Column name, `[a-z_][a-z0-9_]*`, neither `fid` nor `geom`.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
}

/// The definition of a feature layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerSchema {
    /// Layer (table) name, `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// Declared geometry type; inserts of other types are rejected.
    pub geometry: GeomType,
    /// Attribute columns after `fid` and `geom`, in order.
    pub columns: Vec<Column>,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// SQL NULL.
    #[default]
    Null,
    /// An integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
}

impl Value {
    /// The integer, if this is an `Integer`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(v) => Some(*v),
            _ => None,
        }
    }

    /// The number as a float, if this is a `Real` or an `Integer`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(v) => Some(*v),
            Value::Integer(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The text, if this is a `Text`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
        }
    }

    pub(crate) fn from_sql(value: ValueRef<'_>) -> Result<Value, String> {
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => {
                return Err(format!("a {}-byte BLOB is not a supported value", b.len()));
            }
        })
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Integer(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// One feature read back from a layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Feature id (the table's integer primary key).
    pub fid: i64,
    /// The geometry, in WGS 84 longitude/latitude.
    pub geometry: Geometry<f64>,
    /// Attribute values: every column of the layer in table order
    /// ([`Store::for_each`]), or the named ones ([`Store::for_each_columns`]).
    pub values: Vec<Value>,
}

/// One row of [`crate::AnyStore::admin_counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCounts {
    /// The unit's code.
    pub code: String,
    /// Its `parent_code`, if any.
    pub parent: Option<String>,
    /// Households (NULL: 0).
    pub households: i64,
    /// Persons (NULL: 0).
    pub persons: i64,
}

/// One row of [`crate::AnyStore::building_counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildingCounts {
    /// The building's fid.
    pub fid: i64,
    /// Its grid, if assigned.
    pub grid_code: Option<String>,
    /// Its community, if known.
    pub community_code: Option<String>,
    /// Households (NULL: 0).
    pub households: i64,
}

/// Summary of one feature layer, as listed by [`Store::layers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Layer name.
    pub name: String,
    /// Declared geometry type.
    pub geometry: GeomType,
    /// Number of features.
    pub count: u64,
    /// `[min_x, min_y, max_x, max_y]` of all non-empty geometries, `None` when
    /// there are none. Taken from the R-tree, whose 32-bit floats are rounded
    /// outward, so it may exceed the exact extent by about 1e-7 relative.
    pub bbox: Option<[f64; 4]>,
}

/// Where a layer keeps its key and geometry; our layers use `fid`/`geom`,
/// files from other tools may not.
#[derive(Debug, Clone)]
pub(crate) struct LayerDef {
    pub(crate) schema: LayerSchema,
    pub(crate) fid: String,
    pub(crate) geom: String,
    /// The declared SQL type of each column of `schema.columns`.
    declared: Vec<String>,
    /// The declared `geometry_type_name`.
    geometry_type: String,
    /// The layer's `srs_id`.
    pub(crate) srs_id: i64,
}

/// An open project store: one GeoPackage file and its SQLite connection.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Creates a new, empty GeoPackage at `path`.
    ///
    /// Fails with [`StoreError::Exists`] if anything already exists there (the
    /// check and the creation are one atomic step). On any later failure the
    /// half-written file is removed.
    pub fn create(path: &Path) -> Result<Store, StoreError> {
        crate::postgis::refuse_url(path, "written")?;
        // create_new makes "must not exist" race-free; SQLite treats the empty
        // file as an empty database.
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let init = || -> Result<Store, StoreError> {
            let conn =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).at(path)?;
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {USER_VERSION};
                 PRAGMA journal_mode = DELETE;
                 BEGIN;
                 {CORE_SCHEMA}
                 COMMIT;"
            ))
            .at(path)?;
            conn.execute(
                "INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 geodetic', ?1, 'EPSG', ?1, ?2,
                 'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid')",
                (SRS_WGS84, WGS84_WKT),
            )
            .at(path)?;
            Store::configure(conn, path)
        };
        init().inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// Opens an existing GeoPackage read-write.
    ///
    /// Fails with [`StoreError::Io`] if the file is missing and with
    /// [`StoreError::NotGeoPackage`] if it is not an SQLite database, has
    /// another `application_id`, or lacks the core `gpkg_*` tables.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        crate::postgis::refuse_url(path, "read")?;
        let meta = std::fs::metadata(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        let not_gpkg = |reason: String| StoreError::NotGeoPackage {
            path: path.to_owned(),
            reason,
        };
        if !meta.is_file() {
            return Err(not_gpkg("it is not a regular file".into()));
        }
        // Without SQLITE_OPEN_CREATE so a vanished file is an error, not a new
        // empty database.
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).at(path)?;
        // Another process writing (an edit, a re-index) holds the lock for
        // a moment: wait for it instead of failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .at(path)?;
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| not_gpkg(format!("it is not an SQLite database ({e})")))?;
        if app_id != APPLICATION_ID && !LEGACY_APPLICATION_IDS.contains(&app_id) {
            return Err(not_gpkg(format!(
                "its application_id is 0x{app_id:08X}, not 0x{APPLICATION_ID:08X} ('GPKG')"
            )));
        }
        let mut missing = Vec::new();
        for table in [
            "gpkg_spatial_ref_sys",
            "gpkg_contents",
            "gpkg_geometry_columns",
        ] {
            if !table_exists(&conn, table).at(path)? {
                missing.push(table);
            }
        }
        if !missing.is_empty() {
            return Err(not_gpkg(format!(
                "required table(s) missing: {}",
                missing.join(", ")
            )));
        }
        Store::configure(conn, path)
    }

    /// Per-connection setup shared by `create` and `open`.
    fn configure(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        register_functions(&conn).at(path)?;
        // A larger page cache keeps the R-tree's upper levels in memory during
        // bulk loads; it is a ceiling, not an allocation.
        conn.pragma_update(None, "cache_size", -65_536).at(path)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying SQLite connection, with the GeoPackage SQL functions
    /// (`ST_IsEmpty`, `ST_MinX`, ...) registered so that writes through it
    /// keep the spatial indexes current.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Creates an empty feature layer with its `gpkg_contents` and
    /// `gpkg_geometry_columns` rows, its R-tree index and the index triggers,
    /// all in one transaction.
    ///
    /// The name must be `[a-z_][a-z0-9_]*` and not start with `gpkg_`,
    /// `rtree_` or `sqlite_`; column names follow the same pattern, must be
    /// unique and may not be `fid` or `geom`.
    pub fn create_layer(&mut self, schema: &LayerSchema) -> Result<(), StoreError> {
        let name = schema.name.as_str();
        check_schema(schema)?;
        let path = &self.path;
        if table_exists(&self.conn, name).at(path)? {
            return Err(StoreError::LayerExists {
                layer: name.to_owned(),
            });
        }

        let mut ddl = format!(
            "CREATE TABLE {} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom {}",
            quote(name),
            schema.geometry.gpkg_name()
        );
        for col in &schema.columns {
            ddl.push_str(&format!(", {} {}", quote(&col.name), col.ty.sql_name()));
        }
        ddl.push(')');

        let tx = self.conn.transaction().at(path)?;
        tx.execute(&ddl, []).at(path)?;
        tx.execute(
            &format!(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, description,
                 last_change, srs_id) VALUES (?1, 'features', ?1, '', {NOW}, ?2)"
            ),
            (name, SRS_WGS84),
        )
        .at(path)?;
        tx.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?1, 'geom', ?2, ?3, 0, 0)",
            (name, schema.geometry.gpkg_name(), SRS_WGS84),
        )
        .at(path)?;
        tx.execute_batch(&rtree_ddl(name, "geom", "fid")).at(path)?;
        for col in key_columns(schema) {
            tx.execute(
                &format!(
                    "CREATE INDEX {} ON {} ({})",
                    quote(&format!("{name}_{col}")),
                    quote(name),
                    quote(col)
                ),
                [],
            )
            .at(path)?;
        }
        tx.execute(
            "INSERT INTO gpkg_extensions VALUES (?1, 'geom', 'gpkg_rtree_index',
             'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')",
            [name],
        )
        .at(path)?;
        tx.commit().at(path)
    }

    /// Whether a feature layer of this name exists.
    pub fn has_layer(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT 1 FROM gpkg_contents WHERE table_name = ?1 AND data_type = 'features'",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .at(&self.path)
    }

    /// The schema of a feature layer, read from the file.
    ///
    /// Columns of types the store does not model are reported by their
    /// closest [`ColumnType`] (see [`ColumnType::from_sql_name`]).
    pub fn schema(&self, layer: &str) -> Result<LayerSchema, StoreError> {
        self.layer_def(layer).map(|def| def.schema)
    }

    /// Every feature layer, sorted by name, with its feature count
    /// (`SELECT count(*)`) and extent. The extent comes from the R-tree's root
    /// node (constant time), which is right whatever wrote to the table;
    /// layers without an index fall back to the `gpkg_contents` extent.
    pub fn layers(&self) -> Result<Vec<LayerInfo>, StoreError> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.table_name, g.geometry_type_name, g.column_name,
                        c.min_x, c.min_y, c.max_x, c.max_y
                 FROM gpkg_contents c JOIN gpkg_geometry_columns g USING (table_name)
                 WHERE c.data_type = 'features' ORDER BY c.table_name",
            )
            .at(path)?;
        let rows = stmt
            .query_map([], |r| {
                let bbox: [Option<f64>; 4] = [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?];
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    bbox,
                ))
            })
            .at(path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(path)?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, type_name, geom, contents_bbox) in rows {
            let count: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| {
                    r.get(0)
                })
                .at(path)?;
            let rtree = rtree_name(&name, &geom);
            let bbox = if table_exists(&self.conn, &rtree).at(path)? {
                rtree_extent(&self.conn, &rtree).at(path)?
            } else {
                match contents_bbox {
                    [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
                    _ => None,
                }
            };
            out.push(LayerInfo {
                name,
                geometry: GeomType::from_gpkg_name(&type_name),
                count: u64::try_from(count).unwrap_or(0),
                bbox,
            });
        }
        Ok(out)
    }

    /// Starts writing to a layer: opens an immediate transaction (taking the
    /// write lock now, so a concurrent writer fails here rather than midway)
    /// and prepares the insert statement.
    ///
    /// Nothing is visible to other connections until [`LayerWriter::commit`];
    /// dropping the writer rolls everything back.
    ///
    /// The R-tree is brought up to date at commit rather than row by row:
    /// the insert trigger is suspended inside the transaction, and commit
    /// either bulk-loads the whole index (when the new rows are at least as
    /// many as the indexed ones) or inserts the new entries. Either way the
    /// index content is exactly what the trigger would have produced.
    ///
    /// The writer names every column the table has, in table order:
    /// [`LayerWriter::insert`] takes one value per column. Code that writes
    /// a layer of a known schema, which other tools may have extended,
    /// uses [`Store::writer_for`] instead.
    pub fn writer(&mut self, layer: &str) -> Result<LayerWriter<'_>, StoreError> {
        let def = self.layer_def(layer)?;
        let schema = def.schema.clone();
        self.start_writer(def, schema, None, false)
    }

    /// Like [`Store::writer`], but [`LayerWriter::insert_with_fid`] may
    /// give each feature its fid (what a copy between stores does to keep
    /// ids).
    pub fn writer_keeping_fids(&mut self, layer: &str) -> Result<LayerWriter<'_>, StoreError> {
        let def = self.layer_def(layer)?;
        let schema = def.schema.clone();
        self.start_writer(def, schema, None, true)
    }

    /// Like [`Store::writer`], but for the columns of `schema` only, in its
    /// order: [`LayerWriter::insert`] takes one value per column of
    /// `schema`, and the table's other columns (added by QGIS or GDAL, say)
    /// get their default, NULL unless the other tool set one.
    ///
    /// With `carry_key` (a column of `schema`, e.g. `code`), those other
    /// columns are carried over by key: a row inserted with a key that a row
    /// of the layer had when the writer started gets that row's values (the
    /// first such row in fid order), even if the row was deleted since
    /// inside this transaction. So a layer rewritten by delete and insert
    /// keeps what users added to the rows that survive. Only rows with a
    /// non-NULL value in an extra column are remembered (every row when an
    /// extra column has a default, so an explicit NULL survives too).
    ///
    /// Fails with [`StoreError::Layout`] when a column of `schema` is
    /// missing from the table or declared with another type, and with
    /// [`StoreError::BadSchema`] when `carry_key` is not in `schema`.
    pub fn writer_for(
        &mut self,
        schema: &LayerSchema,
        carry_key: Option<&str>,
    ) -> Result<LayerWriter<'_>, StoreError> {
        let def = self.layer_def(&schema.name)?;
        let problems: Vec<LayoutProblem> = column_problems(&def, schema)
            .into_iter()
            .filter(|p| {
                matches!(
                    p,
                    LayoutProblem::MissingColumn { .. } | LayoutProblem::ColumnType { .. }
                )
            })
            .collect();
        if !problems.is_empty() {
            return Err(StoreError::Layout {
                path: self.path.clone(),
                problems,
                hint: String::new(),
            });
        }
        let key =
            match carry_key {
                None => None,
                Some(k) => Some(schema.columns.iter().position(|c| c.name == k).ok_or_else(
                    || StoreError::BadSchema {
                        layer: schema.name.clone(),
                        reason: format!("the carry-over key {k:?} is not a column being written"),
                    },
                )?),
            };
        let written = LayerSchema {
            name: schema.name.clone(),
            geometry: def.schema.geometry,
            columns: schema.columns.clone(),
        };
        self.start_writer(def, written, key, false)
    }

    /// The transaction, deferred index and statements of a writer of
    /// `written`'s columns (a subset of `def`'s).
    fn start_writer(
        &mut self,
        def: LayerDef,
        written: LayerSchema,
        carry_key: Option<usize>,
        keep_fids: bool,
    ) -> Result<LayerWriter<'_>, StoreError> {
        let layer = written.name.as_str();
        let path = self.path.as_path();
        let tx = Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .at(path)?;
        let rtree = rtree_name(layer, &def.geom);
        let index = if table_exists(&self.conn, &rtree).at(path)? {
            suspend_trigger(&self.conn, &format!("{rtree}_insert"))
                .at(path)?
                .map(|trigger_sql| DeferredIndex {
                    rtree,
                    trigger_sql,
                    entries: Vec::new(),
                })
        } else {
            None
        };
        // An empty layer being filled (a synth, an import, a copy) gets its
        // key indexes built once at commit instead of row by row.
        let empty: bool = self
            .conn
            .query_row(
                &format!("SELECT NOT EXISTS (SELECT 1 FROM {})", quote(layer)),
                [],
                |r| r.get(0),
            )
            .at(path)?;
        let suspended = if empty {
            suspend_key_indexes(&self.conn, layer).at(path)?
        } else {
            Vec::new()
        };
        let insert = |columns: &[&str]| {
            let mut sql = format!("INSERT INTO {} ({}", quote(layer), quote(&def.geom));
            for col in columns {
                sql.push_str(", ");
                sql.push_str(&quote(col));
            }
            if keep_fids {
                sql.push_str(&format!(", {}", quote(&def.fid)));
            }
            sql.push_str(") VALUES (?1");
            for i in 0..columns.len() + usize::from(keep_fids) {
                sql.push_str(&format!(", ?{}", i + 2));
            }
            sql.push(')');
            sql
        };
        let named: Vec<&str> = written.columns.iter().map(|c| c.name.as_str()).collect();
        let stmt = self.conn.prepare(&insert(&named)).at(path)?;
        let extra: Vec<&str> = def
            .schema
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|c| !named.contains(c))
            .collect();
        let carry = match carry_key {
            Some(key) if !extra.is_empty() && !keep_fids => {
                let rows = carried_rows(&self.conn, &def, named[key], &extra).at(path)?;
                let all: Vec<&str> = named.iter().chain(&extra).copied().collect();
                Some(Carry {
                    stmt: self.conn.prepare(&insert(&all)).at(path)?,
                    key,
                    rows,
                })
            }
            _ => None,
        };
        Ok(LayerWriter {
            stmt,
            carry,
            tx,
            path,
            schema: written,
            blob: Vec::with_capacity(256),
            bbox: None,
            rows: 0,
            index,
            suspended,
            keep_fids,
        })
    }

    /// How `layer` differs from `expected`: missing columns, columns whose
    /// declared type reads as another [`ColumnType`], a geometry column not
    /// called `geom` or a primary key not called `fid` (the names this
    /// store and GDAL use by default, and which SQL in the workspace
    /// assumes), a declared geometry type that cannot hold `expected`'s (a
    /// `GEOMETRY` layer holds anything; a `MULTIPOLYGON` layer passes for a
    /// `POLYGON` one and `MULTILINESTRING` for `LINESTRING`, since readers
    /// take those), coordinates in another SRS than WGS 84 (4326) or
    /// CGCS2000 (4490), and a missing R-tree. Columns the layer has beyond
    /// `expected` are fine.
    pub fn layout_problems(
        &self,
        expected: &LayerSchema,
    ) -> Result<Vec<LayoutProblem>, StoreError> {
        let def = self.layer_def(&expected.name)?;
        let layer = || expected.name.clone();
        let mut out = Vec::new();
        if def.fid != "fid" {
            out.push(LayoutProblem::FidColumn {
                layer: layer(),
                found: def.fid.clone(),
            });
        }
        if def.geom != "geom" {
            out.push(LayoutProblem::GeometryColumn {
                layer: layer(),
                found: def.geom.clone(),
            });
        }
        let declared = def.schema.geometry;
        let holds = declared == expected.geometry
            || declared == GeomType::Geometry
            || matches!(
                (expected.geometry, declared),
                (GeomType::Polygon, GeomType::MultiPolygon)
                    | (GeomType::LineString, GeomType::MultiLineString)
            );
        if !holds {
            out.push(LayoutProblem::GeometryType {
                layer: layer(),
                expected: expected.geometry,
                declared: def.geometry_type.clone(),
            });
        }
        out.extend(column_problems(&def, expected));
        if def.srs_id != i64::from(SRS_WGS84) && def.srs_id != 4490 {
            out.push(LayoutProblem::Srs {
                layer: layer(),
                srs_id: def.srs_id,
            });
        }
        if !table_exists(&self.conn, &rtree_name(&expected.name, &def.geom)).at(&self.path)? {
            out.push(LayoutProblem::NoSpatialIndex { layer: layer() });
        }
        Ok(out)
    }

    /// Adds `columns` to `layer` (`ALTER TABLE … ADD COLUMN`, NULL in every
    /// row) and runs `fill` in the same transaction, so a column is never
    /// left added but unfilled. Column names follow the rules of
    /// [`Store::create_layer`].
    pub fn add_columns(
        &mut self,
        layer: &str,
        columns: &[Column],
        fill: impl FnOnce(&Connection) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let def = self.layer_def(layer)?;
        for col in columns {
            let bad = |reason: String| StoreError::BadSchema {
                layer: layer.to_owned(),
                reason,
            };
            if !is_identifier(&col.name) || col.name == "fid" || col.name == "geom" {
                return Err(bad(format!("cannot add a column named {:?}", col.name)));
            }
            if def
                .schema
                .columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&col.name))
            {
                return Err(bad(format!("column {:?} already exists", col.name)));
            }
        }
        let path = &self.path;
        let tx = self.conn.transaction().at(path)?;
        for col in columns {
            tx.execute(
                &format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    quote(layer),
                    quote(&col.name),
                    col.ty.sql_name()
                ),
                [],
            )
            .at(path)?;
        }
        fill(&tx)?;
        tx.execute(
            &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
            [layer],
        )
        .at(path)?;
        tx.commit().at(path)
    }

    /// Creates the R-tree index of a layer that has none (the
    /// `gpkg_rtree_index` extension: the virtual table, its triggers and its
    /// `gpkg_extensions` row) and fills it from the stored geometries, in
    /// one transaction. Returns the number of indexed features; a layer
    /// that already has its index is left alone (0).
    pub fn create_spatial_index(&mut self, layer: &str) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let path = &self.path;
        let rtree = rtree_name(layer, &def.geom);
        if table_exists(&self.conn, &rtree).at(path)? {
            return Ok(0);
        }
        let tx = self.conn.transaction().at(path)?;
        tx.execute_batch(&rtree_ddl(layer, &def.geom, &def.fid))
            .at(path)?;
        tx.execute(
            "INSERT OR IGNORE INTO gpkg_extensions VALUES (?1, ?2, 'gpkg_rtree_index',
             'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')",
            [layer, def.geom.as_str()],
        )
        .at(path)?;
        let mut entries = Vec::new();
        {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {}, {} FROM {}",
                    quote(&def.fid),
                    quote(&def.geom),
                    quote(layer)
                ))
                .at(path)?;
            let mut rows = stmt.query([]).at(path)?;
            while let Some(r) = rows.next().at(path)? {
                if let ValueRef::Blob(b) = r.get_ref(1).at(path)?
                    && let Ok(Some(env)) = blob_envelope(b)
                {
                    entries.push(RtreeEntry::new(r.get(0).at(path)?, env));
                }
            }
        }
        let n = entries.len() as u64;
        bulk_load_rtree(&tx, &rtree, entries).at(path)?;
        tx.commit().at(path)?;
        Ok(n)
    }

    /// Turns a `POLYGON` layer into a `MULTIPOLYGON` one: every polygon is
    /// rewritten as a one-part multipolygon (same coordinates, so the R-tree
    /// keeps its boxes) and the declared type changed (in
    /// `gpkg_geometry_columns` and the column's SQL type, which moves the
    /// geometry column to the end of the table), in one transaction.
    /// Returns the number of features rewritten; other layers are left
    /// alone (0).
    pub fn promote_to_multipolygon(&mut self, layer: &str) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        if def.schema.geometry != GeomType::Polygon {
            return Ok(0);
        }
        let path = &self.path;
        let tx = self.conn.transaction().at(path)?;
        // The column's declared type is the geometry type too (GeoPackage
        // requirement 31), and SQLite cannot change a column's type: the
        // geometries move to a new MULTIPOLYGON column that then takes the
        // old one's name. The table's triggers (the R-tree's, and any
        // other tool's) are set aside meanwhile and re-created verbatim;
        // fids and boxes do not change, so the index stays right.
        let triggers: Vec<(String, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1
                     AND sql IS NOT NULL",
                )
                .at(path)?;
            stmt.query_map([layer], |r| Ok((r.get(0)?, r.get(1)?)))
                .at(path)?
                .collect::<rusqlite::Result<_>>()
                .at(path)?
        };
        for (name, _) in &triggers {
            tx.execute(&format!("DROP TRIGGER {}", quote(name)), [])
                .at(path)?;
        }
        let (t, g) = (quote(layer), quote(&def.geom));
        let tmp = quote("wangge_promoted_geom");
        tx.execute(
            &format!("ALTER TABLE {t} ADD COLUMN {tmp} MULTIPOLYGON"),
            [],
        )
        .at(path)?;
        let mut n = 0u64;
        {
            let mut read = tx
                .prepare(&format!("SELECT {}, {g} FROM {t}", quote(&def.fid)))
                .at(path)?;
            let mut write = tx
                .prepare(&format!(
                    "UPDATE {t} SET {tmp} = ?1 WHERE {} = ?2",
                    quote(&def.fid)
                ))
                .at(path)?;
            let mut rows = read.query([]).at(path)?;
            while let Some(r) = rows.next().at(path)? {
                let fid: i64 = r.get(0).at(path)?;
                let ValueRef::Blob(b) = r.get_ref(1).at(path)? else {
                    continue;
                };
                let blob = match decode(b) {
                    Ok(Geometry::Polygon(p)) => {
                        n += 1;
                        let srs = i32::try_from(def.srs_id).unwrap_or(SRS_WGS84);
                        encode_geometry(&Geometry::MultiPolygon(MultiPolygon::new(vec![p])), srs)
                    }
                    Ok(_) => b.to_vec(),
                    Err(reason) => {
                        return Err(StoreError::Geometry {
                            layer: layer.to_owned(),
                            fid,
                            reason,
                        });
                    }
                };
                write.execute(rusqlite::params![blob, fid]).at(path)?;
            }
        }
        tx.execute_batch(&format!(
            "ALTER TABLE {t} DROP COLUMN {g};
             ALTER TABLE {t} RENAME COLUMN {tmp} TO {g};"
        ))
        .at(path)?;
        for (_, sql) in &triggers {
            tx.execute_batch(sql).at(path)?;
        }
        tx.execute(
            "UPDATE gpkg_geometry_columns SET geometry_type_name = 'MULTIPOLYGON'
             WHERE table_name = ?1",
            [layer],
        )
        .at(path)?;
        tx.execute(
            &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
            [layer],
        )
        .at(path)?;
        tx.commit().at(path)?;
        Ok(n)
    }

    /// Calls `f` with every feature of `layer` in ascending fid order,
    /// streaming row by row; stops at and returns the first error, from the
    /// store or from `f`. Returns the number of features visited.
    pub fn for_each(
        &self,
        layer: &str,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.for_each_in(layer, None, f)
    }

    /// Like [`Store::for_each`], but with `bbox` (`[min lon, min lat, max
    /// lon, max lat]`) only the features whose bounding box meets it, found
    /// through the layer's R-tree (every feature when the layer has none).
    pub fn for_each_in(
        &self,
        layer: &str,
        bbox: Option<[f64; 4]>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let columns: Vec<String> = def.schema.columns.iter().map(|c| c.name.clone()).collect();
        self.scan(&def, &columns, bbox, f)
    }

    /// Like [`Store::for_each_in`], but [`Feature::values`] holds the named
    /// `columns`, in that order, whatever else the table has or in which
    /// order (columns added or reordered by other tools); a column the
    /// layer lacks reads as NULL. Readers of known columns use this so that
    /// extra columns, of any type, cannot get in their way.
    pub fn for_each_columns(
        &self,
        layer: &str,
        columns: &[&str],
        bbox: Option<[f64; 4]>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        self.scan(&def, &columns, bbox, f)
    }

    /// Streams the features of `def`'s layer with the values of `columns`
    /// (NULL for a column the table lacks).
    fn scan(
        &self,
        def: &LayerDef,
        columns: &[String],
        bbox: Option<[f64; 4]>,
        mut f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let layer = def.schema.name.as_str();
        let path = &self.path;
        let mut sql = format!("SELECT {}, {}", quote(&def.fid), quote(&def.geom));
        for col in columns {
            sql.push_str(", ");
            if def.schema.columns.iter().any(|c| &c.name == col) {
                sql.push_str(&quote(col));
            } else {
                sql.push_str("NULL");
            }
        }
        sql.push_str(&format!(" FROM {}", quote(layer)));
        let rtree = rtree_name(layer, &def.geom);
        let bbox = match bbox {
            Some(b) if table_exists(&self.conn, &rtree).at(path)? => {
                sql.push_str(&where_in_box(&def.fid, &rtree));
                Some(b)
            }
            _ => None,
        };
        sql.push_str(&format!(" ORDER BY {}", quote(&def.fid)));
        let mut stmt = self.conn.prepare(&sql).at(path)?;
        let mut rows = match bbox {
            Some(b) => stmt.query(rusqlite::params![b[0], b[1], b[2], b[3]]),
            None => stmt.query([]),
        }
        .at(path)?;
        let mut n = 0;
        while let Some(row) = rows.next().at(path)? {
            let fid: i64 = row.get(0).at(path)?;
            let bad_geometry = |reason: String| StoreError::Geometry {
                layer: layer.to_owned(),
                fid,
                reason,
            };
            let geometry = match row.get_ref(1).at(path)? {
                ValueRef::Blob(blob) => decode(blob).map_err(bad_geometry)?,
                ValueRef::Null => return Err(bad_geometry("the geometry is NULL".into())),
                _ => {
                    return Err(bad_geometry(
                        "the geometry column does not hold a BLOB".into(),
                    ));
                }
            };
            let mut values = Vec::with_capacity(columns.len());
            for (i, col) in columns.iter().enumerate() {
                let value = Value::from_sql(row.get_ref(i + 2).at(path)?).map_err(|reason| {
                    StoreError::Value {
                        layer: layer.to_owned(),
                        fid,
                        column: col.clone(),
                        reason,
                    }
                })?;
                values.push(value);
            }
            f(Feature {
                fid,
                geometry,
                values,
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Number of features in one layer.
    pub fn count(&self, layer: &str) -> Result<u64, StoreError> {
        self.layer_def(layer)?;
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {}", quote(layer)), [], |r| {
                r.get(0)
            })
            .at(&self.path)?;
        Ok(n as u64)
    }

    /// True when `layer` exists and holds at least one feature (cheap, unlike
    /// counting every layer with [`Store::layers`]).
    pub fn has_features(&self, layer: &str) -> Result<bool, StoreError> {
        if !self.has_layer(layer)? {
            return Ok(false);
        }
        self.conn
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", quote(layer)),
                [],
                |r| r.get(0),
            )
            .at(&self.path)
    }

    /// Sets attribute `columns` of every feature of a point layer from its
    /// position, in one transaction: features are read in fid order in chunks
    /// of `chunk` as `(fid, lon, lat)` (non-point geometries give NaN), and
    /// `f` returns one row of values per feature, in the same order. Memory
    /// is bounded by the chunk. Returns the number of features updated.
    pub fn update_from_points(
        &mut self,
        layer: &str,
        columns: &[&str],
        chunk: usize,
        mut f: impl FnMut(&[(i64, f64, f64)]) -> Vec<Vec<Value>>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        for c in columns {
            if !def.schema.columns.iter().any(|x| x.name == *c) {
                return Err(StoreError::BadSchema {
                    layer: layer.to_owned(),
                    reason: format!("no column {c:?}"),
                });
            }
        }
        let path = self.path.clone();
        let path = &path;
        let tx = self.conn.transaction().at(path)?;
        // Every row changes: the key indexes are built once at the end.
        let suspended = suspend_key_indexes(&tx, layer).at(path)?;
        let select = format!(
            "SELECT {fid}, {geom} FROM {t} WHERE {fid} > ?1 ORDER BY {fid} LIMIT ?2",
            fid = quote(&def.fid),
            geom = quote(&def.geom),
            t = quote(layer)
        );
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", quote(c), i + 2))
            .collect();
        let update = format!(
            "UPDATE {} SET {} WHERE {} = ?1",
            quote(layer),
            sets.join(", "),
            quote(&def.fid)
        );
        let mut last = i64::MIN;
        let mut n = 0u64;
        let mut points: Vec<(i64, f64, f64)> = Vec::with_capacity(chunk);
        loop {
            points.clear();
            {
                let mut stmt = tx.prepare_cached(&select).at(path)?;
                let mut rows = stmt.query(rusqlite::params![last, chunk as i64]).at(path)?;
                while let Some(row) = rows.next().at(path)? {
                    let fid: i64 = row.get(0).at(path)?;
                    let (x, y) = match row.get_ref(1).at(path)? {
                        ValueRef::Blob(b) => match decode(b) {
                            Ok(Geometry::Point(p)) => (p.x(), p.y()),
                            _ => (f64::NAN, f64::NAN),
                        },
                        _ => (f64::NAN, f64::NAN),
                    };
                    points.push((fid, x, y));
                }
            }
            let Some(&(fid, _, _)) = points.last() else {
                break;
            };
            last = fid;
            let values = f(&points);
            let mut stmt = tx.prepare_cached(&update).at(path)?;
            for ((fid, _, _), vals) in points.iter().zip(&values) {
                let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(vals.len() + 1);
                params.push(fid);
                params.extend(vals.iter().map(|v| v as &dyn rusqlite::ToSql));
                stmt.execute(params.as_slice()).at(path)?;
                n += 1;
            }
        }
        restore_indexes(&tx, &suspended).at(path)?;
        tx.execute(
            &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
            [layer],
        )
        .at(path)?;
        tx.commit().at(path)?;
        Ok(n)
    }

    /// Deletes every feature of `layer` in one transaction and returns how
    /// many there were. The extent in `gpkg_contents` is cleared; fids keep
    /// increasing from where they were (AUTOINCREMENT).
    pub fn clear_layer(&mut self, layer: &str) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let path = &self.path;
        let tx = self.conn.transaction().at(path)?;
        let rtree = rtree_name(layer, &def.geom);
        // Emptying the index in one go beats the delete trigger's per-row
        // R-tree deletions by far.
        let trigger = if table_exists(&tx, &rtree).at(path)? {
            suspend_trigger(&tx, &format!("{rtree}_delete")).at(path)?
        } else {
            None
        };
        let n = tx
            .execute(&format!("DELETE FROM {}", quote(layer)), [])
            .at(path)?;
        if let Some(trigger_sql) = trigger {
            bulk_load_rtree(&tx, &rtree, Vec::new()).at(path)?;
            tx.execute_batch(&trigger_sql).at(path)?;
        }
        tx.execute(
            &format!(
                "UPDATE gpkg_contents SET min_x = NULL, min_y = NULL, max_x = NULL, max_y = NULL,
                 last_change = {NOW} WHERE table_name = ?1"
            ),
            [layer],
        )
        .at(path)?;
        tx.commit().at(path)?;
        Ok(n as u64)
    }

    /// Sets a project metadata entry, creating the `wangge_meta` attributes
    /// table (registered in `gpkg_contents`) on first use.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at(path)?;
        if !table_exists(&tx, META_TABLE).at(path)? {
            // Attributes tables need an INTEGER rowid-alias primary key
            // (requirement 119), so the key is UNIQUE rather than the PK.
            tx.execute_batch(&format!(
                "CREATE TABLE {META_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
                   key TEXT NOT NULL UNIQUE, value TEXT);
                 INSERT INTO gpkg_contents (table_name, data_type, identifier, description)
                   VALUES ('{META_TABLE}', 'attributes', '{META_TABLE}',
                           'wangge project metadata (key/value)');"
            ))
            .at(path)?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {META_TABLE} (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            [key, value],
        )
        .at(path)?;
        tx.execute(
            &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
            [META_TABLE],
        )
        .at(path)?;
        tx.commit().at(path)
    }

    /// A project metadata entry, `None` if it was never set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let path = &self.path;
        if !table_exists(&self.conn, META_TABLE).at(path)? {
            return Ok(None);
        }
        self.conn
            .query_row(
                &format!("SELECT value FROM {META_TABLE} WHERE key = ?1"),
                [key],
                |r| r.get(0),
            )
            .optional()
            .at(path)
    }

    /// Every project metadata entry, sorted by key.
    pub fn meta_entries(&self) -> Result<Vec<(String, String)>, StoreError> {
        let path = &self.path;
        if !table_exists(&self.conn, META_TABLE).at(path)? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT key, coalesce(value, '') FROM {META_TABLE} ORDER BY key"
            ))
            .at(path)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(path)?;
        rows.collect::<rusqlite::Result<_>>().at(path)
    }

    pub(crate) fn layer_def(&self, layer: &str) -> Result<LayerDef, StoreError> {
        layer_def_of(&self.conn, &self.path, layer)
    }
}

/// Names of all feature layers of the GeoPackage open on `conn`, sorted.
fn layer_names_of(conn: &Connection, path: &Path) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT table_name FROM gpkg_contents WHERE data_type = 'features'
             ORDER BY table_name",
        )
        .at(path)?;
    let names = stmt.query_map([], |r| r.get(0)).at(path)?;
    names.collect::<rusqlite::Result<_>>().at(path)
}

/// How feature layer `layer` of the GeoPackage open on `conn` is laid out.
pub(crate) fn layer_def_of(
    conn: &Connection,
    path: &Path,
    layer: &str,
) -> Result<LayerDef, StoreError> {
    {
        let found: Option<(String, String, i64)> = conn
            .query_row(
                "SELECT g.column_name, g.geometry_type_name, g.srs_id
                 FROM gpkg_contents c JOIN gpkg_geometry_columns g USING (table_name)
                 WHERE c.table_name = ?1 AND c.data_type = 'features'",
                [layer],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .at(path)?;
        let Some((geom, type_name, srs_id)) = found else {
            return Err(StoreError::UnknownLayer {
                layer: layer.to_owned(),
                available: layer_names_of(conn, path)?,
            });
        };
        let mut stmt = conn
            .prepare("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")
            .at(path)?;
        let cols = stmt
            .query_map([layer], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .at(path)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .at(path)?;
        // Tables without an integer primary key (e.g. views) still have rowid.
        let fid = cols
            .iter()
            .find(|(_, _, pk)| *pk == 1)
            .map_or_else(|| "rowid".to_owned(), |(name, _, _)| name.clone());
        let (columns, declared) = cols
            .into_iter()
            .filter(|(name, _, _)| *name != fid && !name.eq_ignore_ascii_case(&geom))
            .map(|(name, ty, _)| {
                (
                    Column {
                        name,
                        ty: ColumnType::from_sql_name(&ty),
                    },
                    ty,
                )
            })
            .unzip();
        Ok(LayerDef {
            schema: LayerSchema {
                name: layer.to_owned(),
                geometry: GeomType::from_gpkg_name(&type_name),
                columns,
            },
            fid,
            geom,
            declared,
            geometry_type: type_name,
            srs_id,
        })
    }
}

/// Missing and retyped columns of `def` against `expected`.
fn column_problems(def: &LayerDef, expected: &LayerSchema) -> Vec<LayoutProblem> {
    let mut out = Vec::new();
    for col in &expected.columns {
        match def.schema.columns.iter().position(|c| c.name == col.name) {
            None => out.push(LayoutProblem::MissingColumn {
                layer: expected.name.clone(),
                column: col.name.clone(),
                expected: col.ty,
            }),
            Some(i) if def.schema.columns[i].ty != col.ty => {
                out.push(LayoutProblem::ColumnType {
                    layer: expected.name.clone(),
                    column: col.name.clone(),
                    expected: col.ty,
                    declared: if def.declared[i].is_empty() {
                        "without a type".to_owned()
                    } else {
                        def.declared[i].clone()
                    },
                });
            }
            Some(_) => {}
        }
    }
    out
}

/// The values of the `extra` columns of every row of `def`'s layer that has
/// one that is not NULL (of every row when one of them has a default), by
/// the row's `key` (first row in fid order wins; rows with a NULL key are
/// left out).
fn carried_rows(
    conn: &Connection,
    def: &LayerDef,
    key: &str,
    extra: &[&str],
) -> rusqlite::Result<HashMap<String, Vec<rusqlite::types::Value>>> {
    let cols: Vec<String> = extra.iter().map(|c| quote(c)).collect();
    // A row whose extra columns are all NULL would get the same from a
    // plain insert, unless a column has a default.
    let defaults: bool = conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE dflt_value IS NOT NULL \
             AND name IN ({})",
            extra
                .iter()
                .map(|c| format!("'{}'", c.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [&def.schema.name],
        |r| r.get(0),
    )?;
    let any: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
    let any = if defaults {
        "1".to_owned()
    } else {
        any.join(" OR ")
    };
    let sql = format!(
        "SELECT {}, {} FROM {} WHERE {} IS NOT NULL AND ({any}) ORDER BY {}",
        quote(key),
        cols.join(", "),
        quote(&def.schema.name),
        quote(key),
        quote(&def.fid)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        let k = text_of(r.get(0)?);
        if out.contains_key(&k) {
            continue;
        }
        let values = (1..=extra.len())
            .map(|i| r.get(i))
            .collect::<rusqlite::Result<Vec<rusqlite::types::Value>>>()?;
        out.insert(k, values);
    }
    Ok(out)
}

/// The extra columns a [`Store::writer_for`] carries over by key.
struct Carry<'a> {
    /// The INSERT naming the written columns, then the extra ones.
    stmt: Statement<'a>,
    /// Index of the key among the written columns.
    key: usize,
    /// The extra columns' values by key, as they were when writing began.
    rows: HashMap<String, Vec<rusqlite::types::Value>>,
}

/// A write transaction on one layer, from [`Store::writer`] or
/// [`Store::writer_for`].
///
/// Holds the transaction and a prepared INSERT; each [`insert`](Self::insert)
/// reuses one geometry buffer, so bulk loads do not allocate per row.
/// Dropping the writer without [`commit`](Self::commit) rolls back every
/// insert.
pub struct LayerWriter<'a> {
    // Field order is drop order: the statements must be finalized before the
    // transaction rolls back.
    stmt: Statement<'a>,
    carry: Option<Carry<'a>>,
    tx: Transaction<'a>,
    path: &'a Path,
    schema: LayerSchema,
    blob: Vec<u8>,
    bbox: Option<[f64; 4]>,
    rows: u64,
    index: Option<DeferredIndex>,
    /// Key-column indexes dropped while the writer fills an empty layer,
    /// re-created at commit.
    suspended: Vec<String>,
    /// Whether the insert statement takes the fid as its last parameter
    /// ([`Store::writer_keeping_fids`]).
    keep_fids: bool,
}

/// R-tree maintenance postponed to commit (see [`Store::writer`]).
struct DeferredIndex {
    rtree: String,
    /// The suspended insert trigger, re-created verbatim at commit.
    trigger_sql: String,
    /// `(fid, [minx, maxx, miny, maxy])` of every new non-empty geometry.
    entries: Vec<RtreeEntry>,
}

impl fmt::Debug for LayerWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerWriter")
            .field("path", &self.path)
            .field("layer", &self.schema.name)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl LayerWriter<'_> {
    /// Inserts one feature and returns its new fid.
    ///
    /// `values` must match the written columns in number and order (every
    /// column of the layer for [`Store::writer`], the schema's for
    /// [`Store::writer_for`]): an `Integer` column takes `Integer` or
    /// `Null`, a `Real` column `Real`, `Integer` (stored as a float) or
    /// `Null`, a `Text` column `Text` or `Null`. The geometry must be of the
    /// layer's declared type.
    pub fn insert(
        &mut self,
        geometry: &Geometry<f64>,
        values: &[Value],
    ) -> Result<i64, StoreError> {
        self.insert_as(None, geometry, values)
    }

    /// Like [`LayerWriter::insert`], but the feature gets `fid`, on a
    /// writer from [`Store::writer_keeping_fids`]; a fid already in the
    /// layer is an error.
    pub fn insert_with_fid(
        &mut self,
        fid: i64,
        geometry: &Geometry<f64>,
        values: &[Value],
    ) -> Result<i64, StoreError> {
        if !self.keep_fids {
            return Err(StoreError::Unsupported {
                what: "insert_with_fid needs a writer from Store::writer_keeping_fids".into(),
            });
        }
        self.insert_as(Some(fid), geometry, values)
    }

    fn insert_as(
        &mut self,
        fid: Option<i64>,
        geometry: &Geometry<f64>,
        values: &[Value],
    ) -> Result<i64, StoreError> {
        let layer = &self.schema.name;
        if values.len() != self.schema.columns.len() {
            return Err(StoreError::Arity {
                layer: layer.clone(),
                expected: self.schema.columns.len(),
                got: values.len(),
            });
        }
        if !self.schema.geometry.accepts(geometry) {
            return Err(StoreError::WrongGeometryType {
                layer: layer.clone(),
                expected: self.schema.geometry,
                got: geometry_kind(geometry),
            });
        }
        let path = self.path;
        // A row whose key a row of the layer had gets that row's extra
        // columns (see Store::writer_for).
        let carried = self.carry.as_mut().and_then(|c| {
            let key = match &values[c.key] {
                Value::Text(s) => s.clone(),
                Value::Integer(i) => i.to_string(),
                _ => return None,
            };
            c.rows.get(&key).cloned().map(|extra| (&mut c.stmt, extra))
        });
        let stmt = match carried {
            Some((stmt, extra)) => {
                let first = values.len() + 2;
                for (i, v) in extra.iter().enumerate() {
                    stmt.raw_bind_parameter(first + i, v).at(path)?;
                }
                stmt
            }
            None => &mut self.stmt,
        };
        for (i, (value, col)) in values.iter().zip(&self.schema.columns).enumerate() {
            let idx = i + 2;
            let bound = match (col.ty, value) {
                (_, Value::Null) => stmt.raw_bind_parameter(idx, rusqlite::types::Null),
                (ColumnType::Integer, Value::Integer(v)) => stmt.raw_bind_parameter(idx, v),
                (ColumnType::Real, Value::Real(v)) => stmt.raw_bind_parameter(idx, v),
                (ColumnType::Real, Value::Integer(v)) => stmt.raw_bind_parameter(idx, *v as f64),
                (ColumnType::Text, Value::Text(s)) => stmt.raw_bind_parameter(idx, s.as_str()),
                (expected, other) => {
                    return Err(StoreError::ValueType {
                        layer: layer.clone(),
                        column: col.name.clone(),
                        expected,
                        got: other.kind(),
                    });
                }
            };
            bound.at(path)?;
        }
        if self.keep_fids {
            stmt.raw_bind_parameter(values.len() + 2, fid).at(path)?;
        }
        let bounds = encode(geometry, SRS_WGS84, &mut self.blob);
        stmt.raw_bind_parameter(1, self.blob.as_slice()).at(path)?;
        stmt.raw_execute().at(path)?;
        let fid = self.tx.last_insert_rowid();
        if let Some(b) = bounds {
            self.bbox = Some(merge_bbox(self.bbox, b));
            if let Some(index) = &mut self.index {
                index.entries.push(RtreeEntry::new(fid, b));
            }
        }
        self.rows += 1;
        Ok(fid)
    }

    /// The connection inside this writer's transaction, for statements that
    /// must commit or roll back together with the inserts.
    pub(crate) fn connection(&self) -> &Connection {
        &self.tx
    }

    /// The store file.
    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    /// Number of features inserted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Widens the layer's `gpkg_contents` extent to cover what was written,
    /// stamps `last_change`, commits, and returns the number of rows written.
    pub fn commit(self) -> Result<u64, StoreError> {
        let LayerWriter {
            stmt,
            carry,
            tx,
            path,
            schema,
            bbox,
            rows,
            index,
            suspended,
            ..
        } = self;
        drop(stmt);
        drop(carry);
        restore_indexes(&tx, &suspended).at(path)?;
        if let Some(DeferredIndex {
            rtree,
            trigger_sql,
            entries,
        }) = index
        {
            if !entries.is_empty() {
                let indexed: i64 = tx
                    .query_row(
                        &format!("SELECT count(*) FROM {}", quote(&format!("{rtree}_rowid"))),
                        [],
                        |r| r.get(0),
                    )
                    .at(path)?;
                if entries.len() as i64 >= indexed {
                    let mut all = entries;
                    all.extend(read_rtree(&tx, &rtree).at(path)?);
                    bulk_load_rtree(&tx, &rtree, all).at(path)?;
                } else {
                    let mut insert = tx
                        .prepare(&format!(
                            "INSERT OR REPLACE INTO {} VALUES (?1, ?2, ?3, ?4, ?5)",
                            quote(&rtree)
                        ))
                        .at(path)?;
                    for RtreeEntry {
                        id,
                        bbox: [a, b, c, d],
                    } in entries
                    {
                        insert.execute((id, a, b, c, d)).at(path)?;
                    }
                }
            }
            tx.execute_batch(&trigger_sql).at(path)?;
        }
        if rows > 0 {
            tx.execute(
                &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
                [&schema.name],
            )
            .at(path)?;
        }
        if let Some([min_x, min_y, max_x, max_y]) = bbox {
            // min()/max() with NULL yield NULL, hence the coalesce for a
            // layer that had no extent yet.
            tx.execute(
                "UPDATE gpkg_contents SET
                   min_x = min(coalesce(min_x, ?1), ?1), min_y = min(coalesce(min_y, ?2), ?2),
                   max_x = max(coalesce(max_x, ?3), ?3), max_y = max(coalesce(max_y, ?4), ?4)
                 WHERE table_name = ?5",
                (min_x, min_y, max_x, max_y, &schema.name),
            )
            .at(path)?;
        }
        tx.commit().at(path)?;
        Ok(rows)
    }
}

pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a layer schema before it is created: the layer name (see
/// [`check_layer_name`]) and unique `[a-z_][a-z0-9_]*` column names other
/// than `fid` and `geom`.
pub(crate) fn check_schema(schema: &LayerSchema) -> Result<(), StoreError> {
    let name = schema.name.as_str();
    check_layer_name(name)?;
    let mut seen = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        let bad = |reason: String| StoreError::BadSchema {
            layer: name.to_owned(),
            reason,
        };
        if !is_identifier(&col.name) {
            return Err(bad(format!(
                "column name {:?} is not [a-z_][a-z0-9_]*",
                col.name
            )));
        }
        if col.name == "fid" || col.name == "geom" {
            return Err(bad(format!("column name {:?} is reserved", col.name)));
        }
        if seen.contains(&col.name.as_str()) {
            return Err(bad(format!("column {:?} appears twice", col.name)));
        }
        seen.push(&col.name);
    }
    Ok(())
}

fn check_layer_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| StoreError::BadLayerName {
        name: name.to_owned(),
        reason: reason.into(),
    };
    if !is_identifier(name) {
        return Err(bad("layer names must match [a-z_][a-z0-9_]*"));
    }
    for prefix in ["gpkg_", "rtree_", "sqlite_"] {
        if name.starts_with(prefix) {
            return Err(bad(&format!("the prefix {prefix:?} is reserved")));
        }
    }
    if name == META_TABLE {
        return Err(bad("it is the store's metadata table"));
    }
    Ok(())
}

/// The code columns of a layer that get a B-tree index when it is created,
/// on either backend: reads select by them (a community's grids, its
/// entities for a tile reload or a server's catch-up, a unit by code).
/// Not on `persons`, the registry (millions of rows, read whole), nor on
/// the buildings' `grid_code`, which a partition rewrites for every
/// building and nothing selects by.
pub(crate) fn key_columns(schema: &LayerSchema) -> impl Iterator<Item = &str> {
    const KEYS: [&str; 4] = ["code", "parent_code", "community_code", "grid_code"];
    let layer = schema.name.as_str();
    schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(move |c| {
            KEYS.contains(c)
                && layer != Layer::Persons.name()
                && !(layer == Layer::Buildings.name() && *c == "grid_code")
        })
}

/// Drops the key-column indexes of `table` ([`key_columns`]), inside the
/// open transaction, and returns the SQL that re-creates them: a bulk write
/// maintains none and [`restore_indexes`] builds each once, sorted, at the
/// end.
pub(crate) fn suspend_key_indexes(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    const KEYS: [&str; 4] = ["code", "parent_code", "community_code", "grid_code"];
    let names: Vec<String> = KEYS.iter().map(|c| format!("{table}_{c}")).collect();
    let found: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master
              WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
        )?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (name, sql) in found {
        if names.contains(&name) {
            conn.execute(&format!("DROP INDEX {}", quote(&name)), [])?;
            out.push(sql);
        }
    }
    Ok(out)
}

/// Re-creates the indexes [`suspend_key_indexes`] dropped.
pub(crate) fn restore_indexes(conn: &Connection, sql: &[String]) -> rusqlite::Result<()> {
    for s in sql {
        conn.execute(s, [])?;
    }
    Ok(())
}

/// A code column's value as text (QGIS may have retyped it as a number).
fn text_of(v: rusqlite::types::Value) -> String {
    match v {
        rusqlite::types::Value::Text(s) => s,
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Real(f) => f.to_string(),
        _ => String::new(),
    }
}

pub(crate) fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE name = ?1 AND type IN ('table', 'view')",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// ` WHERE <fid> IN (…)`: the condition that keeps the features whose
/// R-tree box meets the box bound as `?1..?4` (min x, min y, max x, max y).
pub(crate) fn where_in_box(fid: &str, rtree: &str) -> String {
    format!(
        " WHERE {} IN (SELECT id FROM {} WHERE maxx >= ?1 AND minx <= ?3 AND maxy >= ?2 AND miny <= ?4)",
        quote(fid),
        quote(rtree)
    )
}

pub(crate) fn rtree_name(table: &str, geom: &str) -> String {
    format!("rtree_{table}_{geom}")
}

/// The R-tree virtual table and its triggers exactly as in the GeoPackage
/// 1.3.1 `gpkg_rtree_index` extension (with the update3 fixed in 1.2.1).
fn rtree_ddl(table: &str, geom: &str, fid: &str) -> String {
    let rtree = rtree_name(table, geom);
    let (t, c, i, r) = (quote(table), quote(geom), quote(fid), quote(&rtree));
    let trig = |suffix: &str| quote(&format!("{rtree}_{suffix}"));
    let values = format!(
        "VALUES (NEW.{i}, ST_MinX(NEW.{c}), ST_MaxX(NEW.{c}), ST_MinY(NEW.{c}), ST_MaxY(NEW.{c}))"
    );
    format!(
        "CREATE VIRTUAL TABLE {r} USING rtree(id, minx, maxx, miny, maxy);
CREATE TRIGGER {insert} AFTER INSERT ON {t}
  WHEN (NEW.{c} NOT NULL AND NOT ST_IsEmpty(NEW.{c}))
BEGIN
  INSERT OR REPLACE INTO {r} {values};
END;
CREATE TRIGGER {update1} AFTER UPDATE OF {c} ON {t}
  WHEN OLD.{i} = NEW.{i} AND (NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c}))
BEGIN
  INSERT OR REPLACE INTO {r} {values};
END;
CREATE TRIGGER {update2} AFTER UPDATE OF {c} ON {t}
  WHEN OLD.{i} = NEW.{i} AND (NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c}))
BEGIN
  DELETE FROM {r} WHERE id = OLD.{i};
END;
CREATE TRIGGER {update3} AFTER UPDATE ON {t}
  WHEN OLD.{i} != NEW.{i} AND (NEW.{c} NOTNULL AND NOT ST_IsEmpty(NEW.{c}))
BEGIN
  DELETE FROM {r} WHERE id = OLD.{i};
  INSERT OR REPLACE INTO {r} {values};
END;
CREATE TRIGGER {update4} AFTER UPDATE ON {t}
  WHEN OLD.{i} != NEW.{i} AND (NEW.{c} ISNULL OR ST_IsEmpty(NEW.{c}))
BEGIN
  DELETE FROM {r} WHERE id IN (OLD.{i}, NEW.{i});
END;
CREATE TRIGGER {delete} AFTER DELETE ON {t}
  WHEN OLD.{c} NOT NULL
BEGIN
  DELETE FROM {r} WHERE id = OLD.{i};
END;",
        insert = trig("insert"),
        update1 = trig("update1"),
        update2 = trig("update2"),
        update3 = trig("update3"),
        update4 = trig("update4"),
        delete = trig("delete"),
    )
}

/// Drops a trigger inside the current transaction and returns its SQL so it
/// can be re-created verbatim; `None` if there is no such trigger. DDL is
/// transactional, so a rollback brings the trigger back by itself.
fn suspend_trigger(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_some() {
        conn.execute(&format!("DROP TRIGGER {}", quote(name)), [])?;
    }
    Ok(sql)
}

/// One R-tree cell: an id and `[minx, maxx, miny, maxy]` as the 32-bit
/// floats SQLite stores.
#[derive(Debug, Clone, Copy)]
struct RtreeEntry {
    id: i64,
    bbox: [f32; 4],
}

/// Bytes per cell of a 2D R-tree node: i64 id + four f32.
const RTREE_CELL: usize = 24;

impl RtreeEntry {
    /// From an exact `[min_x, min_y, max_x, max_y]`, rounded outward exactly
    /// like SQLite's `rtreeValueDown`/`rtreeValueUp`, so the bulk-loaded
    /// index holds the same boxes the triggers would have written.
    fn new(id: i64, [min_x, min_y, max_x, max_y]: [f64; 4]) -> RtreeEntry {
        const TOWARDS: f64 = 1.0 - 1.0 / 8_388_608.0;
        const AWAY: f64 = 1.0 + 1.0 / 8_388_608.0;
        let down = |d: f64| {
            let f = d as f32;
            if f64::from(f) > d {
                (d * if d < 0.0 { AWAY } else { TOWARDS }) as f32
            } else {
                f
            }
        };
        let up = |d: f64| {
            let f = d as f32;
            if f64::from(f) < d {
                (d * if d < 0.0 { TOWARDS } else { AWAY }) as f32
            } else {
                f
            }
        };
        RtreeEntry {
            id,
            bbox: [down(min_x), up(max_x), down(min_y), up(max_y)],
        }
    }

    fn center(&self, axis: usize) -> f64 {
        f64::from(self.bbox[2 * axis]) + f64::from(self.bbox[2 * axis + 1])
    }
}

/// Every entry of an R-tree (its values are f32, so the narrowing is exact).
fn read_rtree(conn: &Connection, rtree: &str) -> rusqlite::Result<Vec<RtreeEntry>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT id, minx, maxx, miny, maxy FROM {}",
        quote(rtree)
    ))?;
    let rows = stmt.query_map([], |r| {
        let v = |i| r.get::<_, f64>(i).map(|v| v as f32);
        Ok(RtreeEntry {
            id: r.get(0)?,
            bbox: [v(1)?, v(2)?, v(3)?, v(4)?],
        })
    })?;
    rows.collect()
}

/// Replaces the content of an R-tree with a packed tree built by
/// Sort-Tile-Recursive from `level`, writing SQLite's shadow tables directly
/// (as GDAL does): a few sequential writes per 50 entries instead of an
/// R*-tree insertion per entry, and full nodes.
///
/// The format is fixed by SQLite (rtree.c): `<r>_node(nodeno, data)` holds
/// blobs all the size of the root, node 1: a big-endian u16 depth (root only;
/// leaves are depth 0), a u16 cell count, then cells of a big-endian i64
/// (rowid in leaves, child node otherwise) and four big-endian f32.
/// `<r>_parent` maps every other node to its parent, `<r>_rowid` every entry
/// to its leaf. `rtreecheck()` validates all of it in the tests.
fn bulk_load_rtree(
    conn: &Connection,
    rtree: &str,
    mut level: Vec<RtreeEntry>,
) -> rusqlite::Result<()> {
    let [node_t, parent_t, rowid_t] =
        ["node", "parent", "rowid"].map(|s| quote(&format!("{rtree}_{s}")));
    let node_size: Option<i64> = conn
        .query_row(
            &format!("SELECT length(data) FROM {node_t} WHERE nodeno = 1"),
            [],
            |r| r.get(0),
        )
        .optional()?;
    let node_size = node_size.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let cap = node_size.saturating_sub(4) / RTREE_CELL;
    if cap < 2 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!(
                "R-tree {rtree} has no usable root node ({node_size} bytes)"
            )),
        ));
    }
    conn.execute_batch(&format!(
        "DELETE FROM {node_t}; DELETE FROM {parent_t}; DELETE FROM {rowid_t};"
    ))?;
    let mut put_node = conn.prepare(&format!(
        "INSERT INTO {node_t} (nodeno, data) VALUES (?1, ?2)"
    ))?;
    let mut put_parent = conn.prepare(&format!(
        "INSERT INTO {parent_t} (nodeno, parentnode) VALUES (?1, ?2)"
    ))?;
    let mut leaf_of = Vec::with_capacity(level.len());
    let mut blob = vec![0u8; node_size];
    // Writes one node and its parent/rowid mappings; returns its bounding box.
    let mut write_node = |node: i64, depth: u16, cells: &[RtreeEntry]| {
        blob.fill(0);
        if node == 1 {
            blob[..2].copy_from_slice(&depth.to_be_bytes());
        }
        // cells.len() <= cap < node_size / 24, and blobs are far below 1.5 MB.
        blob[2..4].copy_from_slice(&(cells.len() as u16).to_be_bytes());
        let mut bbox = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for (k, e) in cells.iter().enumerate() {
            let cell = &mut blob[4 + k * RTREE_CELL..4 + (k + 1) * RTREE_CELL];
            cell[..8].copy_from_slice(&e.id.to_be_bytes());
            for (j, v) in e.bbox.iter().enumerate() {
                cell[8 + 4 * j..12 + 4 * j].copy_from_slice(&v.to_bits().to_be_bytes());
            }
            bbox = [
                bbox[0].min(e.bbox[0]),
                bbox[1].max(e.bbox[1]),
                bbox[2].min(e.bbox[2]),
                bbox[3].max(e.bbox[3]),
            ];
            if depth == 0 {
                leaf_of.push((e.id, node));
            } else {
                put_parent.execute((e.id, node))?;
            }
        }
        put_node.execute((node, blob.as_slice()))?;
        Ok::<_, rusqlite::Error>(RtreeEntry { id: node, bbox })
    };
    let mut next_node = 2i64;
    let mut depth = 0u16;
    while level.len() > cap {
        str_sort(&mut level, cap);
        let mut parents = Vec::with_capacity(level.len().div_ceil(cap));
        for cells in level.chunks(cap) {
            parents.push(write_node(next_node, depth, cells)?);
            next_node += 1;
        }
        level = parents;
        depth += 1;
    }
    write_node(1, depth, &level)?;
    // The rowid table is keyed by fid: inserting in key order appends.
    leaf_of.sort_unstable();
    let mut put_rowid = conn.prepare(&format!(
        "INSERT INTO {rowid_t} (rowid, nodeno) VALUES (?1, ?2)"
    ))?;
    for (id, node) in leaf_of {
        put_rowid.execute((id, node))?;
    }
    Ok(())
}

/// `[min_x, min_y, max_x, max_y]` of everything in an R-tree, `None` if it
/// is empty: the union of the root node's cells, which SQLite keeps equal to
/// the union of all entries, so this is O(1) where `min(minx)` would scan
/// the whole index.
fn rtree_extent(conn: &Connection, rtree: &str) -> rusqlite::Result<Option<[f64; 4]>> {
    let root: Option<Vec<u8>> = conn
        .query_row(
            &format!(
                "SELECT data FROM {} WHERE nodeno = 1",
                quote(&format!("{rtree}_node"))
            ),
            [],
            |r| r.get(0),
        )
        .optional()?;
    let root = root.unwrap_or_default();
    let cells = root
        .get(2..4)
        .map_or(0, |n| usize::from(u16::from_be_bytes([n[0], n[1]])));
    let coord = |cell: &[u8], i: usize| {
        let b = &cell[8 + 4 * i..12 + 4 * i];
        f64::from(f32::from_bits(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    };
    let mut bounds = Bounds::new();
    // A short or corrupt blob yields fewer cells, never a panic.
    for cell in root
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(RTREE_CELL)
        .take(cells)
    {
        bounds.add(Coord {
            x: coord(cell, 0),
            y: coord(cell, 2),
        });
        bounds.add(Coord {
            x: coord(cell, 1),
            y: coord(cell, 3),
        });
    }
    Ok(bounds.get())
}

/// Sort-Tile-Recursive order: vertical slices of about sqrt(nodes) nodes
/// each by x, each slice by y, so consecutive runs of `cap` entries form
/// compact nodes.
fn str_sort(entries: &mut [RtreeEntry], cap: usize) {
    let nodes = entries.len().div_ceil(cap);
    let slices = (nodes as f64).sqrt().ceil() as usize;
    entries.sort_unstable_by(|a, b| a.center(0).total_cmp(&b.center(0)));
    for slice in entries.chunks_mut(slices.max(1) * cap) {
        slice.sort_unstable_by(|a, b| a.center(1).total_cmp(&b.center(1)));
    }
}

/// Registers the SQL functions the R-tree triggers call. SQLite has none of
/// them built in; without them every insert into a layer would fail.
///
/// Like GDAL's, they return NULL for NULL or undecodable input, so such rows
/// are simply not indexed.
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    fn envelope_arg(ctx: &Context<'_>) -> Option<Option<[f64; 4]>> {
        match ctx.get_raw(0) {
            ValueRef::Blob(blob) => blob_envelope(blob).ok(),
            _ => None,
        }
    }
    conn.create_scalar_function("ST_IsEmpty", 1, flags, |ctx| {
        Ok(envelope_arg(ctx).map(|env| env.is_none()))
    })?;
    for (name, i) in [
        ("ST_MinX", 0),
        ("ST_MinY", 1),
        ("ST_MaxX", 2),
        ("ST_MaxY", 3),
    ] {
        conn.create_scalar_function(name, 1, flags, move |ctx| {
            Ok(envelope_arg(ctx).flatten().map(|env| env[i]))
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// GeoPackage geometry blobs
// ---------------------------------------------------------------------------

/// Encodes a geometry as a GeoPackage geometry blob: the GeoPackageBinary
/// header (little-endian, no envelope for points, `[minx, maxx, miny, maxy]`
/// otherwise, empty flag for empty geometries) followed by 2D ISO WKB.
///
/// `Line` is written as a LineString, `Rect` and `Triangle` as Polygons, and a
/// Point whose coordinates are both NaN as the empty point.
pub fn encode_geometry(geometry: &Geometry<f64>, srs_id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    encode(geometry, srs_id, &mut out);
    out
}

/// [`encode_geometry`] into a caller-owned buffer, which is cleared first;
/// reusing one buffer makes bulk encoding allocation-free.
pub fn encode_geometry_into(geometry: &Geometry<f64>, srs_id: i32, out: &mut Vec<u8>) {
    encode(geometry, srs_id, out);
}

/// Decodes a GeoPackage geometry blob in either byte order, with any envelope
/// kind (none, XY, XYZ, XYM, XYZM) and 2D, Z, M or ZM ISO WKB; Z and M values
/// are dropped. Never panics: malformed or truncated input is an error.
pub fn decode_geometry(blob: &[u8]) -> Result<Geometry<f64>, StoreError> {
    decode(blob).map_err(|reason| StoreError::Blob { reason })
}

const WKB_POINT: u32 = 1;
const WKB_LINESTRING: u32 = 2;
const WKB_POLYGON: u32 = 3;
const WKB_MULTIPOINT: u32 = 4;
const WKB_MULTILINESTRING: u32 = 5;
const WKB_MULTIPOLYGON: u32 = 6;
const WKB_COLLECTION: u32 = 7;

/// Nesting limit for geometry collections, so hostile input cannot exhaust
/// the stack.
const MAX_DEPTH: u32 = 32;

/// Running `[min_x, min_y, max_x, max_y]`; NaN coordinates never compare
/// and so never count.
struct Bounds([f64; 4]);

impl Bounds {
    fn new() -> Bounds {
        Bounds([
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ])
    }

    #[inline]
    fn add(&mut self, c: Coord<f64>) {
        let b = &mut self.0;
        if c.x < b[0] {
            b[0] = c.x;
        }
        if c.y < b[1] {
            b[1] = c.y;
        }
        if c.x > b[2] {
            b[2] = c.x;
        }
        if c.y > b[3] {
            b[3] = c.y;
        }
    }

    fn get(&self) -> Option<[f64; 4]> {
        (self.0[0] <= self.0[2] && self.0[1] <= self.0[3]).then_some(self.0)
    }
}

pub(crate) fn geometry_kind(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) => "Line",
        Geometry::LineString(_) => "LineString",
        Geometry::Polygon(_) => "Polygon",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::GeometryCollection(_) => "GeometryCollection",
        Geometry::Rect(_) => "Rect",
        Geometry::Triangle(_) => "Triangle",
    }
}

fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::Point(p) => p.x().is_nan() && p.y().is_nan(),
        Geometry::Line(_) | Geometry::Rect(_) | Geometry::Triangle(_) => false,
        Geometry::LineString(ls) => ls.0.is_empty(),
        Geometry::Polygon(p) => p.exterior().0.is_empty(),
        Geometry::MultiPoint(m) => m.0.iter().all(|p| p.x().is_nan() && p.y().is_nan()),
        Geometry::MultiLineString(m) => m.0.iter().all(|ls| ls.0.is_empty()),
        Geometry::MultiPolygon(m) => m.0.iter().all(|p| p.exterior().0.is_empty()),
        Geometry::GeometryCollection(c) => c.0.iter().all(is_empty),
    }
}

/// Writes the blob into `out` and returns the geometry's bounds (`None` when
/// empty). The envelope precedes the WKB, so it is reserved first and filled
/// in after the single pass over the coordinates.
fn encode(geometry: &Geometry<f64>, srs_id: i32, out: &mut Vec<u8>) -> Option<[f64; 4]> {
    out.clear();
    let empty = is_empty(geometry);
    let envelope = !empty && !matches!(geometry, Geometry::Point(_));
    let flags = 1 | if envelope { 1 << 1 } else { 0 } | if empty { 1 << 4 } else { 0 };
    out.extend_from_slice(&[b'G', b'P', 0, flags]);
    out.extend_from_slice(&srs_id.to_le_bytes());
    let envelope_at = out.len();
    if envelope {
        out.extend_from_slice(&[0; 32]);
    }
    let mut bounds = Bounds::new();
    write_wkb(geometry, out, &mut bounds);
    let bbox = if empty { None } else { bounds.get() };
    if envelope {
        let [min_x, min_y, max_x, max_y] = bbox.unwrap_or([f64::NAN; 4]);
        for (k, v) in [min_x, max_x, min_y, max_y].into_iter().enumerate() {
            let at = envelope_at + 8 * k;
            out[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    bbox
}

#[inline]
fn put_header(out: &mut Vec<u8>, wkb_type: u32) {
    out.push(1);
    out.extend_from_slice(&wkb_type.to_le_bytes());
}

#[inline]
fn put_count(out: &mut Vec<u8>, n: usize) {
    // WKB counts are u32; an in-memory geometry with 2^32 parts would need
    // tens of GiB, so the narrowing cannot bite in practice.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

#[inline]
fn put_coord(out: &mut Vec<u8>, c: Coord<f64>, bounds: &mut Bounds) {
    bounds.add(c);
    out.extend_from_slice(&c.x.to_le_bytes());
    out.extend_from_slice(&c.y.to_le_bytes());
}

/// An empty point is written with the quiet NaN the spec prescribes
/// (requirement 152), whatever NaN payload it came with.
#[inline]
fn put_point(out: &mut Vec<u8>, p: &Point<f64>, bounds: &mut Bounds) {
    let empty = p.x().is_nan() && p.y().is_nan();
    let c = if empty {
        Coord {
            x: f64::NAN,
            y: f64::NAN,
        }
    } else {
        p.0
    };
    put_coord(out, c, bounds);
}

fn put_coords(out: &mut Vec<u8>, coords: &[Coord<f64>], bounds: &mut Bounds) {
    put_count(out, coords.len());
    out.reserve(coords.len() * 16);
    for &c in coords {
        put_coord(out, c, bounds);
    }
}

fn put_polygon_body(out: &mut Vec<u8>, p: &Polygon<f64>, bounds: &mut Bounds) {
    if p.exterior().0.is_empty() {
        put_count(out, 0);
        return;
    }
    put_count(out, 1 + p.interiors().len());
    put_coords(out, &p.exterior().0, bounds);
    for ring in p.interiors() {
        put_coords(out, &ring.0, bounds);
    }
}

fn write_wkb(g: &Geometry<f64>, out: &mut Vec<u8>, bounds: &mut Bounds) {
    match g {
        Geometry::Point(p) => {
            put_header(out, WKB_POINT);
            put_point(out, p, bounds);
        }
        Geometry::Line(l) => {
            put_header(out, WKB_LINESTRING);
            put_coords(out, &[l.start, l.end], bounds);
        }
        Geometry::LineString(ls) => {
            put_header(out, WKB_LINESTRING);
            put_coords(out, &ls.0, bounds);
        }
        Geometry::Polygon(p) => {
            put_header(out, WKB_POLYGON);
            put_polygon_body(out, p, bounds);
        }
        Geometry::MultiPoint(m) => {
            put_header(out, WKB_MULTIPOINT);
            put_count(out, m.0.len());
            for p in &m.0 {
                put_header(out, WKB_POINT);
                put_point(out, p, bounds);
            }
        }
        Geometry::MultiLineString(m) => {
            put_header(out, WKB_MULTILINESTRING);
            put_count(out, m.0.len());
            for ls in &m.0 {
                put_header(out, WKB_LINESTRING);
                put_coords(out, &ls.0, bounds);
            }
        }
        Geometry::MultiPolygon(m) => {
            put_header(out, WKB_MULTIPOLYGON);
            put_count(out, m.0.len());
            for p in &m.0 {
                put_header(out, WKB_POLYGON);
                put_polygon_body(out, p, bounds);
            }
        }
        Geometry::GeometryCollection(c) => {
            put_header(out, WKB_COLLECTION);
            put_count(out, c.0.len());
            for g in &c.0 {
                write_wkb(g, out, bounds);
            }
        }
        Geometry::Rect(r) => write_wkb(&Geometry::Polygon(r.to_polygon()), out, bounds),
        Geometry::Triangle(t) => write_wkb(&Geometry::Polygon(t.to_polygon()), out, bounds),
    }
}

/// A bounds-checked cursor; every read that would run past the end is an
/// error instead of a panic.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self.bytes.split_first_chunk::<N>().ok_or_else(|| {
            format!(
                "truncated: {N} more bytes needed but only {} left",
                self.bytes.len()
            )
        })?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self, le: bool) -> Result<u32, String> {
        let b = self.take()?;
        Ok(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, le: bool) -> Result<f64, String> {
        let b = self.take()?;
        Ok(if le {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    /// Reads an element count and checks that the remaining bytes can hold
    /// that many elements of at least `min_size` bytes, so a corrupt count
    /// cannot trigger a huge allocation.
    fn count(&mut self, le: bool, min_size: usize) -> Result<usize, String> {
        let n = self.u32(le)? as usize;
        match n.checked_mul(min_size) {
            Some(need) if need <= self.bytes.len() => Ok(n),
            _ => Err(format!(
                "count {n} does not fit in the {} bytes left",
                self.bytes.len()
            )),
        }
    }
}

struct Header {
    empty: bool,
    /// `[min_x, min_y, max_x, max_y]`.
    envelope: Option<[f64; 4]>,
    wkb: usize,
}

fn parse_header(blob: &[u8]) -> Result<Header, String> {
    let mut r = Reader { bytes: blob };
    if r.take::<2>()? != *b"GP" {
        return Err("it does not start with the magic bytes 'GP'".into());
    }
    let version = r.u8()?;
    if version != 0 {
        return Err(format!("unsupported GeoPackageBinary version {version}"));
    }
    let flags = r.u8()?;
    if flags & 0b0010_0000 != 0 {
        return Err(
            "ExtendedGeoPackageBinary (user-defined geometry types) is not supported".into(),
        );
    }
    let le = flags & 1 == 1;
    let doubles = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 4,
        2 | 3 => 6,
        4 => 8,
        code => return Err(format!("invalid envelope contents indicator {code}")),
    };
    r.take::<4>()?; // srs_id: the layer's srs is authoritative
    let envelope = if doubles == 0 {
        None
    } else {
        let (min_x, max_x, min_y, max_y) = (r.f64(le)?, r.f64(le)?, r.f64(le)?, r.f64(le)?);
        for _ in 4..doubles {
            r.f64(le)?;
        }
        Some([min_x, min_y, max_x, max_y])
    };
    Ok(Header {
        empty: flags & 0b0001_0000 != 0,
        envelope,
        wkb: blob.len() - r.bytes.len(),
    })
}

pub(crate) fn decode(blob: &[u8]) -> Result<Geometry<f64>, String> {
    let header = parse_header(blob)?;
    decode_wkb(&blob[header.wkb..])
}

/// Writes `geometry` as little-endian EWKB with `srid` on the outer
/// geometry into `out` (cleared first): what PostGIS reads into a
/// `geometry(…, srid)` column.
pub(crate) fn encode_ewkb(geometry: &Geometry<f64>, srid: u32, out: &mut Vec<u8>) {
    out.clear();
    write_wkb(geometry, out, &mut Bounds::new());
    // out = [1 (little-endian), type u32, body…]: flag the SRID and insert it.
    let ty = u32::from_le_bytes([out[1], out[2], out[3], out[4]]) | 0x2000_0000;
    out[1..5].copy_from_slice(&ty.to_le_bytes());
    out.splice(5..5, srid.to_le_bytes());
}

/// Decodes plain ISO/OGC WKB (as `ST_AsBinary` returns it) in either byte
/// order; never panics.
pub(crate) fn decode_wkb(bytes: &[u8]) -> Result<Geometry<f64>, String> {
    let mut r = Reader { bytes };
    let g = read_wkb(&mut r, 0)?;
    if !r.bytes.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the WKB geometry",
            r.bytes.len()
        ));
    }
    Ok(g)
}

/// The blob's `[min_x, min_y, max_x, max_y]`, `None` if empty: from the
/// header envelope when there is one (cheap), else from the WKB.
fn blob_envelope(blob: &[u8]) -> Result<Option<[f64; 4]>, String> {
    let header = parse_header(blob)?;
    if header.empty {
        return Ok(None);
    }
    if let Some(env) = header.envelope.filter(|e| e.iter().all(|v| !v.is_nan())) {
        return Ok(Some(env));
    }
    let g = decode(blob)?;
    let mut bounds = Bounds::new();
    add_bounds(&g, &mut bounds);
    Ok(bounds.get())
}

fn add_bounds(g: &Geometry<f64>, b: &mut Bounds) {
    let ring = |ls: &LineString<f64>, b: &mut Bounds| ls.0.iter().for_each(|&c| b.add(c));
    let poly = |p: &Polygon<f64>, b: &mut Bounds| {
        ring(p.exterior(), b);
        p.interiors().iter().for_each(|r| ring(r, b));
    };
    match g {
        Geometry::Point(p) => b.add(p.0),
        Geometry::LineString(ls) => ring(ls, b),
        Geometry::Polygon(p) => poly(p, b),
        Geometry::MultiPoint(m) => m.0.iter().for_each(|p| b.add(p.0)),
        Geometry::MultiLineString(m) => m.0.iter().for_each(|ls| ring(ls, b)),
        Geometry::MultiPolygon(m) => m.0.iter().for_each(|p| poly(p, b)),
        Geometry::GeometryCollection(c) => c.0.iter().for_each(|g| add_bounds(g, b)),
        Geometry::Line(l) => {
            b.add(l.start);
            b.add(l.end);
        }
        Geometry::Rect(r) => {
            b.add(r.min());
            b.add(r.max());
        }
        Geometry::Triangle(t) => t.to_array().into_iter().for_each(|c| b.add(c)),
    }
}

fn read_coord(r: &mut Reader<'_>, le: bool, dims: usize) -> Result<Coord<f64>, String> {
    let c = Coord {
        x: r.f64(le)?,
        y: r.f64(le)?,
    };
    for _ in 2..dims {
        r.f64(le)?;
    }
    Ok(c)
}

fn read_coords(r: &mut Reader<'_>, le: bool, dims: usize) -> Result<LineString<f64>, String> {
    let n = r.count(le, 8 * dims)?;
    let mut coords = Vec::with_capacity(n);
    for _ in 0..n {
        coords.push(read_coord(r, le, dims)?);
    }
    Ok(LineString(coords))
}

fn read_polygon(r: &mut Reader<'_>, le: bool, dims: usize) -> Result<Polygon<f64>, String> {
    let n = r.count(le, 4)?;
    let mut rings = Vec::with_capacity(n);
    for _ in 0..n {
        rings.push(read_coords(r, le, dims)?);
    }
    let mut rings = rings.into_iter();
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Ok(Polygon::new(exterior, rings.collect()))
}

/// Reads `count` member geometries of a multi-geometry, each of which must
/// decode to the variant `pick` accepts.
fn read_members<T>(
    r: &mut Reader<'_>,
    le: bool,
    depth: u32,
    min_size: usize,
    what: &str,
    pick: impl Fn(Geometry<f64>) -> Result<T, Geometry<f64>>,
) -> Result<Vec<T>, String> {
    let n = r.count(le, min_size)?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let g = read_wkb(r, depth + 1)?;
        members.push(pick(g).map_err(|g| format!("{what} contains a {}", geometry_kind(&g)))?);
    }
    Ok(members)
}

fn read_wkb(r: &mut Reader<'_>, depth: u32) -> Result<Geometry<f64>, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "geometry collections nested deeper than {MAX_DEPTH}"
        ));
    }
    let le = match r.u8()? {
        0 => false,
        1 => true,
        b => return Err(format!("invalid WKB byte order {b}")),
    };
    let code = r.u32(le)?;
    // ISO WKB: +1000 Z, +2000 M, +3000 ZM.
    let dims = match code / 1000 {
        0 => 2,
        1 | 2 => 3,
        3 => 4,
        _ => return Err(format!("unsupported WKB geometry type {code}")),
    };
    Ok(match code % 1000 {
        WKB_POINT => Geometry::Point(Point(read_coord(r, le, dims)?)),
        WKB_LINESTRING => Geometry::LineString(read_coords(r, le, dims)?),
        WKB_POLYGON => Geometry::Polygon(read_polygon(r, le, dims)?),
        WKB_MULTIPOINT => Geometry::MultiPoint(MultiPoint(read_members(
            r,
            le,
            depth,
            21,
            "MultiPoint",
            |g| match g {
                Geometry::Point(p) => Ok(p),
                g => Err(g),
            },
        )?)),
        WKB_MULTILINESTRING => Geometry::MultiLineString(MultiLineString(read_members(
            r,
            le,
            depth,
            9,
            "MultiLineString",
            |g| match g {
                Geometry::LineString(l) => Ok(l),
                g => Err(g),
            },
        )?)),
        WKB_MULTIPOLYGON => Geometry::MultiPolygon(MultiPolygon(read_members(
            r,
            le,
            depth,
            9,
            "MultiPolygon",
            |g| match g {
                Geometry::Polygon(p) => Ok(p),
                g => Err(g),
            },
        )?)),
        WKB_COLLECTION => Geometry::GeometryCollection(GeometryCollection(read_members(
            r,
            le,
            depth,
            9,
            "GeometryCollection",
            Ok,
        )?)),
        _ => return Err(format!("unsupported WKB geometry type {code}")),
    })
}

/// The smallest `[minx, miny, maxx, maxy]` box holding `acc` (if any) and `b`.
#[must_use]
pub fn merge_bbox(acc: Option<[f64; 4]>, b: [f64; 4]) -> [f64; 4] {
    match acc {
        None => b,
        Some(a) => [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{Line, Rect, coord, line_string, point, polygon};

    fn schema(name: &str, geometry: GeomType) -> LayerSchema {
        LayerSchema {
            name: name.into(),
            geometry,
            columns: vec![
                Column {
                    name: "name".into(),
                    ty: ColumnType::Text,
                },
                Column {
                    name: "pop".into(),
                    ty: ColumnType::Integer,
                },
                Column {
                    name: "area".into(),
                    ty: ColumnType::Real,
                },
            ],
        }
    }

    fn new_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("t.gpkg")).unwrap();
        register_rounding(&store);
        (dir, store)
    }

    fn square_with_hole() -> Polygon<f64> {
        polygon!(
            exterior: [(x: 0.0, y: 0.0), (x: 10.0, y: 0.0), (x: 10.0, y: 10.0), (x: 0.0, y: 10.0)],
            interiors: [[(x: 2.0, y: 2.0), (x: 2.0, y: 4.0), (x: 4.0, y: 4.0), (x: 4.0, y: 2.0)]],
        )
    }

    fn samples() -> Vec<Geometry<f64>> {
        let hole = square_with_hole();
        let other = polygon![(x: 20.0, y: -5.0), (x: 30.0, y: -5.0), (x: 25.0, y: 1.5)];
        vec![
            Geometry::Point(point!(x: 116.397_128, y: 39.916_527)),
            Geometry::LineString(
                line_string![(x: 1.0, y: 2.0), (x: 3.0, y: -4.0), (x: 5.5, y: 6.0)],
            ),
            Geometry::Polygon(hole.clone()),
            Geometry::MultiPoint(MultiPoint(vec![
                point!(x: 1.0, y: 1.0),
                point!(x: -1.0, y: 3.0),
            ])),
            Geometry::MultiLineString(MultiLineString(vec![
                line_string![(x: 0.0, y: 0.0), (x: 1.0, y: 1.0)],
                line_string![(x: 5.0, y: 5.0), (x: 6.0, y: 7.0), (x: 8.0, y: 9.0)],
            ])),
            Geometry::MultiPolygon(MultiPolygon(vec![hole.clone(), other.clone()])),
            Geometry::GeometryCollection(GeometryCollection(vec![
                Geometry::Point(point!(x: 9.0, y: 9.0)),
                Geometry::Polygon(other),
            ])),
            Geometry::LineString(LineString(vec![])),
            Geometry::Polygon(Polygon::new(LineString(vec![]), vec![])),
            Geometry::MultiPolygon(MultiPolygon(vec![])),
            Geometry::GeometryCollection(GeometryCollection(vec![])),
        ]
    }

    #[test]
    fn blob_round_trip_every_type() {
        let mut buf = Vec::new();
        for g in samples() {
            encode_geometry_into(&g, 4326, &mut buf);
            assert_eq!(buf, encode_geometry(&g, 4326));
            assert_eq!(&buf[..3], b"GP\0");
            assert_eq!(i32::from_le_bytes(buf[4..8].try_into().unwrap()), 4326);
            let flags = buf[3];
            let empty = is_empty(&g);
            assert_eq!(flags & 1, 1, "little-endian");
            assert_eq!(flags & 0x10 != 0, empty, "{g:?}");
            let expect_env = !empty && !matches!(g, Geometry::Point(_));
            assert_eq!((flags >> 1) & 7, u8::from(expect_env), "{g:?}");
            assert_eq!(decode_geometry(&buf).unwrap(), g);
            let mut bounds = Bounds::new();
            add_bounds(&g, &mut bounds);
            assert_eq!(blob_envelope(&buf).unwrap(), bounds.get());
        }
    }

    #[test]
    fn envelope_in_header_is_minx_maxx_miny_maxy() {
        let blob = encode_geometry(&Geometry::Polygon(square_with_hole()), 4326);
        assert_eq!(blob[3], 0b0000_0011);
        let env: Vec<f64> = blob[8..40]
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(env, [0.0, 10.0, 0.0, 10.0]);
        // WKB follows: little-endian Polygon with 2 rings.
        assert_eq!(blob[40], 1);
        assert_eq!(u32::from_le_bytes(blob[41..45].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(blob[45..49].try_into().unwrap()), 2);
    }

    #[test]
    fn other_shapes_are_written_as_core_types() {
        let line = Geometry::Line(Line::new(coord! {x: 1.0, y: 2.0}, coord! {x: 3.0, y: 4.0}));
        let back = decode_geometry(&encode_geometry(&line, 4326)).unwrap();
        assert_eq!(
            back,
            Geometry::LineString(line_string![(x: 1.0, y: 2.0), (x: 3.0, y: 4.0)])
        );
        let rect = Geometry::Rect(Rect::new(coord! {x: 0.0, y: 0.0}, coord! {x: 2.0, y: 1.0}));
        let Geometry::Polygon(p) = decode_geometry(&encode_geometry(&rect, 4326)).unwrap() else {
            panic!("rect must decode as a polygon");
        };
        assert_eq!(p.exterior().0.len(), 5);
    }

    #[test]
    fn empty_point_is_nan_with_empty_flag() {
        let g = Geometry::Point(point!(x: -f64::NAN, y: f64::NAN));
        let blob = encode_geometry(&g, 4326);
        assert_eq!(blob[3], 0b0001_0001);
        assert_eq!(
            &blob[blob.len() - 16..],
            &[0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f]
        );
        let Geometry::Point(p) = decode_geometry(&blob).unwrap() else {
            panic!()
        };
        assert!(p.x().is_nan() && p.y().is_nan());
        assert_eq!(blob_envelope(&blob).unwrap(), None);
    }

    /// A hand-built big-endian blob with an XYZ envelope and a LineString Z.
    #[test]
    fn decodes_big_endian_and_z_envelopes() {
        let mut b = vec![b'G', b'P', 0, 2 << 1];
        b.extend_from_slice(&4326i32.to_be_bytes());
        for v in [1.0f64, 3.0, 2.0, 4.0, 0.0, 9.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.push(0);
        b.extend_from_slice(&1002u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        for v in [1.0f64, 2.0, 0.0, 3.0, 4.0, 9.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let g = decode_geometry(&b).unwrap();
        assert_eq!(
            g,
            Geometry::LineString(line_string![(x: 1.0, y: 2.0), (x: 3.0, y: 4.0)])
        );
        assert_eq!(blob_envelope(&b).unwrap(), Some([1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn decodes_every_envelope_kind() {
        let g = Geometry::MultiPoint(MultiPoint(vec![
            point!(x: 1.0, y: 2.0),
            point!(x: 3.0, y: 4.0),
        ]));
        let wkb = &encode_geometry(&g, 4326)[40..];
        for (code, doubles) in [(0u8, 0), (1, 4), (2, 6), (3, 6), (4, 8)] {
            for le in [true, false] {
                let mut b = vec![b'G', b'P', 0, (code << 1) | u8::from(le)];
                b.extend_from_slice(&if le {
                    0i32.to_le_bytes()
                } else {
                    0i32.to_be_bytes()
                });
                for v in [1.0f64, 3.0, 2.0, 4.0, -1.0, 1.0, -2.0, 2.0]
                    .into_iter()
                    .take(doubles)
                {
                    b.extend_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() });
                }
                b.extend_from_slice(wkb);
                assert_eq!(
                    decode_geometry(&b).unwrap(),
                    g,
                    "envelope code {code}, le {le}"
                );
                assert_eq!(blob_envelope(&b).unwrap(), Some([1.0, 2.0, 3.0, 4.0]));
            }
        }
        let mut bad = encode_geometry(&g, 4326);
        bad[3] = (5 << 1) | 1;
        assert!(decode_geometry(&bad).is_err());
    }

    #[test]
    fn decode_rejects_truncation_and_garbage_without_panicking() {
        for g in samples() {
            let blob = encode_geometry(&g, 4326);
            for len in 0..blob.len() {
                assert!(
                    decode_geometry(&blob[..len]).is_err(),
                    "{g:?} truncated to {len}"
                );
                let _ = blob_envelope(&blob[..len]);
            }
            let mut longer = blob.clone();
            longer.push(0);
            assert!(decode_geometry(&longer).is_err());
        }
        let err = decode_geometry(b"not a geometry").unwrap_err();
        assert!(err.to_string().contains("'GP'"), "{err}");

        // xorshift: std-only fuzzing over random bytes and mutated valid blobs.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid: Vec<Vec<u8>> = samples().iter().map(|g| encode_geometry(g, 4326)).collect();
        for i in 0..200_000 {
            let mut bytes = if i % 2 == 0 {
                let len = (next() % 96) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len >= 4 && i % 4 == 0 {
                    b[..4].copy_from_slice(&[b'G', b'P', 0, (next() % 16) as u8]);
                }
                b
            } else {
                valid[(next() as usize) % valid.len()].clone()
            };
            for _ in 0..(next() % 4) {
                if !bytes.is_empty() {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            let _ = decode_geometry(&bytes);
            let _ = blob_envelope(&bytes);
        }
    }

    #[test]
    fn huge_counts_and_deep_nesting_are_errors() {
        let mut b = vec![b'G', b'P', 0, 1, 0, 0, 0, 0, 1];
        b.extend_from_slice(&WKB_LINESTRING.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode_geometry(&b)
                .unwrap_err()
                .to_string()
                .contains("count")
        );

        let mut deep = vec![b'G', b'P', 0, 1, 0, 0, 0, 0];
        for _ in 0..100 {
            deep.push(1);
            deep.extend_from_slice(&WKB_COLLECTION.to_le_bytes());
            deep.extend_from_slice(&1u32.to_le_bytes());
        }
        assert!(decode_geometry(&deep).is_err());
    }

    #[test]
    fn create_open_write_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.gpkg");
        let geoms = [
            Geometry::MultiPolygon(MultiPolygon(vec![square_with_hole()])),
            Geometry::MultiPolygon(MultiPolygon(vec![])),
        ];
        {
            let mut store = Store::create(&path).unwrap();
            assert_eq!(store.path(), path);
            store
                .create_layer(&schema("grids", GeomType::MultiPolygon))
                .unwrap();
            assert!(store.has_layer("grids").unwrap());
            let mut w = store.writer("grids").unwrap();
            let fid1 = w
                .insert(
                    &geoms[0],
                    &["东城区".into(), Value::from(12_000i64), Value::from(3.5)],
                )
                .unwrap();
            let fid2 = w
                .insert(&geoms[1], &[Value::Null, Value::Null, 7.into()])
                .unwrap();
            assert_eq!((fid1, fid2), (1, 2));
            assert_eq!(w.commit().unwrap(), 2);
            store.set_meta("city", "北京").unwrap();
        }
        assert!(matches!(
            Store::create(&path),
            Err(StoreError::Exists { .. })
        ));

        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema("grids").unwrap(),
            schema("grids", GeomType::MultiPolygon)
        );
        let mut got = Vec::new();
        let n = store.for_each("grids", |f| {
            got.push(f);
            Ok(())
        });
        assert_eq!(n.unwrap(), 2);
        assert_eq!(got[0].fid, 1);
        assert_eq!(got[0].geometry, geoms[0]);
        assert_eq!(
            got[0].values,
            [
                Value::from("东城区"),
                Value::Integer(12_000),
                Value::Real(3.5)
            ]
        );
        assert_eq!(got[1].geometry, geoms[1]);
        assert_eq!(got[1].values, [Value::Null, Value::Null, Value::Real(7.0)]);
        assert_eq!(store.meta("city").unwrap().as_deref(), Some("北京"));
        assert_eq!(store.meta("nope").unwrap(), None);

        let c = store.connection();
        let app: i32 = c
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        let ver: i32 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let journal: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!((app, ver, journal.as_str()), (0x4750_4B47, 10300, "delete"));
        let (bbox, last_change): ([f64; 4], String) = c
            .query_row(
                "SELECT min_x, min_y, max_x, max_y, last_change FROM gpkg_contents
                 WHERE table_name = 'grids'",
                [],
                |r| Ok(([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?], r.get(4)?)),
            )
            .unwrap();
        assert_eq!(bbox, [0.0, 0.0, 10.0, 10.0]);
        assert!(
            last_change.len() == 24 && last_change.ends_with('Z') && &last_change[10..11] == "T",
            "{last_change}"
        );
        let srs: Vec<i64> = c
            .prepare("SELECT srs_id FROM gpkg_spatial_ref_sys ORDER BY srs_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(srs, [-1, 0, 4326]);
        let fk: Option<String> = c
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(fk, None);
    }

    #[test]
    fn open_rejects_missing_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.gpkg");
        let err = Store::open(&missing).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }));
        assert!(err.to_string().contains("missing.gpkg"), "{err}");
        assert!(!missing.exists(), "open must not create the file");

        let text = dir.path().join("notes.gpkg");
        std::fs::write(&text, "just some text, certainly not a database header").unwrap();
        let err = Store::open(&text).unwrap_err();
        assert!(matches!(err, StoreError::NotGeoPackage { .. }), "{err}");
        assert!(err.to_string().contains("notes.gpkg"), "{err}");

        let plain = dir.path().join("plain.sqlite");
        Connection::open(&plain)
            .unwrap()
            .execute_batch("CREATE TABLE t (a)")
            .unwrap();
        let err = Store::open(&plain).unwrap_err();
        assert!(err.to_string().contains("application_id"), "{err}");

        let hollow = dir.path().join("hollow.gpkg");
        Connection::open(&hollow)
            .unwrap()
            .execute_batch("PRAGMA application_id = 1196444487; CREATE TABLE gpkg_contents (a)")
            .unwrap();
        let err = Store::open(&hollow).unwrap_err();
        assert!(err.to_string().contains("gpkg_spatial_ref_sys"), "{err}");
    }

    #[test]
    fn dropped_writer_rolls_back() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("pois", GeomType::Point))
            .unwrap();
        {
            let mut w = store.writer("pois").unwrap();
            for i in 0..100 {
                let p = Geometry::Point(point!(x: f64::from(i), y: 1.0));
                w.insert(&p, &["x".into(), i.into(), Value::Null]).unwrap();
            }
            assert_eq!(w.rows(), 100);
        }
        let info = store.layers().unwrap();
        assert_eq!(info[0].count, 0);
        assert_eq!(info[0].bbox, None);
        assert_eq!(rtree_rows(&store, "pois"), 0);
        let contents: Option<f64> = store
            .connection()
            .query_row(
                "SELECT min_x FROM gpkg_contents WHERE table_name = 'pois'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(contents, None);
    }

    #[test]
    fn for_each_in_finds_exactly_the_features_whose_box_meets_the_query() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("pois", GeomType::Point))
            .unwrap();
        let mut w = store.writer("pois").unwrap();
        for i in 0..20 {
            for j in 0..20 {
                let p = Geometry::Point(point!(x: f64::from(i), y: f64::from(j)));
                w.insert(&p, &["x".into(), (i * 20 + j).into(), Value::Null])
                    .unwrap();
            }
        }
        w.commit().unwrap();
        let fids = |bbox: Option<[f64; 4]>| {
            let mut v = Vec::new();
            store
                .for_each_in("pois", bbox, |f| {
                    v.push(f.fid);
                    Ok(())
                })
                .unwrap();
            v
        };
        let all = fids(None);
        assert_eq!(all.len(), 400);
        for b in [
            [2.5, 3.0, 7.0, 4.5],
            [-1.0, -1.0, 0.0, 0.0],
            [30.0, 30.0, 40.0, 40.0],
        ] {
            // Brute force over every feature: points inside the closed box.
            let mut expect = Vec::new();
            store
                .for_each("pois", |f| {
                    let Geometry::Point(p) = f.geometry else {
                        unreachable!()
                    };
                    if p.x() >= b[0] && p.x() <= b[2] && p.y() >= b[1] && p.y() <= b[3] {
                        expect.push(f.fid);
                    }
                    Ok(())
                })
                .unwrap();
            assert_eq!(fids(Some(b)), expect, "{b:?}");
        }
        // x in {3, 4, 5, 6, 7}, y in {3, 4}.
        assert_eq!(fids(Some([2.5, 3.0, 7.0, 4.5])).len(), 5 * 2);
    }

    fn rtree_rows(store: &Store, layer: &str) -> i64 {
        assert_rtree_exact(store, layer);
        store
            .connection()
            .query_row(
                &format!("SELECT count(*) FROM rtree_{layer}_geom"),
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The index passes SQLite's own structural check and holds exactly one
    /// entry per non-empty geometry, equal to what the triggers would write.
    fn assert_rtree_exact(store: &Store, layer: &str) {
        let c = store.connection();
        let check: String = c
            .query_row(
                &format!("SELECT rtreecheck('rtree_{layer}_geom')"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(check, "ok");
        let (expected, matching, total): (i64, i64, i64) = c
            .query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM {layer} WHERE geom NOT NULL AND NOT ST_IsEmpty(geom)),
                            (SELECT count(*) FROM {layer} t JOIN rtree_{layer}_geom r ON r.id = t.fid
                             WHERE r.minx = rtree_down(ST_MinX(t.geom)) AND r.maxx = rtree_up(ST_MaxX(t.geom))
                               AND r.miny = rtree_down(ST_MinY(t.geom)) AND r.maxy = rtree_up(ST_MaxY(t.geom))),
                            (SELECT count(*) FROM rtree_{layer}_geom)"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((matching, total), (expected, expected), "index of {layer}");
        let scanned: [Option<f64>; 4] = c
            .query_row(
                &format!(
                    "SELECT min(minx), min(miny), max(maxx), max(maxy) FROM rtree_{layer}_geom"
                ),
                [],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
            )
            .unwrap();
        let root = rtree_extent(c, &format!("rtree_{layer}_geom")).unwrap();
        assert_eq!(
            root.map(|b| b.map(Some)),
            scanned.iter().all(Option::is_some).then_some(scanned)
        );
    }

    /// What SQLite's rtree stores for a min / max coordinate.
    fn register_rounding(store: &Store) {
        let c = store.connection();
        for (name, up) in [("rtree_down", false), ("rtree_up", true)] {
            c.create_scalar_function(name, 1, FunctionFlags::SQLITE_DETERMINISTIC, move |ctx| {
                let d: f64 = ctx.get(0)?;
                let e = RtreeEntry::new(0, [d, d, d, d]);
                Ok(f64::from(if up { e.bbox[1] } else { e.bbox[0] }))
            })
            .unwrap();
        }
    }

    #[test]
    fn layers_report_counts_and_bbox() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("roads", GeomType::LineString))
            .unwrap();
        store
            .create_layer(&schema("empty", GeomType::Polygon))
            .unwrap();
        store.set_meta("k", "v").unwrap();
        let mut w = store.writer("roads").unwrap();
        for i in 0..10 {
            let x = 116.0 + f64::from(i) * 0.01;
            let ls = line_string![(x: x, y: 39.5), (x: x + 0.005, y: 39.9)];
            w.insert(
                &Geometry::LineString(ls),
                &[Value::Null, Value::Null, Value::Null],
            )
            .unwrap();
        }
        w.commit().unwrap();
        let layers = store.layers().unwrap();
        assert_eq!(layers.len(), 2, "the meta table is not a feature layer");
        assert_eq!(
            (layers[0].name.as_str(), layers[0].count, layers[0].bbox),
            ("empty", 0, None)
        );
        assert_eq!(layers[1].name, "roads");
        assert_eq!(layers[1].geometry, GeomType::LineString);
        assert_eq!(layers[1].count, 10);
        let bbox = layers[1].bbox.unwrap();
        let exact = [116.0, 39.5, 116.095, 39.9];
        for k in 0..4 {
            // The R-tree stores f32 rounded outward.
            assert!((bbox[k] - exact[k]).abs() < 1e-5, "{bbox:?}");
        }
        assert!(
            bbox[0] <= exact[0]
                && bbox[1] <= exact[1]
                && bbox[2] >= exact[2]
                && bbox[3] >= exact[3]
        );
    }

    #[test]
    fn rtree_follows_inserts_updates_and_deletes() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("pois", GeomType::Point))
            .unwrap();
        let mut w = store.writer("pois").unwrap();
        for i in 0..500 {
            let p = Geometry::Point(point!(x: f64::from(i % 50), y: f64::from(i / 50)));
            w.insert(&p, &[Value::Null, Value::Null, Value::Null])
                .unwrap();
        }
        w.insert(
            &Geometry::Point(point!(x: f64::NAN, y: f64::NAN)),
            &[Value::Null, Value::Null, Value::Null],
        )
        .unwrap();
        w.commit().unwrap();
        assert_eq!(
            rtree_rows(&store, "pois"),
            500,
            "the empty point is not indexed"
        );

        let c = store.connection();
        // Every indexed box equals the feature's point.
        let mismatched: i64 = c
            .query_row(
                "SELECT count(*) FROM pois p JOIN rtree_pois_geom r ON r.id = p.fid
                 WHERE r.minx > ST_MinX(p.geom) OR r.maxx < ST_MaxX(p.geom)
                    OR r.miny > ST_MinY(p.geom) OR r.maxy < ST_MaxY(p.geom)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(mismatched, 0);
        let in_window: i64 = c
            .query_row(
                "SELECT count(*) FROM rtree_pois_geom WHERE minx >= 9.5 AND maxx <= 20.5
                 AND miny >= 1.5 AND maxy <= 3.5",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_window, 11 * 2);

        c.execute("DELETE FROM pois WHERE fid <= 100", []).unwrap();
        assert_eq!(rtree_rows(&store, "pois"), 400);
        let moved = encode_geometry(&Geometry::Point(point!(x: 1000.0, y: 1000.0)), 4326);
        c.execute("UPDATE pois SET geom = ?1 WHERE fid = 200", [&moved])
            .unwrap();
        let x: f64 = c
            .query_row("SELECT minx FROM rtree_pois_geom WHERE id = 200", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(x, 1000.0);
        c.execute("UPDATE pois SET fid = 10000 WHERE fid = 200", [])
            .unwrap();
        let ids: Vec<i64> = c
            .prepare("SELECT id FROM rtree_pois_geom WHERE minx > 999")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, [10000]);
        c.execute("UPDATE pois SET geom = NULL WHERE fid = 10000", [])
            .unwrap();
        assert_eq!(rtree_rows(&store, "pois"), 399);

        // 399 indexed points, the one made NULL and the empty point.
        assert_eq!(store.clear_layer("pois").unwrap(), 401);
        assert_eq!(rtree_rows(&store, "pois"), 0);
        assert_eq!(store.layers().unwrap()[0].count, 0);
        // AUTOINCREMENT: fids of deleted features are not reused (the
        // sequence only tracks inserts, not the fid moved to 10000 above).
        let mut w = store.writer("pois").unwrap();
        let fid = w.insert(
            &Geometry::Point(point!(x: 0.0, y: 0.0)),
            &[Value::Null, Value::Null, Value::Null],
        );
        assert_eq!(fid.unwrap(), 502);
    }

    #[test]
    fn bulk_loaded_index_equals_the_trigger_built_one() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("grid", GeomType::Polygon))
            .unwrap();
        store
            .create_layer(&schema("slow", GeomType::Polygon))
            .unwrap();
        let cells: Vec<Geometry<f64>> = (0..20_000)
            .map(|i| {
                let (x, y) = (
                    116.0 + f64::from(i % 200) * 1e-3,
                    39.0 + f64::from(i / 200) * 1e-3,
                );
                Geometry::Rect(Rect::new(
                    coord! {x: x, y: y},
                    coord! {x: x + 7e-4, y: y + 9e-4},
                ))
            })
            .collect();
        let nulls = [Value::Null, Value::Null, Value::Null];
        let mut w = store.writer("grid").unwrap();
        for g in &cells {
            w.insert(g, &nulls).unwrap();
        }
        w.commit().unwrap();
        // Reference: the spec's triggers, one row at a time.
        let c = store.connection();
        c.execute_batch("BEGIN").unwrap();
        for g in &cells {
            let blob = encode_geometry(g, 4326);
            c.execute("INSERT INTO slow (geom) VALUES (?1)", [&blob])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
        let dump = |layer: &str| -> Vec<(i64, f64, f64, f64, f64)> {
            c.prepare(&format!("SELECT * FROM rtree_{layer}_geom ORDER BY id"))
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(dump("grid"), dump("slow"));
        assert_eq!(rtree_rows(&store, "grid"), 20_000);
        let depth: i64 = c
            .query_row(
                "SELECT hex(substr(data, 1, 2)) FROM rtree_grid_geom_node WHERE nodeno = 1",
                [],
                |r| {
                    r.get::<_, String>(0)
                        .map(|h| i64::from_str_radix(&h, 16).unwrap())
                },
            )
            .unwrap();
        assert_eq!(
            depth, 2,
            "20000 entries in full 51-cell nodes: 393 leaves, 8 inner nodes, root"
        );

        // Spatial queries through the packed index find the right cells.
        let hits: i64 = c
            .query_row(
                "SELECT count(*) FROM rtree_grid_geom WHERE maxx >= 116.0505 AND minx <= 116.0605
                 AND maxy >= 39.0305 AND miny <= 39.0405",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 11 * 11);

        // A small append goes through plain inserts, a big one rebuilds; the
        // triggers work again afterwards, and so does deleting.
        for n in [10, 30_000] {
            let mut w = store.writer("grid").unwrap();
            for g in cells.iter().cycle().take(n) {
                w.insert(g, &nulls).unwrap();
            }
            w.commit().unwrap();
            assert_rtree_exact(&store, "grid");
        }
        let c = store.connection();
        c.execute("DELETE FROM grid WHERE fid % 3 = 0", []).unwrap();
        let blob = encode_geometry(&cells[0], 4326);
        c.execute("INSERT INTO grid (geom) VALUES (?1)", [&blob])
            .unwrap();
        assert_eq!(rtree_rows(&store, "grid"), 50_010 - 50_010 / 3 + 1);
        assert_eq!(store.clear_layer("grid").unwrap(), 50_010 - 50_010 / 3 + 1);
        assert_eq!(rtree_rows(&store, "grid"), 0);
        store
            .connection()
            .execute("INSERT INTO grid (geom) VALUES (?1)", [&blob])
            .unwrap();
        assert_eq!(rtree_rows(&store, "grid"), 1);
    }

    #[test]
    fn sql_functions_match_the_envelope() {
        let (_dir, store) = new_store();
        let c = store.connection();
        let blob = encode_geometry(&Geometry::Polygon(square_with_hole()), 4326);
        let row: (f64, f64, f64, f64, bool) = c
            .query_row(
                "SELECT ST_MinX(?1), ST_MinY(?1), ST_MaxX(?1), ST_MaxY(?1), ST_IsEmpty(?1)",
                [&blob],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(row, (0.0, 0.0, 10.0, 10.0, false));
        let empty = encode_geometry(&Geometry::LineString(LineString(vec![])), 4326);
        let row: (Option<f64>, bool) = c
            .query_row("SELECT ST_MinX(?1), ST_IsEmpty(?1)", [&empty], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(row, (None, true));
        let garbage: (Option<f64>, Option<bool>, Option<bool>) = c
            .query_row(
                "SELECT ST_MinX(x'00'), ST_IsEmpty(x'4750'), ST_IsEmpty(NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(garbage, (None, None, None));
    }

    /// A layer with the columns of `schema` plus what another tool added:
    /// a text note, a BLOB photo, a column with a default.
    fn extended(store: &mut Store, name: &str) {
        store
            .create_layer(&schema(name, GeomType::Polygon))
            .unwrap();
        store
            .connection()
            .execute_batch(&format!(
                "ALTER TABLE {name} ADD COLUMN note TEXT;
                 ALTER TABLE {name} ADD COLUMN photo BLOB;
                 ALTER TABLE {name} ADD COLUMN source TEXT DEFAULT 'survey';"
            ))
            .unwrap();
    }

    #[test]
    fn writer_for_carries_extra_columns_over_by_key() {
        let (_dir, mut store) = new_store();
        extended(&mut store, "cells");
        let poly = Geometry::Polygon(square_with_hole());
        let vals = |n: &str| [Value::from(n), Value::from(1), Value::from(2.5)];
        let mut w = store
            .writer_for(&schema("cells", GeomType::Polygon), None)
            .unwrap();
        for n in ["a", "b", "c"] {
            w.insert(&poly, &vals(n)).unwrap();
        }
        w.commit().unwrap();
        let c = store.connection();
        c.execute_batch(
            "UPDATE cells SET note = 'kept', photo = x'00ff' WHERE name = 'a';
             UPDATE cells SET source = NULL WHERE name = 'b';",
        )
        .unwrap();
        // Rewrite every row (delete, insert): a and b survive, c goes, d is new.
        let mut w = store
            .writer_for(&schema("cells", GeomType::Polygon), Some("name"))
            .unwrap();
        w.connection().execute("DELETE FROM cells", []).unwrap();
        for n in ["b", "a", "d"] {
            w.insert(&poly, &vals(n)).unwrap();
        }
        w.commit().unwrap();
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, Option<String>, Option<Vec<u8>>, Option<String>)> = store
            .connection()
            .prepare("SELECT name, note, photo, source FROM cells ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "a".into(),
                    Some("kept".into()),
                    Some(vec![0, 255]),
                    Some("survey".into())
                ),
                // Every extra column of b was NULL but source: carried too.
                ("b".into(), None, None, None),
                // New: the column default.
                ("d".into(), None, None, Some("survey".into())),
            ]
        );
        assert_rtree_exact(&store, "cells");
        // Readers of named columns do not trip over the BLOB.
        let mut names = Vec::new();
        store
            .for_each_columns("cells", &["area", "name", "gone"], None, |f| {
                names.push((
                    f.values[1].clone(),
                    f.values[0].clone(),
                    f.values[2].clone(),
                ));
                Ok(())
            })
            .unwrap();
        assert_eq!(names[0], ("b".into(), Value::Real(2.5), Value::Null));
        let err = store.for_each("cells", |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("\"photo\""), "{err}");
        // The plain writer still names every column.
        let err = store
            .writer("cells")
            .unwrap()
            .insert(&poly, &vals("e"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Arity {
                    expected: 6,
                    got: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = store
            .writer_for(&schema("cells", GeomType::Polygon), Some("nope"))
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn layout_problems_name_layer_column_and_expectation() {
        let (_dir, mut store) = new_store();
        extended(&mut store, "cells");
        let c = store.connection();
        c.execute_batch(
            "ALTER TABLE cells DROP COLUMN pop;
             ALTER TABLE cells RENAME COLUMN area TO area_old;
             ALTER TABLE cells ADD COLUMN area TEXT;",
        )
        .unwrap();
        let mut want = schema("cells", GeomType::MultiPolygon);
        want.columns.push(Column {
            name: "note".into(),
            ty: ColumnType::Text,
        });
        let problems = store.layout_problems(&want).unwrap();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "layer \"cells\" declares POLYGON geometries (expected MULTIPOLYGON)",
                "layer \"cells\" has no column \"pop\" (expected INTEGER)",
                "column \"area\" of layer \"cells\" is declared TEXT (expected REAL)",
            ]
        );
        let err = store.writer_for(&want, None).unwrap_err();
        assert!(
            matches!(&err, StoreError::Layout { problems, .. } if problems.len() == 2),
            "{err}"
        );
        assert!(err.to_string().contains("\"pop\""), "{err}");
        // Nothing else holds the lock: the failed writer left no transaction.
        assert!(store.connection().is_autocommit());
    }

    #[test]
    fn added_columns_index_and_multipolygons_complete_a_layer() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("cells", GeomType::Polygon))
            .unwrap();
        let mut w = store.writer("cells").unwrap();
        for i in 0..300 {
            let x = f64::from(i);
            let p = polygon![(x: x, y: 0.0), (x: x + 0.5, y: 0.0), (x: x, y: 0.5)];
            w.insert(
                &Geometry::Polygon(p),
                &[Value::Null, Value::from(i), Value::Null],
            )
            .unwrap();
        }
        w.commit().unwrap();
        // Drop the index as a file without one would be.
        store
            .connection()
            .execute_batch(
                "DROP TABLE rtree_cells_geom;
                 DROP TRIGGER IF EXISTS rtree_cells_geom_insert;
                 DROP TRIGGER rtree_cells_geom_update1; DROP TRIGGER rtree_cells_geom_update2;
                 DROP TRIGGER rtree_cells_geom_update3; DROP TRIGGER rtree_cells_geom_update4;
                 DROP TRIGGER rtree_cells_geom_delete;
                 DELETE FROM gpkg_extensions WHERE table_name = 'cells';",
            )
            .unwrap();
        let want = schema("cells", GeomType::Polygon);
        assert_eq!(
            store.layout_problems(&want).unwrap(),
            [LayoutProblem::NoSpatialIndex {
                layer: "cells".into()
            }]
        );
        assert_eq!(store.create_spatial_index("cells").unwrap(), 300);
        assert_eq!(store.create_spatial_index("cells").unwrap(), 0);
        assert_eq!(rtree_rows(&store, "cells"), 300);
        assert_eq!(store.promote_to_multipolygon("cells").unwrap(), 300);
        assert_eq!(
            store.schema("cells").unwrap().geometry,
            GeomType::MultiPolygon
        );
        assert_rtree_exact(&store, "cells");
        // The column's SQL type follows (GeoPackage requirement 31), and the
        // triggers came back: moving a feature moves its index entry.
        let c = store.connection();
        let ty: String = c
            .query_row(
                "SELECT type FROM pragma_table_info('cells') WHERE name = 'geom'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ty, "MULTIPOLYGON");
        let far = MultiPolygon::new(vec![
            polygon![(x: 500.0, y: 0.0), (x: 501.0, y: 0.0), (x: 500.0, y: 1.0)],
        ]);
        c.execute(
            "UPDATE cells SET geom = ?1 WHERE fid = 1",
            [encode_geometry(&Geometry::MultiPolygon(far), 4326)],
        )
        .unwrap();
        assert_rtree_exact(&store, "cells");
        let minx: f64 = c
            .query_row("SELECT minx FROM rtree_cells_geom WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(minx, 500.0);
        let mut kinds = 0;
        store
            .for_each("cells", |f| {
                assert!(matches!(f.geometry, Geometry::MultiPolygon(ref m) if m.0.len() == 1));
                kinds += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(kinds, 300);
        // Added and filled in one transaction; a failing fill adds nothing.
        let col = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Integer,
        };
        let err = store
            .add_columns("cells", &[col("twice")], |c| {
                c.execute("UPDATE cells SET nope = 1", [])
                    .map(|_| ())
                    .map_err(|e| StoreError::BadSchema {
                        layer: "cells".into(),
                        reason: e.to_string(),
                    })
            })
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(
            !store
                .schema("cells")
                .unwrap()
                .columns
                .iter()
                .any(|c| c.name == "twice")
        );
        store
            .add_columns("cells", &[col("twice")], |c| {
                c.execute("UPDATE cells SET twice = 2 * pop", [])
                    .map(|_| ())
                    .map_err(|e| StoreError::BadSchema {
                        layer: "cells".into(),
                        reason: e.to_string(),
                    })
            })
            .unwrap();
        let sum: i64 = store
            .connection()
            .query_row("SELECT sum(twice) FROM cells", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 2 * (0..300).sum::<i64>());
        let err = store
            .add_columns("cells", &[col("Pop")], |_| Ok(()))
            .unwrap_err();
        assert!(matches!(err, StoreError::BadSchema { .. }), "{err}");
    }

    #[test]
    fn writer_validates_input() {
        let (_dir, mut store) = new_store();
        store
            .create_layer(&schema("grids", GeomType::Polygon))
            .unwrap();
        let poly = Geometry::Polygon(square_with_hole());
        let mut w = store.writer("grids").unwrap();
        let err = w.insert(&poly, &[Value::Null]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Arity {
                    expected: 3,
                    got: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = w.insert(
            &Geometry::Point(point!(x: 0.0, y: 0.0)),
            &[Value::Null, Value::Null, Value::Null],
        );
        let err = err.unwrap_err();
        assert!(
            err.to_string().contains("POLYGON") && err.to_string().contains("Point"),
            "{err}"
        );
        let err = w
            .insert(&poly, &[Value::Null, Value::from(1.5), Value::Null])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ValueType { ref column, .. } if column == "pop"),
            "{err}"
        );
        let err = w
            .insert(&poly, &[Value::from(1i64), Value::Null, Value::Null])
            .unwrap_err();
        assert!(err.to_string().contains("\"name\""), "{err}");
        assert_eq!(w.rows(), 0);
        assert_eq!(w.commit().unwrap(), 0);
        let err = store.writer("nope").unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownLayer { ref available, .. } if available == &["grids"])
        );
        assert!(err.to_string().contains("grids"), "{err}");
        assert!(matches!(
            store.schema("nope"),
            Err(StoreError::UnknownLayer { .. })
        ));
    }

    #[test]
    fn layer_names_and_schemas_are_validated() {
        let (_dir, mut store) = new_store();
        for bad in [
            "",
            "Roads",
            "1roads",
            "road-s",
            "gpkg_x",
            "rtree_x",
            "sqlite_x",
            "wangge_meta",
            "道路",
        ] {
            let err = store
                .create_layer(&schema(bad, GeomType::Point))
                .unwrap_err();
            assert!(
                matches!(err, StoreError::BadLayerName { .. }),
                "{bad:?}: {err}"
            );
        }
        store
            .create_layer(&schema("_ok_1", GeomType::Point))
            .unwrap();
        let err = store
            .create_layer(&schema("_ok_1", GeomType::Point))
            .unwrap_err();
        assert!(matches!(err, StoreError::LayerExists { .. }), "{err}");
        for cols in [["a", "a"], ["a", "geom"], ["fid", "b"], ["a", "B"]] {
            let s = LayerSchema {
                name: "cols".into(),
                geometry: GeomType::Point,
                columns: cols
                    .iter()
                    .map(|n| Column {
                        name: (*n).into(),
                        ty: ColumnType::Text,
                    })
                    .collect(),
            };
            let err = store.create_layer(&s).unwrap_err();
            assert!(
                matches!(err, StoreError::BadSchema { .. }),
                "{cols:?}: {err}"
            );
        }
        assert!(
            !store.has_layer("cols").unwrap(),
            "failed creations leave nothing behind"
        );
    }

    #[test]
    fn meta_overwrites() {
        let (_dir, mut store) = new_store();
        assert_eq!(store.meta("a").unwrap(), None);
        store.set_meta("a", "1").unwrap();
        store.set_meta("a", "2").unwrap();
        store.set_meta("b", "3").unwrap();
        assert_eq!(store.meta("a").unwrap().as_deref(), Some("2"));
        let kind: String = store
            .connection()
            .query_row(
                "SELECT data_type FROM gpkg_contents WHERE table_name = 'wangge_meta'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "attributes");
    }

    #[test]
    fn value_conversions() {
        assert_eq!(Value::from(Some("a")), Value::Text("a".into()));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(String::from("b")).as_str(), Some("b"));
        assert_eq!(Value::from(2i64).as_f64(), Some(2.0));
        assert_eq!(
            serde_json::to_string(&[Value::Null, 1.into(), 1.5.into(), "x".into()]).unwrap(),
            r#"[null,1,1.5,"x"]"#
        );
    }

    /// Bulk insert throughput; run with
    /// `cargo test --release -- --ignored --nocapture bulk_insert_throughput`.
    #[test]
    #[ignore = "benchmark"]
    fn bulk_insert_throughput() {
        let (_dir, mut store) = new_store();
        store.create_layer(&schema("pts", GeomType::Point)).unwrap();
        let n = 1_000_000u32;
        let start = std::time::Instant::now();
        let mut w = store.writer("pts").unwrap();
        let mut state = 1u64;
        for i in 0..n {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let x = 115.4 + (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0;
            let y = 39.4 + f64::from(i % 10_000) / 10_000.0 * 1.6;
            let p = Geometry::Point(point!(x: x, y: y));
            w.insert(
                &p,
                &[Value::Null, Value::Integer(i64::from(i)), Value::Real(x)],
            )
            .unwrap();
        }
        w.commit().unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "inserted {n} points in {secs:.2} s: {:.0} rows/s",
            f64::from(n) / secs
        );
        let t = std::time::Instant::now();
        let layers = store.layers().unwrap();
        eprintln!("layers() took {:?}: {layers:?}", t.elapsed());
        let t = std::time::Instant::now();
        let mut buf = Vec::new();
        for i in 0..n {
            encode_geometry_into(
                &Geometry::Point(point!(x: f64::from(i), y: 1.0)),
                4326,
                &mut buf,
            );
        }
        eprintln!(
            "encoding alone: {:.0} points/s",
            f64::from(n) / t.elapsed().as_secs_f64()
        );
        let t = std::time::Instant::now();
        let read = store.for_each("pts", |_| Ok(())).unwrap();
        eprintln!("for_each read {read} features in {:?}", t.elapsed());
    }
}
