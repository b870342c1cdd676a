//! Client ID Metadata Documents: URL client ids fetched by the proxy. In development mode a
//! document on a loopback server signs a client in; in normal mode the proxy refuses `http`
//! URLs and hosts that are or resolve to loopback, private or link-local addresses, before
//! any connection; size and time limits hold in both.
#![cfg(feature = "proxy")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

mod proxy_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use proxy_support::{AuthRequest, Harness, Options};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const REDIRECT: &str = "http://127.0.0.1:7777/cb";

/// A loopback server for metadata documents, counting requests.
struct DocumentServer {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hit(State(hits): State<Arc<AtomicUsize>>) {
    hits.fetch_add(1, Ordering::SeqCst);
}

impl DocumentServer {
    /// Serves `/client.json` (the document naming its own URL), `/wrong.json` (naming
    /// another client id), `/big.json` (over 16 KiB) and `/slow.json` (answers after 30 s).
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let hits = Arc::new(AtomicUsize::new(0));
        let doc = json!({
            "client_id": format!("{base}/client.json"),
            "client_name": "Document client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        });
        let wrong = json!({"client_id": "https://elsewhere.example/client.json", "redirect_uris": [REDIRECT]});
        let big = json!({
            "client_id": format!("{base}/big.json"),
            "redirect_uris": [REDIRECT],
            "client_name": "x".repeat(20_000),
        });
        let app = Router::new()
            .route(
                "/client.json",
                get(move |s: State<Arc<AtomicUsize>>| async move {
                    hit(s).await;
                    axum::Json(doc.clone())
                }),
            )
            .route(
                "/wrong.json",
                get(move |s: State<Arc<AtomicUsize>>| async move {
                    hit(s).await;
                    axum::Json(wrong.clone())
                }),
            )
            .route(
                "/big.json",
                get(move |s: State<Arc<AtomicUsize>>| async move {
                    hit(s).await;
                    axum::Json(big.clone())
                }),
            )
            .route(
                "/slow.json",
                get(|s: State<Arc<AtomicUsize>>| async move {
                    hit(s).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    axum::Json(json!({}))
                }),
            )
            .with_state(Arc::clone(&hits));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn development_harness() -> Harness {
    Harness::start_with(Options::default().configure(|c| {
        c.development.dangerous_allow_private_client_metadata = true;
        c.client_id_metadata_documents.timeout_ms = 300;
    }))
    .await
}

#[tokio::test]
async fn a_metadata_document_signs_a_client_in_in_development_mode() {
    let docs = DocumentServer::start().await;
    let harness = development_harness().await;
    let client_id = docs.url("/client.json");
    let request = AuthRequest::new(&client_id, REDIRECT, &harness.resource);

    let page = harness.browser.get(&request.url(&harness.base)).await;
    assert!(page.is_consent_page(), "{page:?}");
    assert!(page.body.contains("Document client"));
    let tokens_ = proxy_support::login(&harness, &request).await;
    let claims = mcp_auth_testkit::tokens::claims_of(tokens_["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], client_id);
    // The document was fetched once and then cached.
    assert_eq!(docs.hits(), 1);

    // A redirect URI the document does not list is refused like any other.
    let mut wrong = request.clone();
    wrong.redirect_uri = "http://127.0.0.1:7777/other".into();
    let reply = harness.browser.get(&wrong.url(&harness.base)).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn bad_documents_are_refused_in_development_mode() {
    let docs = DocumentServer::start().await;
    let harness = development_harness().await;
    for path in ["/wrong.json", "/big.json", "/slow.json", "/missing.json"] {
        let request = AuthRequest::new(&docs.url(path), REDIRECT, &harness.resource);
        let reply = harness.browser.get(&request.url(&harness.base)).await;
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(reply.location.is_none(), "{path}");
        assert!(reply.body.contains("unknown client_id"), "{path}");
    }
}

/// A host name (from this machine's own name or hosts file) that resolves only to
/// addresses that are not public, if there is one.
async fn name_resolving_to_a_private_address() -> Option<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        candidates.push(name.trim().to_owned());
    }
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines().filter(|l| !l.trim_start().starts_with('#')) {
            candidates.extend(line.split_whitespace().skip(1).map(str::to_owned));
        }
    }
    for name in candidates {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || lower == "localhost" || lower.ends_with(".localhost") {
            continue;
        }
        let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 443)).await else {
            continue;
        };
        let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        let private = |ip: &IpAddr| match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_loopback(),
        };
        if !ips.is_empty() && ips.iter().all(private) {
            return Some(name);
        }
    }
    None
}

#[tokio::test]
async fn private_and_plain_http_documents_are_refused_in_normal_mode() {
    let docs = DocumentServer::start().await;
    let harness = Harness::start().await;
    let port = docs.base.rsplit(':').next().unwrap().to_owned();
    let mut refused = vec![
        // http: not a metadata document URL at all outside development mode.
        docs.url("/client.json"),
        // IP literals of loopback, private and link-local (cloud metadata) addresses.
        format!("https://127.0.0.1:{port}/client.json"),
        format!("https://[::1]:{port}/client.json"),
        "https://10.0.0.7/client.json".to_owned(),
        "https://169.254.169.254/latest/meta-data/client.json".to_owned(),
        format!("https://localhost:{port}/client.json"),
    ];
    // A name that resolves to a private address is refused after DNS resolution.
    match name_resolving_to_a_private_address().await {
        Some(name) => refused.push(format!("https://{name}:{port}/client.json")),
        None => {
            #[allow(clippy::print_stdout, reason = "the skip must be visible")]
            {
                println!("no host name resolving to a private address here; DNS case skipped");
            }
        }
    }
    for client_id in refused {
        let request = AuthRequest::new(&client_id, REDIRECT, &harness.resource);
        let reply = harness.browser.get(&request.url(&harness.base)).await;
        assert_eq!(reply.status, 400, "{client_id}: {reply:?}");
        assert!(reply.location.is_none());
        let (status, body): (u16, Value) = harness
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("client_id", &client_id),
                ("code_verifier", &request.pkce.verifier),
            ])
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    assert_eq!(docs.hits(), 0, "no request may reach a private address");
}

#[tokio::test]
async fn documents_can_be_switched_off() {
    let docs = DocumentServer::start().await;
    let harness = Harness::start_with(Options::default().configure(|c| {
        c.client_id_metadata_documents.enabled = false;
        c.development.dangerous_allow_private_client_metadata = true;
    }))
    .await;
    assert_eq!(
        harness.proxy.metadata()["client_id_metadata_document_supported"],
        false
    );
    let request = AuthRequest::new(&docs.url("/client.json"), REDIRECT, &harness.resource);
    let reply = harness.browser.get(&request.url(&harness.base)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(docs.hits(), 0);
}
