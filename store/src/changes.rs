//! The change feed's writes (DESIGN §11): entities added, moved, updated
//! or removed one change at a time, the counts they change, and the change
//! log, all in one transaction per batch.
//!
//! A change arrives here validated and located by the engine
//! ([`EntityChange`]: the new geometry with its grid and community codes).
//! [`Store::apply_changes`] (and its PostgreSQL twin) then, for each
//! change in order:
//!
//! * counts it as a duplicate, changing nothing, when its `change_id` is in
//!   the log already or earlier in the batch (a replayed feed gives the same
//!   state);
//! * rejects it alone, with its reason, when it names an unknown id (move,
//!   update, remove), an id that exists (add), a property the layer has no
//!   column for, a value of the wrong type, or sets the derived codes;
//! * else writes the entity row (its `id`, the properties, the geometry and
//!   the code path), and appends a row to the log `wangge_changes` with the
//!   grid codes before and after and, for persons, the H3 cells (never a
//!   position).
//!
//! The counts the batch changes are added once at the end, in code order:
//! `persons` of the grid and its community, street and district for
//! persons; `households` of the same four and `buildings` of the grid for
//! buildings. The other entity layers have no stored count (the server
//! counts them by `grid_code`).
//!
//! The log's `seq` is the position followers continue from
//! ([`LoggedChange`]); `batch` groups the rows of one transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use geo_types::Geometry;
use serde::Serialize;

use crate::gpkg::{Column, ColumnType, StoreError, Value};
use crate::model::Layer;

/// The layers a change may name.
pub const CHANGE_LAYERS: [Layer; 6] = [
    Layer::Persons,
    Layer::Buildings,
    Layer::Places,
    Layer::Objects,
    Layer::Events,
    Layer::Organizations,
];

/// Columns a change may not set: the feed derives them.
pub const DERIVED: [&str; 2] = ["community_code", "grid_code"];

/// What a change does to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// A new entity.
    Add,
    /// A new position (properties may change too).
    Move,
    /// New properties (the position may change too).
    Update,
    /// The entity is gone.
    Remove,
}

impl ChangeOp {
    /// Every operation, in the order of the wire names.
    pub const ALL: [ChangeOp; 4] = [
        ChangeOp::Add,
        ChangeOp::Move,
        ChangeOp::Update,
        ChangeOp::Remove,
    ];

    /// The wire name: `add`, `move`, `update`, `remove`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Add => "add",
            ChangeOp::Move => "move",
            ChangeOp::Update => "update",
            ChangeOp::Remove => "remove",
        }
    }

    /// The operation of a wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<ChangeOp> {
        ChangeOp::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// Where a change puts its entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// WGS84: a point, or a building's polygon.
    pub geometry: Geometry<f64>,
    /// The 15-digit code of the grid that contains it.
    pub grid_code: String,
    /// The 12-digit code of that grid's community.
    pub community_code: String,
    /// For a person: the H3 cell (resolution 8) of the point.
    pub cell: Option<i64>,
}

/// One change, validated and located, for [`Store::apply_changes`].
#[derive(Debug, Clone, PartialEq)]
pub struct EntityChange {
    /// The client's id of the change (idempotency key).
    pub change_id: String,
    /// What it does.
    pub op: ChangeOp,
    /// One of [`CHANGE_LAYERS`].
    pub layer: Layer,
    /// The entity's `id`.
    pub id: String,
    /// The new geometry and codes: required for add and move, optional for
    /// update, none for remove.
    pub placed: Option<Placed>,
    /// Columns to set, by name (not `id`, not [`DERIVED`]).
    pub properties: Vec<(String, Value)>,
}

/// What became of one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written, at this log position.
    Applied {
        /// The log position.
        seq: i64,
        /// The entity's fid.
        fid: i64,
        /// Its grid code afterwards (none once removed).
        grid_code: Option<String>,
        /// Its community code afterwards (none once removed).
        community_code: Option<String>,
    },
    /// Its `change_id` was applied before: nothing changed.
    Duplicate,
    /// Refused, with the reason; nothing of it was written.
    Rejected(String),
}

/// A row of the change log, as followers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    /// Log position (increasing).
    pub seq: i64,
    /// The transaction it was written in.
    pub batch: i64,
    /// The layer.
    pub layer: Layer,
    /// The operation.
    pub op: ChangeOp,
    /// The entity's fid.
    pub fid: i64,
    /// Its grid code before (none for an add, or when it had none).
    pub old_grid: Option<String>,
    /// Its grid code after (none for a remove).
    pub new_grid: Option<String>,
    /// For persons: the H3 cell before.
    pub old_cell: Option<i64>,
    /// For persons: the H3 cell after.
    pub new_cell: Option<i64>,
}

