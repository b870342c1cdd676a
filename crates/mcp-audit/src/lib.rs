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
//! the whole pipeline: queue, redaction, hash chain, batching (1 000 events) and the database.
//! On a quiet 2-vCPU VM with PostgreSQL 15 on the same machine (2026-11-21):
//!
//! | bench | events/s |
//! | --- | ---: |
//! | `audit/record` (enqueue) | 143 ns per event |
//! | `audit/sqlite_throughput` | 62.7k |
//! | `audit/postgres_throughput`, `MCP_TEST_POSTGRES_URL` over TCP on 127.0.0.1 | 61.6k |
//! | `audit/postgres_throughput`, the same server over its Unix socket | 107k |
//!
//! PostgreSQL alone takes these rows much faster than the TCP run gives them: one `psql
//! \copy` of 200 000 rows in binary form into this crate's table (all four indexes) ran at
//! 114k to 140k rows/s, also with 2.4 million rows already stored. Over TCP the bench's CPU
//! is two thirds idle and each 1 000-event `COPY` takes 23 to 36 ms instead of 15 ms: sqlx
//! 0.9.0 no longer sets `TCP_NODELAY` on its sockets (sqlx issue 4335; the fix, pull request
//! 4336, is merged but not released), so the small `CopyDone` message after the data waits
//! for the server's delayed acknowledgement (Nagle's algorithm). The same happens to any
//! statement sent in more than one write. Until a sqlx release sets it again, connect to a
//! PostgreSQL on the same machine through its Unix socket (`host=/var/run/postgresql` in the
//! URL), which has no such delay.
//!
//! Because each write mostly waits (for the delayed acknowledgement, then for the commit's
//! WAL flush), the store keeps as many batches in flight as its pool has connections but one
//! (2 to 8; [`AuditSink::max_in_flight`]), and the bench uses a pool of 4. On the slower VM
//! of a later session (2026-11-21, 21:40 UTC), over TCP with batches of 1 000: two batches in
//! flight 42.8k events/s (the Unix socket: 74.8k), three 50.8k, four 63.7k, eight 76.0k; two
//! in flight with batches of 5 000: 85.6k; four with 2 500: 90.8k. Both cores were busy
//! there (the bench's own pipeline and PostgreSQL), so 100k was out of reach on that machine
//! whatever the transport. Larger batches ([`AuditLoggerBuilder::batch_size`]) and a larger
//! pool both help a PostgreSQL sink under sustained load.
//!
//! On a faster VM (2026-11-22, 00:50 UTC), the shipped bench (pool of 4, three batches of
//! 1 000 in flight): `audit/record` 71 ns, SQLite 64.2k events/s, PostgreSQL over TCP 59.2k
//! (35 ms per batch), and the same PostgreSQL over its Unix socket
//! (`postgres://postgres@localhost/test?host=/var/run/postgresql`) **143k** (16 ms per
//! batch). The transport's 2.4x is the delayed acknowledgement described above.
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
