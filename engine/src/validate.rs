//! Validation and repair of polygon layers (districts, streets, communities,
//! grids): every defect is found, named and repaired where that is safe, and
//! overlaps between features are resolved so that every point belongs to at
//! most one feature.
//!
//! Repair never loses valid area: a feature is rejected only when nothing
//! polygonal with an area is left. The rules, in order, for each feature:
//! 1. Its polygonal parts are kept: a Polygon, the polygons of a
//!    MultiPolygon, and those of a GeometryCollection (nested ones too);
//!    points and lines in a collection are dropped, each reported with its
//!    `part` (the 0-based index of the member, counting the members of
//!    collections and multi-geometries depth first). A geometry with no
//!    polygonal part at all is rejected.
//! 2. Non-finite vertices (NaN, ±Infinity, `null`) are removed.
//! 3. Coordinates out of range are rejected, unless every vertex of the
//!    feature reads as a valid (lat, lon) pair, then they are swapped back.
//! 4. A part whose exterior ring has fewer than 3 distinct positions is
//!    dropped alone (reported with its `part`), as is a hole with fewer
//!    than 3; a part of zero area vanishes in step 5.
//! 5. Spikes (a vertex where the ring turns back on itself) are reported.
//! 6. OGC validity is checked (geo's `Validation`); invalid features are
//!    rebuilt with [`crate::geom::make_valid`] (the even-odd "linework" rule
//!    of GEOS `make_valid`).
//!
//! Then across features: overlapping pairs are found with an R-tree over
//! bounding boxes, and each overlap is given to the feature that sorts first
//! by key (its code when it has one, else its position in the file), so the
//! result does not depend on the order of the file. Holes in the union of
//! all features are reported as gaps.

use geo::BoundingRect;
use geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};
use rayon::prelude::*;
use rstar::{AABB, RTree, RTreeObject, primitives::GeomWithData, primitives::Rectangle};
use serde::Serialize;

use crate::geom;

/// A polygon feature to validate.
#[derive(Debug, Clone)]
pub struct PolygonInput {
    /// 1-based feature number in its file.
    pub number: usize,
    /// The feature's code, if it has one (decides who keeps an overlap).
    pub code: Option<String>,
    /// The geometry as read.
    pub geometry: Geometry<f64>,
    /// Repairs already made by the reader (e.g. closing a ring).
    pub notes: Vec<String>,
}

/// What happened to a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The feature was repaired and kept.
    Repaired,
    /// The feature could not be repaired and is left out of the output.
    Rejected,
    /// Reported only (e.g. a gap).
    Reported,
}

/// One problem with one feature.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    /// 1-based feature number.
    pub feature: usize,
    /// The feature's code, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The part of the feature it concerns (0-based member index, members
    /// of collections counted depth first), when it concerns one part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
    /// What is wrong.
    pub reason: String,
    /// What was done about it.
    pub action: Action,
}

/// The outcome of validating a polygon layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    /// Features read.
    pub features: usize,
    /// Features that were not OGC-valid as read (self-intersections, spikes,
    /// non-finite or out-of-range coordinates, too few points, …).
    pub invalid: usize,
    /// Features changed by repair (including unclosed rings and overlap
    /// resolution).
    pub repaired: usize,
    /// Features that could not be repaired.
    pub rejected: usize,
    /// Pairs of features that overlapped (by more than 1e-3 m²).
    pub overlaps: usize,
    /// Total overlapping area before resolution, square metres.
    pub overlap_area_m2: f64,
    /// Holes in the union of the features (gaps between neighbours).
    pub gaps: usize,
    /// Total area of those holes, square metres.
    pub gap_area_m2: f64,
    /// Sum of feature areas after make-valid, before overlap resolution
    /// (0 with [`Areas::Skip`]).
    pub area_before_m2: f64,
    /// Sum of feature areas of the output (0 with [`Areas::Skip`]).
    pub area_after_m2: f64,
    /// Every problem found.
    pub errors: Vec<Issue>,
}

