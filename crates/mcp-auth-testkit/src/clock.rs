//! [`FakeClock`]: a settable [`Clock`] for deterministic expiry tests.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_auth_core::Clock;

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use mcp_auth_core::Clock;
/// use mcp_auth_testkit::FakeClock;
///
/// let clock = FakeClock::new();
/// let shared = clock.clone();
/// let t0 = clock.now();
/// shared.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), t0 + Duration::from_secs(90));
/// ```
#[derive(Clone, Debug)]
pub struct FakeClock {
    now: Arc<Mutex<SystemTime>>,
}

impl FakeClock {
    /// The default start: 2025-01-01T00:00:00Z (Unix time 1 735 689 600).
    pub const DEFAULT_START_UNIX: u64 = 1_735_689_600;

    /// A clock at [`FakeClock::DEFAULT_START_UNIX`].
    pub fn new() -> Self {
        Self::at(UNIX_EPOCH + Duration::from_secs(Self::DEFAULT_START_UNIX))
    }

    /// A clock at `start`.
    pub fn at(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock at the current system time (for tests that mix it with real tokens).
    pub fn at_system_now() -> Self {
        Self::at(SystemTime::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Moves the clock back by `by` (to test tokens issued "in the future").
    pub fn rewind(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now -= by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }

    /// The current fake time as whole seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_fixed_and_moves_only_when_told() {
        let clock = FakeClock::new();
        assert_eq!(clock.unix_secs(), FakeClock::DEFAULT_START_UNIX);
        assert_eq!(clock.now(), clock.now());
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.unix_secs(), FakeClock::DEFAULT_START_UNIX + 10);
        clock.rewind(Duration::from_secs(4));
        assert_eq!(clock.unix_secs(), FakeClock::DEFAULT_START_UNIX + 6);
        clock.set(UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(clock.unix_secs(), 5);
    }

    #[test]
    fn clones_share_time_and_work_as_dyn_clock() {
        let clock = FakeClock::at(UNIX_EPOCH);
        let dynamic: Arc<dyn Clock> = Arc::new(clock.clone());
        clock.advance(Duration::from_secs(3));
        assert_eq!(dynamic.now(), UNIX_EPOCH + Duration::from_secs(3));
    }
}
