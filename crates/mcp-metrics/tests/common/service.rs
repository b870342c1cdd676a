//! The inner service and requests shared by the layer and logging tests.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_metrics::{McpMetrics, McpRequestInfo, MetricsConfig};

/// The inner service: status by tool name, echoes the body it received, and logs a line. It
/// receives `Full<Bytes>` from a pass-through layer, `MetricsBody<Full<Bytes>>` from a parsing one.
pub(crate) async fn handler<B: http_body::Body<Data = Bytes>>(
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let info = req.extensions().get::<McpRequestInfo>().cloned();
    let status = match info.as_ref().and_then(|i| i.tool.as_deref()) {
        Some("deny") => StatusCode::FORBIDDEN,
        Some("boom") => StatusCode::INTERNAL_SERVER_ERROR,
        Some("slow-down") => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::OK,
    };
    tracing::info!(answer = 42, "inside handler");
    let body = req.into_body().collect().await.map(|c| c.to_bytes());
    let body = body.unwrap_or_else(|_| Bytes::from_static(b"body error"));
    let method = info.map(|i| i.method).unwrap_or_default();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-seen-method", method.parse().unwrap());
    Ok(response)
}

pub(crate) fn metrics() -> Arc<McpMetrics> {
    Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap())
}

pub(crate) fn tool_request(tool: &str, tenant: &str) -> Request<Full<Bytes>> {
    let mut req = Request::post("/mcp").body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut().insert(
        McpRequestInfo::new("tools/call")
            .with_tool(tool)
            .with_tenant(tenant)
            .with_subject("alice")
            .with_session("s-1"),
    );
    req
}
