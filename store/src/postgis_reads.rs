//! The typed reads of [`PgStore`] that the tiler, the server and the
//! read-only commands need: the same answers as the GeoPackage store's
//! (see `queries.rs` and `versions.rs`), through the GiST index where a
//! region is given.

use std::collections::{BTreeMap, HashMap, HashSet};

use geo_types::{Geometry, Rect};
use postgres::Row;
use postgres::types::Type;

use crate::gpkg::{decode_wkb, quote};
use crate::model::Layer;
use crate::postgis::{PAGE, PgStore};
use crate::versions::{VersionBuilding, VersionContents, VersionGrid, VersionInfo};
use crate::{Selection, StoreError, Value};

/// Reads column `at` of `row` as a [`Value`] (the reads cast every column
/// to `bigint`, `double precision` or `text`).
pub(crate) fn row_value(row: &Row, at: usize) -> Result<Value, postgres::Error> {
    let ty = row.columns()[at].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(at)?
            .map_or(Value::Null, Value::Integer)
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(at)?
            .map_or(Value::Null, Value::Real)
    } else {
        row.try_get::<_, Option<String>>(at)?
            .map_or(Value::Null, Value::Text)
    })
}

fn envelope(b: Rect<f64>) -> [f64; 4] {
    [b.min().x, b.min().y, b.max().x, b.max().y]
}

impl PgStore {
    /// Like [`crate::Store::read_features`]: every selected feature of
    /// `layer` in fid order, with its geometry (`None` when NULL, an error
    /// string when unreadable) and the values of `columns`.
    pub fn read_features<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        mut f: impl FnMut(i64, Option<Result<Geometry<f64>, String>>, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.read_rows_impl(layer, columns, selection, true, |fid, g, v| f(fid, g, v))
    }

    /// Like [`PgStore::read_features`] without the geometries.
    pub fn read_rows<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        mut f: impl FnMut(i64, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.read_rows_impl(layer, columns, selection, false, |fid, _, v| f(fid, v))
    }

    fn read_rows_impl<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        geometry: bool,
        mut f: impl FnMut(i64, Option<Result<Geometry<f64>, String>>, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let def = self.layer_def(layer)?;
        let position = |c: &str| def.schema.columns.iter().position(|x| x.name == c);
        let mut select = format!(
            "SELECT fid, {}",
            if geometry {
                "ST_AsBinary(geom)"
            } else {
                "NULL::bytea"
            }
        );
        for c in columns {
            select.push_str(", ");
            match position(c) {
                Some(i) => select.push_str(&def.reads[i]),
                None => select.push_str("NULL::text"),
            }
        }
        select.push_str(&format!(" FROM {}", quote(layer)));
        let mut n = 0u64;
        let mut values = Vec::with_capacity(columns.len());
        let mut emit = |rows: Vec<Row>, n: &mut u64| -> Result<Option<i64>, E> {
            let mut last = None;
            for row in &rows {
                let fid: i64 = row.get(0);
                let geometry = row
                    .get::<_, Option<&[u8]>>(1)
                    .map(|b| decode_wkb(b).map_err(|r| format!("invalid WKB geometry: {r}")));
                values.clear();
                for i in 0..columns.len() {
                    values.push(row_value(row, 2 + i).unwrap_or(Value::Null));
                }
                f(fid, geometry, &values)?;
                *n += 1;
                last = Some(fid);
            }
            Ok(last)
        };
        let (first, last) = match selection {
            Selection::All => (i64::MIN, i64::MAX),
            Selection::FidRange(a, b) => (a, b),
            Selection::In { column, values } => {
                let Some(i) = position(column) else {
                    return Ok(0);
                };
                if values.is_empty() {
                    return Ok(0);
                }
                let sql = format!(
                    "{select} WHERE ({})::text = ANY($1) ORDER BY fid",
                    def.reads[i]
                );
                let rows = self.query(&sql, &[&values])?;
                emit(rows, &mut n)?;
                return Ok(n);
            }
            Selection::Fids(fids) => {
                if fids.is_empty() {
                    return Ok(0);
                }
                let rows = self.query(
                    &format!("{select} WHERE fid = ANY($1) ORDER BY fid"),
                    &[&fids],
                )?;
                emit(rows, &mut n)?;
                return Ok(n);
            }
        };
        // Pages by key, so that `f` may use the store between pages and a
        // layer of millions never sits in memory.
        let sql = format!("{select} WHERE fid >= $1 AND fid <= $2 ORDER BY fid LIMIT {PAGE}");
        let mut from = first;
        loop {
            let rows = self.query(&sql, &[&from, &last])?;
            let full = rows.len() as i64 == PAGE;
            match emit(rows, &mut n)? {
                Some(fid) if full && fid < last => from = fid + 1,
                _ => return Ok(n),
            }
        }
    }

