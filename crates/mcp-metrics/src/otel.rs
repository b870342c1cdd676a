//! OpenTelemetry traces exported by OTLP/HTTP (protobuf, blocking reqwest client) through
//! tracing-opentelemetry, and the remote parent taken from a W3C `traceparent`.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::logging::{LogConfig, LoggingError, env_filter, fmt_layer};
use crate::traceparent::TraceParent;

/// Configuration of the OTLP/HTTP trace exporter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtelConfig {
    /// Collector base URL (default `http://127.0.0.1:4318`); `/v1/traces` is appended unless
    /// the URL already ends with it.
    pub endpoint: String,
    /// `service.name` of the resource (default `mcp-server`).
    pub service_name: String,
    /// Export request timeout (default 10 s).
    pub timeout: Duration,
    /// Fraction of new root traces sampled, 0.0..=1.0 (default 1.0). A remote parent's sampled
    /// flag is always followed.
    pub sample_ratio: f64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".to_owned(),
            service_name: "mcp-server".to_owned(),
            timeout: Duration::from_secs(10),
            sample_ratio: 1.0,
        }
    }
}

impl OtelConfig {
    /// Sets the collector base URL.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
        self
    }

    /// Sets `service.name`.
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Sets the root sampling ratio (clamped to 0.0..=1.0).
    #[must_use]
    pub fn sample_ratio(mut self, ratio: f64) -> Self {
        self.sample_ratio = ratio;
        self
    }

    fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// Why tracing could not be set up or shut down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The exporter could not be built (bad endpoint, HTTP client failure).
    #[error("building the OTLP exporter failed: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Flushing or shutting down the provider failed.
    #[error("shutting down the tracer provider failed: {0}")]
    Shutdown(#[from] opentelemetry_sdk::error::OTelSdkError),
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] LoggingError),
}

/// Owns the tracer provider: flushes and shuts it down when dropped (or by [`OtelGuard::shutdown`]).
#[derive(Debug)]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtelGuard {
    /// The provider, e.g. to make more tracers.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Exports what is buffered now.
    pub fn force_flush(&self) -> Result<(), OtelError> {
        if let Some(provider) = &self.provider {
            provider.force_flush()?;
        }
        Ok(())
    }

    /// Flushes and shuts the provider down.
    pub fn shutdown(mut self) -> Result<(), OtelError> {
        match self.provider.take() {
            Some(provider) => Ok(provider.shutdown()?),
            None => Ok(()),
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "shutting down the tracer provider failed");
        }
    }
}

/// A tracer provider exporting to `config`'s collector with a batch processor.
///
/// The exporter uses the blocking reqwest client on the batch processor's own thread (the async
/// client needs a Tokio reactor there and panics), so this works inside or outside a runtime.
pub fn tracer_provider(config: &OtelConfig) -> Result<SdkTracerProvider, OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.traces_url())
        .with_timeout(config.timeout)
        .build()?;
    let ratio = if config.sample_ratio.is_nan() {
        1.0
    } else {
        config.sample_ratio.clamp(0.0, 1.0)
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("mcp-metrics"))
}

/// Installs the global subscriber: logs as in `log` plus traces exported to `otel`'s collector.
/// Keep the guard alive for the life of the program; dropping it flushes the last spans.
pub fn init_with_otel(log: &LogConfig, otel: &OtelConfig) -> Result<OtelGuard, OtelError> {
    let provider = tracer_provider(otel)?;
    tracing_subscriber::registry()
        .with(env_filter(log)?)
        .with(fmt_layer(log, std::io::stdout))
        .with(otel_layer(&provider))
        .try_init()
        .map_err(LoggingError::AlreadyInstalled)?;
    Ok(OtelGuard {
        provider: Some(provider),
    })
}

/// Makes `tp` the remote parent of `span`. Does nothing when no OpenTelemetry layer is
/// installed or the span was already started.
pub(crate) fn set_remote_parent(span: &tracing::Span, tp: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.parent_id),
        TraceFlags::new(tp.flags),
        true,
        TraceState::default(),
    );
    let parent = opentelemetry::Context::new().with_remote_span_context(remote);
    if span.set_parent(parent).is_err() {
        tracing::trace!("no OpenTelemetry layer: traceparent kept as the trace_id field only");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_is_appended_once() {
        let c = OtelConfig::default().endpoint("http://collector:4318/");
        assert_eq!(c.traces_url(), "http://collector:4318/v1/traces");
        let c = OtelConfig::default().endpoint("http://collector:4318/v1/traces");
        assert_eq!(c.traces_url(), "http://collector:4318/v1/traces");
    }
}
