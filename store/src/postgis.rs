//! The PostgreSQL + PostGIS backend: a wangge store in one database,
//! addressed by a URL `postgres://user[:password]@host:port/database`.
//!
//! The database must have the PostGIS extension, and a new store needs a
//! database without tables of its own. Its layout, in the connection's
//! current schema:
//!
//! * `wangge_meta(key text PRIMARY KEY, value text)`: project metadata, and
//!   the marker `store_format` that makes the database a wangge store;
//! * `wangge_layers(name text PRIMARY KEY, geometry_type text)`: the
//!   feature layers (what `gpkg_contents` is to a GeoPackage);
//! * one table per layer: `fid bigint` identity primary key, `geom
//!   geometry(<type>, 4326)` with a GiST index `<layer>_geom_gist`, then the
//!   attribute columns as `bigint`, `double precision` and `text` (B-tree
//!   indexes on `code`, `parent_code`, `community_code`, `grid_code`);
//! * the version and lock tables of [`crate::versions`], with the same
//!   names and columns (`geom` as `geometry(Geometry, 4326)`); the log
//!   position of a version (a GeoPackage's `rowid`) is `wangge_versions.seq`.
//!
//! PostGIS, GDAL (`ogrinfo PG:…`) and QGIS read these tables as they are.
//! Columns added by other tools survive: readers map integer and boolean
//! types to [`ColumnType::Integer`], floating and numeric types to
//! [`ColumnType::Real`] and everything else to [`ColumnType::Text`].
//!
//! Every write is one transaction. A [`PgLayerWriter`] locks its table
//! against other writers, streams rows with `COPY`, and rolls back when it
//! is dropped without [`PgLayerWriter::commit`] or when the connection is
//! lost.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use geo_types::Geometry;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls, Row};

use crate::gpkg::{check_schema, decode_wkb, encode_ewkb, quote};
use crate::versions::{VersionBuilding, VersionDump, VersionGrid, VersionRecord};
use crate::{
    Column, ColumnType, Feature, GeomType, LayerInfo, LayerSchema, StoreError, Value, merge_bbox,
};

/// The value of `store_format` in `wangge_meta`.
const STORE_FORMAT: &str = "wangge-postgis-1";

/// The channel every committed write notifies (payload: the layer), for
/// the servers that `LISTEN`.
pub const CHANNEL: &str = "wangge_changes";

/// Rows per page of a full-layer scan.
pub(crate) const PAGE: i64 = 10_000;

/// Bytes of COPY data buffered before they are sent.
const COPY_CHUNK: usize = 8 << 20;

const SCHEMA: &str = "
CREATE TABLE wangge_meta (key text PRIMARY KEY, value text);
CREATE TABLE wangge_layers (name text PRIMARY KEY, geometry_type text NOT NULL);
CREATE TABLE wangge_versions (
  community text NOT NULL, version bigint NOT NULL, author text NOT NULL,
  created text NOT NULL, reason text NOT NULL, op text NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  PRIMARY KEY (community, version));
CREATE TABLE wangge_version_grids (
  community text NOT NULL, version bigint NOT NULL, code text NOT NULL,
  households bigint NOT NULL, persons bigint NOT NULL, buildings bigint NOT NULL,
  area_m2 double precision NOT NULL, geom geometry(Geometry, 4326),
  PRIMARY KEY (community, version, code));
CREATE TABLE wangge_version_buildings (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  community text NOT NULL, version bigint NOT NULL, building text NOT NULL,
  grid text NOT NULL, households bigint NOT NULL);
CREATE INDEX wangge_version_buildings_cv ON wangge_version_buildings (community, version);
CREATE TABLE wangge_grid_locks (code text PRIMARY KEY);
";

/// Whether `location` names a PostgreSQL store (`postgres://` or
/// `postgresql://`) rather than a GeoPackage file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The URL with its password, if any, replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The error a GeoPackage-only operation gives for a PostgreSQL URL.
pub(crate) fn refuse_url(path: &Path, verb: &str) -> Result<(), StoreError> {
    let location = path.to_string_lossy();
    if !is_postgres_url(&location) {
        return Ok(());
    }
    Err(StoreError::Unsupported {
        what: format!(
            "{} is a PostgreSQL store, and this command is not yet {verb} on PostgreSQL \
             (assign --store … --layers and partition --assign need a GeoPackage so far); \
             work on a GeoPackage copy: wangge copy --from {} --to store.gpkg",
            redact(&location),
            redact(&location)
        ),
    })
}

/// A layer's table as [`PgStore`] reads it.
#[derive(Debug, Clone)]
pub(crate) struct PgLayer {
    pub(crate) schema: LayerSchema,
    /// The SQL that reads each column of `schema.columns` as `bigint`,
    /// `double precision` or `text`.
    pub(crate) reads: Vec<String>,
    /// The PostgreSQL type name of each column (`int8`, `text`, …).
    pub(crate) types: Vec<String>,
}

/// An open PostgreSQL + PostGIS store.
///
/// Like a GeoPackage [`crate::Store`], it is `Send` but not `Sync`: one
/// connection, used by one thread at a time.
pub struct PgStore {
    client: RefCell<Client>,
    url: String,
    /// Rows a writer's [`crate::versions::Tx`] buffered, sent before its
    /// next statement that reads and at commit (one round trip per
    /// table instead of several per community).
    pub(crate) pending: RefCell<Pending>,
}

