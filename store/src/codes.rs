//! Validated Chinese administrative and grid codes, and resident identity numbers.
//!
//! Administrative codes follow GB/T 2260 for districts and the Beijing DB11
//! unit-grid convention below them; every level appends three digits to its
//! parent, so a code's ancestors are its prefixes:
//!
//! | level                    | digits | example           |
//! |--------------------------|--------|-------------------|
//! | [`DistrictCode`] 区县    | 6      | `110101` 东城区   |
//! | [`StreetCode`] 街道/乡镇 | 9      | `110101001`       |
//! | [`CommunityCode`] 社区   | 12     | `110101001002`    |
//! | [`GridCode`] 网格        | 15     | `110101001002007` |
//!
//! Every value of these types is valid by construction: exactly the right
//! number of ASCII digits, a non-zero province part and child parts in
//! `001..=999`. They are `Copy` newtypes over the numeric value, format
//! zero-padded and (de)serialise as strings, because leading zeros and
//! 15-digit values do not survive a trip through JSON numbers or spreadsheets.
//!
//! ```
//! use wangge_store::codes::{AdminCode, GridCode, Level};
//!
//! let grid: GridCode = "110101001002007".parse()?;
//! assert_eq!(grid.local(), 7);
//! assert_eq!(grid.parent().parent().to_string(), "110101001");
//! assert_eq!(grid.district().to_string(), "110101");
//! assert_eq!(AdminCode::parse("110101001")?.level(), Level::Street);
//! # Ok::<(), wangge_store::codes::CodeError>(())
//! ```
//!
//! [`IdCardNumber`] validates 18-character resident identity numbers
//! (GB 11643-1999). Because these are personal data, its errors never echo the
//! input and its `Debug` output masks the birth date.

use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A level of the administrative hierarchy, from the coarsest to the finest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// 区县: a 6-digit GB/T 2260 district (or county) code.
    District,
    /// 街道/乡镇: district + 3 digits.
    Street,
    /// 社区/村: street + 3 digits.
    Community,
    /// 网格: community + 3 digits.
    Grid,
}

impl Level {
    /// All levels, from the coarsest to the finest.
    pub const ALL: [Self; 4] = [Self::District, Self::Street, Self::Community, Self::Grid];

    /// Number of digits in a code of this level (6, 9, 12 or 15).
    #[must_use]
    pub const fn digits(self) -> usize {
        match self {
            Self::District => 6,
            Self::Street => 9,
            Self::Community => 12,
            Self::Grid => 15,
        }
    }

    /// The level whose codes have `digits` digits, if any.
    #[must_use]
    pub const fn from_digits(digits: usize) -> Option<Self> {
        match digits {
            6 => Some(Self::District),
            9 => Some(Self::Street),
            12 => Some(Self::Community),
            15 => Some(Self::Grid),
            _ => None,
        }
    }

    /// The next coarser level, `None` for [`Level::District`].
    #[must_use]
    pub const fn parent(self) -> Option<Self> {
        match self {
            Self::District => None,
            Self::Street => Some(Self::District),
            Self::Community => Some(Self::Street),
            Self::Grid => Some(Self::Community),
        }
    }

    /// The next finer level, `None` for [`Level::Grid`].
    #[must_use]
    pub const fn child(self) -> Option<Self> {
        match self {
            Self::District => Some(Self::Street),
            Self::Street => Some(Self::Community),
            Self::Community => Some(Self::Grid),
            Self::Grid => None,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::District => "district",
            Self::Street => "street",
            Self::Community => "community",
            Self::Grid => "grid",
        }
    }
}

