//! Streaming GeoJSON: FeatureCollection and newline-delimited (GeoJSONSeq),
//! read feature by feature with errors that name the file, the feature or line
//! and the reason; and a streaming FeatureCollection writer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use geo_types::{
    Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon,
};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{FeatureError, Location, ReadError};

/// One feature as read from a GeoJSON file.
#[derive(Debug, Clone)]
pub struct GeoFeature {
    /// 1-based position of the feature in the file.
    pub number: usize,
    /// The feature's `id` member, if any, as text.
    pub id: Option<String>,
    /// The `properties` member (empty when null or missing).
    pub properties: Map<String, Value>,
    /// The geometry exactly as written, except that unclosed rings are closed
    /// (see `notes`) and non-numeric coordinates (`null`, `NaN`, `Infinity`)
    /// are kept as NaN for validation to report.
    pub geometry: Geometry<f64>,
    /// Repairs made while parsing, e.g. "ring 0 of polygon 0 was not closed".
    pub notes: Vec<String>,
}

impl GeoFeature {
    /// A text property, or a number property printed as text.
    #[must_use]
    pub fn property_text(&self, key: &str) -> Option<String> {
        match self.properties.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Reads every feature of a GeoJSON FeatureCollection, a single Feature, a
/// bare geometry, or newline-delimited features, calling `f` with each
/// feature or the reason it could not be read. Streams: memory stays bounded
/// by the largest single feature.
///
/// Returns the number of features seen (good and bad). A file that is not
/// JSON, empty, or not GeoJSON at all is a [`ReadError`] naming the line.
pub fn read_geojson(
    path: &Path,
    f: impl FnMut(Result<GeoFeature, FeatureError>),
) -> Result<usize, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    read_geojson_from(BufReader::with_capacity(1 << 16, file), path, f)
}

/// [`read_geojson`] over any buffered reader; `path` names it in messages.
pub fn read_geojson_from(
    mut reader: impl BufRead,
    path: &Path,
    mut f: impl FnMut(Result<GeoFeature, FeatureError>),
) -> Result<usize, ReadError> {
    // Peek at the first non-blank bytes to tell a document from a sequence.
    let first = first_significant_line(&mut reader).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let Some(first) = first else {
        return Err(ReadError::Empty {
            path: path.to_owned(),
        });
    };
    let trimmed = first.trim_start_matches('\u{feff}').trim();
    let is_sequence = trimmed.starts_with('\u{1e}')
        || (trimmed.starts_with('{')
            && trimmed.ends_with('}')
            && serde_json::from_str::<Value>(&sanitize_line(trimmed))
                .ok()
                .and_then(|v| {
                    v.get("type")
                        .and_then(Value::as_str)
                        .map(|t| t == "Feature")
                })
                .unwrap_or(false));
    if is_sequence {
        read_sequence(path, first, reader, &mut f)
    } else {
        read_document(path, first, reader, &mut f)
    }
}

/// Reads lines until one is not blank; returns it (with its newline) or None.
fn first_significant_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim_start_matches('\u{feff}').trim().is_empty() {
            return Ok(Some(line));
        }
    }
}

fn read_sequence(
    path: &Path,
    first: String,
    mut reader: impl BufRead,
    f: &mut impl FnMut(Result<GeoFeature, FeatureError>),
) -> Result<usize, ReadError> {
    let mut number = 0usize;
    let mut line_no = 0u64;
    let mut line = first;
    // `first` was read after possibly skipping blank lines; count them as we
    // cannot know how many there were: report positions as feature numbers
    // and the line of the feature within the non-blank lines.
    loop {
        line_no += 1;
        let text = line
            .trim_start_matches('\u{feff}')
            .trim()
            .trim_start_matches('\u{1e}');
        if !text.is_empty() {
            number += 1;
            let result = serde_json::from_str::<Value>(&sanitize_line(text))
                .map_err(|e| FeatureError {
                    path: path.to_owned(),
                    location: Location::Line(line_no),
                    reason: format!("invalid JSON: {e}"),
                })
                .and_then(|v| feature_from_value(path, number, Location::Line(line_no), v));
            f(result);
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(number),
            Ok(_) => {}
            Err(source) => {
                return Err(ReadError::Bad {
                    path: path.to_owned(),
                    location: Location::Line(line_no + 1),
                    reason: format!("cannot read: {source}"),
                });
            }
        }
    }
}