/// An entity found by id inside the transaction.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) fid: i64,
    pub(crate) geometry: Option<Geometry<f64>>,
    pub(crate) grid_code: Option<String>,
    pub(crate) community_code: Option<String>,
    /// A building's households (0 elsewhere).
    pub(crate) households: i64,
}

/// A log row to append.
#[derive(Debug, Clone)]
pub(crate) struct LogRow<'a> {
    pub(crate) change_id: &'a str,
    pub(crate) batch: i64,
    pub(crate) at: &'a str,
    pub(crate) layer: Layer,
    pub(crate) op: ChangeOp,
    pub(crate) entity_id: &'a str,
    pub(crate) fid: i64,
    pub(crate) old_grid: Option<&'a str>,
    pub(crate) new_grid: Option<&'a str>,
    pub(crate) old_cell: Option<i64>,
    pub(crate) new_cell: Option<i64>,
}

/// The statements [`apply`] needs, inside one open transaction of a
/// backend.
pub(crate) trait ChangeTx {
    /// The attribute columns of a layer (other tools' included).
    fn columns(&mut self, layer: Layer) -> Result<Vec<Column>, StoreError>;
    /// The next batch number.
    fn next_batch(&mut self) -> Result<i64, StoreError>;
    /// Whether the log holds this change id.
    fn seen(&mut self, change_id: &str) -> Result<bool, StoreError>;
    /// The entity of `layer` with this `id` (the lowest fid if several).
    fn find(&mut self, layer: Layer, id: &str) -> Result<Option<Found>, StoreError>;
    /// Inserts a row; returns its fid.
    fn insert(
        &mut self,
        layer: Layer,
        geometry: &Geometry<f64>,
        values: &[(&str, &Value)],
    ) -> Result<i64, StoreError>;
    /// Updates a row's geometry (when given) and columns.
    fn update(
        &mut self,
        layer: Layer,
        fid: i64,
        geometry: Option<&Geometry<f64>>,
        values: &[(&str, &Value)],
    ) -> Result<(), StoreError>;
    /// Deletes a row.
    fn delete(&mut self, layer: Layer, fid: i64) -> Result<(), StoreError>;
    /// Whether the store has this layer.
    fn has_layer(&mut self, layer: Layer) -> Result<bool, StoreError>;
    /// Adds `deltas` (non-zero, to columns the layer has) to the integer
    /// columns of the admin unit or grid `code` of `layer` (NULL counts as
    /// 0).
    fn add_counts(
        &mut self,
        layer: Layer,
        code: &str,
        deltas: &[(&str, i64)],
    ) -> Result<(), StoreError>;
    /// Appends a log row; returns its position.
    fn log(&mut self, row: &LogRow<'_>) -> Result<i64, StoreError>;
}

/// Count changes per grid code: persons, households, buildings.
type Deltas = BTreeMap<String, [i64; 3]>;

/// Applies a batch inside `tx` (see the module documentation); returns one
/// outcome per change, in order. `cell_of(lon, lat)` gives the H3 cell of
/// a person's old position.
pub(crate) fn apply(
    tx: &mut dyn ChangeTx,
    at: &str,
    changes: &[EntityChange],
    cell_of: &dyn Fn(f64, f64) -> Option<i64>,
) -> Result<Vec<Outcome>, StoreError> {
    let batch = tx.next_batch()?;
    let mut columns: HashMap<Layer, Vec<Column>> = HashMap::new();
    let mut in_batch: HashSet<&str> = HashSet::new();
    let mut deltas = Deltas::new();
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        if in_batch.contains(c.change_id.as_str()) || tx.seen(&c.change_id)? {
            out.push(Outcome::Duplicate);
            continue;
        }
        let cols = match columns.entry(c.layer) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(tx.columns(c.layer)?),
        };
        let cols = &*cols;
        let outcome = match check(c, cols) {
            Err(reason) => Outcome::Rejected(reason),
            Ok(()) => one(tx, batch, at, c, cols, cell_of, &mut deltas)?,
        };
        if matches!(outcome, Outcome::Applied { .. }) {
            in_batch.insert(&c.change_id);
        }
        out.push(outcome);
    }
    let mut add = |layer: Layer, code: &str, d: &[(&str, i64)]| -> Result<(), StoreError> {
        let cols = match columns.entry(layer) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if !tx.has_layer(layer)? {
                    return Ok(());
                }
                e.insert(tx.columns(layer)?)
            }
        };
        let cols = &*cols;
        let has = |n: &str| cols.iter().any(|c| c.name == n);
        if !has("code") {
            return Ok(());
        }
        let kept: Vec<(&str, i64)> = d
            .iter()
            .copied()
            .filter(|(n, v)| *v != 0 && has(n))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        tx.add_counts(layer, code, &kept)
    };
    for (grid, [persons, households, buildings]) in &deltas {
        add(
            Layer::Grids,
            grid,
            &[
                ("persons", *persons),
                ("households", *households),
                ("buildings", *buildings),
            ],
        )?;
    }
    // The code path above each grid, summed per unit.
    let mut admin: BTreeMap<(usize, &str), [i64; 2]> = BTreeMap::new();
    for (grid, [persons, households, _]) in &deltas {
        if grid.len() != 15 || !grid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for (level, len) in [12, 9, 6].into_iter().enumerate() {
            let a = admin.entry((level, &grid[..len])).or_default();
            a[0] += persons;
            a[1] += households;
        }
    }
    let levels = [Layer::Communities, Layer::Streets, Layer::Districts];
    for ((level, code), [persons, households]) in admin {
        add(
            levels[level],
            code,
            &[("persons", persons), ("households", households)],
        )?;
    }
    Ok(out)
}