impl fmt::Display for Level {
    /// The lowercase English name: `district`, `street`, `community`, `grid`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an administrative or grid code was rejected.
///
/// The message names the input, the level that was expected and the reason,
/// e.g. `invalid grid code "11010100100200": expected 15 digits, got 14`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} code {:?}: {}", level_name(.expected), .input, .kind)]
pub struct CodeError {
    /// The rejected input (truncated if very long).
    pub input: String,
    /// The level that was expected; `None` when parsing an [`AdminCode`] whose
    /// length matches no level.
    pub expected: Option<Level>,
    /// The reason.
    pub kind: CodeErrorKind,
}

/// The reason inside a [`CodeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeErrorKind {
    /// The input has the wrong number of characters (or the number is too large).
    #[error("expected {expected} digits, got {got}")]
    Length {
        /// Digits required by the level.
        expected: usize,
        /// Characters found.
        got: usize,
    },
    /// The length matches none of 6, 9, 12 or 15 digits.
    #[error("expected 6, 9, 12 or 15 digits, got {got}")]
    UnknownLength {
        /// Characters found.
        got: usize,
    },
    /// A character other than `0`–`9`; `position` is 1-based, in characters.
    #[error("non-digit character {ch:?} at position {position}")]
    NonDigit {
        /// The offending character.
        ch: char,
        /// 1-based character position.
        position: usize,
    },
    /// The first two digits (province) are `00`.
    #[error("province part 00 is not allowed")]
    ZeroProvince,
    /// The three digits a level adds to its parent are `000`.
    #[error("{level} local part 000 is not allowed")]
    ZeroLocal {
        /// The level whose local part is zero.
        level: Level,
    },
    /// A child number passed to `child()` is above 999.
    #[error("local part {got} is out of range 1..=999")]
    LocalOutOfRange {
        /// The requested child number.
        got: u16,
    },
}

fn level_name(level: &Option<Level>) -> &'static str {
    level.map_or("administrative", Level::name)
}

impl CodeError {
    fn new(input: &str, expected: Option<Level>, kind: CodeErrorKind) -> Self {
        // Keep error messages bounded when someone feeds a whole file in.
        const MAX: usize = 40;
        let input = match input.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{}…", &input[..cut]),
            None => input.to_owned(),
        };
        Self {
            input,
            expected,
            kind,
        }
    }
}

const fn pow10(exp: usize) -> u64 {
    10u64.pow(exp as u32)
}

/// Checks the numeric invariants of a code of `level`: it fits the width,
/// the province is not `00` and no level below the district adds `000`.
fn validate(value: u64, level: Level) -> Result<(), CodeErrorKind> {
    let digits = level.digits();
    if value >= pow10(digits) {
        let got = value.checked_ilog10().map_or(1, |d| d as usize + 1);
        return Err(CodeErrorKind::Length {
            expected: digits,
            got,
        });
    }
    if value / pow10(digits - 2) == 0 {
        return Err(CodeErrorKind::ZeroProvince);
    }
    for sub in [Level::Street, Level::Community, Level::Grid] {
        if sub.digits() <= digits && (value / pow10(digits - sub.digits())).is_multiple_of(1000) {
            return Err(CodeErrorKind::ZeroLocal { level: sub });
        }
    }
    Ok(())
}

/// Strict parse: exactly `level.digits()` ASCII digits, then [`validate`].
fn parse_level(s: &str, level: Level) -> Result<u64, CodeError> {
    let err = |kind| CodeError::new(s, Some(level), kind);
    let got = s.chars().count();
    if got != level.digits() {
        return Err(err(CodeErrorKind::Length {
            expected: level.digits(),
            got,
        }));
    }
    let mut value = 0u64;
    for (i, ch) in s.chars().enumerate() {
        // `to_digit` accepts ASCII digits only, so full-width digits are rejected too.
        let Some(d) = ch.to_digit(10) else {
            return Err(err(CodeErrorKind::NonDigit {
                ch,
                position: i + 1,
            }));
        };
        value = value * 10 + u64::from(d);
    }
    validate(value, level).map_err(err)?;
    Ok(value)
}

/// Builds child `n` of the code `parent` at `level`.
fn make_child(parent: u64, level: Level, n: u16) -> Result<u64, CodeError> {
    let kind = match n {
        0 => CodeErrorKind::ZeroLocal { level },
        1..=999 => return Ok(parent * 1000 + u64::from(n)),
        _ => CodeErrorKind::LocalOutOfRange { got: n },
    };
    let width = level.digits() - 3;
    Err(CodeError::new(
        &format!("{parent:0width$}/{n}"),
        Some(level),
        kind,
    ))
}

