//! Planner edits of one community's grids: move a building, split a grid,
//! merge two grids, lock and unlock a grid, rebalance the unlocked grids.
//!
//! An edit is planned on the building adjacency graph of the community
//! ([`crate::units::Territories`]) and refused, with the reason, when it would break a
//! hard constraint: a move must keep the old grid connected and go to a grid
//! the building borders, merged grids must be neighbours, and a locked grid
//! is never changed. The new outlines come from the same territories as a
//! partition, so grids still tile the community and never cut a footprint;
//! a grid whose buildings and outline did not change keeps its stored
//! geometry exactly.
//!
//! Grid codes are stable: a grid keeps its code while it exists, a new
//! grid takes the next number never used in the community (retired codes
//! are not reused), and a merge keeps the lower code.
//!
//! Everything is written in one transaction ([`versions::write`]): the
//! community's grids, its buildings' `grid_code`, noded neighbours, a new
//! version, the locks, and the `grid_code` of the entities (persons,
//! places, objects, events, organizations) that were in a changed grid —
//! and only those.

use std::collections::{BTreeMap, HashMap, HashSet};

use geo_types::{Geometry, MultiPolygon};
use wangge_engine::assign::GridLayer;
use wangge_engine::codes::{CommunityCode, GridCode};
use wangge_engine::geom;
use wangge_engine::model::Layer;
use wangge_engine::store::versions::Tx;
use wangge_engine::store::{AnyStore, StoreError, merge_bbox};

use crate::balance::{self, Params, Unit};
use crate::city::{self, Community};
use crate::noding;
use crate::versions::{self, VersionMeta};

/// One planner edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Move a building (by id) to a neighbouring grid.
    Move {
        /// The building's id.
        building: String,
        /// The grid it goes to.
        to: String,
    },
    /// Cut a grid into `parts` contiguous grids of about equal households.
    Split {
        /// The grid.
        grid: String,
        /// Number of grids it becomes (≥ 2).
        parts: usize,
    },
    /// Merge two neighbouring grids; the lower code stays.
    Merge {
        /// One grid.
        a: String,
        /// Its neighbour.
        b: String,
    },
    /// Lock a grid: no edit may change it, rebalancing leaves it alone.
    Lock {
        /// The grid.
        grid: String,
    },
    /// Unlock a grid.
    Unlock {
        /// The grid.
        grid: String,
    },
    /// Re-partition the unlocked grids of a community.
    Rebalance {
        /// The community.
        community: String,
        /// Target households per grid (default: the store's partition
        /// target, else 400).
        target: Option<f64>,
        /// Tolerance (default: the store's, else 0.15).
        tolerance: Option<f64>,
    },
}

impl Op {
    /// The community the edit changes (from the codes it names).
    ///
    /// # Errors
    /// [`EditError::NotFound`] for a malformed code.
    pub fn community(&self) -> Result<CommunityCode, EditError> {
        let grid_code = |g: &str| -> Result<CommunityCode, EditError> {
            g.parse::<GridCode>()
                .map(GridCode::parent)
                .map_err(|e| EditError::NotFound(format!("{g:?} is not a grid code: {e}")))
        };
        match self {
            Op::Move { to, .. } => grid_code(to),
            Op::Split { grid, .. } | Op::Lock { grid } | Op::Unlock { grid } => grid_code(grid),
            Op::Merge { a, b } => {
                let (ca, cb) = (grid_code(a)?, grid_code(b)?);
                if ca == cb {
                    Ok(ca)
                } else {
                    Err(EditError::Refused(format!(
                        "grids {a} and {b} are in different communities"
                    )))
                }
            }
            Op::Rebalance { community, .. } => community.parse::<CommunityCode>().map_err(|e| {
                EditError::NotFound(format!("{community:?} is not a community code: {e}"))
            }),
        }
    }

    /// A one-line description, recorded as the version's operation.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Op::Move { building, to } => format!("move {building} to {to}"),
            Op::Split { grid, parts } => format!("split {grid} into {parts}"),
            Op::Merge { a, b } => format!("merge {a} {b}"),
            Op::Lock { grid } => format!("lock {grid}"),
            Op::Unlock { grid } => format!("unlock {grid}"),
            Op::Rebalance { community, .. } => format!("rebalance {community}"),
        }
    }
}

