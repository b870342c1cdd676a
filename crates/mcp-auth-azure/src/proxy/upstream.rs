//! The Entra side of proxied logins after sign-in: Entra's tokens kept fresh in the
//! background by mcp-auth-core's [`TokenRefresher`], and the on-behalf-of exchange for
//! upstreams that need an Entra token of their own audience.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use mcp_auth_core::refresh::{FetchedToken, RefreshConfig, TokenRefresher, TokenSource};
use mcp_auth_core::{AuthMethod, Principal, Secret};
use serde_json::Value;
use tokio::sync::Mutex;

use super::Shared;
use super::entra::EntraTokens;
use super::error::ProxyError;
use super::records::{self, UpstreamSession, key, sha256_hex};
use super::store::unix_secs;

/// A background refresher stops after this long without a reader.
const REFRESHER_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a caller waits for the first token of a new refresher.
const FIRST_TOKEN_WAIT: Duration = Duration::from_secs(20);
/// An on-behalf-of token is reused until this long (at most half its lifetime) before it
/// expires.
const OBO_MARGIN: Duration = Duration::from_secs(120);
/// Most on-behalf-of tokens cached.
const OBO_CAPACITY: u64 = 10_000;

/// The refreshers and the on-behalf-of cache.
pub(crate) struct Upstream {
    refresh: RefreshConfig,
    refreshers: moka::sync::Cache<String, Arc<TokenRefresher>>,
    /// On-behalf-of tokens by login and scopes, with the time until which they are reused.
    obo: moka::sync::Cache<String, (FetchedToken, SystemTime)>,
    /// Serializes starting refreshers, so one login never gets two.
    starting: Mutex<()>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("refreshers", &self.refreshers.entry_count())
            .field("obo_cached", &self.obo.entry_count())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub(crate) fn new(refresh: RefreshConfig, max_refreshers: u64) -> Self {
        Self {
            refresh,
            refreshers: moka::sync::Cache::builder()
                .max_capacity(max_refreshers)
                .time_to_idle(REFRESHER_IDLE)
                .build(),
            obo: moka::sync::Cache::builder()
                .max_capacity(OBO_CAPACITY)
                .time_to_live(Duration::from_secs(3600))
                .support_invalidation_closures()
                .build(),
            starting: Mutex::new(()),
        }
    }

    /// Stops refreshing a login and drops its cached on-behalf-of tokens.
    pub(crate) fn forget(&self, sid: &str) {
        self.refreshers.invalidate(sid);
        let prefix = format!("{sid}\n");
        if let Err(error) = self
            .obo
            .invalidate_entries_if(move |k, _| k.starts_with(&prefix))
        {
            tracing::debug!(%error, "on-behalf-of cache not cleared");
        }
    }
}

/// Seals `tokens` back into the login's session.
pub(crate) async fn save_tokens(
    shared: &Shared,
    sid: &str,
    mut session: UpstreamSession,
    tokens: &EntraTokens,
) -> Result<(), ProxyError> {
    let session_key = key::session(sid);
    let plain = serde_json::to_vec(tokens).map_err(|e| ProxyError::store("token encode", e))?;
    session.sealed_tokens = shared.cipher.seal(&session_key, &plain)?;
    let now = unix_secs(shared.clock.now());
    let ttl = Duration::from_secs(session.ends_at.saturating_sub(now));
    if ttl.is_zero() {
        return Err(ProxyError::NoSession);
    }
    records::put(shared.state.as_ref(), &session_key, &session, ttl).await
}

/// The login (`sid`) of a principal authenticated from one of the proxy's tokens.
fn login_of(shared: &Shared, principal: &Principal) -> Result<String, ProxyError> {
    let ours = matches!(principal.method(), AuthMethod::Jwt { issuer } if *issuer == shared.issuer);
    let sid = principal.claims().get("sid").and_then(Value::as_str);
    match sid {
        Some(sid) if ours && !sid.is_empty() => Ok(sid.to_owned()),
        _ => Err(ProxyError::NoSession),
    }
}

async fn load(shared: &Shared, sid: &str) -> Result<(UpstreamSession, EntraTokens), ProxyError> {
    let session_key = key::session(sid);
    let session: UpstreamSession = records::get(shared.state.as_ref(), &session_key)
        .await?
        .ok_or(ProxyError::NoSession)?;
    let plain = shared.cipher.open(&session_key, &session.sealed_tokens)?;
    let tokens = serde_json::from_slice(&plain).map_err(|_| ProxyError::Crypto)?;
    Ok((session, tokens))
}

