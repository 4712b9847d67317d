//! The grid-management data model: the layers of a project and the typed
//! entities of the "five elements" (人地物事组织: persons, places, objects,
//! events, organizations).
//!
//! Every layer has a fixed schema ([`Layer::schema`]) so that the store,
//! import, export and the synthetic city agree on column names and types.

use std::fmt;
use std::str::FromStr;

use geo_types::{Geometry, Point, Polygon};

use crate::codes::{CommunityCode, IdCardNumber};
use crate::{Column, ColumnType, GeomType, LayerSchema, Value};

/// The layers of a wangge project, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Districts / counties (区/县), 6-digit codes.
    Districts,
    /// Streets / townships (街道/乡镇), 9-digit codes.
    Streets,
    /// Communities / villages (社区/村), 12-digit codes.
    Communities,
    /// Service grids (网格), 15-digit codes.
    Grids,
    /// Road centre lines (arterial, secondary, local).
    Roads,
    /// Building footprints with floors and households.
    Buildings,
    /// Points of interest (schools, clinics, markets, …).
    Places,
    /// City components (GB/T 30428): hydrants, manholes, cameras, …
    Objects,
    /// Incidents reported at a point and time.
    Events,
    /// Enterprises, social and community organizations.
    Organizations,
    /// Resident records. Personal data: never served as points.
    Persons,
}

impl Layer {
    /// Every layer, in store order.
    pub const ALL: [Layer; 11] = [
        Layer::Districts,
        Layer::Streets,
        Layer::Communities,
        Layer::Grids,
        Layer::Roads,
        Layer::Buildings,
        Layer::Places,
        Layer::Objects,
        Layer::Events,
        Layer::Organizations,
        Layer::Persons,
    ];

    /// The administrative levels (polygon layers with codes), coarse to fine.
    pub const ADMIN: [Layer; 4] = [
        Layer::Districts,
        Layer::Streets,
        Layer::Communities,
        Layer::Grids,
    ];

    /// The point entity layers: what `assign --layers` re-indexes.
    pub const POINT_ENTITIES: [Layer; 5] = [
        Layer::Persons,
        Layer::Places,
        Layer::Objects,
        Layer::Events,
        Layer::Organizations,
    ];

