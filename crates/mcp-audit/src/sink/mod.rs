//! The `AuditSink` trait and the sinks that do not need a database.

mod fanout;
mod jsonl;
mod tracing_sink;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::SinkError;
use crate::event::AuditEvent;

pub use fanout::FanOut;
pub use jsonl::{FsyncPolicy, JsonlSink, JsonlSinkConfig};
pub use tracing_sink::TracingSink;

/// Where audit events end up.
///
/// The [`AuditLogger`](crate::AuditLogger) calls `write_batch` one batch at a time, in order
/// (a call ends before the next one starts, unless the sink allows more
/// [in flight](Self::max_in_flight); the logger prepares the next batch meanwhile). A
/// batch that fails is kept in the logger's spool for this sink
/// and written again later, in order, so a sink may see the same event more than once after
/// a failure: sinks that can (the SQL store) ignore events whose id they already hold.
///
/// ```
/// use async_trait::async_trait;
/// use mcp_audit::{AuditEvent, AuditSink, SinkError};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// #[derive(Debug, Default)]
/// struct Counting(AtomicUsize);
///
/// #[async_trait]
/// impl AuditSink for Counting {
///     fn name(&self) -> &str {
///         "counting"
///     }
///
///     async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
///         self.0.fetch_add(events.len(), Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// A short, stable name; it names the sink's spool file, so it must be unique per logger
    /// and stay the same across restarts.
    fn name(&self) -> &str;

    /// Writes `events` (already redacted and chained). Either all of them are durably
    /// accepted (`Ok`) or the call fails and they will be offered again.
    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError>;

    /// Makes previously written events durable (e.g. `fsync`). The default does nothing.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// How many batches the logger may have in flight to this sink at once (at least 1; the
    /// default is 1). With more than one, the next batch's `write_batch` starts before the
    /// previous one has returned, so batches can complete, fail and be spooled out of order:
    /// only sinks where the order of writes does not matter (the SQL store, whose queries
    /// order by time and chain position) should return more than 1.
    fn max_in_flight(&self) -> usize {
        1
    }
}

#[async_trait]
impl<S: AuditSink + ?Sized> AuditSink for Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        (**self).write_batch(events).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        (**self).flush().await
    }

    fn max_in_flight(&self) -> usize {
        (**self).max_in_flight()
    }
}
