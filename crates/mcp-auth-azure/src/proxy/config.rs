//! [`OAuthProxyConfig`]: the proxy's settings, deserializable from the gateway's
//! configuration file, checked by [`OAuthProxyConfig::validate`].

use std::fmt;
use std::time::Duration;

use mcp_auth_core::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::error::ConfigError;
use crate::Cloud;

/// Tenant names that mean "any tenant of a kind" instead of one tenant.
const MULTI_TENANT_NAMES: [&str; 3] = ["organizations", "common", "consumers"];

/// Everything the OAuth proxy needs to know, in a form a configuration file can hold.
///
/// Durations are whole seconds (`*_secs`). Secrets (`entra.client_secret`,
/// `token_encryption_keys`, `signing_key.pem`) never appear in `Debug` output or when the
/// configuration is serialized back.
///
/// ```
/// use mcp_auth_azure::proxy::OAuthProxyConfig;
///
/// let config: OAuthProxyConfig = serde_json::from_value(serde_json::json!({
///     "issuer": "https://mcp.example.com",
///     "resource": "https://mcp.example.com/mcp",
///     "entra": {
///         "tenant": "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
///         "client_id": "3f1c2d3e-0000-4000-8000-000000000001",
///         "client_secret": "from-the-app-registration"
///     },
///     "scopes": {"supported": ["tools.read", "tools.call"], "default": ["tools.call"]},
///     "token_encryption_keys": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
/// }))?;
/// config.validate()?;
/// assert_eq!(config.lifetimes.access_token_secs, 900);
/// assert!(!format!("{config:?}").contains("from-the-app-registration"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OAuthProxyConfig {
    /// The proxy's public base URL: the `issuer` of its metadata and tokens. Its endpoints
    /// live below it (`{issuer}/authorize`, `{issuer}/token`, ...), and `{issuer}/callback`
    /// is the redirect URI to register in Entra. `https`, or `http` for a loopback host.
    pub issuer: String,
    /// The MCP resource the proxy's access tokens are for (their `aud`, RFC 8707): the
    /// public URL of the MCP endpoint.
    pub resource: String,
    /// The Entra app registration the proxy signs users in with.
    pub entra: EntraUpstreamConfig,
    /// The scopes MCP clients may ask for.
    #[serde(default)]
    pub scopes: ScopeConfig,
    /// Token, code and record lifetimes.
    #[serde(default)]
    pub lifetimes: LifetimeConfig,
    /// AES-256-GCM keys (32 bytes, base64url or standard base64) that encrypt the Entra
    /// tokens the proxy keeps. The first encrypts; all decrypt, so a new key goes first and
    /// an old one stays until the records it sealed have expired.
    #[serde(with = "secret_list")]
    pub token_encryption_keys: Vec<Secret>,
    /// The key the proxy signs its access tokens with. Without one a key is generated at
    /// start-up, which suits a single replica only (tokens die with the process).
    #[serde(default)]
    pub signing_key: Option<SigningKeyConfig>,
    /// Client ID Metadata Documents (URL client ids).
    #[serde(default)]
    pub client_id_metadata_documents: ClientMetadataDocumentConfig,
    /// Relaxations for local development. Off by default; never enable them in production.
    #[serde(default)]
    pub development: DevelopmentConfig,
}

/// The Entra side: the app registration and its tenant.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EntraUpstreamConfig {
    /// The cloud: public (the default), US Government, China, or a custom authority.
    #[serde(default)]
    pub cloud: Cloud,
    /// The tenant id (a GUID) or a verified domain; or `organizations` / `common` for a
    /// multi-tenant app, which then needs [`allowed_tenants`](Self::allowed_tenants).
    pub tenant: String,
    /// In multi-tenant mode, the tenant ids whose users may sign in. An ID token's `iss`
    /// must also be the issuer of its own `tid`.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// A client secret of the app registration.
    #[serde(with = "secret")]
    pub client_secret: Secret,
    /// The prefix that turns an MCP scope into an Entra scope. Default `api://{client_id}/`
    /// (the default Application ID URI).
    #[serde(default)]
    pub scope_prefix: Option<String>,
}

impl fmt::Debug for EntraUpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraUpstreamConfig")
            .field("cloud", &self.cloud)
            .field("tenant", &self.tenant)
            .field("allowed_tenants", &self.allowed_tenants)
            .field("client_id", &self.client_id)
            .field("scope_prefix", &self.scope_prefix)
            .finish_non_exhaustive()
    }
}