/// Where a login's refresher gets tokens: the stored one at first, Entra afterwards.
struct SessionSource {
    shared: Weak<Shared>,
    sid: String,
    first: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl TokenSource for SessionSource {
    type Error = ProxyError;

    async fn fetch(&self) -> Result<FetchedToken, ProxyError> {
        let shared = self.shared.upgrade().ok_or(ProxyError::NoSession)?;
        let (session, tokens) = load(&shared, &self.sid).await?;
        let now = unix_secs(shared.clock.now());
        // The first fetch serves the stored token while it is valid; every later fetch is
        // the refresher asking for a new one, so it goes to Entra.
        let first = self.first.swap(false, std::sync::atomic::Ordering::Relaxed);
        let tokens = if first && tokens.expires_at > now {
            tokens
        } else {
            match shared.entra.refresh(&tokens).await {
                Ok(fresh) => {
                    save_tokens(&shared, &self.sid, session, &fresh).await?;
                    fresh
                }
                Err(error @ ProxyError::UpstreamRefused { .. }) => {
                    tracing::info!(%error, "Entra refused to refresh a login; its session ends");
                    super::token::end_session(&shared, &self.sid).await?;
                    return Err(error);
                }
                Err(error) => return Err(error),
            }
        };
        Ok(FetchedToken::new(
            tokens.access_token,
            UNIX_EPOCH + Duration::from_secs(tokens.expires_at),
        ))
    }
}

/// The current Entra access token of `principal`'s login, from its background refresher
/// (started on first use).
pub(crate) async fn entra_token(
    shared: &Arc<Shared>,
    principal: &Principal,
) -> Result<Secret, ProxyError> {
    let sid = login_of(shared, principal)?;
    if let Some(refresher) = shared.upstream.refreshers.get(&sid)
        && let Some(token) = refresher.current()
    {
        return Ok(token);
    }
    // The session must exist and belong to this user before anything is started.
    let (session, _) = load(shared, &sid).await?;
    if session.subject != principal.subject() {
        tracing::warn!("a proxy token names a login of another subject");
        return Err(ProxyError::NoSession);
    }
    let handle = {
        let _starting = shared.upstream.starting.lock().await;
        match shared.upstream.refreshers.get(&sid) {
            Some(refresher) => refresher.handle(),
            None => {
                let source = SessionSource {
                    shared: Arc::downgrade(shared),
                    sid: sid.clone(),
                    first: std::sync::atomic::AtomicBool::new(true),
                };
                let refresher = TokenRefresher::spawn_with_clock(
                    source,
                    shared.upstream.refresh.clone(),
                    Arc::clone(&shared.clock),
                )
                .map_err(|e| ProxyError::upstream("token refresher could not start", e))?;
                let handle = refresher.handle();
                shared
                    .upstream
                    .refreshers
                    .insert(sid.clone(), Arc::new(refresher));
                handle
            }
        }
    };
    match tokio::time::timeout(FIRST_TOKEN_WAIT, handle.wait_for_token()).await {
        Ok(Some(token)) => Ok(token),
        Ok(None) | Err(_) => {
            shared.upstream.forget(&sid);
            Err(ProxyError::NoSession)
        }
    }
}

/// An Entra token for `scopes` of another resource, on behalf of `principal`'s user.
pub(crate) async fn on_behalf_of(
    shared: &Arc<Shared>,
    principal: &Principal,
    scopes: &[String],
) -> Result<FetchedToken, ProxyError> {
    let sid = login_of(shared, principal)?;
    let cache_key = format!("{sid}\n{}", sha256_hex(&scopes.join(" ")));
    let now = shared.clock.now();
    if let Some((cached, reuse_until)) = shared.upstream.obo.get(&cache_key)
        && reuse_until > now
    {
        return Ok(cached);
    }
    let assertion = entra_token(shared, principal).await?;
    let token = shared.entra.on_behalf_of(&assertion, scopes).await?;
    let lifetime = token.expires_at.duration_since(now).unwrap_or_default();
    let reuse_until = token.expires_at - OBO_MARGIN.min(lifetime / 2);
    shared
        .upstream
        .obo
        .insert(cache_key, (token.clone(), reuse_until));
    Ok(token)
}