/// What can be refused without reading the store.
fn check(c: &EntityChange, cols: &[Column]) -> Result<(), String> {
    match (c.op, &c.placed) {
        (ChangeOp::Add | ChangeOp::Move, None) => {
            return Err(format!("a {} needs a position", c.op.name()));
        }
        (ChangeOp::Remove, Some(_)) => {
            return Err("a remove takes no position".into());
        }
        (ChangeOp::Update, None) if c.properties.is_empty() => {
            return Err("an update needs properties or a position".into());
        }
        _ => {}
    }
    if c.op == ChangeOp::Remove && !c.properties.is_empty() {
        return Err("a remove takes no properties".into());
    }
    for (name, v) in &c.properties {
        if DERIVED.contains(&name.as_str()) {
            return Err(format!(
                "property {name:?} is derived from the position and cannot be set"
            ));
        }
        if name == "id" {
            return Err("property \"id\" is the change's \"id\"".into());
        }
        let Some(col) = cols.iter().find(|x| x.name == *name) else {
            let names: Vec<&str> = cols
                .iter()
                .map(|x| x.name.as_str())
                .filter(|n| *n != "id" && !DERIVED.contains(n))
                .collect();
            return Err(format!(
                "layer {} has no column {name:?}; its columns are: {}",
                c.layer,
                names.join(", ")
            ));
        };
        let fits = matches!(
            (col.ty, v),
            (_, Value::Null)
                | (ColumnType::Integer, Value::Integer(_))
                | (ColumnType::Real, Value::Integer(_) | Value::Real(_))
                | (ColumnType::Text, Value::Text(_))
        );
        if !fits {
            return Err(format!(
                "property {name:?} is {} in the store, not {}",
                col.ty.sql_name(),
                v.kind()
            ));
        }
        if c.layer == Layer::Buildings && name == "households" && v.as_i64().is_some_and(|h| h < 0)
        {
            return Err("a building's households cannot be negative".into());
        }
    }
    if !cols.iter().any(|x| x.name == "id") {
        return Err(format!("layer {} has no \"id\" column", c.layer));
    }
    Ok(())
}

