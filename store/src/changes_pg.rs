//! The PostgreSQL side of [`crate::changes`]: the same batch, on a
//! [`PgStore`], in one transaction that holds the change log locked
//! against other writers (so log positions follow commit order and a
//! follower reading `seq > last` misses nothing), with `NOTIFY` at commit.

use std::collections::HashMap;

use geo_types::Geometry;

use crate::changes::{
    ChangeOp, ChangeTx, EntityChange, Found, LogRow, LoggedChange, Outcome, apply,
};
use crate::gpkg::{Column, StoreError, Value, decode_wkb, encode_ewkb, quote};
use crate::model::Layer;
use crate::postgis::{CHANNEL, PgLayer, PgStore, float};

const PG_LOG_DDL: &str = "
CREATE TABLE IF NOT EXISTS wangge_changes (
  seq bigserial PRIMARY KEY,
  change_id text NOT NULL UNIQUE,
  batch bigint NOT NULL,
  at text NOT NULL,
  layer text NOT NULL,
  op text NOT NULL,
  entity_id text NOT NULL,
  fid bigint NOT NULL,
  old_grid text,
  new_grid text,
  old_cell bigint,
  new_cell bigint
);
CREATE INDEX IF NOT EXISTS wangge_changes_batch ON wangge_changes (batch);
LOCK TABLE wangge_changes IN EXCLUSIVE MODE;";

struct PgChangeTx<'s> {
    store: &'s PgStore,
    defs: HashMap<Layer, PgLayer>,
}

/// A value as text for `CAST($n::text AS type)`.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(float(*f)),
        Value::Text(s) => Some(s.clone()),
    }
}

impl PgChangeTx<'_> {
    fn def(&mut self, layer: Layer) -> Result<&PgLayer, StoreError> {
        if !self.defs.contains_key(&layer) {
            let def = self.store.layer_def(layer.name())?;
            if def.schema.columns.iter().any(|c| c.name == "id") {
                self.store.execute(&format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} (id)",
                    quote(&format!("{}_id", layer.name())),
                    quote(layer.name())
                ))?;
            }
            self.defs.insert(layer, def);
        }
        Ok(&self.defs[&layer])
    }

    /// `CAST($n::text AS type)` for column `name` of `layer` (the parameter
    /// is text, whatever the column's type).
    fn cast(&mut self, layer: Layer, name: &str, n: usize) -> Result<String, StoreError> {
        let def = self.def(layer)?;
        let ty = def
            .schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .map_or("text", |i| def.types[i].as_str());
        Ok(format!("CAST(${n}::text AS {})", quote(ty)))
    }
}

