//! Bounded usage history of one class: a ring of samples and summaries over windows of it.

use std::collections::VecDeque;

use serde::Serialize;

/// One sample of a class, taken by the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// When it was taken (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// The most connections in use at once since the previous sample.
    pub in_use: u32,
    /// The class's limit when the sample was taken.
    pub limit: u32,
    /// Acquires that waited since the previous sample.
    pub waits: u32,
    /// Acquires that timed out since the previous sample.
    pub timeouts: u32,
}

/// A summary of the samples in a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UsageSummary {
    /// Samples in the window.
    pub samples: u32,
    /// 95th percentile (nearest rank) of the peak connections in use.
    pub p95_in_use: u32,
    /// Highest peak.
    pub max_in_use: u32,
    /// Mean peak.
    pub mean_in_use: f64,
    /// 95th percentile of the peak in use as a fraction of the limit at the time.
    pub p95_utilisation: Option<f64>,
    /// Waits in the window.
    pub waits: u64,
    /// Timeouts in the window.
    pub timeouts: u64,
}

/// The ring of samples. Not on the acquire path: only the sampler and snapshots touch it.
#[derive(Debug)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
    /// Samples taken since the limit last changed.
    since_change: usize,
    last_waits: u64,
    last_timeouts: u64,
}

impl History {
    /// An empty history of `capacity` samples (at least one), with the counters' current
    /// totals as the base for the first deltas.
    pub(crate) fn new(capacity: usize, waits: u64, timeouts: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            samples: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            since_change: 0,
            last_waits: waits,
            last_timeouts: timeouts,
        }
    }

    /// Appends a sample from the counters' totals, dropping the oldest when full.
    pub(crate) fn record(
        &mut self,
        at_unix_ms: u64,
        in_use: u32,
        limit: u32,
        waits_total: u64,
        timeouts_total: u64,
    ) {
        let delta =
            |now: u64, last: u64| u32::try_from(now.saturating_sub(last)).unwrap_or(u32::MAX);
        let sample = Sample {
            at_unix_ms,
            in_use,
            limit,
            waits: delta(waits_total, self.last_waits),
            timeouts: delta(timeouts_total, self.last_timeouts),
        };
        self.last_waits = waits_total;
        self.last_timeouts = timeouts_total;
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.since_change = self.since_change.saturating_add(1);
    }

    /// The limit changed: later windows start after this point.
    pub(crate) fn mark_changed(&mut self) {
        self.since_change = 0;
    }

    /// The last `window` samples taken since the limit last changed.
    pub(crate) fn window(&self, window: usize) -> UsageSummary {
        let n = window.min(self.since_change).min(self.samples.len());
        summarise(self.samples.iter().skip(self.samples.len() - n))
    }

    /// Every sample held.
    pub(crate) fn all(&self) -> UsageSummary {
        summarise(self.samples.iter())
    }

    /// A copy of the samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Nearest-rank 95th percentile of sorted values.
fn p95<T: Copy>(sorted: &[T]) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (n * 95).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn summarise<'a>(samples: impl Iterator<Item = &'a Sample>) -> UsageSummary {
    let mut in_use = Vec::new();
    let mut utilisation = Vec::new();
    let (mut waits, mut timeouts) = (0_u64, 0_u64);
    for s in samples {
        in_use.push(s.in_use);
        if s.limit > 0 {
            utilisation.push(f64::from(s.in_use) / f64::from(s.limit));
        }
        waits += u64::from(s.waits);
        timeouts += u64::from(s.timeouts);
    }
    let mean_in_use = if in_use.is_empty() {
        0.0
    } else {
        in_use.iter().map(|&v| f64::from(v)).sum::<f64>() / in_use.len() as f64
    };
    in_use.sort_unstable();
    utilisation.sort_unstable_by(f64::total_cmp);
    UsageSummary {
        samples: u32::try_from(in_use.len()).unwrap_or(u32::MAX),
        p95_in_use: p95(&in_use).unwrap_or(0),
        max_in_use: in_use.last().copied().unwrap_or(0),
        mean_in_use,
        p95_utilisation: p95(&utilisation),
        waits,
        timeouts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_capacity_samples() {
        let mut h = History::new(3, 0, 0);
        for i in 0..5 {
            h.record(i, i as u32, 10, 0, 0);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.samples().iter().map(|s| s.in_use).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn waits_are_deltas_of_the_totals() {
        let mut h = History::new(10, 5, 1);
        h.record(0, 1, 10, 7, 1);
        h.record(1, 1, 10, 7, 3);
        let s = h.samples();
        assert_eq!((s[0].waits, s[0].timeouts), (2, 0));
        assert_eq!((s[1].waits, s[1].timeouts), (0, 2));
        assert_eq!(h.all().waits, 2);
        assert_eq!(h.all().timeouts, 2);
    }

    #[test]
    fn windows_start_after_the_last_change() {
        let mut h = History::new(100, 0, 0);
        for _ in 0..10 {
            h.record(0, 9, 10, 0, 0);
        }
        h.mark_changed();
        h.record(0, 1, 20, 0, 0);
        let w = h.window(5);
        assert_eq!((w.samples, w.p95_in_use), (1, 1));
        assert_eq!(h.all().samples, 11);
        assert_eq!(h.all().p95_in_use, 9);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut h = History::new(100, 0, 0);
        for i in 1..=20 {
            h.record(0, i, 20, 0, 0);
        }
        let s = h.all();
        assert_eq!(s.p95_in_use, 19);
        assert_eq!(s.max_in_use, 20);
        assert!((s.mean_in_use - 10.5).abs() < 1e-9);
        assert_eq!(s.p95_utilisation, Some(0.95));
        assert_eq!(History::new(1, 0, 0).all().p95_utilisation, None);
    }
}
