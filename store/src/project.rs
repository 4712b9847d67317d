//! A store as a wangge project: its layers held against their fixed schemas
//! ([`Layer::schema`]), for stores that QGIS, GDAL or another tool edited
//! or wrote.
//!
//! * Columns a layer has beyond its schema are the user's: every command
//!   leaves them alone (writers name the columns they write, see
//!   [`Store::writer_for`]), and so are tables and layers that are not
//!   wangge's (QGIS's `layer_styles`, `qgis_projects`, extra layers).
//! * [`require`] is what reading commands call: every problem of every
//!   wangge layer in the store, each naming its layer, column and what was
//!   expected, in one [`StoreError::Layout`].
//! * [`complete`] is what writing commands call: it adds what is missing
//!   and can be added (missing columns, filled where the store holds what
//!   they derive from; a missing R-tree; polygon layers declared `POLYGON`
//!   where wangge writes multipolygons), and refuses the rest (a missing
//!   key column, a retyped column, another geometry or fid column name,
//!   another SRS). wangge never changes a column that is there.

use geo_types::Geometry;
use rusqlite::Connection;
use serde::Serialize;

use crate::model::Layer;
use crate::{Column, GeomType, LayoutProblem, Store, StoreError, decode_geometry};

/// The area in m² of a polygonal geometry (`None` for any other): what
/// [`complete`] fills `area_m2` with. The engine gives its geodesic area.
pub type AreaFn<'a> = &'a dyn Fn(&Geometry<f64>) -> Option<f64>;

/// What [`complete`] did to one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completed {
    /// The layer.
    pub layer: String,
    /// What was done, e.g. `added column "households" (the sum of its
    /// buildings' households by community_code)`.
    pub what: String,
}

/// The hint of a [`StoreError::Layout`] from [`require`] when
/// [`complete`] can fix everything.
pub const COMPLETE_HINT: &str = ". `wangge partition`, `wangge import` or `wangge assign --store … \
     --layers …` complete the store: they add the missing columns (filled where the store holds \
     what they derive from), the spatial index and multipolygon types";

/// The key column of a layer (`code` of admin layers, `id` of the others):
/// it cannot be made up, and rewritten rows keep their extra columns by it.
#[must_use]
pub fn key_column(layer: Layer) -> &'static str {
    if layer.is_admin() { "code" } else { "id" }
}

/// Every way the wangge layers of `store` (those present; absent layers
/// are each command's business) differ from their fixed schemas.
///
/// # Errors
/// Store errors.
pub fn check(store: &Store) -> Result<Vec<LayoutProblem>, StoreError> {
    let mut out = Vec::new();
    for layer in Layer::ALL {
        if store.has_layer(layer.name())? {
            out.extend(store.layout_problems(&layer.schema())?);
        }
    }
    Ok(out)
}

/// Whether [`complete`] can fix `problem` of a wangge layer.
#[must_use]
pub fn fixable(problem: &LayoutProblem) -> bool {
    match problem {
        LayoutProblem::MissingColumn { layer, column, .. } => Layer::ALL
            .iter()
            .find(|l| l.name() == layer)
            .is_some_and(|l| key_column(*l) != column),
        LayoutProblem::NoSpatialIndex { .. } => true,
        LayoutProblem::GeometryType {
            expected, declared, ..
        } => {
            *expected == GeomType::MultiPolygon
                && GeomType::from_gpkg_name(declared) == GeomType::Polygon
        }
        _ => false,
    }
}

/// What to do about `problems`, as the hint of a [`StoreError::Layout`].
fn hint(problems: &[LayoutProblem]) -> String {
    if problems.iter().all(fixable) {
        return COMPLETE_HINT.to_owned();
    }
    let mut out = String::new();
    if problems
        .iter()
        .any(|p| matches!(p, LayoutProblem::ColumnType { .. }))
    {
        out.push_str(
            ". wangge never changes a column that is there: give retyped columns their \
             expected type back in the tool that changed it",
        );
    }
    if problems
        .iter()
        .any(|p| matches!(p, LayoutProblem::MissingColumn { .. }) && !fixable(p))
    {
        out.push_str(
            ". A layer's key column (code, or id) cannot be made up: restore it in the tool \
             that dropped it",
        );
    }
    out
}