/// The output of [`validate_polygons`]: one entry per input, in input order;
/// `None` where the feature was rejected.
pub type Repaired = Vec<Option<MultiPolygon<f64>>>;

/// Overlaps smaller than this are overlay noise, not data.
const MIN_OVERLAP_M2: f64 = 1e-3;

/// Whether [`validate_polygons_with`] measures the layer's geodesic area
/// before and after repair (the report's `area_before_m2` and
/// `area_after_m2`), a tenth of the work on a clean layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Areas {
    /// Measure both sums.
    Measure,
    /// Leave both at 0 (a caller that only needs the repaired layer).
    Skip,
}

/// Validates and repairs a polygon layer; see the module docs for the rules.
#[must_use]
pub fn validate_polygons(inputs: &[PolygonInput]) -> (Repaired, ValidationReport) {
    validate_polygons_with(inputs, Areas::Measure)
}

/// [`validate_polygons`], measuring the area sums or not.
#[must_use]
pub fn validate_polygons_with(
    inputs: &[PolygonInput],
    measure: Areas,
) -> (Repaired, ValidationReport) {
    let mut report = ValidationReport {
        features: inputs.len(),
        ..ValidationReport::default()
    };
    let per_feature: Vec<Repair> = inputs.par_iter().map(repair_one).collect();
    let mut fixed: Repaired = Vec::with_capacity(inputs.len());
    for (geom, issues, invalid, changed) in per_feature {
        report.invalid += usize::from(invalid);
        report.repaired += usize::from(changed && geom.is_some());
        report.rejected += usize::from(geom.is_none());
        report.errors.extend(issues);
        fixed.push(geom);
    }
    let measure = measure == Areas::Measure;
    let before = if measure {
        areas(&fixed, None)
    } else {
        Vec::new()
    };
    report.area_before_m2 = before.iter().sum();
    let repaired = if measure { fixed.clone() } else { Vec::new() };

    let cut = resolve_overlaps(inputs, &mut fixed, &mut report);
    // Every output on the overlay grid, and neighbours noded against each
    // other, so shared boundaries run through the same vertices. What the
    // repair kept is valid; what overlaps cut is checked again.
    fixed.par_iter_mut().enumerate().for_each(|(i, g)| {
        if let Some(g) = g {
            let snapped = if cut.binary_search(&i).is_ok() {
                geom::snap_to_grid(g)
            } else {
                geom::snap_valid_to_grid(g)
            };
            *g = snapped.unwrap_or_else(|| geom::make_valid(g));
        }
    });
    geom::node_layer(&mut fixed, 1.0 / geom::GRID_PER_DEGREE);
    // Most features come out of overlaps, snapping and noding unchanged:
    // their area is the one already computed.
    if measure {
        report.area_after_m2 = areas(&fixed, Some((&repaired, &before))).iter().sum();
    }
    find_gaps(inputs, &fixed, &mut report);
    (fixed, report)
}

/// The geodesic area of each feature of a layer (0 for none), computed in
/// parallel; summed in feature order by the caller, the same figure every
/// run. With `known` (an earlier state of the layer and its areas), a
/// feature equal to its earlier self keeps its earlier area.
fn areas(layer: &[Option<MultiPolygon<f64>>], known: Option<(&Repaired, &[f64])>) -> Vec<f64> {
    layer
        .par_iter()
        .enumerate()
        .map(|(i, g)| match known {
            Some((was, area)) if was[i] == *g => area[i],
            _ => g.as_ref().map_or(0.0, geom::area_m2),
        })
        .collect()
}

/// Repairs one feature alone, by the per-feature rules of the module
/// documentation (no overlap resolution, no snapping): the repaired
/// polygons, or `None` when nothing polygonal with an area is left, and
/// what was found and done. For layers whose features need not tile
/// anything (buildings).
#[must_use]
pub fn repair_feature(input: &PolygonInput) -> (Option<MultiPolygon<f64>>, Vec<Issue>) {
    let (g, issues, _, _) = repair_one(input);
    (g, issues)
}