/// Serde visitor for types that (de)serialise as their `FromStr` form.
struct StrVisitor<T>(PhantomData<T>, &'static str);

impl<T> de::Visitor<'_> for StrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! code_type {
    ($(#[$meta:meta])* $name:ident, $level:ident, $expecting:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The level of every code of this type.
            pub const LEVEL: Level = Level::$level;

            /// Validates a numeric code (the digits without zero padding).
            ///
            /// # Errors
            /// If the value is too wide, its province is `00` or a local part is `000`.
            pub fn from_u64(value: u64) -> Result<Self, CodeError> {
                match validate(value, Self::LEVEL) {
                    Ok(()) => Ok(Self(value)),
                    Err(kind) => Err(CodeError::new(&value.to_string(), Some(Self::LEVEL), kind)),
                }
            }

            /// The numeric value (what `Display` prints, zero-padded).
            #[must_use]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// The district (first six digits) this code belongs to.
            #[must_use]
            pub const fn district(self) -> DistrictCode {
                DistrictCode(self.0 / pow10(Self::LEVEL.digits() - 6))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0width$}", self.0, width = Self::LEVEL.digits())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(\"{}\")"), self)
            }
        }

        impl FromStr for $name {
            type Err = CodeError;

            /// Strict parse: exactly the right number of ASCII digits, no
            /// signs or whitespace.
            fn from_str(s: &str) -> Result<Self, CodeError> {
                parse_level(s, Self::LEVEL).map(Self)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = CodeError;

            fn try_from(s: &str) -> Result<Self, CodeError> {
                s.parse()
            }
        }

        impl From<$name> for AdminCode {
            fn from(code: $name) -> Self {
                Self::$level(code)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(StrVisitor(PhantomData, $expecting))
            }
        }
    };
}

macro_rules! has_parent {
    ($name:ident => $parent:ident) => {
        impl $name {
            /// The code one level up (this code without its last three digits).
            #[must_use]
            pub const fn parent(self) -> $parent {
                $parent(self.0 / 1000)
            }

            /// The three digits this level adds to its parent, in `1..=999`.
            #[must_use]
            pub const fn local(self) -> u16 {
                (self.0 % 1000) as u16
            }
        }
    };
}

macro_rules! has_child {
    ($name:ident => $child:ident) => {
        impl $name {
            /// Child number `n` one level down: this code followed by `n` as three digits.
            ///
            /// # Errors
            /// If `n` is not in `1..=999`.
            pub fn child(self, n: u16) -> Result<$child, CodeError> {
                make_child(self.0, $child::LEVEL, n).map($child)
            }
        }
    };
}

code_type!(
    /// A 6-digit GB/T 2260 district code such as `110101` (东城区).
    ///
    /// Only the province part (first two digits) is required to be non-zero,
    /// so province- and city-level codes such as `110000` are accepted too.
    DistrictCode,
    District,
    "a 6-digit district code string"
);
code_type!(
    /// A 9-digit street (街道/乡镇) code: district + `001..=999`, e.g. `110101001`.
    StreetCode,
    Street,
    "a 9-digit street code string"
);
code_type!(
    /// A 12-digit community (社区/村) code: street + `001..=999`, e.g. `110101001002`.
    CommunityCode,
    Community,
    "a 12-digit community code string"
);
code_type!(
    /// A 15-digit grid (网格) code: community + `001..=999`, e.g. `110101001002007`.
    GridCode,
    Grid,
    "a 15-digit grid code string"
);
has_parent!(StreetCode => DistrictCode);
has_parent!(CommunityCode => StreetCode);
has_parent!(GridCode => CommunityCode);
has_child!(DistrictCode => StreetCode);
has_child!(StreetCode => CommunityCode);
has_child!(CommunityCode => GridCode);

/// A code of any level, as found in a column that mixes levels.
///
/// Ordered like the code strings, i.e. in tree pre-order: a code sorts
/// immediately before its descendants, and siblings by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminCode {
    /// A [`DistrictCode`].
    District(DistrictCode),
    /// A [`StreetCode`].
    Street(StreetCode),
    /// A [`CommunityCode`].
    Community(CommunityCode),
    /// A [`GridCode`].
    Grid(GridCode),
}

