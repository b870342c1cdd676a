//! # The OAuth proxy: MCP clients sign in through an Entra app registration
//!
//! Entra ID has no dynamic client registration, and an MCP client cannot know the app
//! registration in advance. The proxy stands in between: to MCP clients it is an OAuth 2.1
//! authorization server with RFC 8414 metadata, RFC 7591 registration, Client ID Metadata
//! Documents, PKCE, refresh-token rotation and RFC 7009 revocation; towards Entra it is one
//! confidential client (the app registration) using the authorization-code flow with its
//! own PKCE, state and nonce.
//!
//! ```text
//! MCP client          proxy (this module)                      Entra
//!   | /register  -----> client stored (ClientStore)
//!   | /authorize -----> checks client, redirect_uri, PKCE S256
//!   |                   consent page (once per client and browser)
//!   |                   ---- redirect with the proxy's PKCE/state/nonce ----> /authorize
//!   |                   /callback <------------------- code ------------------|
//!   |                   code exchange + ID-token check (openidconnect) ------> /token
//!   |                   Entra tokens kept server-side, AES-GCM encrypted
//!   | <---- code ------ (the proxy's own code)
//!   | /token ---------> PKCE check, then the proxy's own access token
//!   |                   (aud = the MCP resource) and rotating refresh token
//! ```
//!
//! The client never sees an Entra token. Scopes are MCP names (`mcp.tools`); towards
//! Entra they become `api://{client_id}/mcp.tools`, with `openid profile offline_access`
//! added and the RFC 8707 `resource` parameter dropped (Entra refuses it, AADSTS9010010).
//! The MCP server validates the proxy's tokens with [`OAuthProxy::authenticator`]; an
//! upstream that needs an Entra token of its own audience gets one through
//! [`OAuthProxy::on_behalf_of`].
//!
//! ## Serving it
//!
//! [`OAuthProxy::router`] holds every endpoint below the configured issuer URL and the
//! metadata at `/.well-known/oauth-authorization-server[/<issuer path>]`: merge it at the
//! root of the application, next to the protected MCP endpoint.
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use mcp_auth_azure::proxy::{EntraUpstreamConfig, OAuthProxy, OAuthProxyConfig};
//! use mcp_auth_core::{AuthLayer, Secret};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let entra = EntraUpstreamConfig::new(
//!     "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
//!     "3f1c2d3e-0000-4000-8000-000000000001",
//!     Secret::from("client secret of the app registration"),
//! );
//! let mut config = OAuthProxyConfig::new(
//!     "https://mcp.example.com",
//!     "https://mcp.example.com/mcp",
//!     entra,
//!     vec![Secret::from("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
//! );
//! config.scopes.supported = vec!["mcp.tools".into()];
//! config.scopes.default = vec!["mcp.tools".into()];
//! let proxy = OAuthProxy::builder(config).build()?;
//!
//! // The MCP endpoint accepts the proxy's tokens; its RFC 9728 metadata names the proxy.
//! let metadata = proxy.protected_resource_metadata()?;
//! let auth = AuthLayer::new(proxy.authenticator()).challenge(metadata.challenge_config());
//! let app: Router = Router::new()
//!     .route("/mcp", axum::routing::post(|| async { "an MCP server goes here" }))
//!     .route_layer(auth)
//!     .merge(metadata.router())
//!     .merge(proxy.router());
//!
//! let document = proxy.metadata();
//! assert_eq!(document["issuer"], "https://mcp.example.com");
//! assert_eq!(document["code_challenge_methods_supported"], serde_json::json!(["S256"]));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! ## State
//!
//! Registered clients live in a [`ClientStore`] (memory, Redis, SQLite, PostgreSQL);
//! sign-ins in progress, codes, consents and the encrypted Entra tokens in a
//! [`StateStore`] (memory, Redis); refresh-token families in mcp-auth-core's
//! [`RefreshTokenStore`] (memory, or its `RedisRefreshTokenStore` with the `redis`
//! feature; see [`OAuthProxyBuilder::refresh_store`]). The defaults are in memory, for one
//! replica. Several replicas need the Redis stores (the client store may also be SQL) and a
//! configured signing key ([`OAuthProxyConfig::signing_key`]); they then share every login.
//!
//! ## Security notes
//!
//! * Consent: the proxy uses one static client id towards Entra, so Entra's own consent
//!   says nothing about which MCP client gets the tokens. The proxy asks once per client
//!   and browser (a consent page with a CSRF token bound to a `SameSite=Strict` cookie,
//!   never framed), as the MCP specification requires of such proxies.
//! * Redirect URIs must match a registered one exactly, except loopback `http` URIs, where
//!   any port is accepted (RFC 8252 section 7.3). Errors about the client or its redirect
//!   URI are shown on a page, never redirected.
//! * Authorization codes are single-use; replaying one ends the login it produced.
//! * Refresh tokens rotate; presenting a used one revokes its whole family, except the
//!   previous token inside a short grace window (a lost response).
//! * A refresh re-checks the login with Entra once Entra's access token has expired: a
//!   user disabled in Entra loses access within one Entra token lifetime.

