//! [`Tiler`]: the layers of a store in memory, projected once to Web
//! Mercator and indexed with an R-tree, encoded into vector tiles on demand.
//!
//! | layer | zooms | attributes |
//! |---|---|---|
//! | `districts` | 0–16 | code, name |
//! | `streets` | 8–16 | code, name |
//! | `communities` | 10–16 | code, name |
//! | `grids` | 11–16 | code, name, households, persons, deviation |
//! | `roads` | 10–16 (arterial from 10, secondary from 12, local from 13) | id, kind, name |
//! | `buildings` | 14–16 | id, kind, floors, households, grid_code |
//! | `places` | 14–16 | id, kind, name, grid_code |
//! | `objects` | 14–16 | id, kind, status, grid_code |
//! | `events` | 14–16 | id, kind, status, reported_at, grid_code |
//! | `organizations` | 14–16 | id, kind, name, grid_code |
//! | `persons_hex` | 0–13 | h3, res, persons |
//!
//! **Counts follow the privacy rule** ([`wangge_engine::privacy`],
//! `k` = [`TilerOptions::privacy`], default 10): a grid whose counts are
//! withheld (below k, or complementary to a sibling below k) has no
//! `households`, `persons` or `deviation` attribute, and a building whose
//! household count is withheld has no `households`. Tiles are public:
//! there is no exact variant.
//!
//! `deviation` is `households / target − 1` with the store's
//! `partition_target`; absent when the store has none. Feature ids are the
//! store's fids, except for grids (their 15-digit code as a number, which an
//! edit keeps while it rewrites the rows) and hexagons (the H3 index).
//! Features are written in id order. Geometry is simplified by
//! [`SIMPLIFY_TOLERANCE`] tile units below zoom 16 and kept exact (only
//! rounded) at 16, where clients overzoom.
//!
//! **Persons are personal data.** Their points are read once at open time,
//! binned into H3 cells and dropped; no person's position or attribute is
//! kept or emitted. They appear only as the grid's `persons` count and as
//! `persons_hex`: H3 hexagons (resolution 4 at zoom ≤ 5, 5 at 6–7, 6 at
//! 8–9, 7 at 10–11, 8 at 12–13) with their count; a hexagon with fewer than
//! k persons ([`MIN_HEX_PERSONS`] by default) is not emitted. Coarser hexagons count only
//! the persons of shown resolution-8 hexagons, so that subtracting shown
//! children from a parent never reveals a suppressed count; the price is
//! that persons in sparse resolution-8 cells (under 10, ≈ 0.74 km²) are in
//! no hexagon at any zoom (they remain in their grid's count): on the demo
//! city 2,853 of 2,189,309 persons (0.13 %, in 646 of 9,825 cells).
//!
//! Zoom ranges keep tiles under 500 KB: at zoom 10 the densest tile of the
//! demo city holds about 5,000 grids (585 KB), so grids start at 11.
//!
//! Bad input never panics: a missing layer is left out, a feature whose
//! geometry cannot be decoded, has the wrong type or non-finite/out-of-range
//! coordinates is skipped and counted in [`Tiler::warnings`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use geo_types::Geometry;
use h3o::{CellIndex, LatLng, Resolution};
use rayon::prelude::*;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::Serialize;
use wangge_engine::privacy::{Disclosure, Privacy};
use wangge_engine::store::{AnyStore, Selection, Value};

use crate::TilerError;
use crate::changes::{Changes, Version};
use crate::mvt::{BUFFER, EXTENT, GeometryEncoder, LayerBuilder, PropValue, TileGeometry};
use crate::tile::{TileCoord, lonlat_to_merc, merc_to_lonlat};

/// A hexagon with fewer persons than this is suppressed from `persons_hex`
/// under the default rule (the rule's k in general).
pub const MIN_HEX_PERSONS: u32 = wangge_engine::privacy::DEFAULT_K;

/// Attributes that carry counts of households or persons (or derive from
/// them) and are withheld together.
const COUNT_ATTRS: [&str; 3] = ["households", "persons", "deviation"];

/// The deepest zoom any layer has data for; clients overzoom beyond it.
pub const MAX_ZOOM: u8 = 16;

/// Simplification tolerance in tile units below a layer's maximum zoom.
pub const SIMPLIFY_TOLERANCE: f64 = 1.0;

/// Type of an attribute, as TileJSON `vector_layers` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FieldType {
    /// Text.
    String,
    /// Integer or float.
    Number,
}

/// One tile layer, as TileJSON 3.0.0 `vector_layers` describes it (serialises
/// to exactly that object: `id`, `description`, `fields`, `minzoom`,
/// `maxzoom`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerInfo {
    /// Layer name in the tiles.
    #[serde(rename = "id")]
    pub name: String,
    /// One sentence on what the layer holds.
    pub description: String,
    /// Attribute name → type.
    pub fields: BTreeMap<String, FieldType>,
    /// First zoom with features.
    pub minzoom: u8,
    /// Last zoom with features.
    pub maxzoom: u8,
}

/// Options for [`Tiler::open_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TilerOptions {
    /// Douglas–Peucker simplification below each layer's maximum zoom
    /// ([`SIMPLIFY_TOLERANCE`] tile units). Off, geometry is only clipped and
    /// rounded (what tests compare with PostGIS `ST_AsMVTGeom`).
    pub simplify: bool,
    /// The publication rule for counts (grids, buildings, hexagons).
    pub privacy: Privacy,
}

