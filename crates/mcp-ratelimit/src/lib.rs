//! Rate limiting for MCP servers.

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