/// Applies one checked change.
fn one(
    tx: &mut dyn ChangeTx,
    batch: i64,
    at: &str,
    c: &EntityChange,
    cols: &[Column],
    cell_of: &dyn Fn(f64, f64) -> Option<i64>,
    deltas: &mut Deltas,
) -> Result<Outcome, StoreError> {
    let found = tx.find(c.layer, &c.id)?;
    let has = |n: &str| cols.iter().any(|x| x.name == n);
    let households_of = |props: &[(String, Value)]| {
        props
            .iter()
            .find(|(n, _)| n == "households")
            .map(|(_, v)| v.as_i64().unwrap_or(0))
    };
    let weight = |hh: i64| -> [i64; 3] {
        match c.layer {
            Layer::Persons => [1, 0, 0],
            Layer::Buildings => [0, hh, 1],
            _ => [0, 0, 0],
        }
    };
    let mut sub = |grid: Option<&str>, w: [i64; 3], sign: i64| {
        if let Some(g) = grid.filter(|g| !g.is_empty())
            && w != [0; 3]
        {
            let d = deltas.entry(g.to_owned()).or_default();
            for i in 0..3 {
                d[i] += sign * w[i];
            }
        }
    };
    let code_values = |p: &Placed| {
        [
            ("community_code", Value::Text(p.community_code.clone())),
            ("grid_code", Value::Text(p.grid_code.clone())),
        ]
    };
    let old_cell = |f: &Found| match (c.layer, &f.geometry) {
        (Layer::Persons, Some(Geometry::Point(p))) => cell_of(p.x(), p.y()),
        _ => None,
    };
    let (fid, old_grid, old_cell, new_grid, new_community, new_cell) = match (c.op, found) {
        (ChangeOp::Add, Some(_)) => {
            return Ok(Outcome::Rejected(format!(
                "{} {:?} exists already; send a move, an update or a remove",
                c.layer, c.id
            )));
        }
        (ChangeOp::Add, None) => {
            let p = c.placed.as_ref().expect("checked: an add has a position");
            let id = Value::Text(c.id.clone());
            let codes = code_values(p);
            let mut values: Vec<(&str, &Value)> = vec![("id", &id)];
            values.extend(c.properties.iter().map(|(n, v)| (n.as_str(), v)));
            values.extend(codes.iter().filter(|(n, _)| has(n)).map(|(n, v)| (*n, v)));
            let fid = tx.insert(c.layer, &p.geometry, &values)?;
            sub(
                Some(&p.grid_code),
                weight(households_of(&c.properties).unwrap_or(0)),
                1,
            );
            (
                fid,
                None,
                None,
                Some(p.grid_code.clone()),
                Some(p.community_code.clone()),
                p.cell,
            )
        }
        (_, None) => {
            return Ok(Outcome::Rejected(format!(
                "there is no {} with id {:?}",
                c.layer, c.id
            )));
        }
        (ChangeOp::Remove, Some(f)) => {
            tx.delete(c.layer, f.fid)?;
            sub(f.grid_code.as_deref(), weight(f.households), -1);
            (f.fid, f.grid_code.clone(), old_cell(&f), None, None, None)
        }
        (ChangeOp::Move | ChangeOp::Update, Some(f)) => {
            let codes = c.placed.as_ref().map(code_values);
            let mut values: Vec<(&str, &Value)> =
                c.properties.iter().map(|(n, v)| (n.as_str(), v)).collect();
            if let Some(codes) = &codes {
                values.extend(codes.iter().filter(|(n, _)| has(n)).map(|(n, v)| (*n, v)));
            }
            tx.update(
                c.layer,
                f.fid,
                c.placed.as_ref().map(|p| &p.geometry),
                &values,
            )?;
            let new_hh = households_of(&c.properties).unwrap_or(f.households);
            let (grid, community, cell) = match &c.placed {
                Some(p) => (
                    Some(p.grid_code.clone()),
                    Some(p.community_code.clone()),
                    p.cell,
                ),
                None => (f.grid_code.clone(), f.community_code.clone(), old_cell(&f)),
            };
            sub(f.grid_code.as_deref(), weight(f.households), -1);
            sub(grid.as_deref(), weight(new_hh), 1);
            (
                f.fid,
                f.grid_code.clone(),
                old_cell(&f),
                grid,
                community,
                cell,
            )
        }
    };
    let seq = tx.log(&LogRow {
        change_id: &c.change_id,
        batch,
        at,
        layer: c.layer,
        op: c.op,
        entity_id: &c.id,
        fid,
        old_grid: old_grid.as_deref(),
        new_grid: new_grid.as_deref(),
        old_cell,
        new_cell,
    })?;
    Ok(Outcome::Applied {
        seq,
        fid,
        grid_code: new_grid,
        community_code: new_community,
    })
}

// ---------------------------------------------------------------------------
// The GeoPackage backend.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::gpkg::{At, LayerDef, NOW, Store, decode, encode_geometry, quote, table_exists};