/// An edit with who asks and on which version.
#[derive(Debug, Clone)]
pub struct Request {
    /// The edit.
    pub op: Op,
    /// Author recorded in the history.
    pub author: String,
    /// Reason recorded in the history.
    pub reason: String,
    /// The version the edit was planned on; a newer stored version refuses
    /// the edit ([`EditError::Stale`]).
    pub if_version: Option<i64>,
}

/// Entities whose grid was re-assigned, per layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reassigned {
    /// The entity layer.
    pub layer: String,
    /// Features that were in a changed grid.
    pub features: u64,
    /// Of those, features whose grid code changed.
    pub changed: u64,
}

/// What an edit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The community.
    pub community: String,
    /// Its version before the edit.
    pub previous: i64,
    /// Its new version.
    pub version: i64,
    /// The operation as recorded.
    pub op: String,
    /// New grids.
    pub added: Vec<String>,
    /// Grids that no longer exist.
    pub removed: Vec<String>,
    /// Grids whose buildings or outline changed.
    pub changed: Vec<String>,
    /// Buildings now in another grid.
    pub buildings_moved: u64,
    /// Their households.
    pub households_moved: u64,
    /// Lon/lat bbox of everything that changed (old and new outlines);
    /// `None` when no outline changed (lock, unlock).
    pub bbox: Option<[f64; 4]>,
    /// Entities re-assigned, per layer.
    pub reassigned: Vec<Reassigned>,
}

/// Why an edit was not made. Nothing is written in any case.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The edit would break a hard constraint or a lock.
    #[error("refused: {0}")]
    Refused(String),
    /// A code or building that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The community changed since the version the edit was planned on.
    #[error(
        "stale: community {community} is at version {current}, the edit was made on version {expected}"
    )]
    Stale {
        /// The community.
        community: String,
        /// The version the edit expected.
        expected: i64,
        /// The stored version.
        current: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored grid of the edited community.
struct Stored {
    code: String,
    geometry: MultiPolygon<f64>,
}

fn refused<T>(reason: impl Into<String>) -> Result<T, EditError> {
    Err(EditError::Refused(reason.into()))
}

/// The community's grids as stored, in code order.
fn stored_grids(store: &AnyStore, community: CommunityCode) -> Result<Vec<Stored>, EditError> {
    Ok(store
        .grids_of(community)?
        .into_iter()
        .map(|(code, g)| Stored {
            code,
            geometry: geom::as_multi(g).unwrap_or_else(|| MultiPolygon(vec![])),
        })
        .collect())
}

/// The next grid number never used in the community (current grids and
/// every recorded version).
fn next_number(
    store: &AnyStore,
    community: CommunityCode,
    current: &[String],
) -> Result<u32, StoreError> {
    let past = store.past_grid_codes(community)?;
    Ok(past
        .iter()
        .chain(current)
        .filter_map(|c| c.get(12..).and_then(|n| n.parse::<u32>().ok()))
        .max()
        .unwrap_or(0)
        + 1)
}

/// What a plan needs to know about the community.
#[derive(Debug)]
pub struct Context<'a> {
    /// Grid codes, in code order.
    pub codes: &'a [String],
    /// Grid (index into `codes`) of each building.
    pub group: &'a [u32],
    /// Building adjacency (territories sharing an edge).
    pub adjacency: &'a [Vec<u32>],
    /// Building ids.
    pub ids: &'a [String],
    /// Households per building.
    pub households: &'a [u32],
    /// Building centroids in metres.
    pub pos: &'a [[f64; 2]],
    /// Locked grid codes.
    pub locked: &'a HashSet<String>,
    /// The next unused grid number.
    pub next: u32,
    /// The community code.
    pub community: &'a str,
    /// Target and tolerance for rebalancing and splitting.
    pub params: Params,
}

/// A planned grouping: the grid of each building (index into `codes`) and
/// the codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Grid of each building.
    pub group: Vec<u32>,
    /// Grid codes.
    pub codes: Vec<String>,
}

