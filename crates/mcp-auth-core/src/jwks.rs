//! [`JwksCache`]: verification keys fetched from a JWKS URL or found through OIDC / RFC 8414
//! discovery, cached by `kid`, refreshed in the background, refetched (rate-limited and
//! coalesced) on an unknown `kid`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jsonwebtoken::Algorithm;
use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, HeaderMap};

use crate::clock::{Clock, SystemClock};
use crate::error::{AuthError, TokenRejection};
use crate::jwt::{JwtConfigError, KeyResolver, KeySet, VerifyingKey};

/// Where the keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksSource {
    /// A JWKS URL.
    Url(String),
    /// An issuer URL: the JWKS URL is read from its OIDC discovery document
    /// (`{issuer}/.well-known/openid-configuration`) or, failing that, its RFC 8414
    /// metadata (`/.well-known/oauth-authorization-server`). The document's `issuer` must
    /// equal this issuer exactly.
    Discovery {
        /// The issuer, exactly as in tokens' `iss`.
        issuer: String,
    },
    /// The OIDC discovery document at `url`, whose `issuer` must equal `issuer` exactly.
    ///
    /// For providers whose document is not at `{issuer}/.well-known/openid-configuration`:
    /// Entra ID's multi-tenant documents (`/organizations/v2.0/...`) name the issuer
    /// template `https://login.microsoftonline.com/{tenantid}/v2.0`, and its v1 documents
    /// live on another host than the v1 issuer `https://sts.windows.net/{tid}/`.
    DiscoveryDocument {
        /// The URL of the discovery document.
        url: String,
        /// The `issuer` the document must name (may be a template such as `{tenantid}`;
        /// it is compared as a string, never used as a URL).
        issuer: String,
    },
}

/// Settings of a [`JwksCache`]; start from [`JwksConfig::default`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JwksConfig {
    /// Lower bound on the cache lifetime taken from `Cache-Control: max-age` (default 60 s).
    pub min_ttl: Duration,
    /// Upper bound on the cache lifetime (default 24 h).
    pub max_ttl: Duration,
    /// Lifetime when the response has no usable `max-age` (default 10 min).
    pub default_ttl: Duration,
    /// At most one fetch per this interval on unknown `kid`s and failures (default 10 s).
    pub refetch_interval: Duration,
    /// Timeout of one fetch, discovery included (default 5 s).
    pub fetch_timeout: Duration,
    /// Keys beyond this count in a JWKS are ignored (default 64).
    pub max_keys: usize,
    /// Largest accepted response body in bytes (default 256 KiB).
    pub max_response_bytes: usize,
    /// How long past their lifetime stale keys keep serving while refreshes fail (default 1 h).
    /// After that, verification fails with [`AuthError::Unavailable`].
    pub max_stale: Duration,
    /// Whether a background task refreshes the keys before they expire (default true; needs
    /// a Tokio runtime when the cache is built).
    pub background_refresh: bool,
    /// Longest sleep of the background task between checks (default 30 s).
    pub refresh_check_interval: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            max_keys: 64,
            max_response_bytes: 256 * 1024,
            max_stale: Duration::from_secs(3600),
            background_refresh: true,
            refresh_check_interval: Duration::from_secs(30),
        }
    }
}

impl JwksConfig {
    /// Sets the TTL bounds.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// Sets the refetch interval for unknown `kid`s and failures.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Sets the fetch timeout.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets how long stale keys keep serving after their lifetime while refreshes fail.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// Turns the background refresh on or off.
    pub fn background_refresh(mut self, enabled: bool) -> Self {
        self.background_refresh = enabled;
        self
    }

    /// Sets the longest sleep of the background task between checks.
    pub fn refresh_check_interval(mut self, interval: Duration) -> Self {
        self.refresh_check_interval = interval;
        self
    }

