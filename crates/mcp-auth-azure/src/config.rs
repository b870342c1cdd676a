//! [`EntraConfig`]: which Entra ID tokens are accepted, deserializable from a configuration
//! file and checked by [`EntraConfig::validate`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cloud::Cloud;

/// The tenant id of personal Microsoft accounts: the `tid` of every `consumers` token.
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Default lifetime of a [`GroupResolver`](crate::GroupResolver) answer: 5 minutes.
pub const DEFAULT_GROUP_CACHE_TTL_SECS: u64 = 300;

/// The access-token format (`ver` claim); Entra picks it from the API's app manifest
/// (`accessTokenAcceptedVersion`), not from the endpoint the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TokenVersion {
    /// v1.0: `iss = https://sts.windows.net/{tid}/`, client in `appid`.
    #[serde(rename = "1.0")]
    V1,
    /// v2.0: `iss = https://login.microsoftonline.com/{tid}/v2.0`, client in `azp`.
    #[serde(rename = "2.0")]
    V2,
}

impl TokenVersion {
    /// The `ver` claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }
}

/// The tenant setting, parsed: one tenant, or a multi-tenant audience.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TenantMode {
    /// One tenant, by id (lowercase GUID).
    Single(String),
    /// Work and school accounts of any tenant (`organizations`).
    Organizations,
    /// Work, school and personal accounts (`common`).
    Common,
    /// Personal Microsoft accounts only (`consumers`; `tid` is [`MSA_TENANT_ID`]).
    Consumers,
}

impl TenantMode {
    /// Parses `organizations`, `common`, `consumers` (any case) or a tenant id (a GUID).
    /// Domain names (`contoso.onmicrosoft.com`) are refused: tokens carry the tenant id.
    pub fn parse(tenant: &str) -> Result<Self, EntraConfigError> {
        let lower = tenant.trim().to_ascii_lowercase();
        match lower.as_str() {
            "organizations" => Ok(Self::Organizations),
            "common" => Ok(Self::Common),
            "consumers" => Ok(Self::Consumers),
            id if is_guid(id) => Ok(Self::Single(lower)),
            _ => Err(EntraConfigError::new(format!(
                "tenant {tenant:?} is neither a tenant id (GUID) nor organizations, common \
                 or consumers; use the directory (tenant) id, not a domain name"
            ))),
        }
    }

    /// The path segment of the tenant's endpoints and discovery document.
    pub fn path_segment(&self) -> &str {
        match self {
            Self::Single(id) => id,
            Self::Organizations => "organizations",
            Self::Common => "common",
            Self::Consumers => "consumers",
        }
    }

    /// Whether tokens of many tenants are possible (`organizations` or `common`).
    pub fn is_multi_tenant(&self) -> bool {
        matches!(self, Self::Organizations | Self::Common)
    }
}

/// Whether `s` is a GUID in the 8-4-4-4-12 hex form (any case).
pub(crate) fn is_guid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// An invalid [`EntraConfig`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Entra configuration: {0}")]
pub struct EntraConfigError(String);

