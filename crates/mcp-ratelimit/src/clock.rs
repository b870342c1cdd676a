//! Injected time: the `Clock` trait, the system clock, a fake clock and a tokio clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in whole microseconds since the UNIX epoch.
///
/// Microseconds keep every value exact in a Redis Lua number (a double) for the next
/// 285 years, which is why the Redis scripts and the in-memory store share this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `micros` microseconds after the UNIX epoch.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the UNIX epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// This timestamp moved `d` later (saturating).
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_micros(d)))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in whole microseconds, rounded up (so a limit is never loosened by
/// rounding) and saturating at `u64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    // u64 arithmetic only: this runs on every decision and u128 division is slow.
    let sub = d.subsec_nanos().div_ceil(1_000);
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(sub))
}

/// A source of the current time. Inject one into every limiter so tests are deterministic.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The real clock: UNIX time read once at construction, advanced by the CPU's monotonic
/// time-stamp counter (through `quanta`, falling back to the OS monotonic clock), so
/// wall-clock jumps (NTP steps) never move a limiter backwards and a reading costs a few
/// nanoseconds.
#[derive(Debug, Clone)]
pub struct SystemClock {
    base: Timestamp,
    clock: quanta::Clock,
    start: u64,
}

impl SystemClock {
    /// A clock anchored at the current UNIX time.
    #[must_use]
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let clock = quanta::Clock::new();
        let start = clock.raw();
        Self {
            base: Timestamp(duration_micros(since_epoch)),
            clock,
            start,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = self.clock.delta_as_nanos(self.start, self.clock.raw());
        Timestamp(self.base.0.saturating_add(nanos.div_ceil(1_000)))
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct FakeClock {
    micros: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock showing `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicU64::new(start.as_micros())),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let add = duration_micros(d);
        // `fetch_update` with a saturating add never fails because the closure always
        // returns `Some`; the result is ignored for that reason.
        let _ = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_add(add))
            });
    }

    /// Sets the clock to `t` (which may move it backwards, to test clock skew).
    pub fn set(&self, t: Timestamp) {
        self.micros.store(t.as_micros(), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.load(Ordering::SeqCst))
    }
}

/// A clock driven by tokio's time, so `tokio::time::pause` and `advance` control it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored at the current UNIX time and tokio's current instant.
    #[must_use]
    pub fn new() -> Self {
        Self {
            base: SystemClock::new().now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base.saturating_add(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new(Timestamp::from_micros(10));
        assert_eq!(c.now().as_micros(), 10);
        c.advance(Duration::from_millis(2));
        assert_eq!(c.now().as_micros(), 2_010);
        let shared = c.clone();
        shared.advance(Duration::from_nanos(1));
        assert_eq!(c.now().as_micros(), 2_011, "sub-microsecond rounds up");
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(duration_micros(Duration::from_nanos(1_001)), 2);
        assert_eq!(duration_micros(Duration::MAX), u64::MAX);
    }

    #[test]
    fn system_clock_is_unix_time_and_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let diff = duration_micros(unix).abs_diff(a.as_micros());
        assert!(diff < 60_000_000, "within a minute of UNIX time: {diff} us");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(c.now().saturating_since(t0), Duration::from_secs(3));
    }
}
