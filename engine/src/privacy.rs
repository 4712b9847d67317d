//! The one publication rule for counts of persons and households (DESIGN
//! §8, PIPL): what a public tile, response or archive may say.
//!
//! **The rule.** A unit (district, street, community, grid, building,
//! hexagon, dashboard cell) whose count of households or persons is below
//! `k` (default [`DEFAULT_K`] = 10) has its counts withheld: the store keeps
//! them, public outputs leave them out (MVT) or say `"<10"` (JSON). That is
//! *primary* suppression; a zero is below `k` too.
//!
//! **Complementary suppression.** A parent's published total minus its
//! children's published counts would reveal a lone withheld child, and a
//! withheld parent whose children are all published is their sum. So,
//! walking the hierarchy from the top ([`suppress`]):
//! - a published parent has no withheld child, or at least two;
//! - a withheld parent has at least two withheld children (its only child,
//!   if it has one);
//!
//! the missing ones are its smallest published children (fewest households,
//! then persons, then input order), as statistical offices choose them. A
//! decision for a parent's children depends only on the parent's status and
//! the children's counts, so a change inside one community (a planner edit
//! moving buildings between its grids) changes no decision outside it.
//!
//! The hierarchy of a store is districts → streets → communities → grids →
//! buildings ([`Disclosure::load`]); a building counts only households.
//! Exact counts go to staff (a request with the server's token); the rule
//! is for everything public.

use std::collections::{HashMap, HashSet};

use crate::model::Layer;
use crate::store::{AdminCounts, AnyStore, BuildingCounts, Selection, StoreError};

/// The default threshold: no public count below 10.
pub const DEFAULT_K: u32 = 10;

/// The publication threshold `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Privacy {
    k: u32,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy { k: DEFAULT_K }
    }
}

/// A threshold that cannot protect anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("privacy k must be at least 1 (got {0}); the default is {DEFAULT_K}")]
pub struct BadK(pub u32);

impl Privacy {
    /// The rule with threshold `k` (at least 1).
    ///
    /// # Errors
    /// [`BadK`] for 0.
    pub fn new(k: u32) -> Result<Privacy, BadK> {
        if k == 0 {
            return Err(BadK(k));
        }
        Ok(Privacy { k })
    }

    /// The threshold.
    #[must_use]
    pub fn k(self) -> u32 {
        self.k
    }

    /// True when a count may be published on its own (`n >= k`).
    #[must_use]
    pub fn publishable(self, n: i64) -> bool {
        n >= i64::from(self.k)
    }

    /// What JSON says instead of a withheld count: `"<10"`.
    #[must_use]
    pub fn label(self) -> String {
        format!("<{}", self.k)
    }
}

/// One unit of a hierarchy for [`suppress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Index of the parent unit in the same slice; `None` for a root (a
    /// parent index out of range counts as none).
    pub parent: Option<usize>,
    /// Households (a missing value is 0).
    pub households: i64,
    /// Persons, `None` where the unit publishes no person count (buildings).
    pub persons: Option<i64>,
}

impl Unit {
    fn primary(&self, p: Privacy) -> bool {
        !p.publishable(self.households) || self.persons.is_some_and(|n| !p.publishable(n))
    }
}

