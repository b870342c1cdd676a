//! A local token issuer for development, demos and tests: access tokens (JWT) signed with its
//! own key pair and published as a JWKS, and refresh tokens with rotation and reuse detection.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mcp_auth_core::issuer::IssuerError> {
//! use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
//!
//! let issuer = LocalIssuer::builder("http://localhost:8080", "mcp-demo").build()?;
//! let request = IssueRequest::new("alice").tenant("acme").scopes(["mcp:tools"]);
//! let login = issuer.issue_with_refresh(&request).await?;
//!
//! // The refresh token is single-use: each refresh returns a new one.
//! let next = issuer.refresh(&login.refresh_token).await?;
//! assert_ne!(next.refresh_token, login.refresh_token);
//! // Presenting the old one again revokes the whole family.
//! assert!(issuer.refresh(&login.refresh_token).await.is_err());
//! assert!(issuer.refresh(&next.refresh_token).await.is_err());
//!
//! // Verifiers get the public keys as a JWKS.
//! assert_eq!(issuer.jwks().keys.len(), 1);
//! # Ok(())
//! # }
//! ```

mod key;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use key::{GeneratedKeyAlgorithm, SigningKey};
#[cfg(feature = "redis")]
pub use redis_store::RedisRefreshTokenStore;
pub use store::{
    Exchange, MemoryRefreshTokenStore, MemoryStoreLimits, RefreshFamily, RefreshTokenHash,
    RefreshTokenStore,
};

use crate::clock::{Clock, SystemClock};
use crate::credential::Secret;
use crate::error::BoxError;

/// Prefix of the local issuer's refresh tokens (`mcprt_<43 base64url characters>`), so
/// secret scanners can recognise them.
pub const REFRESH_TOKEN_PREFIX: &str = "mcprt_";

/// Entropy of a refresh token, in bytes.
const REFRESH_TOKEN_BYTES: usize = 32;

/// Default access-token lifetime: 15 minutes.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Default refresh-token lifetime: 30 days (renewed on each rotation, within the family).
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default absolute lifetime of a refresh-token family (one login): 90 days.
pub const DEFAULT_REFRESH_FAMILY_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Upper bound of every configured lifetime, so expiry arithmetic cannot overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// Upper bound of the refresh-token reuse grace window: it exists for lost responses and
/// retries, not to let two holders share a token.
const MAX_REUSE_GRACE: Duration = Duration::from_secs(5 * 60);

/// Claims the issuer sets itself; [`IssueRequest::claim`] cannot override them.
pub const RESERVED_CLAIMS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "tid",
    "roles",
    "scope",
    "client_id",
];