/// Fails with every problem of [`check`], in one [`StoreError::Layout`]
/// that says how to fix them.
///
/// # Errors
/// [`StoreError::Layout`], or store errors.
pub fn require(store: &Store) -> Result<(), StoreError> {
    let problems = check(store)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::Layout {
        path: store.path().to_owned(),
        hint: hint(&problems),
        problems,
    })
}

/// Brings every wangge layer of `store` to its fixed schema where that can
/// be done without inventing data, and returns what it did (nothing for a
/// complete store):
///
/// * a `POLYGON` admin layer becomes `MULTIPOLYGON` (what partition and
///   noding write there);
/// * a layer without an R-tree gets one;
/// * a missing column is added, NULL in every row;
/// * NULLs in the derived columns of the admin layers (those just added
///   included) are filled where the store holds what they derive from: an
///   admin unit's `parent_code` from its code (`""` for a district),
///   `area_m2` the geodesic area of its geometry, `households` the sum of
///   the households of the buildings whose `community_code` is in it,
///   `persons` the count of the persons whose `community_code` is in it
///   (for grids: the buildings with its `grid_code`, and the persons whose
///   `building_id` is one of them), a grid's `buildings` the count of
///   buildings with its code. A unit nothing counts towards stays NULL
///   (read as 0), so a later run fills it once `wangge partition` (the
///   buildings' `grid_code` and `community_code`) or `wangge assign --store
///   … --layers …` (the entities' codes) wrote what it derives from. Values
///   that are there are never changed.
///
/// Each layer's changes are one transaction. Fails, changing nothing,
/// when a problem cannot be fixed (see [`fixable`]).
///
/// # Errors
/// [`StoreError::Layout`] with the problems that cannot be fixed, or store
/// errors.
pub fn complete(store: &mut Store, area: AreaFn<'_>) -> Result<Vec<Completed>, StoreError> {
    let problems = check(store)?;
    let (ok, bad): (Vec<_>, Vec<_>) = problems.into_iter().partition(fixable);
    if !bad.is_empty() {
        return Err(StoreError::Layout {
            path: store.path().to_owned(),
            hint: hint(&bad),
            problems: bad,
        });
    }
    let mut done = Vec::new();
    // Entity layers first: admin counts derive from them.
    let order = Layer::ALL
        .iter()
        .copied()
        .filter(|l| !l.is_admin())
        .chain(Layer::ADMIN);
    for layer in order {
        let name = layer.name();
        if !store.has_layer(name)? {
            continue;
        }
        let note = |what: String| Completed {
            layer: name.to_owned(),
            what,
        };
        let mut missing: Vec<Column> = Vec::new();
        for p in ok.iter().filter(|p| p.layer() == name) {
            match p {
                LayoutProblem::GeometryType { declared, .. } => {
                    let n = store.promote_to_multipolygon(name)?;
                    done.push(note(format!(
                        "declared MULTIPOLYGON instead of {declared} ({n} polygons rewritten as one-part multipolygons)"
                    )));
                }
                LayoutProblem::NoSpatialIndex { .. } => {
                    let n = store.create_spatial_index(name)?;
                    done.push(note(format!(
                        "created the R-tree spatial index ({n} features)"
                    )));
                }
                LayoutProblem::MissingColumn {
                    column, expected, ..
                } => missing.push(Column {
                    name: column.clone(),
                    ty: *expected,
                }),
                _ => {}
            }
        }
        // The derived columns with NULLs (all of them once added).
        let mut derive: Vec<&str> = Vec::new();
        for col in derived(layer) {
            let added = missing.iter().any(|c| c.name == *col);
            if added || has_nulls(store, name, col)? {
                derive.push(col);
            }
        }
        if missing.is_empty() && derive.is_empty() {
            continue;
        }
        let sources = Sources::of(store)?;
        let mut notes = Vec::new();
        store.add_columns(name, &missing, |conn| {
            for col in &missing {
                if !derive.contains(&col.name.as_str()) {
                    notes.push(format!(
                        "added column {:?}, empty{}",
                        col.name,
                        later(layer, &col.name)
                    ));
                }
            }
            for col in &derive {
                let how =
                    fill(conn, layer, col, &sources, area).map_err(|e| StoreError::BadSchema {
                        layer: name.to_owned(),
                        reason: format!("cannot fill column {col:?}: {e}"),
                    })?;
                let added = missing.iter().any(|c| c.name == *col);
                match (added, how) {
                    (true, Fill::Filled { n: 0, how }) => {
                        notes.push(format!(
                            "added column {col:?}, empty: {nothing} ({how})",
                            nothing = NOTHING
                        ));
                    }
                    (true, Fill::Filled { n, how }) => {
                        notes.push(format!("added column {col:?}, {n} values filled: {how}"));
                    }
                    (true, Fill::Nothing(why)) => {
                        notes.push(format!("added column {col:?}, empty: {why}"));
                    }
                    (false, Fill::Filled { n, how }) if n > 0 => {
                        notes.push(format!("filled {n} empty {col:?} values: {how}"));
                    }
                    (false, _) => {}
                }
            }
            Ok(())
        })?;
        done.extend(notes.into_iter().map(note));
    }
    Ok(done)
}

