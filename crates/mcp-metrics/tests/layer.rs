//! The tower layer records method, tool, status and duration from an outer layer's
//! `McpRequestInfo` or from the parsed body, and logs carry the request context.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_metrics::logging::{self, LogConfig};
use mcp_metrics::{
    McpMetrics, McpRequestInfo, MetricsBody, MetricsConfig, MetricsLayer, TraceParent,
};
use tower::{Layer, Service, ServiceExt};

/// The inner service: status by tool name, echoes the body it received, and logs a line. It
/// receives `Full<Bytes>` from a pass-through layer, `MetricsBody<Full<Bytes>>` from a parsing one.
async fn handler<B: http_body::Body<Data = Bytes>>(
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

fn metrics() -> Arc<McpMetrics> {
    Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap())
}

fn tool_request(tool: &str, tenant: &str) -> Request<Full<Bytes>> {
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

/// A `MakeWriter` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const META_TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const HEADER_TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn json_logs_carry_the_request_context_on_every_line() {
    let out = Captured::default();
    let writer = out.clone();
    let config = LogConfig::json().filter("debug").use_rust_log(false);
    let subscriber = logging::subscriber(&config, move || writer.clone()).unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let svc = MetricsLayer::new(metrics()).layer(tower::service_fn(handler::<Full<Bytes>>));
    let mut req = tool_request("search", "acme");
    req.headers_mut()
        .insert("x-request-id", "req-123".parse().unwrap());
    req.headers_mut()
        .insert("traceparent", HEADER_TP.parse().unwrap());
    let info = req.extensions_mut().get_mut::<McpRequestInfo>().unwrap();
    info.traceparent = Some(TraceParent::parse(META_TP).unwrap());
    rt.block_on(svc.clone().oneshot(req)).unwrap();

    // Header traceparent only, and a generated request id.
    let mut req = tool_request("other-tool", "globex");
    req.headers_mut()
        .insert("traceparent", HEADER_TP.parse().unwrap());
    rt.block_on(svc.oneshot(req)).unwrap();

    let lines: Vec<serde_json::Value> = out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let inside: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "inside handler")
        .collect();
    assert_eq!(inside.len(), 2, "{lines:#?}");
    let first = &inside[0]["span"];
    assert_eq!(first["name"], "mcp.request");
    assert_eq!(first["request_id"], "req-123");
    assert_eq!(first["subject"], "alice");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["mcp.session.id"], "s-1");
    assert_eq!(first["mcp.method.name"], "tools/call");
    assert_eq!(first["gen_ai.tool.name"], "search");
    // `_meta.traceparent` wins over the HTTP header.
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(inside[0]["answer"], 42);

    let second = &inside[1]["span"];
    assert_eq!(second["tenant"], "globex");
    assert_eq!(second["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    let generated = second["request_id"].as_str().unwrap();
    assert_eq!(generated.len(), 16);
    assert_ne!(generated, "req-123");

    // The closing line carries the status.
    assert!(lines.iter().any(|l| l["message"] == "request finished"
        && l["status"] == 200
        && l["span"]["request_id"] == "req-123"));
}

#[test]
fn human_logs_carry_the_request_context() {
    let out = Captured::default();
    let writer = out.clone();
    let config = LogConfig::human().filter("info").use_rust_log(false);
    let subscriber = logging::subscriber(&config, move || writer.clone()).unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let svc = MetricsLayer::new(metrics()).layer(tower::service_fn(handler::<Full<Bytes>>));
    rt.block_on(svc.oneshot(tool_request("search", "acme")))
        .unwrap();
    let text = out.text();
    let line = text.lines().find(|l| l.contains("inside handler")).unwrap();
    for want in [
        "mcp.request{",
        "subject=\"alice\"",
        "tenant=\"acme\"",
        "mcp.method.name=\"tools/call\"",
        "gen_ai.tool.name=\"search\"",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
}