mod authorize;
mod callback;
mod clients;
mod config;
mod crypto;
mod entra;
mod error;
mod html;
mod metadata;
mod oidc_http;
mod records;
mod redirect;
mod register;
mod revoke;
mod scope;
mod ssrf;
pub mod store;
mod token;
mod upstream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use mcp_auth_core::issuer::{LocalIssuer, RefreshTokenStore, SigningKey};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
use mcp_auth_core::refresh::{FetchedToken, RefreshConfig};
use mcp_auth_core::resource::{MetadataError, ProtectedResourceMetadata};
use mcp_auth_core::revocation::{MemoryRevocationStore, RevocationStore};
use mcp_auth_core::{Authenticator, Clock, Principal, Secret, SystemClock};
use tower_http::cors::{Any, CorsLayer};

pub use config::{
    ClientMetadataDocumentConfig, DevelopmentConfig, EntraUpstreamConfig, LifetimeConfig,
    OAuthProxyConfig, ScopeConfig, SigningKeyConfig,
};
pub use error::{ConfigError, OAuthError, ProxyError};
pub use store::{
    ClientAuthMethod, ClientStore, MemoryClientStore, MemoryStateStore, RegisteredClient,
    StateStore,
};

use clients::Clients;
use crypto::TokenCipher;
use entra::EntraUpstream;
use html::Cookies;
use upstream::Upstream;

/// Time limit of one request to Entra.
const ENTRA_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest request body the proxy's endpoints read.
const MAX_BODY: usize = 64 * 1024;

/// Everything the handlers share.
pub(crate) struct Shared {
    config: OAuthProxyConfig,
    /// The issuer URL, no trailing slash.
    issuer: String,
    /// The path of the issuer URL (`""` at the root), the prefix of every endpoint.
    base_path: String,
    local: LocalIssuer,
    clients: Clients,
    state: Arc<dyn StateStore>,
    cipher: TokenCipher,
    entra: EntraUpstream,
    revocation: Arc<dyn RevocationStore>,
    clock: Arc<dyn Clock>,
    entra_authenticator: Option<Arc<dyn Authenticator>>,
    cookies: Cookies,
    validator: JwtValidator,
    keys: Arc<KeySet>,
    upstream: Upstream,
    metadata: serde_json::Value,
}

impl Shared {
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn route(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }
}

/// The OAuth proxy. Cheap to clone.
///
/// Build it with [`OAuthProxy::builder`]; serve [`OAuthProxy::router`]; validate its tokens
/// with [`OAuthProxy::authenticator`].
#[derive(Clone)]
pub struct OAuthProxy {
    shared: Arc<Shared>,
}