/// Why the local issuer could not be built or could not issue or refresh a token.
///
/// Messages never contain a token or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// The configuration is invalid (empty issuer or audience, zero lifetime, HMAC key).
    #[error("invalid local issuer configuration: {0}")]
    Config(&'static str),
    /// The operating system's random source failed while generating a key.
    #[error("key generation failed")]
    KeyGeneration,
    /// A configured key could not be loaded or does not fit its algorithm.
    #[error("signing key rejected")]
    Key(#[source] jsonwebtoken::errors::Error),
    /// An extra claim tried to override a claim the issuer sets ([`RESERVED_CLAIMS`]).
    #[error("claim `{0}` is set by the issuer and cannot be overridden")]
    ReservedClaim(String),
    /// Signing the token failed.
    #[error("token signing failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// The refresh token is malformed, unknown, or was forgotten.
    #[error("unknown refresh token")]
    UnknownRefreshToken,
    /// The refresh token (or its family) has expired.
    #[error("refresh token expired")]
    RefreshTokenExpired,
    /// The refresh token had already been used: its whole family is now revoked.
    #[error("refresh token reused; its family is revoked")]
    RefreshTokenReused,
    /// The refresh token belongs to a revoked family.
    #[error("refresh token family revoked")]
    RefreshFamilyRevoked,
    /// The refresh-token store failed.
    #[error("refresh token store unavailable")]
    Store(#[source] BoxError),
}

impl IssuerError {
    /// The OAuth 2.0 error code for a token endpoint response (RFC 6749 section 5.2):
    /// `invalid_grant` for a bad refresh token, `temporarily_unavailable` when the store is
    /// down, `server_error` otherwise.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::UnknownRefreshToken
            | Self::RefreshTokenExpired
            | Self::RefreshTokenReused
            | Self::RefreshFamilyRevoked => "invalid_grant",
            Self::Store(_) => "temporarily_unavailable",
            Self::Config(_)
            | Self::KeyGeneration
            | Self::Key(_)
            | Self::ReservedClaim(_)
            | Self::Signing(_) => "server_error",
        }
    }

    /// The HTTP status for a token endpoint response: 400, 503 or 500.
    pub fn status(&self) -> StatusCode {
        match self.oauth_error() {
            "invalid_grant" => StatusCode::BAD_REQUEST,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Who a token is for and what it allows: the input of [`LocalIssuer::issue`].
///
/// Tenant goes to `tid`, roles to `roles`, scopes to `scope` (space-delimited, RFC 9068),
/// the client to `client_id`; extra claims are added as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IssueRequest {
    /// The `sub` claim.
    pub subject: String,
    /// The `tid` claim, if any.
    pub tenant: Option<String>,
    /// The `roles` claim (omitted when empty).
    pub roles: Vec<String>,
    /// The `scope` claim, space-joined (omitted when empty).
    pub scopes: Vec<String>,
    /// The `client_id` claim, if any.
    pub client_id: Option<String>,
    /// Further claims; names in [`RESERVED_CLAIMS`] are refused.
    pub extra: Map<String, Value>,
}

impl IssueRequest {
    /// A request for `subject` with nothing else.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            ..Self::default()
        }
    }

    /// Sets the tenant (`tid`).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the OAuth client the token was issued to.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Adds an extra claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }
}

/// A signed access token.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessToken {
    /// The JWT.
    pub token: Secret,
    /// Its identifier (`jti`), for revocation.
    pub jti: String,
    /// Lifetime from issue (`expires_in` of the token response).
    pub expires_in: Duration,
    /// Its `exp`.
    pub expires_at: SystemTime,
}

/// An access token with the refresh token that can renew it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenPair {
    /// The access token.
    pub access: AccessToken,
    /// The single-use refresh token.
    pub refresh_token: Secret,
    /// When the refresh token expires.
    pub refresh_expires_at: SystemTime,
    /// The family the refresh token belongs to (not secret; for logs and audit).
    pub family_id: String,
    /// The scopes granted, space-joined.
    pub scope: String,
    /// What the access token says about the caller: the grant of the family, for callers
    /// that keep state of their own next to a login (keyed by a claim in
    /// [`IssueRequest::extra`], for example).
    pub grant: IssueRequest,
}

impl TokenPair {
    /// The OAuth 2.0 token response body (RFC 6749 section 5.1). It holds both tokens: send
    /// it to the client, never to a log.
    pub fn to_token_response(&self) -> Value {
        let mut body = json!({
            "access_token": self.access.token.expose(),
            "token_type": "Bearer",
            "expires_in": self.access.expires_in.as_secs(),
            "refresh_token": self.refresh_token.expose(),
        });
        if !self.scope.is_empty() {
            body["scope"] = Value::String(self.scope.clone());
        }
        body
    }
}

/// Builds a [`LocalIssuer`]; see [`LocalIssuer::builder`].
#[derive(Debug)]
pub struct LocalIssuerBuilder {
    issuer: String,
    audience: String,
    key: Option<SigningKey>,
    generate: GeneratedKeyAlgorithm,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    family_lifetime: Duration,
    reuse_grace: Duration,
    typ: Option<String>,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn RefreshTokenStore>>,
}