/// One feature's repair: (geometry or None if rejected, issues, was invalid, was changed).
type Repair = (Option<MultiPolygon<f64>>, Vec<Issue>, bool, bool);

/// Repairs one feature.
fn repair_one(input: &PolygonInput) -> Repair {
    let mut issues = Vec::new();
    let issue_at = |part: Option<usize>, reason: String, action: Action| Issue {
        feature: input.number,
        code: input.code.clone(),
        part,
        reason,
        action,
    };
    let issue = |reason: String, action: Action| issue_at(None, reason, action);
    for note in &input.notes {
        issues.push(issue(note.clone(), Action::Repaired));
    }
    let mut changed = !input.notes.is_empty();
    let mut invalid = false;
    // The polygonal parts, each with its member index.
    let mut parts: Vec<(usize, Polygon<f64>)> = Vec::new();
    let mut dropped: Vec<(usize, &'static str)> = Vec::new();
    let mut next = 0usize;
    polygonal_parts(&input.geometry, &mut next, &mut parts, &mut dropped);
    let collection = matches!(input.geometry, Geometry::GeometryCollection(_));
    if parts.is_empty() {
        let what = if collection {
            "a GeometryCollection without a polygon".to_owned()
        } else {
            format!("a {}", geometry_name(&input.geometry))
        };
        issues.push(issue(
            format!("geometry is {what}, expected Polygon or MultiPolygon"),
            Action::Rejected,
        ));
        return (None, issues, true, false);
    }
    for (part, kind) in dropped {
        changed = true;
        issues.push(issue_at(
            Some(part),
            format!("a {kind} in a GeometryCollection; dropped it (only polygons are kept)"),
            Action::Repaired,
        ));
    }
    if collection {
        changed = true;
        issues.push(issue(
            format!(
                "a GeometryCollection; kept its {} polygon(s) as a MultiPolygon",
                parts.len()
            ),
            Action::Repaired,
        ));
    }
    let (part_ids, polys): (Vec<usize>, Vec<Polygon<f64>>) = parts.into_iter().unzip();
    let mut mp = MultiPolygon::new(polys);

    // Non-finite vertices.
    let mut nonfinite = 0usize;
    for_each_ring_mut(&mut mp, |ring| {
        let before = ring.0.len();
        ring.0.retain(|c| c.x.is_finite() && c.y.is_finite());
        nonfinite += before - ring.0.len();
        if ring.0.len() >= 2 && ring.0.first() != ring.0.last() {
            let first = ring.0[0];
            ring.0.push(first);
        }
    });
    if nonfinite > 0 {
        invalid = true;
        changed = true;
        issues.push(issue(
            format!(
                "{nonfinite} non-finite coordinate(s) (NaN or Infinity); removed those vertices"
            ),
            Action::Repaired,
        ));
    }

    // Range, with swapped lon/lat detection.
    let coords: Vec<Coord<f64>> = rings(&mp).flat_map(|r| r.0.iter().copied()).collect();
    if let Some(bad) = coords
        .iter()
        .find(|c| !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y))
    {
        invalid = true;
        let swapped_ok = coords
            .iter()
            .all(|c| (-90.0..=90.0).contains(&c.x) && (-180.0..=180.0).contains(&c.y));
        if swapped_ok {
            for_each_ring_mut(&mut mp, |ring| {
                for c in &mut ring.0 {
                    std::mem::swap(&mut c.x, &mut c.y);
                }
            });
            changed = true;
            issues.push(issue(
                format!(
                    "coordinates are in (lat, lon) order (e.g. {}, {}); swapped them",
                    bad.x, bad.y
                ),
                Action::Repaired,
            ));
        } else {
            issues.push(issue(
                format!(
                    "coordinate ({}, {}) is outside lon -180..180 / lat -90..90",
                    bad.x, bad.y
                ),
                Action::Rejected,
            ));
            return (None, issues, true, changed);
        }
    }

    // Degenerate parts and holes go alone: the rest of the feature stays.
    let mut kept = Vec::with_capacity(mp.0.len());
    for (p, part) in std::mem::take(&mut mp.0).into_iter().zip(&part_ids) {
        let n = distinct_len(p.exterior());
        if n < 3 {
            invalid = true;
            changed = true;
            issues.push(issue_at(
                Some(*part),
                format!(
                    "exterior ring has {n} distinct position(s), a ring needs at least 3; \
                     dropped this part"
                ),
                Action::Repaired,
            ));
            continue;
        }
        if zero_area(p.exterior()) {
            invalid = true;
            changed = true;
            issues.push(issue_at(
                Some(*part),
                "exterior ring has zero area (its positions are on one line or it only \
                 retraces itself); dropped this part"
                    .into(),
                Action::Repaired,
            ));
            continue;
        }
        let (ext, holes) = p.into_inner();
        let mut good = Vec::with_capacity(holes.len());
        for (h, hole) in holes.into_iter().enumerate() {
            let n = distinct_len(&hole);
            if n >= 3 && zero_area(&hole) {
                invalid = true;
                changed = true;
                issues.push(issue_at(
                    Some(*part),
                    format!("hole {h} has zero area; dropped the hole"),
                    Action::Repaired,
                ));
            } else if n < 3 {
                invalid = true;
                changed = true;
                issues.push(issue_at(
                    Some(*part),
                    format!(
                        "hole {h} has {n} distinct position(s), a ring needs at least 3; \
                         dropped the hole"
                    ),
                    Action::Repaired,
                ));
            } else {
                good.push(hole);
            }
        }
        kept.push(Polygon::new(ext, good));
    }
    mp = MultiPolygon::new(kept);
    if mp.0.is_empty() {
        issues.push(issue(
            "no part with at least 3 distinct positions is left".into(),
            Action::Rejected,
        ));
        return (None, issues, true, changed);
    }

    // Spikes are named separately: they are the commonest defect of
    // quantised outlines and "self-intersection" alone does not say where.
    for (pi, p) in mp.0.iter().enumerate() {
        for (ri, ring) in std::iter::once(p.exterior())
            .chain(p.interiors())
            .enumerate()
        {
            for v in spikes(ring) {
                issues.push(issue(
                    format!("spike at vertex {v} of ring {ri} of polygon {pi}"),
                    Action::Repaired,
                ));
            }
        }
    }

    // O(n log n) (geo's `Validation` is quadratic in vertices).
    let errors = crate::validity::problems(&mp, 20);
    if !errors.is_empty() {
        invalid = true;
        for e in errors {
            issues.push(issue(e, Action::Repaired));
        }
        let area_in = geom::area_m2(&geom::oriented(mp.clone()));
        // GEOS's rule (even-odd over all rings), the independent truth the
        // repair is tested against.
        mp = geom::make_valid_linework(&mp);
        changed = true;
        if mp.0.is_empty() {
            issues.push(issue(
                format!("no area left after repair (was {area_in:.1} m²)"),
                Action::Rejected,
            ));
            return (None, issues, true, changed);
        }
        if !crate::validity::is_valid(&mp) {
            let why = crate::validity::problems(&mp, 5);
            issues.push(issue(
                format!("still invalid after repair: {}", why.join("; ")),
                Action::Rejected,
            ));
            return (None, issues, true, changed);
        }
    } else {
        mp = geom::oriented(mp);
    }
    (Some(mp), issues, invalid, changed)
}