impl fmt::Debug for OAuthProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthProxy")
            .field("issuer", &self.shared.issuer)
            .field("resource", &self.shared.config.resource)
            .field("entra", &self.shared.entra)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuthProxy`]; see [`OAuthProxy::builder`].
pub struct OAuthProxyBuilder {
    config: OAuthProxyConfig,
    client_store: Option<Arc<dyn ClientStore>>,
    state_store: Option<Arc<dyn StateStore>>,
    refresh_store: Option<Arc<dyn RefreshTokenStore>>,
    revocation: Option<Arc<dyn RevocationStore>>,
    clock: Arc<dyn Clock>,
    entra_authenticator: Option<Arc<dyn Authenticator>>,
    refresh: RefreshConfig,
    max_refreshers: u64,
}

impl fmt::Debug for OAuthProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthProxyBuilder")
            .field("config", &self.config)
            .field("client_store", &self.client_store)
            .field("state_store", &self.state_store)
            .field("refresh_store", &self.refresh_store)
            .field("entra_authenticator", &self.entra_authenticator.is_some())
            .finish_non_exhaustive()
    }
}

impl OAuthProxyBuilder {
    /// Where registered clients live. Default a [`MemoryClientStore`].
    pub fn client_store(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.client_store = Some(store);
        self
    }

    /// Where sign-ins in progress, codes, consents and Entra tokens live. Default a
    /// [`MemoryStateStore`] on the builder's clock.
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state_store = Some(store);
        self
    }

    /// Where refresh-token families live. Default mcp-auth-core's in-memory store.
    pub fn refresh_store(mut self, store: Arc<dyn RefreshTokenStore>) -> Self {
        self.refresh_store = Some(store);
        self
    }

    /// Where revoked access tokens are recorded; give the same store to whatever else
    /// validates the proxy's tokens. Default a [`MemoryRevocationStore`].
    pub fn revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// The clock of token lifetimes and expiry checks. Default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Authenticates Entra's access token at sign-in (an
    /// [`EntraAuthenticator`](crate::EntraAuthenticator) for the app, or any
    /// [`Authenticator`]) and takes the subject, tenant, roles and scopes of
    /// the proxy's tokens from the principal it returns, so a proxied login and a direct
    /// Entra token map to the same principal. Without one they come from the ID token
    /// (`oid`, `tid`, `roles`) and the scopes Entra granted.
    pub fn entra_authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.entra_authenticator = Some(authenticator);
        self
    }

    /// Timing of the background refresh of Entra tokens. Default mcp-auth-core's.
    pub fn upstream_refresh(mut self, config: RefreshConfig) -> Self {
        self.refresh = config;
        self
    }

    /// Most logins whose Entra tokens are kept fresh in the background at once (each one
    /// stops after 30 minutes without use). Default 10 000.
    pub fn max_upstream_refreshers(mut self, max: u64) -> Self {
        self.max_refreshers = max.max(1);
        self
    }

    /// Checks the configuration and builds the proxy.
    pub fn build(self) -> Result<OAuthProxy, ProxyError> {
        let config = self.config;
        config.validate()?;
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        let issuer_url = url::Url::parse(&issuer)
            .map_err(|_| ConfigError::new("issuer is not an absolute URL"))?;
        let base_path = issuer_url.path().trim_end_matches('/').to_owned();
        let lifetimes = &config.lifetimes;

        let refresh_store = self
            .refresh_store
            .unwrap_or_else(|| Arc::new(mcp_auth_core::issuer::MemoryRefreshTokenStore::new()));
        let mut local = LocalIssuer::builder(issuer.clone(), config.resource.clone())
            .access_token_ttl(lifetimes.access_token())
            .refresh_token_ttl(lifetimes.refresh_token())
            .refresh_family_lifetime(lifetimes.refresh_family())
            .refresh_reuse_grace(lifetimes.refresh_reuse_grace())
            .clock(Arc::clone(&self.clock))
            .refresh_store(refresh_store);
        if let Some(key) = &config.signing_key {
            let alg: jsonwebtoken::Algorithm = key
                .algorithm
                .parse()
                .map_err(|_| ConfigError::new("signing_key.algorithm is unknown"))?;
            let mut signing = SigningKey::from_pem(alg, key.pem.expose().as_bytes())
                .map_err(ProxyError::Issuer)?;
            if let Some(kid) = &key.kid {
                signing = signing.with_kid(kid.clone());
            }
            local = local.key(signing);
        }
        let local = local.build().map_err(ProxyError::Issuer)?;

        let validator = JwtValidator::builder()
            .issuer(issuer.clone())
            .audience(config.resource.clone())
            .algorithms([local.algorithm()])
            .clock(Arc::clone(&self.clock))
            .build()
            .map_err(|_| ConfigError::new("token validator setup failed"))?;
        let keys = Arc::new(KeySet::from_jwk_set(&local.jwks(), 4));

        let client_store = self
            .client_store
            .unwrap_or_else(|| Arc::new(MemoryClientStore::new()));
        let clients = Clients::new(
            client_store,
            &config.client_id_metadata_documents,
            config.development.dangerous_allow_private_client_metadata,
        )?;
        let state = self.state_store.unwrap_or_else(|| {
            Arc::new(MemoryStateStore::new().with_clock(Arc::clone(&self.clock)))
        });
        let cipher = TokenCipher::new(&config.token_encryption_keys)?;
        let entra = EntraUpstream::new(
            config.entra.clone(),
            &format!("{issuer}/callback"),
            ENTRA_TIMEOUT,
            Arc::clone(&self.clock),
        )?;
        let revocation = self
            .revocation
            .unwrap_or_else(|| Arc::new(MemoryRevocationStore::new()));
        let cookies = Cookies::new(issuer_url.scheme() == "https");
        let upstream = Upstream::new(self.refresh, self.max_refreshers);

        let mut shared = Shared {
            metadata: serde_json::Value::Null,
            issuer,
            base_path,
            local,
            clients,
            state,
            cipher,
            entra,
            revocation,
            clock: self.clock,
            entra_authenticator: self.entra_authenticator,
            cookies,
            validator,
            keys,
            upstream,
            config,
        };
        shared.metadata = metadata::document(&shared);
        Ok(OAuthProxy {
            shared: Arc::new(shared),
        })
    }
}

impl OAuthProxy {
    /// Starts building a proxy from `config`.
    pub fn builder(config: OAuthProxyConfig) -> OAuthProxyBuilder {
        OAuthProxyBuilder {
            config,
            client_store: None,
            state_store: None,
            refresh_store: None,
            revocation: None,
            clock: Arc::new(SystemClock),
            entra_authenticator: None,
            refresh: RefreshConfig::default(),
            max_refreshers: 10_000,
        }
    }

    /// The proxy's endpoints: `{issuer}/authorize`, `/consent`, `/callback`, `/token`,
    /// `/register`, `/revoke`, `/jwks.json`, and the RFC 8414 metadata at
    /// `/.well-known/oauth-authorization-server` plus the issuer's path. Merge it at the
    /// root of the application, outside any authentication layer.
    pub fn router(&self) -> Router {
        let s = &self.shared;
        // Browser-based clients call these from other origins; none of them uses cookies.
        let cors = CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([http::Method::GET, http::Method::POST])
            .allow_headers([http::header::CONTENT_TYPE, http::header::AUTHORIZATION]);
        let api = Router::new()
            .route(&s.route("/token"), post(token::token))
            .route(&s.route("/register"), post(register::register))
            .route(&s.route("/revoke"), post(revoke::revoke))
            .route(&s.route("/jwks.json"), get(metadata::jwks))
            .route(
                &format!("{}{}", metadata::WELL_KNOWN, s.base_path),
                get(metadata::metadata),
            )
            .layer(cors);
        let browser = Router::new()
            .route(&s.route("/authorize"), get(authorize::authorize))
            .route(&s.route("/consent"), post(authorize::consent))
            .route(&s.route("/callback"), get(callback::callback));
        api.merge(browser)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::clone(&self.shared))
    }

    /// The RFC 8414 authorization-server metadata document.
    pub fn metadata(&self) -> serde_json::Value {
        self.shared.metadata.clone()
    }

    /// The issuer URL.
    pub fn issuer_url(&self) -> &str {
        &self.shared.issuer
    }

    /// The RFC 9728 metadata of the MCP resource, naming the proxy as its authorization
    /// server and listing the supported scopes.
    pub fn protected_resource_metadata(&self) -> Result<ProtectedResourceMetadata, MetadataError> {
        ProtectedResourceMetadata::builder(self.shared.config.resource.clone())
            .authorization_server(self.shared.issuer.clone())
            .scopes_supported(self.shared.config.scopes.supported.iter().cloned())
            .build()
    }

    /// An authenticator for the proxy's access tokens: its issuer, the MCP resource as
    /// audience, its keys, and its revocation store (access tokens revoked at `/revoke`
    /// fail at once).
    pub fn authenticator(&self) -> JwtAuthenticator {
        let s = &self.shared;
        JwtAuthenticator::builder(s.validator.clone(), Arc::clone(&s.keys) as _)
            .revocation(Arc::clone(&s.revocation))
            .build()
    }

    /// The local issuer that signs the proxy's tokens (its JWKS, algorithm, lifetimes).
    pub fn token_issuer(&self) -> &LocalIssuer {
        &self.shared.local
    }

    /// The Entra access token (audience: this app) of the login behind `principal`, a
    /// principal authenticated from one of the proxy's access tokens. It is refreshed in
    /// the background while it keeps being asked for. Never forward it to an upstream
    /// server as it is: use [`OAuthProxy::on_behalf_of`] for a token of the upstream's own
    /// audience.
    pub async fn entra_token(&self, principal: &Principal) -> Result<Secret, ProxyError> {
        upstream::entra_token(&self.shared, principal).await
    }

    /// The on-behalf-of exchange: an Entra token for `scopes` of another resource (for
    /// example `api://downstream/.default`), for the user behind `principal`. Results are
    /// cached until shortly before they expire.
    pub async fn on_behalf_of(
        &self,
        principal: &Principal,
        scopes: &[String],
    ) -> Result<FetchedToken, ProxyError> {
        upstream::on_behalf_of(&self.shared, principal, scopes).await
    }
}