impl AdminCode {
    /// Parses a code, choosing the level from its length (6, 9, 12 or 15 digits).
    ///
    /// # Errors
    /// If the length matches no level or the code is invalid at that level.
    ///
    /// ```
    /// use wangge_store::codes::{AdminCode, Level};
    /// assert_eq!(AdminCode::parse("110101001002")?.level(), Level::Community);
    /// assert!(AdminCode::parse("1101010").is_err());
    /// # Ok::<(), wangge_store::codes::CodeError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let got = s.chars().count();
        match Level::from_digits(got) {
            None => Err(CodeError::new(
                s,
                None,
                CodeErrorKind::UnknownLength { got },
            )),
            Some(Level::District) => s.parse().map(Self::District),
            Some(Level::Street) => s.parse().map(Self::Street),
            Some(Level::Community) => s.parse().map(Self::Community),
            Some(Level::Grid) => s.parse().map(Self::Grid),
        }
    }

    /// The level of this code.
    #[must_use]
    pub const fn level(self) -> Level {
        match self {
            Self::District(_) => Level::District,
            Self::Street(_) => Level::Street,
            Self::Community(_) => Level::Community,
            Self::Grid(_) => Level::Grid,
        }
    }

    /// The numeric value.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        match self {
            Self::District(c) => c.as_u64(),
            Self::Street(c) => c.as_u64(),
            Self::Community(c) => c.as_u64(),
            Self::Grid(c) => c.as_u64(),
        }
    }

    /// The district this code belongs to (itself for a district).
    #[must_use]
    pub const fn district(self) -> DistrictCode {
        match self {
            Self::District(c) => c,
            Self::Street(c) => c.district(),
            Self::Community(c) => c.district(),
            Self::Grid(c) => c.district(),
        }
    }

    /// The code one level up; `None` for a district.
    #[must_use]
    pub const fn parent(self) -> Option<Self> {
        match self {
            Self::District(_) => None,
            Self::Street(c) => Some(Self::District(c.parent())),
            Self::Community(c) => Some(Self::Street(c.parent())),
            Self::Grid(c) => Some(Self::Community(c.parent())),
        }
    }

    /// The codes from the district down to and including `self`.
    ///
    /// ```
    /// use wangge_store::codes::AdminCode;
    /// let path = AdminCode::parse("110101001002")?.path();
    /// let strings: Vec<String> = path.iter().map(ToString::to_string).collect();
    /// assert_eq!(strings, ["110101", "110101001", "110101001002"]);
    /// # Ok::<(), wangge_store::codes::CodeError>(())
    /// ```
    #[must_use]
    pub fn path(self) -> Vec<Self> {
        let mut path: Vec<Self> = std::iter::successors(Some(self), |c| c.parent()).collect();
        path.reverse();
        path
    }

    /// Whether `other` is `self` or one of its descendants.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        let (mine, theirs) = (self.level().digits(), other.level().digits());
        theirs >= mine && other.as_u64() / pow10(theirs - mine) == self.as_u64()
    }

    /// Sort key equal to string order: the value left-aligned to 15 digits,
    /// then the level (a parent pads with zeros, which no child has).
    const fn sort_key(self) -> (u64, Level) {
        (
            self.as_u64() * pow10(15 - self.level().digits()),
            self.level(),
        )
    }
}

impl Ord for AdminCode {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for AdminCode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for AdminCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::District(c) => c.fmt(f),
            Self::Street(c) => c.fmt(f),
            Self::Community(c) => c.fmt(f),
            Self::Grid(c) => c.fmt(f),
        }
    }
}

impl FromStr for AdminCode {
    type Err = CodeError;

    /// Same as [`AdminCode::parse`].
    fn from_str(s: &str) -> Result<Self, CodeError> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for AdminCode {
    type Error = CodeError;

    fn try_from(s: &str) -> Result<Self, CodeError> {
        Self::parse(s)
    }
}

impl Serialize for AdminCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AdminCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            PhantomData,
            "a 6, 9, 12 or 15-digit code string",
        ))
    }
}

/// Why a resident identity number was rejected.
///
/// Messages never contain the number itself (it is personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdCardError {
    /// Not 18 characters.
    #[error("expected 18 characters, got {got}")]
    Length {
        /// Characters found.
        got: usize,
    },
    /// A character other than a digit (or `X` in the last position).
    #[error("invalid character {ch:?} at position {position}")]
    BadChar {
        /// The offending character.
        ch: char,
        /// 1-based character position.
        position: usize,
    },
    /// The address code is not six digits with a non-zero province part.
    #[error("address code {code} is not 6 digits with a non-zero province part")]
    Address {
        /// The rejected address code.
        code: u32,
    },
    /// The birth date is not a calendar date in 1900..=2100.
    #[error("birth date {year:04}-{month:02}-{day:02} is not a calendar date in 1900..=2100")]
    BirthDate {
        /// Year.
        year: u16,
        /// Month.
        month: u8,
        /// Day.
        day: u8,
    },
    /// The sequence number is above 999.
    #[error("sequence number {seq} is out of range 0..=999")]
    Sequence {
        /// The rejected sequence number.
        seq: u16,
    },
    /// The ISO 7064 MOD 11-2 check character does not match.
    #[error("check digit mismatch: expected {expected:?} got {got:?}")]
    CheckDigit {
        /// The check character computed from the first 17 digits.
        expected: char,
        /// The check character found.
        got: char,
    },
}