impl EntraUpstreamConfig {
    /// A configuration for `tenant` and the app `client_id` with its `client_secret`, on
    /// the public cloud.
    pub fn new(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            cloud: Cloud::Public,
            tenant: tenant.into(),
            allowed_tenants: Vec::new(),
            client_id: client_id.into(),
            client_secret,
            scope_prefix: None,
        }
    }

    /// Whether the tenant is `organizations`, `common` or `consumers`.
    pub fn is_multi_tenant(&self) -> bool {
        MULTI_TENANT_NAMES.contains(&self.tenant.to_ascii_lowercase().as_str())
    }

    /// The v2.0 discovery document of the configured tenant.
    pub fn discovery_url(&self) -> String {
        self.cloud.discovery_url(&self.tenant)
    }

    /// The prefix of Entra scopes.
    pub fn scope_prefix(&self) -> String {
        self.scope_prefix
            .clone()
            .unwrap_or_else(|| format!("api://{}/", self.client_id))
    }
}

/// Which scopes MCP clients may ask for, by their MCP names (without the Entra prefix).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScopeConfig {
    /// The scopes clients may request (advertised as `scopes_supported`). Each must be a
    /// scope the app registration exposes under its Application ID URI.
    #[serde(default)]
    pub supported: Vec<String>,
    /// The scopes asked for when a client asks for none. Must be a subset of `supported`;
    /// Entra issues no access token for the app without at least one of them.
    #[serde(default)]
    pub default: Vec<String>,
}

/// Lifetimes, in seconds. The defaults suit interactive MCP clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LifetimeConfig {
    /// The proxy's access tokens. Default 900 (15 minutes).
    pub access_token_secs: u64,
    /// A refresh token, renewed at each rotation. Default 1 209 600 (14 days).
    pub refresh_token_secs: u64,
    /// A login (refresh-token family) at most, however often it is refreshed; also how long
    /// the Entra tokens of the login are kept. Default 7 776 000 (90 days).
    pub refresh_family_secs: u64,
    /// How long the previous refresh token may be presented again after a rotation (a lost
    /// response). Default 30; at most 300; 0 turns it off.
    pub refresh_reuse_grace_secs: u64,
    /// The proxy's authorization codes. Default 60; at most 600.
    pub authorization_code_secs: u64,
    /// A sign-in in progress (consent page, Entra login). Default 600.
    pub pending_authorization_secs: u64,
    /// How long a consent is remembered for a client in one browser. Default 31 536 000
    /// (365 days).
    pub consent_secs: u64,
    /// How long a dynamically registered client stays registered; 0 keeps it forever.
    /// Default 7 776 000 (90 days).
    pub client_registration_secs: u64,
}

impl Default for LifetimeConfig {
    fn default() -> Self {
        Self {
            access_token_secs: 900,
            refresh_token_secs: 14 * 24 * 3600,
            refresh_family_secs: 90 * 24 * 3600,
            refresh_reuse_grace_secs: 30,
            authorization_code_secs: 60,
            pending_authorization_secs: 600,
            consent_secs: 365 * 24 * 3600,
            client_registration_secs: 90 * 24 * 3600,
        }
    }
}

impl LifetimeConfig {
    pub(crate) fn access_token(&self) -> Duration {
        Duration::from_secs(self.access_token_secs)
    }
    pub(crate) fn refresh_token(&self) -> Duration {
        Duration::from_secs(self.refresh_token_secs)
    }
    pub(crate) fn refresh_family(&self) -> Duration {
        Duration::from_secs(self.refresh_family_secs)
    }
    pub(crate) fn refresh_reuse_grace(&self) -> Duration {
        Duration::from_secs(self.refresh_reuse_grace_secs)
    }
    pub(crate) fn authorization_code(&self) -> Duration {
        Duration::from_secs(self.authorization_code_secs)
    }
    pub(crate) fn pending_authorization(&self) -> Duration {
        Duration::from_secs(self.pending_authorization_secs)
    }
    pub(crate) fn consent(&self) -> Duration {
        Duration::from_secs(self.consent_secs)
    }
    pub(crate) fn client_registration(&self) -> Option<Duration> {
        (self.client_registration_secs > 0)
            .then(|| Duration::from_secs(self.client_registration_secs))
    }
}

/// A PEM private key for the proxy's access tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SigningKeyConfig {
    /// The JWS algorithm: `EdDSA`, `ES256`, `ES384`, `RS256`, `PS256`, ...
    pub algorithm: String,
    /// The PKCS#8 private key in PEM form.
    #[serde(with = "secret")]
    pub pem: Secret,
    /// The `kid`; default the RFC 7638 thumbprint of the public key.
    #[serde(default)]
    pub kid: Option<String>,
}