fn read_document(
    path: &Path,
    first: String,
    reader: impl BufRead,
    f: &mut impl FnMut(Result<GeoFeature, FeatureError>),
) -> Result<usize, ReadError> {
    let chained = io::Cursor::new(first.into_bytes()).chain(reader);
    // serde_json reads a byte at a time: a buffer in front of the rewrite.
    let sanitized = BufReader::with_capacity(1 << 16, NonFiniteTokens::new(chained));
    let mut de = serde_json::Deserializer::from_reader(sanitized);
    let mut count = 0usize;
    let seed = DocumentSeed {
        path,
        f,
        count: &mut count,
    };
    seed.deserialize(&mut de)
        .map_err(|e| json_error(path, &e))?;
    de.end().map_err(|e| json_error(path, &e))?;
    Ok(count)
}

fn json_error(path: &Path, e: &serde_json::Error) -> ReadError {
    let reason = e.to_string();
    // serde_json appends " at line L column C"; keep the message short.
    let reason = reason
        .split(" at line ")
        .next()
        .unwrap_or(&reason)
        .to_owned();
    ReadError::Bad {
        path: path.to_owned(),
        location: Location::LineColumn(e.line() as u64, e.column() as u64),
        reason: format!("invalid GeoJSON: {reason}"),
    }
}

/// Deserializes the top-level object, streaming the `features` array.
struct DocumentSeed<'a, F> {
    path: &'a Path,
    f: &'a mut F,
    count: &'a mut usize,
}

impl<'de, F: FnMut(Result<GeoFeature, FeatureError>)> DeserializeSeed<'de> for DocumentSeed<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Result<GeoFeature, FeatureError>)> Visitor<'de> for DocumentSeed<'_, F> {
    type Value = ();
    fn expecting(&self, fm: &mut std::fmt::Formatter) -> std::fmt::Result {
        fm.write_str("a GeoJSON object (FeatureCollection, Feature or geometry)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Members other than `features` are small; keep them to handle a
        // single Feature or a bare geometry.
        let mut rest = Map::new();
        let mut saw_features = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "features" {
                saw_features = true;
                map.next_value_seed(FeaturesSeed {
                    path: self.path,
                    f: &mut *self.f,
                    count: &mut *self.count,
                })?;
            } else if key == "type"
                || key == "geometry"
                || key == "coordinates"
                || key == "geometries"
                || key == "properties"
                || key == "id"
            {
                rest.insert(key, map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let kind = rest
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match kind.as_str() {
            "FeatureCollection" if saw_features => Ok(()),
            "FeatureCollection" => Err(serde::de::Error::custom(
                "FeatureCollection without a \"features\" array",
            )),
            "Feature" => {
                *self.count += 1;
                (self.f)(feature_from_value(
                    self.path,
                    1,
                    Location::Feature(1),
                    Value::Object(rest),
                ));
                Ok(())
            }
            "" => Err(serde::de::Error::custom("no \"type\" member: not GeoJSON")),
            _ => {
                // A bare geometry: one feature without properties.
                *self.count += 1;
                let mut feat = Map::new();
                feat.insert("type".into(), Value::String("Feature".into()));
                feat.insert("geometry".into(), Value::Object(rest));
                (self.f)(feature_from_value(
                    self.path,
                    1,
                    Location::Feature(1),
                    Value::Object(feat),
                ));
                Ok(())
            }
        }
    }
}

struct FeaturesSeed<'a, F> {
    path: &'a Path,
    f: &'a mut F,
    count: &'a mut usize,
}

impl<'de, F: FnMut(Result<GeoFeature, FeatureError>)> DeserializeSeed<'de> for FeaturesSeed<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Result<GeoFeature, FeatureError>)> Visitor<'de> for FeaturesSeed<'_, F> {
    type Value = ();
    fn expecting(&self, fm: &mut std::fmt::Formatter) -> std::fmt::Result {
        fm.write_str("an array of features")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            *self.count += 1;
            let n = *self.count;
            (self.f)(feature_from_value(self.path, n, Location::Feature(n), v));
        }
        Ok(())
    }
}