impl Context<'_> {
    fn index(&self, code: &str) -> Result<usize, EditError> {
        self.codes.iter().position(|c| c == code).ok_or_else(|| {
            EditError::NotFound(format!("no grid {code} in community {}", self.community))
        })
    }

    fn unlocked(&self, code: &str) -> Result<(), EditError> {
        if self.locked.contains(code) {
            refused(format!("grid {code} is locked (unlock it first)"))
        } else {
            Ok(())
        }
    }

    fn members(&self, g: usize) -> Vec<usize> {
        (0..self.group.len())
            .filter(|&b| self.group[b] as usize == g)
            .collect()
    }

    fn code(&self, n: u32) -> Result<String, EditError> {
        if n > 999 {
            return refused(format!(
                "community {} has used every grid number up to 999",
                self.community
            ));
        }
        Ok(format!("{}{n:03}", self.community))
    }

    /// The units and induced adjacency of a set of buildings.
    fn subgraph(&self, members: &[usize]) -> (Vec<Unit>, Vec<Vec<u32>>) {
        let local: HashMap<usize, u32> = members
            .iter()
            .enumerate()
            .map(|(i, &b)| (b, i as u32))
            .collect();
        let units = members
            .iter()
            .map(|&b| Unit {
                households: self.households[b],
                pos: self.pos[b],
            })
            .collect();
        let adj = members
            .iter()
            .map(|&b| {
                self.adjacency[b]
                    .iter()
                    .filter_map(|v| local.get(&(*v as usize)).copied())
                    .collect()
            })
            .collect();
        (units, adj)
    }
}

