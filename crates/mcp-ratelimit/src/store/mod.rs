//! The `RateLimitStore` trait that both stores implement, and its request and reply types.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::algorithm::{Algorithm, Outcome};
use crate::clock::Timestamp;
use crate::quota::Quota;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// One charge of `cost` units against the quota of one key.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Charge<'a> {
    /// The full storage key (already namespaced by the limiter).
    pub key: &'a str,
    /// The quota of the rule.
    pub quota: &'a Quota,
    /// The algorithm of the rule.
    pub algorithm: Algorithm,
    /// Units to take; costs above the quota's burst (GCRA) or count (window) never pass.
    pub cost: u32,
    /// When the charge happens.
    pub now: Timestamp,
}

impl<'a> Charge<'a> {
    /// A charge of `cost` on `key` at `now`.
    #[must_use]
    pub fn new(
        key: &'a str,
        quota: &'a Quota,
        algorithm: Algorithm,
        cost: u32,
        now: Timestamp,
    ) -> Self {
        Self {
            key,
            quota,
            algorithm,
            cost,
            now,
        }
    }
}

/// What a store decided for one charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOutcome {
    /// Whether the charge was taken.
    pub allowed: bool,
    /// Units still available right now after this charge.
    pub remaining: u64,
    /// Time until the key is back to its full quota.
    pub reset_after: Duration,
    /// Time until the same charge could pass; zero when allowed.
    pub retry_after: Duration,
}

impl StoreOutcome {
    /// An outcome with the given fields (for store implementations outside this crate).
    #[must_use]
    pub fn new(
        allowed: bool,
        remaining: u64,
        reset_after: Duration,
        retry_after: Duration,
    ) -> Self {
        Self {
            allowed,
            remaining,
            reset_after,
            retry_after,
        }
    }
}

impl From<Outcome> for StoreOutcome {
    fn from(o: Outcome) -> Self {
        Self {
            allowed: o.allowed,
            remaining: o.remaining,
            reset_after: Duration::from_micros(o.reset_after),
            retry_after: Duration::from_micros(o.retry_after),
        }
    }
}

/// A store failure. The limiter applies its [`FailurePolicy`](crate::FailurePolicy).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("rate-limit store unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// The backend answered something the store does not understand.
    #[error("unexpected reply from the rate-limit store: {0}")]
    UnexpectedReply(String),
}

/// Where rate-limit state lives. Implementations must make each method atomic per key.
///
/// Keys arrive fully namespaced. Every method receives `now` from the limiter's
/// [`Clock`](crate::Clock), so stores never read time themselves.
pub trait RateLimitStore: Clone + Send + Sync + fmt::Debug + 'static {
    /// Takes `charge.cost` units if the quota allows; never takes a partial charge.
    fn charge(
        &self,
        charge: &Charge<'_>,
    ) -> impl Future<Output = Result<StoreOutcome, StoreError>> + Send;

    /// Gives back a charge that was allowed at `charge.now` (another rule denied the same
    /// request). `now` is the current time.
    fn refund(
        &self,
        charge: &Charge<'_>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds one to a counter that starts at zero and resets `window` after its first
    /// increment; returns the new count.
    fn incr_counter(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Sets a flag on `key` that holds until `until`.
    fn set_flag(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The time a flag on `key` holds until, if it is still set at `now`.
    fn get_flag(
        &self,
        key: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Removes `key` (a counter, a flag or limiter state).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