/// Why a derived count stays empty.
const NOTHING: &str = "nothing in the store counts towards it yet";

/// The columns of an admin layer that [`complete`] derives.
fn derived(layer: Layer) -> &'static [&'static str] {
    match layer {
        Layer::Grids => &[
            "parent_code",
            "area_m2",
            "households",
            "persons",
            "buildings",
        ],
        l if l.is_admin() => &["parent_code", "area_m2", "households", "persons"],
        _ => &[],
    }
}

/// What fills an entity column left empty by [`complete`].
fn later(layer: Layer, column: &str) -> &'static str {
    match (layer, column) {
        (Layer::Buildings, "community_code" | "grid_code") => " until `wangge partition` writes it",
        (_, "community_code" | "grid_code") => {
            " until `wangge assign --store … --layers …` writes it"
        }
        _ => "",
    }
}

/// Whether a column of a layer holds a NULL.
fn has_nulls(store: &Store, table: &str, column: &str) -> Result<bool, StoreError> {
    store
        .connection()
        .query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE \"{column}\" IS NULL)"),
            [],
            |r| r.get(0),
        )
        .map_err(|e| StoreError::BadSchema {
            layer: table.to_owned(),
            reason: e.to_string(),
        })
}

/// Which entity columns hold what admin counts derive from.
#[derive(Debug, Clone, Copy)]
struct Sources {
    /// `buildings` with `households` and `community_code`.
    building_communities: bool,
    /// `buildings` with `households` and `grid_code`.
    building_grids: bool,
    /// `persons` with `community_code`.
    person_communities: bool,
    /// `persons` with `building_id` and `buildings` with `id`, `grid_code`.
    person_buildings: bool,
}

