//! A static 2-D point index (a k-d tree laid out in one array, as in
//! kdbush): built by recursive selection in O(n log n), in parallel, with no
//! allocation per node; answers box and radius queries. The layer's vertex
//! searches (snapping, noding) build one over every vertex of a city, where
//! bulk-loading an R-tree took most of the time.

/// Leaves hold at most this many points; they are scanned linearly.
const LEAF: usize = 32;

/// Ranges at least this long are split on two threads.
const PARALLEL: usize = 1 << 15;

/// Points `[x, y]` with a payload `T`, in k-d order.
#[derive(Debug, Clone)]
pub struct PointIndex<T> {
    points: Vec<([f64; 2], T)>,
}

impl<T: Send + Copy> PointIndex<T> {
    /// Builds the index over `points` (any order, duplicates allowed).
    #[must_use]
    pub fn new(mut points: Vec<([f64; 2], T)>) -> PointIndex<T> {
        sort(&mut points, 0);
        PointIndex { points }
    }

    /// Number of points.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when there are no points.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Every point, in the index's order.
    #[must_use]
    pub fn points(&self) -> &[([f64; 2], T)] {
        &self.points
    }

    /// Calls `f` with every point in the closed box `[min, max]`.
    pub fn in_box(&self, min: [f64; 2], max: [f64; 2], mut f: impl FnMut(&([f64; 2], T))) {
        if self.points.is_empty() {
            return;
        }
        let inside =
            |p: &[f64; 2]| p[0] >= min[0] && p[0] <= max[0] && p[1] >= min[1] && p[1] <= max[1];
        let mut stack: Vec<(usize, usize, usize)> = vec![(0, self.points.len(), 0)];
        while let Some((lo, hi, axis)) = stack.pop() {
            if hi - lo <= LEAF {
                for e in &self.points[lo..hi] {
                    if inside(&e.0) {
                        f(e);
                    }
                }
                continue;
            }
            let m = lo + (hi - lo) / 2;
            let e = &self.points[m];
            if inside(&e.0) {
                f(e);
            }
            if min[axis] <= e.0[axis] {
                stack.push((lo, m, 1 - axis));
            }
            if max[axis] >= e.0[axis] {
                stack.push((m + 1, hi, 1 - axis));
            }
        }
    }

    /// Calls `f` with every point whose squared distance from `c` is at
    /// most `r2` (`dx² + dy²`, as `rstar` measures it).
    pub fn within(&self, c: [f64; 2], r2: f64, mut f: impl FnMut(&([f64; 2], T))) {
        let r = r2.sqrt() * (1.0 + 1e-12);
        self.in_box([c[0] - r, c[1] - r], [c[0] + r, c[1] + r], |e| {
            let (dx, dy) = (e.0[0] - c[0], e.0[1] - c[1]);
            if dx * dx + dy * dy <= r2 {
                f(e);
            }
        });
    }
}

/// Puts `points` in k-d order: the median of the range by `axis` in the
/// middle, the smaller ones before it and the others after, each half
/// ordered by the other axis in turn.
fn sort<T: Send>(points: &mut [([f64; 2], T)], axis: usize) {
    if points.len() <= LEAF {
        return;
    }
    let m = points.len() / 2;
    points.select_nth_unstable_by(m, |a, b| a.0[axis].total_cmp(&b.0[axis]));
    let (left, rest) = points.split_at_mut(m);
    let right = &mut rest[1..];
    if left.len() >= PARALLEL {
        rayon::join(|| sort(left, 1 - axis), || sort(right, 1 - axis));
    } else {
        sort(left, 1 - axis);
        sort(right, 1 - axis);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Box and radius queries find exactly what a scan of every point
        /// finds.
        #[test]
        fn queries_equal_a_full_scan(
            pts in prop::collection::vec((0i32..200, 0i32..200), 0..400),
            q in (0i32..200, 0i32..200, 0i32..60, 0i32..60),
            r in 0i32..40,
        ) {
            let points: Vec<([f64; 2], u32)> = pts
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| ([f64::from(x) * 0.5, f64::from(y) * 0.5], i as u32))
                .collect();
            let index = PointIndex::new(points.clone());
            let (min, max) = (
                [f64::from(q.0) * 0.5, f64::from(q.1) * 0.5],
                [f64::from(q.0 + q.2) * 0.5, f64::from(q.1 + q.3) * 0.5],
            );
            let mut got = Vec::new();
            index.in_box(min, max, |e| got.push(e.1));
            got.sort_unstable();
            let mut want: Vec<u32> = points
                .iter()
                .filter(|(p, _)| p[0] >= min[0] && p[0] <= max[0] && p[1] >= min[1] && p[1] <= max[1])
                .map(|e| e.1)
                .collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            let r2 = f64::from(r) * f64::from(r) * 0.25;
            let mut got = Vec::new();
            index.within(min, r2, |e| got.push(e.1));
            got.sort_unstable();
            let mut want: Vec<u32> = points
                .iter()
                .filter(|(p, _)| {
                    let (dx, dy) = (p[0] - min[0], p[1] - min[1]);
                    dx * dx + dy * dy <= r2
                })
                .map(|e| e.1)
                .collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
