//! The tower layer: 429 with `Retry-After` and the IETF headers, a JSON-RPC error with the
//! request id for MCP requests, per-tool cost from the JSON-RPC body, client-IP keys
//! through trusted proxies, and IP blocking.
#![cfg(feature = "tower")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions stop loudly"
)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_ratelimit::http::{LimitedRequestBody, McpRequest, RateLimitLayer};
use mcp_ratelimit::{
    BlockConfig, ClientIpResolver, FakeClock, IpBlocker, MemoryStore, RateLimiter, RequestKeys,
    Rule, Scope, Timestamp,
};
use tower::{Layer, Service, ServiceExt, service_fn};

type Inner = tower::util::BoxCloneService<
    Request<LimitedRequestBody<Full<Bytes>>>,
    Response<Full<Bytes>>,
    Infallible,
>;

/// An upstream that echoes the body it received.
fn echo() -> Inner {
    tower::util::BoxCloneService::new(service_fn(
        |req: Request<LimitedRequestBody<Full<Bytes>>>| async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        },
    ))
}

fn extractor() -> impl Fn(&http::request::Parts, Option<&McpRequest>) -> RequestKeys + Clone {
    let resolver = ClientIpResolver::new().trust("10.0.0.0/8".parse().unwrap());
    move |parts: &http::request::Parts, mcp: Option<&McpRequest>| {
        let peer = parts
            .extensions
            .get::<SocketAddr>()
            .map_or(IpAddr::from([127, 0, 0, 1]), SocketAddr::ip);
        let mut keys = RequestKeys::new().client_ip(resolver.resolve(peer, &parts.headers));
        if let Some(tool) = mcp.and_then(|m| m.tool.clone()) {
            keys = keys.tool(tool);
        }
        keys
    }
}

fn limiter(clock: &FakeClock) -> RateLimiter {
    RateLimiter::builder()
        .rule(Rule::gcra("per-ip", Scope::ClientIp, "3/min".parse().unwrap()).unwrap())
        .tool_cost("expensive", NonZeroU32::new(3).unwrap())
        .clock(clock.clone())
        .build(MemoryStore::new())
        .unwrap()
}

fn mcp_call(id: u64, tool: &str, peer: &str, xff: Option<&str>) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    );
    let mut b = Request::post("/mcp").header("content-type", "application/json");
    if let Some(xff) = xff {
        b = b.header("x-forwarded-for", xff);
    }
    let mut req = b.body(Full::new(Bytes::from(body))).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

#[tokio::test]
async fn denies_with_429_headers_and_a_json_rpc_error() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let mut svc = RateLimitLayer::new(limiter(&clock), extractor()).layer(echo());
    for id in 1..=3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(mcp_call(id, "cheap", "192.0.2.1:1000", None))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["ratelimit-policy"], "\"per-ip\";q=3;w=60");
        let expected = format!("\"per-ip\";r={};t={}", 3 - id, 20 * id);
        assert_eq!(res.headers()["ratelimit"], expected.as_str());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            body.starts_with(b"{\"jsonrpc\""),
            "the upstream got the buffered body"
        );
    }
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(mcp_call(42, "cheap", "192.0.2.1:1000", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "20");
    assert_eq!(res.headers()["ratelimit"], "\"per-ip\";r=0;t=60");
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], -32029);
    assert_eq!(body["error"]["data"]["retryAfterSeconds"], 20);
    // Another client is unaffected.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(mcp_call(1, "cheap", "192.0.2.2:1000", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn tool_cost_comes_from_the_json_rpc_body() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let mut svc = RateLimitLayer::new(limiter(&clock), extractor()).layer(echo());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(mcp_call(1, "expensive", "192.0.2.1:1", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["ratelimit"], "\"per-ip\";r=0;t=60");
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(mcp_call(2, "cheap", "192.0.2.1:1", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn client_ip_only_from_trusted_proxies() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let mut svc = RateLimitLayer::new(limiter(&clock), extractor()).layer(echo());
    // Behind the trusted proxy 10.0.0.1, each forwarded client has its own budget.
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..3 {
            let req = mcp_call(1, "cheap", "10.0.0.1:5000", Some(client));
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    // An untrusted peer cannot pick a fresh identity with a forged header.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let forged = format!("203.0.113.{i}");
        let req = mcp_call(1, "cheap", "192.0.2.50:5000", Some(&forged));
        statuses.push(svc.ready().await.unwrap().call(req).await.unwrap().status());
    }
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn plain_requests_pass_unread_and_get_a_plain_429() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let mut svc = RateLimitLayer::new(limiter(&clock), extractor()).layer(echo());
    let get = || {
        let mut req = Request::get("/mcp")
            .body(Full::new(Bytes::from_static(b"raw")))
            .unwrap();
        req.extensions_mut()
            .insert("192.0.2.9:1".parse::<SocketAddr>().unwrap());
        req
    };
    for _ in 0..3 {
        let res = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "raw");
    }
    let res = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn oversized_json_is_413() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let mut svc = RateLimitLayer::new(limiter(&clock), extractor())
        .max_body(16)
        .layer(echo());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(mcp_call(1, "cheap", "192.0.2.1:1", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn abusive_ips_get_blocked() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let store = MemoryStore::new();
    let limiter = RateLimiter::builder()
        .rule(Rule::gcra("per-ip", Scope::ClientIp, "1/s".parse().unwrap()).unwrap())
        .clock(clock.clone())
        .build(store.clone())
        .unwrap();
    let config = BlockConfig {
        reject_threshold: NonZeroU32::new(5).unwrap(),
        block_for: Duration::from_secs(600),
        ..BlockConfig::default()
    };
    let blocker = IpBlocker::with_clock(store, config, clock.clone());
    let mut svc = RateLimitLayer::new(limiter, extractor())
        .with_blocker(blocker.clone())
        .layer(echo());
    let ip: IpAddr = "192.0.2.77".parse().unwrap();
    let mut call = async || {
        let req = mcp_call(1, "cheap", "192.0.2.77:9", None);
        svc.ready().await.unwrap().call(req).await.unwrap()
    };
    assert_eq!(call().await.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(call().await.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(
        blocker.blocked_for(ip).await.unwrap(),
        Some(Duration::from_secs(600))
    );
    // Long after its rate limit refilled, the blocked client is still turned away.
    clock.advance(Duration::from_secs(60));
    let res = call().await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "540");
    blocker.unblock(ip).await.unwrap();
    assert_eq!(call().await.status(), StatusCode::OK);
}
