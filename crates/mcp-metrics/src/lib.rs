//! Observability for MCP servers: Prometheus metric families, a tower layer, logs and traces.

#![forbid(unsafe_code)]

mod concurrency;
mod envelope;
mod families;
mod labels;
mod process;
mod sketch;
mod traceparent;

pub use concurrency::{ConcurrencyConfig, ConcurrencyConfigError, MAX_SLOTS, MAX_WINDOWS};
pub use envelope::{HTTP_METHOD_LABEL, KNOWN_METHODS, McpRequestInfo};
pub use families::{
    AuthLimitReason, AuthOutcome, BehaviorPattern, DurationCategory, ErrorType, FAMILY_NAMES,
    McpMetrics, MetricsConfig, MetricsConfigError, PoolState, RateLimitScope, RefreshKind,
    RefreshOutcome, RequestRecord, TenantActivity, TimeOfDay, ToolOutcome, ToolUsageThresholds,
};
pub use labels::{LabelLimit, MAX_LABEL_VALUE_LEN, OTHER};
pub use process::ProcessStats;
pub use traceparent::{TraceParent, TraceParentError};

#[cfg(feature = "tower")]
mod exposition;
#[cfg(feature = "tower")]
mod layer;

#[cfg(feature = "tower")]
pub use exposition::{
    MetricsHandler, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, metrics_response,
    metrics_response_for,
};
#[cfg(feature = "tower")]
pub use layer::{
    BoxError, MetricsBody, MetricsLayer, MetricsService, REQUEST_ID_HEADER, ResponseFuture,
    SESSION_HEADER, TRACEPARENT_HEADER,
};

#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "otel")]
pub mod otel;