/// Which units' counts are withheld (`true`), primary and complementary,
/// by the rules of the module documentation. Deterministic: the same
/// units in the same order give the same answer.
#[must_use]
pub fn suppress(privacy: Privacy, units: &[Unit]) -> Vec<bool> {
    let n = units.len();
    let mut out: Vec<bool> = units.iter().map(|u| u.primary(privacy)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, u) in units.iter().enumerate() {
        match u.parent.filter(|&p| p < n && p != i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    // Top-down (breadth first), so a parent's status is final before its
    // children are looked at. Each unit is visited once, cycles or not.
    let mut seen = vec![false; n];
    let mut queue = std::collections::VecDeque::from(roots);
    while let Some(p) = queue.pop_front() {
        if std::mem::replace(&mut seen[p], true) {
            continue;
        }
        let kids = &children[p];
        let withheld = kids.iter().filter(|&&c| out[c]).count();
        let need = if out[p] {
            kids.len().min(2)
        } else if withheld == 1 && kids.len() >= 2 {
            2
        } else {
            0
        };
        if withheld < need {
            let mut open: Vec<usize> = kids.iter().copied().filter(|&c| !out[c]).collect();
            open.sort_by_key(|&c| (units[c].households, units[c].persons.unwrap_or(0), c));
            for c in open.into_iter().take(need - withheld) {
                out[c] = true;
            }
        }
        queue.extend(kids.iter().copied());
    }
    out
}

/// What may be published of a store's counts under one [`Privacy`] rule:
/// the admin units (by code) and buildings (by fid) whose counts are
/// withheld. Computed from the whole hierarchy at once
/// ([`Disclosure::load`]), then kept current one community at a time
/// ([`Disclosure::update`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disclosure {
    privacy: Privacy,
    codes: HashSet<Box<str>>,
    buildings: HashSet<i64>,
    /// Every community of the hierarchy, with its withheld grids and
    /// buildings: what [`Disclosure::update`] replaces.
    below: HashMap<Box<str>, Below>,
    /// Whether every street and community named its parent in
    /// `parent_code` when loaded, so that a parent's children can be read
    /// by that column ([`Disclosure::update_counts`]).
    parents_named: bool,
}

/// The withheld units under one community.
#[derive(Debug, Clone, Default, PartialEq)]
struct Below {
    grids: Vec<Box<str>>,
    buildings: Vec<i64>,
    /// Whether a building sits directly under the community (it has no
    /// grid), so that it takes part in the grids' decisions.
    loose: bool,
}

/// What a unit of [`Disclosure`]'s hierarchy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Admin(Layer),
    Building(i64),
}

/// A hierarchy being put together for [`suppress`]: units, their keys and
/// kinds, and their parents by code until [`Hierarchy::link`].
#[derive(Debug, Default)]
struct Hierarchy {
    keys: Vec<Box<str>>,
    kinds: Vec<Kind>,
    units: Vec<Unit>,
    pending: Vec<Option<String>>,
    index: HashMap<Box<str>, usize>,
}

impl Hierarchy {
    fn admin(&mut self, layer: Layer, r: AdminCounts) {
        let code: Box<str> = r.code.into();
        let parent = r.parent.or_else(|| {
            let len = layer.code_len()?;
            (len > 6 && code.len() == len).then(|| code[..len - 3].to_owned())
        });
        self.index.insert(code.clone(), self.units.len());
        self.keys.push(code);
        self.kinds.push(Kind::Admin(layer));
        self.pending.push(parent);
        self.units.push(Unit {
            parent: None,
            households: r.households,
            persons: Some(r.persons),
        });
    }

    /// A building: under its grid when the hierarchy holds it, else under
    /// its community.
    fn building(&mut self, b: BuildingCounts) {
        let parent = b
            .grid_code
            .filter(|g| self.index.contains_key(g.as_str()))
            .or(b.community_code);
        self.keys.push("".into());
        self.kinds.push(Kind::Building(b.fid));
        self.pending.push(parent);
        self.units.push(Unit {
            parent: None,
            households: b.households,
            persons: None,
        });
    }

    fn link(&mut self) {
        for (u, p) in self.units.iter_mut().zip(&self.pending) {
            u.parent = p.as_deref().and_then(|p| self.index.get(p).copied());
        }
    }

    /// The community a unit is under (itself for a community).
    fn community(&self, mut i: usize) -> Option<usize> {
        for _ in 0..3 {
            if self.kinds[i] == Kind::Admin(Layer::Communities) {
                return Some(i);
            }
            i = self.units[i].parent?;
        }
        None
    }
}

