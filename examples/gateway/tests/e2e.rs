//! End-to-end tests: the real gateway (OIDC discovery against the testkit issuer, SQLite
//! audit) in front of the real rmcp demo upstream, all on 127.0.0.1, driven over HTTP with
//! plain JSON-RPC and with an rmcp client.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

use std::sync::atomic::Ordering;

use mcp_audit::{AuditFilter, Category, Decision, Scope};
use mcp_gateway::demo::DemoUpstream;
use serde_json::{Value, json};

mod common;

use common::gateway::{TestGateway, text_of};
use common::{Scratch, deref_to};

/// What a harness gateway is configured with besides the fixed parts.
#[derive(Clone, Copy)]
struct Setup<'a> {
    /// The body of `[rate_limit]`.
    rate_limit: &'a str,
    /// `auth.lockout.max_failures`.
    lockout_failures: u32,
    /// Keys appended to `[server]`.
    server: &'a str,
    /// Whole sections appended to the file.
    extra: &'a str,
    /// `upstreams[0].timeout_secs`.
    upstream_timeout: u64,
    /// Keys appended to `[rbac]`.
    rbac: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            rate_limit: GENEROUS,
            lockout_failures: 20,
            server: "",
            extra: "",
            upstream_timeout: 30,
            rbac: "",
        }
    }
}

/// A [`TestGateway`] in front of a fresh demo upstream over Streamable HTTP.
struct Harness {
    gateway: TestGateway,
    upstream: DemoUpstream,
}

impl Harness {
    /// A gateway with `rate_limit` as the body of its `[rate_limit]` section and a lockout
    /// after `lockout_failures` failed authentications.
    async fn start(rate_limit: &str, lockout_failures: u32) -> Self {
        Self::start_with(rate_limit, lockout_failures, "").await
    }

    /// Like [`Harness::start`], with `extra` TOML appended (whole sections).
    async fn start_with(rate_limit: &str, lockout_failures: u32, extra: &str) -> Self {
        Self::start_setup(&Setup {
            rate_limit,
            lockout_failures,
            extra,
            ..Setup::default()
        })
        .await
    }

    async fn start_setup(setup: &Setup<'_>) -> Self {
        let Setup {
            rate_limit,
            lockout_failures,
            extra,
            server,
            upstream_timeout,
            rbac,
        } = *setup;
        let upstream = DemoUpstream::start().await.unwrap();
        let config = format!(
            r#"
            [server]
            {server}

            [auth.lockout]
            max_failures = {lockout_failures}

            [rbac]
            tenant_bound_arguments = [{{ tool = "tenant_data", argument = "tenant" }}]
            {rbac}

            [rate_limit]
            {rate_limit}

            [[upstreams]]
            name = "demo"
            url = "{up}"
            timeout_secs = {upstream_timeout}

            {extra}
            "#,
            up = upstream.url(),
        );
        Self {
            gateway: TestGateway::start("e2e", &config).await,
            upstream,
        }
    }

    fn alice(&self) -> String {
        self.token("alice", "acme", "user")
    }

    fn tool_calls(&self) -> u64 {
        self.upstream.counters().tool_calls.load(Ordering::Relaxed)
    }
}

deref_to!(Harness => gateway: TestGateway);