impl Default for TilerOptions {
    fn default() -> Self {
        TilerOptions {
            simplify: true,
            privacy: Privacy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Point,
    Line,
    Polygon,
}

/// How a store layer becomes a tile layer.
struct Spec {
    name: &'static str,
    description: &'static str,
    kind: Kind,
    minzoom: u8,
    maxzoom: u8,
    /// (attribute, column, type).
    fields: &'static [(&'static str, &'static str, FieldType)],
}

use FieldType::{Number as N, String as S};

const ADMIN_FIELDS: &[(&str, &str, FieldType)] = &[("code", "code", S), ("name", "name", S)];

const SPECS: &[Spec] = &[
    Spec {
        name: "districts",
        description: "Districts / counties (区/县)",
        kind: Kind::Polygon,
        minzoom: 0,
        maxzoom: MAX_ZOOM,
        fields: ADMIN_FIELDS,
    },
    Spec {
        name: "streets",
        description: "Streets / townships (街道/乡镇)",
        kind: Kind::Polygon,
        minzoom: 8,
        maxzoom: MAX_ZOOM,
        fields: ADMIN_FIELDS,
    },
    Spec {
        name: "communities",
        description: "Communities / villages (社区/村)",
        kind: Kind::Polygon,
        minzoom: 10,
        maxzoom: MAX_ZOOM,
        fields: ADMIN_FIELDS,
    },
    Spec {
        name: "grids",
        description: "Service grids (网格) with household and person counts and deviation from the target",
        kind: Kind::Polygon,
        minzoom: 11,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("code", "code", S),
            ("name", "name", S),
            ("households", "households", N),
            ("persons", "persons", N),
            // Derived from households; the column is read for it.
            ("deviation", "households", N),
        ],
    },
    Spec {
        name: "roads",
        description: "Road centre lines (arterial from z10, secondary from z12, local from z13)",
        kind: Kind::Line,
        minzoom: 10,
        maxzoom: MAX_ZOOM,
        fields: &[("id", "id", S), ("kind", "kind", S), ("name", "name", S)],
    },
    Spec {
        name: "buildings",
        description: "Building footprints",
        kind: Kind::Polygon,
        minzoom: 14,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("id", "id", S),
            ("kind", "kind", S),
            ("floors", "floors", N),
            ("households", "households", N),
            ("grid_code", "grid_code", S),
        ],
    },
    Spec {
        name: "places",
        description: "Points of interest (地)",
        kind: Kind::Point,
        minzoom: 14,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("id", "id", S),
            ("kind", "kind", S),
            ("name", "name", S),
            ("grid_code", "grid_code", S),
        ],
    },
    Spec {
        name: "objects",
        description: "City components (物, GB/T 30428)",
        kind: Kind::Point,
        minzoom: 14,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("id", "id", S),
            ("kind", "kind", S),
            ("status", "status", S),
            ("grid_code", "grid_code", S),
        ],
    },
    Spec {
        name: "events",
        description: "Reported incidents (事)",
        kind: Kind::Point,
        minzoom: 14,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("id", "id", S),
            ("kind", "kind", S),
            ("status", "status", S),
            ("reported_at", "reported_at", S),
            ("grid_code", "grid_code", S),
        ],
    },
    Spec {
        name: "organizations",
        description: "Enterprises and social organizations (组织)",
        kind: Kind::Point,
        minzoom: 14,
        maxzoom: MAX_ZOOM,
        fields: &[
            ("id", "id", S),
            ("kind", "kind", S),
            ("name", "name", S),
            ("grid_code", "grid_code", S),
        ],
    },
];

/// Name of the persons aggregate layer.
pub const PERSONS_HEX: &str = "persons_hex";
const HEX_MAXZOOM: u8 = 13;
const HEX_FIELDS: &[(&str, &str, FieldType)] = &[("h3", "", S), ("res", "", N), ("persons", "", N)];
/// Finest H3 resolution binned.
const HEX_FINEST: u8 = 8;

/// The H3 resolution shown at zoom `z` (≤ 13).
fn hex_res(z: u8) -> u8 {
    match z {
        0..=5 => 4,
        6..=7 => 5,
        8..=9 => 6,
        10..=11 => 7,
        _ => 8,
    }
}

/// Projected geometry (normalised Mercator).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    Points(Vec<[f64; 2]>),
    Lines(Vec<Vec<[f64; 2]>>),
    Polygons(Vec<Vec<Vec<[f64; 2]>>>),
}

#[derive(Debug, Clone)]
struct Item {
    id: u64,
    minzoom: u8,
    shape: Shape,
    /// Aligned with the layer's keys; `None` for NULL.
    props: Box<[Option<PropValue>]>,
    /// The community: a grid's parent, an entity's `community_code` (what
    /// `reload_grids` replaces).
    group: Option<Box<str>>,
}

type Tree = RTree<GeomWithData<Rectangle<[f64; 2]>, u32>>;

#[derive(Debug)]
struct LayerData {
    name: &'static str,
    minzoom: u8,
    maxzoom: u8,
    keys: Vec<&'static str>,
    /// The features, in id order after a load; a reload puts new ones in
    /// the slots of removed ones (an empty slot is [`Item::vacant`]), so
    /// tiles sort what they draw by id.
    items: Vec<Item>,
    /// Empty slots of `items`.
    free: Vec<u32>,
    tree: Tree,
    /// Slots by group and by id (what a reload selects by), kept with
    /// `items`.
    by_group: HashMap<Box<str>, Vec<u32>>,
    by_id: HashMap<u64, Vec<u32>>,
}

impl LayerData {
    fn new(
        name: &'static str,
        minzoom: u8,
        maxzoom: u8,
        keys: Vec<&'static str>,
        items: Vec<Item>,
    ) -> LayerData {
        let mut items = items;
        // Id order, so a reload (which reads some features again) writes
        // tiles exactly as a fresh load does.
        items.sort_by_key(|it| it.id);
        let mut l = LayerData {
            name,
            minzoom,
            maxzoom,
            keys,
            items,
            free: Vec::new(),
            tree: RTree::new(),
            by_group: HashMap::new(),
            by_id: HashMap::new(),
        };
        l.reindex();
        l
    }

    fn index_slot(&mut self, i: usize) {
        let it = &self.items[i];
        if it.is_vacant() {
            return;
        }
        self.by_id.entry(it.id).or_default().push(i as u32);
        if let Some(g) = &it.group {
            self.by_group.entry(g.clone()).or_default().push(i as u32);
        }
    }

    fn unindex_slot(&mut self, i: usize) {
        let it = &self.items[i];
        let drop_from = |m: &mut Vec<u32>| m.retain(|&j| j as usize != i);
        if let Some(v) = self.by_id.get_mut(&it.id) {
            drop_from(v);
            if v.is_empty() {
                self.by_id.remove(&it.id);
            }
        }
        if let Some(g) = &it.group
            && let Some(v) = self.by_group.get_mut(g)
        {
            drop_from(v);
            if v.is_empty() {
                self.by_group.remove(g);
            }
        }
    }