/// The change log on a GeoPackage (and its indexes): created by the first
/// batch.
const GPKG_LOG_DDL: &str = "
CREATE TABLE IF NOT EXISTS wangge_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  change_id TEXT NOT NULL UNIQUE,
  batch INTEGER NOT NULL,
  at TEXT NOT NULL,
  layer TEXT NOT NULL,
  op TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  fid INTEGER NOT NULL,
  old_grid TEXT,
  new_grid TEXT,
  old_cell INTEGER,
  new_cell INTEGER
);
CREATE INDEX IF NOT EXISTS wangge_changes_batch ON wangge_changes(batch);";

struct GpkgChangeTx<'t> {
    tx: Transaction<'t>,
    path: std::path::PathBuf,
    /// Shared, so a statement can hold its layer's layout while it uses
    /// the transaction.
    defs: HashMap<Layer, std::rc::Rc<LayerDef>>,
    /// Layers written, for `gpkg_contents.last_change`.
    written: HashSet<Layer>,
}

impl GpkgChangeTx<'_> {
    fn def(&mut self, layer: Layer) -> Result<std::rc::Rc<LayerDef>, StoreError> {
        if !self.defs.contains_key(&layer) {
            let def = crate::gpkg::layer_def_of(&self.tx, &self.path, layer.name())?;
            // Lookups by id: the feed's one access path into an entity layer.
            if def.schema.columns.iter().any(|c| c.name == "id") {
                self.tx
                    .execute(
                        &format!(
                            "CREATE INDEX IF NOT EXISTS {} ON {} (id)",
                            quote(&format!("{}_id", layer.name())),
                            quote(layer.name())
                        ),
                        [],
                    )
                    .at(&self.path)?;
            }
            self.defs.insert(layer, std::rc::Rc::new(def));
        }
        Ok(std::rc::Rc::clone(&self.defs[&layer]))
    }
}

