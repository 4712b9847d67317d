//! The statements of a [`crate::versions::Tx`] on PostgreSQL: what a
//! partition or an edit writes besides the grids, inside the transaction
//! its [`crate::PgLayerWriter`] holds open.

use std::collections::{HashMap, HashSet};

use geo_types::{Geometry, Rect};

use crate::StoreError;
use crate::gpkg::{decode_wkb, encode_ewkb, quote};
use crate::model::Layer;
use crate::postgis::{Pending, PgStore, copy_line, float, hex};
use crate::versions::{PointEntity, VersionBuilding, VersionGrid, VersionMeta};

impl PgStore {
    pub(crate) fn tx_ensure_version_tables(&self) -> Result<(), StoreError> {
        // Made with the store.
        Ok(())
    }

    pub(crate) fn tx_latest_version(&self, community: &str) -> Result<i64, StoreError> {
        // The versions buffered count too (no flush: this runs once per
        // community of a partition).
        if self.pending.borrow().stored_latest.is_none() {
            let all: HashMap<String, i64> = self
                .query(
                    "SELECT community, max(version) FROM wangge_versions GROUP BY community",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            self.pending.borrow_mut().stored_latest = Some(all);
        }
        let p = self.pending.borrow();
        let stored = p
            .stored_latest
            .as_ref()
            .and_then(|m| m.get(community))
            .copied()
            .unwrap_or(0);
        let buffered = p.latest.get(community).copied();
        Ok(buffered.map_or(stored, |b| b.max(stored)))
    }

    pub(crate) fn tx_locks(&self, community: &str) -> Result<HashSet<String>, StoreError> {
        self.flush_pending()?;
        self.locks(community)
    }

    pub(crate) fn tx_lock(&self, grid: &str) -> Result<(), StoreError> {
        self.flush_pending()?;
        self.query("INSERT INTO wangge_grid_locks VALUES ($1)", &[&grid])
            .map(drop)
    }

    pub(crate) fn tx_unlock(&self, grid: &str) -> Result<(), StoreError> {
        self.flush_pending()?;
        self.query("DELETE FROM wangge_grid_locks WHERE code = $1", &[&grid])
            .map(drop)
    }

    pub(crate) fn tx_delete_all_grids(&self) -> Result<(), StoreError> {
        self.flush_pending()?;
        self.execute("DELETE FROM grids; DELETE FROM wangge_grid_locks;")
    }

    pub(crate) fn tx_delete_grids_of(
        &self,
        community: &str,
        unlock: bool,
    ) -> Result<(), StoreError> {
        self.flush_pending()?;
        self.query("DELETE FROM grids WHERE parent_code = $1", &[&community])?;
        if unlock {
            self.query(
                "DELETE FROM wangge_grid_locks WHERE substr(code, 1, 12) = $1",
                &[&community],
            )?;
        }
        Ok(())
    }

    pub(crate) fn tx_now(&self) -> Result<String, StoreError> {
        // The same form as the GeoPackage's strftime('%Y-%m-%dT%H:%M:%fZ').
        let rows = self.query(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            &[],
        )?;
        Ok(rows[0].get(0))
    }

    pub(crate) fn tx_set_geometry(
        &self,
        layer: Layer,
        fid: i64,
        geometry: &Geometry<f64>,
    ) -> Result<(), StoreError> {
        let mut ewkb = Vec::new();
        encode_ewkb(geometry, 4326, &mut ewkb);
        self.pending
            .borrow_mut()
            .geometries
            .push((layer.name().to_owned(), fid, ewkb));
        Ok(())
    }

    pub(crate) fn tx_place_buildings(
        &self,
        rows: &[(i64, &str, &str)],
        with_community: bool,
    ) -> Result<(), StoreError> {
        if self.pending.borrow().placed_with_community != with_community {
            self.flush_pending()?;
        }
        let mut p = self.pending.borrow_mut();
        p.placed_with_community = with_community;
        p.placed.extend(
            rows.iter()
                .map(|(f, g, c)| (*f, (*g).to_owned(), (*c).to_owned())),
        );
        Ok(())
    }

    /// Sends what [`crate::postgis::Pending`] holds.
    pub(crate) fn flush_pending(&self) -> Result<(), StoreError> {
        let p = {
            let mut pending = self.pending.borrow_mut();
            let mut stored_latest = pending.stored_latest.take();
            let p = std::mem::take(&mut *pending);
            // The versions sent now are stored ones from here on.
            if let Some(stored) = &mut stored_latest {
                for (community, &v) in &p.latest {
                    let at = stored.entry(community.clone()).or_insert(v);
                    *at = (*at).max(v);
                }
            }
            pending.stored_latest = stored_latest;
            p
        };
        let mut layers: Vec<&str> = p.geometries.iter().map(|g| g.0.as_str()).collect();
        layers.sort_unstable();
        layers.dedup();
        for layer in layers {
            let (fids, wkbs): (Vec<i64>, Vec<&[u8]>) = p
                .geometries
                .iter()
                .filter(|g| g.0 == layer)
                .map(|g| (g.1, g.2.as_slice()))
                .unzip();
            self.query(
                &format!(
                    "UPDATE {} t SET geom = ST_GeomFromEWKB(u.g)
                       FROM unnest($1::bigint[], $2::bytea[]) AS u(f, g) WHERE t.fid = u.f",
                    quote(layer)
                ),
                &[&fids, &wkbs],
            )?;
        }
        if !p.placed.is_empty() {
            let fids: Vec<i64> = p.placed.iter().map(|r| r.0).collect();
            let grids: Vec<&str> = p.placed.iter().map(|r| r.1.as_str()).collect();
            let communities: Vec<&str> = p.placed.iter().map(|r| r.2.as_str()).collect();
            let sql = if p.placed_with_community {
                "UPDATE buildings b SET grid_code = u.g, community_code = u.c
                   FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(f, g, c)
                  WHERE b.fid = u.f"
            } else {
                "UPDATE buildings b SET grid_code = u.g
                   FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(f, g, c)
                  WHERE b.fid = u.f"
            };
            self.query(sql, &[&fids, &grids, &communities])?;
        }
        self.copy_in(
            "COPY wangge_versions (community, version, author, created, reason, op) FROM STDIN",
            &p.versions,
        )?;
        self.copy_in("COPY wangge_version_grids FROM STDIN", &p.grids)?;
        self.copy_in(
            "COPY wangge_version_buildings (community, version, building, grid, households) \
             FROM STDIN",
            &p.buildings,
        )
    }

    pub(crate) fn tx_record_version(
        &self,
        community: &str,
        version: i64,
        meta: &VersionMeta,
        created: &str,
        grids: &[(VersionGrid, Geometry<f64>)],
        buildings: &[VersionBuilding],
    ) -> Result<(), StoreError> {
        let mut p = self.pending.borrow_mut();
        p.push_version(
            community,
            version,
            &meta.author,
            created,
            &meta.reason,
            &meta.op,
        );
        for (g, geometry) in grids {
            p.push_grid(community, version, g, Some(geometry));
        }
        for b in buildings {
            p.push_building(community, version, b);
        }
        Ok(())
    }

    pub(crate) fn tx_points_in(
        &self,
        layer: Layer,
        bbox: Rect<f64>,
    ) -> Result<Option<Vec<PointEntity>>, StoreError> {
        self.flush_pending()?;
        if !self.has_layer(layer.name())? {
            return Ok(None);
        }
        let (min, max) = (bbox.min(), bbox.max());
        let rows = self.query(
            &format!(
                "SELECT fid, ST_AsBinary(geom), grid_code::text FROM {}
                  WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) ORDER BY fid",
                quote(layer.name())
            ),
            &[&min.x, &min.y, &max.x, &max.y],
        )?;
        Ok(Some(
            rows.iter()
                .map(|r| PointEntity {
                    fid: r.get(0),
                    geometry: r
                        .get::<_, Option<&[u8]>>(1)
                        .and_then(|b| decode_wkb(b).ok()),
                    grid_code: r.get(2),
                })
                .collect(),
        ))
    }

