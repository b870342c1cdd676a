//! Starts the example server on a random 127.0.0.1 port and speaks MCP to it over real HTTP:
//! initialize and `tools/call whoami` with the demo token, 401 without it.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failure should stop the test loudly"
)]

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const PROTOCOL_VERSION: &str = "2025-06-18";

struct Running {
    base: String,
    token: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let demo = example_rmcp_server::build(&base).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(example_rmcp_server::serve(
        listener,
        demo.router,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        base,
        token: demo.demo_token.expose().to_owned(),
        client: reqwest::Client::new(),
        stop: Some(stop),
        server,
    }
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

impl Running {
    async fn rpc(&self, token: Option<&str>, body: Value) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/mcp", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status().as_u16(),
            challenge: response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        self.server.await.unwrap().unwrap();
    }
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "whoami-test", "version": "0.0.0"}
        }
    })
}

fn call_whoami() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}
    })
}

#[tokio::test]
async fn whoami_returns_the_callers_principal() {
    let server = start().await;
    let token = server.token.clone();

    let reply = server.rpc(Some(&token), initialize()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let init: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(init["id"], 1);
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );

    let reply = server.rpc(Some(&token), call_whoami()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let result: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        result["result"]["structuredContent"],
        json!({
            "subject": "demo-user",
            "tenant": "demo",
            "roles": ["user"],
            "scopes": ["mcp:tools"],
        }),
        "{result}"
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let server = start().await;
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", server.base);

    let reply = server.rpc(None, call_whoami()).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp:tools\"")
    );
    assert_eq!(reply.body, r#"{"error":"unauthorized"}"#);

    // A token with one character in the middle of its signature changed.
    let mut forged = server.token.clone().into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let reply = server.rpc(Some(&forged), call_whoami()).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .challenge
            .unwrap()
            .ends_with("error=\"invalid_token\"")
    );
    assert_eq!(reply.body, r#"{"error":"invalid_token"}"#);

    // The metadata is public.
    let metadata: Value = server
        .client
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{}/mcp", server.base));
    assert_eq!(metadata["scopes_supported"], json!(["mcp:tools"]));
    server.stop().await;
}