impl LocalIssuerBuilder {
    /// Signs with `key` instead of generating one.
    pub fn key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The algorithm of the key generated at build time when no key is given. Default EdDSA.
    pub fn generate_key(mut self, alg: GeneratedKeyAlgorithm) -> Self {
        self.generate = alg;
        self
    }

    /// Access-token lifetime. Default 15 minutes.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Refresh-token lifetime, renewed on each rotation. Default 30 days.
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl;
        self
    }

    /// Absolute lifetime of a refresh-token family (one login). Default 90 days.
    pub fn refresh_family_lifetime(mut self, lifetime: Duration) -> Self {
        self.family_lifetime = lifetime;
        self
    }

    /// How long the previous refresh token of a family may be presented again after it was
    /// exchanged, for a client whose refresh response was lost. Default zero: every second
    /// presentation is a reuse and revokes the family. A retry inside the window rotates
    /// again and supersedes the token the lost response held; see
    /// [`RefreshTokenStore::exchange_with_grace`]. At most 5 minutes.
    pub fn refresh_reuse_grace(mut self, grace: Duration) -> Self {
        self.reuse_grace = grace;
        self
    }

    /// The `typ` header of access tokens. Default `at+jwt` (RFC 9068); `None` omits it.
    pub fn token_type(mut self, typ: Option<String>) -> Self {
        self.typ = typ;
        self
    }

    /// The clock for `iat`/`exp` and refresh-token expiry. Default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The refresh-token store. Default a [`MemoryRefreshTokenStore`] with default limits.
    pub fn refresh_store(mut self, store: Arc<dyn RefreshTokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Checks the configuration, generates the key if none was given, and builds the issuer.
    pub fn build(self) -> Result<LocalIssuer, IssuerError> {
        if self.issuer.is_empty() {
            return Err(IssuerError::Config("issuer URL is empty"));
        }
        if self.audience.is_empty() {
            return Err(IssuerError::Config("audience is empty"));
        }
        if self.access_token_ttl.as_secs() == 0 {
            return Err(IssuerError::Config(
                "access-token lifetime is under one second",
            ));
        }
        if self.refresh_token_ttl.as_secs() == 0 || self.family_lifetime.as_secs() == 0 {
            return Err(IssuerError::Config(
                "refresh-token lifetime is under one second",
            ));
        }
        let longest = self
            .access_token_ttl
            .max(self.refresh_token_ttl)
            .max(self.family_lifetime);
        if longest > MAX_LIFETIME {
            return Err(IssuerError::Config("a token lifetime exceeds ten years"));
        }
        if self.reuse_grace > MAX_REUSE_GRACE {
            return Err(IssuerError::Config(
                "the refresh-token reuse grace window exceeds five minutes",
            ));
        }
        let key = match self.key {
            Some(key) => key,
            None => SigningKey::generate(self.generate)?,
        };
        let mut header = Header::new(key.algorithm());
        header.typ = self.typ;
        header.kid = Some(key.kid().to_owned());
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryRefreshTokenStore::new()));
        Ok(LocalIssuer {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                key,
                header,
                access_token_ttl: self.access_token_ttl,
                refresh_token_ttl: self.refresh_token_ttl,
                family_lifetime: self.family_lifetime,
                reuse_grace: self.reuse_grace,
                clock: self.clock,
                store,
            }),
        })
    }
}

struct Inner {
    issuer: String,
    audience: String,
    key: SigningKey,
    header: Header,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    family_lifetime: Duration,
    reuse_grace: Duration,
    clock: Arc<dyn Clock>,
    store: Arc<dyn RefreshTokenStore>,
}

