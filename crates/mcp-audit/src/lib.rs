//! # mcp-audit: what happened, durably
//!
//! An audit trail for MCP servers and gateways. Recording never waits for I/O on the
//! request path, and no accepted event is lost on shutdown or when a database is down.
//!
//! * [`AuditEvent`]: a documented, versioned JSON schema (who, what, decision, outcome,
//!   correlation ids, client).
//! * [`AuditLogger`]: a bounded queue, a background writer that batches by size and time,
//!   an explicit [`OverflowPolicy`], [`flush`](AuditLogger::flush), a draining
//!   [`shutdown`](AuditLogger::shutdown) and [`AuditStats`] for metrics.
//! * [`Redactor`]: secrets and tool arguments redacted by key pattern, free text truncated,
//!   NUL characters replaced.
//! * Sinks behind [`AuditSink`]: [`TracingSink`] (target `audit`), [`JsonlSink`] (rotation
//!   by size and day, configurable fsync), the SQL [`AuditStore`] (SQLite, PostgreSQL) and
//!   [`FanOut`]. A failing sink's batches go to a local spool and are replayed in order.
//! * [`chain`]: every event is hash-chained; [`chain::verify`] finds the first modified,
//!   deleted or inserted event.
//! * [`AuditStore`] (features `sqlite`, `postgres`): migrations, filtered queries with
//!   keyset pagination and tenant scoping, JSON-lines and CSV export, retention purge. It
//!   takes its connections from a [`ConnectionSource`]: a sqlx pool, or an mcp-pool class
//!   (feature `pool`) whose statistics then count every acquire of the store.
//!
//! ```
//! use mcp_audit::{AuditEvent, AuditLogger, Category, Decision, JsonlSink, JsonlSinkConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("mcp-audit-doc-{}", uuid::Uuid::now_v7()));
//! let logger = AuditLogger::builder(dir.join("spool"))
//!     .sink(JsonlSink::new(JsonlSinkConfig::new(dir.join("log")))?)
//!     .build()?;
//!
//! // On the request path: enqueue and move on.
//! logger.try_record(
//!     AuditEvent::new(Category::ToolCall)
//!         .subject("alice")
//!         .tenant("acme")
//!         .method("tools/call")
//!         .tool("search")
//!         .decision(Decision::Allow, "role user"),
//! )?;
//!
//! // At the end of the process: everything accepted is written.
//! let report = logger.shutdown().await?;
//! assert_eq!(report.spool_pending, 0);
//! assert_eq!(logger.stats().events_written, 1);
//! # std::fs::remove_dir_all(dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Throughput
//!
//! `cargo bench -p mcp-audit --all-features --bench audit` measures events per second through
//! the whole pipeline: queue, redaction, hash chain, batching (batch size 1 000, the default
//! limit of 8 000) and the database, with PostgreSQL 15 on the same 2-vCPU VM
//! (2026-11-22, AMD EPYC):
//!
//! | bench | result |
//! | --- | ---: |
//! | `audit/record` (enqueue) | 89 to 92 ns per event |
//! | `audit/sqlite_throughput` | 80k to 89k events/s |
//! | `audit/postgres_throughput`, `MCP_TEST_POSTGRES_URL` over TCP on 127.0.0.1, pool of 4 | 106k to 115k events/s (108.5k in the last full run) |
//! | `audit/postgres_throughput`, the same server over its Unix socket | 136k to 148k events/s |
//!
//! A write to a database mostly waits: for a round trip, for the commit's WAL flush and, over
//! TCP, for a delayed acknowledgement. sqlx 0.9.0 does not set `TCP_NODELAY` on its sockets
//! (sqlx issue 4335; the fix, pull request 4336, is merged but not released), so the small
//! `CopyDone` message after a `COPY`'s data can wait for the server's delayed
//! acknowledgement (Nagle's algorithm). Three things hide those waits:
//!
//! * the PostgreSQL store keeps as many batches in flight as its pool has connections but
//!   one (2 to 8; [`AuditSink::max_in_flight`]);
//! * while every write a sink allows is in flight, the next batch keeps growing up to
//!   [`AuditLoggerBuilder::batch_limit`] instead of waiting at its batch size, so a slow
//!   sink gets fewer, larger writes. Measured against batches held at their size, in
//!   interleaved runs: PostgreSQL over TCP 47k → 60k and 47k → 70k events/s, SQLite 46k →
//!   74k and 54k → 79k, PostgreSQL over the Unix socket 123k → 136k and 135k → 148k;
//! * a grown batch goes to PostgreSQL as one binary `COPY` (up to 20 000 rows).
//!
//! For a PostgreSQL on the same machine, its Unix socket (`host=/var/run/postgresql` in the
//! URL) has no acknowledgement delay at all.
//!
//! ## Feature flags
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `sqlite` | no | [`AuditStore`] on SQLite (sqlx, bundled SQLite) |
//! | `postgres` | no | [`AuditStore`] on PostgreSQL (sqlx, rustls) |
//! | `pool` | no | [`ConnectionSource`] for `mcp_pool::SqlClass` (an mcp-pool class of the enabled backends) |
//! | `full` | no | all of the above |
//!
//! The logger, the redactor, the hash chain and the tracing, JSONL and fan-out sinks need no
//! feature.
//!
//! ## MSRV
//!
//! Rust 1.94.

pub mod chain;
mod error;
mod event;
mod logger;
mod redact;
pub mod sink;
mod spool;
#[cfg(feature = "sql")]
mod store;
mod time;

pub use chain::{ChainHead, Tamper, TamperKind, VerifyOptions, VerifyReport, verify};
#[cfg(feature = "sql")]
pub use error::StoreError;
pub use error::{BoxError, BuildError, FlushError, RecordError, SinkError};
pub use event::{
    Action, Actor, AuditEvent, Category, ChainLink, Decision, Outcome, OutcomeStatus,
    SCHEMA_VERSION, Severity, TargetKind, UnknownVariant,
};
pub use logger::{AuditLogger, AuditLoggerBuilder, AuditStats, FlushReport, OverflowPolicy};
pub use redact::{ArgumentsPolicy, DEFAULT_KEY_PATTERNS, NUL_REPLACEMENT, REDACTED, Redactor};
pub use sink::{AuditSink, FanOut, FsyncPolicy, JsonlSink, JsonlSinkConfig, TracingSink};
#[cfg(feature = "sql")]
pub use store::{
    AuditFilter, AuditStore, ConnectionSource, DEFAULT_RETENTION, ExportFormat, MIGRATIONS_TABLE,
    Order, Page, PageRequest, Retention, Scope,
};
pub use time::{ParseTimestampError, Timestamp};
