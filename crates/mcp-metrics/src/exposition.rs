//! The `/metrics` endpoint: an OpenMetrics text response, as a function and as a tower service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::Service;

use crate::families::McpMetrics;

/// The content type of the OpenMetrics text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for the Prometheus text format rather than OpenMetrics:
/// only when it names `text/plain` and not `application/openmetrics-text`. A missing header or
/// `*/*` gets OpenMetrics.
fn wants_prometheus_text(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// Renders `metrics` as an HTTP response: 200 with the OpenMetrics text, or 500 with a short
/// plain-text body if encoding failed (the detail is logged, not sent).
pub fn metrics_response(metrics: &McpMetrics) -> Response<Full<Bytes>> {
    metrics_response_for(metrics, None)
}

/// Like [`metrics_response`], negotiating on the request's `Accept` header: the Prometheus
/// text format 0.0.4 when only `text/plain` is accepted, OpenMetrics otherwise.
pub fn metrics_response_for(
    metrics: &McpMetrics,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    let (encoded, content_type) = if wants_prometheus_text(accept) {
        (
            metrics.encode_prometheus_text(),
            PROMETHEUS_TEXT_CONTENT_TYPE,
        )
    } else {
        (metrics.encode(), OPENMETRICS_CONTENT_TYPE)
    };
    match encoded {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Err(error) => {
            tracing::error!(%error, "encoding the metrics failed");
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"metrics encoding failed\n")));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}

/// A tower service answering every request with [`metrics_response_for`]; mount it on `/metrics`
/// (with axum: `Router::new().route_service("/metrics", MetricsHandler::new(metrics))`).
#[derive(Debug, Clone)]
pub struct MetricsHandler {
    metrics: Arc<McpMetrics>,
}

impl MetricsHandler {
    /// A handler rendering `metrics`.
    pub fn new(metrics: Arc<McpMetrics>) -> Self {
        Self { metrics }
    }
}

impl<B> Service<Request<B>> for MetricsHandler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let accept = req.headers().get(http::header::ACCEPT);
        ready(Ok(metrics_response_for(&self.metrics, accept)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let h = |v: &'static str| HeaderValue::from_static(v);
        assert!(!wants_prometheus_text(None));
        assert!(!wants_prometheus_text(Some(&h("*/*"))));
        assert!(wants_prometheus_text(Some(&h("text/plain;version=0.0.4"))));
        assert!(!wants_prometheus_text(Some(&h(
            "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ))));
    }
}
