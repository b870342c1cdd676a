//! The event timestamp: microseconds since the Unix epoch, written as RFC 3339 in UTC.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;
/// `0000-01-01T00:00:00Z` in days since the epoch.
const MIN_DAYS: i64 = -719_528;
/// `10000-01-01T00:00:00Z` in days since the epoch (exclusive upper bound).
const MAX_DAYS: i64 = 2_932_897;

/// A point in time with microsecond precision, between the years 0000 and 9999 (UTC).
///
/// Stored as a signed count of microseconds since 1970-01-01T00:00:00Z (the SQL stores keep
/// it in a `BIGINT` column, which sorts correctly) and serialized as an RFC 3339 string
/// such as `2026-03-01T12:34:56.789012Z`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest representable time, `0000-01-01T00:00:00Z`.
    pub const MIN: Timestamp = Timestamp(MIN_DAYS * MICROS_PER_DAY);
    /// The latest representable time, `9999-12-31T23:59:59.999999Z`.
    pub const MAX: Timestamp = Timestamp(MAX_DAYS * MICROS_PER_DAY - 1);

    /// The current system time (clamped into the representable range).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`], clamping it into the representable range.
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Self(micros.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// A timestamp from microseconds since the Unix epoch; `None` outside years 0000..=9999.
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        (Self::MIN.0..=Self::MAX.0)
            .contains(&micros)
            .then_some(Self(micros))
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0
    }

    /// This time minus `d`, saturating at [`Timestamp::MIN`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros).max(Self::MIN.0))
    }

    /// This time plus `d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros).min(Self::MAX.0))
    }

    /// The UTC calendar date as `(year, month, day)`.
    pub fn date(self) -> (i64, u32, u32) {
        civil_from_days(self.0.div_euclid(MICROS_PER_DAY))
    }
}

/// Days since the epoch to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both values are small by construction (1..=31 and 1..=12).
    (year, month as u32, day as u32)
}

/// A proleptic Gregorian date to days since the epoch (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Writes `v` as decimal digits right-aligned in `out`, zero-padded to its length.
fn put_digits(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl Timestamp {
    /// The RFC 3339 form written by `Display`, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as ASCII bytes
    /// (the year has four digits everywhere in the representable range), built without the
    /// formatting machinery: the hash chain writes one per event.
    pub(crate) fn rfc3339(self) -> [u8; 27] {
        let (y, mo, d) = self.date();
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let secs = in_day / MICROS_PER_SEC;
        let micros = in_day % MICROS_PER_SEC;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        // Every value is non-negative and fits its field (years 0000..=9999).
        let field = |v: i64| u64::try_from(v).unwrap_or(0);
        put_digits(&mut out[0..4], field(y));
        put_digits(&mut out[5..7], u64::from(mo));
        put_digits(&mut out[8..10], u64::from(d));
        put_digits(&mut out[11..13], field(secs / 3600));
        put_digits(&mut out[14..16], field(secs / 60 % 60));
        put_digits(&mut out[17..19], field(secs % 60));
        put_digits(&mut out[20..26], field(micros));
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.rfc3339();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text is not an RFC 3339 timestamp between the years 0000 and 9999.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp")]
pub struct ParseTimestampError;

fn digits(s: &[u8]) -> Result<i64, ParseTimestampError> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(ParseTimestampError);
    }
    Ok(s.iter().fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')))
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`; digits after the sixth
    /// fractional digit are dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(ParseTimestampError);
        }
        let year = digits(&b[0..4])?;
        let month = u32::try_from(digits(&b[5..7])?).map_err(|_| ParseTimestampError)?;
        let day = u32::try_from(digits(&b[8..10])?).map_err(|_| ParseTimestampError)?;
        let (hour, minute, second) = (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        );
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(ParseTimestampError);
        }
        let mut rest = &b[19..];
        let mut micros = 0i64;
        if let Some((b'.', frac)) = rest.split_first() {
            let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if len == 0 {
                return Err(ParseTimestampError);
            }
            let kept = &frac[..len.min(6)];
            micros = digits(kept)? * 10i64.pow(6 - kept.len() as u32);
            rest = &frac[len..];
        }
        let offset_secs = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
                if h > 23 || m > 59 {
                    return Err(ParseTimestampError);
                }
                let off = h * 3600 + m * 60;
                if *sign == b'-' { -off } else { off }
            }
            _ => return Err(ParseTimestampError),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Timestamp::from_unix_micros(secs * MICROS_PER_SEC + micros).ok_or(ParseTimestampError)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        let t: Timestamp = "2026-03-01T12:34:56.789012Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-03-01T12:34:56.789012Z");
        assert_eq!(
            Timestamp::from_unix_micros(0).unwrap().to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00.000000Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
        let off: Timestamp = "2024-02-29T01:00:00+02:00".parse().unwrap();
        assert_eq!(off.to_string(), "2024-02-28T23:00:00.000000Z");
        assert_eq!(
            "2024-01-01T00:00:00.1234567Z"
                .parse::<Timestamp>()
                .unwrap()
                .unix_micros()
                % 1_000_000,
            123_456
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-01-01T24:00:00Z",
            "2023-01-01T00:00:00",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00+0100",
            "+023-01-01T00:00:00Z",
            "2023-01-01T00:00:00Zjunk",
        ] {
            assert!(s.parse::<Timestamp>().is_err(), "{s}");
        }
        assert!(Timestamp::from_unix_micros(Timestamp::MAX.unix_micros() + 1).is_none());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(m in Timestamp::MIN.0..=Timestamp::MAX.0) {
            let t = Timestamp(m);
            prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
    }
}