/// Converts one parsed JSON value into a feature, or says why it is not one.
fn feature_from_value(
    path: &Path,
    number: usize,
    location: Location,
    v: Value,
) -> Result<GeoFeature, FeatureError> {
    let err = |reason: String| FeatureError {
        path: path.to_owned(),
        location: location.clone(),
        reason,
    };
    let Value::Object(mut obj) = v else {
        return Err(err("not a JSON object".into()));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("Feature") => {}
        Some(other) => return Err(err(format!("type is {other:?}, expected \"Feature\""))),
        None => return Err(err("no \"type\" member".into())),
    }
    let id = match obj.remove("id") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let properties = match obj.remove("properties") {
        Some(Value::Object(m)) => m,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(err("\"properties\" is not an object".into())),
    };
    let geometry = match obj.remove("geometry") {
        Some(g @ Value::Object(_)) => g,
        Some(Value::Null) | None => return Err(err("feature has no geometry".into())),
        Some(_) => return Err(err("\"geometry\" is not an object".into())),
    };
    let mut notes = Vec::new();
    let geometry = parse_geometry(&geometry, &mut notes).map_err(err)?;
    Ok(GeoFeature {
        number,
        id,
        properties,
        geometry,
        notes,
    })
}

/// Parses a GeoJSON geometry object. Errors are reasons without location.
pub fn parse_geometry(v: &Value, notes: &mut Vec<String>) -> Result<Geometry<f64>, String> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("geometry has no \"type\"")?;
    if kind == "GeometryCollection" {
        let geoms = v
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or("GeometryCollection without \"geometries\"")?;
        let parts = geoms
            .iter()
            .map(|g| parse_geometry(g, notes))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Geometry::GeometryCollection(parts.into()));
    }
    let c = v
        .get("coordinates")
        .ok_or_else(|| format!("{kind} without \"coordinates\""))?;
    Ok(match kind {
        "Point" => Geometry::Point(Point(position(c)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(c, "MultiPoint")?
                .iter()
                .map(|p| position(p).map(Point))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(c)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(c, "MultiLineString")?
                .iter()
                .map(line)
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(parse_polygon(c, 0, notes)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(c, "MultiPolygon")?
                .iter()
                .enumerate()
                .map(|(i, p)| parse_polygon(p, i, notes))
                .collect::<Result<_, _>>()?,
        )),
        other => return Err(format!("unknown geometry type {other:?}")),
    })
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("{what} coordinates are not an array"))
}

/// A position; `null` (what NaN/Infinity become) is kept as NaN.
fn position(v: &Value) -> Result<Coord<f64>, String> {
    let a = v.as_array().ok_or("a position is not an array")?;
    if a.len() < 2 {
        return Err(format!(
            "a position has {} value(s), expected at least 2",
            a.len()
        ));
    }
    let num = |x: &Value| match x {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("coordinate {n} is not a number")),
        Value::Null => Ok(f64::NAN),
        other => Err(format!("coordinate {other} is not a number")),
    };
    Ok(Coord {
        x: num(&a[0])?,
        y: num(&a[1])?,
    })
}

fn line(v: &Value) -> Result<LineString<f64>, String> {
    let pts = array(v, "LineString")?
        .iter()
        .map(position)
        .collect::<Result<Vec<_>, _>>()?;
    if pts.len() < 2 {
        return Err(format!(
            "a LineString has {} position(s), needs at least 2",
            pts.len()
        ));
    }
    Ok(LineString(pts))
}

