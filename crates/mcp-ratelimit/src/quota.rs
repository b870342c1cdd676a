//! Quotas (`100/min`, `10/s burst 20`): parsing, validation and display.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::duration_micros;

/// The largest span, in microseconds, that any quota may cover (`2^52`, about 142 years).
///
/// The bound keeps every intermediate value of both algorithms exact in a Redis Lua
/// number (a double), so the in-memory and the Redis store decide identically.
pub(crate) const MAX_SPAN_MICROS: u64 = 1 << 52;

/// How many requests (or cost units) are allowed per period, with an optional burst.
///
/// A `Quota` can only be built valid: the count and burst are non-zero, the period is at
/// least one microsecond and the whole quota fits the arithmetic of both stores.
///
/// ```
/// use mcp_ratelimit::Quota;
///
/// let q: Quota = "10/s burst 20".parse().unwrap();
/// assert_eq!(q.count().get(), 10);
/// assert_eq!(q.burst().get(), 20);
/// assert_eq!(q.to_string(), "10/s burst 20");
/// assert!("0/min".parse::<Quota>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
    /// The period in microseconds, computed once.
    period_us: u64,
    /// The GCRA emission interval in microseconds, rounded up, computed once.
    interval_us: u64,
}

/// Why a quota string or quota value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The text was empty.
    #[error("empty quota; expected something like `100/min` or `10/s burst 20`")]
    Empty,
    /// The text had no `/` between the count and the period.
    #[error("missing `/` in quota `{0}`; expected something like `100/min`")]
    MissingSlash(String),
    /// The count (before `/`) was not a positive integer.
    #[error("invalid count `{0}`; expected a positive integer")]
    InvalidCount(String),
    /// The count or the burst was zero.
    #[error("a quota count or burst must not be zero")]
    Zero,
    /// The period's unit was not one of the known units.
    #[error(
        "unknown period `{0}`; expected us, ms, s, min, h or day, optionally with a multiplier (`5min`)"
    )]
    InvalidPeriod(String),
    /// The burst clause was malformed.
    #[error("invalid burst clause `{0}`; expected `burst <positive integer>`")]
    InvalidBurst(String),
    /// The period was shorter than one microsecond.
    #[error("the period must be at least one microsecond")]
    PeriodTooShort,
    /// The quota spans more than the stores can compute exactly.
    #[error("quota too large: count or burst times the period exceeds 2^52 microseconds")]
    TooLarge,
}

impl Quota {
    /// `count` per `period`, with a burst equal to `count`.
    ///
    /// # Errors
    /// [`QuotaError::PeriodTooShort`] or [`QuotaError::TooLarge`].
    pub fn new(count: NonZeroU32, period: Duration) -> Result<Self, QuotaError> {
        Self::with_burst(count, period, count)
    }

    /// `count` per `period`, allowing `burst` at once.
    ///
    /// # Errors
    /// [`QuotaError::PeriodTooShort`] or [`QuotaError::TooLarge`].
    pub fn with_burst(
        count: NonZeroU32,
        period: Duration,
        burst: NonZeroU32,
    ) -> Result<Self, QuotaError> {
        let period_us = duration_micros(period);
        if period < Duration::from_micros(1) {
            return Err(QuotaError::PeriodTooShort);
        }
        let interval_us = period_us.div_ceil(u64::from(count.get())).max(1);
        let q = Self {
            count,
            period,
            burst,
            period_us,
            interval_us,
        };
        let span = u128::from(interval_us) * u128::from(burst.get());
        let window = u128::from(period_us) * u128::from(count.get());
        let max = u128::from(MAX_SPAN_MICROS);
        if period_us > MAX_SPAN_MICROS || span > max || window > max {
            return Err(QuotaError::TooLarge);
        }
        Ok(q)
    }

