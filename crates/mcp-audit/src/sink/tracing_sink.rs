//! A sink that emits each event as a JSON string on the `audit` tracing target.

use async_trait::async_trait;

use crate::error::SinkError;
use crate::event::{AuditEvent, Severity};
use crate::sink::AuditSink;

/// Emits every event as a `tracing` event with target `audit`: the level follows the
/// severity, the field `event` holds the event's JSON, and `id`, `category`, `tenant` and
/// `decision` are also separate fields for filtering.
///
/// Route the `audit` target to its own output with a `tracing-subscriber` filter
/// (`audit=info`) and a JSON formatter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl TracingSink {
    /// The sink.
    pub fn new() -> Self {
        Self
    }
}

macro_rules! emit {
    ($level:expr, $e:expr, $json:expr) => {
        tracing::event!(
            target: "audit",
            $level,
            id = %$e.id,
            category = $e.category.as_str(),
            tenant = $e.actor.tenant.as_deref(),
            decision = $e.decision.map(|d| d.as_str()),
            event = %$json,
        )
    };
}

#[async_trait]
impl AuditSink for TracingSink {
    fn name(&self) -> &str {
        "tracing"
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        for e in events {
            let json = serde_json::to_string(e)?;
            match e.severity {
                Severity::Debug => emit!(tracing::Level::DEBUG, e, json),
                Severity::Info | Severity::Notice => emit!(tracing::Level::INFO, e, json),
                Severity::Warning => emit!(tracing::Level::WARN, e, json),
                _ => emit!(tracing::Level::ERROR, e, json),
            }
        }
        Ok(())
    }
}