    /// The occupied slots of `filter`, ascending.
    fn slots(&self, filter: Filter<'_>) -> Vec<usize> {
        let mut out: Vec<usize> = match filter {
            Filter::All => (0..self.items.len())
                .filter(|&i| !self.items[i].is_vacant())
                .collect(),
            Filter::Groups(g) => g
                .iter()
                .filter_map(|g| self.by_group.get(*g))
                .flatten()
                .map(|&i| i as usize)
                .collect(),
            // Only admin and entity layers are read by fid, and their ids
            // are fids.
            Filter::Fids(f) => f
                .iter()
                .filter_map(|&fid| self.by_id.get(&(fid as u64)))
                .flatten()
                .map(|&i| i as usize)
                .collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Replaces the items at `slots` (ascending) with `fresh`: in place in
    /// the R-tree for a few, by a rebuild in id order when they are many.
    fn swap(&mut self, slots: &[usize], fresh: Vec<Item>) {
        if (slots.len() + fresh.len()) * 8 > self.items.len() {
            let mut items: Vec<Item> = std::mem::take(&mut self.items)
                .into_iter()
                .enumerate()
                .filter(|(i, it)| slots.binary_search(i).is_err() && !it.is_vacant())
                .map(|(_, it)| it)
                .collect();
            items.extend(fresh);
            items.sort_by_key(|it| it.id);
            self.items = items;
            self.free.clear();
            self.reindex();
            return;
        }
        for &i in slots {
            self.unindex_slot(i);
            let it = std::mem::replace(&mut self.items[i], Item::vacant());
            if let Some(e) = entry(i, &it) {
                self.tree.remove(&e);
            }
            self.free.push(i as u32);
        }
        for it in fresh {
            let i = match self.free.pop() {
                Some(i) => i as usize,
                None => {
                    self.items.push(Item::vacant());
                    self.items.len() - 1
                }
            };
            if let Some(e) = entry(i, &it) {
                self.tree.insert(e);
            }
            self.items[i] = it;
            self.index_slot(i);
        }
    }

    /// [`LayerData::swap`], recording in `changes` how the items at
    /// `slots` differ from `fresh` (drawn at `zooms`, as layer `name`).
    fn replace_slots(
        &mut self,
        name: &str,
        zooms: (u8, u8),
        slots: &[usize],
        fresh: Vec<Item>,
        changes: &mut Changes,
    ) {
        fn version(it: &Item) -> Version<'_> {
            Version {
                id: it.id,
                minzoom: it.minzoom,
                shape: &it.shape,
                props: &it.props,
            }
        }
        changes.diff(
            name,
            zooms.0,
            zooms.1,
            &slots
                .iter()
                .map(|&i| version(&self.items[i]))
                .collect::<Vec<_>>(),
            &fresh.iter().map(version).collect::<Vec<_>>(),
        );
        self.swap(slots, fresh);
    }

    fn reindex(&mut self) {
        let entries = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| entry(i, it))
            .collect();
        self.tree = RTree::bulk_load(entries);
        self.by_group.clear();
        self.by_id.clear();
        for i in 0..self.items.len() {
            self.index_slot(i);
        }
    }

    fn bbox(&self) -> Option<[f64; 4]> {
        (self.tree.size() > 0).then(|| {
            let e = self.tree.root().envelope();
            [e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1]]
        })
    }
}

/// The R-tree entry of the item in slot `i`; none for an empty shape.
fn entry(i: usize, it: &Item) -> Option<GeomWithData<Rectangle<[f64; 2]>, u32>> {
    let b = shape_bbox(&it.shape)?;
    Some(GeomWithData::new(
        Rectangle::from_corners([b[0], b[1]], [b[2], b[3]]),
        i as u32,
    ))
}

impl Item {
    /// An empty slot of [`LayerData::items`].
    fn vacant() -> Item {
        Item {
            id: u64::MAX,
            minzoom: u8::MAX,
            shape: Shape::Points(Vec::new()),
            props: Box::new([]),
            group: None,
        }
    }

    fn is_vacant(&self) -> bool {
        self.id == u64::MAX && self.minzoom == u8::MAX
    }
}

fn shape_bbox(s: &Shape) -> Option<[f64; 4]> {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    let mut add = |p: &[f64; 2]| {
        b[0] = b[0].min(p[0]);
        b[1] = b[1].min(p[1]);
        b[2] = b[2].max(p[0]);
        b[3] = b[3].max(p[1]);
    };
    match s {
        Shape::Points(v) => v.iter().for_each(&mut add),
        Shape::Lines(v) => v.iter().flatten().for_each(&mut add),
        Shape::Polygons(v) => v.iter().flatten().flatten().for_each(&mut add),
    }
    (b[0] <= b[2]).then_some(b)
}

/// What a batch of the change feed changed, for [`Tiler::apply_changes`]
/// (what followers read back from the change log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Communities (12-digit codes) whose grids' counts changed.
    pub communities: std::collections::BTreeSet<String>,
    /// Changed features by layer name (`buildings`, `places`, …): fids.
    pub fids: BTreeMap<String, Vec<i64>>,
    /// Persons added (+) or removed (−) per H3 cell of resolution 8.
    pub cells: BTreeMap<u64, i64>,
}

/// Vector tiles from a wangge store, held in memory (see the module
/// documentation for layers, zooms and the privacy rules). `Send + Sync`:
/// share it behind an `Arc` (and an `RwLock` for [`Tiler::reload_grids`]).
#[derive(Debug)]
pub struct Tiler {
    path: PathBuf,
    options: TilerOptions,
    layers: Vec<LayerData>,
    /// `persons_hex` per H3 resolution 4..=8.
    hex: HexLevels,
    /// The counts behind it.
    hex_counts: HexCounts,
    infos: Vec<LayerInfo>,
    bounds: [f64; 4],
    target: Option<f64>,
    /// Whose counts are withheld, for the grids and buildings read.
    disclosure: Disclosure,
    warnings: Vec<String>,
}

/// Per-layer warnings kept (the rest are only counted).
const MAX_WARNINGS: usize = 20;

#[derive(Debug, Default)]
struct Warnings {
    shown: Vec<String>,
    skipped: u64,
}

impl Warnings {
    fn add(&mut self, msg: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.shown.len() < MAX_WARNINGS {
            self.shown.push(msg());
        }
    }
    fn finish(mut self, layer: &str) -> Vec<String> {
        if self.skipped as usize > self.shown.len() {
            self.shown.push(format!(
                "{layer}: {} features skipped in all ({} listed)",
                self.skipped,
                self.shown.len()
            ));
        }
        self.shown
    }
}

impl Tiler {
    /// Opens a store and loads every tile layer into memory, simplifying
    /// by default.
    pub fn open(store: &Path) -> Result<Tiler, TilerError> {
        Tiler::open_with(store, TilerOptions::default())
    }

    /// [`Tiler::open`] with options. Layers load in parallel, each on its own
    /// connection.
    pub fn open_with(store: &Path, options: TilerOptions) -> Result<Tiler, TilerError> {
        let s = AnyStore::open(store)?;
        let target = read_target(&s)?;
        let disclosure = Disclosure::load(&s, options.privacy)?;
        drop(s);
        let k = options.privacy.k();
        enum Loaded {
            Layer(Option<LayerData>, Vec<String>),
            Hex(HexLevels, HexCounts, Vec<String>),
        }
        let loaded: Vec<Loaded> = (0..=SPECS.len())
            .into_par_iter()
            .map(|i| -> Result<Loaded, TilerError> {
                let s = AnyStore::open(store)?;
                if i == SPECS.len() {
                    let (hex, counts, w) = load_hex(&s, k)?;
                    return Ok(Loaded::Hex(hex, counts, w));
                }
                let spec = &SPECS[i];
                if !s.has_layer(spec.name)? {
                    return Ok(Loaded::Layer(None, Vec::new()));
                }
                let mut w = Warnings::default();
                let items = read_items(&s, spec, Filter::All, target, &disclosure, &mut w)?;
                let keys = spec.fields.iter().map(|f| f.0).collect();
                let data = LayerData::new(spec.name, spec.minzoom, spec.maxzoom, keys, items);
                Ok(Loaded::Layer(Some(data), w.finish(spec.name)))
            })
            .collect::<Result<_, _>>()?;
        let mut t = Tiler {
            path: store.to_owned(),
            options,
            layers: Vec::new(),
            hex: Vec::new(),
            hex_counts: HexCounts::default(),
            infos: Vec::new(),
            bounds: [-180.0, -85.051_128_779_806_59, 180.0, 85.051_128_779_806_59],
            target,
            disclosure,
            warnings: Vec::new(),
        };
        for l in loaded {
            match l {
                Loaded::Layer(data, w) => {
                    t.layers.extend(data);
                    t.warnings.extend(w);
                }
                Loaded::Hex(hex, counts, w) => {
                    t.hex = hex;
                    t.hex_counts = counts;
                    t.warnings.extend(w);
                }
            }
        }
        t.refresh_infos();
        Ok(t)
    }

