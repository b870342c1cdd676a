//! End-to-end tests of the upstream registry: the real gateway (testkit issuer, SQLite audit)
//! in front of several real rmcp upstreams (the demo tools over Streamable HTTP, and over
//! stdio as a child process), all on 127.0.0.1: prefixed names, merged and filtered lists,
//! routing, the circuit breaker, the admin API and identity assertions.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mcp_audit::{AuditFilter, Category, Decision, Scope};
use mcp_auth_core::jwt::{Algorithm, JwtAuthenticator, JwtValidator, KeySet};
use mcp_gateway::GATEWAY_JWKS_PATH;
use mcp_gateway::demo::DemoUpstream;
use serde_json::{Value, json};

mod common;

use common::gateway::{TestGateway, text_of};

/// Roles of these tests: `analyst` may list and call the `a_*` tools only; `platform_admin`
/// may use the gateway-wide admin API.
const POLICY: &str = r#"
[rbac]
policy = """
[roles.analyst]
allow = [{ action = "tools/list" }, { action = "tools/call", resource = "a_*" }]

[roles.platform_admin]
allow = [{ action = "admin:*", cross_tenant = true }]
"""
"#;

/// A gateway with `upstreams` (whole `[[upstreams]]` sections) and `extra` TOML.
async fn start(upstreams: &str, extra: &str) -> TestGateway {
    TestGateway::start("upstreams", &format!("{upstreams}\n{extra}")).await
}

impl TestGateway {
    fn admin(&self) -> String {
        self.token("root", "acme", "admin")
    }

    fn platform(&self) -> String {
        self.token("ops", "acme", "platform_admin")
    }