/// Gives each overlap to the feature that sorts first by (code, number);
/// returns the features it cut, in order.
fn resolve_overlaps(
    inputs: &[PolygonInput],
    fixed: &mut Repaired,
    report: &mut ValidationReport,
) -> Vec<usize> {
    let boxes: Vec<GeomWithData<Rectangle<[f64; 2]>, usize>> = fixed
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let r = g.as_ref()?.bounding_rect()?;
            Some(GeomWithData::new(
                Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                i,
            ))
        })
        .collect();
    let tree = RTree::bulk_load(boxes.clone());
    let rank = |i: usize| (inputs[i].code.clone().unwrap_or_default(), inputs[i].number);
    // Candidate pairs (i, j) with i ranked before j.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for b in &boxes {
        let i = b.data;
        let env = b.geom().envelope();
        for other in
            tree.locate_in_envelope_intersecting(&AABB::from_corners(env.lower(), env.upper()))
        {
            let j = other.data;
            if i != j && rank(i) < rank(j) {
                pairs.push((i, j));
            }
        }
    }
    let overlaps: Vec<(usize, usize, f64)> = pairs
        .par_iter()
        .filter_map(|&(i, j)| {
            let (a, b) = (fixed[i].as_ref()?, fixed[j].as_ref()?);
            let area = geom::area_m2(&geom::intersection(a, b));
            (area > MIN_OVERLAP_M2).then_some((i, j, area))
        })
        .collect();
    let mut losers: Vec<(usize, Vec<usize>)> = Vec::new();
    for &(i, j, area) in &overlaps {
        report.overlaps += 1;
        report.overlap_area_m2 += area;
        report.errors.push(Issue {
            feature: inputs[j].number,
            code: inputs[j].code.clone(),
            part: None,
            reason: format!(
                "overlaps feature {}{} by {area:.1} m²; the overlap stays with feature {}",
                inputs[i].number,
                inputs[i]
                    .code
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                inputs[i].number
            ),
            action: Action::Repaired,
        });
        match losers.iter_mut().find(|(l, _)| *l == j) {
            Some((_, winners)) => winners.push(i),
            None => losers.push((j, vec![i])),
        }
    }
    let originals = fixed.clone();
    let updates: Vec<(usize, MultiPolygon<f64>)> = losers
        .par_iter()
        .filter_map(|(j, winners)| {
            let mine = originals[*j].as_ref()?;
            let others: Vec<&MultiPolygon<f64>> = winners
                .iter()
                .filter_map(|w| originals[*w].as_ref())
                .collect();
            let cut = geom::union_all(others);
            // Overlay snapping can leave needle-thin remnants; drop those
            // below a square centimetre.
            let min = 1e-4
                / geom::metres_per_degree(mine.bounding_rect()?.center().y)
                    .0
                    .powi(2);
            Some((*j, geom::drop_slivers(geom::difference(mine, &cut), min)))
        })
        .collect();
    let mut cut: Vec<usize> = updates.iter().map(|(j, _)| *j).collect();
    cut.sort_unstable();
    for (j, g) in updates {
        if !report
            .errors
            .iter()
            .any(|e| e.feature == inputs[j].number && e.action == Action::Repaired)
        {
            report.repaired += 1;
        }
        if g.0.is_empty() {
            report.errors.push(Issue {
                feature: inputs[j].number,
                code: inputs[j].code.clone(),
                part: None,
                reason: "lies entirely inside features that rank before it".into(),
                action: Action::Rejected,
            });
            report.rejected += 1;
            fixed[j] = None;
        } else {
            fixed[j] = Some(g);
        }
    }
    cut
}