    fn refresh_infos(&mut self) {
        let mut infos = Vec::new();
        for l in &self.layers {
            let spec = SPECS.iter().find(|s| s.name == l.name).expect("a spec");
            infos.push(info(
                spec.name,
                spec.description,
                spec.fields,
                l.minzoom,
                l.maxzoom,
            ));
        }
        if !self.hex.is_empty() {
            let k = self.options.privacy.k();
            infos.push(info(
                PERSONS_HEX,
                &format!("Persons per H3 hexagon (hexagons under {k} persons suppressed)"),
                HEX_FIELDS,
                0,
                HEX_MAXZOOM,
            ));
        }
        self.infos = infos;
        let mut b: Option<[f64; 4]> = None;
        for l in self.layers.iter().chain(self.hex.iter().map(|h| &h.1)) {
            if let Some(x) = l.bbox() {
                b = Some(match b {
                    None => x,
                    Some(a) => [
                        a[0].min(x[0]),
                        a[1].min(x[1]),
                        a[2].max(x[2]),
                        a[3].max(x[3]),
                    ],
                });
            }
        }
        if let Some([x0, y0, x1, y1]) = b {
            let (w, n) = merc_to_lonlat([x0, y0]);
            let (e, s) = merc_to_lonlat([x1, y1]);
            self.bounds = [w, s, e, n];
        }
    }

    /// The options it was opened with.
    #[must_use]
    pub fn options(&self) -> TilerOptions {
        self.options
    }

    /// The store this tiler was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tile layers present in the store, in drawing order (for TileJSON
    /// `vector_layers`).
    #[must_use]
    pub fn layers(&self) -> &[LayerInfo] {
        &self.infos
    }

    /// `[west, south, east, north]` of all data in degrees (the world when
    /// the store is empty).
    #[must_use]
    pub fn bounds(&self) -> [f64; 4] {
        self.bounds
    }

    /// `[west, south, east, north]` of one layer's features in degrees;
    /// `None` when the layer is absent or empty.
    #[must_use]
    pub fn layer_bounds(&self, layer: &str) -> Option<[f64; 4]> {
        let b = self
            .layers
            .iter()
            .chain(self.hex.iter().map(|h| &h.1))
            .filter(|l| l.name == layer)
            .filter_map(LayerData::bbox)
            .fold(None, |a, b| union_box(a, Some(b)))?;
        let (w, n) = merc_to_lonlat([b[0], b[1]]);
        let (e, s) = merc_to_lonlat([b[2], b[3]]);
        Some([w, s, e, n])
    }

    /// The lowest zoom with data: 0.
    #[must_use]
    pub fn minzoom(&self) -> u8 {
        self.infos.iter().map(|l| l.minzoom).min().unwrap_or(0)
    }

    /// The highest zoom with data: [`MAX_ZOOM`] (16).
    #[must_use]
    pub fn maxzoom(&self) -> u8 {
        self.infos
            .iter()
            .map(|l| l.maxzoom)
            .max()
            .unwrap_or(MAX_ZOOM)
    }