    /// The tool names `token` sees, sorted.
    async fn tool_names(&self, token: &str) -> Vec<String> {
        let (status, body) = self.rpc(token, "tools/list", json!({})).await;
        assert_eq!(status, 200, "{body}");
        let mut names: Vec<String> = body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    async fn metrics(&self) -> String {
        self.get(None, "/metrics")
            .await
            .1
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The registry's report of upstream `name`.
    async fn upstream_status(&self, name: &str) -> Value {
        let (status, body) = self
            .get(Some(&self.platform()), "/api/v1/admin/upstreams")
            .await;
        assert_eq!(status, 200, "{body}");
        body["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn http_upstream(name: &str, upstream: &DemoUpstream, extra: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"{name}\"\nurl = \"{}\"\nhealth_interval_secs = 0\n{extra}\n",
        upstream.url()
    )
}

fn tool_calls(upstream: &DemoUpstream) -> u64 {
    upstream.counters().tool_calls.load(Ordering::Relaxed)
}

const DEMO_TOOLS: [&str; 4] = ["add", "admin.stats", "echo", "tenant_data"];

fn prefixed(prefix: &str) -> Vec<String> {
    DEMO_TOOLS.iter().map(|t| format!("{prefix}{t}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_are_prefixed_merged_filtered_and_routed() {
    let a = DemoUpstream::start().await.unwrap();
    let mut b = DemoUpstream::start().await.unwrap();
    let upstreams = format!(
        "{}{}",
        http_upstream("a", &a, ""),
        http_upstream("b", &b, "")
    );
    let extra = format!(
        "{POLICY}\ntenant_bound_arguments = [{{ tool = \"b_tenant_data\", argument = \"tenant\" }}]"
    );
    let gw = start(&upstreams, &extra).await;
    let admin = gw.admin();
    let analyst = gw.token("ann", "acme", "analyst");

    // Merged, prefixed, filtered by RBAC on the prefixed names.
    let mut all = prefixed("a_");
    all.extend(prefixed("b_"));
    assert_eq!(gw.tool_names(&admin).await, all);
    assert_eq!(gw.tool_names(&analyst).await, prefixed("a_"));

    // Routed by prefix, with the prefix removed.
    let (status, body) = gw
        .call_tool(&analyst, "a_echo", json!({"text": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "hi");
    assert_eq!((tool_calls(&a), tool_calls(&b)), (1, 0));
    let (status, body) = gw
        .call_tool(&admin, "b_add", json!({"a": 2, "b": 40}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "42");
    assert_eq!((tool_calls(&a), tool_calls(&b)), (1, 1));

    // Refused by RBAC before any upstream sees it; unknown prefixes are a JSON-RPC error.
    let (status, _) = gw.call_tool(&analyst, "b_echo", json!({"text": "x"})).await;
    assert_eq!(status, 403);
    let (status, _) = gw
        .call_tool(&admin, "b_tenant_data", json!({"tenant": "globex"}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = gw.call_tool(&admin, "c_echo", json!({"text": "x"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert_eq!((tool_calls(&a), tool_calls(&b)), (1, 1));

    // `initialize` describes the union under the gateway's name.
    let (status, body) = gw
        .rpc(
            &admin,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "e2e", "version": "1"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "mcp-gateway");
    assert!(
        body["result"]["capabilities"]["tools"].is_object(),
        "{body}"
    );

    // One upstream down: the list is partial (and counted), the other still answers, and
    // readiness reports it.
    b.stop().await;
    assert_eq!(gw.tool_names(&admin).await, prefixed("a_"));
    let (status, _) = gw
        .call_tool(&admin, "a_echo", json!({"text": "still"}))
        .await;
    assert_eq!(status, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"mcp_gateway_upstream_partial_lists_total{upstream="b"} 1"#),
        "{metrics}"
    );
    let (status, ready) = gw.get(None, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    let checks = &ready["checks"]["upstreams"];
    assert_eq!(checks[0]["reachable"], true, "{ready}");
    assert_eq!(checks[1]["name"], "b");
    assert_eq!(checks[1]["reachable"], false, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_upstream_serves_next_to_an_http_one() {
    let web = DemoUpstream::start().await.unwrap();
    let upstreams = format!(
        "{}[[upstreams]]\nname = \"local\"\nkind = \"stdio\"\ncommand = {}\nhealth_interval_secs = 0\nrequired = false\n",
        http_upstream("web", &web, ""),
        toml::Value::String(env!("CARGO_BIN_EXE_mcp-gateway-demo-stdio").to_owned()),
    );
    let mut gw = start(&upstreams, POLICY).await;
    let admin = gw.admin();
    let mut all = prefixed("local_");
    all.extend(prefixed("web_"));
    all.sort();
    assert_eq!(gw.tool_names(&admin).await, all);
    let (status, body) = gw
        .call_tool(&admin, "local_add", json!({"a": 1.5, "b": 2}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "3.5");
    assert_eq!(tool_calls(&web), 0);
    // The stdio server counts its own calls.
    let (status, body) = gw.call_tool(&admin, "local_admin.stats", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(text_of(&body)).unwrap();
    assert_eq!(stats["tool_calls"], 2);

    let (status, ready) = gw.get(None, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["upstreams"][1]["reachable"], true);
    let local = gw.upstream_status("local").await;
    assert_eq!(local["kind"], "stdio");
    assert_eq!(local["breaker"]["state"], "closed");
    assert!(local["last_success_unix_ms"].as_u64().is_some(), "{local}");
    assert!(gw.shutdown().await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_when_an_upstream_dies_and_closes_when_it_returns() {
    let a = DemoUpstream::start().await.unwrap();
    let mut b = DemoUpstream::start().await.unwrap();
    let b_addr = b.addr();
    let flaky = "breaker = { failure_threshold = 2, cool_down_secs = 1 }\nreconnect = { initial_backoff_ms = 50, max_backoff_secs = 1 }\ntimeout_secs = 5";
    let upstreams = format!(
        "{}{}",
        http_upstream("a", &a, ""),
        http_upstream("b", &b, flaky)
    );
    let gw = start(&upstreams, POLICY).await;
    let admin = gw.admin();
    let echo = json!({"text": "x"});
    assert_eq!(gw.call_tool(&admin, "b_echo", echo.clone()).await.0, 200);

    b.stop().await;
    for _ in 0..2 {
        let (status, body) = gw.call_tool(&admin, "b_echo", echo.clone()).await;
        assert!(status == 502 || status == 504, "{status} {body}");
    }
    // Open: refused at once, without asking the upstream.
    let response = gw
        .rpc_response(
            &admin,
            "tools/call",
            json!({"name": "b_echo", "arguments": echo}),
        )
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "upstream unavailable (circuit open)"
    );
    // The other upstream is not affected.
    assert_eq!(gw.call_tool(&admin, "a_echo", echo.clone()).await.0, 200);
    let status = gw.upstream_status("b").await;
    assert_eq!(status["breaker"]["state"], "open", "{status}");
    assert_eq!(status["breaker"]["opened_total"], 1);
    assert!(status["last_error"].is_string(), "{status}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"mcp_gateway_upstream_breaker_state{upstream="b"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_gateway_upstream_errors_total{upstream="b",kind="circuit_open"}"#),
        "{metrics}"
    );

    // Back at the same address: after the cool-down a probe closes the breaker. Bounded:
    // 100 x 100 ms.
    let b = DemoUpstream::start_at(b_addr).await.unwrap();
    let mut last = 0;
    for _ in 0..100 {
        last = gw.call_tool(&admin, "b_echo", echo.clone()).await.0;
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200);
    assert_eq!(tool_calls(&b), 1);
    let status = gw.upstream_status("b").await;
    assert_eq!(status["breaker"]["state"], "closed", "{status}");
    assert_eq!(status["breaker"]["consecutive_failures"], 0);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"mcp_gateway_upstream_breaker_state{upstream="b"} 0"#),
        "{metrics}"
    );
}

/// A stateful demo upstream on a port below the kernel's ephemeral range (32768 and up on
/// Linux), so that no socket of the tests running beside it is given its port while it is
/// restarted: bound to port 0, a connection elsewhere could take the port in between.
async fn stateful_below_the_ephemeral_ports() -> std::io::Result<DemoUpstream> {
    let mut last = None;
    for _ in 0..200 {
        let port = rand::random_range(20_000..30_000);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match DemoUpstream::start_stateful_at(addr).await {
            Ok(up) => return Ok(up),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port tried")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_stateful_upstream_gets_a_new_session_without_a_failed_call() {
    let mut up = stateful_below_the_ephemeral_ports().await.unwrap();
    let addr = up.addr();
    let mut gw = start(&http_upstream("solo", &up, ""), POLICY).await;
    let admin = gw.admin();
    let echo = json!({"text": "x"});
    let (status, body) = gw.call_tool(&admin, "echo", echo.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tool_calls(&up), 1);

    // The new process knows nothing of the gateway's session: it answers 404, and the
    // gateway makes a new handshake and sends the call once more.
    up.stop().await;
    let mut restarted = DemoUpstream::start_stateful_at(addr).await;
    for _ in 0..100 {
        if restarted.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        restarted = DemoUpstream::start_stateful_at(addr).await;
    }
    let up = restarted.unwrap();
    let (status, body) = gw.call_tool(&admin, "echo", echo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "x");
    assert_eq!(tool_calls(&up), 1);
    let status = gw.upstream_status("solo").await;
    assert_eq!(status["breaker"]["consecutive_failures"], 0, "{status}");
    assert!(gw.shutdown().await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_are_added_and_removed_through_the_admin_api() {
    let a = DemoUpstream::start().await.unwrap();
    let b = DemoUpstream::start().await.unwrap();
    let mut gw = start(&http_upstream("a", &a, ""), POLICY).await;
    let platform = gw.platform();
    let admin = gw.admin();
    let path = "/api/v1/admin/upstreams";
    let post = |token: String, body: Value| {
        gw.http
            .post(format!("{}{path}", gw.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let delete = |token: String, name: &str| {
        gw.http
            .delete(format!("{}{path}/{name}", gw.base))
            .bearer_auth(token)
            .send()
    };

    // One upstream: names pass through.
    assert_eq!(gw.tool_names(&admin).await, DEMO_TOOLS);
    // Gateway-wide: a tenant's admin may not.
    assert_eq!(gw.get(Some(&admin), path).await.0, 403);
    assert_eq!(gw.get(None, path).await.0, 401);
    let b_entry = json!({"name": "b", "url": b.url(), "health_interval_secs": 0});
    let response = post(admin.clone(), b_entry.clone()).await.unwrap();
    assert_eq!(response.status(), 403);

    let response = post(platform.clone(), b_entry.clone()).await.unwrap();
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["prefix"], "b_");
    assert_eq!(added["breaker"]["state"], "closed");
    let again = post(platform.clone(), b_entry).await.unwrap();
    assert_eq!(again.status(), 409);
    for (bad, key) in [
        (json!({"name": "c", "url": "ftp://x"}), "upstreams.url"),
        (
            json!({"name": "c", "kind": "stdio", "command": "sh"}),
            "stdio",
        ),
        (
            json!({"name": "c", "url": "http://x/mcp", "colour": 1}),
            "colour",
        ),
        (
            json!({"name": "c", "url": "http://x/mcp", "prefix": "a_x"}),
            "overlap",
        ),
    ] {
        let response = post(platform.clone(), bad.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body = response.text().await.unwrap();
        assert!(body.contains(key), "{bad}: {body}");
    }

    // Two upstreams: prefixed, and routed to the new one.
    let mut all = prefixed("a_");
    all.extend(prefixed("b_"));
    assert_eq!(gw.tool_names(&admin).await, all);
    assert_eq!(
        gw.call_tool(&admin, "b_echo", json!({"text": "new"}))
            .await
            .0,
        200
    );
    assert_eq!((tool_calls(&a), tool_calls(&b)), (0, 1));
    let (_, list) = gw.get(Some(&platform), path).await;
    assert_eq!(list["upstreams"].as_array().unwrap().len(), 2);

    assert_eq!(delete(admin.clone(), "b").await.unwrap().status(), 403);
    assert_eq!(delete(platform.clone(), "b").await.unwrap().status(), 204);
    assert_eq!(delete(platform.clone(), "b").await.unwrap().status(), 404);
    assert_eq!(delete(platform.clone(), "a").await.unwrap().status(), 409);
    assert_eq!(gw.tool_names(&admin).await, DEMO_TOOLS);

    gw.shutdown().await;
    let store = gw.audit_store().await;
    let added = AuditFilter::new()
        .category(Category::Admin)
        .decision(Decision::Allow)
        .subject("ops");
    // Add: 201, 409, 4 x 400; list; remove: 204, 404, 409.
    assert_eq!(store.count(&Scope::All, &added).await.unwrap(), 10);
    let refused = AuditFilter::new()
        .category(Category::Authorization)
        .decision(Decision::Deny)
        .subject("root");
    assert_eq!(store.count(&Scope::All, &refused).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_assertions_reach_the_upstream_and_verify_with_the_jwks() {
    let upstream = DemoUpstream::start().await.unwrap();
    let gw = start(
        &http_upstream("crm", &upstream, "identity_assertion = {}"),
        "",
    )
    .await;
    let alice = gw.token("alice", "acme", "user");
    let (status, _) = gw.call_tool(&alice, "echo", json!({"text": "a"})).await;
    assert_eq!(status, 200);
    let counters = upstream.counters();
    let seen = |c: &Arc<mcp_gateway::demo::UpstreamCounters>| {
        c.last_authorization.lock().unwrap().clone().unwrap()
    };
    let first = seen(counters);
    // Every request the upstream got carried an assertion, and none the client's token.
    assert_eq!(
        counters.authorization_headers.load(Ordering::Relaxed),
        counters.requests.load(Ordering::Relaxed)
    );
    assert!(!first.contains(&alice));

    // The upstream verifies it with the gateway's published keys.
    let (status, jwks) = gw.get(None, GATEWAY_JWKS_PATH).await;
    assert_eq!(status, 200);
    let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes(), 4).unwrap();
    let validator = JwtValidator::builder()
        .issuer(gw.base.as_str())
        .audience(upstream.url())
        .algorithms([Algorithm::EdDSA])
        .build()
        .unwrap();
    let verifier = JwtAuthenticator::builder(validator, Arc::new(keys)).build();
    let token = first.strip_prefix("Bearer ").unwrap();
    let principal = verifier.verify(token).await.unwrap();
    assert_eq!(principal.subject(), "alice");
    assert_eq!(principal.tenant(), Some("acme"));
    assert!(principal.has_role("user"));
    assert_eq!(principal.claims()["act"]["sub"], gw.base.as_str());

    // Reused while fresh; another caller gets its own.
    gw.call_tool(&alice, "echo", json!({"text": "b"})).await;
    assert_eq!(seen(counters), first);
    let bob = gw.token("bob", "globex", "user");
    gw.call_tool(&bob, "echo", json!({"text": "c"})).await;
    let bobs = seen(counters);
    assert_ne!(bobs, first);
    let principal = verifier
        .verify(bobs.strip_prefix("Bearer ").unwrap())
        .await
        .unwrap();
    assert_eq!(principal.tenant(), Some("globex"));
    assert!(!bobs.contains(&bob));
}