impl Disclosure {
    /// Reads districts, streets, communities, grids and buildings (those
    /// present) and applies [`suppress`] to their hierarchy: a unit's
    /// parent is its `parent_code` (else the code's prefix), a building's
    /// its grid (else its community).
    ///
    /// # Errors
    /// Store errors.
    pub fn load(store: &AnyStore, privacy: Privacy) -> Result<Disclosure, StoreError> {
        let mut h = Hierarchy::default();
        let mut parents_named = true;
        for layer in [
            Layer::Districts,
            Layer::Streets,
            Layer::Communities,
            Layer::Grids,
        ] {
            for r in store.admin_counts(layer, Selection::All)? {
                parents_named &= layer == Layer::Districts
                    || layer == Layer::Grids
                    || r.parent.as_deref().is_some_and(|p| !p.is_empty());
                h.admin(layer, r);
            }
        }
        for b in store.building_counts(Selection::All)? {
            h.building(b);
        }
        h.link();
        let withheld = suppress(privacy, &h.units);
        let mut d = Disclosure {
            privacy,
            parents_named,
            ..Disclosure::default()
        };
        for (i, k) in h.kinds.iter().enumerate() {
            if *k == Kind::Admin(Layer::Communities) {
                d.below.insert(h.keys[i].clone(), Below::default());
            }
        }
        for (i, k) in h.kinds.iter().enumerate() {
            if let (Kind::Building(_), Some(p)) = (k, h.units[i].parent)
                && h.kinds[p] == Kind::Admin(Layer::Communities)
                && let Some(b) = d.below.get_mut(&h.keys[p])
            {
                b.loose = true;
            }
        }
        for (i, w) in withheld.into_iter().enumerate() {
            if w {
                d.withhold(&h, i);
            }
        }
        Ok(d)
    }

    /// Records unit `i` of `h` as withheld.
    fn withhold(&mut self, h: &Hierarchy, i: usize) {
        let below = h
            .community(i)
            .filter(|&c| c != i)
            .and_then(|c| self.below.get_mut(&h.keys[c]));
        match h.kinds[i] {
            Kind::Building(fid) => {
                self.buildings.insert(fid);
                if let Some(b) = below {
                    b.buildings.push(fid);
                }
            }
            Kind::Admin(layer) => {
                if layer == Layer::Grids
                    && let Some(b) = below
                {
                    b.grids.push(h.keys[i].clone());
                }
                self.codes.insert(h.keys[i].clone());
            }
        }
    }

    /// After a change inside `community` (an edit moving buildings between
    /// its grids, splitting or merging them): re-reads just its grids (by
    /// `parent_code`) and buildings (by `community_code`) and decides them
    /// again under the community's own decision, which such a change
    /// leaves alone, as does every decision outside it (see the module
    /// documentation). The result equals a fresh [`Disclosure::load`].
    /// When the community is not in the hierarchy, or one of its buildings
    /// names a grid that is not one of the community's, the whole
    /// hierarchy is read again.
    ///
    /// # Errors
    /// Store errors.
    pub fn update(&mut self, store: &AnyStore, community: &str) -> Result<(), StoreError> {
        self.update_many(store, &[community])
    }

