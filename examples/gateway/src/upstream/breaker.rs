//! A lock-free circuit breaker: closed -> open after N consecutive failures -> half-open (one
//! probe) after a cool-down -> closed on the probe's success or open again on its failure.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source, so the breaker's timing is tested without sleeping.
pub(crate) trait Ticker: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemTicker;

impl Ticker for SystemTicker {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Requests pass.
    Closed,
    /// Requests fail fast until the cool-down ends.
    Open,
    /// One probe is in flight; other requests fail fast.
    HalfOpen,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the breaker-state gauge.
    pub(crate) fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

/// What [`Breaker::admit`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// An ordinary request (the breaker is closed).
    Normal,
    /// The one probe of a half-open breaker.
    Probe,
}

/// A state change, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Closed -> open.
    Opened,
    /// Half-open -> open (the probe failed).
    Reopened,
    /// Half-open -> closed (the probe succeeded).
    Closed,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_SHIFT: u32 = 62;
const TIME_MASK: u64 = (1 << STATE_SHIFT) - 1;

/// The breaker. The state and the instant it began (nanoseconds since `origin`) share one
/// atomic word, so every transition is a single compare-and-swap; the closed path reads one
/// atomic and no clock.
pub(crate) struct Breaker {
    /// State in the top two bits; when open, the instant it opened; when half-open, the
    /// instant the probe started.
    word: AtomicU64,
    failures: AtomicU32,
    opened_total: AtomicU64,
    threshold: u32,
    cool_down: Duration,
    origin: Instant,
    ticker: Arc<dyn Ticker>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.state())
            .field("failures", &self.consecutive_failures())
            .field("threshold", &self.threshold)
            .field("cool_down", &self.cool_down)
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A closed breaker opening after `threshold` consecutive failures for `cool_down`.
    pub(crate) fn new(threshold: u32, cool_down: Duration, ticker: Arc<dyn Ticker>) -> Self {
        Self {
            word: AtomicU64::new(CLOSED << STATE_SHIFT),
            failures: AtomicU32::new(0),
            opened_total: AtomicU64::new(0),
            threshold: threshold.max(1),
            cool_down,
            origin: ticker.now(),
            ticker,
        }
    }

    fn pack(state: u64, at: u64) -> u64 {
        (state << STATE_SHIFT) | (at & TIME_MASK)
    }

    fn now_nanos(&self) -> u64 {
        let nanos = self
            .ticker
            .now()
            .saturating_duration_since(self.origin)
            .as_nanos();
        u64::try_from(nanos).unwrap_or(TIME_MASK).min(TIME_MASK)
    }

    fn cool_down_nanos(&self) -> u64 {
        u64::try_from(self.cool_down.as_nanos()).unwrap_or(TIME_MASK)
    }

    /// Whether a request may go to the upstream now: `Ok` with the kind of permit, or `Err`
    /// with how long until a probe may be tried.
    pub(crate) fn admit(&self) -> Result<Permit, Duration> {
        let word = self.word.load(Ordering::Acquire);
        let state = word >> STATE_SHIFT;
        if state == CLOSED {
            return Ok(Permit::Normal);
        }
        // Open: the probe may start when the cool-down has passed. Half-open: a probe that
        // has not reported within a cool-down (its caller went away) is replaced.
        let since = word & TIME_MASK;
        let now = self.now_nanos();
        let due = since.saturating_add(self.cool_down_nanos());
        if now < due {
            return Err(Duration::from_nanos(due - now));
        }
        match self.word.compare_exchange(
            word,
            Self::pack(HALF_OPEN, now),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(Permit::Probe),
            // Another caller took the probe.
            Err(_) => Err(self.cool_down),
        }
    }

    /// Records a call the upstream answered (a JSON-RPC error counts: the upstream is alive).
    pub(crate) fn on_success(&self, permit: Permit) -> Option<Transition> {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if permit == Permit::Probe {
            let word = self.word.load(Ordering::Acquire);
            if word >> STATE_SHIFT == HALF_OPEN
                && self
                    .word
                    .compare_exchange(
                        word,
                        Self::pack(CLOSED, 0),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                return Some(Transition::Closed);
            }
        }
        None
    }

    /// Records a call that failed (timeout, broken or refused connection).
    pub(crate) fn on_failure(&self, permit: Permit) -> Option<Transition> {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let word = self.word.load(Ordering::Acquire);
        let state = word >> STATE_SHIFT;
        let (from, transition) = match (permit, state) {
            (Permit::Probe, HALF_OPEN) => (word, Transition::Reopened),
            (Permit::Normal, CLOSED) if failures >= self.threshold => (word, Transition::Opened),
            _ => return None,
        };
        let opened = Self::pack(OPEN, self.now_nanos());
        self.word
            .compare_exchange(from, opened, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| {
                self.opened_total.fetch_add(1, Ordering::Relaxed);
                transition
            })
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        match self.word.load(Ordering::Acquire) >> STATE_SHIFT {
            CLOSED => State::Closed,
            OPEN => State::Open,
            _ => State::HalfOpen,
        }
    }

    /// Failures since the last success.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How often the breaker has opened.
    pub(crate) fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }

    /// While open: how long until a probe may be tried.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        let word = self.word.load(Ordering::Acquire);
        if word >> STATE_SHIFT != OPEN {
            return None;
        }
        let due = (word & TIME_MASK).saturating_add(self.cool_down_nanos());
        Some(Duration::from_nanos(due.saturating_sub(self.now_nanos())))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A clock that moves only when told to.
    #[derive(Debug)]
    pub(crate) struct FakeTicker(Mutex<Instant>);

    impl FakeTicker {
        pub(crate) fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(Instant::now())))
        }

        pub(crate) fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Ticker for FakeTicker {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn breaker(threshold: u32) -> (Breaker, Arc<FakeTicker>) {
        let ticker = FakeTicker::new();
        (
            Breaker::new(threshold, Duration::from_secs(10), ticker.clone()),
            ticker,
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, _) = breaker(3);
        for _ in 0..2 {
            assert_eq!(b.on_failure(b.admit().unwrap()), None);
        }
        // A success resets the count.
        assert_eq!(b.on_success(b.admit().unwrap()), None);
        assert_eq!(b.consecutive_failures(), 0);
        for _ in 0..2 {
            assert_eq!(b.on_failure(b.admit().unwrap()), None);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.on_failure(b.admit().unwrap()), Some(Transition::Opened));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.opened_total(), 1);
    }

    #[test]
    fn open_fails_fast_until_the_cool_down_then_lets_one_probe_through() {
        let (b, clock) = breaker(1);
        assert_eq!(b.on_failure(Permit::Normal), Some(Transition::Opened));
        assert_eq!(b.admit(), Err(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(4));
        assert_eq!(b.admit(), Err(Duration::from_secs(6)));
        assert_eq!(b.retry_in(), Some(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        assert_eq!(b.admit(), Ok(Permit::Probe));
        assert_eq!(b.state(), State::HalfOpen);
        // Only one probe at a time.
        assert!(b.admit().is_err());
        assert_eq!(b.on_success(Permit::Probe), Some(Transition::Closed));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(), Ok(Permit::Normal));
    }

    #[test]
    fn a_failed_probe_reopens_for_a_whole_cool_down() {
        let (b, clock) = breaker(2);
        b.on_failure(Permit::Normal);
        b.on_failure(Permit::Normal);
        clock.advance(Duration::from_secs(10));
        let probe = b.admit().unwrap();
        assert_eq!(probe, Permit::Probe);
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.on_failure(probe), Some(Transition::Reopened));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(), Err(Duration::from_secs(10)));
        assert_eq!(b.opened_total(), 2);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let (b, clock) = breaker(1);
        b.on_failure(Permit::Normal);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.admit(), Ok(Permit::Probe));
        clock.advance(Duration::from_secs(9));
        assert!(b.admit().is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.admit(), Ok(Permit::Probe));
    }

    #[test]
    fn late_results_of_requests_admitted_before_opening_change_nothing() {
        let (b, clock) = breaker(1);
        let early = b.admit().unwrap();
        assert_eq!(b.on_failure(Permit::Normal), Some(Transition::Opened));
        // A request admitted while closed answers after the breaker opened.
        assert_eq!(b.on_success(early), None);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.on_failure(early), None);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.admit(), Ok(Permit::Probe));
    }
}
