//! Logs carry the request context. These tests live in their own binary: every test here
//! installs a scoped subscriber before the layer's span callsite is first hit, so tracing's
//! callsite interest can never be cached as "never" by a concurrent test without one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::service::{handler, metrics, tool_request};
use http_body_util::Full;
use mcp_metrics::logging::{self, LogConfig};
use mcp_metrics::{McpRequestInfo, MetricsLayer, TraceParent};
use tower::{Layer, ServiceExt};

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