impl SigningKeyConfig {
    /// A key for JWS `algorithm` from a PKCS#8 PEM, with the thumbprint as `kid`.
    pub fn new(algorithm: impl Into<String>, pem: Secret) -> Self {
        Self {
            algorithm: algorithm.into(),
            pem,
            kid: None,
        }
    }
}

impl fmt::Debug for SigningKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyConfig")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Client ID Metadata Documents: a client id that is an `https` URL names a JSON document
/// describing the client, fetched by the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClientMetadataDocumentConfig {
    /// Whether URL client ids are accepted (and `client_id_metadata_document_supported`
    /// advertised). Default true.
    pub enabled: bool,
    /// Largest document accepted, in bytes. Default 16 384.
    pub max_bytes: usize,
    /// Time limit of one fetch, connection included, in milliseconds. Default 5 000.
    pub timeout_ms: u64,
    /// How long a fetched document is reused. Default 300.
    pub cache_secs: u64,
    /// Most documents cached. Default 1 000.
    pub cache_capacity: u64,
}

impl Default for ClientMetadataDocumentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 16 * 1024,
            timeout_ms: 5_000,
            cache_secs: 300,
            cache_capacity: 1_000,
        }
    }
}

/// Relaxations for development on one machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DevelopmentConfig {
    /// Fetch Client ID Metadata Documents over `http` and from loopback and private
    /// addresses. Dangerous: it lets anyone who can register a client id make the proxy
    /// call into its own network.
    pub dangerous_allow_private_client_metadata: bool,
}

impl OAuthProxyConfig {
    /// A configuration with the defaults for everything optional.
    pub fn new(
        issuer: impl Into<String>,
        resource: impl Into<String>,
        entra: EntraUpstreamConfig,
        token_encryption_keys: Vec<Secret>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            resource: resource.into(),
            entra,
            scopes: ScopeConfig::default(),
            lifetimes: LifetimeConfig::default(),
            token_encryption_keys,
            signing_key: None,
            client_id_metadata_documents: ClientMetadataDocumentConfig::default(),
            development: DevelopmentConfig::default(),
        }
    }

    /// Checks the configuration: URLs, tenant settings, scopes, lifetimes and keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = check_base_url("issuer", &self.issuer)?;
        if issuer.path().ends_with('/') && issuer.path() != "/" {
            return Err(ConfigError::new("issuer must not end with '/'"));
        }
        check_base_url("resource", &self.resource)?;
        check_base_url("entra.cloud authority", self.entra.cloud.authority())?;
        let entra = &self.entra;
        if entra.tenant.is_empty() || !entra.tenant.bytes().all(is_tenant_byte) {
            return Err(ConfigError::new(
                "entra.tenant must be a tenant id, a domain, `organizations` or `common`",
            ));
        }
        if entra.is_multi_tenant() && entra.allowed_tenants.is_empty() {
            return Err(ConfigError::new(
                "a multi-tenant entra.tenant needs entra.allowed_tenants",
            ));
        }
        if entra.client_id.is_empty() || !entra.client_id.bytes().all(is_tenant_byte) {
            return Err(ConfigError::new("entra.client_id is empty or malformed"));
        }
        if entra.client_secret.is_empty() {
            return Err(ConfigError::new("entra.client_secret is empty"));
        }
        for scope in self.scopes.supported.iter().chain(&self.scopes.default) {
            if !super::scope::is_scope_token(scope) {
                return Err(ConfigError::new(format!(
                    "scope {scope:?} is not a scope token"
                )));
            }
            if super::scope::is_oidc_scope(scope) {
                return Err(ConfigError::new(format!(
                    "scope {scope:?} is added by the proxy itself; list only the API's scopes"
                )));
            }
        }
        if let Some(missing) = self
            .scopes
            .default
            .iter()
            .find(|s| !self.scopes.supported.contains(s))
        {
            return Err(ConfigError::new(format!(
                "default scope {missing:?} is not in scopes.supported"
            )));
        }
        let l = &self.lifetimes;
        if [
            l.access_token_secs,
            l.refresh_token_secs,
            l.refresh_family_secs,
            l.authorization_code_secs,
            l.pending_authorization_secs,
            l.consent_secs,
        ]
        .contains(&0)
        {
            return Err(ConfigError::new("a lifetime is zero"));
        }
        if l.authorization_code_secs > 600 {
            return Err(ConfigError::new(
                "authorization codes may live at most 600 seconds",
            ));
        }
        if l.refresh_reuse_grace_secs > 300 {
            return Err(ConfigError::new(
                "the refresh-token reuse grace window is at most 300 seconds",
            ));
        }
        if self.token_encryption_keys.is_empty() {
            return Err(ConfigError::new("token_encryption_keys is empty"));
        }
        let cimd = &self.client_id_metadata_documents;
        if cimd.enabled && (cimd.max_bytes == 0 || cimd.timeout_ms == 0) {
            return Err(ConfigError::new(
                "client_id_metadata_documents needs a size and a time limit",
            ));
        }
        Ok(())
    }
}