impl EntraConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Which Entra ID access tokens are accepted and how their claims become a
/// [`Principal`](mcp_auth_core::Principal).
///
/// * **Tenant**: a tenant id (single tenant), or `organizations` / `common` with an
///   [`allowed_tenants`](Self::allowed_tenants) list (multi-tenant), or `consumers`. In
///   every mode the token's `iss` must be the v1 or v2 issuer of the token's own `tid`, and
///   that `tid` must be the configured tenant or on the list. Accepting any tenant takes
///   [`allow_any_tenant_dangerously`](Self::allow_any_tenant_dangerously).
/// * **Audience**: `api://{client_id}` and `{client_id}` are always accepted (v1 tokens
///   carry the Application ID URI, v2 tokens the client id); add a custom Application ID
///   URI to [`audiences`](Self::audiences).
/// * **Claims**: `oid` is the subject (`sub` is pairwise, different per application),
///   `tid` the tenant, `roles` the roles, `scp` (space-delimited) the scopes, and `groups`
///   become roles through [`group_roles`](Self::group_roles).
///
/// In a TOML file (the gateway's `[auth.azure]` section takes these keys):
///
/// ```
/// use mcp_auth_azure::{Cloud, EntraConfig, TokenVersion};
///
/// let config: EntraConfig = toml::from_str(r#"
///     tenant = "organizations"
///     client_id = "3f1c2d3e-0000-4000-8000-000000000001"
///     allowed_tenants = ["8eaef023-2b34-4da1-9baa-8bc8c9d6a490"]
///     cloud = "us_government"
///     token_versions = ["2.0"]
///     [group_roles]
///     "5b2d1c0a-1111-4222-8333-444455556666" = ["admin"]
/// "#)?;
/// config.validate()?;
/// assert_eq!(config.cloud, Cloud::UsGovernment);
/// assert_eq!(config.token_versions, [TokenVersion::V2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EntraConfig {
    /// The directory (tenant) id, or `organizations`, `common` or `consumers`.
    pub tenant: String,
    /// The application (client) id of the API's app registration.
    pub client_id: String,
    /// Audiences accepted besides `api://{client_id}` and `{client_id}` (a custom
    /// Application ID URI such as `https://mcp.contoso.com`).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Multi-tenant mode: the tenant ids whose tokens are accepted.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Multi-tenant mode: accept tokens of every tenant. Anyone with an Entra tenant can
    /// then get a token for a multi-tenant app, so the application must authorize by
    /// tenant itself. Logged at warn level when the authenticator is built.
    #[serde(default)]
    pub allow_any_tenant_dangerously: bool,
    /// The cloud (default public).
    #[serde(default)]
    pub cloud: Cloud,
    /// Accepted token versions (default both).
    #[serde(default = "default_versions")]
    pub token_versions: Vec<TokenVersion>,
    /// Group object id -> roles for members of the group.
    #[serde(default)]
    pub group_roles: BTreeMap<String, Vec<String>>,
    /// Whether app-only tokens (client credentials: `idtyp = "app"`, or no `scp`) are
    /// accepted. Default true.
    #[serde(default = "default_true")]
    pub allow_app_only_tokens: bool,
    /// How long a [`GroupResolver`](crate::GroupResolver) answer is reused, in seconds
    /// (default 300).
    #[serde(default = "default_group_cache_ttl")]
    pub group_cache_ttl_secs: u64,
}

fn default_versions() -> Vec<TokenVersion> {
    vec![TokenVersion::V1, TokenVersion::V2]
}

fn default_true() -> bool {
    true
}

fn default_group_cache_ttl() -> u64 {
    DEFAULT_GROUP_CACHE_TTL_SECS
}

impl fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraConfig")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("audiences", &self.audiences)
            .field("allowed_tenants", &self.allowed_tenants)
            .field(
                "allow_any_tenant_dangerously",
                &self.allow_any_tenant_dangerously,
            )
            .field("cloud", &self.cloud)
            .field("token_versions", &self.token_versions)
            .field("group_roles", &self.group_roles.len())
            .field("allow_app_only_tokens", &self.allow_app_only_tokens)
            .field("group_cache_ttl_secs", &self.group_cache_ttl_secs)
            .finish()
    }
}

