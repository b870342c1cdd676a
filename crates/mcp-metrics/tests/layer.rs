//! The tower layer records method, tool, status and duration from an outer layer's
//! `McpRequestInfo` or from the parsed body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::service::{handler, metrics, tool_request};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mcp_metrics::{McpRequestInfo, MetricsBody, MetricsLayer};
use tower::{Layer, Service, ServiceExt};

#[tokio::test]
async fn records_method_tool_status_and_duration_from_the_extension() {
    let metrics = metrics();
    let mut svc =
        MetricsLayer::new(Arc::clone(&metrics)).layer(tower::service_fn(handler::<Full<Bytes>>));
    for tool in ["search", "search", "deny", "boom", "slow-down"] {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(tool_request(tool, "acme"))
            .await
            .unwrap();
        assert_eq!(response.headers()["x-seen-method"], "tools/call");
    }
    let ping = Request::post("/mcp").body(Full::new(Bytes::new())).unwrap();
    let mut ping = ping;
    ping.extensions_mut().insert(McpRequestInfo::new("ping"));
    svc.ready().await.unwrap().call(ping).await.unwrap();

    let exp = common::parse(&metrics.encode().unwrap());
    let v = |name: &str, labels: &[(&str, &str)]| exp.value(name, labels);
    let call = |tool: &'static str, status: &'static str| {
        vec![("method", "tools/call"), ("tool", tool), ("status", status)]
    };
    assert_eq!(v("mcp_requests_total", &call("search", "200")), Some(2.0));
    assert_eq!(v("mcp_requests_total", &call("deny", "403")), Some(1.0));
    assert_eq!(v("mcp_requests_total", &call("boom", "500")), Some(1.0));
    assert_eq!(
        v(
            "mcp_requests_total",
            &[("method", "ping"), ("tool", ""), ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_request_duration_seconds_count",
            &[("method", "tools/call"), ("tool", "search")]
        ),
        Some(2.0)
    );
    let err = |tool: &'static str, ty: &'static str| {
        vec![("method", "tools/call"), ("tool", tool), ("error_type", ty)]
    };
    assert_eq!(
        v("mcp_request_errors_total", &err("deny", "forbidden")),
        Some(1.0)
    );
    assert_eq!(
        v("mcp_request_errors_total", &err("boom", "server_error")),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_request_errors_total",
            &err("slow-down", "rate_limited")
        ),
        Some(1.0)
    );
    let tc = |tool: &'static str, outcome: &'static str| {
        vec![("tool", tool), ("tenant", "acme"), ("outcome", outcome)]
    };
    assert_eq!(
        v("mcp_tool_calls_total", &tc("search", "success")),
        Some(2.0)
    );
    assert_eq!(v("mcp_tool_calls_total", &tc("deny", "denied")), Some(1.0));
    assert_eq!(v("mcp_tool_calls_total", &tc("boom", "error")), Some(1.0));
    assert_eq!(
        v("mcp_tool_calls_total", &tc("slow-down", "rate_limited")),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_tool_usage_duration_seconds_count",
            &[("tool", "search"), ("category", "quick_action")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "mcp_tenant_activity_total",
            &[("tenant", "acme"), ("activity", "denied")]
        ),
        Some(1.0)
    );
    // The subject was counted (hashed) as an active user of the tenant.
    assert_eq!(v("mcp_concurrent_users", &[("tenant", "acme")]), Some(1.0));
}

#[tokio::test]
async fn parses_the_body_only_when_enabled_absent_and_small() {
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"lookup"}}"#;
    let post = || {
        Request::post("/mcp")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };

    // Enabled: parsed, the info is handed on to the inner service, the body arrives intact.
    let metrics_a = metrics();
    let svc = MetricsLayer::new(Arc::clone(&metrics_a))
        .parse_body(1024)
        .layer(tower::service_fn(handler::<MetricsBody<Full<Bytes>>>));
    let response = svc.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.headers()["x-seen-method"], "tools/call");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        body.as_bytes()
    );
    let exp = common::parse(&metrics_a.encode().unwrap());
    assert_eq!(
        exp.value(
            "mcp_requests_total",
            &[
                ("method", "tools/call"),
                ("tool", "lookup"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );

    // An outer layer's info wins; the body is not parsed.
    let mut req = post();
    req.extensions_mut()
        .insert(McpRequestInfo::new("tools/list"));
    let response = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(response.headers()["x-seen-method"], "tools/list");

    // Too large for the limit: passed through untouched, counted as plain HTTP.
    let metrics_b = metrics();
    let small = MetricsLayer::new(Arc::clone(&metrics_b))
        .parse_body(16)
        .layer(tower::service_fn(handler::<MetricsBody<Full<Bytes>>>));
    let response = small.oneshot(post()).await.unwrap();
    assert_eq!(response.headers()["x-seen-method"], "");
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        body.as_bytes()
    );

    // Not enabled: never parsed.
    let off =
        MetricsLayer::new(Arc::clone(&metrics_b)).layer(tower::service_fn(handler::<Full<Bytes>>));
    off.oneshot(post()).await.unwrap();
    let exp = common::parse(&metrics_b.encode().unwrap());
    assert_eq!(
        exp.value(
            "mcp_requests_total",
            &[("method", "http"), ("tool", ""), ("status", "200")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_failing_service_is_counted_with_status_error() {
    let metrics = metrics();
    let svc = MetricsLayer::new(Arc::clone(&metrics)).layer(tower::service_fn(
        |_req: Request<Full<Bytes>>| async { Err::<Response<Full<Bytes>>, _>("backend down") },
    ));
    let mut req = Request::post("/mcp").body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(McpRequestInfo::new("tools/list"));
    assert!(svc.oneshot(req).await.is_err());
    let exp = common::parse(&metrics.encode().unwrap());
    assert_eq!(
        exp.value(
            "mcp_requests_total",
            &[("method", "tools/list"), ("tool", ""), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        exp.value(
            "mcp_request_errors_total",
            &[
                ("method", "tools/list"),
                ("tool", ""),
                ("error_type", "internal")
            ]
        ),
        Some(1.0)
    );
}