fn parse_polygon(v: &Value, index: usize, notes: &mut Vec<String>) -> Result<Polygon<f64>, String> {
    let rings = array(v, "Polygon")?;
    if rings.is_empty() {
        // An empty part: repair drops it alone.
        notes.push(format!("polygon {index} has no rings"));
        return Ok(Polygon::new(LineString(Vec::new()), Vec::new()));
    }
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let mut pts = array(ring, "ring")?
            .iter()
            .map(position)
            .collect::<Result<Vec<_>, _>>()?;
        let closed = pts.len() >= 2 && same(pts[0], pts[pts.len() - 1]);
        if !closed && !pts.is_empty() {
            notes.push(format!(
                "ring {r} of polygon {index} was not closed; closed it"
            ));
            pts.push(pts[0]);
        }
        // A ring of fewer than 3 distinct positions is kept as read: repair
        // (`validate`) drops that part or hole alone and reports it, instead
        // of the whole feature being lost here.
        out.push(LineString(pts));
    }
    let exterior = out.remove(0);
    Ok(Polygon::new(exterior, out))
}

fn same(a: Coord<f64>, b: Coord<f64>) -> bool {
    // NaN never equals itself; a ring starting and ending at NaN is "closed"
    // as far as structure goes and validation reports the NaN.
    (a.x == b.x || (a.x.is_nan() && b.x.is_nan())) && (a.y == b.y || (a.y.is_nan() && b.y.is_nan()))
}

/// Replaces the non-standard tokens `NaN`, `Infinity` and `-Infinity` that
/// Python's `json` module writes with `null` outside strings, for one line.
fn sanitize_line(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut r = NonFiniteTokens::new(s.as_bytes());
    // Reading from a byte slice cannot fail.
    let _ = r.read_to_end(&mut out);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A reader that rewrites `NaN`, `Infinity`, `-Infinity` outside JSON strings
/// to `null`, so such coordinates reach validation instead of failing the
/// whole file. It reads its input in blocks and copies runs of ordinary
/// bytes, so it costs a few percent of the JSON parse behind it.
struct NonFiniteTokens<R> {
    inner: R,
    /// Input read, not yet passed on: `raw[pos..]`.
    raw: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Output that did not fit the caller's buffer (part of a `null`).
    pending: Vec<u8>,
    in_string: bool,
    escaped: bool,
}

/// The longest token looked for: `-Infinity`.
const LOOKAHEAD: usize = 9;

impl<R: Read> NonFiniteTokens<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            raw: Vec::with_capacity(1 << 16),
            pos: 0,
            eof: false,
            pending: Vec::new(),
            in_string: false,
            escaped: false,
        }
    }

    /// Makes at least `LOOKAHEAD` bytes available unless the input ends.
    fn refill(&mut self) -> io::Result<()> {
        while !self.eof && self.raw.len() - self.pos < LOOKAHEAD {
            self.raw.drain(..self.pos);
            self.pos = 0;
            let old = self.raw.len();
            self.raw.resize(old + (1 << 16), 0);
            let n = loop {
                match self.inner.read(&mut self.raw[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.raw.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.raw.truncate(old + n);
            self.eof = n == 0;
        }
        Ok(())
    }
}

impl<R: Read> Read for NonFiniteTokens<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        if !self.pending.is_empty() {
            let k = self.pending.len().min(buf.len());
            buf[..k].copy_from_slice(&self.pending[..k]);
            self.pending.drain(..k);
            return Ok(k);
        }
        while n < buf.len() {
            self.refill()?;
            // Look no further than what fits the caller's buffer (plus a
            // token's length): each byte is scanned once, whatever the
            // read sizes.
            let room = buf.len() - n;
            let avail = &self.raw[self.pos..];
            let rest = &avail[..avail.len().min(room + LOOKAHEAD)];
            let Some(&b) = rest.first() else { break };
            if self.in_string {
                // Copy up to the next quote or backslash in one go.
                let run = memchr::memchr2(b'"', b'\\', &rest[..rest.len().min(room)])
                    .unwrap_or(rest.len().min(room));
                let k = if self.escaped || run == 0 { 1 } else { run };
                let k = k.min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&rest[..k]);
                for &c in &rest[..k] {
                    if self.escaped {
                        self.escaped = false;
                    } else if c == b'\\' {
                        self.escaped = true;
                    } else if c == b'"' {
                        self.in_string = false;
                    }
                }
                self.pos += k;
                n += k;
                continue;
            }
            let token: Option<usize> = match b {
                b'N' if rest.starts_with(b"NaN") => Some(3),
                b'I' if rest.starts_with(b"Infinity") => Some(8),
                b'-' if rest.starts_with(b"-Infinity") => Some(9),
                _ => None,
            };
            if let Some(len) = token {
                self.pos += len;
                let room = (buf.len() - n).min(4);
                buf[n..n + room].copy_from_slice(&b"null"[..room]);
                self.pending.extend_from_slice(&b"null"[room..]);
                n += room;
                break;
            }
            // Copy a run of bytes that need no look (not a quote, nor a
            // token's first letter).
            let scan = &rest[..rest.len().min(room)];
            let run = scan
                .iter()
                .position(|&c| matches!(c, b'"' | b'N' | b'I' | b'-'))
                .unwrap_or(scan.len());
            if run == 0 {
                if b == b'"' {
                    self.in_string = true;
                }
                buf[n] = b;
                self.pos += 1;
                n += 1;
                continue;
            }
            let k = run.min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&rest[..k]);
            self.pos += k;
            n += k;
        }
        Ok(n)
    }
}