fn text(v: Option<rusqlite::types::Value>) -> Option<String> {
    match v? {
        rusqlite::types::Value::Text(s) => Some(s),
        rusqlite::types::Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

impl ChangeTx for GpkgChangeTx<'_> {
    fn columns(&mut self, layer: Layer) -> Result<Vec<Column>, StoreError> {
        Ok(self.def(layer)?.schema.columns.clone())
    }

    fn next_batch(&mut self) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT coalesce(max(batch), 0) + 1 FROM wangge_changes",
                [],
                |r| r.get(0),
            )
            .at(&self.path)
    }

    fn seen(&mut self, change_id: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT 1 FROM wangge_changes WHERE change_id = ?1")
            .at(&self.path)?;
        stmt.exists([change_id]).at(&self.path)
    }

    fn find(&mut self, layer: Layer, id: &str) -> Result<Option<Found>, StoreError> {
        let def = self.def(layer)?;
        let has = |n: &str| def.schema.columns.iter().any(|c| c.name == n);
        let col = |n: &str| if has(n) { quote(n) } else { "NULL".into() };
        let sql = format!(
            "SELECT {fid}, {geom}, {grid}, {community}, {hh} FROM {t} WHERE id = ?1 ORDER BY {fid} LIMIT 1",
            fid = quote(&def.fid),
            geom = quote(&def.geom),
            grid = col("grid_code"),
            community = col("community_code"),
            hh = if layer == Layer::Buildings {
                col("households")
            } else {
                "NULL".into()
            },
            t = quote(layer.name()),
        );
        let path = self.path.clone();
        let mut stmt = self.tx.prepare_cached(&sql).at(&path)?;
        stmt.query_row([id], |r| {
            let geometry = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) => decode(b).ok(),
                _ => None,
            };
            Ok(Found {
                fid: r.get(0)?,
                geometry,
                grid_code: text(r.get(2)?),
                community_code: text(r.get(3)?),
                households: match r.get::<_, rusqlite::types::Value>(4)? {
                    rusqlite::types::Value::Integer(i) => i,
                    rusqlite::types::Value::Real(f) => f as i64,
                    _ => 0,
                },
            })
        })
        .optional()
        .at(&path)
    }

    fn insert(
        &mut self,
        layer: Layer,
        geometry: &Geometry<f64>,
        values: &[(&str, &Value)],
    ) -> Result<i64, StoreError> {
        let def = self.def(layer)?;
        let mut names = vec![quote(&def.geom)];
        names.extend(values.iter().map(|(n, _)| quote(n)));
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(layer.name()),
            names.join(", "),
            marks.join(", ")
        );
        let blob = encode_geometry(geometry, def.srs_id as i32);
        let mut p: Vec<&dyn rusqlite::ToSql> = vec![&blob];
        p.extend(values.iter().map(|(_, v)| *v as &dyn rusqlite::ToSql));
        self.tx
            .prepare_cached(&sql)
            .at(&self.path)?
            .execute(p.as_slice())
            .at(&self.path)?;
        self.written.insert(layer);
        Ok(self.tx.last_insert_rowid())
    }

    fn update(
        &mut self,
        layer: Layer,
        fid: i64,
        geometry: Option<&Geometry<f64>>,
        values: &[(&str, &Value)],
    ) -> Result<(), StoreError> {
        let def = self.def(layer)?;
        let blob = geometry.map(|g| encode_geometry(g, def.srs_id as i32));
        let mut sets = Vec::new();
        let mut p: Vec<&dyn rusqlite::ToSql> = vec![&fid];
        if let Some(b) = &blob {
            p.push(b);
            sets.push(format!("{} = ?{}", quote(&def.geom), p.len()));
        }
        for (n, v) in values {
            p.push(*v);
            sets.push(format!("{} = ?{}", quote(n), p.len()));
        }
        if sets.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = ?1",
            quote(layer.name()),
            sets.join(", "),
            quote(&def.fid)
        );
        self.tx
            .prepare_cached(&sql)
            .at(&self.path)?
            .execute(p.as_slice())
            .at(&self.path)?;
        self.written.insert(layer);
        Ok(())
    }

    fn delete(&mut self, layer: Layer, fid: i64) -> Result<(), StoreError> {
        let def = self.def(layer)?;
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1",
            quote(layer.name()),
            quote(&def.fid)
        );
        self.tx
            .prepare_cached(&sql)
            .at(&self.path)?
            .execute([fid])
            .at(&self.path)?;
        self.written.insert(layer);
        Ok(())
    }

    fn has_layer(&mut self, layer: Layer) -> Result<bool, StoreError> {
        if self.defs.contains_key(&layer) {
            return Ok(true);
        }
        table_exists(&self.tx, layer.name()).at(&self.path)
    }

    fn add_counts(
        &mut self,
        layer: Layer,
        code: &str,
        kept: &[(&str, i64)],
    ) -> Result<(), StoreError> {
        let sets: Vec<String> = kept
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{c} = coalesce({c}, 0) + ?{}", i + 2, c = quote(n)))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE code = ?1",
            quote(layer.name()),
            sets.join(", ")
        );
        let mut p: Vec<&dyn rusqlite::ToSql> = vec![&code];
        p.extend(kept.iter().map(|(_, d)| d as &dyn rusqlite::ToSql));
        self.tx
            .prepare_cached(&sql)
            .at(&self.path)?
            .execute(p.as_slice())
            .at(&self.path)?;
        self.written.insert(layer);
        Ok(())
    }

    fn log(&mut self, r: &LogRow<'_>) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO wangge_changes
                   (change_id, batch, at, layer, op, entity_id, fid, old_grid, new_grid, old_cell, new_cell)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .at(&self.path)?
            .execute(params![
                r.change_id,
                r.batch,
                r.at,
                r.layer.name(),
                r.op.name(),
                r.entity_id,
                r.fid,
                r.old_grid,
                r.new_grid,
                r.old_cell,
                r.new_cell
            ])
            .at(&self.path)?;
        Ok(self.tx.last_insert_rowid())
    }
}

impl Store {
    /// Applies one batch of changes in one transaction (see the module
    /// documentation); `at` is the time recorded in the log (ISO 8601).
    /// The first batch creates the log and an index on `id` of each layer
    /// it touches.
    ///
    /// # Errors
    /// Store errors; nothing of the batch is written then.
    pub fn apply_changes(
        &mut self,
        at: &str,
        changes: &[EntityChange],
        cell_of: &dyn Fn(f64, f64) -> Option<i64>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let path = self.path().to_owned();
        let tx =
            Transaction::new_unchecked(self.connection(), rusqlite::TransactionBehavior::Immediate)
                .at(&path)?;
        tx.execute_batch(GPKG_LOG_DDL).at(&path)?;
        let mut ctx = GpkgChangeTx {
            tx,
            path: path.clone(),
            defs: HashMap::new(),
            written: HashSet::new(),
        };
        let out = apply(&mut ctx, at, changes, cell_of)?;
        for l in &ctx.written {
            ctx.tx
                .execute(
                    &format!("UPDATE gpkg_contents SET last_change = {NOW} WHERE table_name = ?1"),
                    [l.name()],
                )
                .at(&path)?;
        }
        ctx.tx.commit().at(&path)?;
        Ok(out)
    }

