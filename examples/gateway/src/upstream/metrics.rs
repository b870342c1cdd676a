//! The registry's own metric families, registered next to mcp-metrics' families: upstream
//! failures by kind, breaker state, and lists answered without a failed upstream's part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::UpstreamError;
use super::breaker::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

/// The families (cheap to share: each is an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamMetrics {
    errors: Family<ErrorLabels, Counter>,
    breaker: Family<UpstreamLabel, Gauge>,
    partial_lists: Family<UpstreamLabel, Counter>,
}

impl UpstreamMetrics {
    /// The families, registered in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "mcp_gateway_upstream_errors",
            "Upstream calls that failed, by upstream and kind (timeout, unavailable, circuit_open)",
            metrics.errors.clone(),
        );
        registry.register(
            "mcp_gateway_upstream_breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open",
            metrics.breaker.clone(),
        );
        registry.register(
            "mcp_gateway_upstream_partial_lists",
            "Merged lists answered without an upstream's part because it failed",
            metrics.partial_lists.clone(),
        );
        metrics
    }

    fn label(upstream: &str) -> UpstreamLabel {
        UpstreamLabel {
            upstream: upstream.to_owned(),
        }
    }

    /// Counts a failed call (JSON-RPC errors are answers, not failures).
    pub(crate) fn failed(&self, upstream: &str, error: &UpstreamError) {
        let kind = match error {
            UpstreamError::Rpc(_) => return,
            UpstreamError::Timeout => "timeout",
            UpstreamError::CircuitOpen { .. } => "circuit_open",
            _ => "unavailable",
        };
        self.errors
            .get_or_create(&ErrorLabels {
                upstream: upstream.to_owned(),
                kind,
            })
            .inc();
    }

    /// Sets the breaker gauge.
    pub(crate) fn breaker(&self, upstream: &str, state: State) {
        self.breaker
            .get_or_create(&Self::label(upstream))
            .set(state.gauge());
    }

    /// Counts a merged list answered without `upstream`'s part.
    pub(crate) fn partial_list(&self, upstream: &str) {
        self.partial_lists
            .get_or_create(&Self::label(upstream))
            .inc();
    }

    /// Forgets a removed upstream's breaker gauge (its counters stay, as counters do).
    pub(crate) fn forget(&self, upstream: &str) {
        self.breaker.remove(&Self::label(upstream));
    }
}