/// Writes a GeoJSON FeatureCollection feature by feature.
pub struct GeoJsonWriter<W: Write> {
    out: W,
    first: bool,
    path: PathBuf,
    count: u64,
}

impl GeoJsonWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the collection header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        Self::new(BufWriter::with_capacity(1 << 16, file), path)
    }
}

impl<W: Write> GeoJsonWriter<W> {
    /// Wraps a writer; `path` is only used in messages.
    pub fn new(mut out: W, path: &Path) -> io::Result<Self> {
        out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        Ok(Self {
            out,
            first: true,
            path: path.to_owned(),
            count: 0,
        })
    }

    /// The file being written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one feature.
    pub fn write(
        &mut self,
        geometry: &Geometry<f64>,
        properties: &Map<String, Value>,
    ) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        let feature = serde_json::json!({
            "type": "Feature",
            "properties": properties,
            "geometry": geometry_to_json(geometry),
        });
        serde_json::to_writer(&mut self.out, &feature)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the footer and flushes; returns the number of features.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.count)
    }
}

/// A geometry as a GeoJSON geometry object.
#[must_use]
pub fn geometry_to_json(g: &Geometry<f64>) -> Value {
    fn pos(c: &Coord<f64>) -> Value {
        Value::Array(vec![num(c.x), num(c.y)])
    }
    fn num(x: f64) -> Value {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
    fn ls(l: &LineString<f64>) -> Value {
        Value::Array(l.0.iter().map(pos).collect())
    }
    fn poly(p: &Polygon<f64>) -> Value {
        Value::Array(
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(ls)
                .collect(),
        )
    }
    let (kind, coords) = match g {
        Geometry::Point(p) => ("Point", pos(&p.0)),
        Geometry::MultiPoint(m) => (
            "MultiPoint",
            Value::Array(m.0.iter().map(|p| pos(&p.0)).collect()),
        ),
        Geometry::LineString(l) => ("LineString", ls(l)),
        Geometry::Line(l) => ("LineString", Value::Array(vec![pos(&l.start), pos(&l.end)])),
        Geometry::MultiLineString(m) => (
            "MultiLineString",
            Value::Array(m.0.iter().map(ls).collect()),
        ),
        Geometry::Polygon(p) => ("Polygon", poly(p)),
        Geometry::MultiPolygon(m) => ("MultiPolygon", Value::Array(m.0.iter().map(poly).collect())),
        Geometry::Rect(r) => ("Polygon", poly(&r.to_polygon())),
        Geometry::Triangle(t) => ("Polygon", poly(&t.to_polygon())),
        Geometry::GeometryCollection(c) => {
            return serde_json::json!({
                "type": "GeometryCollection",
                "geometries": c.0.iter().map(geometry_to_json).collect::<Vec<_>>(),
            });
        }
    };
    serde_json::json!({ "type": kind, "coordinates": coords })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::polygon;

    fn read_str(
        text: &str,
    ) -> (
        Result<usize, ReadError>,
        Vec<Result<GeoFeature, FeatureError>>,
    ) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let mut got = Vec::new();
        let r = read_geojson(file.path(), |f| got.push(f));
        (r, got)
    }

    #[test]
    fn feature_collection_streams_every_feature() {
        let (r, got) = read_str(
            r#"{"type":"FeatureCollection","name":"x","features":[
              {"type":"Feature","id":7,"properties":{"code":"110101"},"geometry":{"type":"Point","coordinates":[116.4,39.9]}},
              {"type":"Feature","properties":null,"geometry":null}
            ]}"#,
        );
        assert_eq!(r.unwrap(), 2);
        let f = got[0].as_ref().unwrap();
        assert_eq!(f.id.as_deref(), Some("7"));
        assert_eq!(f.property_text("code").as_deref(), Some("110101"));
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(e.location, Location::Feature(2));
        assert!(e.reason.contains("no geometry"), "{e}");
    }

    #[test]
    fn unclosed_ring_is_closed_and_noted() {
        let (_, got) = read_str(
            r#"{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}"#,
        );
        let f = got[0].as_ref().unwrap();
        assert!(f.notes[0].contains("not closed"));
        let Geometry::Polygon(p) = &f.geometry else {
            panic!()
        };
        assert_eq!(p.exterior().0.len(), 5);
    }

    #[test]
    fn nan_and_infinity_reach_validation_as_nan() {
        let (r, got) = read_str(
            "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":{\"s\":\"NaN in a string\"},\"geometry\":{\"type\":\"Point\",\"coordinates\":[NaN,-Infinity]}}]}",
        );
        assert_eq!(r.unwrap(), 1);
        let f = got[0].as_ref().unwrap();
        assert_eq!(f.property_text("s").as_deref(), Some("NaN in a string"));
        let Geometry::Point(p) = f.geometry else {
            panic!()
        };
        assert!(p.x().is_nan() && p.y().is_nan());
    }

    #[test]
    fn invalid_json_names_the_line() {
        let (r, _) = read_str("{\"type\":\"FeatureCollection\",\n\"features\":[\n{\"type\": }\n]}");
        let e = r.unwrap_err();
        let ReadError::Bad { location, .. } = &e else {
            panic!("{e}")
        };
        assert!(matches!(location, Location::LineColumn(3, _)), "{e}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let (r, _) = read_str("  \n\n");
        assert!(matches!(r, Err(ReadError::Empty { .. })));
    }

    #[test]
    fn newline_delimited_reports_bad_lines_and_goes_on() {
        let (r, got) = read_str(
            "{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]}}\n{oops\n{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[3,4]}}\n",
        );
        assert_eq!(r.unwrap(), 3);
        assert!(got[0].is_ok() && got[2].is_ok());
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(e.location, Location::Line(2));
    }

    #[test]
    fn writer_output_reads_back() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = GeoJsonWriter::create(file.path()).unwrap();
        let mut props = Map::new();
        props.insert("code".into(), Value::String("110101".into()));
        let g = Geometry::Polygon(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)]);
        w.write(&g, &props).unwrap();
        w.write(&Geometry::Point(Point::new(116.5, 39.75)), &Map::new())
            .unwrap();
        assert_eq!(w.finish().unwrap(), 2);
        let mut got = Vec::new();
        read_geojson(file.path(), |f| got.push(f.unwrap())).unwrap();
        assert_eq!(got[0].geometry, g);
        assert_eq!(got[1].geometry, Geometry::Point(Point::new(116.5, 39.75)));
    }

    /// The rewrite by its definition, byte by byte: outside strings
    /// (which end at an unescaped quote), the tokens become `null`.
    fn non_finite_reference(input: &[u8]) -> Vec<u8> {
        let (mut out, mut i, mut in_string, mut escaped) = (Vec::new(), 0, false, false);
        while i < input.len() {
            let b = input[i];
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                out.push(b);
                i += 1;
                continue;
            }
            let rest = &input[i..];
            if let Some(t) = [&b"-Infinity"[..], b"Infinity", b"NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t))
            {
                out.extend_from_slice(b"null");
                i += t.len();
                continue;
            }
            in_string = b == b'"';
            out.push(b);
            i += 1;
        }
        out
    }

    /// Reads `r` with reads of at most `chunk` bytes.
    fn read_in(mut r: impl Read, chunk: usize) -> Vec<u8> {
        let (mut out, mut buf) = (Vec::new(), vec![0u8; chunk]);
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    proptest::proptest! {
        #[test]
        fn non_finite_tokens_are_rewritten_whatever_the_read_sizes(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "NaN", "Infinity", "-Infinity", "-1.5", "\"", "\\", "\"NaN\"", "N", "I", "-", "Na",
                "Infinit", "[", ",", "1e9", " ", "网格",
            ]), 0..60),
            chunk in 1usize..9,
        ) {
            let input: Vec<u8> = parts.concat().into_bytes();
            let want = non_finite_reference(&input);
            proptest::prop_assert_eq!(read_in(NonFiniteTokens::new(&input[..]), chunk), want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Fuzz: mutations of a valid FeatureCollection (bytes replaced,
        /// cut short) never panic; every feature seen is either read or
        /// reported with its number, and the count returned matches.
        #[test]
        fn mutated_documents_never_panic(
            edits in proptest::collection::vec((0usize..400, proptest::prop_oneof![
                proptest::strategy::Just(b'{'), proptest::strategy::Just(b'}'),
                proptest::strategy::Just(b'['), proptest::strategy::Just(b']'),
                proptest::strategy::Just(b','), proptest::strategy::Just(b'"'),
                proptest::strategy::Just(b'\n'), proptest::strategy::Just(b'-'),
                proptest::strategy::Just(0xff), b'0'..=b'9', b'a'..=b'z',
            ]), 0..6),
            cut in 0usize..420,
            ndjson in proptest::bool::ANY,
        ) {
            let feature = r#"{"type":"Feature","properties":{"code":"110101"},"geometry":{"type":"Polygon","coordinates":[[[116.0,39.9],[116.1,39.9],[116.1,40.0],[116.0,39.9]]]}}"#;
            let mut doc = if ndjson {
                format!("{feature}\n{feature}\n").into_bytes()
            } else {
                format!(r#"{{"type":"FeatureCollection","features":[{feature},{feature}]}}"#).into_bytes()
            };
            for (at, b) in edits {
                if let Some(x) = doc.get_mut(at) {
                    *x = b;
                }
            }
            doc.truncate(cut.min(doc.len()));
            let mut seen = 0usize;
            let r = read_geojson_from(&doc[..], Path::new("fuzz.geojson"), |f| {
                seen += 1;
                if let Err(e) = f {
                    assert!(e.to_string().starts_with("fuzz.geojson"), "{e}");
                }
            });
            match r {
                Ok(n) => proptest::prop_assert_eq!(n, seen),
                Err(e) => proptest::prop_assert!(e.to_string().contains("fuzz.geojson"), "{}", e),
            }
        }
    }
}
