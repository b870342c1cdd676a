//! A histogram with fixed buckets that records without a lock.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation. This one keeps one
//! atomic counter per bucket and the sum in two atomics: observations in seconds (`f64`) are
//! added to the bits of an `f64` with a compare-and-swap, observations in whole nanoseconds
//! (the layer's timings) to an integer with one `fetch_add`. It encodes exactly like
//! prometheus-client's classic histogram (`_sum`, `_count`, cumulative `_bucket{le}` ending with
//! `+Inf`); `_sum` is the `f64` sum plus the nanosecond sum in seconds.
//!
//! An encoding reads the counters one by one while observations go on, so it may see an
//! observation in its bucket but not yet in `_sum` (or the reverse). `_count` is the sum of
//! the bucket counts it read, so it always equals the `+Inf` bucket.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The longest single observation in nanoseconds (about 146 years); longer ones are clamped.
const MAX_NANOS: u64 = 1 << 62;
/// When the nanosecond sum has reached this, it is moved into the `f64` sum. An observation
/// adds at most [`MAX_NANOS`], so the integer sum never overflows.
const FOLD_NANOS_AT: u64 = 1 << 62;

/// Bucket upper bounds, in seconds and in whole nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// Finite upper bounds, strictly increasing (checked by the configuration).
    seconds: Arc<[f64]>,
    /// Per bound, the first nanosecond count that does not fit under it: `n` ns belongs under
    /// bound `b` when `n < nanos_after` (0: none does).
    nanos_after: Arc<[u64]>,
}

impl Bounds {
    /// Finite, increasing upper bounds in seconds.
    pub(crate) fn new(seconds: &[f64]) -> Self {
        Self {
            seconds: Arc::from(seconds),
            nanos_after: seconds.iter().map(|b| first_nanos_above(*b)).collect(),
        }
    }
}

/// The seconds a duration of `nanos` ns is observed as on the `f64` path.
fn secs_f64(nanos: u64) -> f64 {
    std::time::Duration::from_nanos(nanos).as_secs_f64()
}

/// The smallest `n` (up to `MAX_NANOS + 1`) with `secs_f64(n) > bound`, so that a duration goes
/// to the same bucket whether it is observed in nanoseconds or as `Duration::as_secs_f64`.
/// `secs_f64` never decreases, so the durations under a bound are exactly `0..n`.
fn first_nanos_above(bound: f64) -> u64 {
    // Bounds are finite (checked by the configuration); below zero, no duration fits.
    if bound < 0.0 {
        return 0;
    }
    // A float-to-integer `as` saturates; the estimate is then off by rounding only.
    let mut n = ((bound * 1e9) as u64).min(MAX_NANOS);
    while n > 0 && secs_f64(n) > bound {
        n -= 1;
    }
    while n <= MAX_NANOS && secs_f64(n) <= bound {
        n += 1;
    }
    n
}

#[derive(Debug)]
struct Inner {
    bounds: Bounds,
    /// Observations per bucket (not cumulative); one more than the bounds, the last for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations in seconds, as `f64` bits.
    sum: AtomicU64,
    /// The sum of observations in nanoseconds not yet moved into `sum`.
    sum_nanos: AtomicU64,
}

/// A lock-free histogram (cheap to clone: clones share the counters).
#[derive(Debug, Clone)]
pub(crate) struct AtomicHistogram(Arc<Inner>);

impl AtomicHistogram {
    /// A histogram with these finite, increasing upper bounds (and `+Inf`).
    pub(crate) fn new(bounds: Bounds) -> Self {
        let counts = (0..=bounds.seconds.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records `v` seconds in the first bucket whose upper bound is at least `v` (NaN goes to
    /// `+Inf`).
    pub(crate) fn observe(&self, v: f64) {
        let inner = &*self.0;
        let i = inner
            .bounds
            .seconds
            .iter()
            .position(|upper| v <= *upper)
            .unwrap_or(inner.bounds.seconds.len());
        if let Some(count) = inner.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        inner.add_seconds(v);
    }

    /// Records `nanos` nanoseconds (clamped to about 146 years) in the bucket that
    /// `observe(Duration::from_nanos(nanos).as_secs_f64())` would choose, with one integer
    /// comparison per bucket passed, one increment and one `fetch_add`.
    #[inline]
    pub(crate) fn observe_nanos(&self, nanos: u64) {
        let inner = &*self.0;
        let nanos = nanos.min(MAX_NANOS);
        let i = inner
            .bounds
            .nanos_after
            .iter()
            .position(|after| nanos < *after)
            .unwrap_or(inner.bounds.nanos_after.len());
        if let Some(count) = inner.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed) >= FOLD_NANOS_AT {
            inner.fold_nanos();
        }
    }

    /// The sum, the count and the buckets as prometheus-client encodes them: each upper bound
    /// (ending with `+Inf`) with the number of observations in that bucket alone.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.0;
        let nanos = inner.sum_nanos.load(Ordering::Relaxed);
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        let sum = if nanos == 0 {
            sum
        } else {
            sum + nanos as f64 / 1e9
        };
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .seconds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum, count, buckets)
    }
}