impl Sources {
    fn of(store: &Store) -> Result<Sources, StoreError> {
        let has = |layer: Layer, cols: &[&str]| -> Result<bool, StoreError> {
            if !store.has_layer(layer.name())? {
                return Ok(false);
            }
            let expected = layer.schema();
            let schema = store.schema(layer.name())?;
            Ok(cols.iter().all(|c| {
                let want = expected.columns.iter().find(|x| x.name == *c);
                schema
                    .columns
                    .iter()
                    .any(|x| x.name == *c && want.is_none_or(|w| w.ty == x.ty))
            }))
        };
        Ok(Sources {
            building_communities: has(Layer::Buildings, &["households", "community_code"])?,
            building_grids: has(Layer::Buildings, &["households", "grid_code"])?,
            person_communities: has(Layer::Persons, &["community_code"])?,
            person_buildings: has(Layer::Persons, &["building_id"])?
                && has(Layer::Buildings, &["id", "grid_code"])?,
        })
    }
}

/// The outcome of filling one derived column.
enum Fill {
    /// `n` NULLs were filled, derived `how`.
    Filled { n: u64, how: &'static str },
    /// Nothing to derive from, and why.
    Nothing(&'static str),
}

/// Fills the NULLs of the derived `column` of an admin `layer` where the
/// store holds what it derives from.
fn fill(
    conn: &Connection,
    layer: Layer,
    column: &str,
    src: &Sources,
    area: AreaFn<'_>,
) -> rusqlite::Result<Fill> {
    let table = layer.name();
    let Some(len) = layer.code_len() else {
        return Ok(Fill::Nothing("not a derived column"));
    };
    let grids = layer == Layer::Grids;
    // Counts by code from `select` (columns k, n), set where NULL and
    // something counted towards the unit.
    let by_code = |select: &str| -> rusqlite::Result<u64> {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.wangge_agg;
             CREATE TEMP TABLE wangge_agg AS {select};
             CREATE INDEX temp.wangge_agg_k ON wangge_agg (k);"
        ))?;
        let n = conn.execute(
            &format!(
                "UPDATE \"{table}\" SET \"{column}\" =
                   (SELECT n FROM temp.wangge_agg WHERE k = \"{table}\".code)
                 WHERE \"{column}\" IS NULL AND code IN (SELECT k FROM temp.wangge_agg)"
            ),
            [],
        )?;
        conn.execute_batch("DROP TABLE temp.wangge_agg;")?;
        Ok(n as u64)
    };
    let prefix = format!("substr(community_code, 1, {len})");
    Ok(match column {
        "parent_code" => {
            let parent = if len > 6 {
                format!("substr(code, 1, {})", len - 3)
            } else {
                "''".to_owned()
            };
            let n = conn.execute(
                &format!(
                    "UPDATE \"{table}\" SET parent_code = {parent}
                     WHERE parent_code IS NULL AND code IS NOT NULL"
                ),
                [],
            )? as u64;
            let how = if len > 6 {
                "the code without its last 3 digits"
            } else {
                "empty text: districts have no parent"
            };
            Fill::Filled { n, how }
        }
        "area_m2" => Fill::Filled {
            n: fill_areas(conn, table, area)?,
            how: "the geodesic area of the geometry",
        },
        "households" if grids && src.building_grids => Fill::Filled {
            n: by_code(
                "SELECT grid_code AS k, sum(households) AS n FROM buildings \
                 WHERE grid_code IS NOT NULL GROUP BY grid_code",
            )?,
            how: "the sum of the households of its buildings (by grid_code)",
        },
        "households" if !grids && src.building_communities => Fill::Filled {
            n: by_code(&format!(
                "SELECT {prefix} AS k, sum(households) AS n FROM buildings \
                 WHERE community_code IS NOT NULL GROUP BY k"
            ))?,
            how: "the sum of the households of its buildings (by community_code)",
        },
        "buildings" if src.building_grids => Fill::Filled {
            n: by_code(
                "SELECT grid_code AS k, count(*) AS n FROM buildings \
                 WHERE grid_code IS NOT NULL GROUP BY grid_code",
            )?,
            how: "the number of buildings with its grid_code",
        },
        "persons" if grids && src.person_buildings => Fill::Filled {
            n: by_code(
                "SELECT b.grid_code AS k, count(*) AS n FROM persons p \
                 JOIN buildings b ON b.id = p.building_id \
                 WHERE b.grid_code IS NOT NULL GROUP BY b.grid_code",
            )?,
            how: "the number of persons whose building has its grid_code",
        },
        "persons" if !grids && src.person_communities => Fill::Filled {
            n: by_code(&format!(
                "SELECT {prefix} AS k, count(*) AS n FROM persons \
                 WHERE community_code IS NOT NULL GROUP BY k"
            ))?,
            how: "the number of its persons (by community_code)",
        },
        _ => Fill::Nothing(NOTHING),
    })
}

/// Sets the NULL `area_m2` of the features of an admin layer to the
/// geodesic area of their geometry; returns how many were set.
fn fill_areas(conn: &Connection, table: &str, area: AreaFn<'_>) -> rusqlite::Result<u64> {
    let mut rows: Vec<(i64, f64)> = Vec::new();
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT fid, geom FROM \"{table}\" WHERE area_m2 IS NULL"
        ))?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let blob: Option<Vec<u8>> = r.get(1)?;
            let a = blob
                .and_then(|b| decode_geometry(&b).ok())
                .and_then(|g| area(&g));
            if let Some(a) = a {
                rows.push((r.get(0)?, a));
            }
        }
    }
    let mut upd = conn.prepare(&format!(
        "UPDATE \"{table}\" SET area_m2 = ?1 WHERE fid = ?2"
    ))?;
    for (fid, a) in &rows {
        upd.execute(rusqlite::params![a, fid])?;
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use geo_types::{MultiPolygon, Point, polygon};

    use super::*;
    use crate::{ColumnType, LayerSchema, Value};

    /// A planar stand-in for the engine's geodesic area (the test checks
    /// what `complete` does with it, not the area).
    fn area(g: &Geometry<f64>) -> Option<f64> {
        let m: MultiPolygon<f64> = match g {
            Geometry::Polygon(p) => MultiPolygon::new(vec![p.clone()]),
            Geometry::MultiPolygon(m) => m.clone(),
            _ => return None,
        };
        let ring = |r: &geo_types::LineString<f64>| {
            r.0.windows(2)
                .map(|w| w[0].x * w[1].y - w[1].x * w[0].y)
                .sum::<f64>()
                / 2.0
        };
        Some(m.0.iter().map(|p| ring(p.exterior()).abs()).sum::<f64>() * 1e10)
    }

    fn layer(name: &str, geometry: GeomType, cols: &[(&str, ColumnType)]) -> LayerSchema {
        LayerSchema {
            name: name.into(),
            geometry,
            columns: cols
                .iter()
                .map(|(n, ty)| Column {
                    name: (*n).into(),
                    ty: *ty,
                })
                .collect(),
        }
    }

    /// What `ogr2ogr` makes of GeoJSON with only codes and names: two
    /// communities as POLYGON, buildings and persons without derived
    /// columns.
    fn foreign() -> (tempfile::TempDir, Store) {
        use ColumnType::{Integer as I, Text as T};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("f.gpkg")).unwrap();
        store
            .create_layer(&layer(
                "communities",
                GeomType::Polygon,
                &[("code", T), ("name", T)],
            ))
            .unwrap();
        store
            .create_layer(&layer(
                "buildings",
                GeomType::Polygon,
                &[("id", T), ("households", I), ("community_code", T)],
            ))
            .unwrap();
        store
            .create_layer(&layer(
                "persons",
                GeomType::Point,
                &[("id", T), ("community_code", T)],
            ))
            .unwrap();
        let mut w = store.writer("communities").unwrap();
        for (code, x) in [("110101001001", 116.0), ("110101001002", 116.01)] {
            let p = polygon![(x: x, y: 39.9), (x: x + 0.01, y: 39.9), (x: x + 0.01, y: 39.91), (x: x, y: 39.91)];
            w.insert(&Geometry::Polygon(p), &[code.into(), "c".into()])
                .unwrap();
        }
        w.commit().unwrap();
        let mut w = store.writer("buildings").unwrap();
        for (id, hh, cc) in [("B1", 3, "110101001001"), ("B2", 4, "110101001001")] {
            let p =
                polygon![(x: 116.001, y: 39.901), (x: 116.002, y: 39.901), (x: 116.002, y: 39.902)];
            w.insert(&Geometry::Polygon(p), &[id.into(), hh.into(), cc.into()])
                .unwrap();
        }
        w.commit().unwrap();
        let mut w = store.writer("persons").unwrap();
        for i in 0..5 {
            w.insert(
                &Geometry::Point(Point::new(116.001, 39.901)),
                &[format!("P{i}").into(), Value::from("110101001001")],
            )
            .unwrap();
        }
        w.commit().unwrap();
        (dir, store)
    }

    #[test]
    fn a_foreign_store_is_completed_from_what_it_holds() {
        let (_dir, mut store) = foreign();
        let err = require(&store).unwrap_err();
        let text = err.to_string();
        for needle in [
            "layer \"communities\" has no column \"households\" (expected INTEGER)",
            "layer \"communities\" declares POLYGON geometries (expected MULTIPOLYGON)",
            "layer \"buildings\" has no column \"grid_code\" (expected TEXT)",
            "layer \"persons\" has no column \"building_id\" (expected TEXT)",
            "complete the store",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        let done = complete(&mut store, &area).unwrap();
        assert!(
            done.iter()
                .any(|d| d.layer == "communities" && d.what.contains("MULTIPOLYGON")),
            "{done:?}"
        );
        require(&store).unwrap();
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, Option<i64>, Option<i64>, f64)> = store
            .connection()
            .prepare(
                "SELECT code, parent_code, households, persons, area_m2 FROM communities ORDER BY code",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            (rows[0].1.as_str(), rows[0].2, rows[0].3),
            ("110101001", Some(7), Some(5))
        );
        // Nothing counts towards the second: unknown, not 0.
        assert_eq!((rows[1].2, rows[1].3), (None, None));
        let mut areas = Vec::new();
        store
            .for_each_columns("communities", &["area_m2"], None, |f| {
                areas.push((area(&f.geometry).unwrap(), f.values[0].as_f64().unwrap()));
                Ok(())
            })
            .unwrap();
        assert!(areas.iter().all(|(a, b)| a == b && *a > 9e5), "{areas:?}");
        // Complete is idempotent; a later count fills what is still empty.
        assert!(complete(&mut store, &area).unwrap().is_empty());
        store
            .connection()
            .execute(
                "UPDATE buildings SET community_code = '110101001002' WHERE id = 'B2'",
                [],
            )
            .unwrap();
        let done = complete(&mut store, &area).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let hh: Vec<Option<i64>> = store
            .connection()
            .prepare("SELECT households FROM communities ORDER BY code")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(hh, [Some(7), Some(4)], "filled values are never changed");
    }

    #[test]
    fn what_cannot_be_derived_is_refused_and_nothing_changes() {
        let (_dir, mut store) = foreign();
        store
            .connection()
            .execute_batch(
                "ALTER TABLE persons DROP COLUMN id;
                 ALTER TABLE buildings RENAME COLUMN households TO hh;
                 ALTER TABLE buildings ADD COLUMN households REAL;",
            )
            .unwrap();
        let before = check(&store).unwrap();
        let err = complete(&mut store, &area).unwrap_err();
        let StoreError::Layout { problems, hint, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("layer \"persons\" has no column \"id\" (expected TEXT)"),
            "{text}"
        );
        assert!(
            text.contains(
                "column \"households\" of layer \"buildings\" is declared REAL (expected INTEGER)"
            ),
            "{text}"
        );
        assert!(hint.contains("expected type back"), "{hint}");
        assert_eq!(check(&store).unwrap(), before);
    }
}
