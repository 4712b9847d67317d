//! Typed reads the partitioner, the tiler and the server need, through the
//! spatial index where a region is given.

use std::collections::HashMap;

use geo_types::{Geometry, Rect};
use rusqlite::{OptionalExtension, params};

use crate::gpkg::{At, decode, quote, rtree_name, table_exists, where_in_box};
use crate::model::Layer;
use crate::{Store, StoreError, Value, decode_geometry};

/// Which features [`Store::read_features`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every feature.
    All,
    /// Those whose text `column` is one of `values` (none when the layer
    /// has no such column).
    In {
        /// The column.
        column: &'a str,
        /// The values.
        values: &'a [&'a str],
    },
    /// Those with these fids.
    Fids(&'a [i64]),
    /// Those with `first <= fid <= last`.
    FidRange(i64, i64),
}

impl Store {
    /// The box of the feature of admin `layer` (districts, streets,
    /// communities, grids) with `code`, from its spatial index; `None`
    /// when there is no such feature (or no index).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn bbox_of(&self, layer: Layer, code: &str) -> Result<Option<Rect<f64>>, StoreError> {
        let name = layer.name();
        let rtree = rtree_name(name, "geom");
        if !table_exists(self.connection(), &rtree).at(self.path())? {
            return Ok(None);
        }
        let b: Option<[f64; 4]> = self
            .connection()
            .query_row(
                &format!(
                    "SELECT minx, miny, maxx, maxy FROM {} WHERE id = \
                     (SELECT fid FROM {} WHERE code = ?1 ORDER BY fid LIMIT 1)",
                    quote(&rtree),
                    quote(name)
                ),
                [code],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
            )
            .optional()
            .at(self.path())?;
        Ok(b.map(|b| Rect::new((b[0], b[1]), (b[2], b[3]))))
    }

    /// How many features of `layer` have each value of text `column`
    /// (NULLs not counted); with `region`, only features whose box meets
    /// it, through the spatial index.
    ///
    /// # Errors
    /// SQLite errors (a missing column among them).
    pub fn count_values(
        &self,
        layer: Layer,
        column: &str,
        region: Option<Rect<f64>>,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let name = layer.name();
        let mut sql = format!("SELECT {} FROM {}", quote(column), quote(name));
        if region.is_some() {
            sql.push_str(&where_in_box("fid", &rtree_name(name, "geom")));
        }
        let path = self.path();
        let mut stmt = self.connection().prepare(&sql).at(path)?;
        let mut rows = match region {
            Some(b) => stmt.query(params![b.min().x, b.min().y, b.max().x, b.max().y]),
            None => stmt.query([]),
        }
        .at(path)?;
        let mut out: HashMap<String, u32> = HashMap::new();
        while let Some(r) = rows.next().at(path)? {
            if let Ok(Some(v)) = r.get_ref(0).map(|v| v.as_str_or_null().ok().flatten()) {
                if let Some(n) = out.get_mut(v) {
                    *n += 1;
                } else {
                    out.insert(v.to_owned(), 1);
                }
            }
        }
        Ok(out)
    }

    /// A community's grids as stored, `(code, geometry)` in code order.
    ///
    /// # Errors
    /// SQLite errors, an unreadable geometry.
    pub fn grids_of(&self, community: &str) -> Result<Vec<(String, Geometry<f64>)>, StoreError> {
        let path = self.path();
        let mut stmt = self
            .connection()
            .prepare("SELECT code, geom FROM grids WHERE parent_code = ?1 ORDER BY code")
            .at(path)?;
        let mut rows = stmt.query([community]).at(path)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().at(path)? {
            let code: String = r.get(0).at(path)?;
            let blob: Vec<u8> = r.get(1).at(path)?;
            out.push((code, decode_geometry(&blob)?));
        }
        Ok(out)
    }

    /// The `grid_code` of features of `layer` by fid, in the order given
    /// (`None` for NULL or a missing feature).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn grid_codes(
        &self,
        layer: Layer,
        fids: &[i64],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let path = self.path();
        let mut stmt = self
            .connection()
            .prepare(&format!(
                "SELECT grid_code FROM {} WHERE fid = ?1",
                quote(layer.name())
            ))
            .at(path)?;
        fids.iter()
            .map(|fid| {
                stmt.query_row([fid], |r| r.get(0))
                    .optional()
                    .map(Option::flatten)
                    .at(path)
            })
            .collect()
    }

    /// Calls `f` with every selected feature of `layer`, in fid order: its
    /// fid, its geometry (`None` when NULL) or why it cannot be read (a
    /// feature with a bad geometry is handed over, not an error: readers
    /// that publish skip and count it), and the values of `columns` (NULL
    /// for a column the layer lacks and for a value of a type the store
    /// does not model).
    ///
    /// # Errors
    /// An unknown layer, SQLite errors, or the first error of `f`.
    pub fn read_features<E: From<StoreError>>(
        &self,
        layer: &str,
        columns: &[&str],
        selection: Selection<'_>,
        mut f: impl FnMut(i64, Option<Result<Geometry<f64>, String>>, &[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.read_rows_impl(layer, columns, selection, true, |fid, g, v| f(fid, g, v))
    }

    /// Like [`Store::read_features`] without the geometries.
    ///
    /// # Errors
    /// An unknown layer, SQLite errors, or the first error of `f`.
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
        let path = self.path();
        let has = |c: &str| def.schema.columns.iter().any(|x| x.name == c);
        let mut sql = format!(
            "SELECT {}, {}",
            quote(&def.fid),
            if geometry {
                quote(&def.geom)
            } else {
                "NULL".to_owned()
            }
        );
        for c in columns {
            sql.push_str(", ");
            if has(c) {
                sql.push_str(&quote(c));
            } else {
                sql.push_str("NULL");
            }
        }
        sql.push_str(&format!(" FROM {}", quote(layer)));
        let mut params: Vec<rusqlite::types::Value> = Vec::new();
        match selection {
            Selection::All => {}
            Selection::In { column, values } => {
                if !has(column) || values.is_empty() {
                    return Ok(0);
                }
                let marks: Vec<String> = (1..=values.len()).map(|i| format!("?{i}")).collect();
                sql.push_str(&format!(
                    " WHERE {} IN ({})",
                    quote(column),
                    marks.join(", ")
                ));
                params.extend(
                    values
                        .iter()
                        .map(|v| rusqlite::types::Value::Text((*v).to_owned())),
                );
            }
            Selection::Fids(fids) => {
                if fids.is_empty() {
                    return Ok(0);
                }
                let list: Vec<String> = fids.iter().map(i64::to_string).collect();
                sql.push_str(&format!(
                    " WHERE {} IN ({})",
                    quote(&def.fid),
                    list.join(", ")
                ));
            }
            Selection::FidRange(a, b) => {
                sql.push_str(&format!(" WHERE {} BETWEEN ?1 AND ?2", quote(&def.fid)));
                params.push(rusqlite::types::Value::Integer(a));
                params.push(rusqlite::types::Value::Integer(b));
            }
        }
        sql.push_str(&format!(" ORDER BY {}", quote(&def.fid)));
        let mut stmt = self.connection().prepare(&sql).at(path)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .at(path)?;
        let mut values = Vec::with_capacity(columns.len());
        let mut n = 0;
        while let Some(row) = rows.next().at(path)? {
            let fid: i64 = row.get(0).at(path)?;
            let geometry = match row.get_ref(1).at(path)? {
                rusqlite::types::ValueRef::Blob(b) => {
                    Some(decode(b).map_err(|r| format!("invalid GeoPackage geometry blob: {r}")))
                }
                rusqlite::types::ValueRef::Null => None,
                _ => Some(Err("the geometry column does not hold a BLOB".to_owned())),
            };
            values.clear();
            for i in 0..columns.len() {
                let v = row.get_ref(2 + i).at(path)?;
                values.push(Value::from_sql(v).unwrap_or(Value::Null));
            }
            f(fid, geometry, &values)?;
            n += 1;
        }
        Ok(n)
    }

    /// The codes of the features of `layer` whose box meets `bbox`, through
    /// its spatial index, in code order (empty without an index).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn codes_in(&self, layer: Layer, bbox: Rect<f64>) -> Result<Vec<String>, StoreError> {
        let name = layer.name();
        let rtree = rtree_name(name, "geom");
        let path = self.path();
        if !table_exists(self.connection(), &rtree).at(path)? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .connection()
            .prepare(&format!(
                "SELECT g.code FROM {} g JOIN {} r ON g.fid = r.id \
                 WHERE r.maxx >= ?1 AND r.minx <= ?3 AND r.maxy >= ?2 AND r.miny <= ?4 \
                 ORDER BY g.code",
                quote(name),
                quote(&rtree)
            ))
            .at(path)?;
        let (min, max) = (bbox.min(), bbox.max());
        let rows = stmt
            .query_map(params![min.x, min.y, max.x, max.y], |r| r.get(0))
            .at(path)?;
        rows.collect::<rusqlite::Result<_>>().at(path)
    }
}
