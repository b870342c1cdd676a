//! The services both benches measure: a trivial axum handler without the layer, behind a no-op
//! layer, and behind [`MetricsLayer`], each after the same outer layer that supplies the parsed
//! MCP envelope (layers added with `Router::layer`, or wrapped around the whole router); and
//! the info-level JSON subscriber that makes the request span live.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::Request;
use mcp_metrics::logging::{self, LogConfig};
use mcp_metrics::{McpMetrics, McpRequestInfo, MetricsConfig, MetricsLayer, MetricsService};
use tower::Layer;
use tower::util::{MapRequest, MapRequestLayer};

pub(crate) fn metrics() -> Arc<McpMetrics> {
    Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap())
}

/// The outer layer's parsed envelope, the same in every variant.
fn with_info(mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut().insert(
        McpRequestInfo::new("tools/call")
            .with_tool("search")
            .with_tenant("acme")
            .with_subject("alice")
            .with_session("s-1"),
    );
    req
}

/// The handler alone (behind the envelope layer).
pub(crate) fn plain_router() -> Router {
    Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(MapRequestLayer::new(with_info))
}

/// The handler behind [`MetricsLayer`].
pub(crate) fn measured_router() -> Router {
    Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(MetricsLayer::new(metrics()))
        .layer(MapRequestLayer::new(with_info))
}

/// The same handler behind a layer that does nothing: what axum itself costs per layer
/// (boxing and cloning the wrapped route), for reading the measured router against.
pub(crate) fn noop_layer_router() -> Router {
    Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(MapRequestLayer::new(|req: Request<Body>| req))
        .layer(MapRequestLayer::new(with_info))
}

/// The outer envelope layer as a service type.
pub(crate) type WithInfo<S> = MapRequest<S, fn(Request<Body>) -> Request<Body>>;

fn handler_router() -> Router {
    Router::new().route("/mcp", post(|| async { "ok" }))
}

/// The handler's router inside the envelope layer, both wrapped around the router rather than
/// added with `Router::layer` (which boxes and clones the layered route per request).
pub(crate) fn plain_around_router() -> WithInfo<Router> {
    MapRequest::new(handler_router(), with_info)
}

/// [`plain_around_router`] with [`MetricsLayer`] around the router, inside the envelope layer.
pub(crate) fn measured_around_router() -> WithInfo<MetricsService<Router>> {
    MapRequest::new(
        MetricsLayer::new(metrics()).layer(handler_router()),
        with_info,
    )
}

/// An info-level JSON subscriber writing to a sink: the request span is live, and no line is
/// written per request at info.
pub(crate) fn info_subscriber() -> impl tracing::Subscriber + Send + Sync {
    logging::subscriber(
        &LogConfig::json().filter("info").use_rust_log(false),
        std::io::sink,
    )
    .unwrap()
}