/// An 18-character resident identity number (居民身份证号码, GB 11643-1999).
///
/// Layout: 6-digit address code, birth date `YYYYMMDD`, 3-digit sequence
/// (odd for men) and an ISO 7064 MOD 11-2 check character (`0`–`9` or `X`).
/// Every value has a real birth date in 1900..=2100 and a correct check
/// character; a lowercase `x` is accepted and normalised to `X`.
///
/// `Display` gives the full number; `Debug` masks the birth date so that an
/// accidental `{:?}` in a log does not leak it.
///
/// ```
/// use wangge_store::codes::IdCardNumber;
/// let id: IdCardNumber = "11010519491231002x".parse()?;
/// assert_eq!(id.to_string(), "11010519491231002X");
/// assert_eq!(id.birth_date(), (1949, 12, 31));
/// assert!(!id.is_male());
/// # Ok::<(), wangge_store::codes::IdCardError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdCardNumber([u8; 18]);

/// ISO 7064 MOD 11-2 weights (2^(17-i) mod 11) for the first 17 digits.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for a weighted-sum remainder of 0..=10.
const ID_CHECK: &[u8; 11] = b"10X98765432";

fn id_check_char(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(&d, w)| u32::from(d - b'0') * w)
        .sum();
    ID_CHECK[(sum % 11) as usize]
}

fn is_calendar_date(year: u16, month: u8, day: u8) -> bool {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=days).contains(&day)
}

fn digits_value(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0'))
}

impl IdCardNumber {
    /// Builds a number from its parts, computing the check character.
    ///
    /// # Errors
    /// If `address` is not 6 digits with a non-zero province part, the date
    /// is not a calendar date in 1900..=2100 or `seq > 999`.
    ///
    /// ```
    /// use wangge_store::codes::IdCardNumber;
    /// let id = IdCardNumber::new(110105, 1949, 12, 31, 2)?;
    /// assert_eq!(id.to_string(), "11010519491231002X");
    /// # Ok::<(), wangge_store::codes::IdCardError>(())
    /// ```
    pub fn new(address: u32, year: u16, month: u8, day: u8, seq: u16) -> Result<Self, IdCardError> {
        if !(10_000..1_000_000).contains(&address) {
            return Err(IdCardError::Address { code: address });
        }
        if !is_calendar_date(year, month, day) {
            return Err(IdCardError::BirthDate { year, month, day });
        }
        if seq > 999 {
            return Err(IdCardError::Sequence { seq });
        }
        let text = format!("{address:06}{year:04}{month:02}{day:02}{seq:03}");
        let mut bytes = [0u8; 18];
        bytes[..17].copy_from_slice(text.as_bytes());
        bytes[17] = id_check_char(&bytes[..17]);
        Ok(Self(bytes))
    }

    /// The 6-digit address code (the registering district, possibly historical).
    #[must_use]
    pub fn address_code(&self) -> u32 {
        digits_value(&self.0[..6])
    }

    /// The birth date as `(year, month, day)`.
    #[must_use]
    pub fn birth_date(&self) -> (u16, u8, u8) {
        let d = &self.0;
        // The ranges are guaranteed by construction, so the narrowing casts are exact.
        (
            digits_value(&d[6..10]) as u16,
            digits_value(&d[10..12]) as u8,
            digits_value(&d[12..14]) as u8,
        )
    }

    /// The 3-digit sequence number (odd for men, even for women).
    #[must_use]
    pub fn sequence(&self) -> u16 {
        digits_value(&self.0[14..17]) as u16
    }

    /// Whether the sequence number is odd, which GB 11643 assigns to men.
    #[must_use]
    pub fn is_male(&self) -> bool {
        self.sequence() % 2 == 1
    }

    /// The number as a string slice (always 18 ASCII characters).
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("IdCardNumber holds ASCII by construction")
    }
}

impl FromStr for IdCardNumber {
    type Err = IdCardError;