/// What [`PgStore::pending`] holds.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// COPY rows of `wangge_versions`, `wangge_version_grids`,
    /// `wangge_version_buildings`.
    pub(crate) versions: Vec<u8>,
    pub(crate) grids: Vec<u8>,
    pub(crate) buildings: Vec<u8>,
    /// `(fid, grid, community)` of buildings placed, and whether their
    /// community is written too.
    pub(crate) placed: Vec<(i64, String, String)>,
    pub(crate) placed_with_community: bool,
    /// The newest version buffered per community.
    pub(crate) latest: HashMap<String, i64>,
    /// The newest stored version per community, read once per transaction
    /// (every writer of versions holds the grids table's lock, so no
    /// other can add one meanwhile).
    pub(crate) stored_latest: Option<HashMap<String, i64>>,
    /// New geometries: `(layer, fid, EWKB)`.
    pub(crate) geometries: Vec<(String, i64, Vec<u8>)>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl PgStore {
    /// Makes the empty database at `url` a wangge store.
    ///
    /// Fails, writing nothing, when the URL is malformed or names no
    /// database, the server cannot be reached, the database lacks PostGIS,
    /// or it already holds tables (a wangge store, or another
    /// application's).
    pub fn create(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url)?;
        store.check_empty()?;
        store.atomically(|| {
            store.execute(SCHEMA)?;
            store.query(
                "INSERT INTO wangge_meta VALUES ('store_format', $1)",
                &[&STORE_FORMAT],
            )?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Checks, writing nothing, that [`PgStore::create`] would succeed at
    /// `url`: what a long job runs before its work, to fail at once.
    pub fn check_new(url: &str) -> Result<(), StoreError> {
        PgStore::connect(url)?.check_empty()
    }

    /// Fails unless the database holds no tables of its own.
    fn check_empty(&self) -> Result<(), StoreError> {
        let store = self;
        let tables = store.tables()?;
        if tables.iter().any(|t| t == "wangge_meta") {
            return Err(store.refused(
                "it already holds a wangge store (table wangge_meta); write to another \
                 database, or drop this one first",
            ));
        }
        if !tables.is_empty() {
            return Err(store.refused(&format!(
                "the database holds {} table(s) of another application ({}); a new wangge \
                 store needs a database of its own (createdb …)",
                tables.len(),
                sample(&tables)
            )));
        }
        Ok(())
    }

    /// Opens the wangge store in the database at `url`.
    ///
    /// Fails when the URL is malformed, the server cannot be reached, the
    /// database lacks PostGIS, or it holds no wangge store.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url)?;
        let tables = store.tables()?;
        if !tables.iter().any(|t| t == "wangge_meta")
            || !tables.iter().any(|t| t == "wangge_layers")
        {
            let reason = if tables.is_empty() {
                "the database holds no wangge store (it has no tables); make one with \
                 `wangge synth --out URL` or `wangge copy --from store.gpkg --to URL`"
                    .to_owned()
            } else {
                format!(
                    "the database holds no wangge store (no wangge_meta table) but {} table(s) \
                     of another application ({})",
                    tables.len(),
                    sample(&tables)
                )
            };
            return Err(store.refused(&reason));
        }
        Ok(store)
    }

    /// Parses `url`, connects and checks for PostGIS.
    fn connect(url: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let bad = |reason: String| StoreError::NotWangge {
            url: shown.clone(),
            reason,
        };
        let mut config: Config = url.parse().map_err(|e| {
            bad(format!(
                "not a valid PostgreSQL URL ({e}); expected postgres://user@host:port/database"
            ))
        })?;
        if config.get_dbname().is_none() {
            return Err(bad(
                "the URL names no database; expected postgres://user@host:port/database".into(),
            ));
        }
        if config.get_user().is_none() {
            // libpq's default: the operating-system user.
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "postgres".into());
            config.user(&user);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("wangge");
        let client = config
            .connect(NoTls)
            .map_err(|source| StoreError::Postgres {
                url: shown.clone(),
                source,
            })?;
        let store = PgStore {
            client: RefCell::new(client),
            url: shown,
            pending: RefCell::new(Pending::default()),
        };
        let postgis = store
            .client
            .borrow_mut()
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'postgis'",
                &[],
            )
            .map_err(|e| store.error(e))?;
        if postgis.is_none() {
            return Err(store.refused(
                "the database has no PostGIS extension; run `CREATE EXTENSION postgis;` in it \
                 (as a superuser) first",
            ));
        }
        Ok(store)
    }

    /// Subscribes this connection to the [`CHANNEL`] every committed
    /// write notifies.
    pub fn listen(&self) -> Result<(), StoreError> {
        self.execute(&format!("LISTEN {CHANNEL}"))
    }

    /// Waits up to `timeout` for a notice on [`CHANNEL`] (after
    /// [`PgStore::listen`]) and takes every one pending; returns whether
    /// any came. A notice only says "look now": NOTIFY is not a queue, so
    /// readers catch up from the version log, not from the notices.
    pub fn wait_for_notice(&self, timeout: Duration) -> Result<bool, StoreError> {
        let mut client = self.client.borrow_mut();
        let mut notices = client.notifications();
        let got = notices
            .timeout_iter(timeout)
            .next()
            .map_err(|e| self.error(e))?
            .is_some();
        // Drain what else is pending without waiting.
        while notices.iter().next().map_err(|e| self.error(e))?.is_some() {}
        Ok(got)
    }

    /// Whether the connection is gone (the server restarted or closed
    /// it): the store must be opened again.
    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// The store's URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.url.clone(),
            source,
        }
    }

    fn refused(&self, reason: &str) -> StoreError {
        StoreError::NotWangge {
            url: self.url.clone(),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.client
            .borrow_mut()
            .query(sql, params)
            .map_err(|e| self.error(e))
    }

    /// The base tables of the current schema, but PostGIS's own, sorted.
    fn tables(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query(
                "SELECT table_name::text FROM information_schema.tables
                  WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
                    AND table_name <> 'spatial_ref_sys'
                  ORDER BY table_name",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Creates an empty feature layer: its table, GiST index and
    /// `wangge_layers` row, in one transaction. Names follow the rules of
    /// [`crate::Store::create_layer`].
    pub fn create_layer(&mut self, schema: &LayerSchema) -> Result<(), StoreError> {
        check_schema(schema)?;
        let name = schema.name.as_str();
        if self.tables()?.iter().any(|t| t == name) {
            return Err(StoreError::LayerExists {
                layer: name.to_owned(),
            });
        }
        let geometry = match schema.geometry {
            GeomType::Geometry => "Geometry",
            t => t.gpkg_name(),
        };
        let mut ddl = format!(
            "CREATE TABLE {} (fid bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             geom geometry({geometry}, 4326)",
            quote(name)
        );
        for col in &schema.columns {
            let _ = write!(ddl, ", {} {}", quote(&col.name), pg_type(col.ty));
        }
        ddl.push_str(");");
        let _ = write!(
            ddl,
            "CREATE INDEX {} ON {} USING GIST (geom);",
            quote(&gist_name(name)),
            quote(name)
        );
        for col in crate::gpkg::key_columns(schema) {
            let _ = write!(
                ddl,
                "CREATE INDEX {} ON {} ({});",
                quote(&format!("{name}_{col}")),
                quote(name),
                quote(col)
            );
        }
        let geometry_type = schema.geometry.gpkg_name();
        self.atomically(|| {
            self.execute(&ddl)?;
            self.query(
                "INSERT INTO wangge_layers VALUES ($1, $2)",
                &[&name, &geometry_type],
            )?;
            Ok(())
        })
    }

    /// Names of the feature layers, sorted (a layer whose table another
    /// tool dropped is left out).
    pub fn layer_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query(
                "SELECT name FROM wangge_layers WHERE to_regclass(quote_ident(name)) IS NOT NULL
                  ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Whether a feature layer of this name exists.
    pub fn has_layer(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.layer_names()?.iter().any(|n| n == name))
    }

    pub(crate) fn layer_def(&self, layer: &str) -> Result<PgLayer, StoreError> {
        let rows = self.query(
            "SELECT l.geometry_type FROM wangge_layers l
              WHERE l.name = $1 AND to_regclass(quote_ident(l.name)) IS NOT NULL",
            &[&layer],
        )?;
        let Some(row) = rows.first() else {
            return Err(StoreError::UnknownLayer {
                layer: layer.to_owned(),
                available: self.layer_names()?,
            });
        };
        let geometry = GeomType::from_gpkg_name(row.get(0));
        let rows = self.query(
            "SELECT a.attname::text, t.typname::text FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = quote_ident($1)::regclass AND a.attnum > 0
                AND NOT a.attisdropped AND a.attname NOT IN ('fid', 'geom')
              ORDER BY a.attnum",
            &[&layer],
        )?;
        let mut columns = Vec::with_capacity(rows.len());
        let mut reads = Vec::with_capacity(rows.len());
        let mut types = Vec::with_capacity(rows.len());
        for r in &rows {
            let name: String = r.get(0);
            let typname: &str = r.get(1);
            let q = quote(&name);
            let (ty, read) = match typname {
                "int8" => (ColumnType::Integer, q),
                "int2" | "int4" => (ColumnType::Integer, format!("{q}::bigint")),
                "bool" => (ColumnType::Integer, format!("{q}::int::bigint")),
                "float8" => (ColumnType::Real, q),
                "float4" | "numeric" => (ColumnType::Real, format!("{q}::float8")),
                "text" => (ColumnType::Text, q),
                _ => (ColumnType::Text, format!("{q}::text")),
            };
            columns.push(Column { name, ty });
            reads.push(read);
            types.push(typname.to_owned());
        }
        Ok(PgLayer {
            schema: LayerSchema {
                name: layer.to_owned(),
                geometry,
                columns,
            },
            reads,
            types,
        })
    }

    /// The schema of one layer: every column of its table in table order,
    /// those added by other tools too.
    pub fn schema(&self, layer: &str) -> Result<LayerSchema, StoreError> {
        Ok(self.layer_def(layer)?.schema)
    }

    /// Number of features in one layer.
    pub fn count(&self, layer: &str) -> Result<u64, StoreError> {
        self.layer_def(layer)?;
        let rows = self.query(&format!("SELECT count(*) FROM {}", quote(layer)), &[])?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    /// Every feature layer with its geometry type, count and exact extent.
    pub fn layers(&self) -> Result<Vec<LayerInfo>, StoreError> {
        let mut out = Vec::new();
        for name in self.layer_names()? {
            let layer = self.layer_def(&name)?;
            let rows = self.query(
                &format!(
                    "SELECT n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
                       FROM (SELECT count(*) AS n, ST_Extent(geom) AS e FROM {}) s",
                    quote(&name)
                ),
                &[],
            )?;
            let r = &rows[0];
            let n: i64 = r.get(0);
            let bbox = match (
                r.get::<_, Option<f64>>(1),
                r.get::<_, Option<f64>>(2),
                r.get::<_, Option<f64>>(3),
                r.get::<_, Option<f64>>(4),
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => Some(merge_bbox(None, [a, b, c, d])),
                _ => None,
            };
            out.push(LayerInfo {
                name,
                geometry: layer.schema.geometry,
                count: n as u64,
                bbox,
            });
        }
        Ok(out)
    }

    /// Calls `f` with every feature of `layer` in ascending fid order, page
    /// by page; stops at and returns the first error. Returns the number
    /// of features visited.
    pub fn for_each(
        &self,
        layer: &str,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        self.for_each_in(layer, None, f)
    }

    /// Like [`PgStore::for_each`], but with `bbox` (`[min lon, min lat, max
    /// lon, max lat]`) only the features whose bounding box meets it,
    /// through the GiST index.
    pub fn for_each_in(
        &self,
        layer: &str,
        bbox: Option<[f64; 4]>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let reads = def.reads.clone();
        let names = def.schema.columns.iter().map(|c| c.name.clone()).collect();
        self.scan(&def, reads, names, bbox, f)
    }

    /// Like [`PgStore::for_each_in`], but [`Feature::values`] holds the
    /// named `columns`, in that order; a column the layer lacks reads as
    /// NULL.
    pub fn for_each_columns(
        &self,
        layer: &str,
        columns: &[&str],
        bbox: Option<[f64; 4]>,
        f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let reads = columns
            .iter()
            .map(|c| {
                def.schema
                    .columns
                    .iter()
                    .position(|k| k.name == *c)
                    .map_or_else(|| "NULL::text".to_owned(), |i| def.reads[i].clone())
            })
            .collect();
        let names = columns.iter().map(|c| (*c).to_owned()).collect();
        self.scan(&def, reads, names, bbox, f)
    }

    fn scan(
        &self,
        def: &PgLayer,
        reads: Vec<String>,
        names: Vec<String>,
        bbox: Option<[f64; 4]>,
        mut f: impl FnMut(Feature) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let layer = def.schema.name.as_str();
        let mut select = "SELECT fid, ST_AsBinary(geom)".to_owned();
        for r in &reads {
            let _ = write!(select, ", {r}");
        }
        let _ = write!(select, " FROM {}", quote(layer));
        let mut n = 0;
        let mut emit = |rows: Vec<Row>, n: &mut u64| -> Result<Option<i64>, StoreError> {
            let mut last = None;
            for row in rows {
                let feature = read_feature(&row, layer, &names)?;
                last = Some(feature.fid);
                f(feature)?;
                *n += 1;
            }
            Ok(last)
        };
        if let Some([x0, y0, x1, y1]) = bbox {
            let sql = format!(
                "{select} WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) ORDER BY fid"
            );
            let rows = self.query(&sql, &[&x0, &y0, &x1, &y1])?;
            emit(rows, &mut n)?;
            return Ok(n);
        }
        // Pages by key, so that `f` may use the store between pages.
        let sql = format!("{select} WHERE fid > $1 ORDER BY fid LIMIT {PAGE}");
        let mut after = i64::MIN;
        loop {
            let rows = self.query(&sql, &[&after])?;
            let full = rows.len() as i64 == PAGE;
            match emit(rows, &mut n)? {
                Some(last) if full => after = last,
                _ => return Ok(n),
            }
        }
    }

    /// A writer for every column of `layer`, in table order, that may also
    /// keep given fids ([`PgLayerWriter::insert_with_fid`]).
    ///
    /// It opens a transaction and locks the table against other writers
    /// (readers go on) until it commits or is dropped.
    pub fn writer(&mut self, layer: &str) -> Result<PgLayerWriter<'_>, StoreError> {
        let def = self.layer_def(layer)?;
        let schema = def.schema.clone();
        self.start_writer(&def, schema, None)
    }

    /// Like [`crate::Store::writer_for`]: a writer for the columns of
    /// `schema` only; with `carry_key`, the table's other columns (added by
    /// QGIS or GDAL) are carried over by key from the rows the layer had
    /// when the writer started.
    pub fn writer_for(
        &mut self,
        schema: &LayerSchema,
        carry_key: Option<&str>,
    ) -> Result<PgLayerWriter<'_>, StoreError> {
        let def = self.layer_def(&schema.name)?;
        for c in &schema.columns {
            if !def.schema.columns.iter().any(|d| d.name == c.name) {
                return Err(StoreError::BadSchema {
                    layer: schema.name.clone(),
                    reason: format!("column {:?} is missing from the PostgreSQL table", c.name),
                });
            }
        }
        let key =
            match carry_key {
                Some(k) => Some(schema.columns.iter().position(|c| c.name == k).ok_or_else(
                    || StoreError::BadSchema {
                        layer: schema.name.clone(),
                        reason: format!("the carry key {k:?} is not a column of the schema"),
                    },
                )?),
                None => None,
            };
        self.start_writer(&def, schema.clone(), key)
    }

    fn start_writer(
        &self,
        def: &PgLayer,
        written: LayerSchema,
        carry_key: Option<usize>,
    ) -> Result<PgLayerWriter<'_>, StoreError> {
        let layer = def.schema.name.as_str();
        let table = quote(layer);
        // The other columns, carried over by key.
        let extra: Vec<usize> = (0..def.schema.columns.len())
            .filter(|&i| {
                !written
                    .columns
                    .iter()
                    .any(|c| c.name == def.schema.columns[i].name)
            })
            .collect();
        let carry_key = carry_key.filter(|_| !extra.is_empty());
        *self.pending.borrow_mut() = Pending::default();
        // The largest fid, whether the index is rebuilt at commit, the
        // carried columns by key.
        type Begun = (i64, bool, HashMap<String, Vec<Value>>);
        let begin = || -> Result<Begun, StoreError> {
            self.execute(&format!(
                "BEGIN; LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"
            ))?;
            let max: Option<i64> =
                self.query(&format!("SELECT max(fid) FROM {table}"), &[])?[0].get(0);
            // An empty table gets its index built once at commit, which is
            // much faster than growing it row by row.
            if max.is_none() {
                self.execute(&format!(
                    "DROP INDEX IF EXISTS {}",
                    quote(&gist_name(layer))
                ))?;
            }
            let mut carried = HashMap::new();
            if let Some(k) = carry_key {
                let key = &written.columns[k].name;
                let mut sql = format!("SELECT {}::text", quote(key));
                for &i in &extra {
                    sql.push_str(", ");
                    sql.push_str(&def.reads[i]);
                }
                let any: Vec<String> = extra
                    .iter()
                    .map(|&i| format!("{} IS NOT NULL", quote(&def.schema.columns[i].name)))
                    .collect();
                sql.push_str(&format!(
                    " FROM {table} WHERE {} IS NOT NULL AND ({}) ORDER BY fid",
                    quote(key),
                    any.join(" OR ")
                ));
                for row in self.query(&sql, &[])? {
                    let values = (1..=extra.len())
                        .map(|i| crate::postgis_reads::row_value(&row, i).unwrap_or(Value::Null))
                        .collect();
                    carried.entry(row.get(0)).or_insert(values);
                }
            }
            Ok((max.unwrap_or(0), max.is_none(), carried))
        };
        let (max, rebuild_index, carried) = match begin() {
            Ok(v) => v,
            Err(e) => {
                let _ = self.execute("ROLLBACK");
                return Err(e);
            }
        };
        let mut copy = format!("COPY {table} (fid, geom");
        for c in &written.columns {
            let _ = write!(copy, ", {}", quote(&c.name));
        }
        if carry_key.is_some() {
            for &i in &extra {
                let _ = write!(copy, ", {}", quote(&def.schema.columns[i].name));
            }
        }
        copy.push_str(") FROM STDIN");
        Ok(PgLayerWriter {
            store: self,
            schema: written,
            carry: carry_key.map(|k| (k, extra.len(), carried)),
            copy,
            buf: Vec::with_capacity(COPY_CHUNK + (64 << 10)),
            ewkb: Vec::with_capacity(256),
            next_fid: max + 1,
            max_fid: max,
            rows: 0,
            rebuild_index,
            open: true,
        })
    }

    /// A project metadata entry, `None` if it was never set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self.query("SELECT value FROM wangge_meta WHERE key = $1", &[&key])?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    /// Sets a project metadata entry.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.query(
            "INSERT INTO wangge_meta VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    /// Every project metadata entry but the store's own marker, sorted by
    /// key.
    pub fn meta_entries(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .query(
                "SELECT key, coalesce(value, '') FROM wangge_meta WHERE key <> 'store_format'
                  ORDER BY key",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Every row of the version and lock tables.
    pub fn dump_versions(&self) -> Result<VersionDump, StoreError> {
        let mut dump = VersionDump::default();
        for r in self.query(
            "SELECT community, version, author, created, reason, op FROM wangge_versions
              ORDER BY community, version",
            &[],
        )? {
            dump.versions.push(VersionRecord {
                community: r.get(0),
                version: r.get(1),
                author: r.get(2),
                created: r.get(3),
                reason: r.get(4),
                op: r.get(5),
            });
        }
        for (i, r) in self
            .query(
                "SELECT community, version, code, households, persons, buildings, area_m2,
                        ST_AsBinary(geom)
                   FROM wangge_version_grids ORDER BY community, version, code",
                &[],
            )?
            .iter()
            .enumerate()
        {
            let geom = r
                .get::<_, Option<&[u8]>>(7)
                .map(|b| {
                    decode_wkb(b).map_err(|reason| StoreError::Geometry {
                        layer: "wangge_version_grids".into(),
                        fid: i as i64 + 1,
                        reason,
                    })
                })
                .transpose()?;
            let grid = VersionGrid {
                code: r.get(2),
                households: r.get(3),
                persons: r.get(4),
                buildings: r.get(5),
                area_m2: r.get(6),
            };
            dump.grids.push((r.get(0), r.get(1), grid, geom));
        }
        for r in self.query(
            "SELECT community, version, building, grid, households
               FROM wangge_version_buildings ORDER BY community, version, id",
            &[],
        )? {
            let b = VersionBuilding {
                building: r.get(2),
                grid: r.get(3),
                households: r.get(4),
            };
            dump.buildings.push((r.get(0), r.get(1), b));
        }
        dump.locks = self
            .query("SELECT code FROM wangge_grid_locks ORDER BY code", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(dump)
    }

    /// Writes every row of `dump` into the version and lock tables, in one
    /// transaction.
    pub fn load_versions(&mut self, dump: &VersionDump) -> Result<(), StoreError> {
        self.atomically(|| self.tx_load_versions(dump))
    }

    /// Like [`crate::Store::update_from_points`]: streams `(fid, lon, lat)`
    /// of every feature of a point layer in fid order, `chunk` at a time
    /// (NaN for a geometry that is not a point), to `f`, which returns the
    /// new values of `columns` for each, in order. One transaction holding
    /// `SHARE ROW EXCLUSIVE` on the table: the values go into a temporary
    /// table with COPY, then one `UPDATE … FROM` writes them, and the
    /// commit notifies the replicas. Returns the number of rows updated.
    ///
    /// # Errors
    /// An unknown layer or column, a value of the wrong type, PostgreSQL
    /// errors (nothing is changed then).
    pub fn update_from_points(
        &mut self,
        layer: &str,
        columns: &[&str],
        chunk: usize,
        mut f: impl FnMut(&[(i64, f64, f64)]) -> Vec<Vec<Value>>,
    ) -> Result<u64, StoreError> {
        let def = self.layer_def(layer)?;
        let mut types = Vec::with_capacity(columns.len());
        for c in columns {
            match def.schema.columns.iter().find(|x| x.name == *c) {
                Some(col) => types.push(col.ty),
                None => {
                    return Err(StoreError::BadSchema {
                        layer: layer.to_owned(),
                        reason: format!("no column {c:?}"),
                    });
                }
            }
        }
        let t = quote(layer);
        let mut temp = String::from("fid bigint PRIMARY KEY");
        let mut sets = Vec::new();
        for (i, (c, ty)) in columns.iter().zip(&types).enumerate() {
            let _ = write!(temp, ", v{i} {}", pg_type(*ty));
            sets.push(format!("{} = u.v{i}", quote(c)));
        }
        let select = format!(
            "SELECT fid, ST_X(g), ST_Y(g) FROM (SELECT fid, CASE WHEN ST_GeometryType(geom) = \
             'ST_Point' THEN geom END AS g FROM {t} WHERE fid > $1 ORDER BY fid LIMIT $2) s \
             ORDER BY fid"
        );
        let limit = i64::try_from(chunk.max(1)).unwrap_or(i64::MAX);
        let n = self.atomically(|| {
            self.execute(&format!(
                "LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE; \
                 CREATE TEMP TABLE wangge_updates ({temp}) ON COMMIT DROP;"
            ))?;
            let mut last = i64::MIN;
            let mut n = 0u64;
            let mut points: Vec<(i64, f64, f64)> = Vec::with_capacity(chunk);
            let mut buf = Vec::new();
            loop {
                points.clear();
                for r in self.query(&select, &[&last, &limit])? {
                    let fid: i64 = r.get(0);
                    let x: Option<f64> = r.get(1);
                    let y: Option<f64> = r.get(2);
                    points.push((fid, x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN)));
                }
                let Some(&(fid, _, _)) = points.last() else {
                    break;
                };
                last = fid;
                let values = f(&points);
                buf.clear();
                for ((fid, _, _), vals) in points.iter().zip(&values) {
                    let _ = write!(Fmt(&mut buf), "{fid}");
                    for ((v, ty), c) in vals.iter().zip(&types).zip(columns) {
                        buf.push(b'\t');
                        copy_typed(&mut buf, *ty, v).map_err(|got| StoreError::ValueType {
                            layer: layer.to_owned(),
                            column: (*c).to_owned(),
                            expected: *ty,
                            got,
                        })?;
                    }
                    buf.push(b'\n');
                    n += 1;
                }
                self.copy_in("COPY wangge_updates FROM STDIN", &buf)?;
            }
            self.execute(&format!(
                "UPDATE {t} SET {} FROM wangge_updates u WHERE {t}.fid = u.fid; \
                 NOTIFY {CHANNEL}, '{}';",
                sets.join(", "),
                layer.replace('\'', "''")
            ))?;
            Ok(n)
        })?;
        if n >= 1000 {
            self.execute(&format!("ANALYZE {t}"))?;
        }
        Ok(n)
    }

    /// Runs `f` between `BEGIN` and `COMMIT` (`ROLLBACK` when it fails).
    pub(crate) fn atomically<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.execute("BEGIN")?;
        match f() {
            Ok(v) => {
                self.execute("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Runs statements with no results (`batch_execute`).
    pub(crate) fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.client
            .borrow_mut()
            .batch_execute(sql)
            .map_err(|e| self.error(e))
    }

    /// `COPY … FROM STDIN` of text-format `data`.
    pub(crate) fn copy_in(&self, sql: &str, data: &[u8]) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut client = self.client.borrow_mut();
        let mut w = client.copy_in(sql).map_err(|e| self.error(e))?;
        // A write error is the connection's; finish reports it.
        let _ = w.write_all(data);
        w.finish().map_err(|e| self.error(e)).map(drop)
    }

    /// Writes every row of `dump` into the version and lock tables, inside
    /// the transaction open on this connection.
    pub(crate) fn tx_load_versions(&self, dump: &VersionDump) -> Result<(), StoreError> {
        {
            let mut p = self.pending.borrow_mut();
            for v in &dump.versions {
                p.push_version(
                    &v.community,
                    v.version,
                    &v.author,
                    &v.created,
                    &v.reason,
                    &v.op,
                );
            }
            for (community, version, g, geom) in &dump.grids {
                p.push_grid(community, *version, g, geom.as_ref());
            }
            for (community, version, b) in &dump.buildings {
                p.push_building(community, *version, b);
            }
        }
        self.flush_pending()?;
        let mut locks = Vec::new();
        for code in &dump.locks {
            copy_line(&mut locks, &[Some(code.clone())]);
        }
        self.copy_in("COPY wangge_grid_locks FROM STDIN", &locks)
    }
}

/// The GiST index of a layer's geometry.
fn gist_name(layer: &str) -> String {
    format!("{layer}_geom_gist")
}

/// At most five names, for messages.
fn sample(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(", …");
    }
    s
}

fn read_feature(row: &Row, layer: &str, names: &[String]) -> Result<Feature, StoreError> {
    let fid: i64 = row.get(0);
    let bad_geometry = |reason: String| StoreError::Geometry {
        layer: layer.to_owned(),
        fid,
        reason,
    };
    let geometry = match row.get::<_, Option<&[u8]>>(1) {
        Some(wkb) => decode_wkb(wkb).map_err(bad_geometry)?,
        None => return Err(bad_geometry("the geometry is NULL".into())),
    };
    let mut values = Vec::with_capacity(names.len());
    for (i, column) in names.iter().enumerate() {
        let at = i + 2;
        let bad_value = |e: postgres::Error| StoreError::Value {
            layer: layer.to_owned(),
            fid,
            column: column.clone(),
            reason: e.to_string(),
        };
        let value = crate::postgis_reads::row_value(row, at).map_err(bad_value)?;
        values.push(value);
    }
    Ok(Feature {
        fid,
        geometry,
        values,
    })
}

/// A float as PostgreSQL reads it back exactly (shortest round-trip form).
pub(crate) fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{v:?}")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Appends one row in COPY text format: tab-separated, `\N` for NULL,
/// backslash escapes for backslash, tab, newline and carriage return.
pub(crate) fn copy_line(out: &mut Vec<u8>, fields: &[Option<String>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match field {
            None => out.extend_from_slice(b"\\N"),
            Some(s) => copy_escape(out, s),
        }
    }
    out.push(b'\n');
}

/// The PostgreSQL type of a column type.
fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "bigint",
        ColumnType::Real => "double precision",
        ColumnType::Text => "text",
    }
}

