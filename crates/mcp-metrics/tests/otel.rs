//! Exported spans: the in-memory exporter shows the MCP attributes and the parent taken from
//! `traceparent`; the OTLP/HTTP exporter posts to a loopback receiver's `/v1/traces`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use mcp_metrics::otel::{OtelConfig, otel_layer, tracer_provider};
use mcp_metrics::{McpMetrics, McpRequestInfo, MetricsConfig, MetricsLayer, TraceParent};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{Layer, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

const META_TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const HEADER_TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn run_requests(requests: Vec<Request<Full<Bytes>>>) {
    let metrics = Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap());
    let svc =
        MetricsLayer::new(metrics).layer(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            tracing::info!("handling");
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for req in requests {
        rt.block_on(svc.clone().oneshot(req)).unwrap();
    }
}

fn tool_call(meta: Option<&str>, header: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/mcp").body(Full::new(Bytes::new())).unwrap();
    if let Some(h) = header {
        req.headers_mut().insert("traceparent", h.parse().unwrap());
    }
    let mut info = McpRequestInfo::new("tools/call")
        .with_tool("search")
        .with_session("s-1")
        .with_tenant("acme");
    if let Some(m) = meta {
        info = info.with_traceparent(TraceParent::parse(m).unwrap());
    }
    req.extensions_mut().insert(info);
    req
}

#[test]
fn spans_have_mcp_attributes_and_the_traceparent_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        run_requests(vec![
            tool_call(Some(META_TP), Some(HEADER_TP)),
            tool_call(None, Some(HEADER_TP)),
            tool_call(None, None),
        ]);
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    for span in &spans {
        assert_eq!(span.name, "tools/call search");
        assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
        assert_eq!(attr(span, "mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(attr(span, "gen_ai.tool.name").as_deref(), Some("search"));
        assert_eq!(attr(span, "mcp.session.id").as_deref(), Some("s-1"));
        assert_eq!(attr(span, "tenant").as_deref(), Some("acme"));
        assert_eq!(
            attr(span, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
    let meta = TraceParent::parse(META_TP).unwrap();
    let header = TraceParent::parse(HEADER_TP).unwrap();
    // `_meta.traceparent` wins over the header.
    assert_eq!(
        spans[0].span_context.trace_id(),
        TraceId::from_bytes(meta.trace_id)
    );
    assert_eq!(spans[0].parent_span_id, SpanId::from_bytes(meta.parent_id));
    assert_eq!(
        spans[1].span_context.trace_id(),
        TraceId::from_bytes(header.trace_id)
    );
    assert_eq!(
        spans[1].parent_span_id,
        SpanId::from_bytes(header.parent_id)
    );
    // No traceparent: a new root.
    assert_eq!(spans[2].parent_span_id, SpanId::INVALID);
    assert_ne!(
        spans[2].span_context.trace_id(),
        TraceId::from_bytes(header.trace_id)
    );
}

/// One request the receiver saw: path, content type and body.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal HTTP/1.1 receiver on loopback: answers 200 to every request, records it.
/// Bounded: at most 16 connections and 64 requests per connection.
fn spawn_receiver() -> (std::net::SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                for _ in 0..64 {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            match k.trim().to_ascii_lowercase().as_str() {
                                "content-length" => length = v.trim().parse().unwrap_or(0),
                                "content-type" => content_type = v.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; length.min(16 * 1024 * 1024)];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    record.lock().unwrap().push((path, content_type, body));
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn otlp_http_exporter_posts_spans_to_the_receiver() {
    let (addr, seen) = spawn_receiver();
    let config = OtelConfig::default()
        .endpoint(format!("http://{addr}"))
        .service_name("mcp-metrics-test");
    let provider = tracer_provider(&config).unwrap();
    let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        run_requests(vec![tool_call(Some(META_TP), None)]);
    }
    // Shutting down flushes the batch processor (blocking, on its own thread).
    provider.shutdown().unwrap();

    let seen = seen.lock().unwrap();
    let posts: Vec<_> = seen
        .iter()
        .filter(|(path, _, _)| path == "/v1/traces")
        .collect();
    assert!(
        !posts.is_empty(),
        "no POST to /v1/traces: {:?}",
        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    let (_, content_type, body) = posts[0];
    assert_eq!(content_type, "application/x-protobuf");
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    let meta = TraceParent::parse(META_TP).unwrap();
    // Protobuf carries ids as raw bytes and strings verbatim.
    assert!(contains(&meta.trace_id), "trace id from traceparent");
    assert!(contains(&meta.parent_id), "parent span id from traceparent");
    for text in [
        "tools/call search",
        "mcp.method.name",
        "gen_ai.tool.name",
        "mcp-metrics-test",
    ] {
        assert!(contains(text.as_bytes()), "{text} missing");
    }
}