    /// Strict parse of 18 characters; only the last may be `X` (or `x`).
    fn from_str(s: &str) -> Result<Self, IdCardError> {
        let got = s.chars().count();
        if got != 18 {
            return Err(IdCardError::Length { got });
        }
        let mut bytes = [0u8; 18];
        for (i, ch) in s.chars().enumerate() {
            bytes[i] = match ch {
                '0'..='9' => ch as u8,
                'X' | 'x' if i == 17 => b'X',
                _ => {
                    return Err(IdCardError::BadChar {
                        ch,
                        position: i + 1,
                    });
                }
            };
        }
        let address = digits_value(&bytes[..6]);
        if address < 10_000 {
            return Err(IdCardError::Address { code: address });
        }
        let (year, month, day) = (
            digits_value(&bytes[6..10]),
            digits_value(&bytes[10..12]),
            digits_value(&bytes[12..14]),
        );
        // year <= 9999 and month, day <= 99 by digit count, so the casts are exact.
        let (year, month, day) = (year as u16, month as u8, day as u8);
        if !is_calendar_date(year, month, day) {
            return Err(IdCardError::BirthDate { year, month, day });
        }
        let expected = id_check_char(&bytes[..17]);
        if bytes[17] != expected {
            return Err(IdCardError::CheckDigit {
                expected: char::from(expected),
                got: char::from(bytes[17]),
            });
        }
        Ok(Self(bytes))
    }
}

impl TryFrom<&str> for IdCardNumber {
    type Error = IdCardError;

    fn try_from(s: &str) -> Result<Self, IdCardError> {
        s.parse()
    }
}

impl fmt::Display for IdCardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IdCardNumber {
    /// `IdCardNumber("110105********002X")`: the birth date is masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_str();
        write!(f, "IdCardNumber(\"{}********{}\")", &s[..6], &s[14..])
    }
}