    /// The table name in the store.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Districts => "districts",
            Layer::Streets => "streets",
            Layer::Communities => "communities",
            Layer::Grids => "grids",
            Layer::Roads => "roads",
            Layer::Buildings => "buildings",
            Layer::Places => "places",
            Layer::Objects => "objects",
            Layer::Events => "events",
            Layer::Organizations => "organizations",
            Layer::Persons => "persons",
        }
    }

    /// True for the four administrative/grid polygon layers.
    #[must_use]
    pub const fn is_admin(self) -> bool {
        matches!(
            self,
            Layer::Districts | Layer::Streets | Layer::Communities | Layer::Grids
        )
    }

    /// The number of digits of this level's codes (admin layers only).
    #[must_use]
    pub const fn code_len(self) -> Option<usize> {
        match self {
            Layer::Districts => Some(6),
            Layer::Streets => Some(9),
            Layer::Communities => Some(12),
            Layer::Grids => Some(15),
            _ => None,
        }
    }

    /// The fixed schema of this layer.
    #[must_use]
    pub fn schema(self) -> LayerSchema {
        use ColumnType::{Integer as I, Real as R, Text as T};
        let (geometry, cols): (GeomType, &[(&str, ColumnType)]) = match self {
            Layer::Districts | Layer::Streets | Layer::Communities => (
                GeomType::MultiPolygon,
                &[
                    ("code", T),
                    ("name", T),
                    ("parent_code", T),
                    ("households", I),
                    ("persons", I),
                    ("area_m2", R),
                ],
            ),
            Layer::Grids => (
                GeomType::MultiPolygon,
                &[
                    ("code", T),
                    ("name", T),
                    ("parent_code", T),
                    ("households", I),
                    ("persons", I),
                    ("buildings", I),
                    ("area_m2", R),
                ],
            ),
            Layer::Roads => (GeomType::LineString, &[("id", T), ("kind", T), ("name", T)]),
            Layer::Buildings => (
                GeomType::Polygon,
                &[
                    ("id", T),
                    ("kind", T),
                    ("floors", I),
                    ("households", I),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
            Layer::Places => (
                GeomType::Point,
                &[
                    ("id", T),
                    ("kind", T),
                    ("name", T),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
            Layer::Objects => (
                GeomType::Point,
                &[
                    ("id", T),
                    ("kind", T),
                    ("status", T),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
            Layer::Events => (
                GeomType::Point,
                &[
                    ("id", T),
                    ("kind", T),
                    ("status", T),
                    ("reported_at", T),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
            Layer::Organizations => (
                GeomType::Point,
                &[
                    ("id", T),
                    ("kind", T),
                    ("name", T),
                    ("employees", I),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
            Layer::Persons => (
                GeomType::Point,
                &[
                    ("id", T),
                    ("kind", T),
                    ("id_card", T),
                    ("household_id", T),
                    ("building_id", T),
                    ("age_band", T),
                    ("registered", I),
                    ("community_code", T),
                    ("grid_code", T),
                ],
            ),
        };
        LayerSchema {
            name: self.name().to_owned(),
            geometry,
            columns: cols
                .iter()
                .map(|(name, ty)| Column {
                    name: (*name).to_owned(),
                    ty: *ty,
                })
                .collect(),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layer name that is not one of [`Layer::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown layer {0:?}; expected one of: districts, streets, communities, grids, roads, buildings, places, objects, events, organizations, persons"
)]
pub struct UnknownLayer(pub String);

impl FromStr for Layer {
    type Err = UnknownLayer;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layer::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLayer(s.to_owned()))
    }
}

/// A polygon layer feature of one administrative level.
#[derive(Debug, Clone)]
pub struct AdminUnit {
    /// The unit's code as text (its length gives the level).
    pub code: String,
    /// The unit's name.
    pub name: String,
    /// The parent unit's code (empty for districts).
    pub parent_code: String,
    /// Households inside (0 when unknown).
    pub households: i64,
    /// Persons inside (0 when unknown).
    pub persons: i64,
    /// Geodesic area in square metres.
    pub area_m2: f64,
    /// The outline.
    pub geometry: geo_types::MultiPolygon<f64>,
}

impl AdminUnit {
    /// The attribute values in the order of the district/street/community schema.
    #[must_use]
    pub fn values(&self) -> Vec<Value> {
        vec![
            Value::from(self.code.as_str()),
            Value::from(self.name.as_str()),
            Value::from(self.parent_code.as_str()),
            Value::Integer(self.households),
            Value::Integer(self.persons),
            Value::Real(self.area_m2),
        ]
    }
}

/// Kinds of road, from the synthetic network or imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoadKind {
    /// Between streets/townships.
    Arterial,
    /// Between communities.
    Secondary,
    /// Between blocks inside a community.
    Local,
}

impl RoadKind {
    /// The lower-case name stored in the `kind` column.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RoadKind::Arterial => "arterial",
            RoadKind::Secondary => "secondary",
            RoadKind::Local => "local",
        }
    }
}

/// A building footprint (a place with a polygon).
#[derive(Debug, Clone)]
pub struct Building {
    /// Stable id, e.g. `B110101001002-0007`.
    pub id: String,
    /// `residential`, `mixed`, `office`, `public`, …
    pub kind: &'static str,
    /// Storeys above ground.
    pub floors: u16,
    /// Households living in it.
    pub households: u32,
    /// The community containing it.
    pub community: CommunityCode,
    /// The footprint.
    pub footprint: Polygon<f64>,
}

impl Building {
    /// The attribute values in schema order (grid code empty until assigned).
    #[must_use]
    pub fn values(&self) -> Vec<Value> {
        vec![
            Value::from(self.id.as_str()),
            Value::from(self.kind),
            Value::Integer(i64::from(self.floors)),
            Value::Integer(i64::from(self.households)),
            Value::Text(self.community.to_string()),
            Value::from(""),
        ]
    }
}

/// Age bands used in the resident registry.
pub const AGE_BANDS: [&str; 7] = ["0-14", "15-24", "25-34", "35-44", "45-59", "60-74", "75+"];

/// The age band for an age in years.
#[must_use]
pub fn age_band(age: u32) -> &'static str {
    match age {
        0..=14 => AGE_BANDS[0],
        15..=24 => AGE_BANDS[1],
        25..=34 => AGE_BANDS[2],
        35..=44 => AGE_BANDS[3],
        45..=59 => AGE_BANDS[4],
        60..=74 => AGE_BANDS[5],
        _ => AGE_BANDS[6],
    }
}

/// A resident record (人). Personal data.
#[derive(Debug, Clone)]
pub struct Person {
    /// Stable registry id.
    pub id: String,
    /// Validated 18-character resident identity number.
    pub id_card: IdCardNumber,
    /// The household the person belongs to.
    pub household_id: String,
    /// The building the household lives in.
    pub building_id: String,
    /// One of [`AGE_BANDS`].
    pub age_band: &'static str,
    /// Registered (户籍) resident, or floating (流动) when false.
    pub registered: bool,
    /// The community of residence.
    pub community: CommunityCode,
    /// Where the person lives (a point in the building).
    pub location: Point<f64>,
}

impl Person {
    /// The attribute values in schema order (grid code empty until assigned).
    #[must_use]
    pub fn values(&self) -> Vec<Value> {
        vec![
            Value::from(self.id.as_str()),
            Value::from(if self.registered {
                "registered"
            } else {
                "floating"
            }),
            Value::Text(self.id_card.to_string()),
            Value::from(self.household_id.as_str()),
            Value::from(self.building_id.as_str()),
            Value::from(self.age_band),
            Value::Integer(i64::from(self.registered)),
            Value::Text(self.community.to_string()),
            Value::from(""),
        ]
    }
}

/// A point entity of the place (POI), object, event or organization layers.
#[derive(Debug, Clone)]
pub struct PointEntity {
    /// Which layer it belongs to.
    pub layer: Layer,
    /// Stable id.
    pub id: String,
    /// Category, e.g. `school`, `hydrant`, `noise-complaint`, `enterprise`.
    pub kind: &'static str,
    /// Layer-specific text attribute: name (places, organizations) or status
    /// (objects, events).
    pub label: String,
    /// Events: ISO-8601 report time. Organizations: employees as text.
    pub extra: String,
    /// The community containing it.
    pub community: CommunityCode,
    /// Where it is.
    pub location: Point<f64>,
}

impl PointEntity {
    /// The attribute values in the schema order of [`PointEntity::layer`].
    #[must_use]
    pub fn values(&self) -> Vec<Value> {
        let mut v = vec![
            Value::from(self.id.as_str()),
            Value::from(self.kind),
            Value::from(self.label.as_str()),
        ];
        match self.layer {
            Layer::Events => v.push(Value::from(self.extra.as_str())),
            Layer::Organizations => v.push(Value::Integer(self.extra.parse().unwrap_or(0))),
            _ => {}
        }
        v.push(Value::Text(self.community.to_string()));
        v.push(Value::from(""));
        v
    }

    /// The geometry as a [`Geometry`].
    #[must_use]
    pub fn geometry(&self) -> Geometry<f64> {
        Geometry::Point(self.location)
    }
}

/// Kinds of point of interest (地).
pub const PLACE_KINDS: [&str; 8] = [
    "school",
    "kindergarten",
    "clinic",
    "market",
    "park",
    "pharmacy",
    "community-centre",
    "bus-stop",
];
/// Kinds of city component (物), GB/T 30428 style.
pub const OBJECT_KINDS: [&str; 7] = [
    "hydrant",
    "manhole",
    "camera",
    "street-lamp",
    "dustbin",
    "bench",
    "electric-box",
];
/// Kinds of reported incident (事).
pub const EVENT_KINDS: [&str; 7] = [
    "illegal-parking",
    "garbage",
    "noise",
    "road-damage",
    "water-leak",
    "neighbour-dispute",
    "fire-hazard",
];
/// Status of an event.
pub const EVENT_STATUS: [&str; 3] = ["reported", "dispatched", "resolved"];
/// Kinds of organization (组织).
pub const ORGANIZATION_KINDS: [&str; 4] = [
    "enterprise",
    "social-organization",
    "party-organization",
    "shop",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_round_trip() {
        for l in Layer::ALL {
            assert_eq!(l.name().parse::<Layer>().unwrap(), l);
            assert_eq!(l.schema().name, l.name());
        }
        assert!("nope".parse::<Layer>().is_err());
    }

    #[test]
    fn entity_layers_end_with_grid_code() {
        for l in [
            Layer::Buildings,
            Layer::Places,
            Layer::Objects,
            Layer::Events,
            Layer::Organizations,
            Layer::Persons,
        ] {
            let s = l.schema();
            assert_eq!(s.columns.last().unwrap().name, "grid_code", "{l}");
            assert_eq!(s.columns[0].name, "id", "{l}");
        }
    }

    #[test]
    fn age_bands_cover_all_ages() {
        assert_eq!(age_band(0), "0-14");
        assert_eq!(age_band(14), "0-14");
        assert_eq!(age_band(15), "15-24");
        assert_eq!(age_band(60), "60-74");
        assert_eq!(age_band(120), "75+");
    }
}
