//! The operator features end to end, on a gateway whose tokens come from its own
//! `[auth.local_issuer]` key: API keys (admin API, and keys made by the `mcp-gateway keys`
//! CLI), the analytics endpoints, TLS with a certificate made at test time, and the
//! measurement switches (auth off, RBAC allow-all, audit and metrics off, token cache off).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use mcp_auth_core::LocalIssuer;
use mcp_auth_core::issuer::{IssueRequest, SigningKey};
use mcp_auth_core::jwt::Algorithm;
use mcp_auth_testkit::TestKey;
use mcp_gateway::demo::DemoUpstream;
use mcp_gateway::{BuildOptions, Gateway};
use serde_json::{Value, json};

mod common;

use common::gateway::{Served, config, listen, sqlite_audit, text_of};
use common::{Scratch, deref_to, service_url};

const ISSUER: &str = "https://ops.test";

/// Roles of the tests' policy: `platform_admin` acts in every tenant.
const POLICY: &str = r#"
[rbac]
tenant_bound_arguments = [{ tool = "tenant_data", argument = "tenant" }]
policy = """
[roles.platform_admin]
allow = [{ action = "admin:*", cross_tenant = true }]
"""
"#;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Tls {
    cert_pem: String,
}

impl Tls {
    fn write(scratch: &Scratch) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        let cert_pem = certified.cert.pem();
        std::fs::write(scratch.path("cert.pem"), &cert_pem).unwrap();
        std::fs::write(
            scratch.path("key.pem"),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
        Self { cert_pem }
    }
}

/// A gateway in front of the demo upstream, trusting its own local issuer.
struct Running {
    served: Served,
    issuer: LocalIssuer,
    upstream: DemoUpstream,
    scratch: Scratch,
}

impl Running {
    /// `extra` (TOML) is merged into the configuration, section by section.
    async fn start(extra: &str) -> Self {
        Self::start_in(Scratch::new("ops"), extra, None).await
    }

