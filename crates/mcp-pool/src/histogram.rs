//! A fixed-bucket histogram of acquire waits, recorded with two relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the acquire-wait buckets, in nanoseconds (100 µs to 60 s); a last,
/// unbounded bucket catches anything longer.
const BOUNDS_NANOS: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The bucket upper bounds of [`HistogramSnapshot::buckets`], in seconds.
pub const WAIT_BUCKETS_SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Lock-free histogram: per-bucket counters and a sum in nanoseconds. The count is the sum of
/// the buckets, so a snapshot's buckets and count always agree.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    /// Records one observation. Most waits are short, so the linear scan usually stops at
    /// the first bound.
    pub(crate) fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let index = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BOUNDS_NANOS.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current state with cumulative bucket counts.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0_u64;
        let mut buckets = Vec::with_capacity(BOUNDS_NANOS.len());
        for (count, le) in self.counts.iter().zip(WAIT_BUCKETS_SECONDS) {
            cumulative = cumulative.saturating_add(count.load(Ordering::Relaxed));
            buckets.push(Bucket {
                le_seconds: le,
                count: cumulative,
            });
        }
        let overflow = self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        let count = cumulative.saturating_add(overflow);
        let sum_seconds =
            Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        HistogramSnapshot {
            p50_seconds: quantile(&buckets, count, 0.50),
            p95_seconds: quantile(&buckets, count, 0.95),
            p99_seconds: quantile(&buckets, count, 0.99),
            buckets,
            count,
            sum_seconds,
        }
    }
}

/// The upper bound of the bucket that holds the `q` quantile; `None` when there are no
/// observations or the quantile lies beyond the last bound (60 s).
fn quantile(buckets: &[Bucket], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    // Nearest rank: the smallest bucket whose cumulative count reaches ceil(q * count).
    let rank = (q * count as f64).ceil().max(1.0);
    buckets
        .iter()
        .find(|b| b.count as f64 >= rank)
        .map(|b| b.le_seconds)
}

/// One cumulative bucket: observations of at most `le_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound in seconds.
    pub le_seconds: f64,
    /// Observations at or below the bound (cumulative).
    pub count: u64,
}

/// A copy of an acquire-wait histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Cumulative buckets for [`WAIT_BUCKETS_SECONDS`]; observations above the last bound
    /// are only in `count`.
    pub buckets: Vec<Bucket>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations in seconds.
    pub sum_seconds: f64,
    /// Upper bound of the bucket holding the median.
    pub p50_seconds: Option<f64>,
    /// Upper bound of the bucket holding the 95th percentile.
    pub p95_seconds: Option<f64>,
    /// Upper bound of the bucket holding the 99th percentile.
    pub p99_seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_agree_with_the_public_seconds() {
        for (nanos, seconds) in BOUNDS_NANOS.iter().zip(WAIT_BUCKETS_SECONDS) {
            assert_eq!(
                Duration::from_nanos(*nanos),
                Duration::from_secs_f64(seconds)
            );
        }
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn records_into_the_first_bucket_that_holds_the_value() {
        let h = AtomicHistogram::default();
        h.record(Duration::from_micros(100)); // exactly on the first bound
        h.record(Duration::from_micros(101));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(3600)); // beyond the last bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0].count, 1);
        assert_eq!(s.buckets[1].count, 2);
        assert_eq!(s.buckets[4].count, 2);
        assert_eq!(s.buckets[5].count, 3);
        assert_eq!(s.buckets.last().map(|b| b.count), Some(3));
        assert!((s.sum_seconds - 3_600.003_201).abs() < 1e-9);
        assert_eq!(s.p50_seconds, Some(0.00025));
        assert_eq!(s.p95_seconds, None);
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let s = AtomicHistogram::default().snapshot();
        assert_eq!(s.count, 0);
        assert_eq!(s.p50_seconds, None);
        assert!(s.buckets.iter().all(|b| b.count == 0));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let h = AtomicHistogram::default();
        for _ in 0..95 {
            h.record(Duration::from_micros(50));
        }
        for _ in 0..5 {
            h.record(Duration::from_millis(20));
        }
        let s = h.snapshot();
        assert_eq!(s.p50_seconds, Some(0.0001));
        assert_eq!(s.p95_seconds, Some(0.0001));
        assert_eq!(s.p99_seconds, Some(0.025));
    }
}
