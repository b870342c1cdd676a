//! The auth layer, the `Principal` extractor and the RFC 9728 metadata over real HTTP on
//! 127.0.0.1 (axum server, reqwest client).
#![cfg(feature = "axum")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failure should stop the test loudly"
)]

use std::net::SocketAddr;

use async_trait::async_trait;
use axum::Router;
use axum::routing::{get, post};
use mcp_auth_core::resource::ProtectedResourceMetadata;
use mcp_auth_core::{
    AuthError, AuthLayer, AuthMethod, AuthRejection, Authenticator, ChallengeConfig, Credential,
    CredentialKind, Principal, TokenRejection,
};
use tokio::net::TcpListener;

/// Accepts exactly one token.
struct TestAuth;

const GOOD_TOKEN: &str = "alice-good-token";

#[async_trait]
impl Authenticator for TestAuth {
    fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::Bearer
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        if credential.secret().expose() == GOOD_TOKEN {
            Ok(Principal::builder("alice", AuthMethod::Local)
                .tenant("acme")
                .roles(["user"])
                .scopes(["mcp:tools"])
                .build())
        } else {
            Err(AuthError::InvalidToken(TokenRejection::BadSignature))
        }
    }
}

struct Server {
    base: String,
    metadata: ProtectedResourceMetadata,
    client: reqwest::Client,
}

async fn whoami(principal: Principal) -> String {
    format!(
        "{} {} {}",
        principal.subject(),
        principal.tenant().unwrap_or("-"),
        principal
            .scopes()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn admin(principal: Principal) -> Result<&'static str, AuthRejection> {
    if principal.has_scope("mcp:admin") {
        Ok("admin")
    } else {
        Err(AuthRejection::new(
            AuthError::InsufficientScope {
                scope: "mcp:admin".into(),
            },
            ChallengeConfig::new(),
        ))
    }
}

async fn maybe(principal: Option<Principal>) -> String {
    principal.map_or("anonymous".into(), |p| p.subject().to_owned())
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let metadata = ProtectedResourceMetadata::builder(format!("{base}/mcp"))
        .authorization_server("http://127.0.0.1:9/issuer")
        .scopes_supported(["mcp:tools", "mcp:admin"])
        .build()
        .unwrap();
    let challenge = metadata.challenge_config().default_scope("mcp:tools");
    let protected = Router::new()
        .route("/mcp", post(whoami))
        .route("/mcp/admin", post(admin))
        .route_layer(AuthLayer::new(TestAuth).challenge(challenge.clone()));
    let open = Router::new().route("/public", get(maybe)).layer(
        AuthLayer::new(TestAuth)
            .challenge(challenge)
            .allow_anonymous(),
    );
    // A route with the extractor but no layer: the extractor alone answers 401.
    let bare = Router::new().route("/bare", get(whoami));
    let app = protected.merge(open).merge(bare).merge(metadata.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base,
        metadata,
        client: reqwest::Client::new(),
    }
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    cache_control: Option<String>,
    body: String,
}

impl Server {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Reply {
            status: response.status().as_u16(),
            challenge: header("www-authenticate"),
            cache_control: header("cache-control"),
            body: response.text().await.unwrap(),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    fn metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.base)
    }
}

#[tokio::test]
async fn no_token_gets_401_with_challenge() {
    let server = start().await;
    let reply = server.post("/mcp", None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.unwrap(),
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"mcp:tools\"",
            server.metadata_url()
        )
    );
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert_eq!(reply.body, r#"{"error":"unauthorized"}"#);
    assert_eq!(
        server.metadata.resource_metadata_url(),
        server.metadata_url()
    );
}

#[tokio::test]
async fn bad_token_gets_invalid_token() {
    let server = start().await;
    for token in ["not-a-token", "a.b.c", "alice-good-token-tampered"] {
        let reply = server.post("/mcp", Some(token)).await;
        assert_eq!(reply.status, 401, "{token}");
        let challenge = reply.challenge.unwrap();
        assert!(
            challenge.ends_with(", error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains("resource_metadata=\""), "{challenge}");
        // Only the error code; not the rejection reason ("signature does not verify").
        assert_eq!(reply.body, r#"{"error":"invalid_token"}"#);
    }
    // A header with another scheme: 401 without an error code.
    let reply = server
        .send(
            server
                .client
                .post(format!("{}/mcp", server.base))
                .basic_auth("alice", Some("pw")),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert!(!reply.challenge.unwrap().contains("error="));
}

#[tokio::test]
async fn query_string_token_is_refused() {
    let server = start().await;
    for path in [
        format!("/mcp?access_token={GOOD_TOKEN}"),
        format!("/mcp?x=1&token={GOOD_TOKEN}"),
        format!("/mcp?access%5Ftoken={GOOD_TOKEN}"),
    ] {
        // Refused even when the header carries the same, valid token.
        let reply = server.post(&path, Some(GOOD_TOKEN)).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.body, r#"{"error":"invalid_request"}"#);
        assert!(
            reply
                .challenge
                .unwrap()
                .contains("error=\"invalid_request\"")
        );
    }
}

#[tokio::test]
async fn principal_reaches_the_handler() {
    let server = start().await;
    let reply = server.post("/mcp", Some(GOOD_TOKEN)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "alice acme mcp:tools");
    assert!(reply.challenge.is_none());
}

#[tokio::test]
async fn missing_scope_is_403() {
    let server = start().await;
    let reply = server.post("/mcp/admin", Some(GOOD_TOKEN)).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.challenge.unwrap(),
        "Bearer scope=\"mcp:admin\", error=\"insufficient_scope\""
    );
    assert_eq!(reply.body, r#"{"error":"insufficient_scope"}"#);
}

#[tokio::test]
async fn anonymous_mode_and_optional_principal() {
    let server = start().await;
    let get = |token: Option<&str>| {
        let mut request = server.client.get(format!("{}/public", server.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        server.send(request)
    };
    let reply = get(None).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "anonymous"));
    let reply = get(Some(GOOD_TOKEN)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "alice"));
    let reply = get(Some("forged")).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn extractor_without_layer_answers_401() {
    let server = start().await;
    let reply = server
        .send(
            server
                .client
                .get(format!("{}/bare", server.base))
                .bearer_auth(GOOD_TOKEN),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer"));
    assert_eq!(reply.body, r#"{"error":"unauthorized"}"#);
}

#[tokio::test]
async fn metadata_served_at_both_well_known_paths() {
    let server = start().await;
    for url in [
        server.metadata_url(),
        format!("{}/.well-known/oauth-protected-resource", server.base),
    ] {
        let reply = server.send(server.client.get(&url)).await;
        assert_eq!(reply.status, 200, "{url}");
        assert_eq!(reply.cache_control.as_deref(), Some("public, max-age=3600"));
        let doc: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(doc["resource"], format!("{}/mcp", server.base));
        assert_eq!(
            doc["authorization_servers"],
            serde_json::json!(["http://127.0.0.1:9/issuer"])
        );
        assert_eq!(
            doc["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
        assert_eq!(doc, server.metadata.to_json());
    }
    let reply = server.send(server.client.post(server.metadata_url())).await;
    assert_eq!(reply.status, 405);
}