/// Plans an edit on the grouping (no geometry): validates it against the
/// graph and the locks and returns the new grouping and codes.
///
/// # Errors
/// [`EditError::Refused`] or [`EditError::NotFound`] with the reason.
pub fn plan(op: &Op, cx: &Context<'_>) -> Result<Plan, EditError> {
    let mut group = cx.group.to_vec();
    let mut codes = cx.codes.to_vec();
    match op {
        Op::Lock { grid } | Op::Unlock { grid } => {
            cx.index(grid)?;
            let locked = cx.locked.contains(grid);
            match (op, locked) {
                (Op::Lock { .. }, true) => {
                    return refused(format!("grid {grid} is already locked"));
                }
                (Op::Unlock { .. }, false) => return refused(format!("grid {grid} is not locked")),
                _ => {}
            }
        }
        Op::Move { building, to } => {
            let b = cx.ids.iter().position(|i| i == building).ok_or_else(|| {
                EditError::NotFound(format!(
                    "no building {building:?} in community {}",
                    cx.community
                ))
            })?;
            let t = cx.index(to)?;
            let f = cx.group[b] as usize;
            let from = &cx.codes[f];
            if f == t {
                return refused(format!("building {building} is already in grid {to}"));
            }
            cx.unlocked(from)?;
            cx.unlocked(to)?;
            if !cx.adjacency[b]
                .iter()
                .any(|&v| cx.group[v as usize] as usize == t)
            {
                return refused(format!(
                    "building {building} does not border grid {to} (it would not be contiguous)"
                ));
            }
            let rest: Vec<usize> = cx.members(f).into_iter().filter(|&x| x != b).collect();
            if rest.is_empty() {
                return refused(format!(
                    "building {building} is the last building of grid {from}: merge the grids instead"
                ));
            }
            if !balance::connected(cx.adjacency, &rest) {
                return refused(format!(
                    "moving building {building} would cut grid {from} in two"
                ));
            }
            group[b] = t as u32;
        }
        Op::Split { grid, parts } => {
            let g = cx.index(grid)?;
            cx.unlocked(grid)?;
            if *parts < 2 {
                return refused(format!("--parts must be at least 2, got {parts}"));
            }
            let members = cx.members(g);
            if members.len() < *parts {
                return refused(format!(
                    "grid {grid} has {} buildings; it cannot become {parts} grids",
                    members.len()
                ));
            }
            let (units, adj) = cx.subgraph(&members);
            let (sub, k) = balance::split(&units, &adj, *parts, cx.params.tolerance);
            if k != *parts {
                return refused(format!(
                    "grid {grid} cannot be cut into {parts} contiguous grids (got {k})"
                ));
            }
            // The heaviest part keeps the code; the others take new numbers.
            let mut weight = vec![0u64; k];
            for (i, &s) in sub.iter().enumerate() {
                weight[s as usize] += u64::from(units[i].households) + 1;
            }
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| weight[b].cmp(&weight[a]).then(a.cmp(&b)));
            let mut slot = vec![g as u32; k];
            for (n, &part) in order.iter().enumerate().skip(1) {
                slot[part] = codes.len() as u32;
                codes.push(cx.code(cx.next + n as u32 - 1)?);
            }
            for (i, &b) in members.iter().enumerate() {
                group[b] = slot[sub[i] as usize];
            }
        }
        Op::Merge { a, b } => {
            let (ia, ib) = (cx.index(a)?, cx.index(b)?);
            if ia == ib {
                return refused(format!("cannot merge grid {a} with itself"));
            }
            cx.unlocked(a)?;
            cx.unlocked(b)?;
            let touch = cx.members(ia).iter().any(|&u| {
                cx.adjacency[u]
                    .iter()
                    .any(|&v| cx.group[v as usize] as usize == ib)
            });
            if !touch {
                return refused(format!("grids {a} and {b} are not neighbours"));
            }
            let (keep, drop) = (ia.min(ib), ia.max(ib));
            codes.remove(drop);
            for g in &mut group {
                let v = *g as usize;
                *g = if v == drop {
                    keep as u32
                } else if v > drop {
                    *g - 1
                } else {
                    *g
                };
            }
        }
        Op::Rebalance { .. } => {
            let free: Vec<usize> = (0..cx.codes.len())
                .filter(|&g| !cx.locked.contains(&cx.codes[g]))
                .collect();
            if free.is_empty() {
                return refused(format!(
                    "every grid of community {} is locked",
                    cx.community
                ));
            }
            let members: Vec<usize> = (0..group.len())
                .filter(|&b| free.contains(&(cx.group[b] as usize)))
                .collect();
            let (units, adj) = cx.subgraph(&members);
            let (sub, k) = balance::partition(&units, &adj, &cx.params);
            // New groups take the code of the old grid they share most
            // households with; the rest take new numbers.
            let mut overlap: BTreeMap<(usize, usize), u64> = BTreeMap::new();
            for (i, &b) in members.iter().enumerate() {
                *overlap
                    .entry((sub[i] as usize, cx.group[b] as usize))
                    .or_default() += u64::from(cx.households[b]) + 1;
            }
            let mut pairs: Vec<((usize, usize), u64)> = overlap.into_iter().collect();
            pairs.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let mut to_old: Vec<Option<usize>> = vec![None; k];
            let mut taken = HashSet::new();
            for ((new, old), _) in pairs {
                if to_old[new].is_none() && taken.insert(old) {
                    to_old[new] = Some(old);
                }
            }
            let kept: Vec<String> = (0..cx.codes.len())
                .filter(|g| !free.contains(g) || taken.contains(g))
                .map(|g| cx.codes[g].clone())
                .collect();
            let mut fresh = cx.next;
            let mut new_codes: Vec<String> = Vec::new();
            let mut code_of_new = vec![String::new(); k];
            for (j, old) in to_old.iter().enumerate() {
                code_of_new[j] = match old {
                    Some(o) => cx.codes[*o].clone(),
                    None => {
                        fresh += 1;
                        let c = cx.code(fresh - 1)?;
                        new_codes.push(c.clone());
                        c
                    }
                };
            }
            codes = kept.into_iter().chain(new_codes).collect();
            codes.sort();
            let at = |c: &str| codes.iter().position(|x| x == c).unwrap_or(0) as u32;
            for (b, g) in group.iter_mut().enumerate() {
                if !free.contains(&(cx.group[b] as usize)) {
                    *g = at(&cx.codes[*g as usize]);
                }
            }
            for (i, &b) in members.iter().enumerate() {
                group[b] = at(&code_of_new[sub[i] as usize]);
            }
        }
    }
    Ok(Plan { group, codes })
}