/// Appends one value of a column of type `ty` in COPY text format; the
/// value's kind when it does not fit (an integer fits a real column).
fn copy_typed(out: &mut Vec<u8>, ty: ColumnType, value: &Value) -> Result<(), &'static str> {
    match (ty, value) {
        (_, Value::Null) => out.extend_from_slice(b"\\N"),
        (ColumnType::Integer, Value::Integer(v)) => {
            let _ = write!(Fmt(out), "{v}");
        }
        (ColumnType::Real, Value::Real(v)) => out.extend_from_slice(float(*v).as_bytes()),
        (ColumnType::Real, Value::Integer(v)) => {
            out.extend_from_slice(float(*v as f64).as_bytes());
        }
        (ColumnType::Text, Value::Text(s)) => copy_escape(out, s),
        (_, other) => return Err(other.kind()),
    }
    Ok(())
}

pub(crate) fn copy_escape(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Writes features into one layer of a [`PgStore`] inside one transaction,
/// streaming them with `COPY`. Dropping it without
/// [`commit`](Self::commit) rolls everything back.
pub struct PgLayerWriter<'a> {
    store: &'a PgStore,
    schema: LayerSchema,
    /// With a carry key: its position in `schema`, how many other columns
    /// follow in the COPY, and their values by key.
    carry: Option<(usize, usize, HashMap<String, Vec<Value>>)>,
    copy: String,
    buf: Vec<u8>,
    ewkb: Vec<u8>,
    next_fid: i64,
    max_fid: i64,
    rows: u64,
    rebuild_index: bool,
    /// The transaction is still open (neither committed nor rolled back).
    open: bool,
}