    /// True when `layer` exists and holds at least one feature.
    pub fn has_features(&self, layer: &str) -> Result<bool, StoreError> {
        if !self.has_layer(layer)? {
            return Ok(false);
        }
        let rows = self.query(
            &format!("SELECT EXISTS (SELECT 1 FROM {})", quote(layer)),
            &[],
        )?;
        Ok(rows[0].get(0))
    }

    /// Like [`crate::Store::bbox_of`]: the box of the feature of admin
    /// `layer` with `code`.
    pub fn bbox_of(&self, layer: Layer, code: &str) -> Result<Option<Rect<f64>>, StoreError> {
        let rows = self.query(
            &format!(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
                   FROM (SELECT Box2D(geom) AS e FROM {} WHERE code = $1 ORDER BY fid LIMIT 1) s",
                quote(layer.name())
            ),
            &[&code],
        )?;
        Ok(rows.first().and_then(|r| {
            let [a, b, c, d]: [Option<f64>; 4] = [r.get(0), r.get(1), r.get(2), r.get(3)];
            Some(Rect::new((a?, b?), (c?, d?)))
        }))
    }

    /// Like [`crate::Store::count_values`]: how many features of `layer`
    /// have each value of `column`, within `region` when given.
    pub fn count_values(
        &self,
        layer: Layer,
        column: &str,
        region: Option<Rect<f64>>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let mut sql = format!(
            "SELECT {c}::text, count(*) FROM {} WHERE {c} IS NOT NULL",
            quote(layer.name()),
            c = quote(column)
        );
        let rows = match region {
            Some(b) => {
                sql.push_str(" AND geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) GROUP BY 1");
                let [x0, y0, x1, y1] = envelope(b);
                self.query(&sql, &[&x0, &y0, &x1, &y1])?
            }
            None => {
                sql.push_str(" GROUP BY 1");
                self.query(&sql, &[])?
            }
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u32))
            .collect())
    }

    /// Like [`crate::Store::codes_in`]: the codes of the features of
    /// `layer` whose box meets `bbox`, in code order.
    pub fn codes_in(&self, layer: Layer, bbox: Rect<f64>) -> Result<Vec<String>, StoreError> {
        let [x0, y0, x1, y1] = envelope(bbox);
        Ok(self
            .query(
                &format!(
                    "SELECT code FROM {} WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)
                       AND code IS NOT NULL ORDER BY code",
                    quote(layer.name())
                ),
                &[&x0, &y0, &x1, &y1],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// A community's grids as stored, `(code, geometry)` in code order.
    pub fn grids_of(&self, community: &str) -> Result<Vec<(String, Geometry<f64>)>, StoreError> {
        let rows = self.query(
            "SELECT fid, code, ST_AsBinary(geom) FROM grids WHERE parent_code = $1 ORDER BY code",
            &[&community],
        )?;
        rows.iter()
            .map(|r| {
                let fid: i64 = r.get(0);
                let wkb: Option<&[u8]> = r.get(2);
                let geometry =
                    decode_wkb(wkb.unwrap_or_default()).map_err(|reason| StoreError::Geometry {
                        layer: "grids".into(),
                        fid,
                        reason,
                    })?;
                Ok((r.get(1), geometry))
            })
            .collect()
    }

    /// The `grid_code` of features of `layer` by fid, in the order given.
    pub fn grid_codes(
        &self,
        layer: Layer,
        fids: &[i64],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let rows = self.query(
            &format!(
                "SELECT fid, grid_code FROM {} WHERE fid = ANY($1)",
                quote(layer.name())
            ),
            &[&fids],
        )?;
        let by_fid: HashMap<i64, Option<String>> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(fids
            .iter()
            .map(|f| by_fid.get(f).cloned().flatten())
            .collect())
    }

    /// The latest version of a community (0 when it has none).
    pub fn latest_version(&self, community: &str) -> Result<i64, StoreError> {
        let rows = self.query(
            "SELECT coalesce(max(version), 0) FROM wangge_versions WHERE community = $1",
            &[&community],
        )?;
        Ok(rows[0].get(0))
    }

    /// The locked grids of a community.
    pub fn locks(&self, community: &str) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .query(
                "SELECT code FROM wangge_grid_locks WHERE substr(code, 1, 12) = $1",
                &[&community],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// True when the grid is locked.
    pub fn is_locked(&self, grid: &str) -> Result<bool, StoreError> {
        let rows = self.query(
            "SELECT EXISTS (SELECT 1 FROM wangge_grid_locks WHERE code = $1)",
            &[&grid],
        )?;
        Ok(rows[0].get(0))
    }

    /// The position of the last recorded version in the log (0 when none).
    pub fn last_version_position(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT coalesce(max(seq), 0) FROM wangge_versions", &[])?;
        Ok(rows[0].get(0))
    }

    /// The versions recorded after position `after`, in log order:
    /// `(position, community)`.
    pub fn versions_after(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(self
            .query(
                "SELECT seq, community FROM wangge_versions WHERE seq > $1 ORDER BY seq",
                &[&after],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Every grid code a community ever had in a recorded version.
    pub fn past_grid_codes(&self, community: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query(
                "SELECT DISTINCT code FROM wangge_version_grids WHERE community = $1",
                &[&community],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The versions of one community (or of all), newest first, at most
    /// `limit`.
    pub fn history(
        &self,
        community: Option<&str>,
        limit: usize,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = self.query(
            "SELECT v.community, v.version, v.author, v.created, v.op, v.reason,
                    (SELECT count(*) FROM wangge_version_grids g
                      WHERE g.community = v.community AND g.version = v.version),
                    (SELECT coalesce(sum(households), 0)::bigint FROM wangge_version_grids g
                      WHERE g.community = v.community AND g.version = v.version)
               FROM wangge_versions v
              WHERE $1::text IS NULL OR v.community = $1
              ORDER BY v.created DESC, v.community, v.version DESC
              LIMIT $2",
            &[&community, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| VersionInfo {
                community: r.get(0),
                version: r.get(1),
                author: r.get(2),
                created: r.get(3),
                op: r.get(4),
                reason: r.get(5),
                grids: r.get(6),
                households: r.get(7),
            })
            .collect())
    }

    /// The grids (by code) and the buildings (by id) of one version of a
    /// community; [`StoreError::NotFound`] when there is no such version.
    pub fn version(&self, community: &str, version: i64) -> Result<VersionContents, StoreError> {
        let exists = self.query(
            "SELECT EXISTS (SELECT 1 FROM wangge_versions WHERE community = $1 AND version = $2)",
            &[&community, &version],
        )?;
        if !exists[0].get::<_, bool>(0) {
            return Err(StoreError::NotFound {
                what: format!("version {version} of community {community}"),
            });
        }
        let grids: BTreeMap<String, VersionGrid> = self
            .query(
                "SELECT code, households, persons, buildings, area_m2 FROM wangge_version_grids
                  WHERE community = $1 AND version = $2",
                &[&community, &version],
            )?
            .iter()
            .map(|r| {
                let g = VersionGrid {
                    code: r.get(0),
                    households: r.get(1),
                    persons: r.get(2),
                    buildings: r.get(3),
                    area_m2: r.get(4),
                };
                (g.code.clone(), g)
            })
            .collect();
        let buildings: BTreeMap<String, VersionBuilding> = self
            .query(
                "SELECT building, grid, households FROM wangge_version_buildings
                  WHERE community = $1 AND version = $2",
                &[&community, &version],
            )?
            .iter()
            .map(|r| {
                let b = VersionBuilding {
                    building: r.get(0),
                    grid: r.get(1),
                    households: r.get(2),
                };
                (b.building.clone(), b)
            })
            .collect();
        Ok((grids, buildings))
    }
}