fn is_tenant_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// Parses an absolute `https` URL (or `http` on a loopback host) without query or fragment.
fn check_base_url(field: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|_| ConfigError::new(format!("{field} is not an absolute URL")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(format!(
            "{field} must not have a query or fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http"
            if url
                .host()
                .is_some_and(|h| super::redirect::is_loopback_host(&h)) =>
        {
            Ok(url)
        }
        _ => Err(ConfigError::new(format!(
            "{field} must use https (http only on a loopback host)"
        ))),
    }
}

/// Serde for one [`Secret`]: a plain string in, `"[redacted]"` out.
mod secret {
    use super::*;

    pub(super) fn serialize<S: Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::from)
    }
}

/// Serde for a list of [`Secret`]s.
mod secret_list {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[Secret], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|_| "[redacted]"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
        Vec::<String>::deserialize(d).map(|v| v.into_iter().map(Secret::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthProxyConfig {
        let mut config = OAuthProxyConfig::new(
            "https://mcp.example.com",
            "https://mcp.example.com/mcp",
            EntraUpstreamConfig::new("contoso.onmicrosoft.com", "app-1", Secret::from("s3cret")),
            vec![Secret::from("k")],
        );
        config.scopes.supported = vec!["tools.call".into()];
        config
    }

    #[test]
    fn valid_configuration_passes() {
        config().validate().unwrap();
        let mut local = config();
        local.issuer = "http://127.0.0.1:8080".into();
        local.validate().unwrap();
    }

    #[test]
    fn invalid_configurations_are_refused() {
        type Change = Box<dyn Fn(&mut OAuthProxyConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "http issuer",
                Box::new(|c| c.issuer = "http://mcp.example.com".into()),
            ),
            (
                "slash",
                Box::new(|c| c.issuer = "https://a.example/x/".into()),
            ),
            (
                "query",
                Box::new(|c| c.resource = "https://a.example/mcp?x=1".into()),
            ),
            ("tenant", Box::new(|c| c.entra.tenant = "a/b".into())),
            (
                "multi",
                Box::new(|c| c.entra.tenant = "organizations".into()),
            ),
            (
                "secret",
                Box::new(|c| c.entra.client_secret = Secret::from("")),
            ),
            ("scope", Box::new(|c| c.scopes.supported.push("a b".into()))),
            (
                "oidc",
                Box::new(|c| c.scopes.supported.push("offline_access".into())),
            ),
            (
                "default",
                Box::new(|c| c.scopes.default.push("other".into())),
            ),
            ("zero", Box::new(|c| c.lifetimes.access_token_secs = 0)),
            (
                "code",
                Box::new(|c| c.lifetimes.authorization_code_secs = 601),
            ),
            (
                "grace",
                Box::new(|c| c.lifetimes.refresh_reuse_grace_secs = 301),
            ),
            ("keys", Box::new(|c| c.token_encryption_keys.clear())),
        ];
        for (name, change) in cases {
            let mut c = config();
            change(&mut c);
            assert!(c.validate().is_err(), "{name}");
        }
        let mut multi = config();
        multi.entra.tenant = "organizations".into();
        multi.entra.allowed_tenants = vec!["t1".into()];
        multi.validate().unwrap();
        assert!(multi.entra.is_multi_tenant());
    }

    #[test]
    fn secrets_are_redacted_when_printed_or_serialized() {
        let mut c = config();
        c.signing_key = Some(SigningKeyConfig {
            algorithm: "EdDSA".into(),
            pem: Secret::from("-----BEGIN PRIVATE KEY-----"),
            kid: None,
        });
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).unwrap();
        for out in [debug, json] {
            assert!(!out.contains("s3cret"), "{out}");
            assert!(!out.contains("BEGIN PRIVATE"), "{out}");
        }
    }

    #[test]
    fn entra_urls_and_prefix() {
        let c = config();
        assert_eq!(
            c.entra.discovery_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(c.entra.scope_prefix(), "api://app-1/");
    }
}