impl EntraConfig {
    /// Tokens of `tenant` (an id, or `organizations` / `common` / `consumers`) for the API
    /// `client_id`, on the public cloud, v1 and v2.
    pub fn new(tenant: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            client_id: client_id.into(),
            audiences: Vec::new(),
            allowed_tenants: Vec::new(),
            allow_any_tenant_dangerously: false,
            cloud: Cloud::Public,
            token_versions: default_versions(),
            group_roles: BTreeMap::new(),
            allow_app_only_tokens: true,
            group_cache_ttl_secs: DEFAULT_GROUP_CACHE_TTL_SECS,
        }
    }

    /// Accepts `audience` too.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Multi-tenant mode: accepts tokens of these tenants.
    pub fn allowed_tenants<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_tenants
            .extend(tenants.into_iter().map(Into::into));
        self
    }

    /// Multi-tenant mode: accepts tokens of every tenant (see the field's warning).
    pub fn allow_any_tenant_dangerously(mut self) -> Self {
        self.allow_any_tenant_dangerously = true;
        self
    }

    /// Sets the cloud.
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// Sets the accepted token versions.
    pub fn token_versions(mut self, versions: impl IntoIterator<Item = TokenVersion>) -> Self {
        self.token_versions = versions.into_iter().collect();
        self
    }

    /// Members of group `group` (its object id) get `roles`.
    pub fn map_group<I, S>(mut self, group: impl Into<String>, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.group_roles
            .entry(group.into())
            .or_default()
            .extend(roles.into_iter().map(Into::into));
        self
    }

    /// Accepts or refuses app-only tokens.
    pub fn allow_app_only_tokens(mut self, allow: bool) -> Self {
        self.allow_app_only_tokens = allow;
        self
    }

    /// The parsed tenant setting.
    pub fn tenant_mode(&self) -> Result<TenantMode, EntraConfigError> {
        TenantMode::parse(&self.tenant)
    }

    /// Every accepted audience: `api://{client_id}`, `{client_id}`, then
    /// [`audiences`](Self::audiences).
    pub fn accepted_audiences(&self) -> Vec<String> {
        let mut all = vec![format!("api://{}", self.client_id), self.client_id.clone()];
        for aud in &self.audiences {
            if !all.contains(aud) {
                all.push(aud.clone());
            }
        }
        all
    }

    /// Checks the configuration: tenant and client ids are GUIDs, multi-tenant mode has an
    /// allowlist or the explicit dangerous option (never both), single-tenant and
    /// `consumers` modes have neither, at least one token version, custom cloud URLs are
    /// `https` (or `http` on loopback) without a trailing slash.
    pub fn validate(&self) -> Result<(), EntraConfigError> {
        let mode = self.tenant_mode()?;
        if !is_guid(&self.client_id) {
            return Err(EntraConfigError::new(format!(
                "client_id {:?} is not an application (client) id (GUID)",
                self.client_id
            )));
        }
        if let Some(bad) = self.allowed_tenants.iter().find(|t| !is_guid(t)) {
            return Err(EntraConfigError::new(format!(
                "allowed tenant {bad:?} is not a tenant id (GUID)"
            )));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(EntraConfigError::new("empty audience"));
        }
        match (mode.is_multi_tenant(), self.allowed_tenants.is_empty()) {
            (true, true) if !self.allow_any_tenant_dangerously => {
                return Err(EntraConfigError::new(format!(
                    "tenant {:?} accepts tokens of other tenants: list them in \
                     allowed_tenants (or set allow_any_tenant_dangerously)",
                    self.tenant
                )));
            }
            (true, false) if self.allow_any_tenant_dangerously => {
                return Err(EntraConfigError::new(
                    "allowed_tenants and allow_any_tenant_dangerously exclude each other",
                ));
            }
            (false, _) if !self.allowed_tenants.is_empty() => {
                return Err(EntraConfigError::new(format!(
                    "allowed_tenants needs tenant = \"organizations\" or \"common\", not {:?}",
                    self.tenant
                )));
            }
            (false, _) if self.allow_any_tenant_dangerously => {
                return Err(EntraConfigError::new(format!(
                    "allow_any_tenant_dangerously needs tenant = \"organizations\" or \
                     \"common\", not {:?}",
                    self.tenant
                )));
            }
            _ => {}
        }
        if self.token_versions.is_empty() {
            return Err(EntraConfigError::new("token_versions is empty"));
        }
        if let Cloud::Custom(custom) = &self.cloud {
            for url in [
                &custom.authority,
                &custom.v1_issuer_base,
                &custom.v2_issuer_base,
            ] {
                check_base_url(url)?;
            }
        }
        Ok(())
    }
}

