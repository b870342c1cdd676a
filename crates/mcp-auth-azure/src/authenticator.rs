//! [`EntraAuthenticator`]: Entra ID access tokens -> [`Principal`], as an [`Authenticator`]
//! for mcp-auth-core's [`AuthChain`](mcp_auth_core::AuthChain).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mcp_auth_core::claims::{ClaimMapping, ClaimPath};
use mcp_auth_core::jwks::{JwksCache, JwksConfig, JwksSource};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeyResolver};
use mcp_auth_core::{
    AuthError, Authenticator, Clock, Credential, CredentialKind, Principal, RevocationStore,
    SystemClock, TokenRejection,
};
use serde_json::{Map, Value};

use crate::config::{EntraConfig, EntraConfigError, MSA_TENANT_ID, TenantMode, TokenVersion};
use crate::groups::{GroupCache, GroupResolver, has_group_overage};
use crate::issuer::EntraIssuerPolicy;

/// Whether a token acts for a user or for an application itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A delegated token: a user signed in to a client app (`scp` holds its scopes).
    Delegated,
    /// An app-only token (client credentials): the `oid` is a service principal and
    /// `roles` hold the application permissions.
    AppOnly,
}

/// The kind of an Entra token from its claims: `idtyp` decides when present (`app` or
/// `user`, an optional claim worth enabling in the app registration); otherwise a token
/// without `scp` is app-only.
///
/// ```
/// use mcp_auth_azure::{TokenKind, token_kind};
///
/// let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
/// assert_eq!(token_kind(&claims(serde_json::json!({"idtyp": "app"}))), TokenKind::AppOnly);
/// assert_eq!(token_kind(&claims(serde_json::json!({"roles": ["R"]}))), TokenKind::AppOnly);
/// assert_eq!(token_kind(&claims(serde_json::json!({"scp": "a b"}))), TokenKind::Delegated);
/// ```
pub fn token_kind(claims: &Map<String, Value>) -> TokenKind {
    match claims.get("idtyp").and_then(Value::as_str) {
        Some("app") => TokenKind::AppOnly,
        Some("user") => TokenKind::Delegated,
        _ if claims.contains_key("scp") => TokenKind::Delegated,
        _ => TokenKind::AppOnly,
    }
}

/// The kind of token a principal authenticated with (see [`token_kind`]).
pub fn principal_kind(principal: &Principal) -> TokenKind {
    token_kind(principal.claims())
}

/// The client application the token was issued to: `azp` (v2) or `appid` (v1).
pub fn client_app_id(principal: &Principal) -> Option<&str> {
    let claims = principal.claims();
    claims
        .get("azp")
        .or_else(|| claims.get("appid"))
        .and_then(Value::as_str)
}

/// The token version of a principal's token (`ver`), if it names one.
pub fn token_version(principal: &Principal) -> Option<TokenVersion> {
    match principal.claims().get("ver").and_then(Value::as_str) {
        Some("1.0") => Some(TokenVersion::V1),
        Some("2.0") => Some(TokenVersion::V2),
        _ => None,
    }
}

/// Authenticates Entra ID access tokens (`Authorization: Bearer`).
///
/// Built on mcp-auth-core's [`JwtAuthenticator`] (so the validated-token cache, the
/// revocation check and every JWT check apply) with the Entra parts:
///
/// * the issuer check of [`EntraIssuerPolicy`] (the `iss` of the token's own `tid`, `tid`
///   allowed), the accepted audiences of [`EntraConfig::accepted_audiences`];
/// * the keys from the tenant's discovery document through a [`JwksCache`] (for
///   `organizations` / `common` the shared multi-tenant document, whose issuer is the
///   `{tenantid}` template; Entra signs every tenant's tokens with the same keys);
/// * claims mapped as: `oid` -> subject, `tid` -> tenant, `roles` -> roles, `scp` ->
///   scopes, `groups` -> roles through [`EntraConfig::group_roles`];
/// * group overage resolved through a [`GroupResolver`], if one is set;
/// * app-only tokens accepted or refused ([`EntraConfig::allow_app_only_tokens`]); tell
///   them apart with [`principal_kind`].
///
/// Failures are [`AuthError::InvalidToken`] (401) with the reason for the logs; an
/// unreachable JWKS (with no cached keys) or a failing group resolver is
/// [`AuthError::Unavailable`] (503).
pub struct EntraAuthenticator {
    jwt: JwtAuthenticator,
    policy: EntraIssuerPolicy,
    jwks: Option<JwksCache>,
    groups: Option<(Arc<dyn GroupResolver>, GroupCache)>,
    group_roles: BTreeMap<String, Vec<String>>,
    allow_app_only: bool,
    overage_warned: AtomicBool,
}