    /// True when no layer holds a feature (an empty or foreign store).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.layers
            .iter()
            .chain(self.hex.iter().map(|h| &h.1))
            .all(|l| l.tree.size() == 0)
    }

    /// What loading skipped (one line per bad feature, capped per layer, with
    /// a total per layer); empty for a clean store.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Encodes tile `z/x/y` as uncompressed MVT bytes; an empty `Vec` when no
    /// layer has a feature there (including zooms above [`Tiler::maxzoom`]).
    /// Fails only for an invalid address.
    pub fn tile(&self, z: u8, x: u32, y: u32) -> Result<Vec<u8>, TilerError> {
        let t = TileCoord::new(z, x, y)?;
        Ok(self.encode(t))
    }

    /// [`Tiler::tile`] for a validated address.
    #[must_use]
    pub fn encode(&self, t: TileCoord) -> Vec<u8> {
        self.encode_only(t, None)
    }

    /// Encodes tile `z/x/y` with only the layer named `layer` (as listed by
    /// [`Tiler::layers`]): exactly that layer's message of [`Tiler::tile`],
    /// so the same bytes; empty when it has no feature there or no such
    /// layer exists. `persons_hex` keeps its suppression rule.
    pub fn tile_layer(&self, z: u8, x: u32, y: u32, layer: &str) -> Result<Vec<u8>, TilerError> {
        let t = TileCoord::new(z, x, y)?;
        Ok(self.encode_only(t, Some(layer)))
    }

    /// [`Tiler::encode`] restricted to one layer when `layer` is given.
    #[must_use]
    pub fn encode_only(&self, t: TileCoord, layer: Option<&str>) -> Vec<u8> {
        let wanted = |name: &str| layer.is_none_or(|l| l == name);
        let mut out = Vec::new();
        let z = t.z();
        let [x0, y0, x1, y1] = t.merc_bounds();
        // One unit more than the buffer: a point half a unit beyond it rounds
        // onto its edge and is kept (the encoder decides, after rounding).
        let pad = (x1 - x0) * f64::from(BUFFER + 1) / f64::from(EXTENT);
        let env = AABB::from_corners([x0 - pad, y0 - pad], [x1 + pad, y1 + pad]);
        for l in &self.layers {
            if (l.minzoom..=l.maxzoom).contains(&z) && wanted(l.name) {
                self.encode_layer(l, t, &env, &mut out);
            }
        }
        if z <= HEX_MAXZOOM && wanted(PERSONS_HEX) {
            let res = hex_res(z);
            if let Some((_, l)) = self.hex.iter().find(|h| h.0 == res) {
                self.encode_layer(l, t, &env, &mut out);
            }
        }
        out
    }

    fn encode_layer(&self, l: &LayerData, t: TileCoord, env: &AABB<[f64; 2]>, out: &mut Vec<u8>) {
        let z = t.z();
        let mut hits: Vec<u32> = l
            .tree
            .locate_in_envelope_intersecting(env)
            .map(|g| g.data)
            .collect();
        if hits.is_empty() {
            return;
        }
        // Id order, as a fresh load holds them.
        hits.sort_unstable_by_key(|&i| l.items[i as usize].id);
        let enc = GeometryEncoder {
            extent: EXTENT,
            buffer: BUFFER,
            tolerance: if self.options.simplify && z < l.maxzoom {
                SIMPLIFY_TOLERANCE
            } else {
                0.0
            },
        };
        let mut b = LayerBuilder::new(l.name, EXTENT);
        let tr = |p: &[f64; 2]| t.to_tile(*p, EXTENT);
        for i in hits {
            let it = &l.items[i as usize];
            if z < it.minzoom {
                continue;
            }
            let g: Option<TileGeometry> = match &it.shape {
                Shape::Points(v) => enc.points(&v.iter().map(tr).collect::<Vec<_>>()),
                Shape::Lines(v) => enc.lines(
                    &v.iter()
                        .map(|l| l.iter().map(tr).collect())
                        .collect::<Vec<_>>(),
                ),
                Shape::Polygons(v) => enc.polygons(
                    &v.iter()
                        .map(|p| p.iter().map(|r| r.iter().map(tr).collect()).collect())
                        .collect::<Vec<_>>(),
                ),
            };
            let Some(g) = g else { continue };
            let props = l
                .keys
                .iter()
                .zip(it.props.iter())
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)));
            b.add(Some(it.id), props, &g);
        }
        b.write_to(out);
    }

    /// `[west, south, east, north]` of the grids held for `community`
    /// (12-digit code), `None` when it has none. Call it before and after
    /// [`Tiler::reload_grids`]: the tiles to invalidate at zoom `z` are
    /// [`crate::tile::tiles_touching`] the union of both boxes.
    #[must_use]
    pub fn grids_bounds(&self, community: &str) -> Option<[f64; 4]> {
        let l = self.layers.iter().find(|l| l.name == "grids")?;
        let mut b: Option<[f64; 4]> = None;
        for it in l
            .items
            .iter()
            .filter(|it| it.group.as_deref() == Some(community))
        {
            if let Some(x) = shape_bbox(&it.shape) {
                b = Some(match b {
                    None => x,
                    Some(a) => [
                        a[0].min(x[0]),
                        a[1].min(x[1]),
                        a[2].max(x[2]),
                        a[3].max(x[3]),
                    ],
                });
            }
        }
        let [x0, y0, x1, y1] = b?;
        let (w, n) = merc_to_lonlat([x0, y0]);
        let (e, s) = merc_to_lonlat([x1, y1]);
        Some([w, s, e, n])
    }

    /// After an edit of one community: reads again, from `store`, the
    /// community's grids (12-digit code) and its buildings, places, objects,
    /// events and organizations (their `grid_code` may have changed), and
    /// every district, street, community and other community's grid near
    /// it (the edit may have noded their outlines); the partition target is
    /// re-read too, and when it changed every grid is (their `deviation`
    /// changed). Other features are kept as they are. Afterwards the tiles
    /// equal those of a fresh [`Tiler::open`] of the store.
    ///
    /// Returns what changed: the features whose geometry, attributes or
    /// presence differ, with their old and new geometries and the zooms of
    /// their layers (see [`Changes`]).
    pub fn reload_grids(
        &mut self,
        store: &AnyStore,
        community: &str,
    ) -> Result<Changes, TilerError> {
        let target = read_target(store)?;
        let target_changed = target != self.target;
        self.target = target;
        // The privacy decisions below the community; an edit inside one
        // community changes no decision outside it (see
        // `wangge_engine::privacy`), so what is re-read below is all that
        // can differ.
        self.disclosure.update(store, community)?;
        let mut changes = Changes::default();
        let mine = [community];
        // The area of the community before and after: its grids' box.
        let mut region = self.group_box("grids", community);
        for spec in SPECS
            .iter()
            .filter(|s| s.fields.iter().any(|f| f.1 == "grid_code"))
        {
            self.replace(store, spec, Filter::Groups(&mine), &mut changes)?;
        }
        if store.has_layer("grids")? {
            if !self.layers.iter().any(|l| l.name == "grids") {
                let spec = spec_of("grids");
                // Keep the drawing order of SPECS: grids go before every
                // layer that follows them there.
                let rank = |name: &str| SPECS.iter().position(|s| s.name == name);
                let at = self
                    .layers
                    .iter()
                    .position(|l| rank(l.name) > rank("grids"))
                    .unwrap_or(self.layers.len());
                let keys = spec.fields.iter().map(|f| f.0).collect();
                let empty = LayerData::new(spec.name, spec.minzoom, spec.maxzoom, keys, Vec::new());
                self.layers.insert(at, empty);
            }
            let filter = if target_changed {
                Filter::All
            } else {
                Filter::Groups(&mine)
            };
            self.replace(store, spec_of("grids"), filter, &mut changes)?;
        }
        region = union_box(region, self.group_box("grids", community));
        if let Some([x0, y0, x1, y1]) = region {
            // Noding moves no vertex by more than about 2 cm; a margin of
            // about 4 m (1e-7 of the world) finds every feature it can touch.
            let m = 1e-7;
            let env = AABB::from_corners([x0 - m, y0 - m], [x1 + m, y1 + m]);
            for name in ["districts", "streets", "communities"] {
                let Some(l) = self.layers.iter().find(|l| l.name == name) else {
                    continue;
                };
                let mut fids: Vec<i64> = l
                    .tree
                    .locate_in_envelope_intersecting(&env)
                    .map(|g| l.items[g.data as usize].id as i64)
                    .collect();
                fids.sort_unstable();
                self.replace(store, spec_of(name), Filter::Fids(&fids), &mut changes)?;
            }
            if !target_changed && let Some(l) = self.layers.iter().find(|l| l.name == "grids") {
                let mut near: Vec<&str> = l
                    .tree
                    .locate_in_envelope_intersecting(&env)
                    .filter_map(|g| l.items[g.data as usize].group.as_deref())
                    .filter(|g| *g != community)
                    .collect();
                near.sort_unstable();
                near.dedup();
                let near: Vec<String> = near.into_iter().map(str::to_owned).collect();
                let near: Vec<&str> = near.iter().map(String::as_str).collect();
                self.replace(store, spec_of("grids"), Filter::Groups(&near), &mut changes)?;
            }
        }
        self.refresh_infos();
        Ok(changes)
    }

    /// After a batch of the change feed (entities added, moved, updated or
    /// removed; no grid outline changes): re-decides the privacy rule where
    /// counts changed ([`Disclosure::update_counts`]), re-reads the grids of
    /// those communities, the changed entities by fid (and a community's
    /// buildings when which of them are withheld changed), and adds the
    /// persons' cell deltas to `persons_hex`. Afterwards the tiles equal
    /// those of a fresh [`Tiler::open`]. Returns what changed.
    pub fn apply_changes(
        &mut self,
        store: &AnyStore,
        touched: &Touched,
    ) -> Result<Changes, TilerError> {
        let mut changes = Changes::default();
        let communities: Vec<&str> = touched.communities.iter().map(String::as_str).collect();
        let before: HashMap<String, Vec<i64>> = communities
            .iter()
            .map(|c| {
                let b = self
                    .disclosure
                    .withheld_buildings_of(c)
                    .unwrap_or(&[])
                    .to_vec();
                ((*c).to_owned(), b)
            })
            .collect();
        let redecided = if communities.is_empty() {
            Vec::new()
        } else {
            let buildings = touched.fids.contains_key("buildings");
            self.disclosure
                .update_counts(store, &communities, buildings)?
        };
        let redecided_refs: Vec<&str> = redecided.iter().map(String::as_str).collect();
        if !redecided_refs.is_empty() {
            self.replace(
                store,
                spec_of("grids"),
                Filter::Groups(&redecided_refs),
                &mut changes,
            )?;
        }
        // Buildings whose withheld status may have flipped.
        let flipped: Vec<&str> = redecided_refs
            .iter()
            .copied()
            .filter(|c| {
                let now = self.disclosure.withheld_buildings_of(c).unwrap_or(&[]);
                before.get(*c).is_none_or(|b| b.as_slice() != now)
            })
            .collect();
        if !flipped.is_empty() {
            self.replace(
                store,
                spec_of("buildings"),
                Filter::Groups(&flipped),
                &mut changes,
            )?;
        }
        for (layer, fids) in &touched.fids {
            if !SPECS.iter().any(|s| s.name == layer.as_str()) {
                continue;
            }
            let mut fids = fids.clone();
            fids.sort_unstable();
            fids.dedup();
            self.replace(store, spec_of(layer), Filter::Fids(&fids), &mut changes)?;
        }
        self.apply_cells(&touched.cells, &mut changes);
        self.refresh_infos();
        Ok(changes)
    }

    /// Adds persons per finest cell to `persons_hex` (see [`load_hex`]).
    fn apply_cells(&mut self, cells: &BTreeMap<u64, i64>, changes: &mut Changes) {
        if self.hex.is_empty() || cells.is_empty() {
            return;
        }
        let k = self.options.privacy.k();
        // Per resolution: the cells whose shown sum changed.
        let mut dirty: Vec<Vec<CellIndex>> = vec![Vec::new(); self.hex.len()];
        for (&cell, &d) in cells {
            let Ok(c) = CellIndex::try_from(cell) else {
                continue;
            };
            let old = self.hex_counts.finest.get(&c).copied().unwrap_or(0);
            let new = (i64::from(old) + d).clamp(0, i64::from(u32::MAX)) as u32;
            if new == 0 {
                self.hex_counts.finest.remove(&c);
            } else {
                self.hex_counts.finest.insert(c, new);
            }
            let shown = |n: u32| if n >= k { i64::from(n) } else { 0 };
            let delta = shown(new) - shown(old);
            if delta == 0 {
                continue;
            }
            for (i, (res, _)) in self.hex.iter().enumerate() {
                let Ok(r) = Resolution::try_from(*res) else {
                    continue;
                };
                let Some(p) = c.parent(r) else { continue };
                let sum = self.hex_counts.sums[i].entry(p).or_default();
                *sum = (i64::from(*sum) + delta).max(0) as u32;
                if *sum == 0 {
                    self.hex_counts.sums[i].remove(&p);
                }
                dirty[i].push(p);
            }
        }
        for (i, mut cells) in dirty.into_iter().enumerate() {
            if cells.is_empty() {
                continue;
            }
            cells.sort_unstable();
            cells.dedup();
            let res = self.hex[i].0;
            let l = &mut self.hex[i].1;
            let slot: HashMap<u64, usize> = l
                .items
                .iter()
                .enumerate()
                .filter(|(_, it)| !it.is_vacant())
                .map(|(j, it)| (it.id, j))
                .collect();
            let mut slots = Vec::new();
            let mut fresh = Vec::new();
            for c in cells {
                if let Some(&j) = slot.get(&u64::from(c)) {
                    slots.push(j);
                }
                let n = self.hex_counts.sums[i].get(&c).copied().unwrap_or(0);
                if n >= k {
                    fresh.push(hex_item(c, res, n));
                }
            }
            slots.sort_unstable();
            let (z0, z1) = hex_zooms(res);
            l.replace_slots(PERSONS_HEX, (z0, z1), &slots, fresh, changes);
        }
    }

    /// Replaces the held features of `spec`'s layer that `filter` selects
    /// with the store's, recording the difference.
    fn replace(
        &mut self,
        store: &AnyStore,
        spec: &Spec,
        filter: Filter<'_>,
        changes: &mut Changes,
    ) -> Result<(), TilerError> {
        let Some(pos) = self.layers.iter().position(|l| l.name == spec.name) else {
            return Ok(());
        };
        let mut w = Warnings::default();
        let fresh = read_items(store, spec, filter, self.target, &self.disclosure, &mut w)?;
        self.warnings.extend(w.finish(spec.name));
        let l = &mut self.layers[pos];
        let slots = l.slots(filter);
        let zooms = (l.minzoom, l.maxzoom);
        l.replace_slots(l.name, zooms, &slots, fresh, changes);
        Ok(())
    }

    /// Normalised Mercator box of the features of `layer` in `group`.
    fn group_box(&self, layer: &str, group: &str) -> Option<[f64; 4]> {
        let l = self.layers.iter().find(|l| l.name == layer)?;
        l.items
            .iter()
            .filter(|it| it.group.as_deref() == Some(group))
            .filter_map(|it| shape_bbox(&it.shape))
            .fold(None, |a, b| union_box(a, Some(b)))
    }
}