/// Applies one edit to a store, transactionally: either everything
/// (grids, buildings, entities, version, locks) is written or nothing.
///
/// # Errors
/// See [`EditError`].
pub fn apply(store: &mut AnyStore, req: &Request) -> Result<Outcome, EditError> {
    let code = req.op.community()?;
    let community = code.to_string();
    if !store.has_layer(Layer::Grids.name())? {
        return refused("the store has no grids: run `wangge partition` first");
    }
    let previous = store.latest_version(code)?;
    if let Some(expected) = req.if_version
        && expected != previous
    {
        return Err(EditError::Stale {
            community,
            expected,
            current: previous,
        });
    }
    let stored = stored_grids(store, code)?;
    if stored.is_empty() {
        return Err(EditError::NotFound(format!(
            "community {community} has no grids (unknown code, or not partitioned yet)"
        )));
    }
    let c = city::load_community(store, code)?;
    let codes: Vec<String> = stored.iter().map(|g| g.code.clone()).collect();
    let group = current_grouping(store, &c, &codes)?;
    let locked = store.locks(code)?;
    let next = next_number(store, code, &codes)?;
    let (territories, units) = city::units(&c);
    let empty = vec![Vec::new(); c.buildings.len()];
    let adjacency = territories.as_ref().map_or(&empty, |t| &t.adjacency);
    let ids: Vec<String> = c.buildings.iter().map(|b| b.id.clone()).collect();
    let households: Vec<u32> = units.iter().map(|u| u.households).collect();
    let pos: Vec<[f64; 2]> = units.iter().map(|u| u.pos).collect();
    let (target, tolerance) = match &req.op {
        Op::Rebalance {
            target, tolerance, ..
        } => (*target, *tolerance),
        _ => (None, None),
    };
    let meta_f = |k: &str| -> Result<Option<f64>, StoreError> {
        Ok(store.meta(k)?.and_then(|v| v.parse().ok()))
    };
    let params = Params {
        target: match target {
            Some(t) => t,
            None => meta_f("partition_target")?.unwrap_or(400.0),
        },
        tolerance: match tolerance {
            Some(t) => t,
            None => meta_f("partition_tolerance")?.unwrap_or(0.15),
        },
        seed: 0,
    };
    if !(params.target.is_finite() && params.target > 0.0) {
        return refused(format!("target must be positive, got {}", params.target));
    }
    if !(params.tolerance.is_finite() && (0.0..1.0).contains(&params.tolerance)) {
        return refused(format!(
            "tolerance must be in [0, 1), got {}",
            params.tolerance
        ));
    }
    let cx = Context {
        codes: &codes,
        group: &group,
        adjacency,
        ids: &ids,
        households: &households,
        pos: &pos,
        locked: &locked,
        next,
        community: &community,
        params,
    };
    let plan = plan(&req.op, &cx)?;

    // Outlines of the old and the new grouping from the same territories.
    let (old_group, old_out) = city::grid_outlines(&c, &group, codes.len(), territories.as_ref());
    // A lock or unlock keeps the grouping: its outlines are the old ones.
    let (new_group, new_out) = if plan.group == group && plan.codes == codes {
        (old_group.clone(), old_out.clone())
    } else {
        city::grid_outlines(&c, &plan.group, plan.codes.len(), territories.as_ref())
    };
    if let Op::Move { building, to } = &req.op {
        let b = ids.iter().position(|i| i == building).unwrap_or(0);
        if plan.codes[new_group[b] as usize] != *to {
            return refused(format!(
                "the territory of building {building} would be cut off from grid {to}"
            ));
        }
    }
    let members = |g: &[u32], i: usize| -> Vec<usize> {
        (0..g.len()).filter(|&b| g[b] as usize == i).collect()
    };
    let mut outlines = Vec::with_capacity(plan.codes.len());
    let (mut added, mut changed) = (Vec::new(), Vec::new());
    let mut bbox: Option<[f64; 4]> = None;
    let mut grow = |m: &MultiPolygon<f64>| {
        if let Some(r) = geom::bbox(m) {
            bbox = Some(merge_bbox(
                bbox,
                [r.min().x, r.min().y, r.max().x, r.max().y],
            ));
        }
    };
    for (j, code) in plan.codes.iter().enumerate() {
        // Same buildings and the same outline (up to the last bits: the
        // overlay is not bit-reproducible; a piece given to a neighbour
        // changes the area by far more).
        let same = codes.iter().position(|c| c == code).filter(|&i| {
            let (a, b) = (geom::area_m2(&old_out[i]), geom::area_m2(&new_out[j]));
            members(&old_group, i) == members(&new_group, j)
                && old_out[i].0.len() == new_out[j].0.len()
                && (a - b).abs() <= 1e-9 * a.max(1.0)
        });
        match same {
            Some(i) => outlines.push(stored[i].geometry.clone()),
            None => {
                if locked.contains(code) {
                    return refused(format!("the edit would change locked grid {code}"));
                }
                if new_out[j].0.is_empty() {
                    return refused(format!("grid {code} would have no area"));
                }
                if codes.contains(code) {
                    changed.push(code.clone());
                } else {
                    added.push(code.clone());
                }
                grow(&new_out[j]);
                outlines.push(new_out[j].clone());
            }
        }
    }
    let removed: Vec<String> = codes
        .iter()
        .filter(|c| !plan.codes.contains(c))
        .cloned()
        .collect();
    for (i, code) in codes.iter().enumerate() {
        if removed.contains(code) || changed.contains(code) {
            grow(&stored[i].geometry);
        }
    }
    let mut part = city::assemble(&c, &new_group, outlines, &plan.codes);
    let moved: Vec<usize> = (0..c.buildings.len())
        .filter(|&b| codes[group[b] as usize] != part.grids[part.building_grid[b]].code)
        .collect();
    let households_moved = moved
        .iter()
        .map(|&b| u64::from(c.buildings[b].households))
        .sum();

    let geometry_changed = bbox.is_some();
    let noded = if geometry_changed {
        let region = geom::bbox(&c.geometry).map(|r| {
            let pad = noding::TOL * 10.0;
            geo_types::Rect::new(
                (r.min().x - pad, r.min().y - pad),
                (r.max().x + pad, r.max().y + pad),
            )
        });
        noding::node_with_store(store, std::slice::from_mut(&mut part), region)?
    } else {
        Vec::new()
    };
    // Grids count persons by position (as the change feed and `wangge
    // assign --store … --layers` do), not by the buildings they name.
    city::count_persons(store, std::slice::from_mut(&mut part), true)?;
    let meta = VersionMeta {
        author: req.author.clone(),
        reason: req.reason.clone(),
        op: req.op.describe(),
    };
    // Entities of the changed grids go to the new grid holding them.
    let affected: HashSet<String> = removed.iter().chain(&changed).cloned().collect();
    let changed_layer = city::unnamed_layer(
        part.grids
            .iter()
            .filter(|g| added.contains(&g.code) || changed.contains(&g.code))
            .map(|g| (&g.code, &g.geometry)),
    );
    let mut reassigned = Vec::new();
    let op = req.op.clone();
    // Another writer may have committed an edit of this community since it
    // was read: inside the write transaction the new version must follow
    // the one the edit was planned on, or the edit is rolled back as stale.
    let mut raced: Option<i64> = None;
    let community_code = community.clone();
    let mut extra = |tx: &Tx<'_>| -> Result<(), StoreError> {
        let now = tx.latest_version(&community_code)?;
        if now != previous + 1 {
            raced = Some(now - 1);
            return Err(StoreError::Conflict {
                what: format!("community {community_code}"),
                reason: "it changed during the edit".into(),
            });
        }
        match &op {
            Op::Lock { grid } => tx.lock(grid)?,
            Op::Unlock { grid } => tx.unlock(grid)?,
            _ => {}
        }
        if let Some(b) = bbox {
            reassigned = reassign(tx, b, &affected, &changed_layer)?;
        }
        Ok(())
    };
    let written = versions::write(
        store,
        &[&c],
        std::slice::from_ref(&part),
        versions::Replace::KeepLocks,
        &noded,
        &meta,
        &mut extra,
    );
    if let Some(current) = raced {
        return Err(EditError::Stale {
            community,
            expected: previous,
            current,
        });
    }
    let version = written?.first().copied().unwrap_or(previous + 1);
    Ok(Outcome {
        community,
        previous,
        version,
        op: req.op.describe(),
        added,
        removed,
        changed,
        buildings_moved: moved.len() as u64,
        households_moved,
        bbox,
        reassigned,
    })
}