/// `https://host[/path]`, or `http` on a loopback host, without a trailing slash.
fn check_base_url(url: &str) -> Result<(), EntraConfigError> {
    let rest = match url.split_once("://") {
        Some(("https", rest)) => rest,
        Some(("http", rest)) => {
            let host = match rest.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => rest.split(['/', ':']).next().unwrap_or_default(),
            };
            if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
                return Err(EntraConfigError::new(format!(
                    "{url:?}: http is allowed for loopback hosts only"
                )));
            }
            rest
        }
        _ => {
            return Err(EntraConfigError::new(format!(
                "{url:?} is not an https URL"
            )));
        }
    };
    if rest.is_empty() || url.ends_with('/') {
        return Err(EntraConfigError::new(format!(
            "{url:?}: expected a host and no trailing slash"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "3f1c2d3e-0000-4000-8000-000000000001";
    const T1: &str = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";

    #[test]
    fn tenant_modes() {
        assert_eq!(
            TenantMode::parse("Organizations").ok(),
            Some(TenantMode::Organizations)
        );
        assert_eq!(
            TenantMode::parse(&T1.to_uppercase()).ok(),
            Some(TenantMode::Single(T1.into()))
        );
        assert!(TenantMode::parse("contoso.onmicrosoft.com").is_err());
        assert!(TenantMode::parse("").is_err());
        assert!(TenantMode::parse("8eaef023-2b34-4da1-9baa-8bc8c9d6a49g").is_err());
        assert_eq!(TenantMode::Consumers.path_segment(), "consumers");
        assert!(TenantMode::Common.is_multi_tenant() && !TenantMode::Consumers.is_multi_tenant());
    }

    #[test]
    fn validation() {
        let ok = |c: &EntraConfig| c.validate().is_ok();
        assert!(ok(&EntraConfig::new(T1, CLIENT)));
        assert!(!ok(&EntraConfig::new(T1, "my-app")));
        assert!(!ok(&EntraConfig::new("organizations", CLIENT)));
        assert!(ok(
            &EntraConfig::new("organizations", CLIENT).allowed_tenants([T1])
        ));
        assert!(ok(
            &EntraConfig::new("common", CLIENT).allow_any_tenant_dangerously()
        ));
        assert!(!ok(&EntraConfig::new("common", CLIENT)
            .allowed_tenants([T1])
            .allow_any_tenant_dangerously()));
        assert!(!ok(&EntraConfig::new(T1, CLIENT).allowed_tenants([T1])));
        assert!(!ok(
            &EntraConfig::new("consumers", CLIENT).allow_any_tenant_dangerously()
        ));
        assert!(!ok(
            &EntraConfig::new("organizations", CLIENT).allowed_tenants(["contoso"])
        ));
        assert!(!ok(&EntraConfig::new(T1, CLIENT).token_versions([])));
        assert!(!ok(&EntraConfig::new(T1, CLIENT).audience("")));
        for (url, good) in [
            ("https://login.example", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:1", true),
            ("http://[::1]:1", true),
            ("http://login.example", false),
            ("https://login.example/", false),
            ("ftp://x", false),
            ("https://", false),
        ] {
            let cloud = Cloud::Custom(crate::CustomCloud {
                authority: url.into(),
                v1_issuer_base: "https://sts.example".into(),
                v2_issuer_base: "https://login.example".into(),
            });
            assert_eq!(
                ok(&EntraConfig::new(T1, CLIENT).cloud(cloud)),
                good,
                "{url}"
            );
        }
    }

    #[test]
    fn audiences_and_defaults() {
        let c = EntraConfig::new(T1, CLIENT)
            .audience("https://mcp.contoso.com")
            .audience(CLIENT);
        assert_eq!(
            c.accepted_audiences(),
            [
                format!("api://{CLIENT}"),
                CLIENT.into(),
                "https://mcp.contoso.com".into()
            ]
        );
        let parsed: EntraConfig =
            serde_json::from_value(serde_json::json!({"tenant": T1, "client_id": CLIENT})).unwrap();
        assert_eq!(parsed, EntraConfig::new(T1, CLIENT));
        assert!(
            serde_json::from_value::<EntraConfig>(
                serde_json::json!({"tenant": T1, "client_id": CLIENT, "tenants": []})
            )
            .is_err()
        );
        assert!(!format!("{parsed:?}").is_empty());
    }
}
