//! Database and Redis pools per operation class, with statistics, health and sizing advice.
//!
//! `mcp-pool` gives each kind of work its own pool — by default the seeds' classes `read`,
//! `write`, `analytics` and `auth`, but names are free — so a burst of slow analytics queries
//! cannot starve logins. A [`PoolSet`] holds the classes over sqlx (PostgreSQL, SQLite) and
//! Redis; each class has its own size limits, acquire timeout, idle timeout and, if you
//! like, its own URL (a read replica for `read` and `analytics`). On top it keeps:
//!
//! * **statistics** per class, in relaxed atomics so the acquire path takes no lock: size,
//!   idle, in use, acquires, waits, timeouts, errors, connections opened and closed (reuse
//!   ratio) and a fixed-bucket acquire-wait histogram; [`PoolSet::snapshot`] returns them as
//!   a serialisable [`PoolSetSnapshot`] and [`PoolSet::register`] exports them to a
//!   prometheus-client registry;
//! * **sizing advice**: a background sampler records each class's peak connections in use
//!   into a bounded history (24 h at the sampler's resolution) and recommends growing when
//!   the 95th-percentile utilisation is above 80 % or acquires waited, shrinking when it
//!   stayed under 30 % for a window, within the class's `[min, max]` and never above the
//!   database's connection budget ([`advise`] is the pure rule); with
//!   [`PoolSetBuilder::apply_advice`] the set moves the limits itself (a semaphore in front
//!   of a pool opened at its maximum);
//! * **health checks** per class with a timeout (`SELECT 1`, `PING`) for readiness;
//! * **typed errors**: [`PoolError::Timeout`] says which class timed out and how long the
//!   caller waited.
//!
//! It depends on no other crate of the workspace.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use mcp_pool::{PoolSet, SamplerConfig, SqliteClassConfig};
//!
//! let url = "sqlite:file:doc-example?mode=memory&cache=shared";
//! let set = PoolSet::builder()
//!     .sql(SqliteClassConfig::new("read", url).size(4).max_connections(8))
//!     .sql(SqliteClassConfig::new("write", url).size(1).acquire_timeout(Duration::from_millis(100)))
//!     .connection_budget(10)
//!     .sampler(SamplerConfig::manual()) // no background task in this example
//!     .build()
//!     .await?;
//!
//! let write = set.sqlite("write")?;
//! let mut conn = write.acquire().await?;
//! sqlx::query("CREATE TABLE IF NOT EXISTS t (x INTEGER)").execute(&mut *conn).await?;
//!
//! // The write class has one connection: while it is out, the next acquire times out and
//! // the error names the class and the wait.
//! let error = write.acquire().await.unwrap_err();
//! assert!(error.to_string().starts_with("pool class `write` timed out after"));
//! drop(conn);
//!
//! set.sample_now().await; // the background sampler does this every 10 s
//! let snapshot = set.snapshot();
//! let stats = &snapshot.classes[1].stats;
//! assert_eq!((stats.acquires, stats.waits, stats.timeouts), (1, 1, 1));
//! let json = serde_json::to_string(&snapshot)?; // what an admin endpoint would serve
//! assert!(json.contains(r#""class":"write""#));
//!
//! assert!(set.health().await.healthy);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! # Classes and limits
//!
//! A class starts at `size` connections. `min_connections` are kept open and are the lowest
//! limit the advice recommends (at least 1); `max_connections` (default `size`) is the
//! highest. Without applied advice the sqlx pool is opened at `size` and the advice is a
//! recommendation to act on. With applied advice the pool is opened at `max_connections`
//! and a semaphore holds the class to its current limit; a lowered limit retires
//! connections as they come back and closes idle ones above it, and growth waits until the
//! budget has room counting every connection still open.
//!
//! Stores take a class as their connection source: mcp-audit's `AuditStore` and
//! mcp-auth-core's `SqlApiKeyStore` with their `pool` feature (the impls live in those
//! crates; this one depends on neither), so their connections count in every figure and
//! keep to the applied limit. A store speaking sqlx errors sees a [`PoolError`] converted
//! (`From<PoolError> for sqlx::Error`): a timeout keeps the class and the wait inside an
//! I/O error of kind `TimedOut`. [`SqlClass::pool`] hands out the sqlx pool itself for
//! APIs that only take a pool (sqlx's migrator); connections taken that way show in size,
//! idle, in use, opened and closed, but not in acquires, waits and timeouts, and they
//! bypass the applied limit.
//!
//! A Redis class is one multiplexed `ConnectionManager` (it reconnects on its own); its
//! limit is on handles out at once, and it never counts against the database budget.
//!
//! # Statistics
//!
//! | field | meaning |
//! | --- | --- |
//! | `size`, `idle`, `in_use` | connections open, idle and handed out now (Redis: slots) |
//! | `acquires` | successful acquires through the class |
//! | `waits` | acquires that found no idle connection and no room to open one (timeouts included) |
//! | `timeouts` | acquires that gave up after the acquire timeout |
//! | `errors` | acquires (or Redis commands) that failed otherwise |
//! | `opened`, `closed` | connections opened (counted in sqlx's `after_connect`) and closed (`opened - size`, kept monotone) |
//! | `reuse_ratio` | `1 - opened / acquires` |
//! | `acquire_wait` | histogram from 100 µs to 60 s of the time to a connection or timeout |
//!
//! [`PoolSet::register`] exports them with the labels `class` and `backend`:
//!
//! | family | type |
//! | --- | --- |
//! | `mcp_pool_class_connections` | gauge, label `state` (`in_use`, `idle`) |
//! | `mcp_pool_class_limit`, `mcp_pool_class_max_connections`, `mcp_pool_class_recommended_limit` | gauges |
//! | `mcp_pool_class_acquires_total`, `mcp_pool_class_acquire_waits_total`, `mcp_pool_class_acquire_timeouts_total`, `mcp_pool_class_errors_total` | counters |
//! | `mcp_pool_class_connections_opened_total`, `mcp_pool_class_connections_closed_total` | counters |
//! | `mcp_pool_class_acquire_wait_seconds` | histogram |
//!
//! The names differ from `mcp-metrics`' `mcp_pool_*` families so both can share one registry.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `postgres` | yes | PostgreSQL classes (`PgClassConfig`, `PgClass`) through sqlx, TLS by rustls with aws-lc-rs |
//! | `sqlite` | no | SQLite classes (`SqliteClassConfig`, `SqliteClass`) through sqlx (bundled SQLite) |
//! | `redis` | no | Redis classes (`RedisClassConfig`, `RedisClass`) on `redis`' `ConnectionManager` |
//! | `prometheus` | yes | `PoolSet::register` into a prometheus-client `Registry` |
//! | `full` | no | all of the above |
//!
//! # MSRV
//!
//! Rust 1.94.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(any(feature = "sql", feature = "redis")),
    allow(
        dead_code,
        reason = "without a backend feature there are no classes to acquire from or resize"
    )
)]