/// Mints access tokens with its own key pair and manages refresh-token families.
///
/// Cheap to clone (one `Arc`). `Debug` shows the issuer, audience and `kid`, never a key or
/// a token.
#[derive(Clone)]
pub struct LocalIssuer {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("key", &self.inner.key)
            .field("access_token_ttl", &self.inner.access_token_ttl)
            .field("refresh_token_ttl", &self.inner.refresh_token_ttl)
            .field("refresh_reuse_grace", &self.inner.reuse_grace)
            .finish_non_exhaustive()
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_refresh_token() -> Secret {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(format!(
        "{REFRESH_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `token` has the shape of one of our refresh tokens (checked before any lookup).
fn is_refresh_token_shaped(token: &str) -> bool {
    token
        .strip_prefix(REFRESH_TOKEN_PREFIX)
        .filter(|rest| rest.len() <= 64)
        .and_then(|rest| URL_SAFE_NO_PAD.decode(rest).ok())
        .is_some_and(|bytes| bytes.len() == REFRESH_TOKEN_BYTES)
}

impl LocalIssuer {
    /// Starts building an issuer whose tokens carry `iss` = `issuer` and `aud` = `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> LocalIssuerBuilder {
        LocalIssuerBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            key: None,
            generate: GeneratedKeyAlgorithm::default(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            family_lifetime: DEFAULT_REFRESH_FAMILY_LIFETIME,
            reuse_grace: Duration::ZERO,
            typ: Some("at+jwt".to_owned()),
            clock: Arc::new(SystemClock),
            store: None,
        }
    }

    /// The issuer URL (`iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience (`aud` of every token).
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.algorithm()
    }

    /// The key id in the `kid` header.
    pub fn kid(&self) -> &str {
        self.inner.key.kid()
    }

    /// Access-token lifetime.
    pub fn access_token_ttl(&self) -> Duration {
        self.inner.access_token_ttl
    }

    /// The public keys as a JWK set, for a verifier's static keys or a `/jwks.json` route.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.inner.key.jwk().clone()],
        }
    }

    /// [`LocalIssuer::jwks`] as JSON.
    pub fn jwks_json(&self) -> Value {
        json!({ "keys": [self.inner.key.jwk()] })
    }

    /// The public verification key of the current signing key.
    pub fn decoding_key(&self) -> &DecodingKey {
        self.inner.key.decoding_key()
    }

    /// The signing key (its `Debug` and accessors show public parts only).
    pub fn signing_key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// Mints an access token for `request`.
    pub fn issue(&self, request: &IssueRequest) -> Result<AccessToken, IssuerError> {
        let now = self.inner.clock.now();
        self.mint(request, now)
    }