/// Reports holes in the union of the output features.
fn find_gaps(inputs: &[PolygonInput], fixed: &Repaired, report: &mut ValidationReport) {
    let union = geom::union_all(fixed.iter().flatten());
    for poly in &union.0 {
        for hole in poly.interiors() {
            let area = geom::area_m2(&geom::oriented(MultiPolygon::new(vec![Polygon::new(
                hole.clone(),
                vec![],
            )])));
            if area <= MIN_OVERLAP_M2 {
                continue;
            }
            report.gaps += 1;
            report.gap_area_m2 += area;
            let c = hole.0.first().copied().unwrap_or(Coord { x: 0.0, y: 0.0 });
            report.errors.push(Issue {
                feature: 0,
                code: None,
                part: None,
                reason: format!(
                    "gap of {area:.1} m² between features near ({:.6}, {:.6})",
                    c.x, c.y
                ),
                action: Action::Reported,
            });
        }
    }
    let _ = inputs;
}

fn rings(mp: &MultiPolygon<f64>) -> impl Iterator<Item = &LineString<f64>> {
    mp.0.iter()
        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
}

fn for_each_ring_mut(mp: &mut MultiPolygon<f64>, mut f: impl FnMut(&mut LineString<f64>)) {
    for p in &mut mp.0 {
        p.exterior_mut(&mut f);
        p.interiors_mut(|holes| holes.iter_mut().for_each(&mut f));
    }
}