impl Serialize for IdCardNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdCardNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            PhantomData,
            "an 18-character resident identity number string",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind(r: Result<impl fmt::Debug, CodeError>) -> CodeErrorKind {
        r.expect_err("should be rejected").kind
    }

    #[test]
    fn parses_and_formats_each_level() {
        let g: GridCode = "110101001002007".parse().unwrap();
        assert_eq!(g.as_u64(), 110_101_001_002_007);
        assert_eq!(g.local(), 7);
        assert_eq!(g.parent().to_string(), "110101001002");
        assert_eq!(g.parent().local(), 2);
        assert_eq!(g.parent().parent().to_string(), "110101001");
        assert_eq!(g.parent().parent().parent().to_string(), "110101");
        assert_eq!(g.district(), DistrictCode::try_from("110101").unwrap());
        assert_eq!(format!("{g:?}"), "GridCode(\"110101001002007\")");
        // A province part such as 01 keeps its leading zero.
        let d: DistrictCode = "010203".parse().unwrap();
        assert_eq!(d.as_u64(), 10203);
        assert_eq!(d.to_string(), "010203");
        assert_eq!(DistrictCode::from_u64(10203).unwrap(), d);
    }

    #[test]
    fn rejects_bad_codes_with_reasons() {
        assert_eq!(
            kind("11010100100200".parse::<GridCode>()),
            CodeErrorKind::Length {
                expected: 15,
                got: 14
            }
        );
        let err = "11010100100200".parse::<GridCode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid grid code \"11010100100200\": expected 15 digits, got 14"
        );
        let err = "110x01".parse::<DistrictCode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid district code \"110x01\": non-digit character 'x' at position 4"
        );
        assert!(matches!(
            kind("+10101".parse::<DistrictCode>()),
            CodeErrorKind::NonDigit {
                ch: '+',
                position: 1
            }
        ));
        assert!(matches!(
            kind(" 110101".parse::<DistrictCode>()),
            CodeErrorKind::Length { .. }
        ));
        assert!(matches!(
            kind("11010１".parse::<DistrictCode>()),
            CodeErrorKind::NonDigit { ch: '１', .. }
        ));
        assert_eq!(
            kind("001234".parse::<DistrictCode>()),
            CodeErrorKind::ZeroProvince
        );
        let err = "110101000".parse::<StreetCode>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid street code \"110101000\": street local part 000 is not allowed"
        );
        assert_eq!(
            kind("110101001000007".parse::<GridCode>()),
            CodeErrorKind::ZeroLocal {
                level: Level::Community
            }
        );
        assert!(matches!(
            kind(GridCode::from_u64(1_000_000_000_000_000)),
            CodeErrorKind::Length { got: 16, .. }
        ));
        let err = AdminCode::parse("1101010").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid administrative code \"1101010\": expected 6, 9, 12 or 15 digits, got 7"
        );
        let long = "1".repeat(1000);
        assert!(AdminCode::parse(&long).unwrap_err().input.chars().count() <= 41);
    }

    #[test]
    fn children() {
        let d: DistrictCode = "110101".parse().unwrap();
        assert_eq!(d.child(1).unwrap().to_string(), "110101001");
        assert_eq!(
            d.child(999).unwrap().child(42).unwrap().to_string(),
            "110101999042"
        );
        assert_eq!(
            kind(d.child(0)),
            CodeErrorKind::ZeroLocal {
                level: Level::Street
            }
        );
        let err = d.child(1000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid street code \"110101/1000\": local part 1000 is out of range 1..=999"
        );
    }

    #[test]
    fn admin_code_hierarchy_and_order() {
        let g = AdminCode::parse("110101001002007").unwrap();
        assert_eq!(g.level(), Level::Grid);
        assert_eq!(
            g.parent().map(|p| p.to_string()).as_deref(),
            Some("110101001002")
        );
        assert_eq!(g.path().len(), 4);
        assert_eq!(g.path()[0], AdminCode::District(g.district()));
        assert!(g.path().iter().all(|a| a.contains(g)));
        assert!(!g.contains(g.parent().unwrap()));
        assert!(!AdminCode::parse("110102").unwrap().contains(g));
        let mut codes: Vec<AdminCode> =
            ["110101002", "110101001002", "110101", "110101001", "110102"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        codes.sort();
        let strings: Vec<String> = codes.iter().map(ToString::to_string).collect();
        let mut expected = strings.clone();
        expected.sort();
        assert_eq!(strings, expected);
    }

    #[test]
    fn serde_as_strings() {
        fn from_str<'a, T: Deserialize<'a>>(s: &'a str) -> Result<T, de::value::Error> {
            T::deserialize(de::value::BorrowedStrDeserializer::new(s))
        }
        assert_eq!(from_str::<GridCode>("110101001002007").unwrap().local(), 7);
        assert!(from_str::<GridCode>("110101001002000").is_err());
        assert_eq!(
            from_str::<AdminCode>("110101").unwrap().level(),
            Level::District
        );
        assert_eq!(
            from_str::<IdCardNumber>("11010519491231002x")
                .unwrap()
                .to_string(),
            "11010519491231002X"
        );
        // Numbers are not accepted: they lose leading zeros in other tools.
        let number = de::value::U64Deserializer::<de::value::Error>::new(110_101);
        assert!(DistrictCode::deserialize(number).is_err());
    }

    #[test]
    fn id_card_known_values() {
        // The GB 11643 example: weighted sum 167, 167 % 11 = 2 -> 'X'.
        let id: IdCardNumber = "11010519491231002X".parse().unwrap();
        assert_eq!(id.address_code(), 110_105);
        assert_eq!(id.birth_date(), (1949, 12, 31));
        assert_eq!(id.sequence(), 2);
        assert!(!id.is_male());
        assert_eq!(format!("{id:?}"), "IdCardNumber(\"110105********002X\")");
        assert_eq!(IdCardNumber::new(110_105, 1949, 12, 31, 2), Ok(id));
        // 1*7+1*9+0*10+1*5+0*8+1*4+1*2+9*1+9*6+0*3+0*7+1*9+0*10+1*5+1*8+2*4+3*2 = 126,
        // 126 % 11 = 5 -> '7'.
        let id = IdCardNumber::new(110_101, 1990, 1, 1, 123).unwrap();
        assert_eq!(id.to_string(), "110101199001011237");
        assert!(id.is_male());
    }

    #[test]
    fn id_card_rejections() {
        let err = "110105194912310023".parse::<IdCardNumber>().unwrap_err();
        assert_eq!(
            err,
            IdCardError::CheckDigit {
                expected: 'X',
                got: '3'
            }
        );
        assert_eq!(
            err.to_string(),
            "check digit mismatch: expected 'X' got '3'"
        );
        for last in ['0', '1', '9', 'x'] {
            let s = format!("11010519491231002{last}");
            let ok = last == 'x';
            assert_eq!(s.parse::<IdCardNumber>().is_ok(), ok, "{s}");
        }
        assert_eq!(
            "11010519491231002".parse::<IdCardNumber>(),
            Err(IdCardError::Length { got: 17 })
        );
        assert_eq!(
            "1101051949123100X2".parse::<IdCardNumber>(),
            Err(IdCardError::BadChar {
                ch: 'X',
                position: 17
            })
        );
        assert_eq!(
            "-10105194912310023".parse::<IdCardNumber>(),
            Err(IdCardError::BadChar {
                ch: '-',
                position: 1
            })
        );
        let bad_date = "110105194902300020".parse::<IdCardNumber>().unwrap_err();
        assert_eq!(
            bad_date.to_string(),
            "birth date 1949-02-30 is not a calendar date in 1900..=2100"
        );
        assert!(IdCardNumber::new(110_105, 2000, 2, 29, 1).is_ok());
        assert!(IdCardNumber::new(110_105, 1900, 2, 29, 1).is_err());
        assert!(IdCardNumber::new(110_105, 1899, 12, 31, 1).is_err());
        assert!(IdCardNumber::new(110_105, 2101, 1, 1, 1).is_err());
        assert!(IdCardNumber::new(110_105, 2000, 13, 1, 1).is_err());
        assert!(IdCardNumber::new(110_105, 2000, 4, 31, 1).is_err());
        assert_eq!(
            IdCardNumber::new(110_105, 2000, 1, 1, 1000),
            Err(IdCardError::Sequence { seq: 1000 })
        );
        assert_eq!(
            IdCardNumber::new(1_101_050, 2000, 1, 1, 1),
            Err(IdCardError::Address { code: 1_101_050 })
        );
        assert!(IdCardNumber::new(9_999, 2000, 1, 1, 1).is_err());
    }

    fn date() -> impl Strategy<Value = (u16, u8, u8)> {
        (1900u16..=2100, 1u8..=12, 1u8..=31)
            .prop_filter("calendar date", |&(y, m, d)| is_calendar_date(y, m, d))
    }

    proptest! {
        #[test]
        fn id_card_round_trip(
            address in 10_000u32..1_000_000,
            (y, m, d) in date(),
            seq in 0u16..1000,
        ) {
            let id = IdCardNumber::new(address, y, m, d, seq).unwrap();
            let text = id.to_string();
            prop_assert_eq!(text.parse::<IdCardNumber>(), Ok(id));
            prop_assert_eq!(text.to_lowercase().parse::<IdCardNumber>(), Ok(id));
            prop_assert_eq!(id.address_code(), address);
            prop_assert_eq!(id.birth_date(), (y, m, d));
            prop_assert_eq!(id.sequence(), seq);
            prop_assert_eq!(id.is_male(), seq % 2 == 1);
            // Any other check character is rejected.
            for c in "0123456789X".chars().filter(|&c| c != text.chars().last().unwrap_or('?')) {
                let wrong = format!("{}{c}", &text[..17]);
                let result = wrong.parse::<IdCardNumber>();
                prop_assert!(matches!(result, Err(IdCardError::CheckDigit { .. })), "{:?}", result);
            }
        }

        #[test]
        fn code_round_trips(
            district in 10_000u64..1_000_000,
            s in 1u16..1000,
            c in 1u16..1000,
            g in 1u16..1000,
        ) {
            let district = DistrictCode::from_u64(district).unwrap();
            let street = district.child(s).unwrap();
            let community = street.child(c).unwrap();
            let grid = community.child(g).unwrap();
            prop_assert_eq!(street.parent(), district);
            prop_assert_eq!(community.parent(), street);
            prop_assert_eq!(grid.parent(), community);
            prop_assert_eq!((street.local(), community.local(), grid.local()), (s, c, g));
            prop_assert_eq!(grid.district(), district);
            prop_assert_eq!(grid.to_string().parse::<GridCode>(), Ok(grid));
            prop_assert_eq!(community.to_string().parse::<CommunityCode>(), Ok(community));
            prop_assert_eq!(street.to_string().parse::<StreetCode>(), Ok(street));
            prop_assert_eq!(district.to_string().parse::<DistrictCode>(), Ok(district));
            let admin = AdminCode::parse(&grid.to_string()).unwrap();
            prop_assert_eq!(admin, AdminCode::Grid(grid));
            let path = admin.path();
            let expected = [district.into(), street.into(), community.into(), admin];
            prop_assert_eq!(path.as_slice(), expected.as_slice());
            prop_assert!(path.windows(2).all(|w| w[0] < w[1] && w[0].contains(w[1])));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = AdminCode::parse(&s);
            let _ = s.parse::<IdCardNumber>();
        }
    }
}