fn union_box(a: Option<[f64; 4]>, b: Option<[f64; 4]>) -> Option<[f64; 4]> {
    match (a, b) {
        (Some(a), Some(b)) => Some([
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]),
        (a, None) => a,
        (None, b) => b,
    }
}

fn spec_of(name: &str) -> &'static Spec {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .expect("a known layer")
}

fn info(
    name: &str,
    description: &str,
    fields: &[(&str, &str, FieldType)],
    minzoom: u8,
    maxzoom: u8,
) -> LayerInfo {
    LayerInfo {
        name: name.to_owned(),
        description: description.to_owned(),
        fields: fields.iter().map(|f| (f.0.to_owned(), f.2)).collect(),
        minzoom,
        maxzoom,
    }
}

fn read_target(store: &AnyStore) -> Result<Option<f64>, TilerError> {
    Ok(store
        .meta("partition_target")?
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0))
}

/// Which features of a layer [`read_items`] reads.
#[derive(Debug, Clone, Copy)]
enum Filter<'a> {
    /// Every feature.
    All,
    /// Those of these communities (a grid's parent, an entity's community);
    /// none in a layer without such a column.
    Groups(&'a [&'a str]),
    /// Those with these fids.
    Fids(&'a [i64]),
}

/// Reads a layer's features, skipping and counting bad ones.
fn read_items(
    store: &AnyStore,
    spec: &Spec,
    filter: Filter<'_>,
    target: Option<f64>,
    disclosure: &Disclosure,
    w: &mut Warnings,
) -> Result<Vec<Item>, TilerError> {
    let schema = store.schema(spec.name)?;
    let has = |c: &str| schema.columns.iter().any(|x| x.name == c);
    let is_grids = spec.name == "grids";
    let extra_kind = spec.name == "roads" && has("kind");
    // The community an item belongs to, so an edit can re-read just it:
    // a grid's parent, an entity's community.
    let group_col = if is_grids && has("parent_code") {
        Some("parent_code")
    } else if !is_grids && has("community_code") && has("grid_code") {
        Some("community_code")
    } else {
        None
    };
    // The fields, then the road kind and the group (NULL when absent).
    let mut columns: Vec<&str> = spec.fields.iter().map(|f| f.1).collect();
    columns.push(if extra_kind { "kind" } else { "" });
    columns.push(group_col.unwrap_or(""));
    let selection = match filter {
        Filter::All => Selection::All,
        Filter::Groups(groups) => match group_col {
            Some(c) => Selection::In {
                column: c,
                values: groups,
            },
            None => return Ok(Vec::new()),
        },
        Filter::Fids(fids) => Selection::Fids(fids),
    };
    let nf = spec.fields.len();
    let mut items = Vec::new();
    store.read_features(spec.name, &columns, selection, |fid, geometry, row| {
        let geometry = match geometry {
            Some(Ok(g)) => g,
            Some(Err(e)) => {
                w.add(|| format!("{} fid {fid}: {e}; skipped", spec.name));
                return Ok::<(), TilerError>(());
            }
            None => {
                w.add(|| format!("{} fid {fid}: no geometry blob; skipped", spec.name));
                return Ok(());
            }
        };
        let shape = match project(&geometry, spec.kind) {
            Ok(s) => s,
            Err(reason) => {
                w.add(|| format!("{} fid {fid}: {reason}; skipped", spec.name));
                return Ok(());
            }
        };
        let mut props = Vec::with_capacity(nf);
        for (v, (attr, _, ty)) in row.iter().zip(spec.fields) {
            let p = match (v, ty) {
                (Value::Null, _) => None,
                (Value::Text(t), FieldType::String) => Some(PropValue::String(t.clone())),
                (Value::Integer(i), FieldType::String) => Some(PropValue::String(i.to_string())),
                (Value::Integer(i), FieldType::Number) => Some(PropValue::Int(*i)),
                (Value::Real(r), FieldType::Number) if r.is_finite() => Some(PropValue::Double(*r)),
                _ => None,
            };
            let p = if is_grids && *attr == "deviation" {
                match (p, target) {
                    (Some(PropValue::Int(h)), Some(t)) => {
                        Some(PropValue::Double(h as f64 / t - 1.0))
                    }
                    (Some(PropValue::Double(h)), Some(t)) => Some(PropValue::Double(h / t - 1.0)),
                    _ => None,
                }
            } else {
                p
            };
            props.push(p);
        }
        withhold_counts(spec, fid, &mut props, disclosure);
        let minzoom = match row[nf].as_str() {
            Some("secondary") => 12,
            Some("local") => 13,
            _ => spec.minzoom,
        };
        // A grid's id is its code, which survives an edit rewriting its row.
        let code_id = match props.first() {
            Some(Some(PropValue::String(c))) if is_grids => c.parse::<u64>().ok(),
            _ => None,
        };
        items.push(Item {
            id: code_id.unwrap_or(fid as u64),
            minzoom,
            shape,
            props: props.into_boxed_slice(),
            group: row[nf + 1].as_str().map(Box::from),
        });
        Ok(())
    })?;
    Ok(items)
}