impl std::fmt::Debug for PgLayerWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLayerWriter")
            .field("url", &self.store.url)
            .field("layer", &self.schema.name)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl PgLayerWriter<'_> {
    /// Inserts one feature with the next free fid and returns it. Values
    /// follow the rules of [`crate::LayerWriter::insert`].
    pub fn insert(
        &mut self,
        geometry: &Geometry<f64>,
        values: &[Value],
    ) -> Result<i64, StoreError> {
        let fid = self.next_fid;
        self.insert_with_fid(fid, geometry, values)
    }

    /// Like [`PgLayerWriter::insert`], but the feature gets `fid`; a fid
    /// already in the layer fails at the next flush or at commit.
    pub fn insert_with_fid(
        &mut self,
        fid: i64,
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
                got: crate::gpkg::geometry_kind(geometry),
            });
        }
        let start = self.buf.len();
        let _ = write!(Fmt(&mut self.buf), "{fid}\t");
        encode_ewkb(geometry, 4326, &mut self.ewkb);
        self.buf.extend_from_slice(hex(&self.ewkb).as_bytes());
        for (value, col) in values.iter().zip(&self.schema.columns) {
            self.buf.push(b'\t');
            if let Err(got) = copy_typed(&mut self.buf, col.ty, value) {
                self.buf.truncate(start);
                return Err(StoreError::ValueType {
                    layer: layer.clone(),
                    column: col.name.clone(),
                    expected: col.ty,
                    got,
                });
            }
        }
        if let Some((key, n, carried)) = &self.carry {
            let key = match &values[*key] {
                Value::Text(s) => Some(s.clone()),
                Value::Integer(i) => Some(i.to_string()),
                _ => None,
            };
            let extra = key.and_then(|k| carried.get(&k));
            for i in 0..*n {
                self.buf.push(b'\t');
                match extra.map(|e| &e[i]) {
                    None | Some(Value::Null) => self.buf.extend_from_slice(b"\\N"),
                    Some(Value::Integer(v)) => self.buf.extend_from_slice(v.to_string().as_bytes()),
                    Some(Value::Real(v)) => self.buf.extend_from_slice(float(*v).as_bytes()),
                    Some(Value::Text(t)) => copy_escape(&mut self.buf, t),
                }
            }
        }
        self.buf.push(b'\n');
        self.rows += 1;
        self.max_fid = self.max_fid.max(fid);
        self.next_fid = self.next_fid.max(fid + 1);
        if self.buf.len() >= COPY_CHUNK {
            self.flush()?;
        }
        Ok(fid)
    }

    /// Number of features inserted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The statements of this writer's transaction (they run at once; the
    /// inserted features are sent at the latest at commit).
    pub fn tx(&self) -> crate::versions::Tx<'_> {
        crate::versions::Tx::pg(self.store)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.store.copy_in(&self.copy, &self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Sends what is buffered, rebuilds the spatial index of a layer that
    /// was empty, moves the fid sequence past the largest fid, commits,
    /// and returns the number of rows written.
    pub fn commit(mut self) -> Result<u64, StoreError> {
        self.flush()?;
        let store = self.store;
        store.flush_pending()?;
        let layer = self.schema.name.clone();
        let mut client = store.client.borrow_mut();
        let mut sql = String::new();
        if self.rebuild_index {
            let _ = write!(
                sql,
                "CREATE INDEX {} ON {} USING GIST (geom);",
                quote(&gist_name(&layer)),
                quote(&layer)
            );
        }
        if self.max_fid > 0 {
            let _ = write!(
                sql,
                "SELECT setval(pg_get_serial_sequence('{}', 'fid'), {});",
                quote(&layer).replace('\'', "''"),
                self.max_fid
            );
        }
        // Replicas LISTEN on this channel; the notice goes out with the commit.
        let _ = write!(sql, "NOTIFY {CHANNEL}, '{}';", layer.replace('\'', "''"));
        sql.push_str("COMMIT;");
        // Fresh statistics after a bulk load, or the planner reads a
        // million-row table it thinks is empty with a sort per page.
        if self.rows >= 1000 {
            let _ = write!(sql, "ANALYZE {};", quote(&layer));
        }
        client.batch_execute(&sql).map_err(|e| store.error(e))?;
        self.open = false;
        Ok(self.rows)
    }
}

impl Drop for PgLayerWriter<'_> {
    fn drop(&mut self) {
        if self.open
            && let Ok(mut client) = self.store.client.try_borrow_mut()
        {
            let _ = client.batch_execute("ROLLBACK");
            if let Ok(mut p) = self.store.pending.try_borrow_mut() {
                *p = Pending::default();
            }
        }
    }
}

/// `write!` into a byte buffer.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A store location as the command line gives it: a GeoPackage path or a
/// PostgreSQL URL.
pub fn location_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether a path-typed store argument holds a PostgreSQL URL.
pub fn is_postgres_path(path: &Path) -> bool {
    is_postgres_url(&location_of(path))
}
