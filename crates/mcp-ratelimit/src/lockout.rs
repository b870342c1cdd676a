//! Brute-force lockout: N failed authentications per (IP, subject) lock that pair out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::keys::{push_ip, push_part};
use crate::store::{RateLimitStore, StoreError};

/// Lockout thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures that trigger a lockout (default 5).
    pub max_failures: NonZeroU32,
    /// How long a lockout lasts (default 15 minutes).
    pub lockout: Duration,
    /// Failures older than this are forgotten (default 15 minutes).
    pub failure_window: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            lockout: Duration::from_secs(15 * 60),
            failure_window: Duration::from_secs(15 * 60),
        }
    }
}

/// The state of one (IP, subject) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockoutStatus {
    /// Authentication may be attempted.
    Open {
        /// Failures that may still happen before a lockout.
        attempts_left: u32,
    },
    /// Locked out; do not even check the credentials.
    Locked {
        /// Time until the lockout ends.
        retry_after: Duration,
    },
}

impl LockoutStatus {
    /// Whether the pair is locked out.
    #[must_use]
    pub const fn is_locked(&self) -> bool {
        matches!(self, Self::Locked { .. })
    }
}

/// Locks out an (IP, subject) pair after repeated failed authentications; works on any
/// [`RateLimitStore`]. Store errors are returned for the caller to decide (an
/// authentication path usually treats them as "not locked" and relies on its rate limits).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use mcp_ratelimit::{LockoutConfig, LoginLockout, MemoryStore};
///
/// let lockout = LoginLockout::new(MemoryStore::new(), LockoutConfig::default());
/// let ip = "192.0.2.1".parse().unwrap();
/// for _ in 0..5 {
///     lockout.record_failure(ip, "alice").await.unwrap();
/// }
/// assert!(lockout.check(ip, "alice").await.unwrap().is_locked());
/// assert!(!lockout.check(ip, "bob").await.unwrap().is_locked());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct LoginLockout<S> {
    store: S,
    config: LockoutConfig,
    clock: Arc<dyn Clock>,
}

impl<S: RateLimitStore> LoginLockout<S> {
    /// A lockout over `store` with the system clock.
    pub fn new(store: S, config: LockoutConfig) -> Self {
        Self::with_clock(store, config, SystemClock::new())
    }

    /// A lockout with an injected clock.
    pub fn with_clock(store: S, config: LockoutConfig, clock: impl Clock) -> Self {
        Self {
            store,
            config,
            clock: Arc::new(clock),
        }
    }

    /// The store key of the pair's `what` (`failures` or `locked`), built in one allocation:
    /// `check` runs on every authenticated request.
    fn key(ip: IpAddr, subject: &str, what: Record) -> String {
        let mut key = String::with_capacity(128);
        key.push_str("lockout:v:");
        push_ip(&mut key, ip);
        key.push(':');
        push_part(&mut key, subject);
        key.push(':');
        key.push_str(what.as_str());
        key
    }

    fn keys(ip: IpAddr, subject: &str) -> (String, String) {
        (
            Self::key(ip, subject, Record::Failures),
            Self::key(ip, subject, Record::Locked),
        )
    }

