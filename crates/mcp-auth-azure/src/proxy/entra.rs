//! The proxy's client side towards Entra, through openidconnect: discovery (cached), the
//! authorization URL with the proxy's own PKCE, state and nonce, the code exchange with
//! ID-token validation (signature, audience, nonce, expiry, and the issuer of the token's
//! own tenant), refresh, and the on-behalf-of exchange.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_auth_core::refresh::FetchedToken;
use mcp_auth_core::{Clock, Secret};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    IdTokenFields, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use url::Url;

use super::config::EntraUpstreamConfig;
use super::error::ProxyError;
use super::oidc_http::{HttpError, OidcHttpClient};

/// How long discovery and keys are reused before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// After a signature failure, the keys are fetched again only if they are older than this.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// The placeholder in the issuer of a multi-tenant discovery document.
const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// The Entra claims of an ID token beyond the standard ones.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct EntraIdClaims {
    /// The user's object id: stable across applications (unlike `sub`).
    #[serde(default)]
    oid: Option<String>,
    /// The user's tenant.
    #[serde(default)]
    tid: Option<String>,
    /// App roles assigned to the user.
    #[serde(default)]
    roles: Vec<String>,
}

impl AdditionalClaims for EntraIdClaims {}

type EntraIdTokenFields = IdTokenFields<
    EntraIdClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type EntraTokenResponse = StandardTokenResponse<EntraIdTokenFields, CoreTokenType>;
type EntraClient = openidconnect::Client<
    EntraIdClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    EntraTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Entra's tokens for one login, kept server-side (encrypted at rest by the caller).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct EntraTokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    /// Unix seconds.
    pub(crate) expires_at: u64,
    pub(crate) scope: Vec<String>,
}

impl fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraTokens")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Who signed in, from the validated ID token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntraIdentity {
    pub(crate) oid: String,
    pub(crate) tid: String,
    pub(crate) name: Option<String>,
    pub(crate) preferred_username: Option<String>,
    pub(crate) roles: Vec<String>,
}

/// The result of a code exchange.
#[derive(Debug)]
pub(crate) struct EntraLogin {
    pub(crate) tokens: EntraTokens,
    pub(crate) identity: EntraIdentity,
}

/// What the proxy keeps between sending the user to Entra and the callback.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamChallenge {
    pub(crate) pkce_verifier: String,
    pub(crate) nonce: String,
}

impl fmt::Debug for UpstreamChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamChallenge").finish_non_exhaustive()
    }
}

struct Provider {
    client: EntraClient,
    /// The discovered issuer, possibly with the `{tenantid}` placeholder.
    issuer_template: String,
    fetched_at: Instant,
}

/// The OAuth/OIDC client of the proxy's Entra app registration.
pub(crate) struct EntraUpstream {
    config: EntraUpstreamConfig,
    redirect_uri: RedirectUrl,
    http: OidcHttpClient,
    provider: RwLock<Option<Arc<Provider>>>,
    /// The proxy's clock, for the expiry of the tokens kept.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for EntraUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraUpstream")
            .field("config", &self.config)
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// The OAuth error code of a refused token request, or the transport failure.
fn token_error(
    what: &'static str,
    error: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
) -> ProxyError {
    match error {
        RequestTokenError::ServerResponse(response) => ProxyError::UpstreamRefused {
            error: response.error().as_ref().to_owned(),
        },
        RequestTokenError::Request(error) => ProxyError::upstream(what, error),
        RequestTokenError::Parse(error, _) => ProxyError::upstream(what, error),
        RequestTokenError::Other(message) => ProxyError::upstream(what, message),
    }
}

impl EntraUpstream {
    /// An upstream for `config`, whose redirect URI (registered in Entra) is
    /// `redirect_uri`.
    pub(crate) fn new(
        config: EntraUpstreamConfig,
        redirect_uri: &str,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ProxyError> {
        let redirect_uri = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| {
            ProxyError::Config(super::error::ConfigError::new("issuer is not a URL"))
        })?;
        let http = OidcHttpClient::new(timeout)
            .map_err(|e| ProxyError::upstream("HTTP client setup failed", e))?;
        Ok(Self {
            config,
            redirect_uri,
            http,
            provider: RwLock::new(None),
            clock,
        })
    }