    /// `count` per second.
    ///
    /// # Errors
    /// Never for realistic counts; [`QuotaError::TooLarge`] is impossible here but kept
    /// for a uniform signature.
    pub fn per_second(count: NonZeroU32) -> Result<Self, QuotaError> {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    ///
    /// # Errors
    /// As [`Quota::new`].
    pub fn per_minute(count: NonZeroU32) -> Result<Self, QuotaError> {
        Self::new(count, Duration::from_secs(60))
    }

    /// The same rate with a different burst.
    ///
    /// # Errors
    /// [`QuotaError::TooLarge`] if the burst makes the quota too large.
    pub fn burst_of(self, burst: NonZeroU32) -> Result<Self, QuotaError> {
        Self::with_burst(self.count, self.period, burst)
    }

    /// Requests (cost units) per period.
    #[must_use]
    pub const fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// How many may pass at once (GCRA); equal to the count unless set.
    #[must_use]
    pub const fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// The GCRA emission interval in microseconds, rounded up so the admitted rate is never
    /// above the quota.
    pub(crate) fn gcra_interval_micros(&self) -> u64 {
        self.interval_us
    }

    /// The window length in microseconds.
    pub(crate) fn period_micros(&self) -> u64 {
        self.period_us
    }
}

fn parse_period(text: &str) -> Result<Duration, QuotaError> {
    let bad = || QuotaError::InvalidPeriod(text.to_owned());
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (mult, unit) = text.split_at(digits_end);
    let mult: u64 = if mult.is_empty() {
        1
    } else {
        mult.parse().map_err(|_| bad())?
    };
    if mult == 0 {
        return Err(QuotaError::Zero);
    }
    let unit_us: u64 = match unit.trim() {
        "us" | "microsecond" | "microseconds" => 1,
        "ms" | "msec" | "millisecond" | "milliseconds" => 1_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let us = mult.checked_mul(unit_us).ok_or(QuotaError::TooLarge)?;
    Ok(Duration::from_micros(us))
}

fn parse_nonzero(text: &str, err: impl Fn() -> QuotaError) -> Result<NonZeroU32, QuotaError> {
    let n: u32 = text.parse().map_err(|_| err())?;
    NonZeroU32::new(n).ok_or(QuotaError::Zero)
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(QuotaError::Empty);
        }
        let (count, rest) = s
            .split_once('/')
            .ok_or_else(|| QuotaError::MissingSlash(s.to_owned()))?;
        let count = count.trim();
        let count = parse_nonzero(count, || QuotaError::InvalidCount(count.to_owned()))?;
        let mut words = rest.split_whitespace();
        let period = parse_period(words.next().unwrap_or_default())?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => count,
            (Some("burst"), Some(b), None) => {
                parse_nonzero(b, || QuotaError::InvalidBurst(rest.trim().to_owned()))?
            }
            _ => return Err(QuotaError::InvalidBurst(rest.trim().to_owned())),
        };
        Self::with_burst(count, period, burst)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let units: [(u128, &str); 5] = [
            (86_400_000, "day"),
            (3_600_000, "h"),
            (60_000, "min"),
            (1_000, "s"),
            (1, "ms"),
        ];
        write!(f, "{}/", self.count)?;
        match units.iter().find(|(u, _)| {
            ms >= *u
                && ms.is_multiple_of(*u)
                && self.period.subsec_nanos().is_multiple_of(1_000_000)
        }) {
            Some((u, name)) if ms / u == 1 => write!(f, "{name}")?,
            Some((u, name)) => write!(f, "{}{name}", ms / u)?,
            None => write!(f, "{}us", self.period.as_micros())?,
        }
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl Serialize for Quota {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Quota, QuotaError> {
        s.parse()
    }

    #[test]
    fn parses_common_forms() {
        let a = q("100/min").unwrap();
        assert_eq!(
            (a.count().get(), a.period(), a.burst().get()),
            (100, Duration::from_secs(60), 100)
        );
        let b = q(" 10 / s  burst 20 ").unwrap();
        assert_eq!(
            (b.count().get(), b.period(), b.burst().get()),
            (10, Duration::from_secs(1), 20)
        );
        let c = q("1000/5min").unwrap();
        assert_eq!(c.period(), Duration::from_secs(300));
        assert_eq!(q("5/250ms").unwrap().period(), Duration::from_millis(250));
        assert_eq!(q("7/day").unwrap().period(), Duration::from_secs(86_400));
    }

    #[test]
    fn rejects_with_clear_errors() {
        assert_eq!(q(""), Err(QuotaError::Empty));
        assert_eq!(q("100"), Err(QuotaError::MissingSlash("100".into())));
        assert_eq!(q("x/min"), Err(QuotaError::InvalidCount("x".into())));
        assert_eq!(q("-1/min"), Err(QuotaError::InvalidCount("-1".into())));
        assert_eq!(q("0/min"), Err(QuotaError::Zero));
        assert_eq!(q("10/0s"), Err(QuotaError::Zero));
        assert_eq!(
            q("10/fortnight"),
            Err(QuotaError::InvalidPeriod("fortnight".into()))
        );
        assert_eq!(q("10/"), Err(QuotaError::InvalidPeriod(String::new())));
        assert_eq!(q("10/s burst 0"), Err(QuotaError::Zero));
        assert_eq!(
            q("10/s burst"),
            Err(QuotaError::InvalidBurst("s burst".into()))
        );
        assert_eq!(
            q("10/s bust 3"),
            Err(QuotaError::InvalidBurst("s bust 3".into()))
        );
        assert_eq!(
            q("10/s burst 3 x"),
            Err(QuotaError::InvalidBurst("s burst 3 x".into()))
        );
        assert_eq!(q("4000000000/100000day"), Err(QuotaError::TooLarge));
        assert_eq!(q("1/99999999999999999day"), Err(QuotaError::TooLarge));
        let err = q("10/fortnight").unwrap_err().to_string();
        assert!(err.contains("fortnight") && err.contains("min"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "100/min",
            "10/s burst 20",
            "1000/5min",
            "5/250ms",
            "7/day",
            "3/2h",
        ] {
            assert_eq!(q(s).unwrap().to_string(), s);
            assert_eq!(q(&q(s).unwrap().to_string()).unwrap(), q(s).unwrap());
        }
        let odd = Quota::new(NonZeroU32::MIN, Duration::from_micros(1500)).unwrap();
        assert_eq!(odd.to_string(), "1/1500us");
        assert_eq!(q("1/1500us").unwrap(), odd);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let v: Quota = serde_json::from_str("\"10/s burst 20\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"10/s burst 20\"");
        assert!(serde_json::from_str::<Quota>("\"0/s\"").is_err());
    }

    #[test]
    fn interval_rounds_up() {
        let three = q("3/s").unwrap();
        assert_eq!(three.gcra_interval_micros(), 333_334);
    }
}