    /// The pair's state.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn check(&self, ip: IpAddr, subject: &str) -> Result<LockoutStatus, StoreError> {
        let now = self.clock.now();
        let locked = Self::key(ip, subject, Record::Locked);
        Ok(match self.store.get_flag(&locked, now).await? {
            Some(until) => LockoutStatus::Locked {
                retry_after: until.saturating_since(now),
            },
            None => LockoutStatus::Open {
                attempts_left: self.config.max_failures.get(),
            },
        })
    }

    /// Records a failed authentication; the returned state includes this failure.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn record_failure(
        &self,
        ip: IpAddr,
        subject: &str,
    ) -> Result<LockoutStatus, StoreError> {
        let now = self.clock.now();
        let (failures, locked) = Self::keys(ip, subject);
        if let Some(until) = self.store.get_flag(&locked, now).await? {
            return Ok(LockoutStatus::Locked {
                retry_after: until.saturating_since(now),
            });
        }
        let n = self
            .store
            .incr_counter(&failures, self.config.failure_window, now)
            .await?;
        let max = u64::from(self.config.max_failures.get());
        if n >= max {
            let until = now.saturating_add(self.config.lockout);
            self.store.set_flag(&locked, until, now).await?;
            self.store.delete(&failures).await?;
            tracing::warn!(ip = %ip, failures = n, "authentication lockout");
            return Ok(LockoutStatus::Locked {
                retry_after: self.config.lockout,
            });
        }
        Ok(LockoutStatus::Open {
            attempts_left: u32::try_from(max - n).unwrap_or(0),
        })
    }

    /// Records a successful authentication: the failure count starts over.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn record_success(&self, ip: IpAddr, subject: &str) -> Result<(), StoreError> {
        self.store
            .delete(&Self::key(ip, subject, Record::Failures))
            .await
    }

    /// Lifts a lockout early (an operator action).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn unlock(&self, ip: IpAddr, subject: &str) -> Result<(), StoreError> {
        let (failures, locked) = Self::keys(ip, subject);
        self.store.delete(&failures).await?;
        self.store.delete(&locked).await
    }
}

/// What a lockout key holds.
#[derive(Clone, Copy)]
enum Record {
    Failures,
    Locked,
}

impl Record {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Failures => "failures",
            Self::Locked => "locked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, Timestamp};
    use crate::store::memory::MemoryStore;

    #[test]
    fn keys_keep_their_stored_form() {
        let ip: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let (failures, locked) = LoginLockout::<MemoryStore>::keys(ip, "alice");
        assert_eq!(failures, "lockout:v:192.0.2.1:v:alice:failures");
        assert_eq!(locked, "lockout:v:192.0.2.1:v:alice:locked");
        let (_, hashed) = LoginLockout::<MemoryStore>::keys(ip, "two words");
        assert!(hashed.starts_with("lockout:v:192.0.2.1:h:") && hashed.ends_with(":locked"));
    }

    #[tokio::test]
    async fn locks_after_n_failures_and_expires() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let l =
            LoginLockout::with_clock(MemoryStore::new(), LockoutConfig::default(), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for left in (1..5).rev() {
            assert_eq!(
                l.record_failure(ip, "alice").await.unwrap(),
                LockoutStatus::Open {
                    attempts_left: left
                }
            );
        }
        assert!(l.record_failure(ip, "alice").await.unwrap().is_locked());
        clock.advance(Duration::from_secs(14 * 60));
        let LockoutStatus::Locked { retry_after } = l.check(ip, "alice").await.unwrap() else {
            panic!("still locked");
        };
        assert_eq!(retry_after, Duration::from_secs(60));
        // Other subjects and other IPs are not affected.
        assert!(!l.check(ip, "bob").await.unwrap().is_locked());
        assert!(
            !l.check("192.0.2.2".parse().unwrap(), "alice")
                .await
                .unwrap()
                .is_locked()
        );
        clock.advance(Duration::from_secs(60));
        assert!(!l.check(ip, "alice").await.unwrap().is_locked());
        assert_eq!(
            l.record_failure(ip, "alice").await.unwrap(),
            LockoutStatus::Open { attempts_left: 4 },
            "the count restarted after the lockout"
        );
    }

    #[tokio::test]
    async fn success_resets_failures() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let l = LoginLockout::with_clock(MemoryStore::new(), LockoutConfig::default(), clock);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..4 {
            l.record_failure(ip, "alice").await.unwrap();
        }
        l.record_success(ip, "alice").await.unwrap();
        for _ in 0..4 {
            assert!(!l.record_failure(ip, "alice").await.unwrap().is_locked());
        }
        assert!(l.record_failure(ip, "alice").await.unwrap().is_locked());
        l.unlock(ip, "alice").await.unwrap();
        assert!(!l.check(ip, "alice").await.unwrap().is_locked());
    }
}