    fn mint(&self, request: &IssueRequest, now: SystemTime) -> Result<AccessToken, IssuerError> {
        if let Some(name) = request
            .extra
            .keys()
            .find(|name| RESERVED_CLAIMS.contains(&name.as_str()))
        {
            return Err(IssuerError::ReservedClaim(name.clone()));
        }
        let inner = &self.inner;
        let iat = unix_secs(now);
        let expires_in = Duration::from_secs(inner.access_token_ttl.as_secs());
        let exp = iat.saturating_add(expires_in.as_secs());
        let jti = uuid::Uuid::new_v4().to_string();
        let mut claims = Map::with_capacity(10 + request.extra.len());
        claims.insert("iss".into(), inner.issuer.clone().into());
        claims.insert("sub".into(), request.subject.clone().into());
        claims.insert("aud".into(), inner.audience.clone().into());
        claims.insert("iat".into(), iat.into());
        claims.insert("nbf".into(), iat.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("jti".into(), jti.clone().into());
        if let Some(tenant) = &request.tenant {
            claims.insert("tid".into(), tenant.clone().into());
        }
        if !request.roles.is_empty() {
            claims.insert("roles".into(), request.roles.clone().into());
        }
        if !request.scopes.is_empty() {
            claims.insert("scope".into(), request.scopes.join(" ").into());
        }
        if let Some(client_id) = &request.client_id {
            claims.insert("client_id".into(), client_id.clone().into());
        }
        for (name, value) in &request.extra {
            claims.insert(name.clone(), value.clone());
        }
        let token = jsonwebtoken::encode(&inner.header, &claims, inner.key.encoding_key())
            .map_err(IssuerError::Signing)?;
        Ok(AccessToken {
            token: Secret::new(token),
            jti,
            expires_in,
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    /// Mints an access token and starts a new refresh-token family (a login).
    pub async fn issue_with_refresh(
        &self,
        request: &IssueRequest,
    ) -> Result<TokenPair, IssuerError> {
        let now = self.inner.clock.now();
        let access = self.mint(request, now)?;
        let family = RefreshFamily {
            id: uuid::Uuid::new_v4().to_string(),
            grant: request.clone(),
            created_at: now,
            expires_at: now + self.inner.family_lifetime,
        };
        let family_id = family.id.clone();
        let refresh_token = new_refresh_token();
        let refresh_expires_at = (now + self.inner.refresh_token_ttl).min(family.expires_at);
        self.inner
            .store
            .start_family(
                family,
                RefreshTokenHash::of(refresh_token.expose()),
                refresh_expires_at,
                now,
            )
            .await
            .map_err(IssuerError::Store)?;
        Ok(TokenPair {
            access,
            refresh_token,
            refresh_expires_at,
            family_id,
            scope: request.scopes.join(" "),
            grant: request.clone(),
        })
    }

    /// Exchanges a refresh token for a new access token and a new refresh token; the
    /// presented token is used up.
    ///
    /// Presenting a token that was already used revokes its whole family and fails with
    /// [`IssuerError::RefreshTokenReused`]; every other token of the family fails afterwards
    /// with [`IssuerError::RefreshFamilyRevoked`]. The one exception is the family's previous
    /// token inside the [reuse grace window](LocalIssuerBuilder::refresh_reuse_grace).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenPair, IssuerError> {
        if !is_refresh_token_shaped(refresh_token.expose()) {
            return Err(IssuerError::UnknownRefreshToken);
        }
        let now = self.inner.clock.now();
        let next = new_refresh_token();
        let exchange = self
            .inner
            .store
            .exchange_with_grace(
                RefreshTokenHash::of(refresh_token.expose()),
                RefreshTokenHash::of(next.expose()),
                now + self.inner.refresh_token_ttl,
                now,
                self.inner.reuse_grace,
            )
            .await
            .map_err(IssuerError::Store)?;
        match exchange {
            Exchange::Rotated { family, expires_at } => {
                let access = self.mint(&family.grant, now)?;
                Ok(TokenPair {
                    access,
                    refresh_token: next,
                    refresh_expires_at: expires_at,
                    scope: family.grant.scopes.join(" "),
                    family_id: family.id,
                    grant: family.grant,
                })
            }
            Exchange::Reused { family_id } => {
                tracing::warn!(
                    family_id = %family_id,
                    "refresh token reused; refresh-token family revoked"
                );
                Err(IssuerError::RefreshTokenReused)
            }
            Exchange::Revoked { .. } => Err(IssuerError::RefreshFamilyRevoked),
            Exchange::Expired => Err(IssuerError::RefreshTokenExpired),
            Exchange::Unknown => Err(IssuerError::UnknownRefreshToken),
        }
    }

    /// Revokes the family of `refresh_token` (logout). Returns whether it was found.
    pub async fn revoke_refresh_token(&self, refresh_token: &Secret) -> Result<bool, IssuerError> {
        if !is_refresh_token_shaped(refresh_token.expose()) {
            return Ok(false);
        }
        self.inner
            .store
            .revoke_family_of(
                RefreshTokenHash::of(refresh_token.expose()),
                self.inner.clock.now(),
            )
            .await
            .map_err(IssuerError::Store)
    }
}

#[cfg(test)]
mod tests;