impl fmt::Debug for EntraAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraAuthenticator")
            .field("jwt", &self.jwt)
            .field("policy", &self.policy)
            .field("group_resolver", &self.groups.as_ref().map(|(r, _)| r))
            .field("group_roles", &self.group_roles.len())
            .field("allow_app_only", &self.allow_app_only)
            .finish_non_exhaustive()
    }
}

/// Builds an [`EntraAuthenticator`]; see [`EntraAuthenticator::builder`].
pub struct EntraAuthenticatorBuilder {
    config: EntraConfig,
    keys: Option<Arc<dyn KeyResolver>>,
    jwks_config: JwksConfig,
    group_resolver: Option<Arc<dyn GroupResolver>>,
    clock: Arc<dyn Clock>,
    leeway: Option<Duration>,
    token_cache_capacity: Option<u64>,
    revocation: Option<Arc<dyn RevocationStore>>,
}

impl fmt::Debug for EntraAuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraAuthenticatorBuilder")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .field("jwks_config", &self.jwks_config)
            .field("group_resolver", &self.group_resolver)
            .finish_non_exhaustive()
    }
}

impl EntraAuthenticatorBuilder {
    /// Verifies with these keys instead of fetching the tenant's JWKS (tests, air-gapped
    /// set-ups with pinned keys).
    pub fn keys(mut self, keys: Arc<dyn KeyResolver>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Settings of the JWKS cache (default [`JwksConfig::default`]).
    pub fn jwks_config(mut self, config: JwksConfig) -> Self {
        self.jwks_config = config;
        self
    }

    /// Resolves the groups of overage tokens.
    pub fn group_resolver(mut self, resolver: Arc<dyn GroupResolver>) -> Self {
        self.group_resolver = Some(resolver);
        self
    }

    /// The clock for token times, the JWKS cache and the group cache (default: system).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Clock-skew leeway for `exp`, `nbf`, `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Capacity of the validated-token cache (default 10 000; 0 disables it).
    pub fn token_cache_capacity(mut self, capacity: u64) -> Self {
        self.token_cache_capacity = Some(capacity);
        self
    }

    /// Checks every principal against a revocation store.
    pub fn revocation(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// Validates the configuration and builds the authenticator. With the default key
    /// source and a Tokio runtime, the JWKS cache starts fetching in the background.
    pub fn build(self) -> Result<EntraAuthenticator, EntraConfigError> {
        let config = self.config;
        let policy = EntraIssuerPolicy::from_config(&config)?;
        let mode = config.tenant_mode()?;
        if config.allow_any_tenant_dangerously {
            tracing::warn!(
                tenant = %config.tenant,
                client_id = %config.client_id,
                "Entra tokens of ANY tenant are accepted (allow_any_tenant_dangerously): \
                 anyone with an Entra tenant can obtain such a token; authorize by tenant"
            );
        }
        let mut validator = JwtValidator::builder()
            .issuer_policy(Arc::new(policy.clone()))
            .audiences(config.accepted_audiences())
            .clock(Arc::clone(&self.clock));
        if let Some(leeway) = self.leeway {
            validator = validator.leeway(leeway);
        }
        let validator = validator
            .build()
            .map_err(|e| EntraConfigError::new(e.to_string()))?;
        let (keys, jwks): (Arc<dyn KeyResolver>, _) = match self.keys {
            Some(keys) => (keys, None),
            None => {
                let cache = JwksCache::builder(discovery_source(&config, &mode))
                    .config(self.jwks_config)
                    .clock(Arc::clone(&self.clock))
                    .build()
                    .map_err(|e| EntraConfigError::new(format!("JWKS: {e}")))?;
                (Arc::new(cache.clone()), Some(cache))
            }
        };
        let mut mapping = ClaimMapping::new()
            .subject_claims([ClaimPath::exact("oid")])
            .tenant_claims([ClaimPath::exact("tid")])
            .role_claims([ClaimPath::exact("roles")])
            .scope_claims([ClaimPath::exact("scp")])
            .group_claim(ClaimPath::exact("groups"));
        for (group, roles) in &config.group_roles {
            mapping = mapping.map_group(group.clone(), roles.iter().cloned());
        }
        let mut jwt = JwtAuthenticator::builder(validator, keys).claim_mapping(mapping);
        if let Some(capacity) = self.token_cache_capacity {
            jwt = jwt.token_cache_capacity(capacity);
        }
        if let Some(store) = self.revocation {
            jwt = jwt.revocation(store);
        }
        let ttl = Duration::from_secs(config.group_cache_ttl_secs);
        let groups = self
            .group_resolver
            .map(|resolver| (resolver, GroupCache::new(ttl, Arc::clone(&self.clock))));
        tracing::debug!(
            tenant = mode.path_segment(),
            cloud = config.cloud.authority(),
            versions = ?config.token_versions,
            "Entra authenticator ready"
        );
        Ok(EntraAuthenticator {
            jwt: jwt.build(),
            policy,
            jwks,
            groups,
            group_roles: config.group_roles,
            allow_app_only: config.allow_app_only_tokens,
            overage_warned: AtomicBool::new(false),
        })
    }
}

/// The discovery document whose JWKS holds the signing keys, and the issuer it must name.
fn discovery_source(config: &EntraConfig, mode: &TenantMode) -> JwksSource {
    let cloud = &config.cloud;
    let issuer = match mode {
        TenantMode::Single(tid) => cloud.v2_issuer(tid),
        TenantMode::Consumers => cloud.v2_issuer(MSA_TENANT_ID),
        TenantMode::Organizations | TenantMode::Common => cloud.v2_issuer("{tenantid}"),
    };
    JwksSource::DiscoveryDocument {
        url: cloud.discovery_url(mode.path_segment()),
        issuer,
    }
}

impl EntraAuthenticator {
    /// Starts a builder; [`EntraAuthenticatorBuilder::build`] validates `config`.
    ///
    /// ```
    /// use mcp_auth_azure::{EntraAuthenticator, EntraConfig};
    ///
    /// // Multi-tenant without an allowlist is refused ...
    /// let open = EntraConfig::new("organizations", "3f1c2d3e-0000-4000-8000-000000000001");
    /// assert!(EntraAuthenticator::builder(open).build().is_err());
    /// ```
    pub fn builder(config: EntraConfig) -> EntraAuthenticatorBuilder {
        EntraAuthenticatorBuilder {
            config,
            keys: None,
            jwks_config: JwksConfig::default(),
            group_resolver: None,
            clock: Arc::new(SystemClock),
            leeway: None,
            token_cache_capacity: None,
            revocation: None,
        }
    }

    /// The JWKS cache, unless keys were given with [`EntraAuthenticatorBuilder::keys`]
    /// (to warm it up with [`JwksCache::refresh`], or for health checks).
    pub fn jwks(&self) -> Option<&JwksCache> {
        self.jwks.as_ref()
    }

    /// The issuer policy.
    pub fn issuer_policy(&self) -> &EntraIssuerPolicy {
        &self.policy
    }

    /// Verifies a bearer token and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let principal = self.jwt.verify(token).await?;
        if !self.allow_app_only && principal_kind(&principal) == TokenKind::AppOnly {
            return Err(AuthError::InvalidToken(TokenRejection::MissingClaim("scp")));
        }
        if !has_group_overage(principal.claims()) {
            return Ok(principal);
        }
        let Some((resolver, cache)) = &self.groups else {
            if !self.overage_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "an Entra token carries group overage (too many groups to list) and no \
                     GroupResolver is configured: group-based roles are not granted to such \
                     users; configure a GroupResolver (Microsoft Graph) or assign app roles"
                );
            }
            tracing::debug!(subject = principal.subject(), "group overage not resolved");
            return Ok(principal);
        };
        let tenant = principal.tenant().unwrap_or_default();
        let groups = cache
            .groups(resolver.as_ref(), tenant, principal.subject())
            .await
            .map_err(|e| {
                AuthError::unavailable("the user's groups could not be resolved", Some(e))
            })?;
        let extra: BTreeSet<&String> = groups
            .iter()
            .filter_map(|g| self.group_roles.get(g))
            .flatten()
            .filter(|role| !principal.has_role(role))
            .collect();
        if extra.is_empty() {
            return Ok(principal);
        }
        Ok(with_roles(&principal, extra))
    }
}

/// `principal` with `extra` roles added.
fn with_roles(principal: &Principal, extra: BTreeSet<&String>) -> Principal {
    let mut builder = Principal::builder(principal.subject(), principal.method().clone())
        .maybe_tenant(principal.tenant().map(str::to_owned))
        .roles(principal.roles().iter().chain(extra).cloned())
        .scopes(principal.scopes().iter().cloned())
        .claims(principal.claims().clone());
    if let Some(at) = principal.expires_at() {
        builder = builder.expires_at(at);
    }
    if let Some(at) = principal.issued_at() {
        builder = builder.issued_at(at);
    }
    if let Some(jti) = principal.token_id() {
        builder = builder.token_id(jti);
    }
    builder.build()
}

#[async_trait]
impl Authenticator for EntraAuthenticator {
    fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::Bearer
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        match credential {
            Credential::Bearer(token) => self.verify(token.expose()).await,
            _ => Err(AuthError::NotAccepted),
        }
    }
}
