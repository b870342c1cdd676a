//! A sink that writes every batch to several sinks.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::SinkError;
use crate::event::AuditEvent;
use crate::sink::AuditSink;

/// Writes every batch to each of its sinks, in order.
///
/// The batch fails if any sink fails, after all sinks were tried; a retry then repeats the
/// batch on the sinks that had succeeded too. For independent retries per sink (no repeats
/// on the healthy ones), give the sinks to the logger separately with
/// [`AuditLoggerBuilder::sink`](crate::AuditLoggerBuilder::sink): each then has its own spool.
#[derive(Debug, Clone)]
pub struct FanOut {
    name: String,
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl FanOut {
    /// A fan-out named `name` over `sinks`.
    pub fn new(name: impl Into<String>, sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        Self {
            name: name.into(),
            sinks,
        }
    }

    fn combine(&self, failures: Vec<(&str, SinkError)>) -> Result<(), SinkError> {
        let failed = failures.len();
        let mut first = None;
        for (sink, e) in failures {
            tracing::warn!(target: "mcp_audit", sink, error = %e, "fan-out audit sink failed");
            first.get_or_insert(e);
        }
        match first {
            None => Ok(()),
            Some(first) => Err(SinkError::FanOut {
                failed,
                total: self.sinks.len(),
                first: Box::new(first),
            }),
        }
    }
}

#[async_trait]
impl AuditSink for FanOut {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        let mut failures = Vec::new();
        for sink in &self.sinks {
            if let Err(e) = sink.write_batch(events).await {
                failures.push((sink.name(), e));
            }
        }
        self.combine(failures)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let mut failures = Vec::new();
        for sink in &self.sinks {
            if let Err(e) = sink.flush().await {
                failures.push((sink.name(), e));
            }
        }
        self.combine(failures)
    }

    /// As many as the strictest sink allows.
    fn max_in_flight(&self) -> usize {
        self.sinks
            .iter()
            .map(|s| s.max_in_flight())
            .min()
            .unwrap_or(1)
            .max(1)
    }
}
