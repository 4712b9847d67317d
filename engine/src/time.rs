//! Calendar arithmetic and the UTC timestamps wangge writes (ISO 8601),
//! without a time-zone database.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
#[must_use]
pub fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

/// A time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds).
#[must_use]
pub fn iso_utc(t: SystemTime) -> String {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    };
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let s = rest / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rest % 1000
    )
}

/// Now, as [`iso_utc`].
#[must_use]
pub fn now_iso() -> String {
    iso_utc(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_instants() {
        assert_eq!(iso_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2026-12-02T17:30:05.123Z, by `date -d @1796232605`.
        let t = UNIX_EPOCH + Duration::from_millis(1_796_232_605_123);
        assert_eq!(iso_utc(t), "2026-12-02T17:30:05.123Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