    pub(crate) fn tx_set_grid_codes(
        &self,
        layer: Layer,
        rows: &[(i64, Option<&str>)],
    ) -> Result<(), StoreError> {
        self.flush_pending()?;
        if rows.is_empty() {
            return Ok(());
        }
        let fids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let codes: Vec<Option<&str>> = rows.iter().map(|r| r.1).collect();
        self.query(
            &format!(
                "UPDATE {} t SET grid_code = u.g
                   FROM unnest($1::bigint[], $2::text[]) AS u(f, g) WHERE t.fid = u.f",
                quote(layer.name())
            ),
            &[&fids, &codes],
        )
        .map(drop)
    }
}

impl Pending {
    /// Buffers a `wangge_versions` row.
    pub(crate) fn push_version(
        &mut self,
        community: &str,
        version: i64,
        author: &str,
        created: &str,
        reason: &str,
        op: &str,
    ) {
        let newest = self.latest.entry(community.to_owned()).or_insert(version);
        *newest = (*newest).max(version);
        let fields = [community, &version.to_string(), author, created, reason, op]
            .map(|f| Some(f.to_owned()));
        copy_line(&mut self.versions, &fields);
    }

    /// Buffers a `wangge_version_grids` row.
    pub(crate) fn push_grid(
        &mut self,
        community: &str,
        version: i64,
        g: &VersionGrid,
        geometry: Option<&Geometry<f64>>,
    ) {
        let geometry = geometry.map(|geometry| {
            let mut ewkb = Vec::new();
            encode_ewkb(geometry, 4326, &mut ewkb);
            hex(&ewkb)
        });
        copy_line(
            &mut self.grids,
            &[
                Some(community.to_owned()),
                Some(version.to_string()),
                Some(g.code.clone()),
                Some(g.households.to_string()),
                Some(g.persons.to_string()),
                Some(g.buildings.to_string()),
                Some(float(g.area_m2)),
                geometry,
            ],
        );
    }

    /// Buffers a `wangge_version_buildings` row.
    pub(crate) fn push_building(&mut self, community: &str, version: i64, b: &VersionBuilding) {
        let fields = [
            community,
            &version.to_string(),
            &b.building,
            &b.grid,
            &b.households.to_string(),
        ]
        .map(|f| Some(f.to_owned()));
        copy_line(&mut self.buildings, &fields);
    }
}