    async fn start_in(scratch: Scratch, extra: &str, tls: Option<&Tls>) -> Self {
        let upstream = DemoUpstream::start().await.unwrap();
        let key = TestKey::ed25519(1);
        std::fs::write(scratch.path("issuer.pem"), key.private_pem()).unwrap();
        let (listener, base) = listen(if tls.is_some() { "https" } else { "http" }).await;
        let tls_keys = match tls {
            Some(_) => format!(
                "require_https = true\ntls = {{ cert_file = {}, key_file = {} }}",
                scratch.toml("cert.pem"),
                scratch.toml("key.pem")
            ),
            None => String::new(),
        };
        let text = format!(
            r#"
            [server]
            public_url = "{base}"
            shutdown_timeout_secs = 10
            {tls_keys}

            [auth]
            required_scope = "mcp:tools"

            [auth.local_issuer]
            issuer = "{ISSUER}"
            signing_key_file = {key_file}
            algorithm = "EdDSA"

            {POLICY}

            [rate_limit]
            per_user = "1000/min burst 1000"

            [[upstreams]]
            name = "demo"
            url = "{up}"

            {audit}
            "#,
            key_file = scratch.toml("issuer.pem"),
            up = upstream.url(),
            audit = sqlite_audit(&scratch),
        );
        let config = config(&text, extra, "ops");
        let gateway = Gateway::build(&config, BuildOptions::default())
            .await
            .unwrap();
        assert_eq!(gateway.is_tls(), tls.is_some());
        let issuer = LocalIssuer::builder(ISSUER, format!("{base}/mcp"))
            .key(SigningKey::from_pem(Algorithm::EdDSA, key.private_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let mut http = reqwest::Client::builder();
        if let Some(tls) = tls {
            http = http
                .tls_certs_only([reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap()]);
        }
        Self {
            served: Served::start(gateway, listener, base, http.build().unwrap()),
            issuer,
            upstream,
            scratch,
        }
    }

    fn token(&self, subject: &str, tenant: &str, role: &str) -> String {
        let request = IssueRequest::new(subject)
            .tenant(tenant)
            .roles([role])
            .scopes(["mcp:tools"]);
        self.issuer
            .issue(&request)
            .unwrap()
            .token
            .expose()
            .to_owned()
    }

    /// `tools/call` of `tool` with `auth` (`("authorization", "Bearer ...")`,
    /// `("x-api-key", key)`), or anonymously.
    async fn call(&self, auth: Option<(&str, &str)>, tool: &str, arguments: Value) -> (u16, Value) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        let mut request = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some((header, value)) = auth {
            request = request.header(header, value);
        }
        self.send(request).await
    }

    async fn call_as(&self, token: &str, tool: &str, arguments: Value) -> (u16, Value) {
        let bearer = format!("Bearer {token}");
        self.call(Some(("authorization", &bearer)), tool, arguments)
            .await
    }

    /// `GET path` without credentials.
    async fn get_anonymously(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.unwrap()
    }

    /// `POST /api/v1/admin/api-keys/{tail}` as `token`, without a body.
    async fn key_op(&self, token: &str, tail: &str) -> (u16, Value) {
        self.post(token, &format!("/api/v1/admin/api-keys/{tail}"), &json!({}))
            .await
    }

    fn tool_calls(&self) -> u64 {
        self.upstream.counters().tool_calls.load(Ordering::Relaxed)
    }
}

deref_to!(Running => served: Served);

/// `[auth.api_keys]` with the pepper in a file of `scratch`.
fn api_keys(scratch: &Scratch, store: &str) -> String {
    std::fs::write(
        scratch.path("pepper"),
        "a pepper of more than thirty-two bytes, for tests\n",
    )
    .unwrap();
    format!(
        "[auth.api_keys]\npepper_file = {}\n{store}\n",
        scratch.toml("pepper")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_and_are_managed_per_tenant() {
    let scratch = Scratch::new("keys");
    let extra = api_keys(&scratch, "store = \"memory\"");
    let gw = Running::start_in(scratch, &extra, None).await;
    let acme_admin = gw.token("root", "acme", "admin");
    let keys = "/api/v1/admin/api-keys";

    let (status, created) = gw
        .post(
            &acme_admin,
            keys,
            &json!({"owner": "ci-bot", "roles": ["user"], "scopes": ["mcp:tools"], "name": "CI"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["record"]["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mcpk_"), "{created}");
    assert_eq!(created["record"]["tenant"], "acme");
    assert_eq!(created["record"]["owner"], "ci-bot");

    // The key works in its header and as a bearer token; the upstream sees no credential.
    let (status, body) = gw
        .call(Some(("x-api-key", &key)), "echo", json!({"text": "k"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "k");
    let (status, _) = gw
        .call_as(&key, "tenant_data", json!({"tenant": "acme"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw
        .call_as(&key, "tenant_data", json!({"tenant": "globex"}))
        .await;
    assert_eq!(status, 403, "the key's tenant binds its arguments");
    assert_eq!(
        gw.upstream
            .counters()
            .authorization_headers
            .load(Ordering::Relaxed),
        0
    );
    let forged = format!("{key}x");
    let (status, _) = gw
        .call(Some(("x-api-key", &forged)), "echo", json!({"text": "k"}))
        .await;
    assert_eq!(status, 401);

    // Listing never shows a secret; other tenants see nothing of it.
    let (status, listed) = gw.get(Some(&acme_admin), keys).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&key[key.len() - 10..]),
        "{listed}"
    );
    let globex_admin = gw.token("g", "globex", "admin");
    let (_, other) = gw.get(Some(&globex_admin), keys).await;
    assert_eq!(other["keys"], json!([]));
    let (status, _) = gw.key_op(&globex_admin, &format!("{key_id}/revoke")).await;
    assert_eq!(status, 404, "another tenant's key looks absent");
    let (status, _) = gw.get(Some(&gw.token("alice", "acme", "user")), keys).await;
    assert_eq!(status, 403);

    // Grants: only what the creator holds, unless it may admin:roles.grant; never
    // cross-tenant roles from a tenant-scoped call.
    let owner = gw.token("own", "acme", "server_owner");
    for (creator, role, expected) in [
        (&owner, "admin", 403),
        (&owner, "server_owner", 201),
        (&acme_admin, "platform_admin", 403),
        (&acme_admin, "no_such_role", 400),
    ] {
        let body = json!({"owner": "x", "roles": [role]});
        let (status, answer) = gw.post(creator, keys, &body).await;
        assert_eq!(status, expected, "{role}: {answer}");
    }
    let platform = gw.token("ops", "acme", "platform_admin");
    let (status, global) = gw
        .post(
            &platform,
            keys,
            &json!({"owner": "ops-bot", "tenant": "*", "roles": ["platform_admin"]}),
        )
        .await;
    assert_eq!(status, 201, "{global}");
    assert_eq!(global["record"]["tenant"], Value::Null);

    // Rotation without grace: the successor works at once, the old key no longer.
    let (status, rotated) = gw
        .key_op(&acme_admin, &format!("{key_id}/rotate?grace_secs=0"))
        .await;
    assert_eq!(status, 201, "{rotated}");
    let successor = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["record"]["rotated_from"], key_id.as_str());
    let (status, _) = gw.call_as(&key, "echo", json!({"text": "old"})).await;
    assert_eq!(status, 401);
    let (status, _) = gw.call_as(&successor, "echo", json!({"text": "new"})).await;
    assert_eq!(status, 200);
    let (status, _) = gw.key_op(&acme_admin, &format!("{key_id}/rotate")).await;
    assert_eq!(status, 409, "a rotated key is not rotated twice");
    let successor_id = rotated["record"]["key_id"].as_str().unwrap();
    let (status, revoked) = gw
        .key_op(&acme_admin, &format!("{successor_id}/revoke"))
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"]["active"], false);
    let (status, _) = gw
        .call_as(&successor, "echo", json!({"text": "gone"}))
        .await;
    assert_eq!(status, 401);

    // Key use and management are audited, with the key id and never the secret. The writer
    // batches: wait for the last operations' events, not for a count of events.
    let audited = |body: &Value| {
        let text = body["events"].to_string();
        [
            "admin:keys.create",
            "admin:keys.rotate",
            "admin:keys.revoke",
        ]
        .iter()
        .all(|action| text.contains(action))
    };
    let audit = gw
        .poll(
            &acme_admin,
            "/api/v1/admin/audit?category=admin&limit=50",
            audited,
        )
        .await;
    let text = audit["events"].to_string();
    assert!(text.contains("admin:keys.create"), "{text}");
    assert!(text.contains("admin:keys.rotate") && text.contains("admin:keys.revoke"));
    assert!(text.contains(&key_id), "{text}");
    let calls = gw
        .audit_events(&acme_admin, "category=tool_call&subject=ci-bot", 4)
        .await;
    let first = &calls[0];
    assert_eq!(first["actor"]["auth_method"], "api_key");
    assert!(first["actor"]["api_key_id"].is_string(), "{first}");
    assert!(
        !Value::from(calls).to_string().contains(&key),
        "no secret in the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_with_the_cli_authenticate_at_the_gateway() {
    let scratch = Scratch::new("cli-keys");
    let extra = api_keys(
        &scratch,
        &format!("store = \"sqlite\"\npath = {}", scratch.toml("keys.db")),
    );
    // The CLI reads the same store through a configuration of its own.
    let config_file = scratch.path("cli.toml");
    std::fs::write(
        &config_file,
        format!("{extra}\n[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1/mcp\"\n"),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .args(["keys"])
            .args(args)
            .arg("--config")
            .arg(&config_file)
            .env_remove("MCP_GATEWAY_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null)
    };
    let created = cli(&[
        "create",
        "--owner",
        "deploy",
        "--tenant",
        "acme",
        "--role",
        "user",
        "--scope",
        "mcp:tools",
        "--json",
    ]);
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["record"]["key_id"].as_str().unwrap().to_owned();

    let mut gw = Running::start_in(scratch, &extra, None).await;
    let (status, body) = gw.call_as(&key, "echo", json!({"text": "cli"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, listed) = gw
        .get(
            Some(&gw.token("root", "acme", "admin")),
            "/api/v1/admin/api-keys",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"][0]["key_id"], key_id.as_str());

    // Revoked through the CLI: refused by the running gateway from the next request.
    let revoked = cli(&["revoke", &key_id, "--json"]);
    assert_eq!(revoked["active"], false);
    let (status, _) = gw.call_as(&key, "echo", json!({"text": "cli"})).await;
    assert_eq!(status, 401);
    // Shutdown writes the last-use time the gateway collected.
    let report = gw.shutdown().await;
    assert!(report.drained);
    let listed = cli(&["list", "--json", "--owner", "deploy"]);
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert_eq!(gw.tool_calls(), 1);
}

/// A PostgreSQL schema name of this test process for `tag`.
fn unique_schema(tag: &str) -> String {
    format!(
        "mcp_gw_{tag}_{}",
        std::process::id() * 1000 + common::unique()
    )
}

/// Drops the test's PostgreSQL `schema` with everything in it.
async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_live_in_postgres() {
    let Some(url) = service_url("MCP_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = unique_schema("keys");
    let scratch = Scratch::new("pg-keys");
    let extra = api_keys(
        &scratch,
        &format!("store = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\""),
    );
    let mut gw = Running::start_in(scratch, &extra, None).await;
    let admin = gw.token("root", "acme", "admin");
    let (status, created) = gw
        .post(
            &admin,
            "/api/v1/admin/api-keys",
            &json!({"owner": "svc", "roles": ["user"], "scopes": ["mcp:tools"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let (status, _) = gw.call_as(&key, "echo", json!({"text": "pg"})).await;
    assert_eq!(status, 200);
    gw.shutdown().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (stored, used): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), COUNT(last_used_at) FROM \"{schema}\".mcp_api_keys"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    drop_schema(&pool, &schema).await;
    assert_eq!((stored, used), (1, 1));
}

/// The class `name` of a connection-pool-status answer.
fn pool_class<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["pools"]["classes"]
        .as_array()
        .and_then(|classes| classes.iter().find(|c| c["class"] == name))
        .unwrap_or(&Value::Null)
}

/// Traffic on every class: tool calls (audit inserts, `write`), an API key made and used
/// (`auth`), an audit query (`read`) and the user's activity (`analytics`).
async fn traffic_on_every_class(gw: &Running, platform: &str, alice: &str) {
    for _ in 0..3 {
        assert_eq!(gw.call_as(alice, "echo", json!({"text": "p"})).await.0, 200);
    }
    let (status, created) = gw
        .post(
            &gw.token("root", "acme", "admin"),
            "/api/v1/admin/api-keys",
            &json!({"owner": "svc", "roles": ["user"], "scopes": ["mcp:tools"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(gw.call_as(&key, "echo", json!({"text": "k"})).await.0, 200);
    let calls = gw
        .audit_events(platform, "tenant=acme&category=tool_call", 4)
        .await;
    assert_eq!(calls.len(), 4);
    let activity = gw
        .poll(platform, "/api/v1/admin/user-activity/alice", |b| {
            b["requests"]["tool_calls"] == 3
        })
        .await;
    assert_eq!(activity["requests"]["tool_calls"], 3, "{activity}");
}

/// The stores take their connections through the classes: each class counts acquires and
/// their waits in its histogram, and none timed out.
fn assert_the_stores_acquire_through_the_classes(status: &Value, backend: &str) {
    for class in ["write", "read", "analytics", "auth"] {
        let c = pool_class(status, class);
        assert_eq!(c["backend"], backend, "{class}: {status}");
        let stats = &c["stats"];
        assert!(stats["acquires"].as_u64() >= Some(1), "{class}: {status}");
        assert!(
            stats["acquire_wait"]["count"].as_u64() >= Some(1),
            "{class}: {status}"
        );
        assert!(stats["reuse_ratio"].is_number(), "{class}: {status}");
        assert_eq!(stats["timeouts"], 0, "{class}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_status_counts_the_acquires_of_the_sqlite_stores() {
    let scratch = Scratch::new("pools-sqlite");
    let keys = api_keys(
        &scratch,
        &format!("store = \"sqlite\"\npath = {}", scratch.toml("keys.db")),
    );
    let extra = format!(
        "[pools]\nsampler = {{ resolution_secs = 1, window_secs = 1, history_secs = 60 }}\n{keys}"
    );
    let mut gw = Running::start_in(scratch, &extra, None).await;
    let path = "/api/v1/admin/connection-pool-status";
    let platform = gw.token("ops", "acme", "platform_admin");
    let alice = gw.token("alice", "acme", "user");
    // Before any traffic, the read classes have served nothing; the migrations went through
    // the write and auth classes.
    let (status, before) = gw.get(Some(&platform), path).await;
    assert_eq!(status, 200, "{before}");
    for class in ["read", "analytics"] {
        assert_eq!(
            pool_class(&before, class)["stats"]["acquires"],
            0,
            "{before}"
        );
    }
    for class in ["write", "auth"] {
        assert!(
            pool_class(&before, class)["stats"]["acquires"].as_u64() >= Some(1),
            "{class}: {before}"
        );
    }

    traffic_on_every_class(&gw, &platform, &alice).await;
    let (status, after) = gw.get(Some(&platform), path).await;
    assert_eq!(status, 200, "{after}");
    assert_the_stores_acquire_through_the_classes(&after, "sqlite");
    // The key's creation and its use were at least two more acquires of `auth`.
    assert!(
        pool_class(&after, "auth")["stats"]["acquires"].as_u64()
            >= pool_class(&before, "auth")["stats"]["acquires"]
                .as_u64()
                .map(|n| n + 2),
        "{before}\n{after}"
    );
    let report = gw.shutdown().await;
    assert!(report.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_status_follows_the_traffic_of_the_postgres_stores() {
    let Some(url) = service_url("MCP_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = unique_schema("pools");
    let admin_pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&admin_pool)
        .await
        .unwrap();
    // The audit table goes to the test's schema through the connections' search_path.
    let separator = if url.contains('?') { '&' } else { '?' };
    let audit_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let scratch = Scratch::new("pools");
    let keys = api_keys(
        &scratch,
        &format!("store = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\""),
    );
    let extra = format!(
        r#"
        [audit]
        sink = "postgres"
        url = "{audit_url}"

        [pools]
        connect_lazily = true
        sampler = {{ resolution_secs = 1, window_secs = 1, history_secs = 60 }}
        read = {{ size = 2 }}

        {keys}
        "#
    );
    let mut gw = Running::start_in(scratch, &extra, None).await;
    let path = "/api/v1/admin/connection-pool-status";
    let platform = gw.token("ops", "acme", "platform_admin");
    let alice = gw.token("alice", "acme", "user");

    // Gateway-wide: a tenant's admin and a user are refused.
    let (status, refused) = gw.get(Some(&alice), path).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["action"], "admin:metrics.read");
    let (status, _) = gw.get(Some(&gw.token("root", "acme", "admin")), path).await;
    assert_eq!(status, 403);

    let (status, before) = gw.get(Some(&platform), path).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        before["used_for"],
        json!({
            "read": "audit queries",
            "write": "audit sink (inserts, migrations)",
            "analytics": "audit export and analytics",
            "auth": "API keys",
        })
    );
    for class in ["write", "read", "analytics", "auth"] {
        assert_eq!(
            pool_class(&before, class)["backend"],
            "postgres",
            "{before}"
        );
    }
    assert_eq!(pool_class(&before, "read")["limit"], 2);
    assert_eq!(pool_class(&before, "auth")["limit"], 8);
    // Lazily connected: the read classes have opened nothing yet; the migrations opened
    // the write and auth classes' first connections.
    for class in ["read", "analytics"] {
        let stats = &pool_class(&before, class)["stats"];
        assert_eq!(
            (
                stats["opened"].as_u64(),
                pool_class(&before, class)["size"].as_u64()
            ),
            (Some(0), Some(0)),
            "{class}: {before}"
        );
    }
    assert!(pool_class(&before, "write")["stats"]["opened"].as_u64() >= Some(1));

    for class in ["read", "analytics"] {
        assert_eq!(
            pool_class(&before, class)["stats"]["acquires"],
            0,
            "{before}"
        );
    }

    traffic_on_every_class(&gw, &platform, &alice).await;

    // The read classes opened connections; the sampler (every second) recorded usage and
    // advises every class.
    let after = gw
        .poll(&platform, path, |b| {
            ["write", "read", "analytics", "auth"].iter().all(|c| {
                pool_class(b, c)["history_samples"].as_u64() >= Some(1)
                    && pool_class(b, c)["advice"].is_object()
            })
        })
        .await;
    for class in ["read", "analytics"] {
        let c = pool_class(&after, class);
        assert!(c["stats"]["opened"].as_u64() >= Some(1), "{class}: {after}");
        assert!(c["size"].as_u64() >= Some(1), "{class}: {after}");
    }
    for class in ["write", "read", "analytics", "auth"] {
        let c = pool_class(&after, class);
        assert!(c["history_samples"].as_u64() >= Some(1), "{class}: {after}");
        let advice = &c["advice"];
        assert!(advice["target"].as_u64().is_some(), "{class}: {after}");
        assert!(advice["action"].is_string(), "{class}: {after}");
    }
    assert!(after["pools"]["sampler"]["background"] == true);
    assert_the_stores_acquire_through_the_classes(&after, "postgres");

    // The same numbers are scraped, and readiness checks every class.
    let metrics = gw.get_anonymously("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"mcp_pool_class_limit{class="auth",backend="postgres"} 8"#),
        "{metrics}"
    );
    assert!(metrics.contains("mcp_pool_class_connections_opened_total"));
    let (status, ready) = gw.get(None, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["pools"]["healthy"], true, "{ready}");
    assert_eq!(
        ready["checks"]["pools"]["classes"].as_array().map(Vec::len),
        Some(4)
    );

    let report = gw.shutdown().await;
    assert!(report.drained);
    let (stored,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM \"{schema}\".audit_events WHERE target = 'echo'"
    )))
    .fetch_one(&admin_pool)
    .await
    .unwrap();
    drop_schema(&admin_pool, &schema).await;
    assert_eq!(stored, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_activity_and_tenant_analytics_are_tenant_scoped() {
    let gw = Running::start("").await;
    let alice = gw.token("alice", "acme", "user");
    let bob = gw.token("bob", "globex", "user");
    for _ in 0..3 {
        assert_eq!(
            gw.call_as(&alice, "echo", json!({"text": "a"})).await.0,
            200
        );
    }
    assert_eq!(gw.call_as(&alice, "admin.stats", json!({})).await.0, 403);
    assert_eq!(gw.call_as(&bob, "echo", json!({"text": "b"})).await.0, 200);

    let acme_admin = gw.token("root", "acme", "admin");
    let activity = gw
        .poll(&acme_admin, "/api/v1/admin/user-activity/alice", |b| {
            b["events"] == 4
        })
        .await;
    assert_eq!(activity["events"], 4, "{activity}");
    assert_eq!(activity["requests"]["tool_calls"], 4);
    assert_eq!(activity["requests"]["denied"], 1);
    let tools = activity["tools"].as_array().unwrap();
    assert_eq!(tools[0]["tool"], "echo");
    assert_eq!(tools[0]["calls"], 3);
    assert_eq!(tools[0]["duration_categories"]["quick_action"], 3);
    assert_eq!(tools[1]["tool"], "admin.stats");
    assert_eq!(tools[1]["denied"], 1);
    assert!(activity["last_seen"].is_string());
    assert_eq!(activity["auth_methods"]["jwt"], 4);

    // Bob is in globex: invisible from acme, and acme's admin may not look there.
    let (_, bob_seen) = gw
        .get(Some(&acme_admin), "/api/v1/admin/user-activity/bob")
        .await;
    assert_eq!(bob_seen["events"], 0);
    let (status, _) = gw
        .get(
            Some(&acme_admin),
            "/api/v1/admin/user-activity/bob?tenant=globex",
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = gw
        .get(Some(&alice), "/api/v1/admin/user-activity/alice")
        .await;
    assert_eq!(status, 403);
    let (status, _) = gw
        .get(
            Some(&acme_admin),
            "/api/v1/admin/user-activity/alice?hours=0",
        )
        .await;
    assert_eq!(status, 400);

    let analytics = gw
        .poll(
            &acme_admin,
            "/api/v1/admin/tenant-analytics/acme?hours=1",
            |b| b["audit"]["totals"]["tool_calls"] == 4 && b["audit"]["totals"]["denied"] == 3,
        )
        .await;
    let audit = &analytics["audit"];
    assert_eq!(audit["totals"]["tool_calls"], 4, "{analytics}");
    // admin.stats, and the two refused user-activity calls of acme's principals.
    assert_eq!(audit["totals"]["denied"], 3, "{analytics}");
    // alice and the admin (its admin calls are the tenant's too); never globex's bob.
    assert_eq!(audit["distinct_users"], 2, "{analytics}");
    let users = audit["top_users"].as_array().unwrap();
    let alice = users.iter().find(|u| u["subject"] == "alice").unwrap();
    assert_eq!(
        alice["events"], 5,
        "four tool calls and one refused admin call"
    );
    assert!(users.iter().all(|u| u["subject"] != "bob"));
    assert_eq!(audit["top_tools"][0]["tool"], "echo");
    assert!(
        analytics["live"]["active_users"]["1m"].as_f64().unwrap() >= 1.0,
        "{analytics}"
    );
    let (status, _) = gw
        .get(Some(&acme_admin), "/api/v1/admin/tenant-analytics/globex")
        .await;
    assert_eq!(status, 403);
    let platform = gw.token("ops", "acme", "platform_admin");
    let globex = gw
        .poll(&platform, "/api/v1/admin/tenant-analytics/globex", |b| {
            b["audit"]["totals"]["tool_calls"] == 1
        })
        .await;
    assert_eq!(globex["audit"]["top_users"][0]["subject"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_satisfies_require_https() {
    let scratch = Scratch::new("tls");
    let tls = Tls::write(&scratch);
    let mut gw = Running::start_in(scratch, "", Some(&tls)).await;
    assert!(gw.base.starts_with("https://"));
    let alice = gw.token("alice", "acme", "user");
    let (status, body) = gw.call_as(&alice, "echo", json!({"text": "tls"})).await;
    assert_eq!(
        status, 200,
        "require_https holds for a TLS connection: {body}"
    );
    assert_eq!(text_of(&body), "tls");
    let health = gw.get_anonymously("/health").await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("strict-transport-security"));
    // Plain HTTP on the TLS port gets no HTTP answer; a client that does not trust the
    // certificate gets no connection.
    let plain = gw.base.replacen("https://", "http://", 1);
    let refused = reqwest::Client::new()
        .get(format!("{plain}/health"))
        .send()
        .await;
    assert!(refused.is_err() || refused.is_ok_and(|r| r.status() != 200));
    let untrusted = reqwest::Client::new()
        .get(format!("{}/health", gw.base))
        .send()
        .await;
    assert!(untrusted.is_err());
    assert!(gw.shutdown().await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_off_and_the_lean_switches_leave_only_the_forwarding() {
    let mut gw = Running::start(
        "[rbac]\nallow_all = true\n[metrics]\nenabled = false\n[auth]\nmode = \"none\"\ninsecure_no_auth_i_know = true\n",
    )
    .await;
    // Anonymous: no token needed, RBAC not asked (admin.stats is for admins), lists whole.
    let (status, body) = gw.call(None, "admin.stats", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .call(
            Some(("authorization", "Bearer garbage")),
            "echo",
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = gw
        .http
        .post(format!("{}/mcp", gw.base))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        list["result"]["tools"].as_array().unwrap().len(),
        4,
        "{list}"
    );
    assert_eq!(gw.get_anonymously("/metrics").await.status(), 404);
    // The admin API still asks the policy: `anonymous` holds no role there.
    let admin = gw.get_anonymously("/api/v1/admin/multi-user-status").await;
    assert_eq!(admin.status(), 403);
    gw.shutdown().await;
    assert_eq!(gw.tool_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_off_records_nothing_and_a_cacheless_gateway_verifies_every_time() {
    let mut gw =
        Running::start("[auth]\ntoken_cache_capacity = 0\n[audit]\nenabled = false\n").await;
    let alice = gw.token("alice", "acme", "user");
    for _ in 0..2 {
        assert_eq!(
            gw.call_as(&alice, "echo", json!({"text": "c"})).await.0,
            200
        );
    }
    let (status, _) = gw.call_as(&alice, "admin.stats", json!({})).await;
    assert_eq!(status, 403, "RBAC is still on");
    let admin = gw.token("root", "acme", "admin");
    let (status, _) = gw.get(Some(&admin), "/api/v1/admin/audit").await;
    assert_eq!(status, 404, "no queryable audit when it is off");
    let platform = gw.token("ops", "acme", "platform_admin");
    let (status, pools) = gw
        .get(Some(&platform), "/api/v1/admin/connection-pool-status")
        .await;
    assert_eq!(status, 404, "no SQL store, no pools: {pools}");
    assert_eq!(pools["error"], "not_configured");
    let (_, security) = gw
        .get(
            Some(&gw.token("ops", "acme", "platform_admin")),
            "/health/security",
        )
        .await;
    assert_eq!(security["audit"], false);
    assert_eq!(security["authentication"]["token_cache"], false);
    let report = gw.shutdown().await;
    assert_eq!(report.audit_events_written, 0);
    assert!(!Path::new(&gw.scratch.path("audit.db")).exists());
}
