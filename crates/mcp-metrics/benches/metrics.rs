//! Criterion benches: `metrics/record_request` (counter + histogram for one MCP call),
//! `metrics/observe_tool_call` (everything the layer records for a tool call), and
//! `metrics/layer_overhead/*` (a trivial axum handler with and without the layer, in process
//! and over loopback HTTP/1.1 keep-alive; in process also behind a no-op layer, which shows
//! what axum itself adds for any layer, and with the layers wrapped around the router instead
//! of added with `Router::layer`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark set-up: a failure must stop the bench"
)]

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::ServiceExt as _;
use axum::body::Body;
use axum::response::Response;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use mcp_metrics::RequestRecord;
use support::{
    info_subscriber, measured_around_router, measured_router, metrics, noop_layer_router,
    plain_around_router, plain_router,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

fn record(c: &mut Criterion) {
    let m = metrics();
    let call = RequestRecord {
        method: Some("tools/call"),
        tool: Some("search"),
        tenant: Some("acme"),
        status: 200,
        duration: Duration::from_micros(850),
    };
    let mut group = c.benchmark_group("metrics");
    group.bench_function("record_request", |b| {
        b.iter(|| m.record_request(black_box(&call)))
    });
    group.bench_function("observe_tool_call", |b| {
        b.iter(|| m.observe(black_box(&call)))
    });
    group.finish();
}

fn request() -> Request<Body> {
    Request::post("/mcp").body(Body::empty()).unwrap()
}

fn layer_in_process(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (plain, measured) = (plain_router(), measured_router());
    let mut group = c.benchmark_group("metrics/layer_overhead");
    group.bench_function("without_layer", |b| {
        b.to_async(&rt).iter(|| plain.clone().oneshot(request()))
    });
    group.bench_function("with_layer", |b| {
        b.to_async(&rt).iter(|| measured.clone().oneshot(request()))
    });
    let noop = noop_layer_router();
    group.bench_function("with_noop_layer", |b| {
        b.to_async(&rt).iter(|| noop.clone().oneshot(request()))
    });
    // Both layers wrapped around the router instead of added with `Router::layer`.
    let (plain_around, measured_around) = (plain_around_router(), measured_around_router());
    group.bench_function("around_router/without_layer", |b| {
        b.to_async(&rt)
            .iter(|| plain_around.clone().oneshot(request()))
    });
    group.bench_function("around_router/with_layer", |b| {
        b.to_async(&rt)
            .iter(|| measured_around.clone().oneshot(request()))
    });
    // With an info-level JSON subscriber installed, so the request span is live (its lines go
    // to a sink; no line is written per request at info).
    let guard = tracing::subscriber::set_default(info_subscriber());
    group.bench_function("with_layer_and_info_logs", |b| {
        b.to_async(&rt).iter(|| measured.clone().oneshot(request()))
    });
    drop(guard);
    group.finish();
}

/// One keep-alive HTTP/1.1 connection to a loopback server running `app`.
struct Client {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect<S>(app: S) -> Self
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Sends one POST and reads the whole response (`ok`, length known).
    async fn round_trip(&mut self) {
        self.stream
            .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        self.buf.clear();
        let mut chunk = [0u8; 512];
        loop {
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.windows(4).any(|w| w == b"\r\n\r\n") && self.buf.ends_with(b"ok") {
                return;
            }
        }
    }
}

fn layer_over_http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shared = |client: Client| Arc::new(tokio::sync::Mutex::new(client));
    let plain = shared(rt.block_on(Client::connect(plain_router())));
    let measured = shared(rt.block_on(Client::connect(measured_router())));
    // The set-up the crate recommends: the layers wrapped around the router.
    let plain_around = shared(rt.block_on(Client::connect(plain_around_router())));
    let measured_around = shared(rt.block_on(Client::connect(measured_around_router())));
    let mut group = c.benchmark_group("metrics/layer_overhead_http");
    for (id, client) in [
        ("without_layer", &plain),
        ("with_layer", &measured),
        ("around_router/without_layer", &plain_around),
        ("around_router/with_layer", &measured_around),
    ] {
        group.bench_function(id, |b| {
            b.to_async(&rt)
                .iter(|| async { client.lock().await.round_trip().await })
        });
    }
    group.finish();
}

criterion_group!(benches, record, layer_in_process, layer_over_http);
criterion_main!(benches);