const GENEROUS: &str = r#"per_user = "1000/min burst 1000""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_call_reaches_the_upstream_without_the_client_token() {
    let h = Harness::start(GENEROUS, 20).await;
    let (status, body) = h
        .call_tool(&h.alice(), "echo", json!({"text": "hello"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 7);
    assert_eq!(text_of(&body), "hello");
    let (status, body) = h
        .call_tool(&h.alice(), "add", json!({"a": 2, "b": 40}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "42");
    assert_eq!(h.tool_calls(), 2);
    let counters = h.upstream.counters();
    assert!(counters.requests.load(Ordering::Relaxed) >= 2);
    assert_eq!(counters.authorization_headers.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_bad_tokens_get_401_with_the_challenge() {
    let h = Harness::start(GENEROUS, 20).await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", h.base);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

    let response = h.post_mcp(None, body).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata}\", scope=\"mcp:tools\"").as_str()
    );

    for bad in [
        "not.a.token".to_owned(),
        mcp_auth_testkit::tokens::tamper_payload(&h.alice(), json!({"tid": "globex"})),
        h.issuer
            .mint(json!({"aud": "another-resource", "scope": "mcp:tools"})),
    ] {
        let response = h.post_mcp(Some(&bad), body).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            format!(
                "Bearer resource_metadata=\"{metadata}\", scope=\"mcp:tools\", error=\"invalid_token\""
            )
            .as_str()
        );
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":"invalid_token"}"#
        );
    }
    assert_eq!(h.upstream.counters().requests.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_role_is_403_insufficient_scope_and_never_reaches_the_upstream() {
    let h = Harness::start(GENEROUS, 20).await;
    let (status, _) = h.call_tool(&h.alice(), "admin.stats", json!({})).await;
    assert_eq!(status, 403);
    let response = h
        .post_mcp(
            Some(&h.alice()),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin.stats","arguments":{}}}"#,
        )
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"scope="mcp:tools""#), "{challenge}");
    assert_eq!(h.tool_calls(), 0);

    // A token without the required scope is refused the same way, for any tool.
    let unscoped = h
        .issuer
        .mint(json!({"sub": "carol", "tid": "acme", "roles": ["user"]}));
    let (status, _) = h.call_tool(&unscoped, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 403);
    assert_eq!(h.tool_calls(), 0);

    // The admin may call it.
    let admin = h.token("root", "acme", "admin");
    let (status, body) = h.call_tool(&admin, "admin.stats", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.tool_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_tenant_argument_is_refused() {
    let h = Harness::start(GENEROUS, 20).await;
    let (status, body) = h
        .call_tool(&h.alice(), "tenant_data", json!({"tenant": "acme"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(text_of(&body).contains("acme-invoice-1"));
    for arguments in [json!({"tenant": "globex"}), json!({})] {
        let (status, _) = h.call_tool(&h.alice(), "tenant_data", arguments).await;
        assert_eq!(status, 403);
    }
    assert_eq!(h.tool_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_filtered_by_role() {
    let h = Harness::start(GENEROUS, 20).await;
    let names = |body: &Value| -> Vec<String> {
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = h.rpc(&h.alice(), "tools/list", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["add", "echo", "tenant_data"]);
    let admin = h.token("root", "acme", "admin");
    let (_, body) = h.rpc(&admin, "tools/list", json!({})).await;
    assert_eq!(names(&body), ["add", "admin.stats", "echo", "tenant_data"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_limit_answers_429_with_retry_after() {
    let h = Harness::start(r#"per_user = "2/min""#, 20).await;
    let alice = h.alice();
    for _ in 0..2 {
        let (status, _) = h.call_tool(&alice, "echo", json!({"text": "x"})).await;
        assert_eq!(status, 200);
    }
    let response = h
        .post_mcp(
            Some(&alice),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
        )
        .await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(response.headers().contains_key("ratelimit-policy"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32029);
    assert_eq!(h.tool_calls(), 2);

    // Another user has a budget of their own.
    let (status, _) = h
        .call_tool(
            &h.token("bob", "globex", "user"),
            "echo",
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_is_400() {
    let h = Harness::start(GENEROUS, 20).await;
    for body in [r#"{"jsonrpc":"2.0","#, "[]", r#"{"id":1}"#, "null"] {
        let response = h.post_mcp(Some(&h.alice()), body).await;
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"]["code"], -32700, "{body}");
    }
    assert_eq!(h.upstream.counters().requests.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_tokens_lock_the_client_out() {
    let h = Harness::start(GENEROUS, 3).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for _ in 0..3 {
        assert_eq!(h.post_mcp(Some("bad.token.here"), body).await.status(), 401);
    }
    // Locked out: even a valid token is refused until the lockout ends.
    let response = h.post_mcp(Some(&h.alice()), body).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_health_and_metrics_are_served() {
    let h = Harness::start(GENEROUS, 20).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let doc: Value = h
            .http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], format!("{}/mcp", h.base));
        assert_eq!(doc["authorization_servers"], json!([h.issuer.issuer_url()]));
    }
    let get = |path: &'static str| h.http.get(format!("{}{path}", h.base)).send();
    assert_eq!(get("/health").await.unwrap().status(), 200);
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["upstreams"][0]["name"], "demo");
    assert_eq!(ready["checks"]["upstreams"][0]["reachable"], true);
    assert_eq!(ready["checks"]["identity_provider_keys"], true);

    let (status, _) = h.call_tool(&h.alice(), "echo", json!({"text": "m"})).await;
    assert_eq!(status, 200);
    let _ = h.post_mcp(None, "{}").await;
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"mcp_requests_total{method="tools/call",tool="echo",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"status="401"} 1"#), "{text}");
    assert!(text.contains("mcp_auth_events_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_works_through_the_gateway() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let h = Harness::start(GENEROUS, 20).await;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", h.base))
        .auth_header(h.alice());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = ().serve(transport).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["add", "echo", "tenant_data"]);
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = json!({"text": "via rmcp"}).as_object().cloned();
    let result = client.call_tool(params).await.unwrap();
    let text = serde_json::to_value(&result).unwrap();
    assert_eq!(text["content"][0]["text"], "via rmcp");
    let denied = client
        .call_tool(CallToolRequestParams::new("admin.stats"))
        .await;
    assert!(denied.is_err());
    assert_eq!(h.tool_calls(), 1);
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_one_audit_event_per_decision() {
    let mut h = Harness::start(GENEROUS, 20).await;
    let (status, _) = h.call_tool(&h.alice(), "echo", json!({"text": "a"})).await;
    assert_eq!(status, 200);
    let (status, _) = h
        .call_tool(&h.alice(), "tenant_data", json!({"tenant": "globex"}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(h.post_mcp(None, "{}").await.status(), 401);

    let report = h.shutdown().await;
    assert!(report.drained);
    assert_eq!(report.audit_spool_pending, 0);
    // Three decisions and the shutdown record, all written before `serve` returned.
    assert_eq!(report.audit_events_written, 4);

    let store = h.audit_store().await;
    let all = store.count(&Scope::All, &AuditFilter::new()).await.unwrap();
    assert_eq!(all, 4);
    let tool_calls = AuditFilter::new()
        .category(Category::ToolCall)
        .decision(Decision::Allow)
        .subject("alice")
        .tool("echo");
    assert_eq!(store.count(&Scope::All, &tool_calls).await.unwrap(), 1);
    let violations = AuditFilter::new()
        .category(Category::SecurityViolation)
        .decision(Decision::Deny)
        .tenant("acme");
    assert_eq!(store.count(&Scope::All, &violations).await.unwrap(), 1);
    let auth = AuditFilter::new()
        .category(Category::Authentication)
        .decision(Decision::Deny);
    assert_eq!(store.count(&Scope::All, &auth).await.unwrap(), 1);
}

const STATEFUL: &str = "[sessions]\nmode = \"stateful\"\nmax_per_principal = 4";

impl Harness {
    /// Sends `body` as `token` with `session` (if any) and extra headers.
    async fn post_in(
        &self,
        token: &str,
        session: Option<&str>,
        accept: &str,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("content-type", "application/json")
            .header("accept", accept)
            .bearer_auth(token)
            .body(body.to_string());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send().await.unwrap()
    }

    /// `initialize` as `token`; the session id.
    async fn initialize(&self, token: &str) -> String {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}}});
        let response = self
            .post_in(token, None, "application/json, text/event-stream", &body)
            .await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let result: Value = response.json().await.unwrap();
        assert_eq!(result["result"]["protocolVersion"], "2025-06-18");
        session
    }
}

fn echo(text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_sessions_are_issued_required_and_ended() {
    let h = Harness::start_with(GENEROUS, 20, STATEFUL).await;
    let alice = h.alice();
    let accept = "application/json, text/event-stream";
    let session = h.initialize(&alice).await;
    assert_eq!(session.len(), 64);

    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = h
        .post_in(&alice, Some(&session), accept, &initialized)
        .await;
    assert_eq!(response.status(), 202);

    let response = h.post_in(&alice, Some(&session), accept, &echo("in")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(text_of(&body), "in");

    // Without the header: 400; with an unknown id: 404. Neither reaches the upstream.
    let response = h.post_in(&alice, None, accept, &echo("x")).await;
    assert_eq!(response.status(), 400);
    let response = h.post_in(&alice, Some("abc"), accept, &echo("x")).await;
    assert_eq!(response.status(), 404);
    assert_eq!(h.tool_calls(), 1);

    // GET opens no stream here: 405 naming what is allowed.
    let response = h
        .http
        .get(format!("{}/mcp", h.base))
        .bearer_auth(&alice)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, DELETE");

    // DELETE ends the session; afterwards it is unknown.
    let delete = || {
        h.http
            .delete(format!("{}/mcp", h.base))
            .bearer_auth(&alice)
            .header("mcp-session-id", &session)
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(delete().await.unwrap().status(), 404);
    let response = h.post_in(&alice, Some(&session), accept, &echo("x")).await;
    assert_eq!(response.status(), 404);
    assert_eq!(h.tool_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hijacked_session_is_refused_and_audited() {
    let mut h = Harness::start_with(GENEROUS, 20, STATEFUL).await;
    let accept = "application/json, text/event-stream";
    let session = h.initialize(&h.alice()).await;
    // Mallory (same tenant, valid token) presents alice's session id.
    let mallory = h.token("mallory", "acme", "user");
    let response = h
        .post_in(&mallory, Some(&session), accept, &echo("x"))
        .await;
    assert_eq!(response.status(), 404);
    // ... and cannot end it either.
    let response = h
        .http
        .delete(format!("{}/mcp", h.base))
        .bearer_auth(&mallory)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(h.tool_calls(), 0);
    // Alice's session still works.
    let response = h
        .post_in(&h.alice(), Some(&session), accept, &echo("mine"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.tool_calls(), 1);

    let report = h.shutdown().await;
    assert_eq!(report.audit_spool_pending, 0);
    let store = h.audit_store().await;
    let hijacks = AuditFilter::new()
        .category(Category::SecurityViolation)
        .decision(Decision::Deny)
        .subject("mallory");
    let page = store
        .query(&Scope::All, &hijacks, &mcp_audit::PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 2, "{:?}", page.events);
    for event in &page.events {
        assert_eq!(event.session_id.as_deref(), Some(session.as_str()));
        assert!(
            event.reason.as_deref().unwrap_or("").contains("`alice`"),
            "{event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_only_client_gets_sse_and_bad_accept_or_version_is_refused() {
    let h = Harness::start(GENEROUS, 20).await;
    let alice = h.alice();
    let response = h
        .post_in(&alice, None, "text/event-stream", &echo("streamed"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let data = text
        .strip_prefix("event: message\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap();
    let body: Value = serde_json::from_str(data).unwrap();
    assert_eq!(text_of(&body), "streamed");

    let response = h.post_in(&alice, None, "text/html", &echo("x")).await;
    assert_eq!(response.status(), 406);

    let response = h
        .http
        .post(format!("{}/mcp", h.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "1999-01-01")
        .body(echo("x").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(h.tool_calls(), 1);

    // Stateless: no session header on initialize, DELETE is 405.
    let response = h
        .http
        .delete(format!("{}/mcp", h.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_works_in_stateful_mode() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let h = Harness::start_with(GENEROUS, 20, STATEFUL).await;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", h.base))
        .auth_header(h.alice());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = ().serve(transport).await.unwrap();
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = json!({"text": "stateful"}).as_object().cloned();
    let result = client.call_tool(params).await.unwrap();
    let text = serde_json::to_value(&result).unwrap();
    assert_eq!(text["content"][0]["text"], "stateful");
    let _ = client.cancel().await;
    assert_eq!(h.tool_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_never_reach_the_upstream() {
    let h = Harness::start_setup(&Setup {
        server: "max_body_bytes = 512",
        ..Setup::default()
    })
    .await;
    let big = echo(&"x".repeat(600));
    let response = h.post_in(&h.alice(), None, "application/json", &big).await;
    assert_eq!(response.status(), 413);
    let small = echo("fits");
    let response = h
        .post_in(&h.alice(), None, "application/json", &small)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.tool_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_never_completes_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = Harness::start_setup(&Setup {
        server: "request_timeout_secs = 2",
        upstream_timeout: 1,
        ..Setup::default()
    })
    .await;
    let addr = h.base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\"",
        h.alice()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The gateway answers and closes; the outer timeout only bounds a broken test.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(h.upstream.counters().requests.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused_and_responses_carry_security_headers() {
    let h = Harness::start(GENEROUS, 20).await;
    let port = h.base.rsplit(':').next().unwrap().to_owned();
    let send = |host: Option<String>, origin: Option<&'static str>| {
        let mut request = h
            .http
            .post(format!("{}/mcp", h.base))
            .bearer_auth(h.alice())
            .header("content-type", "application/json")
            .body(echo("h").to_string());
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host.
    let response = send(Some(format!("evil.example:{port}")), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"host_not_allowed"}"#
    );
    let response = send(None, Some("http://evil.example")).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":"origin_not_allowed"}"#
    );
    assert_eq!(h.tool_calls(), 0);

    // Loopback names and origins are accepted when listening on loopback.
    let response = send(
        Some(format!("localhost:{port}")),
        Some("http://localhost:5173"),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert!(!headers.contains_key("strict-transport-security"));
    assert_eq!(h.tool_calls(), 1);

    // Health probes are not subject to the Host check.
    let response = h
        .http
        .get(format!("{}/health", h.base))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_for_allowed_origins_only() {
    let h = Harness::start_setup(&Setup {
        server: "allowed_origins = [\"https://app.example\"]\ncors = { enabled = true, max_age_secs = 300 }",
        ..Setup::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        h.http
            .request(reqwest::Method::OPTIONS, format!("{}/mcp", h.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let response = preflight("https://app.example").await.unwrap();
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-max-age"], "300");
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("mcp-session-id")
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let response = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(response.status(), 403);

    let response = h
        .http
        .post(format!("{}/mcp", h.base))
        .bearer_auth(h.alice())
        .header("origin", "https://app.example")
        .header("content-type", "application/json")
        .body(echo("cors").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("mcp-session-id")
    );
    // A 401 carries the CORS headers too, so the browser client can read the challenge.
    let response = h
        .http
        .post(format!("{}/mcp", h.base))
        .header("origin", "https://app.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_https_believes_forwarded_proto_only_from_trusted_proxies() {
    for (trusted, expected) in [("127.0.0.1/32", 200), ("10.0.0.0/8", 403)] {
        let server = format!("require_https = true\ntrusted_proxies = [\"{trusted}\"]");
        let h = Harness::start_setup(&Setup {
            server: &server,
            ..Setup::default()
        })
        .await;
        let send = |proto: Option<&'static str>| {
            let mut request = h
                .http
                .post(format!("{}/mcp", h.base))
                .bearer_auth(h.alice())
                .header("content-type", "application/json")
                .body(echo("tls").to_string());
            if let Some(proto) = proto {
                request = request.header("x-forwarded-proto", proto);
            }
            request.send()
        };
        let response = send(None).await.unwrap();
        assert_eq!(response.status(), 403, "{trusted}");
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":"https_required"}"#
        );
        assert_eq!(send(Some("http")).await.unwrap().status(), 403, "{trusted}");
        let response = send(Some("https")).await.unwrap();
        assert_eq!(response.status(), expected, "{trusted}");
        assert_eq!(h.tool_calls(), u64::from(expected == 200), "{trusted}");
    }
}

/// A role that may perform every admin action in every tenant (`cross_tenant`); the
/// predefined `admin` role acts in its own tenant only.
const PLATFORM_ADMIN: &str = r#"policy = """
[roles.platform_admin]
allow = [{ action = "admin:*", cross_tenant = true }]
""""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_wide_admin_endpoints_need_a_cross_tenant_admin() {
    let h = Harness::start_setup(&Setup {
        rbac: PLATFORM_ADMIN,
        ..Setup::default()
    })
    .await;
    let platform = h.token("ops", "acme", "platform_admin");
    let tenant_admin = h.token("root", "acme", "admin");
    assert_eq!(h.post_mcp(Some("bad.token.x"), "{}").await.status(), 401);
    for path in [
        "/api/v1/admin/rate-limiting-performance",
        "/api/v1/admin/token-refresh-status",
        "/health/security",
    ] {
        let (status, body) = h.get(Some(&platform), path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for refused in [&tenant_admin, &h.alice()] {
            let (status, body) = h.get(Some(refused), path).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_eq!(body["error"], "forbidden");
        }
        let (status, _) = h.get(None, path).await;
        assert_eq!(status, 401, "{path}");
    }
    let (_, security) = h.get(Some(&platform), "/health/security").await;
    assert_eq!(security["rate_limiting"]["enabled"], true);
    assert_eq!(security["https_required"], false);
    assert_eq!(security["key_source"]["kind"], "jwks");
    assert_eq!(security["key_source"]["loaded"], true);
    assert_eq!(security["failed_authentications_last_hour"], 1);
    let (_, perf) = h
        .get(Some(&platform), "/api/v1/admin/rate-limiting-performance")
        .await;
    assert_eq!(perf["rules"], json!(["user"]));
    assert!(perf["decisions"]["allowed"].as_u64().is_some());
    let (_, keys) = h
        .get(Some(&platform), "/api/v1/admin/token-refresh-status")
        .await;
    assert_eq!(keys["keys"]["issuer"], h.issuer.issuer_url());
    assert!(keys["keys"]["keys"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_and_export_are_tenant_scoped() {
    let h = Harness::start_setup(&Setup {
        rbac: PLATFORM_ADMIN,
        ..Setup::default()
    })
    .await;
    let bob = h.token("bob", "globex", "user");
    for token in [h.alice(), bob] {
        let (status, _) = h.call_tool(&token, "echo", json!({"text": "a"})).await;
        assert_eq!(status, 200);
    }
    let acme_admin = h.token("root", "acme", "admin");
    let tool_calls = "category=tool_call";
    let events = h.audit_events(&acme_admin, tool_calls, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"]["subject"], "alice");
    assert_eq!(events[0]["actor"]["tenant"], "acme");
    // Naming another tenant, or all of them, is refused to a tenant admin.
    for other in ["globex", "*"] {
        let (status, _) = h
            .get(
                Some(&acme_admin),
                &format!("/api/v1/admin/audit?tenant={}", other.replace('*', "%2A")),
            )
            .await;
        assert_eq!(status, 403, "{other}");
    }
    let (status, _) = h.get(Some(&h.alice()), "/api/v1/admin/audit").await;
    assert_eq!(status, 403);

    let platform = h.token("ops", "acme", "platform_admin");
    let all = h
        .audit_events(&platform, "tenant=%2A&category=tool_call", 2)
        .await;
    assert_eq!(all.len(), 2, "{all:?}");
    let globex = h
        .audit_events(&platform, "tenant=globex&category=tool_call", 1)
        .await;
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0]["actor"]["subject"], "bob");

    let export = |token: &str, query: &str| {
        h.http
            .get(format!("{}/api/v1/admin/audit/export?{query}", h.base))
            .bearer_auth(token)
            .send()
    };
    let response = export(&acme_admin, "format=jsonl&category=tool_call")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["actor"]["tenant"], "acme");
    let response = export(&platform, "format=csv&tenant=%2A&category=tool_call")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    assert!(csv.starts_with("id,time,category"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let response = export(&acme_admin, "tenant=globex").await.unwrap();
    assert_eq!(response.status(), 403);
    let (status, _) = h
        .get(Some(&acme_admin), "/api/v1/admin/audit?category=nonsense")
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_and_subjects_are_refused() {
    let h = Harness::start_setup(&Setup {
        rbac: PLATFORM_ADMIN,
        ..Setup::default()
    })
    .await;
    let platform = h.token("ops", "acme", "platform_admin");
    let claims = |sub: &str, jti: &str| json!({"sub": sub, "tid": "acme", "roles": ["user"], "scope": "mcp:tools", "jti": jti});
    let revoked = h.issuer.mint(claims("alice", "alice-1"));
    let other = h.issuer.mint(claims("alice", "alice-2"));
    let (status, _) = h.call_tool(&revoked, "echo", json!({"text": "a"})).await;
    assert_eq!(status, 200);

    // A tenant admin may not revoke (token ids and subjects are gateway-wide).
    let tenant_admin = h.token("root", "acme", "admin");
    let revoke = "/api/v1/admin/tokens/revoke";
    let (status, _) = h
        .post(&tenant_admin, revoke, &json!({"jti": "alice-1"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = h.post(&h.alice(), revoke, &json!({"subject": "bob"})).await;
    assert_eq!(status, 403);

    let (status, body) = h.post(&platform, revoke, &json!({"jti": "alice-1"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.call_tool(&revoked, "echo", json!({"text": "a"})).await;
    assert_eq!(status, 401);
    let (status, _) = h.call_tool(&other, "echo", json!({"text": "a"})).await;
    assert_eq!(status, 200);

    let bob = h.token("bob", "globex", "user");
    let (status, _) = h.post(&platform, revoke, &json!({"subject": "bob"})).await;
    assert_eq!(status, 200);
    let (status, _) = h.call_tool(&bob, "echo", json!({"text": "a"})).await;
    assert_eq!(status, 401);

    let (status, _) = h
        .post(&platform, revoke, &json!({"jti": "x", "subject": "y"}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_reads_the_policy_file_again() {
    let dir = Scratch::new("policy");
    let file = dir.path("policy.toml");
    std::fs::write(&file, "version = 1\n").unwrap();
    let rbac = format!(
        "{PLATFORM_ADMIN}\npolicy_file = {}",
        dir.toml("policy.toml")
    );
    let h = Harness::start_setup(&Setup {
        rbac: &rbac,
        ..Setup::default()
    })
    .await;
    let auditor = h.token("carol", "acme", "auditor");
    let (status, _) = h.call_tool(&auditor, "admin.stats", json!({})).await;
    assert_eq!(status, 403);

    std::fs::write(
        &file,
        "version = 1\n[roles.auditor]\nallow = [{ action = \"tools/call\", resource = \"admin.stats\" }]\n",
    )
    .unwrap();
    let reload = "/api/v1/admin/policy/reload";
    let tenant_admin = h.token("root", "acme", "admin");
    let (status, _) = h.post(&tenant_admin, reload, &json!({})).await;
    assert_eq!(status, 403);
    let platform = h.token("ops", "acme", "platform_admin");
    let (status, body) = h.post(&platform, reload, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 1);
    let (status, _) = h.call_tool(&auditor, "admin.stats", json!({})).await;
    assert_eq!(status, 200);

    // A broken file is reported and the policy in force stays.
    std::fs::write(&file, "[roles.auditor\n").unwrap();
    let (status, body) = h.post(&platform, reload, &json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("policy.toml"),
        "{body}"
    );
    let (status, _) = h.call_tool(&auditor, "admin.stats", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_user_status_counts_sessions_per_tenant() {
    let extra = format!("{STATEFUL}\n");
    let h = Harness::start_setup(&Setup {
        rbac: PLATFORM_ADMIN,
        extra: &extra,
        ..Setup::default()
    })
    .await;
    h.initialize(&h.alice()).await;
    h.initialize(&h.alice()).await;
    h.initialize(&h.token("bob", "globex", "user")).await;
    let path = "/api/v1/admin/multi-user-status";
    let acme_admin = h.token("root", "acme", "admin");
    let (status, body) = h.get(Some(&acme_admin), path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["mode"], "stateful");
    assert_eq!(body["sessions"]["sessions"], 2);
    assert_eq!(body["sessions"]["users"], 1);
    let (status, _) = h
        .get(Some(&acme_admin), &format!("{path}?tenant=globex"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = h.get(Some(&h.alice()), path).await;
    assert_eq!(status, 403);
    let platform = h.token("ops", "acme", "platform_admin");
    let (status, body) = h.get(Some(&platform), &format!("{path}?tenant=%2A")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"]["sessions"], 3);
    assert_eq!(body["sessions"]["users"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_fair_share_limits_a_tenant_and_reports_per_tenant() {
    let h = Harness::start_setup(&Setup {
        rate_limit: "per_user = \"1000/min burst 1000\"\n[rate_limit.fair_share]\nlimit = 4\nwindow_secs = 3600\nburst_factor = 1.0\nweights = { acme = 1, globex = 1 }",
        rbac: PLATFORM_ADMIN,
        ..Setup::default()
    })
    .await;
    // Two tenants of weight 1 share 4 units: acme's share is 2.
    let alice = h.alice();
    for _ in 0..2 {
        let (status, _) = h.call_tool(&alice, "echo", json!({"text": "f"})).await;
        assert_eq!(status, 200);
    }
    let response = h
        .post_in(&alice, None, "application/json", &echo("f"))
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(h.tool_calls(), 2);
    let bob = h.token("bob", "globex", "user");
    let (status, _) = h.call_tool(&bob, "echo", json!({"text": "f"})).await;
    assert_eq!(status, 200);

    let acme_admin = h.token("root", "acme", "admin");
    let (status, body) = h
        .get(Some(&acme_admin), "/api/v1/admin/tenant-fairness/acme")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["admitted"], 2);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["share"], 2.0);
    let (status, _) = h
        .get(Some(&acme_admin), "/api/v1/admin/tenant-fairness/globex")
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .get(Some(&h.alice()), "/api/v1/admin/tenant-fairness/acme")
        .await;
    assert_eq!(status, 403);
    let platform = h.token("ops", "acme", "platform_admin");
    let (status, body) = h
        .get(Some(&platform), "/api/v1/admin/tenant-fairness/globex")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["admitted"], 1);
}
