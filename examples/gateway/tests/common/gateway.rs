//! A real gateway serving on 127.0.0.1 in a test task ([`Served`]), the HTTP calls the tests
//! make to it, and [`TestGateway`]: one that trusts a fresh testkit issuer and audits to
//! SQLite, in front of whatever upstreams the test configures.

use std::time::Duration;

use mcp_audit::AuditStore;
use mcp_auth_testkit::TestIssuer;
use mcp_gateway::{BuildOptions, Config, Gateway, MCP_PATH, ShutdownReport};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Scratch;

/// Merges `extra` into `base`: tables key by key, other values replaced.
pub(crate) fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge(inner, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The configuration `base` with `extra` merged into it (both TOML), without environment
/// overrides; `origin` names it in errors.
pub(crate) fn config(base: &str, extra: &str, origin: &str) -> Config {
    let mut table: toml::Table = toml::from_str(base).unwrap();
    merge(&mut table, toml::from_str(extra).unwrap());
    Config::from_toml_with_env(&table.to_string(), origin, []).unwrap()
}

/// A listener on a free port of 127.0.0.1 and its base URL (`scheme://127.0.0.1:port`).
pub(crate) async fn listen(scheme: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// The text of the first content item of a `tools/call` answer.
pub(crate) fn text_of(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
}

/// A gateway serving in a task until [`Served::shutdown`], and the client that calls it.
pub(crate) struct Served {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<ShutdownReport>>>,
}

impl Served {
    /// Serves `gateway` on `listener` (reached at `base`), called through `http`.
    pub(crate) fn start(
        gateway: Gateway,
        listener: TcpListener,
        base: String,
        http: reqwest::Client,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the gateway and waits for its shutdown report.
    pub(crate) async fn shutdown(&mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap().unwrap()
    }

    /// Sends `request`: the status and the body as JSON (as a JSON string when it is not).
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path`, with `token` as the bearer or without credentials.
    pub(crate) async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// `POST path` with the JSON `body` as `token`.
    pub(crate) async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body);
        self.send(request).await
    }

    /// `POST /mcp` with the raw `body`, with `token` as the bearer or without credentials.
    pub(crate) async fn post_mcp(&self, token: Option<&str>, body: &str) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{MCP_PATH}", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// The JSON-RPC request `method` (id 7) as `token`, answered.
    pub(crate) async fn rpc_response(
        &self,
        token: &str,
        method: &str,
        params: Value,
    ) -> reqwest::Response {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        self.post_mcp(Some(token), &body.to_string()).await
    }

    /// The JSON-RPC request `method` as `token`: the status and the body.
    pub(crate) async fn rpc(&self, token: &str, method: &str, params: Value) -> (u16, Value) {
        let response = self.rpc_response(token, method, params).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `tools/call` of `name` with `arguments` as `token`.
    pub(crate) async fn call_tool(
        &self,
        token: &str,
        name: &str,
        arguments: Value,
    ) -> (u16, Value) {
        self.rpc(
            token,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// Polls `path` as `token` until `ready` holds for the answer; the audit writer
    /// batches, so events land shortly after the requests. Bounded: 200 x 50 ms (a loaded CI
    /// machine can take seconds).
    pub(crate) async fn poll(
        &self,
        token: &str,
        path: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut body = Value::Null;
        for _ in 0..200 {
            let (status, answer) = self.get(Some(token), path).await;
            assert_eq!(status, 200, "{path}: {answer}");
            body = answer;
            if ready(&body) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        body
    }

    /// At least `at_least` audit events matching `query`, read through the admin API as
    /// `token` (see [`Served::poll`]).
    pub(crate) async fn audit_events(
        &self,
        token: &str,
        query: &str,
        at_least: usize,
    ) -> Vec<Value> {
        let path = format!("/api/v1/admin/audit?{query}");
        let enough = |b: &Value| b["events"].as_array().is_some_and(|e| e.len() >= at_least);
        let body = self.poll(token, &path, enough).await;
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

/// `[audit]` to the SQLite file `audit.db` of `scratch`, spooling in its `spool`.
pub(crate) fn sqlite_audit(scratch: &Scratch) -> String {
    format!(
        "[audit]\nsink = \"sqlite\"\npath = {}\nspool_dir = {}\n",
        scratch.toml("audit.db"),
        scratch.toml("spool")
    )
}

/// A gateway trusting a fresh testkit issuer (OIDC discovery, its audience, scope
/// `mcp:tools` required), auditing to SQLite in a scratch directory; the test's TOML adds
/// the upstreams and the rest.
pub(crate) struct TestGateway {
    served: Served,
    pub(crate) issuer: TestIssuer,
    pub(crate) scratch: Scratch,
}

impl TestGateway {
    /// Starts the gateway with `extra` (TOML) merged into the fixed configuration, section
    /// by section; `what` names its scratch directory.
    pub(crate) async fn start(what: &str, extra: &str) -> Self {
        let issuer = TestIssuer::start().await;
        let scratch = Scratch::new(what);
        let (listener, base) = listen("http").await;
        let fixed = format!(
            r#"
            [server]
            public_url = "{base}"
            shutdown_timeout_secs = 10

            [auth]
            audiences = ["{aud}"]
            required_scope = "mcp:tools"

            [auth.oidc]
            issuer = "{iss}"

            {audit}
            "#,
            aud = TestIssuer::AUDIENCE,
            iss = issuer.issuer_url(),
            audit = sqlite_audit(&scratch),
        );
        let config = config(&fixed, extra, what);
        let gateway = Gateway::build(&config, BuildOptions::default())
            .await
            .unwrap();
        Self {
            served: Served::start(gateway, listener, base, reqwest::Client::new()),
            issuer,
            scratch,
        }
    }

    /// A token of the issuer for `subject` in `tenant` with `role` and scope `mcp:tools`.
    pub(crate) fn token(&self, subject: &str, tenant: &str, role: &str) -> String {
        self.issuer.mint(json!({
            "sub": subject,
            "tid": tenant,
            "roles": [role],
            "scope": "mcp:tools",
        }))
    }

    /// The audit trail, read directly from the SQLite file.
    pub(crate) async fn audit_store(&self) -> AuditStore {
        AuditStore::connect_sqlite(self.scratch.path("audit.db"))
            .await
            .unwrap()
    }
}

deref_to!(TestGateway => served: Served);
