//! Criterion benches of the in-process upstream (one `tools/call` of the demo's `echo`):
//!
//! * `rmcp/direct_handler`: the handler called with the parsed request and a request context,
//!   as the gateway's `kind = "in-process"` upstream does.
//! * `rmcp/duplex_transport`: the same call through an rmcp client and server joined by an
//!   in-memory duplex stream (serialization both ways, two task hand-offs).
//! * `gateway/in_process_echo`: a whole `POST /mcp` through the gateway's router (no socket):
//!   JWT (cached) -> rate limit -> parse -> RBAC -> in-process upstream -> audit -> metrics.
//! * `gateway/http_upstream_echo`: the same with the demo tools behind a loopback Streamable
//!   HTTP upstream.
//!
//! ```text
//! cargo bench -p mcp-gateway --bench upstream
//! ```

#![allow(
    clippy::unwrap_used,
    missing_docs,
    reason = "a bench whose fixture does not build should stop loudly"
)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::{IssueRequest, LocalIssuer};
use mcp_gateway::demo::{DemoTools, DemoUpstream, UpstreamCounters};
use mcp_gateway::{BuildOptions, Config, Gateway, Hardened};
use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientRequest, Implementation,
    InitializeRequestParams, JsonObject, NumberOrString, ProtocolVersion, Request, RequestId,
};
use rmcp::service::{RequestContext, Service as _, serve_directly};
use tower::ServiceExt as _;

fn echo_request() -> ClientRequest {
    let mut args = JsonObject::new();
    args.insert("text".into(), "hello".into());
    ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("echo").with_arguments(args),
    ))
}

fn rmcp_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tools = DemoTools::new(Arc::new(UpstreamCounters::default()));

    let direct = rt.block_on(async {
        let client = InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new("bench", "1"),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        let (client_end, server_end) = tokio::io::duplex(64);
        (
            serve_directly(tools.clone(), server_end, Some(client)),
            client_end,
        )
    });
    c.bench_function("rmcp/direct_handler", |b| {
        b.to_async(&rt).iter(|| async {
            let context = RequestContext::new(
                RequestId::from(NumberOrString::Number(1)),
                direct.0.peer().clone(),
            );
            black_box(
                direct
                    .0
                    .service()
                    .handle_request(echo_request(), context)
                    .await
                    .unwrap(),
            )
        });
    });

    let (client, _server) = rt.block_on(async {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(tools.clone().serve(server_end));
        let client = ().serve(client_end).await.unwrap();
        (client, server.await.unwrap().unwrap())
    });
    c.bench_function("rmcp/duplex_transport", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(client.send_request(echo_request()).await.unwrap()) });
    });
}

/// A gateway with the demo's limits and policy in front of `upstream` (a `[[upstreams]]`
/// body), trusting `issuer`.
fn gateway(
    rt: &tokio::runtime::Runtime,
    upstream: &str,
    issuer: &Arc<LocalIssuer>,
) -> Hardened<Router> {
    let text = format!(
        r#"
        [server]
        public_url = "http://127.0.0.1:8080"

        [auth]
        required_scope = "mcp:tools"

        [rbac]
        tenant_bound_arguments = [{{ tool = "tenant_data", argument = "tenant" }}]

        [rate_limit]
        per_user = "1000000/s burst 1000000"
        per_ip = "1000000/s burst 1000000"

        [audit]
        spool_dir = {spool}

        [[upstreams]]
        name = "demo"
        health_interval_secs = 0
        {upstream}
        "#,
        spool = toml::Value::String(
            std::env::temp_dir()
                .join(format!("mcp-gateway-bench-{}", std::process::id()))
                .display()
                .to_string()
        ),
    );
    let config = Config::from_toml_with_env(&text, "bench", []).unwrap();
    rt.block_on(Gateway::build(
        &config,
        BuildOptions::with_local_issuer(Arc::clone(issuer)),
    ))
    .unwrap()
    .router()
}

fn gateway_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = Arc::new(
        LocalIssuer::builder("http://127.0.0.1:8080", "http://127.0.0.1:8080/mcp")
            .build()
            .unwrap(),
    );
    let token = issuer
        .issue(
            &IssueRequest::new("alice")
                .tenant("acme")
                .roles(["user"])
                .scopes(["mcp:tools"]),
        )
        .unwrap()
        .token
        .expose()
        .to_owned();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let request = || {
        let mut request = http::Request::post("/mcp")
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    };

    let in_process = gateway(&rt, r#"kind = "in-process""#, &issuer);
    let upstream = rt.block_on(DemoUpstream::start()).unwrap();
    let http = gateway(&rt, &format!("url = \"{}\"", upstream.url()), &issuer);
    for (id, router) in [
        ("gateway/in_process_echo", in_process),
        ("gateway/http_upstream_echo", http),
    ] {
        let status = rt
            .block_on(router.clone().oneshot(request()))
            .unwrap()
            .status();
        assert_eq!(status, 200, "{id}");
        c.bench_function(id, |b| {
            b.to_async(&rt).iter(|| async {
                let response = router.clone().oneshot(request()).await.unwrap();
                black_box(
                    axum::body::to_bytes(response.into_body(), 1 << 16)
                        .await
                        .unwrap(),
                )
            });
        });
    }
}

criterion_group!(upstream, rmcp_paths, gateway_paths);
criterion_main!(upstream);