    /// Fetches discovery and keys. The issuer in the document is not required to equal the
    /// URL it was fetched from: for a domain tenant it holds the tenant id, for a
    /// multi-tenant app the `{tenantid}` template; ID tokens are checked against it.
    async fn discover(&self) -> Result<Arc<Provider>, ProxyError> {
        let url = self.config.discovery_url();
        let request = HttpRequest::new(Vec::new());
        let (mut parts, body) = request.into_parts();
        parts.uri = url
            .parse()
            .map_err(|e| ProxyError::upstream("discovery URL invalid", e))?;
        parts.headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let response = self
            .http
            .execute(HttpRequest::from_parts(parts, body))
            .await
            .map_err(|e| ProxyError::upstream("discovery fetch failed", e))?;
        if response.status() != http::StatusCode::OK {
            return Err(ProxyError::Upstream {
                what: "discovery answered an error status",
                source: None,
            });
        }
        let metadata: CoreProviderMetadata = serde_json::from_slice(response.body())
            .map_err(|e| ProxyError::upstream("discovery document invalid", e))?;
        let expected_host = Url::parse(self.config.cloud.authority())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let issuer = metadata.issuer().as_str().to_owned();
        // Keys and endpoints must come from the configured authority, whatever the document
        // says.
        let token_endpoint = metadata.token_endpoint().map(|t| t.as_str().to_owned());
        for endpoint in [
            Some(metadata.jwks_uri().url().as_str()),
            Some(metadata.authorization_endpoint().as_str()),
            token_endpoint.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            let host = Url::parse(endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            if host != expected_host {
                return Err(ProxyError::Upstream {
                    what: "discovery names endpoints outside the authority",
                    source: None,
                });
            }
        }
        let jwks = JsonWebKeySet::<CoreJsonWebKey>::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| ProxyError::upstream("JWKS fetch failed", e))?;
        let metadata = metadata.set_jwks(jwks);
        let client = EntraClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        Ok(Arc::new(Provider {
            client,
            issuer_template: issuer,
            fetched_at: Instant::now(),
        }))
    }

    /// The cached provider, fetched when missing, older than the TTL, or (`refresh`) when
    /// older than the refetch interval.
    async fn provider(&self, refresh: bool) -> Result<Arc<Provider>, ProxyError> {
        let stale = |p: &Provider| {
            let age = p.fetched_at.elapsed();
            age >= METADATA_TTL || (refresh && age >= REFETCH_AFTER)
        };
        if let Some(p) = self.provider.read().await.as_ref()
            && !stale(p)
        {
            return Ok(Arc::clone(p));
        }
        let mut slot = self.provider.write().await;
        if let Some(p) = slot.as_ref()
            && !stale(p)
        {
            return Ok(Arc::clone(p));
        }
        let fresh = self.discover().await?;
        *slot = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// The URL to send the user to, with the proxy's own PKCE challenge, `state` and nonce,
    /// asking for `scopes` (already prefixed, OIDC scopes included). No `resource`.
    pub(crate) async fn authorization_url(
        &self,
        state: &str,
        scopes: &[String],
    ) -> Result<(Url, UpstreamChallenge), ProxyError> {
        let provider = self.provider(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, nonce) = request.url();
        Ok((
            url,
            UpstreamChallenge {
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
            },
        ))
    }

    /// Exchanges the code from the callback and validates the ID token.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        challenge: &UpstreamChallenge,
    ) -> Result<EntraLogin, ProxyError> {
        let provider = self.provider(false).await?;
        let response = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| ProxyError::upstream("no token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(challenge.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("code exchange failed", e))?;
        let nonce = Nonce::new(challenge.nonce.clone());
        let identity = match self.verify_id_token(&provider, &response, &nonce) {
            Err(IdTokenError::Signature) => {
                // Keys may have rotated since they were fetched: fetch once more.
                let provider = self.provider(true).await?;
                self.verify_id_token(&provider, &response, &nonce)
            }
            other => other,
        }
        .map_err(|e| ProxyError::IdTokenRejected(e.to_string()))?;
        Ok(EntraLogin {
            tokens: self.tokens_of(&response, None),
            identity,
        })
    }

    fn verify_id_token(
        &self,
        provider: &Provider,
        response: &EntraTokenResponse,
        nonce: &Nonce,
    ) -> Result<EntraIdentity, IdTokenError> {
        let id_token = response.id_token().ok_or(IdTokenError::Missing)?;
        // The issuer is checked below against the token's own tenant.
        let verifier = provider
            .client
            .id_token_verifier()
            .require_issuer_match(false);
        let claims = id_token.claims(&verifier, nonce).map_err(|e| match e {
            openidconnect::ClaimsVerificationError::SignatureVerification(_) => {
                IdTokenError::Signature
            }
            other => IdTokenError::Claims(other.to_string()),
        })?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| IdTokenError::Claims(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| IdTokenError::Claims(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| IdTokenError::Claims(e.to_string()))?;
            if actual != *expected {
                return Err(IdTokenError::Claims("at_hash mismatch".into()));
            }
        }
        let extra = claims.additional_claims();
        let (Some(oid), Some(tid)) = (extra.oid.clone(), extra.tid.clone()) else {
            return Err(IdTokenError::Claims("oid or tid missing".into()));
        };
        let expected_issuer = provider.issuer_template.replace(TENANT_PLACEHOLDER, &tid);
        if claims.issuer().as_str() != expected_issuer {
            return Err(IdTokenError::Claims(format!(
                "issuer is not the issuer of tenant {tid}"
            )));
        }
        if self.config.is_multi_tenant() && !self.config.allowed_tenants.contains(&tid) {
            return Err(IdTokenError::Claims(format!("tenant {tid} is not allowed")));
        }
        Ok(EntraIdentity {
            oid,
            tid,
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            roles: extra.roles.clone(),
        })
    }

    /// Refreshes Entra's tokens with `refresh_token`; Entra may return a new refresh token,
    /// otherwise the old one is kept.
    pub(crate) async fn refresh(&self, current: &EntraTokens) -> Result<EntraTokens, ProxyError> {
        let refresh_token = current
            .refresh_token
            .as_ref()
            .ok_or(ProxyError::NoSession)?;
        let provider = self.provider(false).await?;
        let token = RefreshToken::new(refresh_token.clone());
        let response = provider
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| ProxyError::upstream("no token endpoint", e))?
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("refresh failed", e))?;
        Ok(self.tokens_of(&response, current.refresh_token.as_deref()))
    }