    /// [`Disclosure::update`] of several communities, with one read of
    /// their grids and one of their buildings.
    ///
    /// # Errors
    /// Store errors.
    pub fn update_many(
        &mut self,
        store: &AnyStore,
        communities: &[&str],
    ) -> Result<(), StoreError> {
        if communities.is_empty() {
            return Ok(());
        }
        if communities.iter().any(|c| !self.below.contains_key(*c)) {
            *self = Disclosure::load(store, self.privacy)?;
            return Ok(());
        }
        let mut grids_of = grids_by_community(store, communities)?;
        let buildings = store.building_counts(Selection::In {
            column: "community_code",
            values: communities,
        })?;
        let mut buildings_of: HashMap<String, Vec<BuildingCounts>> = HashMap::new();
        for b in buildings {
            buildings_of
                .entry(b.community_code.clone().unwrap_or_default())
                .or_default()
                .push(b);
        }
        for community in communities {
            let grids = grids_of.remove(*community).unwrap_or_default();
            let buildings = buildings_of.remove(*community).unwrap_or_default();
            if !self.decide_below(community, grids, buildings) {
                *self = Disclosure::load(store, self.privacy)?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// A hierarchy holding just `community`, with counts that give it the
    /// decision it has (nothing below it can change that), for its grids
    /// and buildings to be decided under.
    fn rooted_at(&self, community: &str) -> Hierarchy {
        let mut h = Hierarchy::default();
        let withheld = self.codes.contains(community);
        h.admin(
            Layer::Communities,
            AdminCounts {
                code: community.to_owned(),
                parent: None,
                households: if withheld { 0 } else { i64::MAX },
                persons: if withheld { 0 } else { i64::MAX },
            },
        );
        h
    }

    /// Decides again the grids and buildings under `community` from their
    /// rows; false (nothing changed) when a building names a grid that is
    /// not the community's.
    fn decide_below(
        &mut self,
        community: &str,
        grids: Vec<AdminCounts>,
        buildings: Vec<BuildingCounts>,
    ) -> bool {
        let mut h = self.rooted_at(community);
        for r in grids {
            h.admin(Layer::Grids, r);
        }
        for b in &buildings {
            if b.grid_code
                .as_deref()
                .is_some_and(|g| !h.index.contains_key(g))
            {
                return false;
            }
        }
        for b in buildings {
            h.building(b);
        }
        let loose = h
            .kinds
            .iter()
            .zip(&h.pending)
            .any(|(k, p)| matches!(k, Kind::Building(_)) && p.as_deref() == Some(community));
        h.link();
        let decided = suppress(self.privacy, &h.units);
        let old = self.below.insert(
            community.into(),
            Below {
                loose,
                ..Below::default()
            },
        );
        for g in old.iter().flat_map(|b| &b.grids) {
            self.codes.remove(g);
        }
        for f in old.iter().flat_map(|b| &b.buildings) {
            self.buildings.remove(f);
        }
        for (i, w) in decided.into_iter().enumerate().skip(1) {
            if w {
                self.withhold(&h, i);
            }
        }
        true
    }

    /// After counts changed in some communities (the change feed adding,
    /// moving or removing persons and buildings; the counts of their
    /// street and district change too): decides the districts, streets and
    /// communities again from their counts, read whole (a decision at
    /// these levels depends only on them, not on grids or buildings), then
    /// re-decides below each community whose own decision changed
    /// ([`Disclosure::update_many`]), and below each of `communities`: all
    /// of it when `buildings_changed`, else only where the grids'
    /// decisions change (a building's decision depends on its grid's
    /// decision and its own count). Returns `communities` and those
    /// re-decided, sorted. The result equals a fresh [`Disclosure::load`].
    ///
    /// # Errors
    /// Store errors.
    pub fn update_counts(
        &mut self,
        store: &AnyStore,
        communities: &[&str],
        buildings_changed: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut h = Hierarchy::default();
        // Each parent's children whole: every district (the roots), the
        // streets of the districts and the communities of the streets the
        // changed communities are in.
        let coded = communities
            .iter()
            .all(|c| c.len() == 12 && c.bytes().all(|b| b.is_ascii_digit()));
        if self.parents_named && coded {
            let streets: std::collections::BTreeSet<&str> =
                communities.iter().map(|c| &c[..9]).collect();
            let districts: std::collections::BTreeSet<&str> =
                streets.iter().map(|s| &s[..6]).collect();
            let streets: Vec<&str> = streets.into_iter().collect();
            let districts: Vec<&str> = districts.into_iter().collect();
            for r in store.admin_counts(Layer::Districts, Selection::All)? {
                h.admin(Layer::Districts, r);
            }
            let by_parent = |values| Selection::In {
                column: "parent_code",
                values,
            };
            for r in store.admin_counts(Layer::Streets, by_parent(&districts))? {
                h.admin(Layer::Streets, r);
            }
            for r in store.admin_counts(Layer::Communities, by_parent(&streets))? {
                h.admin(Layer::Communities, r);
            }
        } else {
            for layer in [Layer::Districts, Layer::Streets, Layer::Communities] {
                for r in store.admin_counts(layer, Selection::All)? {
                    h.admin(layer, r);
                }
            }
        }
        h.link();
        let decided = suppress(self.privacy, &h.units);
        let mut redo: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for (i, w) in decided.into_iter().enumerate() {
            let code = &h.keys[i];
            if self.codes.contains(code) != w {
                if w {
                    self.codes.insert(code.clone());
                } else {
                    self.codes.remove(code);
                }
                if h.kinds[i] == Kind::Admin(Layer::Communities) {
                    redo.insert(code.to_string());
                }
            }
        }
        // Communities whose own decision held: when no building changed,
        // their buildings' decisions change only with their grids', so the
        // grids alone are decided first.
        let rest: Vec<&str> = communities
            .iter()
            .copied()
            .filter(|c| !redo.contains(*c))
            .collect();
        if buildings_changed {
            redo.extend(rest.iter().map(|c| (*c).to_owned()));
        } else {
            redo.extend(self.grids_changed(store, &rest)?);
        }
        let redo: Vec<String> = redo.into_iter().collect();
        let refs: Vec<&str> = redo.iter().map(String::as_str).collect();
        self.update_many(store, &refs)?;
        Ok(communities
            .iter()
            .map(|c| (*c).to_owned())
            .chain(redo)
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect())
    }

    /// Of `communities` (whose own decisions hold and whose buildings did
    /// not change), those whose grids' decisions would change with the
    /// grids' current counts, or that have a building without a grid
    /// (which takes part in them): what [`Disclosure::update_many`] must
    /// decide again. The others' decisions stand as they are.
    fn grids_changed(
        &self,
        store: &AnyStore,
        communities: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        if communities.is_empty() {
            return Ok(Vec::new());
        }
        let mut grids_of = grids_by_community(store, communities)?;
        let mut out = Vec::new();
        for c in communities {
            let Some(below) = self.below.get(*c) else {
                out.push((*c).to_owned());
                continue;
            };
            if below.loose {
                out.push((*c).to_owned());
                continue;
            }
            let mut h = self.rooted_at(c);
            for r in grids_of.remove(*c).unwrap_or_default() {
                h.admin(Layer::Grids, r);
            }
            h.link();
            let decided = suppress(self.privacy, &h.units);
            let mut now: Vec<&str> = decided
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, w)| **w)
                .map(|(i, _)| &*h.keys[i])
                .collect();
            let mut was: Vec<&str> = below.grids.iter().map(|g| &**g).collect();
            now.sort_unstable();
            was.sort_unstable();
            if now != was {
                out.push((*c).to_owned());
            }
        }
        Ok(out)
    }

    /// The fids of the withheld buildings under a community, as decided.
    #[must_use]
    pub fn withheld_buildings_of(&self, community: &str) -> Option<&[i64]> {
        self.below.get(community).map(|b| b.buildings.as_slice())
    }

    /// A disclosure that withholds nothing, for a store without counts.
    #[must_use]
    pub fn empty(privacy: Privacy) -> Disclosure {
        Disclosure {
            privacy,
            ..Disclosure::default()
        }
    }

    /// The rule it applies.
    #[must_use]
    pub fn privacy(&self) -> Privacy {
        self.privacy
    }

    /// True when the counts of the district, street, community or grid
    /// with this code may be published. A code the store does not hold
    /// is published only if its count passes on its own: callers check
    /// `n` for units outside the hierarchy.
    #[must_use]
    pub fn code_published(&self, code: &str) -> bool {
        !self.codes.contains(code)
    }

    /// True when a unit's counts may be published: the hierarchy's
    /// decision for its code (`None`: a unit outside the hierarchy) and each
    /// count on its own against k. The test every output path applies.
    #[must_use]
    pub fn unit_published(
        &self,
        code: Option<&str>,
        households: i64,
        persons: Option<i64>,
    ) -> bool {
        let p = self.privacy;
        code.is_some_and(|c| self.code_published(c))
            && p.publishable(households)
            && persons.is_none_or(|n| p.publishable(n))
    }

    /// True when the household count of the building with this fid may be
    /// published.
    #[must_use]
    pub fn building_published(&self, fid: i64) -> bool {
        !self.buildings.contains(&fid)
    }

    /// Number of admin units and of buildings whose counts are withheld.
    #[must_use]
    pub fn withheld(&self) -> (usize, usize) {
        (self.codes.len(), self.buildings.len())
    }
}

/// The grids of `communities` (by `parent_code`), per community.
fn grids_by_community(
    store: &AnyStore,
    communities: &[&str],
) -> Result<HashMap<String, Vec<AdminCounts>>, StoreError> {
    let grids = store.admin_counts(
        Layer::Grids,
        Selection::In {
            column: "parent_code",
            values: communities,
        },
    )?;
    let mut out: HashMap<String, Vec<AdminCounts>> = HashMap::new();
    for g in grids {
        out.entry(g.parent.clone().unwrap_or_default())
            .or_default()
            .push(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(parent: Option<usize>, households: i64) -> Unit {
        Unit {
            parent,
            households,
            persons: Some(households * 2),
        }
    }

    /// No published parent has exactly one withheld child; no withheld
    /// parent has all its children published; nothing below k published.
    fn holds(p: Privacy, units: &[Unit], out: &[bool]) {
        for (i, u) in units.iter().enumerate() {
            if u.primary(p) {
                assert!(out[i], "unit {i} below k is published");
            }
            let kids: Vec<usize> = (0..units.len())
                .filter(|&c| units[c].parent == Some(i))
                .collect();
            let w = kids.iter().filter(|&&c| out[c]).count();
            if out[i] {
                assert!(kids.is_empty() || w >= kids.len().min(2), "unit {i}: {w}");
            } else {
                assert_ne!(w, 1, "published unit {i} has one withheld child");
            }
        }
    }

    #[test]
    fn a_lone_small_child_takes_its_smallest_sibling_with_it() {
        let p = Privacy::default();
        // Parent 60 = 4 + 30 + 26: 4 is withheld, so 60 − 30 − 26 would give
        // it away; 26 (the smallest other) goes too.
        let units = [
            unit(None, 60),
            unit(Some(0), 4),
            unit(Some(0), 30),
            unit(Some(0), 26),
        ];
        let out = suppress(p, &units);
        assert_eq!(out, [false, true, false, true]);
        holds(p, &units, &out);
    }

    #[test]
    fn a_withheld_parent_withholds_two_children() {
        let p = Privacy::default();
        // Street 40 published; community 12 withheld as complement of
        // community 5; its grids 6 and 6 are below k anyway. Community 23's
        // grids are 11 and 12: published.
        let units = [
            unit(None, 40),
            unit(Some(0), 5),
            unit(Some(0), 12),
            unit(Some(0), 23),
            unit(Some(2), 12),
            unit(Some(3), 11),
            unit(Some(3), 12),
        ];
        let out = suppress(p, &units);
        assert_eq!(out[..4], [false, true, true, false]);
        // Community 2 was withheld as a complement: its only grid goes too.
        assert!(out[4]);
        assert!(!out[5] && !out[6]);
        holds(p, &units, &out);
    }

    #[test]
    fn a_secondary_parent_with_large_children_withholds_two_of_them() {
        let p = Privacy::default();
        let units = [
            unit(None, 100),
            unit(Some(0), 3),
            unit(Some(0), 40),
            unit(Some(0), 57),
            unit(Some(2), 20),
            unit(Some(2), 20),
        ];
        let out = suppress(p, &units);
        assert_eq!(out, [false, true, true, false, true, true]);
        holds(p, &units, &out);
    }

    #[test]
    fn persons_below_k_withhold_the_unit() {
        let p = Privacy::default();
        let u = Unit {
            parent: None,
            households: 12,
            persons: Some(9),
        };
        assert_eq!(suppress(p, &[u]), [true]);
        assert_eq!(Privacy::new(0), Err(BadK(0)));
        assert_eq!(Privacy::new(5).unwrap().label(), "<5");
    }

    #[test]
    fn random_hierarchies_keep_the_rule() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..300 {
            let p = Privacy::new(rng.random_range(1..15)).unwrap();
            // A root, some children, grandchildren with sums that add up.
            let mut units = vec![unit(None, 0)];
            let kids = rng.random_range(1..6);
            for _ in 0..kids {
                let me = units.len();
                units.push(unit(Some(0), 0));
                let grand = rng.random_range(0..5);
                for _ in 0..grand {
                    let h = rng.random_range(0..30);
                    units.push(unit(Some(me), h));
                    units[me].households += h;
                }
                if grand == 0 {
                    units[me].households = rng.random_range(0..40);
                }
                units[0].households += units[me].households;
            }
            for u in &mut units {
                u.persons = Some(u.households * 2);
            }
            let out = suppress(p, &units);
            holds(p, &units, &out);
            assert_eq!(out, suppress(p, &units), "deterministic");
        }
    }
}