/// Clears the count attributes of a grid or building whose counts the
/// privacy rule withholds. Each count is also checked on its own against
/// k, so a unit outside the hierarchy (a grid without a code) is covered.
fn withhold_counts(
    spec: &Spec,
    fid: i64,
    props: &mut [Option<PropValue>],
    disclosure: &Disclosure,
) {
    let value = |name: &str| {
        spec.fields
            .iter()
            .position(|f| f.0 == name)
            .and_then(|i| props[i].as_ref())
            .map(|v| match v {
                PropValue::Int(i) => *i,
                PropValue::Double(d) => d.floor() as i64,
                _ => 0,
            })
    };
    let p = disclosure.privacy();
    let withheld = match spec.name {
        "grids" => {
            let code = match props.first() {
                Some(Some(PropValue::String(c))) => Some(c.as_str()),
                _ => None,
            };
            // A NULL count is absent, not a count below k.
            let hh = value("households").unwrap_or(i64::from(p.k()));
            !disclosure.unit_published(code, hh, value("persons"))
        }
        "buildings" => {
            !disclosure.building_published(fid)
                || value("households").is_some_and(|n| !p.publishable(n))
        }
        _ => false,
    };
    if withheld {
        for (i, f) in spec.fields.iter().enumerate() {
            if COUNT_ATTRS.contains(&f.0) {
                props[i] = None;
            }
        }
    }
}

fn merc(c: geo_types::Coord<f64>) -> Result<[f64; 2], String> {
    if !(c.x.is_finite() && c.y.is_finite()) {
        return Err("non-finite coordinate".into());
    }
    if !(-180.0..=180.0).contains(&c.x) || !(-90.0..=90.0).contains(&c.y) {
        return Err(format!("coordinate ({}, {}) is not lon/lat", c.x, c.y));
    }
    Ok(lonlat_to_merc(c.x, c.y))
}

fn ring(ls: &geo_types::LineString<f64>) -> Result<Vec<[f64; 2]>, String> {
    ls.0.iter().map(|c| merc(*c)).collect()
}

/// Projects a geometry of the layer's kind; collections contribute their
/// parts of that kind.
fn project(g: &Geometry<f64>, kind: Kind) -> Result<Shape, String> {
    let mut pts = Vec::new();
    let mut lines = Vec::new();
    let mut polys = Vec::new();
    fn walk(
        g: &Geometry<f64>,
        pts: &mut Vec<[f64; 2]>,
        lines: &mut Vec<Vec<[f64; 2]>>,
        polys: &mut Vec<Vec<Vec<[f64; 2]>>>,
    ) -> Result<(), String> {
        let poly = |p: &geo_types::Polygon<f64>| -> Result<Vec<Vec<[f64; 2]>>, String> {
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(ring)
                .collect()
        };
        match g {
            Geometry::Point(p) => pts.push(merc(p.0)?),
            Geometry::MultiPoint(m) => {
                for p in m {
                    pts.push(merc(p.0)?);
                }
            }
            Geometry::Line(l) => lines.push(vec![merc(l.start)?, merc(l.end)?]),
            Geometry::LineString(l) => lines.push(ring(l)?),
            Geometry::MultiLineString(m) => {
                for l in m {
                    lines.push(ring(l)?);
                }
            }
            Geometry::Polygon(p) => polys.push(poly(p)?),
            Geometry::MultiPolygon(m) => {
                for p in m {
                    polys.push(poly(p)?);
                }
            }
            Geometry::Rect(r) => polys.push(poly(&r.to_polygon())?),
            Geometry::Triangle(t) => polys.push(poly(&t.to_polygon())?),
            Geometry::GeometryCollection(c) => {
                for g in c {
                    walk(g, pts, lines, polys)?;
                }
            }
        }
        Ok(())
    }
    walk(g, &mut pts, &mut lines, &mut polys)?;
    let shape = match kind {
        Kind::Point => Shape::Points(pts),
        Kind::Line => {
            lines.retain(|l| l.len() >= 2);
            Shape::Lines(lines)
        }
        Kind::Polygon => {
            polys.retain(|p| p.first().is_some_and(|r| r.len() >= 3));
            Shape::Polygons(polys)
        }
    };
    let empty = match &shape {
        Shape::Points(v) => v.is_empty(),
        Shape::Lines(v) => v.is_empty(),
        Shape::Polygons(v) => v.is_empty(),
    };
    if empty {
        let kind = match kind {
            Kind::Point => "point",
            Kind::Line => "line",
            Kind::Polygon => "polygon",
        };
        return Err(format!("no {kind} geometry (empty or of another type)"));
    }
    Ok(shape)
}