    /// The on-behalf-of exchange: an Entra token for `scopes` (of another resource), for
    /// the user whose access token to this app is `assertion`.
    pub(crate) async fn on_behalf_of(
        &self,
        assertion: &Secret,
        scopes: &[String],
    ) -> Result<FetchedToken, ProxyError> {
        let provider = self.provider(false).await?;
        let token_url = provider
            .client
            .token_uri()
            .ok_or(ProxyError::Upstream {
                what: "no token endpoint",
                source: None,
            })?
            .as_str()
            .to_owned();
        let scope = scopes.join(" ");
        let form: [(&str, &str); 6] = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", &self.config.client_id),
            ("client_secret", self.config.client_secret.expose()),
            ("assertion", assertion.expose()),
            ("scope", &scope),
            ("requested_token_use", "on_behalf_of"),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = http::Request::post(token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body.into_bytes())
            .map_err(|e| ProxyError::upstream("on-behalf-of request invalid", e))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| ProxyError::upstream("on-behalf-of request failed", e))?;
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(response.body())
            .map_err(|e| ProxyError::upstream("on-behalf-of answer invalid", e))?;
        match answer {
            Answer {
                access_token: Some(token),
                expires_in,
                ..
            } if response.status().is_success() => Ok(FetchedToken::new(
                token,
                self.clock.now() + Duration::from_secs(expires_in.unwrap_or(3600)),
            )),
            Answer { error, .. } => Err(ProxyError::UpstreamRefused {
                error: error.unwrap_or_else(|| response.status().as_str().to_owned()),
            }),
        }
    }
}

/// Why an ID token was refused (for logs; never shown to clients).
#[derive(Debug, thiserror::Error)]
enum IdTokenError {
    #[error("the token response has no ID token")]
    Missing,
    #[error("the ID token signature does not verify")]
    Signature,
    #[error("ID token claims rejected: {0}")]
    Claims(String),
}

impl EntraUpstream {
    /// The tokens of a token response; a response without a refresh token keeps the
    /// previous one (Entra does not always rotate it).
    fn tokens_of(
        &self,
        response: &EntraTokenResponse,
        previous_refresh: Option<&str>,
    ) -> EntraTokens {
        let expires_in = response
            .expires_in()
            .unwrap_or(Duration::from_secs(3600))
            .as_secs();
        EntraTokens {
            access_token: response.access_token().secret().clone(),
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous_refresh.map(str::to_owned)),
            expires_at: super::store::unix_secs(self.clock.now()).saturating_add(expires_in),
            scope: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        }
    }
}
