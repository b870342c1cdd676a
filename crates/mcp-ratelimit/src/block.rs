//! Abusive client blocking: an IP that is rejected too often is blocked for a while;
//! operators can block and unblock by hand; allowlisted networks are never blocked.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::ip::IpNet;
use crate::keys::{canonical_ip, push_ip};
use crate::store::{RateLimitStore, StoreError};

/// Blocking thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// Rejections within `window` that trigger a block (default 100).
    pub reject_threshold: NonZeroU32,
    /// The window rejections are counted in (default one minute).
    pub window: Duration,
    /// How long an automatic block lasts (default 15 minutes).
    pub block_for: Duration,
    /// Networks that are never blocked (health checkers, internal callers).
    pub allowlist: Vec<IpNet>,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            reject_threshold: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            window: Duration::from_secs(60),
            block_for: Duration::from_secs(15 * 60),
            allowlist: Vec::new(),
        }
    }
}

/// Blocks abusive client IPs; works on any [`RateLimitStore`], so with Redis a block
/// holds on every replica.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use mcp_ratelimit::{BlockConfig, IpBlocker, MemoryStore};
///
/// let blocker = IpBlocker::new(MemoryStore::new(), BlockConfig::default());
/// let ip = "198.51.100.7".parse().unwrap();
/// blocker.block(ip, Duration::from_secs(60)).await.unwrap();
/// assert!(blocker.blocked_for(ip).await.unwrap().is_some());
/// blocker.unblock(ip).await.unwrap();
/// assert!(blocker.blocked_for(ip).await.unwrap().is_none());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct IpBlocker<S> {
    store: S,
    config: Arc<BlockConfig>,
    clock: Arc<dyn Clock>,
}

fn keys(ip: IpAddr) -> (String, String) {
    let mut ip_text = String::with_capacity(39);
    push_ip(&mut ip_text, ip);
    (
        format!("block:v:{ip_text}:rejects"),
        format!("block:v:{ip_text}:blocked"),
    )
}

impl<S: RateLimitStore> IpBlocker<S> {
    /// A blocker with the system clock.
    pub fn new(store: S, config: BlockConfig) -> Self {
        Self::with_clock(store, config, SystemClock::new())
    }

    /// A blocker with an injected clock.
    pub fn with_clock(store: S, config: BlockConfig, clock: impl Clock) -> Self {
        Self {
            store,
            config: Arc::new(config),
            clock: Arc::new(clock),
        }
    }

    /// Whether `ip` is on the allowlist.
    #[must_use]
    pub fn is_allowlisted(&self, ip: IpAddr) -> bool {
        self.config.allowlist.iter().any(|n| n.contains(ip))
    }

    /// How much longer `ip` is blocked, if it is.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn blocked_for(&self, ip: IpAddr) -> Result<Option<Duration>, StoreError> {
        if self.is_allowlisted(ip) {
            return Ok(None);
        }
        let now = self.clock.now();
        let (_, blocked) = keys(ip);
        let until = self.store.get_flag(&blocked, now).await?;
        Ok(until.map(|u| u.saturating_since(now)))
    }

    /// Counts one rejection of `ip`; returns `true` when this rejection started a block.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn record_rejection(&self, ip: IpAddr) -> Result<bool, StoreError> {
        if self.is_allowlisted(ip) {
            return Ok(false);
        }
        let now = self.clock.now();
        let (rejects, blocked) = keys(ip);
        let n = self
            .store
            .incr_counter(&rejects, self.config.window, now)
            .await?;
        if n == u64::from(self.config.reject_threshold.get()) {
            let until = now.saturating_add(self.config.block_for);
            self.store.set_flag(&blocked, until, now).await?;
            tracing::warn!(ip = %canonical_ip(ip), rejections = n, "client IP blocked for abuse");
            return Ok(true);
        }
        Ok(false)
    }

    /// Blocks `ip` by hand for `duration` (allowlisted addresses stay unblocked).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn block(&self, ip: IpAddr, duration: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let (_, blocked) = keys(ip);
        tracing::info!(ip = %canonical_ip(ip), ?duration, "client IP blocked by hand");
        self.store
            .set_flag(&blocked, now.saturating_add(duration), now)
            .await
    }

    /// Lifts a block and forgets the rejection count.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn unblock(&self, ip: IpAddr) -> Result<(), StoreError> {
        let (rejects, blocked) = keys(ip);
        self.store.delete(&rejects).await?;
        self.store.delete(&blocked).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, Timestamp};
    use crate::store::memory::MemoryStore;

    fn blocker(clock: &FakeClock) -> IpBlocker<MemoryStore> {
        let config = BlockConfig {
            reject_threshold: NonZeroU32::new(3).unwrap(),
            window: Duration::from_secs(10),
            block_for: Duration::from_secs(60),
            allowlist: vec!["10.0.0.0/8".parse().unwrap()],
        };
        IpBlocker::with_clock(MemoryStore::new(), config, clock.clone())
    }

    #[tokio::test]
    async fn blocks_after_threshold_within_window() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let b = blocker(&clock);
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        assert!(!b.record_rejection(ip).await.unwrap());
        assert!(!b.record_rejection(ip).await.unwrap());
        clock.advance(Duration::from_secs(11));
        assert!(
            !b.record_rejection(ip).await.unwrap(),
            "the window restarted"
        );
        assert!(!b.record_rejection(ip).await.unwrap());
        assert!(b.blocked_for(ip).await.unwrap().is_none());
        assert!(b.record_rejection(ip).await.unwrap());
        assert_eq!(
            b.blocked_for(ip).await.unwrap(),
            Some(Duration::from_secs(60))
        );
        clock.advance(Duration::from_secs(60));
        assert!(b.blocked_for(ip).await.unwrap().is_none(), "blocks expire");
    }

    #[tokio::test]
    async fn allowlist_and_manual_blocks() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let b = blocker(&clock);
        let internal: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..10 {
            assert!(!b.record_rejection(internal).await.unwrap());
        }
        b.block(internal, Duration::from_secs(5)).await.unwrap();
        assert!(b.blocked_for(internal).await.unwrap().is_none());
        let ip: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        b.block(ip, Duration::from_secs(5)).await.unwrap();
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            b.blocked_for(v4).await.unwrap(),
            Some(Duration::from_secs(5))
        );
        b.unblock(v4).await.unwrap();
        assert!(b.blocked_for(ip).await.unwrap().is_none());
    }
}