/// Bins every person's point into H3 cells and keeps only the counts; the
/// positions are dropped as soon as they are binned.
/// Counts the persons with `a <= rowid <= b` per H3 cell of the finest
/// resolution; only the counts leave this function.
fn bin_persons(
    store: &AnyStore,
    a: i64,
    b: i64,
) -> Result<(HashMap<CellIndex, u32>, Warnings), TilerError> {
    let finest = Resolution::try_from(HEX_FINEST).expect("valid resolution");
    let mut counts: HashMap<CellIndex, u32> = HashMap::new();
    let mut w = Warnings::default();
    let mut bad = 0u64;
    store.read_features(
        "persons",
        &[],
        Selection::FidRange(a, b),
        |_, geometry, _| {
            let cell = match geometry {
                Some(Ok(Geometry::Point(p))) => LatLng::new(p.y(), p.x())
                    .map(|ll| ll.to_cell(finest))
                    .map_err(|e| e.to_string()),
                Some(Ok(_)) => Err("not a point".to_owned()),
                Some(Err(e)) => Err(e),
                None => Err("no geometry".to_owned()),
            };
            // A person's row id or position never goes into a message: only
            // the kind of defect, counted.
            match cell {
                Ok(c) => *counts.entry(c).or_default() += 1,
                Err(_) => bad += 1,
            }
            Ok::<(), TilerError>(())
        },
    )?;
    if bad > 0 {
        w.skipped += bad;
        w.shown.push(format!(
            "persons: {bad} feature(s) without a valid point; not counted"
        ));
    }
    Ok((counts, w))
}

/// `persons_hex` per H3 resolution.
type HexLevels = Vec<(u8, LayerData)>;

/// The persons counts behind `persons_hex`, kept so the change feed can
/// update it: every finest cell's count (those below k too), and per
/// resolution the sum of the shown finest cells under each cell.
#[derive(Debug, Default)]
struct HexCounts {
    finest: HashMap<CellIndex, u32>,
    /// Index `res - 4`.
    sums: Vec<HashMap<CellIndex, u32>>,
}

/// The `persons_hex` feature of cell `c` (resolution `res`) with `n` persons.
fn hex_item(c: CellIndex, res: u8, n: u32) -> Item {
    let ring: Vec<[f64; 2]> = c
        .boundary()
        .iter()
        .map(|ll| lonlat_to_merc(ll.lng(), ll.lat()))
        .collect();
    Item {
        id: u64::from(c),
        minzoom: 0,
        shape: Shape::Polygons(vec![vec![ring]]),
        props: vec![
            Some(PropValue::String(c.to_string())),
            Some(PropValue::Int(res.into())),
            Some(PropValue::Int(n.into())),
        ]
        .into_boxed_slice(),
        group: None,
    }
}

/// The zooms at which hexagons of resolution `res` are drawn.
fn hex_zooms(res: u8) -> (u8, u8) {
    let zs: Vec<u8> = (0..=HEX_MAXZOOM).filter(|&z| hex_res(z) == res).collect();
    (zs[0], zs[zs.len() - 1])
}

fn load_hex(store: &AnyStore, k: u32) -> Result<(HexLevels, HexCounts, Vec<String>), TilerError> {
    let mut w = Warnings::default();
    if !store.has_layer("persons")? {
        return Ok((Vec::new(), HexCounts::default(), Vec::new()));
    }
    // One pass in rowid order. (Splitting it over rowid ranges on several
    // connections was measured slower on 2 cores: the other layers load
    // meanwhile, and this pass is mostly SQLite page reads.)
    let (counts, pw) = bin_persons(store, i64::MIN, i64::MAX)?;
    w.skipped += pw.skipped;
    w.shown.extend(pw.shown);
    // Only finest cells of at least k persons count, at every
    // resolution: a coarse cell is the sum of its shown finest cells, so a
    // parent minus its shown children is always 0 and no suppressed count
    // can be recovered by differencing levels.
    let mut hex = HexCounts {
        finest: counts,
        sums: Vec::new(),
    };
    let mut levels = Vec::new();
    for res in 4..=HEX_FINEST {
        let r = Resolution::try_from(res).expect("valid resolution");
        let mut at: HashMap<CellIndex, u32> = HashMap::new();
        for (c, n) in hex.finest.iter().filter(|(_, n)| **n >= k) {
            if let Some(p) = c.parent(r) {
                *at.entry(p).or_default() += n;
            }
        }
        let mut cells: Vec<_> = at
            .iter()
            .filter(|(_, n)| **n >= k)
            .map(|(c, n)| (*c, *n))
            .collect();
        cells.sort_unstable();
        let items = cells
            .into_iter()
            .map(|(c, n)| hex_item(c, res, n))
            .collect();
        hex.sums.push(at);
        let keys = HEX_FIELDS.iter().map(|f| f.0).collect();
        levels.push((
            res,
            LayerData::new(PERSONS_HEX, 0, HEX_MAXZOOM, keys, items),
        ));
    }
    Ok((levels, hex, w.finish("persons")))
}

// A server shares one Tiler across threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Tiler>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_resolution_per_zoom() {
        let r: Vec<u8> = (0..=13).map(hex_res).collect();
        assert_eq!(r, [4, 4, 4, 4, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8]);
    }

    #[test]
    fn projection_rejects_bad_coordinates() {
        let p = Geometry::Point(geo_types::Point::new(f64::NAN, 1.0));
        assert!(project(&p, Kind::Point).is_err());
        let p = Geometry::Point(geo_types::Point::new(40.0, 116.0));
        assert!(
            project(&p, Kind::Point).is_err(),
            "swapped lat/lon is out of range"
        );
        let l = Geometry::LineString(geo_types::LineString::from(vec![
            (116.0, 40.0),
            (116.1, 40.0),
        ]));
        assert!(project(&l, Kind::Point).is_err(), "wrong type");
        assert!(matches!(project(&l, Kind::Line), Ok(Shape::Lines(v)) if v.len() == 1));
    }
}
