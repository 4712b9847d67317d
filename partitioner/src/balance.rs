//! Grouping a community's buildings into grids.
//!
//! 1. The number of grids is `round(households / target)` (at least one); a
//!    community whose households fit in one grid within the tolerance is one
//!    grid, and a building with more households than a grid holds is a grid
//!    of its own.
//! 2. Recursive weighted bisection: the buildings are cut across the longer
//!    extent of their centroids at the household share of each half, so
//!    grids come out balanced and compact.
//! 3. Contiguity repair: a grid whose buildings fall apart on the adjacency
//!    graph keeps its heaviest piece and gives the others to the lightest
//!    neighbouring grid.
//! 4. Balancing moves: a building on a grid's edge moves to a lighter
//!    neighbouring grid when that lowers the squared deviation from the
//!    target, keeps its old grid connected and does not make it straggle.
//!
//! The result depends only on the input order, the parameters and the seed.

use std::collections::VecDeque;

/// One building as the partitioner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    /// Households living in it (the balance weight).
    pub households: u32,
    /// Centroid in metres of a local frame.
    pub pos: [f64; 2],
}

/// Partitioning parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Target households per grid (> 0).
    pub target: f64,
    /// Accepted relative deviation from the target (0.15 = ±15 %).
    pub tolerance: f64,
    /// Seed: turns the direction of the bisection cuts.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            target: 400.0,
            tolerance: 0.15,
            seed: 0,
        }
    }
}

/// Groups `units` (with their adjacency lists) into grids: returns the grid
/// of each unit and the number of grids. Grid numbers are arbitrary here.
#[must_use]
pub fn partition(units: &[Unit], adjacency: &[Vec<u32>], params: &Params) -> (Vec<u32>, usize) {
    let n = units.len();
    if n == 0 {
        return (Vec::new(), 0);
    }
    let total: u64 = units.iter().map(|u| u64::from(u.households)).sum();
    let max_one = params.target * (1.0 + params.tolerance);
    if total as f64 <= max_one {
        return (vec![0; n], 1);
    }
    let mut group = vec![u32::MAX; n];
    let mut k = 0u32;
    // Buildings bigger than a grid are grids of their own.
    let mut rest = Vec::with_capacity(n);
    for (i, u) in units.iter().enumerate() {
        if f64::from(u.households) > max_one {
            group[i] = k;
            k += 1;
        } else {
            rest.push(i);
        }
    }
    let giants = k;
    if !rest.is_empty() {
        let w: u64 = rest.iter().map(|&i| u64::from(units[i].households)).sum();
        let parts = ((w as f64 / params.target).round() as usize).clamp(1, rest.len());
        let angle = (params.seed % 180) as f64 * std::f64::consts::PI / 180.0;
        let (s, c) = angle.sin_cos();
        let rot: Vec<[f64; 2]> = units
            .iter()
            .map(|u| [u.pos[0] * c - u.pos[1] * s, u.pos[0] * s + u.pos[1] * c])
            .collect();
        bisect(units, &rot, &mut rest, parts, &mut k, &mut group);
    }
    let mut k = k as usize;
    repair_contiguity(units, adjacency, &mut group, &mut k);
    rebalance(units, adjacency, &mut group, k, giants, params);
    repair_contiguity(units, adjacency, &mut group, &mut k);
    let k = compact_labels(&mut group);
    (group, k)
}

/// Cuts `units` (one grid's buildings, with their adjacency lists) into
/// `parts` groups of about equal households: recursive weighted bisection,
/// contiguity repair and balancing moves as in [`partition`]. Returns the
/// group of each unit and the number of groups, which can differ from
/// `parts` when the buildings cannot make that many contiguous groups.
#[must_use]
pub fn split(
    units: &[Unit],
    adjacency: &[Vec<u32>],
    parts: usize,
    tolerance: f64,
) -> (Vec<u32>, usize) {
    let n = units.len();
    if n == 0 || parts == 0 {
        return (vec![0; n], usize::from(n > 0));
    }
    let total: u64 = units.iter().map(|u| u64::from(u.households)).sum();
    let params = Params {
        target: (total as f64 / parts as f64).max(1.0),
        tolerance,
        seed: 0,
    };
    let mut group = vec![u32::MAX; n];
    let mut ids: Vec<usize> = (0..n).collect();
    let rot: Vec<[f64; 2]> = units.iter().map(|u| u.pos).collect();
    let mut k = 0u32;
    bisect(units, &rot, &mut ids, parts, &mut k, &mut group);
    let mut k = k as usize;
    repair_contiguity(units, adjacency, &mut group, &mut k);
    rebalance(units, adjacency, &mut group, k, 0, &params);
    repair_contiguity(units, adjacency, &mut group, &mut k);
    let k = compact_labels(&mut group);
    (group, k)
}