impl ChangeTx for PgChangeTx<'_> {
    fn columns(&mut self, layer: Layer) -> Result<Vec<Column>, StoreError> {
        Ok(self.def(layer)?.schema.columns.clone())
    }

    fn next_batch(&mut self) -> Result<i64, StoreError> {
        let rows = self.store.query(
            "SELECT coalesce(max(batch), 0) + 1 FROM wangge_changes",
            &[],
        )?;
        Ok(rows[0].get(0))
    }

    fn seen(&mut self, change_id: &str) -> Result<bool, StoreError> {
        Ok(!self
            .store
            .query(
                "SELECT 1 FROM wangge_changes WHERE change_id = $1",
                &[&change_id],
            )?
            .is_empty())
    }

    fn find(&mut self, layer: Layer, id: &str) -> Result<Option<Found>, StoreError> {
        let def = self.def(layer)?;
        let read = |n: &str| {
            def.schema
                .columns
                .iter()
                .position(|c| c.name == n)
                .map_or("NULL".to_owned(), |i| def.reads[i].clone())
        };
        let (grid, community) = (read("grid_code"), read("community_code"));
        let hh = if layer == Layer::Buildings {
            read("households")
        } else {
            "NULL".into()
        };
        let sql = format!(
            "SELECT fid, ST_AsBinary(geom), ({grid})::text, ({community})::text, ({hh})::bigint \
               FROM {} WHERE id::text = $1 ORDER BY fid LIMIT 1",
            quote(layer.name())
        );
        let rows = self.store.query(&sql, &[&id])?;
        Ok(rows.first().map(|r| {
            let wkb: Option<Vec<u8>> = r.get(1);
            Found {
                fid: r.get(0),
                geometry: wkb.and_then(|b| decode_wkb(&b).ok()),
                grid_code: r.get(2),
                community_code: r.get(3),
                households: r.get::<_, Option<i64>>(4).unwrap_or(0),
            }
        }))
    }

    fn insert(
        &mut self,
        layer: Layer,
        geometry: &Geometry<f64>,
        values: &[(&str, &Value)],
    ) -> Result<i64, StoreError> {
        let mut names = vec!["geom".to_owned()];
        let mut marks = vec!["ST_GeomFromEWKB($1)".to_owned()];
        for (i, (n, _)) in values.iter().enumerate() {
            names.push(quote(n));
            marks.push(self.cast(layer, n, i + 2)?);
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) RETURNING fid",
            quote(layer.name()),
            names.join(", "),
            marks.join(", ")
        );
        let mut ewkb = Vec::new();
        encode_ewkb(geometry, 4326, &mut ewkb);
        let texts: Vec<Option<String>> = values.iter().map(|(_, v)| as_text(v)).collect();
        let mut p: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&ewkb];
        p.extend(
            texts
                .iter()
                .map(|t| t as &(dyn postgres::types::ToSql + Sync)),
        );
        let rows = self.store.query(&sql, &p)?;
        Ok(rows[0].get(0))
    }

    fn update(
        &mut self,
        layer: Layer,
        fid: i64,
        geometry: Option<&Geometry<f64>>,
        values: &[(&str, &Value)],
    ) -> Result<(), StoreError> {
        let mut ewkb = Vec::new();
        let mut sets = Vec::new();
        let mut n = 1;
        if let Some(g) = geometry {
            encode_ewkb(g, 4326, &mut ewkb);
            n += 1;
            sets.push(format!("geom = ST_GeomFromEWKB(${n})"));
        }
        for (name, _) in values {
            n += 1;
            sets.push(format!("{} = {}", quote(name), self.cast(layer, name, n)?));
        }
        if sets.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET {} WHERE fid = $1",
            quote(layer.name()),
            sets.join(", ")
        );
        let texts: Vec<Option<String>> = values.iter().map(|(_, v)| as_text(v)).collect();
        let mut p: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&fid];
        if geometry.is_some() {
            p.push(&ewkb);
        }
        p.extend(
            texts
                .iter()
                .map(|t| t as &(dyn postgres::types::ToSql + Sync)),
        );
        self.store.query(&sql, &p)?;
        Ok(())
    }

    fn delete(&mut self, layer: Layer, fid: i64) -> Result<(), StoreError> {
        self.store.query(
            &format!("DELETE FROM {} WHERE fid = $1", quote(layer.name())),
            &[&fid],
        )?;
        Ok(())
    }

    fn has_layer(&mut self, layer: Layer) -> Result<bool, StoreError> {
        if self.defs.contains_key(&layer) {
            return Ok(true);
        }
        self.store.has_layer(layer.name())
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
            .map(|(i, (n, _))| format!("{c} = coalesce({c}, 0) + ${}::bigint", i + 2, c = quote(n)))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE code::text = $1",
            quote(layer.name()),
            sets.join(", ")
        );
        let mut p: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&code];
        p.extend(
            kept.iter()
                .map(|(_, d)| d as &(dyn postgres::types::ToSql + Sync)),
        );
        self.store.query(&sql, &p)?;
        Ok(())
    }

    fn log(&mut self, r: &LogRow<'_>) -> Result<i64, StoreError> {
        let rows = self.store.query(
            "INSERT INTO wangge_changes
               (change_id, batch, at, layer, op, entity_id, fid, old_grid, new_grid, old_cell, new_cell)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
            &[
                &r.change_id,
                &r.batch,
                &r.at,
                &r.layer.name(),
                &r.op.name(),
                &r.entity_id,
                &r.fid,
                &r.old_grid,
                &r.new_grid,
                &r.old_cell,
                &r.new_cell,
            ],
        )?;
        Ok(rows[0].get(0))
    }
}

impl PgStore {
    /// [`crate::Store::apply_changes`] on PostgreSQL: one transaction, the
    /// log locked against other writers, `NOTIFY` at commit.
    ///
    /// # Errors
    /// Store errors; nothing of the batch is written then.
    pub fn apply_changes(
        &mut self,
        at: &str,
        changes: &[EntityChange],
        cell_of: &dyn Fn(f64, f64) -> Option<i64>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.atomically(|| {
            self.execute(PG_LOG_DDL)?;
            let mut tx = PgChangeTx {
                store: self,
                defs: HashMap::new(),
            };
            let out = apply(&mut tx, at, changes, cell_of)?;
            self.execute(&format!("NOTIFY {CHANNEL}, 'changes'"))?;
            Ok(out)
        })
    }

    /// The position of the last change in the log (0 without one).
    ///
    /// # Errors
    /// Database errors.
    pub fn last_change_seq(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT to_regclass('wangge_changes') IS NOT NULL", &[])?;
        if !rows[0].get::<_, bool>(0) {
            return Ok(0);
        }
        let rows = self.query("SELECT coalesce(max(seq), 0) FROM wangge_changes", &[])?;
        Ok(rows[0].get(0))
    }

    /// The changes logged after position `after`, in order, at most
    /// `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        if self.last_change_seq()? <= after {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT seq, batch, layer, op, fid, old_grid, new_grid, old_cell, new_cell
               FROM wangge_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.get(0);
            let layer: String = r.get(2);
            let op: String = r.get(3);
            let (Ok(layer), Some(op)) = (layer.parse::<Layer>(), ChangeOp::parse(&op)) else {
                return Err(StoreError::BadSchema {
                    layer: "wangge_changes".into(),
                    reason: format!("row {seq} names layer {layer:?} and op {op:?}"),
                });
            };
            out.push(LoggedChange {
                seq,
                batch: r.get(1),
                layer,
                op,
                fid: r.get(4),
                old_grid: r.get(5),
                new_grid: r.get(6),
                old_cell: r.get(7),
                new_cell: r.get(8),
            });
        }
        Ok(out)
    }
}