    /// Sets the key-count bound.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    fn check(&self) -> Result<(), JwtConfigError> {
        if self.min_ttl.is_zero() || self.min_ttl > self.max_ttl {
            return Err(JwtConfigError::Invalid(
                "JWKS TTL bounds: need 0 < min <= max",
            ));
        }
        if self.fetch_timeout.is_zero() || self.refresh_check_interval.is_zero() {
            return Err(JwtConfigError::Invalid("JWKS timeouts must be positive"));
        }
        if self.max_keys == 0 || self.max_response_bytes == 0 {
            return Err(JwtConfigError::Invalid("JWKS bounds must be positive"));
        }
        Ok(())
    }
}

/// Why a fetch failed; kept as the source of [`AuthError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

impl FetchError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the current keys should be replaced.
    expires_at: Option<SystemTime>,
    /// When the background task refreshes (before `expires_at`).
    refresh_at: Option<SystemTime>,
    last_attempt: Option<SystemTime>,
    attempts: u64,
    jwks_url: Option<Url>,
    last_error: Option<String>,
}

struct Inner {
    source: JwksSource,
    config: JwksConfig,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    gate: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// A cache of the keys published at a JWKS URL (directly or through discovery).
///
/// * Keyed by `kid`; each key's `kty`/`use`/`alg`/`key_ops` are enforced (`use: enc` keys are
///   ignored), at most [`JwksConfig::max_keys`] keys and
///   [`JwksConfig::max_response_bytes`] bytes are read.
/// * The lifetime comes from `Cache-Control: max-age`, clamped to the configured bounds; a
///   background task (holding only a weak reference, so dropping the cache stops it)
///   refreshes at 80 % of the lifetime.
/// * An unknown `kid` triggers at most one refetch per [`JwksConfig::refetch_interval`];
///   concurrent requests share that one fetch.
/// * A failed refresh keeps the last good keys (up to [`JwksConfig::max_stale`] past their
///   lifetime). With no keys at all, verification fails with [`AuthError::Unavailable`].
///
/// Plain `http://` is accepted only for loopback hosts (tests, local development).
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("JwksCache")
            .field("source", &self.inner.source)
            .field("keys", &state.keys.as_ref().map(|k| k.len()))
            .field("expires_at", &state.expires_at)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwksCache`].
#[derive(Debug)]
pub struct JwksCacheBuilder {
    source: JwksSource,
    config: JwksConfig,
    client: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
}

impl JwksCacheBuilder {
    /// Replaces the settings.
    pub fn config(mut self, config: JwksConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this HTTP client (default: a rustls client with the fetch timeout and no redirects).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The clock for lifetimes and the refetch interval (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the cache. With background refresh on and a Tokio
    /// runtime present, this starts the refresher, which fetches the keys right away.
    pub fn build(self) -> Result<JwksCache, JwtConfigError> {
        self.config.check()?;
        match &self.source {
            JwksSource::Url(url) => {
                check_url(url)?;
            }
            JwksSource::Discovery { issuer } => {
                check_url(issuer)?;
            }
            JwksSource::DiscoveryDocument { url, issuer } => {
                check_url(url)?;
                if issuer.is_empty() {
                    return Err(JwtConfigError::Invalid("empty expected issuer"));
                }
            }
        }
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(self.config.fetch_timeout)
                .connect_timeout(self.config.fetch_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|_| JwtConfigError::Invalid("cannot build the HTTP client"))?,
        };
        let inner = Arc::new(Inner {
            source: self.source,
            config: self.config,
            client,
            clock: self.clock,
            state: Mutex::new(State::default()),
            gate: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        });
        if inner.config.background_refresh
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(refresher(Arc::downgrade(&inner)));
        }
        Ok(JwksCache { inner })
    }
}

/// `https`, or `http` to a loopback host only.
fn check_url(url: &str) -> Result<Url, JwtConfigError> {
    let parsed = Url::parse(url).map_err(|_| JwtConfigError::Invalid("not a URL"))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(JwtConfigError::Invalid(
            "key URLs must use https (http only for loopback)",
        )),
    }
}

/// TTL from `Cache-Control`: `max-age` clamped to the bounds; `no-store`/`no-cache` give the
/// minimum; no usable directive gives the default.
fn ttl_from_headers(headers: &HeaderMap, config: &JwksConfig) -> Duration {
    let mut ttl = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return config.min_ttl;
            }
            if let Some((name, secs)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(secs) = secs.trim().trim_matches('"').parse::<u64>()
            {
                ttl = Some(Duration::from_secs(secs));
            }
        }
    }
    ttl.unwrap_or(config.default_ttl)
        .clamp(config.min_ttl, config.max_ttl)
}

fn elapsed(now: SystemTime, since: SystemTime) -> Duration {
    // A clock that went backwards counts as "long ago", so it never blocks a fetch forever.
    now.duration_since(since).unwrap_or(Duration::MAX)
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(FetchError::new("response larger than the limit"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::new(format!("reading the response: {e}")))?
    {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::new("response larger than the limit"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(serde::Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn get(&self, url: &Url) -> Result<(Vec<u8>, HeaderMap), FetchError> {
        let response = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::new(format!("GET {url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::new(format!("GET {url}: status {status}")));
        }
        let headers = response.headers().clone();
        let body = read_limited(response, self.config.max_response_bytes).await?;
        Ok((body, headers))
    }

    /// The well-known locations of `issuer`'s metadata: OIDC discovery, then RFC 8414.
    fn discovery_candidates(issuer: &str) -> Vec<String> {
        let base = issuer.trim_end_matches('/');
        let mut candidates = vec![format!("{base}/.well-known/openid-configuration")];
        // RFC 8414 section 3.1: the well-known segment goes between host and path.
        if let Ok(parsed) = Url::parse(base) {
            let path = parsed.path().trim_end_matches('/');
            let mut rfc8414 = parsed.clone();
            rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
            candidates.push(rfc8414.to_string());
        }
        candidates
    }

    /// Reads the first discovery document of `candidates` that can be fetched, checks that
    /// it names `issuer`, and returns its `jwks_uri`.
    async fn discover(&self, candidates: Vec<String>, issuer: &str) -> Result<Url, FetchError> {
        let mut last_error = FetchError::new("no discovery document");
        for candidate in candidates {
            let Ok(url) = Url::parse(&candidate) else {
                continue;
            };
            match self.get(&url).await {
                Ok((body, _)) => {
                    let doc: DiscoveryDocument = serde_json::from_slice(&body)
                        .map_err(|_| FetchError::new("discovery document lacks issuer/jwks_uri"))?;
                    if doc.issuer != issuer {
                        return Err(FetchError::new(format!(
                            "discovery document names issuer {:?}, expected {issuer:?}",
                            doc.issuer
                        )));
                    }
                    return check_url(&doc.jwks_uri)
                        .map_err(|e| FetchError::new(format!("jwks_uri: {e}")));
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn jwks_url(&self) -> Result<Url, FetchError> {
        if let Some(url) = self.lock().jwks_url.clone() {
            return Ok(url);
        }
        let url = match &self.source {
            JwksSource::Url(url) => check_url(url).map_err(|e| FetchError::new(e.to_string()))?,
            JwksSource::Discovery { issuer } => {
                self.discover(Self::discovery_candidates(issuer), issuer)
                    .await?
            }
            JwksSource::DiscoveryDocument { url, issuer } => {
                self.discover(vec![url.clone()], issuer).await?
            }
        };
        self.lock().jwks_url = Some(url.clone());
        Ok(url)
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let url = self.jwks_url().await?;
        let (body, headers) = self.get(&url).await?;
        let keys = KeySet::from_jwks_json(&body, self.config.max_keys)
            .map_err(|e| FetchError::new(format!("JWKS: {e}")))?;
        if keys.is_empty() {
            return Err(FetchError::new("JWKS holds no usable signature key"));
        }
        Ok((keys, ttl_from_headers(&headers, &self.config)))
    }

    /// Fetches new keys unless another caller did while this one waited, or the last
    /// attempt is more recent than the refetch interval (when `rate_limited`).
    async fn refresh(&self, rate_limited: bool) {
        let seen = self.lock().attempts;
        let _gate = self.gate.lock().await;
        let now = self.clock.now();
        {
            let mut state = self.lock();
            if state.attempts != seen {
                return;
            }
            if rate_limited
                && state
                    .last_attempt
                    .is_some_and(|last| elapsed(now, last) < self.config.refetch_interval)
            {
                return;
            }
            state.last_attempt = Some(now);
            state.attempts += 1;
        }
        let result = tokio::time::timeout(self.config.fetch_timeout, self.fetch()).await;
        let mut state = self.lock();
        match result {
            Ok(Ok((keys, ttl))) => {
                tracing::debug!(keys = keys.len(), ttl_secs = ttl.as_secs(), "JWKS fetched");
                state.keys = Some(Arc::new(keys));
                state.expires_at = now.checked_add(ttl);
                state.refresh_at = now.checked_add(ttl.mul_f64(0.8));
                state.last_error = None;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "JWKS fetch failed; keeping the last good keys");
                state.last_error = Some(error.0);
            }
            Err(_) => {
                tracing::warn!("JWKS fetch timed out; keeping the last good keys");
                state.last_error = Some("fetch timed out".into());
            }
        }
    }

    /// The current keys, unless none were ever fetched or they are staler than allowed.
    fn usable_keys(&self, now: SystemTime) -> Option<Arc<KeySet>> {
        let state = self.lock();
        let keys = state.keys.clone()?;
        match state.expires_at {
            Some(expires) if now > expires && elapsed(now, expires) > self.config.max_stale => None,
            _ => Some(keys),
        }
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.lock().expires_at.is_none_or(|expires| now >= expires)
    }

    fn unavailable(&self) -> AuthError {
        let detail = self
            .lock()
            .last_error
            .clone()
            .unwrap_or_else(|| "no keys fetched yet".into());
        AuthError::unavailable(
            "no verification keys: the issuer's JWKS could not be fetched",
            Some(Box::new(FetchError(detail))),
        )
    }
}

async fn refresher(inner: Weak<Inner>) {
    loop {
        let wait = {
            let Some(inner) = inner.upgrade() else { return };
            let now = inner.clock.now();
            let due = inner.lock().refresh_at;
            let due_in = due.map_or(Duration::ZERO, |at| {
                at.duration_since(now).unwrap_or(Duration::ZERO)
            });
            if due_in.is_zero() {
                inner.refresh(true).await;
                inner.config.refresh_check_interval
            } else {
                due_in.min(inner.config.refresh_check_interval)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

impl JwksCache {
    /// Starts a builder for `source`.
    pub fn builder(source: JwksSource) -> JwksCacheBuilder {
        JwksCacheBuilder {
            source,
            config: JwksConfig::default(),
            client: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// A cache of the JWKS at `url`, with default settings.
    pub fn from_url(url: impl Into<String>) -> Result<Self, JwtConfigError> {
        Self::builder(JwksSource::Url(url.into())).build()
    }

    /// A cache of the keys of `issuer`, found through discovery, with default settings.
    pub fn discover(issuer: impl Into<String>) -> Result<Self, JwtConfigError> {
        Self::builder(JwksSource::Discovery {
            issuer: issuer.into(),
        })
        .build()
    }

    /// Fetches the keys now, ignoring the refetch interval. On failure the last good keys stay.
    pub async fn refresh(&self) -> Result<(), AuthError> {
        self.inner.refresh(false).await;
        match self.inner.lock().last_error.clone() {
            None => Ok(()),
            Some(detail) => Err(AuthError::unavailable(
                "JWKS refresh failed",
                Some(Box::new(FetchError(detail))),
            )),
        }
    }

    /// The keys currently held, if any.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.inner.lock().keys.clone()
    }

    /// Number of fetch attempts so far (discovery and JWKS together count as one).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl KeyResolver for JwksCache {
    async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, AuthError> {
        let inner = &self.inner;
        if inner.is_expired(inner.clock.now()) {
            inner.refresh(true).await;
        }
        let Some(keys) = inner.usable_keys(inner.clock.now()) else {
            return Err(inner.unavailable());
        };
        match keys.find(kid, alg) {
            Ok(key) => return Ok(Arc::clone(key)),
            Err(TokenRejection::UnknownKey) if kid.is_some_and(|k| !keys.contains_kid(k)) => {}
            Err(rejection) => return Err(rejection.into()),
        }
        // An unknown kid: perhaps the issuer rotated. One coalesced, rate-limited refetch.
        inner.refresh(true).await;
        let Some(keys) = inner.usable_keys(inner.clock.now()) else {
            return Err(inner.unavailable());
        };
        Ok(Arc::clone(keys.find(kid, alg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        assert!(check_url("https://login.example.com").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]/jwks").is_ok());
        assert!(check_url("http://login.example.com/jwks").is_err());
        assert!(check_url("ftp://127.0.0.1/jwks").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn ttl_is_clamped() {
        let config =
            JwksConfig::default().ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600));
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, v.parse().unwrap());
            h
        };
        assert_eq!(
            ttl_from_headers(&headers("public, max-age=300"), &config),
            Duration::from_secs(300)
        );
        assert_eq!(
            ttl_from_headers(&headers("max-age=5"), &config),
            Duration::from_secs(60)
        );
        assert_eq!(
            ttl_from_headers(&headers("max-age=999999"), &config),
            Duration::from_secs(3600)
        );
        assert_eq!(
            ttl_from_headers(&headers("no-store"), &config),
            Duration::from_secs(60)
        );
        assert_eq!(
            ttl_from_headers(&headers("max-age=abc"), &config),
            Duration::from_secs(600)
        );
        assert_eq!(
            ttl_from_headers(&HeaderMap::new(), &config),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn config_is_checked() {
        let bad = JwksConfig::default().ttl_bounds(Duration::from_secs(10), Duration::from_secs(5));
        assert!(
            JwksCache::builder(JwksSource::Url("https://x.example/jwks".into()))
                .config(bad)
                .build()
                .is_err()
        );
        assert!(
            JwksCache::builder(JwksSource::Url("http://x.example/jwks".into()))
                .build()
                .is_err()
        );
    }

    #[tokio::test]
    async fn dropping_the_cache_releases_the_refresher() {
        let cache = JwksCache::builder(JwksSource::Url("http://127.0.0.1:9/jwks".into()))
            .config(JwksConfig::default().fetch_timeout(Duration::from_millis(200)))
            .build()
            .unwrap();
        let weak = Arc::downgrade(&cache.inner);
        drop(cache);
        // The background task holds only a weak reference between refreshes; once the
        // in-flight refresh (if any) ends, nothing keeps the cache alive.
        let mut released = false;
        for _ in 0..100 {
            if weak.upgrade().is_none() {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(released);
    }

    #[tokio::test]
    async fn never_fetched_is_unavailable() {
        let cache = JwksCache::builder(JwksSource::Url("http://127.0.0.1:9/jwks".into()))
            .config(
                JwksConfig::default()
                    .background_refresh(false)
                    .fetch_timeout(Duration::from_secs(2)),
            )
            .build()
            .unwrap();
        let err = cache
            .resolve(Some("k"), Algorithm::RS256)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(cache.fetch_count(), 1);
        // Within the refetch interval no new fetch is made.
        assert!(cache.resolve(Some("k"), Algorithm::RS256).await.is_err());
        assert_eq!(cache.fetch_count(), 1);
    }
}