/// True when a ring encloses no area at all (its positions on one line, or
/// it only retraces itself): its shoelace area is 0 *and* the even-odd
/// overlay of it alone is empty (a symmetric bow-tie has shoelace area 0
/// too, but two lobes).
fn zero_area(ring: &LineString<f64>) -> bool {
    use geo::Area;
    let p = Polygon::new(ring.clone(), vec![]);
    p.signed_area() == 0.0
        && geom::make_valid_linework(&MultiPolygon::new(vec![p]))
            .0
            .is_empty()
}

/// Distinct vertices of a closed ring (consecutive duplicates collapsed).
fn distinct_len(ring: &LineString<f64>) -> usize {
    let mut v: Vec<Coord<f64>> = ring.0.clone();
    v.dedup();
    if v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    v.len()
}

/// Indices of vertices where a ring reverses onto itself (the turn is 180°).
fn spikes(ring: &LineString<f64>) -> Vec<usize> {
    let mut v: Vec<Coord<f64>> = ring.0.clone();
    v.dedup();
    if v.len() > 1 && v.first() == v.last() {
        v.pop();
    }
    let n = v.len();
    if n < 3 {
        return Vec::new();
    }
    (0..n)
        .filter(|&i| {
            let (a, b, c) = (v[(i + n - 1) % n], v[i], v[(i + 1) % n]);
            let (u, w) = (b - a, c - b);
            let cross = u.x * w.y - u.y * w.x;
            let dot = u.x * w.x + u.y * w.y;
            let scale = (u.x.hypot(u.y)) * (w.x.hypot(w.y));
            dot < 0.0 && cross.abs() <= 1e-12 * scale
        })
        .collect()
}

