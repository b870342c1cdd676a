//! [`TestIssuer`]: a local OIDC issuer over real HTTP on 127.0.0.1 (discovery, JWKS, key
//! rotation, outages) that mints tokens with arbitrary claims.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::Algorithm;
use mcp_auth_core::{Clock, SystemClock};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::keys::TestKey;
use crate::tokens;

/// How a [`TestIssuer`] is set up.
#[derive(Clone, Debug)]
pub struct TestIssuerConfig {
    /// The signing algorithm; the rotation pool is [`TestKey::pool`] of it. Default RS256.
    pub alg: Algorithm,
    /// The `Cache-Control` header of the JWKS response. Default none.
    pub cache_control: Option<String>,
    /// The clock for `iat`/`exp` of minted tokens. Default the system clock.
    pub clock: Arc<dyn Clock>,
    /// Default token lifetime in seconds (`exp = iat + ttl`). Default 3600.
    pub ttl_secs: u64,
}

impl Default for TestIssuerConfig {
    fn default() -> Self {
        Self {
            alg: Algorithm::RS256,
            cache_control: None,
            clock: Arc::new(SystemClock),
            ttl_secs: 3600,
        }
    }
}

impl TestIssuerConfig {
    /// The default configuration with signing algorithm `alg`.
    pub fn with_alg(alg: Algorithm) -> Self {
        Self {
            alg,
            ..Self::default()
        }
    }
}

struct PublishedKey {
    kid: String,
    key: TestKey,
    jwk: Value,
    retired: bool,
}

struct Keys {
    /// Every key ever made current, in order; retired ones are no longer in the JWKS.
    history: Vec<PublishedKey>,
    current_kid: String,
    current_key: TestKey,
    pool: Vec<TestKey>,
    generation: usize,
    cache_control: Option<String>,
    discovery_issuer: Option<String>,
}

struct Shared {
    issuer_url: String,
    alg: Algorithm,
    clock: Arc<dyn Clock>,
    ttl_secs: u64,
    keys: Mutex<Keys>,
    available: AtomicBool,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    minted: AtomicUsize,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A local OIDC issuer on `http://127.0.0.1:<random port>`, stopped when dropped.
///
/// Serves `/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server`
/// and `/jwks.json`. Tokens minted with [`TestIssuer::mint`] carry `iss` =
/// [`TestIssuer::issuer_url`], `aud` = [`TestIssuer::AUDIENCE`], `sub` = `user-1`, `iat`,
/// `exp` (+1 h) and a unique `jti`, signed with the current key and its `kid`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use mcp_auth_testkit::{TestIssuer, tokens};
/// use serde_json::json;
///
/// let issuer = TestIssuer::start().await;
/// let token = issuer.mint(json!({"sub": "alice", "scope": "mcp:tools", "exp": null}));
/// let claims = tokens::claims_of(&token);
/// assert_eq!(claims["iss"], issuer.issuer_url());
/// assert!(claims.get("exp").is_none());
///
/// let old = issuer.current_kid();
/// let new = issuer.rotate();
/// assert_ne!(old, new);
/// issuer.retire(&old);
/// # }
/// ```
pub struct TestIssuer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestIssuer {
    /// The default audience of minted tokens.
    pub const AUDIENCE: &'static str = "mcp-test";
    /// The default subject of minted tokens.
    pub const SUBJECT: &'static str = "user-1";

    /// Starts an RS256 issuer with one published key.
    ///
    /// # Panics
    ///
    /// If no port on 127.0.0.1 can be bound or no tokio runtime is running.
    pub async fn start() -> Self {
        Self::start_with(TestIssuerConfig::default()).await
    }

