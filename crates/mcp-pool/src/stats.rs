//! Per-class counters: relaxed atomics only, so the acquire path never takes a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::histogram::{AtomicHistogram, HistogramSnapshot};

/// The live counters of one class.
#[derive(Debug, Default)]
pub(crate) struct ClassStats {
    acquires: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    opened: AtomicU64,
    /// The highest `closed` ever reported, so the derived count never goes backwards.
    closed_reported: AtomicU64,
    /// Connections (or Redis handles) handed out through the class and not yet returned.
    in_flight: AtomicU32,
    /// The highest `in_flight` since the sampler last looked.
    peak: AtomicU32,
    wait: AtomicHistogram,
}

impl ClassStats {
    /// An acquire succeeded after `waited`; `contended` when it found no free capacity.
    pub(crate) fn acquired(&self, waited: Duration, contended: bool) {
        self.acquires.fetch_add(1, Ordering::Relaxed);
        if contended {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        self.wait.record(waited);
        let now = self
            .in_flight
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// A handed-out connection came back.
    pub(crate) fn released(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// An acquire gave up after `waited`. A timeout always means the caller waited.
    pub(crate) fn timed_out(&self, waited: Duration) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait.record(waited);
    }

    /// An acquire or command failed for another reason than a timeout.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was opened.
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed (used where the backend reports it; SQL classes derive it).
    #[cfg(feature = "redis")]
    pub(crate) fn closed(&self) {
        self.closed_reported.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The peak since the last call, restarting from the current level.
    pub(crate) fn take_peak(&self) -> u32 {
        self.peak.swap(self.in_flight(), Ordering::Relaxed)
    }

    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// A copy of the counters. `open_now` is the number of connections open right now: where
    /// closes cannot be observed (sqlx has no close hook), closed = opened - open, kept
    /// monotone.
    pub(crate) fn snapshot(&self, open_now: Option<u32>) -> StatsSnapshot {
        let acquires = self.acquires.load(Ordering::Relaxed);
        let opened = self.opened.load(Ordering::Relaxed);
        let closed = match open_now {
            Some(open) => {
                let derived = opened.saturating_sub(u64::from(open));
                let previous = self.closed_reported.fetch_max(derived, Ordering::Relaxed);
                previous.max(derived)
            }
            None => self.closed_reported.load(Ordering::Relaxed),
        };
        StatsSnapshot {
            acquires,
            waits: self.waits(),
            timeouts: self.timeouts(),
            errors: self.errors.load(Ordering::Relaxed),
            opened,
            closed,
            reuse_ratio: reuse_ratio(acquires, opened),
            acquire_wait: self.wait.snapshot(),
        }
    }
}

/// Share of acquires served by a connection that was already open: `1 - opened / acquires`,
/// within [0, 1]; `None` before the first acquire.
fn reuse_ratio(acquires: u64, opened: u64) -> Option<f64> {
    (acquires > 0).then(|| (1.0 - opened as f64 / acquires as f64).clamp(0.0, 1.0))
}

/// The counters of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Successful acquires through the class.
    pub acquires: u64,
    /// Acquires that found no free capacity and had to wait (timeouts included).
    pub waits: u64,
    /// Acquires that gave up after the class's acquire timeout.
    pub timeouts: u64,
    /// Acquires (SQL) or commands (Redis) that failed for another reason.
    pub errors: u64,
    /// Connections opened since start.
    pub opened: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Share of acquires served by an already open connection (`1 - opened / acquires`).
    pub reuse_ratio: Option<f64>,
    /// Time from the acquire call to the connection (or to the timeout).
    pub acquire_wait: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_is_derived_and_never_goes_back() {
        let stats = ClassStats::default();
        for _ in 0..5 {
            stats.opened();
        }
        assert_eq!(stats.snapshot(Some(5)).closed, 0);
        assert_eq!(stats.snapshot(Some(2)).closed, 3);
        // A connection being opened is counted in the pool size before `opened`: the derived
        // value would drop, the reported one does not.
        assert_eq!(stats.snapshot(Some(4)).closed, 3);
    }

    #[test]
    fn peak_covers_everything_between_two_samples() {
        let stats = ClassStats::default();
        stats.acquired(Duration::ZERO, false);
        stats.acquired(Duration::ZERO, false);
        stats.acquired(Duration::ZERO, true);
        stats.released();
        stats.released();
        assert_eq!(stats.in_flight(), 1);
        assert_eq!(stats.take_peak(), 3);
        assert_eq!(stats.take_peak(), 1);
        let snap = stats.snapshot(Some(0));
        assert_eq!((snap.acquires, snap.waits), (3, 1));
    }

    #[test]
    fn timeouts_count_as_waits() {
        let stats = ClassStats::default();
        stats.timed_out(Duration::from_millis(5));
        let snap = stats.snapshot(None);
        assert_eq!((snap.waits, snap.timeouts, snap.acquires), (1, 1, 0));
        assert_eq!(snap.acquire_wait.count, 1);
    }

    #[test]
    fn reuse_ratio_is_bounded() {
        assert_eq!(reuse_ratio(0, 3), None);
        assert_eq!(reuse_ratio(10, 1), Some(0.9));
        assert_eq!(reuse_ratio(2, 5), Some(0.0));
    }
}
