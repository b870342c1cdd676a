//! A histogram with fixed buckets that records without a lock.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation. This one keeps one
//! atomic counter per bucket and the sum as the bits of an `f64`, so an observation is a bucket
//! search, one increment and one compare-and-swap. It encodes exactly like prometheus-client's
//! classic histogram (`_sum`, `_count`, cumulative `_bucket{le}` ending with `+Inf`).
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

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, strictly increasing (checked by the configuration).
    bounds: Arc<[f64]>,
    /// Observations per bucket (not cumulative); one more than `bounds`, the last for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// A lock-free histogram (cheap to clone: clones share the counters).
#[derive(Debug, Clone)]
pub(crate) struct AtomicHistogram(Arc<Inner>);

impl AtomicHistogram {
    /// A histogram with these finite, increasing upper bounds (and `+Inf`).
    pub(crate) fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records `v` in the first bucket whose upper bound is at least `v` (NaN goes to `+Inf`).
    pub(crate) fn observe(&self, v: f64) {
        let inner = &*self.0;
        let i = inner
            .bounds
            .iter()
            .position(|upper| v <= *upper)
            .unwrap_or(inner.bounds.len());
        if let Some(count) = inner.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let mut old = inner.sum.load(Ordering::Relaxed);
        // Bounded in practice: each failed exchange means another observation got in between.
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match inner
                .sum
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => old = current,
            }
        }
    }

    /// The sum, the count and the buckets as prometheus-client encodes them: each upper bound
    /// (ending with `+Inf`) with the number of observations in that bucket alone.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.0;
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum, count, buckets)
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
        let h = AtomicHistogram::new(Arc::from([0.1, 1.0].as_slice()));
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
        let h = AtomicHistogram::new(Arc::from([0.5].as_slice()));
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

    proptest! {
        /// The exposition is the same as prometheus-client's own histogram's.
        #[test]
        fn encodes_like_prometheus_client(
            bounds in proptest::collection::btree_set(0u32..10_000, 1..12),
            values in proptest::collection::vec(0u32..12_000, 0..60),
        ) {
            let bounds: Vec<f64> = bounds.into_iter().map(|b| f64::from(b) / 1000.0).collect();
            let ours = AtomicHistogram::new(Arc::from(bounds.as_slice()));
            let theirs = Histogram::new(bounds.iter().copied());
            for v in values {
                let v = f64::from(v) / 1000.0;
                ours.observe(v);
                theirs.observe(v);
            }
            prop_assert_eq!(encoded(ours), encoded(theirs));
        }
    }
}