impl Inner {
    /// Adds `v` seconds to the `f64` sum.
    fn add_seconds(&self, v: f64) {
        let mut old = self.sum.load(Ordering::Relaxed);
        // Bounded in practice: each failed exchange means another observation got in between.
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match self
                .sum
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => old = current,
            }
        }
    }

    /// Moves the nanosecond sum into the `f64` sum (about every 146 years of observed time).
    #[cold]
    fn fold_nanos(&self) {
        let nanos = self.sum_nanos.swap(0, Ordering::Relaxed);
        self.add_seconds(nanos as f64 / 1e9);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};
    use proptest::prelude::*;

    fn encoded(metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static) -> String {
        let mut registry = Registry::default();
        registry.register_with_unit("d", "Latency", Unit::Seconds, metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn bucket_edges_are_inclusive() {
        let h = AtomicHistogram::new(Bounds::new(&[0.1, 1.0]));
        for v in [0.0, 0.1, 0.5, 1.0, 1.5, f64::NAN] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert!(sum.is_nan());
        assert_eq!(count, 6);
        assert_eq!(buckets, [(0.1, 2), (1.0, 2), (f64::INFINITY, 2)]);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new(Bounds::new(&[0.5]));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        h.observe(if i % 2 == 0 { 0.25 } else { 1.0 });
                    }
                });
            }
        });
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 40_000);
        assert_eq!(buckets, [(0.5, 20_000), (f64::INFINITY, 20_000)]);
        // Every value and partial sum is exact in binary floating point.
        assert_eq!(sum, 20_000.0 * 0.25 + 20_000.0);
    }

    #[test]
    fn nanosecond_observations_are_summed_in_seconds() {
        let h = AtomicHistogram::new(Bounds::new(&[0.001, 1.0]));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        h.observe_nanos(if i % 2 == 0 { 1_000_000 } else { 1_000_001 });
                    }
                });
            }
        });
        h.observe(0.5);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 40_001);
        assert_eq!(
            buckets,
            [(0.001, 20_000), (1.0, 20_001), (f64::INFINITY, 0)]
        );
        assert_eq!(sum, 0.5 + 40_000_020_000.0 / 1e9);
    }

    #[test]
    fn huge_observations_are_clamped_and_the_sum_is_folded() {
        let h = AtomicHistogram::new(Bounds::new(&[1.0, 1e300]));
        h.observe_nanos(u64::MAX);
        h.observe_nanos(MAX_NANOS);
        h.observe_nanos(2_000_000_000);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets, [(1.0, 0), (1e300, 3), (f64::INFINITY, 0)]);
        // The first two reached the fold threshold: they were moved into the `f64` sum.
        assert_eq!(h.0.sum_nanos.load(Ordering::Relaxed), 2_000_000_000);
        let expected = 2.0 * MAX_NANOS as f64 / 1e9 + 2.0;
        assert!(
            (sum - expected).abs() <= expected * 1e-15,
            "{sum} vs {expected}"
        );
    }

    #[test]
    fn bounds_below_zero_or_beyond_the_clamp_hold_none_or_all() {
        assert_eq!(first_nanos_above(-1.0), 0);
        assert_eq!(first_nanos_above(0.0), 1);
        assert_eq!(first_nanos_above(1e300), MAX_NANOS + 1);
        assert_eq!(first_nanos_above(0.001), 1_000_001);
    }

    proptest! {
        /// The exposition is the same as prometheus-client's own histogram's.
        #[test]
        fn encodes_like_prometheus_client(
            bounds in proptest::collection::btree_set(0u32..10_000, 1..12),
            values in proptest::collection::vec(0u32..12_000, 0..60),
        ) {
            let bounds: Vec<f64> = bounds.into_iter().map(|b| f64::from(b) / 1000.0).collect();
            let ours = AtomicHistogram::new(Bounds::new(&bounds));
            let theirs = Histogram::new(bounds.iter().copied());
            for v in values {
                let v = f64::from(v) / 1000.0;
                ours.observe(v);
                theirs.observe(v);
            }
            prop_assert_eq!(encoded(ours), encoded(theirs));
        }

        /// A duration lands in the same bucket observed in nanoseconds as observed as
        /// `Duration::as_secs_f64`, at and around every bucket edge too.
        #[test]
        fn nanoseconds_choose_the_bucket_of_their_seconds(
            bounds in proptest::collection::btree_set(0u64..20_000_000_000, 1..12),
            scale in prop_oneof![Just(1.0), Just(1e-3), Just(0.1), 1e-9..1e3f64],
            values in proptest::collection::vec(0u64..30_000_000_000, 0..40),
        ) {
            let mut bounds: Vec<f64> = bounds.into_iter().map(|b| b as f64 * scale / 1e9).collect();
            bounds.dedup();
            let edges = Bounds::new(&bounds);
            let nanos = edges.nanos_after.iter().flat_map(|n| [n.saturating_sub(1), *n, n + 1]);
            for n in values.into_iter().chain(nanos) {
                let by_nanos = AtomicHistogram::new(edges.clone());
                let by_secs = AtomicHistogram::new(edges.clone());
                by_nanos.observe_nanos(n);
                by_secs.observe(secs_f64(n));
                prop_assert_eq!(by_nanos.snapshot().2, by_secs.snapshot().2, "{} ns", n);
            }
        }
    }
}