/// Collects the polygons of `g` (Polygon, MultiPolygon members, Rect,
/// Triangle, and those of collections, depth first) with their member
/// index, and the kinds of the other members.
fn polygonal_parts(
    g: &Geometry<f64>,
    next: &mut usize,
    parts: &mut Vec<(usize, Polygon<f64>)>,
    dropped: &mut Vec<(usize, &'static str)>,
) {
    let mut take = |p: Polygon<f64>, next: &mut usize| {
        parts.push((*next, p));
        *next += 1;
    };
    match g {
        Geometry::Polygon(p) => take(p.clone(), next),
        Geometry::MultiPolygon(m) => m.0.iter().for_each(|p| take(p.clone(), next)),
        Geometry::Rect(r) => take(r.to_polygon(), next),
        Geometry::Triangle(t) => take(t.to_polygon(), next),
        Geometry::GeometryCollection(c) => {
            for m in c {
                polygonal_parts(m, next, parts, dropped);
            }
        }
        Geometry::MultiPoint(m) => {
            for _ in &m.0 {
                dropped.push((*next, "Point"));
                *next += 1;
            }
        }
        Geometry::MultiLineString(m) => {
            for _ in &m.0 {
                dropped.push((*next, "LineString"));
                *next += 1;
            }
        }
        other => {
            dropped.push((*next, geometry_name(other)));
            *next += 1;
        }
    }
}

fn geometry_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::GeometryCollection(_) => "GeometryCollection",
        _ => "Polygon",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Validation;
    use geo_types::polygon;

    fn input(n: usize, code: &str, g: Geometry<f64>) -> PolygonInput {
        PolygonInput {
            number: n,
            code: Some(code.into()),
            geometry: g,
            notes: vec![],
        }
    }

    fn square(x0: f64, y0: f64, s: f64) -> Geometry<f64> {
        Geometry::Polygon(
            polygon![(x: x0, y: y0), (x: x0 + s, y: y0), (x: x0 + s, y: y0 + s), (x: x0, y: y0 + s)],
        )
    }

    #[test]
    fn overlap_goes_to_the_lower_code_whatever_the_order() {
        // Two 0.01° squares near Beijing overlapping by half.
        let a = input(1, "110102", square(116.40, 39.90, 0.01));
        let b = input(2, "110101", square(116.405, 39.90, 0.01));
        let (fixed, report) = validate_polygons(&[a, b]);
        assert_eq!(report.overlaps, 1);
        let half = geom::area_m2(&fixed[1].clone().unwrap());
        let shrunk = geom::area_m2(&fixed[0].clone().unwrap());
        // 110101 (feature 2) keeps its whole square; 110102 loses half.
        assert!((shrunk / half - 0.5).abs() < 1e-3, "{shrunk} {half}");
        assert!((report.overlap_area_m2 - shrunk).abs() / shrunk < 1e-3);
        let inter = geom::intersection(fixed[0].as_ref().unwrap(), fixed[1].as_ref().unwrap());
        assert!(geom::area_m2(&inter) < 1e-3);
    }

    #[test]
    fn swapped_coordinates_are_swapped_back() {
        let g = Geometry::Polygon(
            polygon![(x: 39.9, y: 116.4), (x: 39.9, y: 116.5), (x: 40.0, y: 116.5)],
        );
        let (fixed, report) = validate_polygons(&[input(1, "110101", g)]);
        let r = fixed[0].as_ref().unwrap().bounding_rect().unwrap();
        assert!(r.min().x > 116.0 && r.max().y < 41.0);
        assert!(report.errors[0].reason.contains("swapped"));
    }

    #[test]
    fn out_of_range_is_rejected_with_the_coordinate() {
        let g = Geometry::Polygon(
            polygon![(x: 116.4, y: 95.0), (x: 200.0, y: 39.9), (x: 116.5, y: 40.0)],
        );
        let (fixed, report) = validate_polygons(&[input(1, "110101", g)]);
        assert!(fixed[0].is_none());
        assert_eq!(report.rejected, 1);
        assert!(
            report.errors[0].reason.contains("outside"),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn nan_vertex_is_removed() {
        let g = Geometry::Polygon(Polygon::new(
            LineString::from(vec![
                (0.0, 0.0),
                (1.0, 0.0),
                (f64::NAN, 0.5),
                (1.0, 1.0),
                (0.0, 1.0),
                (0.0, 0.0),
            ]),
            vec![],
        ));
        let (fixed, report) = validate_polygons(&[input(1, "110101", g)]);
        assert_eq!(report.invalid, 1);
        assert!(fixed[0].as_ref().unwrap().is_valid());
        assert!((geom::area_deg2(fixed[0].as_ref().unwrap()) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn spike_is_named() {
        let g = Geometry::Polygon(
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 1., y: 3.), (x: 1., y: 1.), (x: 0., y: 1.)],
        );
        let (fixed, report) = validate_polygons(&[input(1, "110101", g)]);
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.reason.starts_with("spike at vertex 3")),
            "{:?}",
            report.errors
        );
        assert!((geom::area_deg2(fixed[0].as_ref().unwrap()) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn points_are_rejected_not_dropped() {
        let (fixed, report) =
            validate_polygons(&[input(1, "110101", Geometry::Point((1.0, 2.0).into()))]);
        assert!(fixed[0].is_none());
        assert_eq!(report.rejected, 1);
    }

    #[test]
    fn hole_between_four_squares_is_a_gap() {
        // A ring of 8 unit squares around an empty centre square.
        let mut inputs = Vec::new();
        for (k, (x, y)) in [
            (0, 0),
            (1, 0),
            (2, 0),
            (0, 1),
            (2, 1),
            (0, 2),
            (1, 2),
            (2, 2),
        ]
        .into_iter()
        .enumerate()
        {
            inputs.push(input(
                k + 1,
                &format!("11010{k}"),
                square(
                    116.0 + f64::from(x) * 0.001,
                    39.0 + f64::from(y) * 0.001,
                    0.001,
                ),
            ));
        }
        let (_, report) = validate_polygons(&inputs);
        assert_eq!(report.gaps, 1);
        assert_eq!(report.overlaps, 0);
    }
}