mod advice;
mod class;
mod error;
mod histogram;
mod history;
mod limiter;
#[cfg(feature = "prometheus")]
mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod set;
#[cfg(feature = "sql")]
mod sql;
mod stats;

pub use advice::{Action, Advice, AdviceConfig, Bound, ClassUsage, Reason, advise};
pub use class::{Backend, StandardClass};
pub use error::{BoxError, ConfigError, LookupError, PoolError};
pub use histogram::{Bucket, HistogramSnapshot, WAIT_BUCKETS_SECONDS};
pub use history::{Sample, UsageSummary};
#[cfg(feature = "redis")]
pub use redis::{RedisClass, RedisClassConfig, RedisConnection};
pub use set::{
    ClassAdvice, ClassHealth, ClassSnapshot, HealthReport, MAX_HISTORY_SAMPLES, PoolSet,
    PoolSetBuilder, PoolSetSnapshot, SamplerConfig, SamplerSnapshot,
};
#[cfg(feature = "postgres")]
pub use sql::{PgClass, PgClassConfig};
#[cfg(feature = "sql")]
pub use sql::{PooledConnection, SqlBackend, SqlClass, SqlClassConfig};
#[cfg(feature = "sqlite")]
pub use sql::{SqliteClass, SqliteClassConfig};
pub use stats::StatsSnapshot;
