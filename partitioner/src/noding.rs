//! Noding new grids with the administrative layers.
//!
//! Where a grid boundary meets its community's outline, the meeting point
//! is rounded to the 1e-7° overlay grid, so it lies up to 5e-8° off the
//! community's edge: a sliver of gap or overlap along the edge, about
//! 1e-6 of a small community's area. Noding inserts every such vertex into
//! every edge within [`TOL`] of it — in the community, in the district and
//! street above it (which share that edge), in the neighbouring community
//! and in its grids — so all levels keep tiling each other exactly. No
//! vertex moves by more than [`TOL`].

use std::collections::HashMap;

use geo::CoordsIter;
use geo_types::MultiPolygon;
use wangge_engine::geom;
use wangge_engine::model::Layer;
use wangge_engine::store::{AnyStore, StoreError};

use crate::city::Partition;

/// Noding tolerance in degrees (about 2 cm).
pub const TOL: f64 = 2e-7;

/// A geometry change to write back: layer, fid, new geometry.
#[derive(Debug, Clone)]
pub struct Update {
    /// The layer.
    pub layer: Layer,
    /// The feature id.
    pub fid: i64,
    /// The noded geometry.
    pub geometry: MultiPolygon<f64>,
}

/// Nodes the new grids of `parts` with the districts, streets,
/// communities and the other stored grids (those of communities not in
/// `parts`); with `region` (a lon/lat bbox holding every grid of `parts`)
/// only the stored features that meet it. The grids in `parts` are updated
/// in place; the stored features that changed are returned for writing.
///
/// # Errors
/// Store errors.
pub fn node_with_store(
    store: &AnyStore,
    parts: &mut [Partition],
    region: Option<geo_types::Rect<f64>>,
) -> Result<Vec<Update>, StoreError> {
    let replaced: HashMap<&str, ()> = parts.iter().map(|p| (p.community.as_str(), ())).collect();
    let mut keys: Vec<(Layer, i64)> = Vec::new();
    let mut layer: Vec<Option<MultiPolygon<f64>>> = Vec::new();
    for l in [
        Layer::Districts,
        Layer::Streets,
        Layer::Communities,
        Layer::Grids,
    ] {
        if !store.has_layer(l.name())? {
            continue;
        }
        store.for_each_columns(l.name(), &["parent_code"], region, |f| {
            if l == Layer::Grids {
                let parent = f.values[0].as_str().unwrap_or_default();
                if replaced.contains_key(parent) {
                    return Ok(());
                }
            }
            if let Some(m) = geom::as_multi(f.geometry) {
                keys.push((l, f.fid));
                layer.push(Some(m));
            }
            Ok(())
        })?;
    }
    for p in parts.iter() {
        for g in &p.grids {
            layer.push(Some(g.geometry.clone()));
        }
    }
    let before: Vec<usize> = layer
        .iter()
        .map(|m| m.as_ref().map_or(0, CoordsIter::coords_count))
        .collect();
    geom::node_layer(&mut layer, TOL);
    let mut updates = Vec::new();
    let mut noded = layer.into_iter();
    for (i, (l, fid)) in keys.into_iter().enumerate() {
        if let Some(Some(m)) = noded.next()
            && m.coords_count() != before[i]
        {
            updates.push(Update {
                layer: l,
                fid,
                geometry: m,
            });
        }
    }
    for p in parts.iter_mut() {
        for g in &mut p.grids {
            if let Some(Some(m)) = noded.next() {
                g.area_m2 = geom::area_m2(&m);
                g.geometry = m;
            }
        }
    }
    Ok(updates)
}
