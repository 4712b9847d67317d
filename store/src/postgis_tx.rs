//! The statements of a [`crate::versions::Tx`] on PostgreSQL: what a
//! partition or an edit writes besides the grids, inside the transaction
//! its [`crate::PgLayerWriter`] holds open.

use std::collections::HashSet;

use geo_types::{Geometry, Rect};

use crate::StoreError;
use crate::gpkg::{decode_wkb, encode_ewkb, quote};
use crate::model::Layer;
use crate::postgis::{PgStore, copy_line, float, hex};
use crate::versions::{PointEntity, VersionBuilding, VersionGrid, VersionMeta};

impl PgStore {
    pub(crate) fn tx_ensure_version_tables(&self) -> Result<(), StoreError> {
        // Made with the store.
        Ok(())
    }

    pub(crate) fn tx_latest_version(&self, community: &str) -> Result<i64, StoreError> {
        self.latest_version(community)
    }

    pub(crate) fn tx_locks(&self, community: &str) -> Result<HashSet<String>, StoreError> {
        self.locks(community)
    }

    pub(crate) fn tx_lock(&self, grid: &str) -> Result<(), StoreError> {
        self.query("INSERT INTO wangge_grid_locks VALUES ($1)", &[&grid])
            .map(drop)
    }

    pub(crate) fn tx_unlock(&self, grid: &str) -> Result<(), StoreError> {
        self.query("DELETE FROM wangge_grid_locks WHERE code = $1", &[&grid])
            .map(drop)
    }

    pub(crate) fn tx_delete_all_grids(&self) -> Result<(), StoreError> {
        self.execute("DELETE FROM grids; DELETE FROM wangge_grid_locks;")
    }

    pub(crate) fn tx_delete_grids_of(
        &self,
        community: &str,
        unlock: bool,
    ) -> Result<(), StoreError> {
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
        self.query(
            &format!(
                "UPDATE {} SET geom = ST_GeomFromEWKB($1) WHERE fid = $2",
                quote(layer.name())
            ),
            &[&ewkb, &fid],
        )
        .map(drop)
    }

    pub(crate) fn tx_place_buildings(
        &self,
        rows: &[(i64, &str, &str)],
        with_community: bool,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let fids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let grids: Vec<&str> = rows.iter().map(|r| r.1).collect();
        let communities: Vec<&str> = rows.iter().map(|r| r.2).collect();
        let sql = if with_community {
            "UPDATE buildings b SET grid_code = u.g, community_code = u.c
               FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(f, g, c) WHERE b.fid = u.f"
        } else {
            "UPDATE buildings b SET grid_code = u.g
               FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(f, g, c) WHERE b.fid = u.f"
        };
        self.query(sql, &[&fids, &grids, &communities]).map(drop)
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
        self.query(
            "INSERT INTO wangge_versions (community, version, author, created, reason, op)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &community,
                &version,
                &meta.author,
                &created,
                &meta.reason,
                &meta.op,
            ],
        )?;
        let (c, v) = (community.to_owned(), version.to_string());
        let mut data = Vec::new();
        let mut ewkb = Vec::new();
        for (g, geometry) in grids {
            encode_ewkb(geometry, 4326, &mut ewkb);
            copy_line(
                &mut data,
                &[
                    Some(c.clone()),
                    Some(v.clone()),
                    Some(g.code.clone()),
                    Some(g.households.to_string()),
                    Some(g.persons.to_string()),
                    Some(g.buildings.to_string()),
                    Some(float(g.area_m2)),
                    Some(hex(&ewkb)),
                ],
            );
        }
        self.copy_in("COPY wangge_version_grids FROM STDIN", &data)?;
        data.clear();
        for b in buildings {
            copy_line(
                &mut data,
                &[
                    Some(c.clone()),
                    Some(v.clone()),
                    Some(b.building.clone()),
                    Some(b.grid.clone()),
                    Some(b.households.to_string()),
                ],
            );
        }
        self.copy_in(
            "COPY wangge_version_buildings (community, version, building, grid, households) \
             FROM STDIN",
            &data,
        )
    }

    pub(crate) fn tx_points_in(
        &self,
        layer: Layer,
        bbox: Rect<f64>,
    ) -> Result<Option<Vec<PointEntity>>, StoreError> {
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
