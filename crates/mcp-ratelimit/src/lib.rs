//! How often: rate limits for MCP servers, in-process and on Redis.
//!
//! A [`RateLimiter`] checks each request against every [`Rule`] that applies to it
//! (global, tenant, user, API key, client IP, tool; tools can cost more than one unit) and
//! charges all of them or none. Rules use GCRA (a token bucket: rate plus burst) or a
//! sliding-window counter, with quotas written as `100/min` or `10/s burst 20`.
//! State lives in a [`RateLimitStore`]: the sharded, bounded [`MemoryStore`], or
//! `RedisStore` (feature `redis`) so replicas share one budget. When the store fails the
//! limiter follows an explicit [`FailurePolicy`] (fail open, fail closed, or the default:
//! fall back to a local in-memory limiter), logging and counting each switch.
//!
//! Around it: [`FairShare`] (weighted tenant shares of a global limit with bursts and
//! Jain's fairness index), [`LoginLockout`] (brute-force lockout per IP and subject),
//! [`IpBlocker`] (abusive client blocking with an allowlist), [`ClientIpResolver`]
//! (`Forwarded` / `X-Forwarded-For` only through trusted proxies) and, with feature
//! `tower`, [`http::RateLimitLayer`] (429 with `Retry-After`, the IETF `RateLimit-Policy`
//! and `RateLimit` headers, and a JSON-RPC error body for MCP requests).
//!
//! Time is injected through [`Clock`]: [`SystemClock`] in production, [`FakeClock`] or
//! [`TokioClock`] (follows `tokio::time::pause`) in tests.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use mcp_ratelimit::{FakeClock, MemoryStore, RateLimiter, RequestKeys, Rule, Scope, Timestamp};
//!
//! let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
//! let limiter = RateLimiter::builder()
//!     .rule(Rule::gcra("per-user", Scope::User, "2/s".parse()?)?)
//!     .rule(Rule::sliding_window("per-tenant", Scope::Tenant, "100/min".parse()?)?)
//!     .clock(clock.clone())
//!     .build(MemoryStore::new())?;
//!
//! let alice = RequestKeys::new().tenant("acme").user("alice");
//! assert!(limiter.check(&alice).await.is_allowed());
//! assert!(limiter.check(&alice).await.is_allowed());
//! let denied = limiter.check(&alice).await;
//! assert!(!denied.is_allowed());
//! assert_eq!(denied.retry_after(), Some(Duration::from_millis(500)));
//!
//! clock.advance(Duration::from_millis(500));
//! assert!(limiter.check(&alice).await.is_allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tower` | yes | [`http::RateLimitLayer`]: the tower layer and its HTTP responses (`http`, `http-body-util`, `serde_json`; all light and already in any tower stack) |
//! | `redis` | no | `RedisStore`: Lua scripts via EVALSHA with automatic reload, a `ConnectionManager`, TTLs on every key, Cluster hash tags |
//! | `full` | no | everything |
//!
//! # Redis
//!
//! Keys are `<prefix>:{<limiter key>}`; the braces are a Redis Cluster hash tag. Each
//! store call runs one script on one key, so the store works on Cluster unchanged; a
//! request with several rules is charged rule by rule, and charges already taken are
//! refunded when a later rule denies (a concurrent request may briefly see the charge:
//! limits are never loosened by it). The limiter passes its clock's time to the scripts, so
//! replicas should run NTP-synchronised clocks. Keys expire one second after their state
//! stops mattering.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.94.

#![forbid(unsafe_code)]

mod algorithm;
mod block;
mod clock;
mod fairshare;
#[cfg(feature = "tower")]
pub mod http;
mod ip;
mod keys;
mod limiter;
mod lockout;
mod quota;
pub mod store;

pub use algorithm::Algorithm;
pub use block::{BlockConfig, IpBlocker};
pub use clock::{Clock, FakeClock, SystemClock, Timestamp, TokioClock};
pub use fairshare::{
    FairDecision, FairReason, FairShare, FairShareConfig, FairShareError, OVERFLOW_TENANT,
    TenantUsage, jain_index,
};
pub use ip::{ClientIpResolver, IpNet, IpNetError};
pub use keys::{RequestKeys, Scope};
pub use limiter::{
    ConfigError, Decision, DecisionSource, FailurePolicy, LimiterStats, PolicyInfo, RateLimiter,
    RateLimiterBuilder, Rule,
};
pub use lockout::{LockoutConfig, LockoutStatus, LoginLockout};
pub use quota::{Quota, QuotaError};
pub use store::memory::{MemoryStore, MemoryStoreConfig, MemoryStoreStats};
#[cfg(feature = "redis")]
pub use store::redis::{RedisConfigError, RedisStore, RedisStoreConfig};
pub use store::{Charge, RateLimitStore, StoreError, StoreOutcome};
