//! An injectable wall clock, so expiry and refresh are tested deterministically.

use std::fmt::Debug;
use std::time::SystemTime;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A settable clock for the crate's unit tests (the testkit's `FakeClock` depends on this
/// crate, so unit tests inside it cannot use it).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestClock(std::sync::Mutex<SystemTime>);

#[cfg(test)]
impl TestClock {
    /// A clock standing at `secs` seconds after the Unix epoch.
    pub(crate) fn at(secs: u64) -> std::sync::Arc<Self> {
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::sync::Arc::new(Self(std::sync::Mutex::new(start)))
    }

    /// Moves the clock to `secs` seconds after the Unix epoch.
    pub(crate) fn set(&self, secs: u64) {
        *self.0.lock().unwrap() = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    }

    /// Moves the clock forward by `by`.
    pub(crate) fn advance(&self, by: std::time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

#[cfg(test)]
impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}