/// True when `members` (unit indices) form one connected piece of the
/// adjacency graph restricted to them (an empty set is connected).
#[must_use]
pub fn connected(adjacency: &[Vec<u32>], members: &[usize]) -> bool {
    let Some(&first) = members.first() else {
        return true;
    };
    let inside: std::collections::HashSet<usize> = members.iter().copied().collect();
    let mut seen = std::collections::HashSet::from([first]);
    let mut queue = VecDeque::from([first]);
    while let Some(u) = queue.pop_front() {
        for &v in &adjacency[u] {
            let v = v as usize;
            if inside.contains(&v) && seen.insert(v) {
                queue.push_back(v);
            }
        }
    }
    seen.len() == inside.len()
}

/// Recursive weighted bisection of `ids` into `parts` groups numbered from
/// `*next`.
fn bisect(
    units: &[Unit],
    rot: &[[f64; 2]],
    ids: &mut [usize],
    parts: usize,
    next: &mut u32,
    group: &mut [u32],
) {
    if parts <= 1 || ids.len() <= 1 {
        for &i in ids.iter() {
            group[i] = *next;
        }
        *next += 1;
        return;
    }
    let extent = |axis: usize| {
        let (lo, hi) = ids
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                (lo.min(rot[i][axis]), hi.max(rot[i][axis]))
            });
        hi - lo
    };
    let axis = usize::from(extent(1) > extent(0));
    ids.sort_by(|&a, &b| rot[a][axis].total_cmp(&rot[b][axis]).then(a.cmp(&b)));
    let left_parts = parts / 2;
    let total: u64 = ids.iter().map(|&i| u64::from(units[i].households)).sum();
    let want = total as f64 * left_parts as f64 / parts as f64;
    // At least as many units on each side as grids it must make.
    let (lo, hi) = (
        left_parts.min(ids.len() - 1).max(1),
        (ids.len() - (parts - left_parts)).max(1),
    );
    let mut best = (f64::INFINITY, lo);
    let mut acc = 0u64;
    for (cut, &i) in ids.iter().enumerate().take(hi) {
        acc += u64::from(units[i].households);
        let at = cut + 1;
        if at >= lo && at <= hi {
            let d = (acc as f64 - want).abs();
            if d < best.0 {
                best = (d, at);
            }
        }
    }
    let (left, right) = ids.split_at_mut(best.1);
    bisect(units, rot, left, left_parts, next, group);
    bisect(units, rot, right, parts - left_parts, next, group);
}

/// Connected pieces of group `g` on the adjacency graph.
fn pieces(adjacency: &[Vec<u32>], group: &[u32], members: &[usize]) -> Vec<Vec<usize>> {
    let g = group[members[0]];
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    let mut out = Vec::new();
    for &m in members {
        if !seen.insert(m) {
            continue;
        }
        let mut piece = vec![m];
        let mut queue = VecDeque::from([m]);
        while let Some(u) = queue.pop_front() {
            for &v in &adjacency[u] {
                let v = v as usize;
                if group[v] == g && seen.insert(v) {
                    piece.push(v);
                    queue.push_back(v);
                }
            }
        }
        out.push(piece);
    }
    out
}

fn members_of(group: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![Vec::new(); k];
    for (i, &g) in group.iter().enumerate() {
        if (g as usize) < k {
            m[g as usize].push(i);
        }
    }
    m
}