    /// The position of the last change in the log (0 without one).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn last_change_seq(&self) -> Result<i64, StoreError> {
        if !table_exists(self.connection(), "wangge_changes").at(self.path())? {
            return Ok(0);
        }
        self.connection()
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM wangge_changes",
                [],
                |r| r.get(0),
            )
            .at(self.path())
    }

    /// The changes logged after position `after`, in order, at most
    /// `limit`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        if !table_exists(self.connection(), "wangge_changes").at(self.path())? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT seq, batch, layer, op, fid, old_grid, new_grid, old_cell, new_cell
                   FROM wangge_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .at(self.path())?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            })
            .at(self.path())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, batch, layer, op, fid, old_grid, new_grid, old_cell, new_cell) =
                row.at(self.path())?;
            let (Ok(layer), Some(op)) = (layer.parse::<Layer>(), ChangeOp::parse(&op)) else {
                return Err(StoreError::BadSchema {
                    layer: "wangge_changes".into(),
                    reason: format!("row {seq} names layer {layer:?} and op {op:?}"),
                });
            };
            out.push(LoggedChange {
                seq,
                batch,
                layer,
                op,
                fid,
                old_grid,
                new_grid,
                old_cell,
                new_cell,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{Point, polygon};
    use proptest::prelude::*;

    const GRIDS: [&str; 4] = [
        "110101001001001",
        "110101001001002",
        "110101001002001",
        "110102001001001",
    ];

    /// A store with four grids (two communities of one street, one of
    /// another district) and their admin units, all counts 0, and empty
    /// entity layers.
    fn store(dir: &std::path::Path) -> Store {
        let mut s = Store::create(&dir.join("s.gpkg")).unwrap();
        let sq = |x: f64| {
            Geometry::MultiPolygon(geo_types::MultiPolygon::new(vec![polygon![
                (x: x, y: 0.0), (x: x + 1.0, y: 0.0), (x: x + 1.0, y: 1.0), (x: x, y: 1.0)
            ]]))
        };
        for l in Layer::ALL {
            s.create_layer(&l.schema()).unwrap();
        }
        let admin = |s: &mut Store, layer: Layer, codes: &[&str]| {
            let mut w = s.writer(layer.name()).unwrap();
            for (i, c) in codes.iter().enumerate() {
                let n = layer.schema().columns.len();
                let mut v = vec![Value::Null; n];
                v[0] = Value::Text((*c).into());
                v[3] = Value::Integer(0);
                v[4] = Value::Integer(0);
                if layer == Layer::Grids {
                    v[5] = Value::Integer(0);
                }
                w.insert(&sq(i as f64), &v).unwrap();
            }
            w.commit().unwrap();
        };
        admin(&mut s, Layer::Grids, &GRIDS);
        admin(
            &mut s,
            Layer::Communities,
            &["110101001001", "110101001002", "110102001001"],
        );
        admin(&mut s, Layer::Streets, &["110101001", "110102001"]);
        admin(&mut s, Layer::Districts, &["110101", "110102"]);
        s
    }

    #[derive(Debug, Clone)]
    struct Step {
        op: u8,
        layer: bool,
        who: u8,
        grid: usize,
        households: i64,
        change: u8,
    }

    fn steps() -> impl Strategy<Value = Vec<Vec<Step>>> {
        let step = (0u8..4, any::<bool>(), 0u8..12, 0usize..4, 0i64..30, 0u8..40).prop_map(
            |(op, layer, who, grid, households, change)| Step {
                op,
                layer,
                who,
                grid,
                households,
                change,
            },
        );
        prop::collection::vec(prop::collection::vec(step, 1..12), 1..8)
    }

    fn change(s: &Step) -> EntityChange {
        let op = ChangeOp::ALL[s.op as usize];
        let layer = if s.layer {
            Layer::Persons
        } else {
            Layer::Buildings
        };
        let grid = GRIDS[s.grid];
        let x = s.grid as f64 + 0.5;
        let geometry = if layer == Layer::Persons {
            Geometry::Point(Point::new(x, 0.5))
        } else {
            Geometry::Polygon(polygon![(x: x, y: 0.4), (x: x + 0.1, y: 0.4), (x: x + 0.1, y: 0.5)])
        };
        let placed = matches!(op, ChangeOp::Add | ChangeOp::Move).then(|| Placed {
            geometry,
            grid_code: grid.into(),
            community_code: grid[..12].into(),
            cell: (layer == Layer::Persons).then_some(s.grid as i64),
        });
        let properties = match (op, layer) {
            (ChangeOp::Add | ChangeOp::Update, Layer::Buildings) => {
                vec![("households".to_owned(), Value::Integer(s.households))]
            }
            (ChangeOp::Update, _) => vec![("age_band".to_owned(), Value::Text("20-29".into()))],
            _ => Vec::new(),
        };
        EntityChange {
            change_id: format!("c{}", s.change),
            op,
            layer,
            id: format!("e{}", s.who),
            placed,
            properties,
        }
    }

    fn counts(s: &Store, sql: &str) -> Vec<(String, i64)> {
        let mut st = s.connection().prepare(sql).unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// After any sequence of batches: each stored count equals the
        /// aggregate of the rows, outcomes follow a model of which ids and
        /// change ids exist, and the log holds one row per applied change.
        #[test]
        fn counts_follow_the_rows(batches in steps()) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = store(dir.path());
            let mut present: HashSet<(bool, u8)> = HashSet::new();
            let mut seen: HashSet<u8> = HashSet::new();
            let mut applied = 0;
            for b in &batches {
                let changes: Vec<EntityChange> = b.iter().map(change).collect();
                let out = s.apply_changes("2026-12-02T00:00:00.000Z", &changes, &|x, _| Some(x.floor() as i64)).unwrap();
                for (st, o) in b.iter().zip(&out) {
                    let key = (st.layer, st.who);
                    let want = if seen.contains(&st.change) {
                        "dup"
                    } else {
                        match (st.op, present.contains(&key)) {
                            (0, false) | (1..=3, true) => "ok",
                            _ => "rejected",
                        }
                    };
                    let got = match o {
                        Outcome::Applied { .. } => "ok",
                        Outcome::Duplicate => "dup",
                        Outcome::Rejected(_) => "rejected",
                    };
                    prop_assert_eq!(want, got, "{:?} → {:?}", st, o);
                    if got == "ok" {
                        applied += 1;
                        seen.insert(st.change);
                        match st.op {
                            0 => { present.insert(key); }
                            3 => { present.remove(&key); }
                            _ => {}
                        }
                    }
                }
            }
            let grid_persons = counts(&s, "SELECT code, persons FROM grids ORDER BY code");
            let rows: HashMap<String, i64> = counts(&s, "SELECT grid_code, count(*) FROM persons GROUP BY 1").into_iter().collect();
            for (code, n) in &grid_persons {
                prop_assert_eq!(*n, rows.get(code).copied().unwrap_or(0), "grid {} persons", code);
            }
            for (layer, len) in [("grids", 15), ("communities", 12), ("streets", 9), ("districts", 6)] {
                let stored = counts(&s, &format!("SELECT code, households FROM {layer}"));
                let rows: HashMap<String, i64> = counts(&s, &format!(
                    "SELECT substr(grid_code, 1, {len}), sum(households) FROM buildings GROUP BY 1")).into_iter().collect();
                for (code, n) in &stored {
                    prop_assert_eq!(*n, rows.get(code).copied().unwrap_or(0), "{} {} households", layer, code);
                }
                let stored = counts(&s, &format!("SELECT code, persons FROM {layer}"));
                let rows: HashMap<String, i64> = counts(&s, &format!(
                    "SELECT substr(grid_code, 1, {len}), count(*) FROM persons GROUP BY 1")).into_iter().collect();
                for (code, n) in &stored {
                    prop_assert_eq!(*n, rows.get(code).copied().unwrap_or(0), "{} {} persons", layer, code);
                }
            }
            let buildings = counts(&s, "SELECT code, buildings FROM grids");
            let rows: HashMap<String, i64> = counts(&s, "SELECT grid_code, count(*) FROM buildings GROUP BY 1").into_iter().collect();
            for (code, n) in &buildings {
                prop_assert_eq!(*n, rows.get(code).copied().unwrap_or(0), "grid {} buildings", code);
            }
            prop_assert_eq!(s.last_change_seq().unwrap() >= applied, true);
            prop_assert_eq!(s.changes_after(0, usize::MAX >> 1).unwrap().len() as i64, applied);
        }
    }
}
