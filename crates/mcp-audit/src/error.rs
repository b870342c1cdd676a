//! Error types, one per family of operations.

use std::io;

/// A boxed error from a user-supplied sink.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sink could not write or flush a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Reading or writing a local file failed.
    #[error("audit sink I/O failed")]
    Io(#[from] io::Error),
    /// An event could not be serialized.
    #[error("audit event could not be encoded")]
    Encode(#[from] serde_json::Error),
    /// The database rejected the write or could not be reached.
    #[cfg(feature = "sql")]
    #[error("audit database write failed")]
    Database(#[from] sqlx::Error),
    /// Some sinks of a [`FanOut`](crate::sink::FanOut) failed; the first failure is the source.
    #[error("{failed} of {total} fan-out audit sinks failed")]
    FanOut {
        /// How many sinks failed.
        failed: usize,
        /// How many sinks there are.
        total: usize,
        /// The first failure.
        #[source]
        first: Box<SinkError>,
    },
    /// A failure of a sink defined outside this crate.
    #[error("audit sink failed")]
    Other(#[source] BoxError),
}

impl SinkError {
    /// Wraps the error of a custom sink.
    pub fn other(error: impl Into<BoxError>) -> Self {
        Self::Other(error.into())
    }
}

/// An event was not accepted by [`AuditLogger::record`](crate::AuditLogger::record).
///
/// When `record` returns `Ok`, the event is in the queue or in the spill file and will be
/// written; every error here means the event was *not* accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The logger was shut down.
    #[error("audit logger is shut down")]
    Closed,
    /// The queue was full and the policy is [`OverflowPolicy::Drop`](crate::OverflowPolicy::Drop).
    #[error("audit queue full: event dropped")]
    Dropped,
    /// The queue was full and stayed full for the configured time
    /// ([`OverflowPolicy::Block`](crate::OverflowPolicy::Block)).
    #[error("audit queue full: timed out waiting for space")]
    TimedOut,
    /// The queue was full and [`AuditLogger::try_record`](crate::AuditLogger::try_record) cannot
    /// wait (policy [`OverflowPolicy::Block`](crate::OverflowPolicy::Block)); use `record`.
    #[error("audit queue full")]
    QueueFull,
    /// The queue was full and writing the spill file failed.
    #[error("audit queue full and the spill file could not be written")]
    Spill(#[source] io::Error),
}

/// The logger could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The spool directory or a file in it could not be created or read.
    #[error("audit spool directory unusable")]
    Io(#[from] io::Error),
    /// No sink was configured.
    #[error("audit logger needs at least one sink")]
    NoSink,
    /// Two sinks share a name (names pick the spool files).
    #[error("two audit sinks share the name {0:?}")]
    DuplicateSinkName(String),
    /// A setting is out of range.
    #[error("invalid audit logger setting: {0}")]
    Invalid(&'static str),
    /// `build` was called outside a tokio runtime.
    #[error("audit logger must be built inside a tokio runtime")]
    NoRuntime,
}

/// A flush or shutdown could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The logger was shut down (or its writer task ended).
    #[error("audit logger is shut down")]
    Closed,
}

/// A query, migration, export or purge on an audit store failed.
#[cfg(feature = "sql")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("audit database query failed")]
    Database(#[from] sqlx::Error),
    /// Applying the shipped migrations failed.
    #[error("audit database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be turned back into an event.
    #[error("stored audit row is invalid: {0}")]
    Decode(String),
    /// A pagination cursor was not produced by this store.
    #[error("invalid audit page cursor")]
    InvalidCursor,
    /// Writing an export failed.
    #[error("audit export could not be written")]
    Io(#[from] io::Error),
    /// Encoding an exported event failed.
    #[error("audit export could not be encoded")]
    Encode(#[from] serde_json::Error),
}