/// Gives every detached piece of a group to its lightest neighbouring group
/// (or makes it a group of its own when it has no neighbour).
fn repair_contiguity(units: &[Unit], adjacency: &[Vec<u32>], group: &mut [u32], k: &mut usize) {
    for _ in 0..32 {
        let mut changed = false;
        let members = members_of(group, *k);
        let mut weight: Vec<u64> = members
            .iter()
            .map(|m| m.iter().map(|&i| u64::from(units[i].households)).sum())
            .collect();
        for m in &members {
            if m.is_empty() {
                continue;
            }
            let mut ps = pieces(adjacency, group, m);
            if ps.len() < 2 {
                continue;
            }
            let w = |p: &Vec<usize>| -> (u64, usize) {
                (
                    p.iter().map(|&i| u64::from(units[i].households)).sum(),
                    p.len(),
                )
            };
            ps.sort_by(|a, b| w(b).cmp(&w(a)).then(a[0].cmp(&b[0])));
            let g = group[m[0]];
            for p in &ps[1..] {
                let mut best: Option<(u64, u32)> = None;
                for &u in p {
                    for &v in &adjacency[u] {
                        let h = group[v as usize];
                        if h != g && best.is_none_or(|b| (weight[h as usize], h) < b) {
                            best = Some((weight[h as usize], h));
                        }
                    }
                }
                let to = match best {
                    Some((_, h)) => h,
                    None => {
                        weight.push(0);
                        *k += 1;
                        (*k - 1) as u32
                    }
                };
                let pw = w(p).0;
                weight[g as usize] -= pw;
                weight[to as usize] += pw;
                for &u in p {
                    group[u] = to;
                }
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// Balancing moves of single buildings across grid edges; see module docs.
fn rebalance(
    units: &[Unit],
    adjacency: &[Vec<u32>],
    group: &mut [u32],
    k: usize,
    giants: u32,
    params: &Params,
) {
    let mut members = members_of(group, k);
    for _pass in 0..64 {
        let weight: Vec<f64> = members
            .iter()
            .map(|m| m.iter().map(|&i| f64::from(units[i].households)).sum())
            .collect();
        let centre: Vec<[f64; 2]> = members
            .iter()
            .map(|m| {
                let n = m.len().max(1) as f64;
                let s = m.iter().fold([0.0, 0.0], |a, &i| {
                    [a[0] + units[i].pos[0], a[1] + units[i].pos[1]]
                });
                [s[0] / n, s[1] / n]
            })
            .collect();
        let far = |p: [f64; 2], c: [f64; 2]| (p[0] - c[0]).hypot(p[1] - c[1]);
        let mut moved = false;
        // Heaviest grids give first.
        let mut order: Vec<usize> = (giants as usize..k).collect();
        order.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]).then(a.cmp(&b)));
        for p in order {
            if weight[p] <= params.target * (1.0 + params.tolerance * 0.25) || members[p].len() < 2
            {
                continue;
            }
            let mut best: Option<(f64, usize, usize)> = None;
            for &u in &members[p] {
                let wu = f64::from(units[u].households);
                for &v in &adjacency[u] {
                    let q = group[v as usize] as usize;
                    if q == p || q < giants as usize {
                        continue;
                    }
                    // Lower squared deviation: w(q) + w(u) < w(p).
                    if weight[q] + wu >= weight[p] {
                        continue;
                    }
                    let dq = far(units[u].pos, centre[q]);
                    if dq > 1.5 * far(units[u].pos, centre[p]).max(1.0) {
                        continue;
                    }
                    let gain = weight[p] - (weight[q] + wu);
                    if best.is_none_or(|b| {
                        (gain, std::cmp::Reverse(u)) > (b.0, std::cmp::Reverse(b.1))
                    }) {
                        best = Some((gain, u, q));
                    }
                }
            }
            let Some((_, u, q)) = best else { continue };
            // Keep p connected without u.
            group[u] = u32::MAX;
            let rest: Vec<usize> = members[p].iter().copied().filter(|&i| i != u).collect();
            group[rest[0]] = p as u32;
            let ok = pieces(adjacency, group, &rest).len() == 1;
            if ok {
                group[u] = q as u32;
                members[p] = rest;
                members[q].push(u);
                moved = true;
                break;
            }
            group[u] = p as u32;
        }
        if !moved {
            return;
        }
    }
}

/// Renumbers non-empty groups 0.. in order of first appearance.
fn compact_labels(group: &mut [u32]) -> usize {
    let mut map = std::collections::HashMap::new();
    for g in group.iter_mut() {
        let n = map.len() as u32;
        *g = *map.entry(*g).or_insert(n);
    }
    map.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A w × h lattice with 4-neighbour adjacency.
    fn lattice(
        w: usize,
        h: usize,
        households: impl Fn(usize) -> u32,
    ) -> (Vec<Unit>, Vec<Vec<u32>>) {
        let mut units = Vec::new();
        let mut adj = vec![Vec::new(); w * h];
        for j in 0..h {
            for i in 0..w {
                let id = j * w + i;
                units.push(Unit {
                    households: households(id),
                    pos: [i as f64 * 50.0, j as f64 * 30.0],
                });
                if i > 0 {
                    adj[id].push((id - 1) as u32);
                    adj[id - 1].push(id as u32);
                }
                if j > 0 {
                    adj[id].push((id - w) as u32);
                    adj[id - w].push(id as u32);
                }
            }
        }
        (units, adj)
    }

    fn weights(units: &[Unit], group: &[u32], k: usize) -> Vec<u64> {
        let mut w = vec![0u64; k];
        for (u, &g) in units.iter().zip(group) {
            w[g as usize] += u64::from(u.households);
        }
        w
    }

    #[test]
    fn a_small_community_is_one_grid() {
        let (units, adj) = lattice(3, 3, |_| 40);
        let (g, k) = partition(&units, &adj, &Params::default());
        assert_eq!(k, 1);
        assert!(g.iter().all(|&x| x == 0));
    }

    #[test]
    fn equal_buildings_split_evenly_and_connected() {
        // 20 × 10 buildings of 10 households: 2000 = 5 grids of 400.
        let (units, adj) = lattice(20, 10, |_| 10);
        let (g, k) = partition(&units, &adj, &Params::default());
        assert_eq!(k, 5);
        for w in weights(&units, &g, k) {
            assert!((340..=460).contains(&w), "{w}");
        }
        for p in members_of(&g, k) {
            assert_eq!(pieces(&adj, &g, &p).len(), 1);
        }
    }

    #[test]
    fn a_huge_building_is_its_own_grid() {
        let (units, adj) = lattice(6, 6, |i| if i == 14 { 900 } else { 20 });
        let (g, k) = partition(&units, &adj, &Params::default());
        let alone = g.iter().filter(|&&x| x == g[14]).count();
        assert_eq!(alone, 1);
        assert!(k >= 3);
        for p in members_of(&g, k) {
            assert_eq!(pieces(&adj, &g, &p).len(), 1, "{g:?}");
        }
    }
}