    /// Starts an issuer as configured, with one published key.
    ///
    /// # Panics
    ///
    /// If `config.alg` is an HMAC algorithm, or no port on 127.0.0.1 can be bound.
    pub async fn start_with(config: TestIssuerConfig) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot bind the test issuer: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("test issuer has no local address: {e}"));
        let issuer_url = format!("http://{addr}");
        let pool = TestKey::pool(config.alg);
        let shared = Arc::new(Shared {
            issuer_url,
            alg: config.alg,
            clock: config.clock,
            ttl_secs: config.ttl_secs,
            keys: Mutex::new(Keys {
                history: Vec::new(),
                current_kid: String::new(),
                current_key: pool[0].clone(),
                pool,
                generation: 0,
                cache_control: config.cache_control,
                discovery_issuer: None,
            }),
            available: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            minted: AtomicUsize::new(0),
        });
        rotate(&shared);
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/oauth-authorization-server", get(discovery))
            .route("/jwks.json", get(jwks))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // The server ends when the task is aborted on drop; an accept error ends it early
            // and the tests then see connection errors, which is what an outage looks like.
            let _ = axum::serve(listener, router).await;
        });
        Self { shared, addr, task }
    }

    /// `http://127.0.0.1:<port>`: the `iss` of minted tokens and the discovery base.
    pub fn issuer_url(&self) -> String {
        self.shared.issuer_url.clone()
    }

    /// The JWKS URL (`<issuer>/jwks.json`).
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.issuer_url)
    }

    /// The OIDC discovery URL (`<issuer>/.well-known/openid-configuration`).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.shared.issuer_url
        )
    }

    /// The RFC 8414 metadata URL (`<issuer>/.well-known/oauth-authorization-server`).
    pub fn oauth_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-authorization-server",
            self.shared.issuer_url
        )
    }

    /// The socket address the issuer listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Algorithm {
        self.shared.alg
    }

    /// The default claims merged with `overrides` (`null` removes a claim): what
    /// [`TestIssuer::mint`] signs. Use it with [`tokens::sign_with`] for foreign-key tokens.
    pub fn claims(&self, overrides: Value) -> Value {
        let now = self
            .shared
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let n = self.shared.minted.fetch_add(1, Ordering::Relaxed);
        let defaults = json!({
            "iss": self.shared.issuer_url,
            "aud": Self::AUDIENCE,
            "sub": Self::SUBJECT,
            "iat": now,
            "exp": now + self.shared.ttl_secs,
            "jti": format!("{}-{n}", self.addr.port()),
        });
        tokens::merge(defaults, overrides)
    }

    /// Mints a token: `claims` merged over the defaults, signed with the current key, header
    /// `{"alg", "typ": "JWT", "kid"}`.
    pub fn mint(&self, claims: Value) -> String {
        self.mint_with_header(json!({}), claims)
    }

    /// Mints a token with `header` merged over `{"alg", "typ": "JWT", "kid": <current>}` and
    /// `claims` merged over the defaults (`null` removes a field in both).
    ///
    /// The key is the one the issuer ever published under the header's `kid` (also after a
    /// rotation or [`TestIssuer::retire`]), else the current key: so `{"kid": old_kid}`
    /// mints a genuine token of an older key, and `{"kid": "nope"}` a token under an unknown
    /// `kid`. An `alg` the key can sign with is honoured (RS384 on an RSA issuer); any other
    /// `alg` stays in the header while the signature uses the key's own algorithm (see
    /// [`tokens::sign_with`]). `crit`, `typ` and other fields are passed through as given.
    pub fn mint_with_header(&self, header: Value, claims: Value) -> String {
        let (kid, key) = {
            let keys = self.shared.keys();
            (keys.current_kid.clone(), keys.current_key.clone())
        };
        let header = tokens::merge(
            json!({"alg": tokens::alg_name(key.alg()), "typ": "JWT", "kid": kid}),
            header,
        );
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| self.key(kid))
            .unwrap_or(key);
        tokens::sign_exact(&key, &header, &self.claims(claims))
    }

    /// The key the issuer published under `kid`, retired or not.
    pub fn key(&self, kid: &str) -> Option<TestKey> {
        self.shared
            .keys()
            .history
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.key.clone())
    }

    /// The `kid` new tokens are signed under.
    pub fn current_kid(&self) -> String {
        self.shared.keys().current_kid.clone()
    }

    /// The key new tokens are signed with (even after [`TestIssuer::retire`] of its `kid`).
    pub fn current_key(&self) -> TestKey {
        self.shared.keys().current_key.clone()
    }

    /// The `kid`s in the JWKS, oldest first.
    pub fn published_kids(&self) -> Vec<String> {
        self.shared
            .keys()
            .history
            .iter()
            .filter(|k| !k.retired)
            .map(|k| k.kid.clone())
            .collect()
    }

    /// The JWKS document as served (`{"keys": [...]}`).
    pub fn jwks(&self) -> Value {
        jwks_document(&self.shared.keys())
    }

    /// Makes the next key of the fixture pool current under a new `kid` and returns it. The
    /// old keys stay published until [`TestIssuer::retire`]d. The pool is cycled when
    /// exhausted (the same key material then appears under a new `kid`).
    pub fn rotate(&self) -> String {
        rotate(&self.shared)
    }

    /// Removes `kid` from the JWKS. Returns whether it was published. Retiring the current
    /// `kid` keeps signing with it, so tokens then name a `kid` the JWKS no longer has.
    pub fn retire(&self, kid: &str) -> bool {
        let mut keys = self.shared.keys();
        let mut found = false;
        for key in keys
            .history
            .iter_mut()
            .filter(|k| k.kid == kid && !k.retired)
        {
            key.retired = true;
            found = true;
        }
        found
    }

    /// While `false`, discovery and JWKS answer 503 (an outage of the issuer).
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::SeqCst);
    }

    /// Sets (or clears) the `Cache-Control` header of the JWKS response.
    pub fn set_cache_control(&self, value: Option<String>) {
        self.shared.keys().cache_control = value;
    }

    /// Makes discovery advertise `issuer` instead of the real issuer URL (to test that a
    /// client rejects metadata whose `issuer` does not match); `None` restores it.
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        self.shared.keys().discovery_issuer = issuer;
    }

    /// JWKS requests received so far, including those answered 503.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery requests (both well-known paths) received so far, including 503s.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer_url", &self.shared.issuer_url)
            .field("alg", &self.shared.alg)
            .field("current_kid", &self.current_kid())
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rotate(shared: &Shared) -> String {
    let mut keys = shared.keys();
    let key = keys.pool[keys.generation % keys.pool.len()].clone();
    keys.generation += 1;
    let kid = format!("{}-gen{}", key.name(), keys.generation);
    let jwk = key.jwk_json(&kid);
    keys.history.push(PublishedKey {
        kid: kid.clone(),
        key: key.clone(),
        jwk,
        retired: false,
    });
    keys.current_kid.clone_from(&kid);
    keys.current_key = key;
    kid
}

fn jwks_document(keys: &Keys) -> Value {
    let list: Vec<Value> = keys
        .history
        .iter()
        .filter(|k| !k.retired)
        .map(|k| k.jwk.clone())
        .collect();
    json!({ "keys": list })
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "issuer unavailable",
    )
        .into_response()
}

fn json_response(body: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if !shared.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    let base = &shared.issuer_url;
    let issuer = shared.keys().discovery_issuer.clone();
    let alg = serde_json::to_value(shared.alg).unwrap_or(Value::Null);
    json_response(&json!({
        "issuer": issuer.as_deref().unwrap_or(base),
        "jwks_uri": format!("{base}/jwks.json"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "mcp:tools", "mcp:resources", "mcp:prompts"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if !shared.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    let (body, cache_control) = {
        let keys = shared.keys();
        (jwks_document(&keys), keys.cache_control.clone())
    };
    let mut response = json_response(&body);
    if let Some(value) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}