/// The stored grid (index into `codes`) of each building of `c`.
fn current_grouping(
    store: &AnyStore,
    c: &Community,
    codes: &[String],
) -> Result<Vec<u32>, EditError> {
    let fids: Vec<i64> = c.buildings.iter().map(|b| b.fid).collect();
    let stored = store.grid_codes(Layer::Buildings, &fids)?;
    let at: HashMap<&str, u32> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut group = Vec::with_capacity(c.buildings.len());
    for (b, code) in c.buildings.iter().zip(stored) {
        let code = code.unwrap_or_default();
        match at.get(code.as_str()) {
            Some(&g) => group.push(g),
            None => {
                return refused(format!(
                    "building {} of community {} has grid code {code:?}, not one of its grids: \
                     re-run `wangge partition --community {}`",
                    b.id, c.code, c.code
                ));
            }
        }
    }
    Ok(group)
}

/// Sets `grid_code` of every entity in `bbox` whose grid is in `affected`
/// to the grid of `layer` holding it (empty when none does).
fn reassign(
    tx: &Tx<'_>,
    bbox: [f64; 4],
    affected: &HashSet<String>,
    layer: &GridLayer,
) -> Result<Vec<Reassigned>, StoreError> {
    let rect = geo_types::Rect::new((bbox[0], bbox[1]), (bbox[2], bbox[3]));
    let mut out = Vec::new();
    for l in Layer::POINT_ENTITIES {
        let mut features = 0;
        let mut updates: Vec<(i64, Option<&str>)> = Vec::new();
        let Some(entities) = tx.points_in(l, rect)? else {
            continue;
        };
        for e in entities {
            let Some(old) = e.grid_code.filter(|c| affected.contains(c)) else {
                continue;
            };
            features += 1;
            let id = match e.geometry {
                Some(Geometry::Point(p)) => layer.locate(p.x(), p.y()),
                _ => None,
            };
            let new = id.map_or("", |i| layer.code(i));
            if new != old {
                updates.push((e.fid, Some(new)));
            }
        }
        tx.set_grid_codes(l, &updates)?;
        out.push(Reassigned {
            layer: l.name().to_owned(),
            features,
            changed: updates.len() as u64,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buildings 0-1-2 in a path (grid A = 001), building 3 (grid B = 002)
    /// bordering 1 only, building 4 (grid B) bordering 3 and 2.
    ///
    /// ```text
    ///   0 — 1 — 2
    ///       |   |
    ///       3 — 4
    /// ```
    fn graph() -> (Vec<String>, Vec<u32>, Vec<Vec<u32>>, Vec<String>) {
        let codes = vec!["110101001001001".to_owned(), "110101001001002".to_owned()];
        let group = vec![0, 0, 0, 1, 1];
        let adjacency = vec![vec![1], vec![0, 2, 3], vec![1, 4], vec![1, 4], vec![2, 3]];
        let ids = (0..5).map(|i| format!("B{i}")).collect();
        (codes, group, adjacency, ids)
    }

    fn run(op: Op, locked: &[&str]) -> Result<Plan, EditError> {
        let (codes, group, adjacency, ids) = graph();
        let locked: HashSet<String> = locked.iter().map(|s| (*s).to_owned()).collect();
        let households = vec![10, 10, 10, 10, 10];
        let pos: Vec<[f64; 2]> = vec![[0., 0.], [10., 0.], [20., 0.], [10., -10.], [20., -10.]];
        let cx = Context {
            codes: &codes,
            group: &group,
            adjacency: &adjacency,
            ids: &ids,
            households: &households,
            pos: &pos,
            locked: &locked,
            next: 3,
            community: "110101001001",
            params: Params {
                target: 20.0,
                tolerance: 0.15,
                seed: 0,
            },
        };
        plan(&op, &cx)
    }

    fn mv(b: &str, to: &str) -> Op {
        Op::Move {
            building: b.into(),
            to: to.into(),
        }
    }

    fn reason(r: Result<Plan, EditError>) -> String {
        match r {
            Err(EditError::Refused(s) | EditError::NotFound(s)) => s,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_move_must_keep_the_old_grid_connected() {
        // 1 holds 0 and 2 together.
        assert!(
            reason(run(mv("B1", "110101001001002"), &[]))
                .contains("cut grid 110101001001001 in two")
        );
        // 2 is an end of the path: fine, and it borders B through 4.
        let p = run(mv("B2", "110101001001002"), &[]).unwrap();
        assert_eq!(p.group, vec![0, 0, 1, 1, 1]);
        assert_eq!(p.codes.len(), 2);
    }

    #[test]
    fn a_move_must_reach_a_neighbouring_grid() {
        // 0 borders only 1 (its own grid).
        assert!(reason(run(mv("B0", "110101001001002"), &[])).contains("does not border"));
        assert!(reason(run(mv("B0", "110101001001001"), &[])).contains("already in"));
        assert!(reason(run(mv("B9", "110101001001002"), &[])).contains("no building"));
        assert!(reason(run(mv("B2", "110101001001009"), &[])).contains("no grid"));
    }

    #[test]
    fn locked_grids_are_never_edited() {
        let a = "110101001001001";
        assert!(reason(run(mv("B2", "110101001001002"), &[a])).contains("locked"));
        assert!(
            reason(run(
                Op::Split {
                    grid: a.into(),
                    parts: 2
                },
                &[a]
            ))
            .contains("locked")
        );
        assert!(
            reason(run(
                Op::Merge {
                    a: a.into(),
                    b: "110101001001002".into()
                },
                &[a]
            ))
            .contains("locked")
        );
        assert!(reason(run(Op::Lock { grid: a.into() }, &[a])).contains("already locked"));
        assert!(reason(run(Op::Unlock { grid: a.into() }, &[])).contains("not locked"));
        let all = &[a, "110101001001002"];
        assert!(
            reason(run(
                Op::Rebalance {
                    community: "110101001001".into(),
                    target: None,
                    tolerance: None
                },
                all
            ))
            .contains("every grid")
        );
    }

    #[test]
    fn merge_keeps_the_lower_code_and_split_takes_the_next_number() {
        let p = run(
            Op::Merge {
                a: "110101001001002".into(),
                b: "110101001001001".into(),
            },
            &[],
        )
        .unwrap();
        assert_eq!(p.codes, vec!["110101001001001".to_owned()]);
        assert_eq!(p.group, vec![0; 5]);
        let p = run(
            Op::Split {
                grid: "110101001001001".into(),
                parts: 2,
            },
            &[],
        )
        .unwrap();
        // Next free number is 3 (the context says so: 003 is new).
        assert_eq!(p.codes[2], "110101001001003");
        let a: Vec<u32> = p.group[..3].to_vec();
        assert!(a.contains(&0) && a.contains(&2), "{a:?}");
        assert_eq!(&p.group[3..], &[1, 1]);
        assert!(
            reason(run(
                Op::Split {
                    grid: "110101001001002".into(),
                    parts: 3
                },
                &[]
            ))
            .contains("cannot become 3")
        );
    }

    #[test]
    fn merge_needs_neighbours() {
        // A third grid far away: building 5 alone, bordering nothing.
        let codes = vec![
            "110101001001001".to_owned(),
            "110101001001002".to_owned(),
            "110101001001004".to_owned(),
        ];
        let group = vec![0, 1, 2];
        let adjacency = vec![vec![1], vec![0], vec![]];
        let ids: Vec<String> = (0..3).map(|i| format!("B{i}")).collect();
        let locked = HashSet::new();
        let cx = Context {
            codes: &codes,
            group: &group,
            adjacency: &adjacency,
            ids: &ids,
            households: &[1, 1, 1],
            pos: &[[0., 0.], [1., 0.], [9., 9.]],
            locked: &locked,
            next: 5,
            community: "110101001001",
            params: Params::default(),
        };
        let r = plan(
            &Op::Merge {
                a: codes[0].clone(),
                b: codes[2].clone(),
            },
            &cx,
        );
        assert!(reason(r).contains("not neighbours"));
        let p = plan(
            &Op::Merge {
                a: codes[0].clone(),
                b: codes[1].clone(),
            },
            &cx,
        )
        .unwrap();
        assert_eq!(p.codes, vec![codes[0].clone(), codes[2].clone()]);
        assert_eq!(p.group, vec![0, 0, 1]);
    }

    #[test]
    fn codes_name_their_community() {
        assert_eq!(
            Op::Merge {
                a: "110101001001001".into(),
                b: "110101001002001".into()
            }
            .community()
            .unwrap_err()
            .to_string(),
            "refused: grids 110101001001001 and 110101001002001 are in different communities"
        );
        assert!(matches!(
            Op::Lock { grid: "12".into() }.community(),
            Err(EditError::NotFound(_))
        ));
    }
}
