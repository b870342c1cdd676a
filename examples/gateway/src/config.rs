//! The gateway's configuration: one TOML file plus `MCP_GATEWAY_` environment overrides,
//! deserialized into [`Config`] and checked by [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod azure;
mod pools;
mod upstreams;

pub use azure::AzureConfig;
pub use pools::{ClassSettings, PoolClass, PoolClassConfig, PoolsConfig, SamplerSection};
pub(crate) use upstreams::check_distinct;
pub use upstreams::{
    BreakerSection, IdentityAssertionConfig, MAX_UPSTREAMS, ReconnectSection, UpstreamAssertion,
    UpstreamConfig, UpstreamKind, validate_upstreams,
};

/// The prefix of environment overrides: `MCP_GATEWAY_SERVER__LISTEN=0.0.0.0:8080` sets
/// `server.listen`. Path segments are separated by `__`; a numeric segment indexes an array
/// (`MCP_GATEWAY_UPSTREAMS__0__URL`). A value is read as a TOML value when it parses as one
/// (`true`, `42`, `["a", "b"]`) and as a string otherwise.
pub const ENV_PREFIX: &str = "MCP_GATEWAY_";

/// Why a configuration could not be loaded or is invalid. Messages name the offending key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file (after environment overrides) is not valid TOML or does not fit the schema.
    #[error("{origin}: {source}")]
    Parse {
        /// The file or `environment`.
        origin: String,
        /// The TOML error, with line and key.
        #[source]
        source: toml::de::Error,
    },
    /// An environment override names a path that cannot be set.
    #[error("environment override {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The key, e.g. `auth.oidc.issuer`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration. Every section is documented in `docs/gateway/configuration.md`
/// and shown in `examples/gateway/gateway.example.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Listener, public URL and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Stateless or stateful Streamable HTTP, and the session bounds.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Token verification.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The authorization policy.
    #[serde(default)]
    pub rbac: RbacConfig,
    /// Rate limits and the brute-force lockout.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The upstream MCP servers.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// The key and lifetime of identity assertions sent to upstreams.
    #[serde(default)]
    pub identity_assertion: IdentityAssertionConfig,
    /// Where the audit trail goes.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The connection classes of the SQL stores (audit, API keys).
    #[serde(default)]
    pub pools: PoolsConfig,
    /// Request metrics.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The URL clients use to reach the gateway, without the `/mcp` path (default
    /// `http://{listen}`). The protected resource is `{public_url}/mcp`.
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish on shutdown, in seconds (default 30).
    pub shutdown_timeout_secs: u64,
    /// Proxies (CIDR, e.g. `10.0.0.0/8`) whose `Forwarded` / `X-Forwarded-For` headers are
    /// believed when finding the client IP (default none).
    pub trusted_proxies: Vec<String>,
    /// A human-readable name in the protected-resource metadata.
    pub resource_name: Option<String>,
    /// Longest time one request may take, body included, in seconds (default 60; more than
    /// every upstream's `timeout_secs`). Beyond it the answer is 408.
    pub request_timeout_secs: u64,
    /// `Host` values accepted on the MCP, metadata and admin endpoints (`host` or
    /// `host:port`; `["*"]` accepts any). Default: the public URL's host, plus `localhost`,
    /// `127.0.0.1` and `[::1]` when listening on a loopback address.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted from browsers (`scheme://host[:port]`; `["*"]` accepts any);
    /// a request with another `Origin` gets 403. Default: the public URL's origin, plus
    /// `http://localhost`, `http://127.0.0.1` and `http://[::1]` (any port) when listening
    /// on a loopback address.
    pub allowed_origins: Vec<String>,
    /// Refuse (403) requests that did not arrive over HTTPS, as told by a trusted proxy's
    /// `X-Forwarded-Proto` or `Forwarded: proto=` (default false).
    pub require_https: bool,
    /// CORS for browser MCP clients from `allowed_origins`.
    pub cors: CorsConfig,
    /// Serve HTTPS with this certificate and key (default: plain HTTP).
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: the gateway terminates TLS itself (rustls).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain, PEM (leaf first).
    pub cert_file: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[server.cors]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Answer preflights and add CORS headers for allowed origins (default false).
    pub enabled: bool,
    /// How long a browser may cache a preflight answer, in seconds (default 600).
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_age_secs: 600,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            shutdown_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            resource_name: None,
            request_timeout_secs: 60,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            require_https: false,
            cors: CorsConfig::default(),
            tls: None,
        }
    }
}

impl ServerConfig {
    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.tls.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The shutdown grace period.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

/// `[sessions]`: whether the gateway issues `Mcp-Session-Id`s, and their bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionsConfig {
    /// `stateless` (default: every POST stands alone) or `stateful` (sessions).
    pub mode: SessionMode,
    /// Live sessions held at most; beyond it `initialize` gets 503 (default 10000).
    pub max_sessions: usize,
    /// Sessions one principal holds at most; a new one ends its least recently used
    /// (default 16).
    pub max_per_principal: usize,
    /// A session unused for this long ends, in seconds (default 1800).
    pub idle_timeout_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            mode: SessionMode::Stateless,
            max_sessions: 10_000,
            max_per_principal: 16,
            idle_timeout_secs: 1800,
        }
    }
}

/// Streamable HTTP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionMode {
    /// No sessions: no `Mcp-Session-Id`, `DELETE /mcp` is 405.
    Stateless,
    /// `initialize` starts a session bound to the caller; later requests must present it.
    Stateful,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// `required` (default) or `none`: no authentication at all, for measuring the rest of
    /// the request path. `none` is refused unless `insecure_no_auth_i_know = true` and the
    /// gateway listens on a loopback address.
    pub mode: AuthMode,
    /// The second key `mode = "none"` needs.
    pub insecure_no_auth_i_know: bool,
    /// The OpenID Connect issuer whose tokens are accepted.
    pub oidc: Option<OidcConfig>,
    /// A local issuer whose tokens are accepted instead of an OIDC issuer's, and with which
    /// `mcp-gateway token mint` signs.
    pub local_issuer: Option<LocalIssuerConfig>,
    /// API keys, accepted alongside tokens (off when absent).
    pub api_keys: Option<ApiKeysConfig>,
    /// Microsoft Entra ID: Entra access tokens, and the OAuth proxy MCP clients sign in
    /// through (instead of `[auth.oidc]` or `[auth.local_issuer]`).
    pub azure: Option<AzureConfig>,
    /// Accepted token audiences of `[auth.oidc]` and `[auth.local_issuer]`; default: the
    /// resource URL (`{public_url}/mcp`).
    pub audiences: Vec<String>,
    /// A scope every token must carry (checked by the policy: requests without it get 403
    /// `insufficient_scope`). Also named in 401 challenges.
    pub required_scope: Option<String>,
    /// Scopes advertised in the protected-resource metadata (default: the required scope).
    pub scopes_supported: Vec<String>,
    /// Which claims carry the subject, tenant, roles and scopes.
    pub claims: ClaimsConfig,
    /// Brute-force lockout after failed authentications.
    pub lockout: LockoutSection,
    /// The longest lifetime of an accepted token, in seconds (default 86400): how long a
    /// revocation without a known expiry is kept.
    pub max_token_lifetime_secs: u64,
    /// Verified tokens kept so that a repeated token skips the signature check (default
    /// 10000); 0 turns the cache off.
    pub token_cache_capacity: u64,
    /// Longest time a verified token stays cached, in seconds (default 300; never past its
    /// `exp`).
    pub token_cache_max_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Required,
            insecure_no_auth_i_know: false,
            oidc: None,
            local_issuer: None,
            api_keys: None,
            azure: None,
            audiences: Vec::new(),
            required_scope: None,
            scopes_supported: Vec::new(),
            claims: ClaimsConfig::default(),
            lockout: LockoutSection::default(),
            max_token_lifetime_secs: 86_400,
            token_cache_capacity: mcp_auth_core::token_cache::DEFAULT_TOKEN_CACHE_CAPACITY,
            token_cache_max_ttl_secs: mcp_auth_core::token_cache::DEFAULT_TOKEN_CACHE_MAX_TTL
                .as_secs(),
        }
    }
}

/// Whether requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMode {
    /// Every request must present a valid token or API key.
    Required,
    /// Nobody is authenticated: every request is the principal `anonymous` (no tenant, no
    /// roles, no scopes). For load tests on loopback only.
    None,
}

/// `[auth.local_issuer]`: the gateway trusts tokens signed with this key (and `mcp-gateway
/// token mint` issues them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalIssuerConfig {
    /// The issuer, written to and required in `iss`.
    pub issuer: String,
    /// The private signing key, PEM (PKCS#8; PKCS#1 for RSA).
    pub signing_key_file: PathBuf,
    /// The key's algorithm: `EdDSA` (default), `ES256`, `ES384`, `RS256`, `PS256`, ...
    #[serde(default = "default_local_algorithm")]
    pub algorithm: String,
    /// Lifetime of minted tokens, in seconds (default 900).
    #[serde(default = "default_local_ttl")]
    pub token_ttl_secs: u64,
}

fn default_local_algorithm() -> String {
    "EdDSA".to_owned()
}

fn default_local_ttl() -> u64 {
    900
}

/// `[auth.api_keys]`: API keys (`<prefix>_<key id>_<secret>`) stored as peppered
/// HMAC-SHA256 hashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeysConfig {
    /// `memory` (lost on restart), `sqlite` or `postgres`.
    pub store: ApiKeyStoreKind,
    /// `sqlite`: the database file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `postgres`: the connection URL (better through `MCP_GATEWAY_AUTH__API_KEYS__URL`).
    #[serde(default)]
    pub url: Option<String>,
    /// `postgres`: a schema of its own for the key table (default: the `search_path`).
    #[serde(default)]
    pub schema: Option<String>,
    /// A file holding the pepper (at least 32 bytes; a trailing newline is ignored).
    #[serde(default)]
    pub pepper_file: Option<PathBuf>,
    /// The environment variable holding the pepper when `pepper_file` is not set (default
    /// `MCP_API_KEY_PEPPER`).
    #[serde(default = "default_pepper_env")]
    pub pepper_env: String,
    /// The key prefix (default `mcpk`).
    #[serde(default = "default_key_prefix")]
    pub prefix: String,
    /// The request header that carries a key (default `x-api-key`); keys are also accepted
    /// as `Authorization: Bearer <prefix>_...`.
    #[serde(default = "default_key_header")]
    pub header: String,
    /// How long a rotated key keeps working when the rotation names no grace period, in
    /// seconds (default 86400).
    #[serde(default = "default_rotation_grace")]
    pub rotation_grace_secs: u64,
    /// How often last-use times are written to the store, in seconds (default 60).
    #[serde(default = "default_last_used_flush")]
    pub last_used_flush_secs: u64,
}

/// The longest grace period a rotation may give the old key.
pub const MAX_ROTATION_GRACE_SECS: u64 = 30 * 86_400;

fn default_pepper_env() -> String {
    "MCP_API_KEY_PEPPER".to_owned()
}

fn default_key_prefix() -> String {
    mcp_auth_core::DEFAULT_API_KEY_PREFIX.to_owned()
}

fn default_key_header() -> String {
    "x-api-key".to_owned()
}

fn default_rotation_grace() -> u64 {
    86_400
}

fn default_last_used_flush() -> u64 {
    60
}

/// Where API keys are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApiKeyStoreKind {
    /// In memory: keys created through the admin API last until the process stops.
    Memory,
    /// A SQLite database (`path`).
    Sqlite,
    /// A PostgreSQL database (`url`), shared by replicas.
    Postgres,
}

/// `[auth.oidc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OidcConfig {
    /// The issuer, exactly as in tokens' `iss`.
    pub issuer: String,
    /// The JWKS URL; when absent it is found through OIDC discovery of the issuer.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms (default `["RS256"]`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`/`iat`, in seconds (default 60).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned()]
}

fn default_leeway() -> u64 {
    60
}

/// `[auth.claims]`: claim names, each tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClaimsConfig {
    /// Subject claims (default `["sub"]`).
    pub subject: Vec<String>,
    /// Tenant claims (default `["tid"]`).
    pub tenant: Vec<String>,
    /// Role claims (default `["roles"]`).
    pub roles: Vec<String>,
    /// Scope claims (default `["scope", "scp"]`).
    pub scope: Vec<String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self {
            subject: vec!["sub".to_owned()],
            tenant: vec!["tid".to_owned()],
            roles: vec!["roles".to_owned()],
            scope: vec!["scope".to_owned(), "scp".to_owned()],
        }
    }
}

/// `[auth.lockout]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LockoutSection {
    /// Failed authentications from one client IP that trigger a lockout (default 20).
    pub max_failures: u32,
    /// How long the lockout lasts, in seconds (default 900).
    pub lockout_secs: u64,
    /// Failures older than this are forgotten, in seconds (default 900).
    pub window_secs: u64,
}

impl Default for LockoutSection {
    fn default() -> Self {
        Self {
            max_failures: 20,
            lockout_secs: 900,
            window_secs: 900,
        }
    }
}

/// `[rbac]`: the policy is the predefined roles (unless turned off), then the inline policy,
/// then the policy file, then the tenant-bound arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RbacConfig {
    /// Include `mcp_rbac::DEFAULT_POLICY_TOML` (admin, user, readonly, ...; default true).
    pub default_roles: bool,
    /// A policy in mcp-rbac's TOML format, inline.
    pub policy: Option<String>,
    /// A policy file (TOML or JSON, mcp-rbac format).
    pub policy_file: Option<PathBuf>,
    /// Tool arguments that must equal the caller's tenant.
    pub tenant_bound_arguments: Vec<TenantBoundArgument>,
    /// Let every authenticated MCP request through without asking the policy, and leave
    /// lists unfiltered (default false). The admin API still asks the policy.
    pub allow_all: bool,
}

impl Default for RbacConfig {
    fn default() -> Self {
        Self {
            default_roles: true,
            policy: None,
            policy_file: None,
            tenant_bound_arguments: Vec::new(),
            allow_all: false,
        }
    }
}

/// One `[[rbac.tenant_bound_arguments]]`: `tool`'s argument `argument` must be the caller's
/// tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TenantBoundArgument {
    /// The tool name (an mcp-rbac pattern: `tenant_data`, `crm.*`).
    pub tool: String,
    /// The argument name.
    pub argument: String,
}

/// `[rate_limit]`: quotas such as `100/min`, `10/s burst 20`; absent means no limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// One budget for all requests.
    pub global: Option<String>,
    /// Per tenant.
    pub per_tenant: Option<String>,
    /// Per user (subject).
    pub per_user: Option<String>,
    /// Per client IP.
    pub per_ip: Option<String>,
    /// Per tool name (all callers together).
    pub per_tool: Option<String>,
    /// `gcra` (default) or `sliding_window`.
    pub algorithm: LimitAlgorithm,
    /// Tools that cost more than one unit.
    pub tool_costs: BTreeMap<String, u32>,
    /// Weighted tenant fair share of one global budget (off when absent).
    pub fair_share: Option<FairShareSection>,
}

/// `[rate_limit.fair_share]`: tenants share `limit` units per `window_secs` by weight; a
/// tenant may burst to `burst_factor` x its share while capacity no active tenant is owed
/// remains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FairShareSection {
    /// Units all tenants together may use per window.
    pub limit: u32,
    /// The sliding window, in seconds (default 300).
    #[serde(default = "default_fair_window")]
    pub window_secs: u64,
    /// How far above its share a tenant may go while capacity remains (default 1.5).
    #[serde(default = "default_burst_factor")]
    pub burst_factor: f64,
    /// Weights of named tenants (others weigh 1).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
}

fn default_fair_window() -> u64 {
    300
}

fn default_burst_factor() -> f64 {
    1.5
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            global: None,
            per_tenant: None,
            per_user: None,
            per_ip: None,
            per_tool: None,
            algorithm: LimitAlgorithm::Gcra,
            tool_costs: BTreeMap::new(),
            fair_share: None,
        }
    }
}

/// The rate-limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Token bucket (rate plus burst).
    Gcra,
    /// Sliding-window counter.
    SlidingWindow,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Record audit events (default true). When false nothing is recorded on the request
    /// path and the admin audit endpoints answer 404.
    pub enabled: bool,
    /// `tracing` (default: the `audit` log target), `jsonl`, `sqlite` or `postgres`.
    pub sink: AuditSinkKind,
    /// `jsonl`: the directory of the log files; `sqlite`: the database file.
    pub path: Option<PathBuf>,
    /// `postgres`: the connection URL (set it through `MCP_GATEWAY_AUDIT__URL` to keep the
    /// password out of the file).
    pub url: Option<String>,
    /// Where undeliverable events wait for the sink to come back (default `./mcp-gateway-spool`).
    pub spool_dir: PathBuf,
    /// Events the in-memory queue holds before spilling to disk (default 65536).
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sink: AuditSinkKind::Tracing,
            path: None,
            url: None,
            spool_dir: PathBuf::from("./mcp-gateway-spool"),
            queue_capacity: 65_536,
        }
    }
}

/// The audit sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditSinkKind {
    /// Events are logged under the `audit` target.
    Tracing,
    /// JSON lines files, rotated by size and day.
    Jsonl,
    /// A SQLite database (queryable).
    Sqlite,
    /// A PostgreSQL database (queryable, shared by replicas).
    Postgres,
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// `human` (default) or `json`.
    pub format: LogFormatKind,
    /// A tracing filter, e.g. `info,mcp_gateway=debug` (default `info`); `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormatKind::Human,
            filter: "info".to_owned(),
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormatKind {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsSection {
    /// Record request metrics and serve `/metrics` (default true). When false the metrics
    /// layer is not on the request path and `/metrics` answers 404.
    pub enabled: bool,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl Config {
    /// Reads `path`, applies the `MCP_GATEWAY_` overrides from the process environment, and
    /// validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses `text` (named `origin` in errors), applies overrides from `vars` (only those
    /// starting with [`ENV_PREFIX`] are used), and validates.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let mut overridden = false;
        for (var, value) in vars {
            if let Some(path) = var.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, &var, path, &value)?;
                overridden = true;
            }
        }
        let origin = if overridden {
            format!("{origin} (with {ENV_PREFIX}* overrides)")
        } else {
            origin.to_owned()
        };
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Parse { origin, source })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the schema cannot: URLs, counts and quotas.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = self.server.public_base();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(
                "server.public_url",
                format!("`{base}` is not an http(s) URL"),
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be positive"));
        }
        crate::hardening::Guard::new(&self.server).map_err(|e| ConfigError::Invalid {
            key: e.key,
            message: e.to_string(),
        })?;
        for net in &self.server.trusted_proxies {
            net.parse::<mcp_ratelimit::IpNet>()
                .map_err(|e| invalid("server.trusted_proxies", format!("`{net}`: {e}")))?;
        }
        self.validate_auth()?;
        if let Some(oidc) = &self.auth.oidc {
            if oidc.issuer.is_empty() {
                return Err(invalid("auth.oidc.issuer", "must not be empty"));
            }
            if oidc.algorithms.is_empty() {
                return Err(invalid("auth.oidc.algorithms", "name at least one"));
            }
            for alg in &oidc.algorithms {
                alg.parse::<mcp_auth_core::jwt::Algorithm>().map_err(|_| {
                    invalid("auth.oidc.algorithms", format!("unknown algorithm `{alg}`"))
                })?;
            }
        }
        let sessions = &self.sessions;
        if sessions.max_sessions == 0 {
            return Err(invalid("sessions.max_sessions", "must be positive"));
        }
        if sessions.max_per_principal == 0 {
            return Err(invalid("sessions.max_per_principal", "must be positive"));
        }
        if sessions.idle_timeout_secs == 0 {
            return Err(invalid("sessions.idle_timeout_secs", "must be positive"));
        }
        if self.auth.lockout.max_failures == 0 {
            return Err(invalid("auth.lockout.max_failures", "must be positive"));
        }
        let quotas = [
            ("rate_limit.global", &self.rate_limit.global),
            ("rate_limit.per_tenant", &self.rate_limit.per_tenant),
            ("rate_limit.per_user", &self.rate_limit.per_user),
            ("rate_limit.per_ip", &self.rate_limit.per_ip),
            ("rate_limit.per_tool", &self.rate_limit.per_tool),
        ];
        for (key, quota) in quotas {
            if let Some(q) = quota {
                q.parse::<mcp_ratelimit::Quota>()
                    .map_err(|e| invalid(key, format!("`{q}`: {e}")))?;
            }
        }
        if let Some(fair) = &self.rate_limit.fair_share {
            crate::gateway::build_fair_share(fair)
                .map_err(|e| invalid("rate_limit.fair_share", e.to_string()))?;
        }
        if self.rate_limit.tool_costs.values().any(|c| *c == 0) {
            return Err(invalid("rate_limit.tool_costs", "costs must be positive"));
        }
        validate_upstreams(&self.upstreams, self.server.request_timeout_secs)?;
        self.identity_assertion.validate()?;
        match self.audit.sink {
            AuditSinkKind::Jsonl | AuditSinkKind::Sqlite if self.audit.path.is_none() => {
                return Err(invalid(
                    "audit.path",
                    "the jsonl and sqlite sinks need a path",
                ));
            }
            AuditSinkKind::Postgres if self.audit.url.is_none() => {
                return Err(invalid("audit.url", "the postgres sink needs a URL"));
            }
            _ => {}
        }
        if self.audit.queue_capacity == 0 {
            return Err(invalid("audit.queue_capacity", "must be positive"));
        }
        self.pools
            .validate(self.audit.enabled && self.audit.sink == AuditSinkKind::Postgres)?;
        if let Some(tls) = &self.server.tls
            && (tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty())
        {
            return Err(invalid("server.tls", "name both cert_file and key_file"));
        }
        Ok(())
    }

    /// The `[auth]` checks beyond the schema: the auth-off guard, the issuers, the token
    /// cache and the API keys.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if auth.mode == AuthMode::None {
            if !auth.insecure_no_auth_i_know {
                return Err(invalid(
                    "auth.mode",
                    "`none` turns authentication off; it also needs auth.insecure_no_auth_i_know = true",
                ));
            }
            if !self.server.listen.ip().is_loopback() {
                return Err(invalid(
                    "auth.mode",
                    format!(
                        "`none` is refused unless server.listen is a loopback address (it is {})",
                        self.server.listen
                    ),
                ));
            }
        }
        if auth.oidc.is_some() && auth.local_issuer.is_some() {
            return Err(invalid(
                "auth.local_issuer",
                "configure either [auth.oidc] or [auth.local_issuer], not both",
            ));
        }
        if let Some(azure) = &auth.azure {
            if auth.oidc.is_some() || auth.local_issuer.is_some() {
                return Err(invalid(
                    "auth.azure",
                    "configure one of [auth.oidc], [auth.local_issuer] and [auth.azure]",
                ));
            }
            if !auth.audiences.is_empty() {
                return Err(invalid(
                    "auth.audiences",
                    "does not apply to [auth.azure]: Entra tokens are for auth.azure.client_id \
                     (and auth.azure.audiences), the proxy's for the MCP endpoint",
                ));
            }
            let base = self.server.public_base();
            azure.validate(
                &base,
                &format!("{base}{}", crate::MCP_PATH),
                auth.required_scope.as_deref(),
            )?;
        }
        if let Some(local) = &auth.local_issuer {
            if local.issuer.is_empty() {
                return Err(invalid("auth.local_issuer.issuer", "must not be empty"));
            }
            local
                .algorithm
                .parse::<mcp_auth_core::jwt::Algorithm>()
                .map_err(|_| {
                    invalid(
                        "auth.local_issuer.algorithm",
                        format!("unknown algorithm `{}`", local.algorithm),
                    )
                })?;
            if local.token_ttl_secs == 0 {
                return Err(invalid(
                    "auth.local_issuer.token_ttl_secs",
                    "must be positive",
                ));
            }
        }
        if auth.token_cache_capacity > 0 && auth.token_cache_max_ttl_secs == 0 {
            return Err(invalid(
                "auth.token_cache_max_ttl_secs",
                "must be positive while the cache is on (token_cache_capacity = 0 turns it off)",
            ));
        }
        let Some(keys) = &auth.api_keys else {
            return Ok(());
        };
        match keys.store {
            ApiKeyStoreKind::Sqlite if keys.path.is_none() => {
                return Err(invalid(
                    "auth.api_keys.path",
                    "the sqlite store needs a path",
                ));
            }
            ApiKeyStoreKind::Postgres if keys.url.is_none() => {
                return Err(invalid(
                    "auth.api_keys.url",
                    "the postgres store needs a URL",
                ));
            }
            ApiKeyStoreKind::Memory | ApiKeyStoreKind::Sqlite if keys.schema.is_some() => {
                return Err(invalid(
                    "auth.api_keys.schema",
                    "only the postgres store has a schema",
                ));
            }
            _ => {}
        }
        mcp_auth_core::api_key::ApiKeyFormat::new(&keys.prefix)
            .map_err(|e| invalid("auth.api_keys.prefix", e.to_string()))?;
        http::HeaderName::from_bytes(keys.header.as_bytes()).map_err(|_| {
            invalid(
                "auth.api_keys.header",
                format!("`{}` is not a header name", keys.header),
            )
        })?;
        if keys.pepper_file.is_none() && keys.pepper_env.is_empty() {
            return Err(invalid(
                "auth.api_keys.pepper_env",
                "name the variable holding the pepper, or set pepper_file",
            ));
        }
        if keys.rotation_grace_secs > MAX_ROTATION_GRACE_SECS {
            return Err(invalid(
                "auth.api_keys.rotation_grace_secs",
                format!("at most {MAX_ROTATION_GRACE_SECS} (30 days)"),
            ));
        }
        if keys.last_used_flush_secs == 0 {
            return Err(invalid(
                "auth.api_keys.last_used_flush_secs",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// Sets the value at the `__`-separated `path` (lower-cased) in `table`.
fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let env_error = |message: &str| ConfigError::Env {
        var: var.to_owned(),
        message: message.to_owned(),
    };
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(env_error("empty path segment"));
    }
    let value = parse_env_value(raw);
    let Some((last, parents)) = segments.split_last() else {
        return Err(env_error("empty path"));
    };
    let mut current = TableOrArray::Table(table);
    for segment in parents {
        current = current
            .child(segment)
            .ok_or_else(|| env_error("path does not lead to a table"))?;
    }
    current
        .set(last, value)
        .ok_or_else(|| env_error("path does not lead to a settable value"))
}

/// A TOML value as the override writes it: a TOML literal if it parses as one, else a string.
fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

enum TableOrArray<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
}

impl<'a> TableOrArray<'a> {
    /// The child container at `segment`, creating a table when a table has no such key.
    fn child(self, segment: &str) -> Option<TableOrArray<'a>> {
        let value = match self {
            Self::Table(t) => t
                .entry(segment.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            Self::Array(a) => a.get_mut(segment.parse::<usize>().ok()?)?,
        };
        match value {
            toml::Value::Table(t) => Some(TableOrArray::Table(t)),
            toml::Value::Array(a) => Some(TableOrArray::Array(a)),
            _ => None,
        }
    }

    fn set(self, segment: &str, value: toml::Value) -> Option<()> {
        match self {
            Self::Table(t) => {
                t.insert(segment.to_owned(), value);
            }
            Self::Array(a) => {
                let index = segment.parse::<usize>().ok()?;
                *a.get_mut(index)? = value;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[upstreams]]
        name = "main"
        url = "http://127.0.0.1:9000/mcp"
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_annotated_example_is_valid_and_builds_its_policy() {
        let text = include_str!("../gateway.example.toml");
        let config = Config::from_toml_with_env(text, "gateway.example.toml", []).unwrap();
        assert_eq!(config.server.public_base(), "https://mcp.example.com");
        assert_eq!(config.rbac.tenant_bound_arguments.len(), 2);
        assert_eq!(config.rate_limit.tool_costs["reports.export"], 10);
        assert_eq!(config.audit.sink, AuditSinkKind::Sqlite);
        assert_eq!(config.pools.class(PoolClass::Auth).size, 8);
        assert_eq!(config.pools.sampler.resolution_secs, 10);
        assert!(config.auth.azure.is_none());
        assert_eq!(config.logging.format, LogFormatKind::Json);
        assert_eq!(config.sessions.mode, SessionMode::Stateful);
        assert!(config.server.require_https && config.server.cors.enabled);
        assert_eq!(config.server.allowed_origins.len(), 2);
        let policy = crate::build_policy(&config).unwrap();
        assert!(policy.role_names().any(|r| r == "support"));
        assert!(policy.role_names().any(|r| r == "platform_admin"));
        assert_eq!(config.auth.max_token_lifetime_secs, 86_400);
        assert_eq!(config.auth.mode, AuthMode::Required);
        assert_eq!(config.auth.token_cache_capacity, 10_000);
        let keys = config.auth.api_keys.as_ref().unwrap();
        assert_eq!(keys.store, ApiKeyStoreKind::Sqlite);
        assert_eq!(keys.pepper_env, "MCP_API_KEY_PEPPER");
        assert!(config.audit.enabled && config.metrics.enabled && !config.rbac.allow_all);
        assert!(config.server.tls.is_none());
        let main = &config.upstreams[0];
        assert_eq!(
            (main.kind, main.breaker.failure_threshold),
            (UpstreamKind::Http, 5)
        );
        assert!(main.identity_assertion.is_some());
        assert_eq!(config.identity_assertion.algorithm, "EdDSA");
        assert_eq!(
            config
                .rate_limit
                .fair_share
                .as_ref()
                .map(|f| f.weights["acme"]),
            Some(3)
        );
    }

    /// A complete `[auth.azure]` with the proxy, for `https://mcp.example.com`.
    const AZURE: &str = r#"
        [server]
        public_url = "https://mcp.example.com"

        [auth]
        required_scope = "mcp.tools"

        [auth.azure]
        tenant = "organizations"
        allowed_tenants = ["8eaef023-2b34-4da1-9baa-8bc8c9d6a490"]
        client_id = "3f1c2d3e-0000-4000-8000-000000000001"

        [auth.azure.proxy]
        issuer = "https://mcp.example.com"
        resource = "https://mcp.example.com/mcp"
        token_encryption_keys = ["BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"]

        [auth.azure.proxy.entra]
        tenant = "organizations"
        allowed_tenants = ["8EAEF023-2B34-4DA1-9BAA-8BC8C9D6A490"]
        client_id = "3f1c2d3e-0000-4000-8000-000000000001"
        client_secret = "the secret"

        [auth.azure.proxy.scopes]
        supported = ["mcp.tools"]
    "#;

    #[test]
    fn the_azure_section_is_read_into_the_crate_types_and_checked() {
        let azure = AZURE.replace("        ", "");
        let config =
            Config::from_toml_with_env(&format!("{MINIMAL}{azure}"), "t.toml", []).unwrap();
        let section = config.auth.azure.as_ref().unwrap();
        assert_eq!(section.entra.allowed_tenants.len(), 1);
        let proxy = section.proxy.as_ref().unwrap();
        assert_eq!(proxy.scopes.supported, ["mcp.tools"]);
        assert!(
            !format!("{config:?}").contains("the secret"),
            "secrets are redacted"
        );

        let cases = [
            (
                "tenant = \"organizations\"\nallowed_tenants = [\"8EAEF023",
                "tenant = \"common\"\nallowed_tenants = [\"8EAEF023",
                "auth.azure.proxy.entra.tenant",
            ),
            (
                "client_secret = \"the secret\"",
                "client_secret = \"\"",
                "auth.azure.proxy: ",
            ),
            (
                "issuer = \"https://mcp.example.com\"",
                "issuer = \"https://login.example.com\"",
                "auth.azure.proxy.issuer",
            ),
            (
                "resource = \"https://mcp.example.com/mcp\"",
                "resource = \"https://mcp.example.com/other\"",
                "auth.azure.proxy.resource",
            ),
            (
                "supported = [\"mcp.tools\"]",
                "supported = [\"mcp.read\"]",
                "auth.required_scope",
            ),
            (
                "client_id = \"3f1c2d3e-0000-4000-8000-000000000001\"\nclient_secret",
                "client_id = \"3f1c2d3e-0000-4000-8000-000000000002\"\nclient_secret",
                "auth.azure.proxy.entra.client_id",
            ),
            (
                "allowed_tenants = [\"8EAEF023",
                "allowed_tenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\", \"8EAEF023",
                "auth.azure.proxy.entra.allowed_tenants",
            ),
            (
                "[auth.azure]\ntenant",
                "[auth.azure]\ntenants = []\ntenant",
                "tenants",
            ),
            (
                "[auth.azure.proxy.scopes]",
                "[auth.azure.proxy.scopez]",
                "scopez",
            ),
            (
                "[auth]\n",
                "[auth]\naudiences = [\"x\"]\n",
                "auth.audiences",
            ),
            (
                "[auth]\n",
                "[auth.oidc]\nissuer = \"https://i\"\n[auth]\n",
                "configure one of",
            ),
        ];
        for (from, to, key) in cases {
            let changed = azure.replacen(from, to, 1);
            assert_ne!(changed, azure, "{from}");
            let err = Config::from_toml_with_env(&format!("{MINIMAL}{changed}"), "t.toml", [])
                .unwrap_err();
            assert!(err.to_string().contains(key), "{to}: {err}");
        }
        // Direct Entra tokens only: a multi-tenant app without an allowlist is refused.
        let open = "[auth.azure]\ntenant = \"organizations\"\nclient_id = \"3f1c2d3e-0000-4000-8000-000000000001\"\n";
        let err =
            Config::from_toml_with_env(&format!("{MINIMAL}{open}"), "t.toml", []).unwrap_err();
        assert!(err.to_string().contains("allowed_tenants"), "{err}");
    }

    /// The proxy's secrets, from the environment.
    fn azure_secrets() -> Vec<(String, String)> {
        env(&[
            (
                "MCP_GATEWAY_AUTH__AZURE__PROXY__ENTRA__CLIENT_SECRET",
                "from step 5",
            ),
            (
                "MCP_GATEWAY_AUTH__AZURE__PROXY__TOKEN_ENCRYPTION_KEYS",
                r#"["BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"]"#,
            ),
        ])
    }

    #[test]
    fn the_annotated_example_azure_section_is_valid_once_uncommented() {
        let text = include_str!("../gateway.example.toml");
        let start = text.find("# [auth.azure]\n").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        let uncommented: Vec<&str> = text[start..end]
            .lines()
            // One `#` (and a space) less: `## text` stays a comment.
            .map(|line| match line.strip_prefix('#') {
                Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
                None => line,
            })
            .collect();
        let azure: toml::Table = toml::from_str(&uncommented.join("\n")).unwrap();
        let mut table: toml::Table = toml::from_str(text).unwrap();
        let Some(toml::Value::Table(auth)) = table.get_mut("auth") else {
            panic!("no [auth]");
        };
        // Entra instead of the example's OIDC issuer, and a scope the proxy grants.
        for key in ["oidc", "audiences", "scopes_supported"] {
            auth.remove(key);
        }
        auth.insert("required_scope".into(), "mcp.tools".into());
        let Some(toml::Value::Table(section)) = azure.get("auth") else {
            panic!("no [auth.azure]");
        };
        auth.extend(section.clone());
        let config =
            Config::from_toml_with_env(&table.to_string(), "example", azure_secrets()).unwrap();
        let azure = config.auth.azure.unwrap();
        assert_eq!(azure.entra.group_roles.len(), 1);
        assert_eq!(azure.proxy.unwrap().lifetimes.access_token_secs, 900);
    }

    #[test]
    fn the_deployment_guide_configuration_is_valid_with_its_secrets_from_the_environment() {
        let guide = include_str!("../../../docs/azure/entra-deployment.md");
        let section = &guide[guide.find("## 8. Configure the gateway").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let text =
            format!("{MINIMAL}\n[server]\npublic_url = \"https://mcp.contoso.com\"\n{block}");
        let config =
            Config::from_toml_with_env(&text, "entra-deployment.md", azure_secrets()).unwrap();
        let azure = config.auth.azure.unwrap();
        assert_eq!(azure.entra.group_roles.len(), 1);
        assert_eq!(azure.proxy.unwrap().token_encryption_keys.len(), 1);
    }

    #[test]
    fn minimal_config_has_defaults() {
        let config = Config::from_toml_with_env(MINIMAL, "t.toml", []).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.public_base(), "http://127.0.0.1:8080");
        assert_eq!(config.auth.claims.tenant, ["tid"]);
        assert!(config.rbac.default_roles);
        assert_eq!(config.audit.sink, AuditSinkKind::Tracing);
        assert_eq!(config.upstreams[0].timeout_secs, 30);
        assert_eq!(config.sessions.mode, SessionMode::Stateless);
        assert!(config.auth.api_keys.is_none() && config.auth.local_issuer.is_none());
        assert!(config.audit.enabled && config.metrics.enabled);
    }

    #[test]
    fn pool_classes_have_defaults_and_take_each_key() {
        let config = Config::from_toml_with_env(MINIMAL, "t.toml", []).unwrap();
        let read = config.pools.class(PoolClass::Read);
        assert_eq!((read.size, read.min, read.max), (4, 0, 4));
        assert_eq!(read.acquire_timeout_secs, 15);
        assert_eq!(read.idle_timeout_secs, Some(600));
        assert_eq!(config.pools.class(PoolClass::Auth).size, 8);
        let text = format!(
            "{MINIMAL}[pools.write]\nsize = 3\nmin_connections = 1\nmax_connections = 9\nacquire_timeout_secs = 2\nidle_timeout_secs = 0\n"
        );
        let config = Config::from_toml_with_env(&text, "t.toml", []).unwrap();
        let write = config.pools.class(PoolClass::Write);
        assert_eq!((write.size, write.min, write.max), (3, 1, 9));
        assert_eq!(
            (write.acquire_timeout_secs, write.idle_timeout_secs),
            (2, None)
        );
        assert_eq!(
            PoolClass::ALL.map(PoolClass::name),
            ["write", "read", "analytics", "auth"]
        );
    }

    #[test]
    fn auth_off_needs_the_flag_and_a_loopback_listener() {
        let off = "[auth]\nmode = \"none\"\n";
        let err = Config::from_toml_with_env(&format!("{MINIMAL}{off}"), "t.toml", []).unwrap_err();
        assert!(err.to_string().contains("insecure_no_auth_i_know"), "{err}");
        let flagged = format!("{MINIMAL}{off}insecure_no_auth_i_know = true\n");
        let config = Config::from_toml_with_env(&flagged, "t.toml", []).unwrap();
        assert_eq!(config.auth.mode, AuthMode::None);
        let exposed = env(&[("MCP_GATEWAY_SERVER__LISTEN", "0.0.0.0:8080")]);
        let err = Config::from_toml_with_env(&flagged, "t.toml", exposed).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn tls_makes_the_default_public_url_https() {
        let text = format!(
            "{MINIMAL}[server]\nlisten = \"127.0.0.1:8443\"\ntls = {{ cert_file = \"c.pem\", key_file = \"k.pem\" }}\n"
        );
        let config = Config::from_toml_with_env(&text, "t.toml", []).unwrap();
        assert_eq!(config.server.public_base(), "https://127.0.0.1:8443");
    }

    #[test]
    fn env_overrides_nested_keys_arrays_and_typed_values() {
        let vars = env(&[
            ("MCP_GATEWAY_SERVER__LISTEN", "0.0.0.0:9999"),
            ("MCP_GATEWAY_SERVER__MAX_BODY_BYTES", "2048"),
            ("MCP_GATEWAY_AUTH__OIDC__ISSUER", "https://login.example"),
            ("MCP_GATEWAY_AUTH__AUDIENCES", r#"["a", "b"]"#),
            ("MCP_GATEWAY_UPSTREAMS__0__URL", "http://10.0.0.1/mcp"),
            ("OTHER_VAR", "ignored"),
        ]);
        let config = Config::from_toml_with_env(MINIMAL, "t.toml", vars).unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9999");
        assert_eq!(config.server.max_body_bytes, 2048);
        assert_eq!(
            config.auth.oidc.as_ref().map(|o| o.issuer.as_str()),
            Some("https://login.example")
        );
        assert_eq!(config.auth.audiences, ["a", "b"]);
        assert_eq!(config.upstreams[0].url, "http://10.0.0.1/mcp");
    }

    #[test]
    fn env_override_into_a_missing_array_index_is_an_error() {
        let vars = env(&[("MCP_GATEWAY_UPSTREAMS__3__URL", "http://x/mcp")]);
        let err = Config::from_toml_with_env(MINIMAL, "t.toml", vars).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let text = format!("{MINIMAL}\n[server]\nlisten_addr = \"x\"\n");
        let err = Config::from_toml_with_env(&text, "t.toml", []).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[rate_limit]\nper_user = \"lots\"", "rate_limit.per_user"),
            ("[audit]\nsink = \"sqlite\"", "audit.path"),
            ("[audit]\nsink = \"postgres\"", "audit.url"),
            ("[sessions]\nmax_sessions = 0", "sessions.max_sessions"),
            (
                "[rate_limit.fair_share]\nlimit = 10\nburst_factor = 0.5",
                "rate_limit.fair_share",
            ),
            (
                "[server]\nrequest_timeout_secs = 30",
                "server.request_timeout_secs",
            ),
            (
                "[server]\nallowed_hosts = [\"a b\"]",
                "server.allowed_hosts",
            ),
            (
                "[server]\ntrusted_proxies = [\"nope\"]",
                "server.trusted_proxies",
            ),
            (
                "[auth.oidc]\nissuer = \"https://i\"\nalgorithms = [\"XX1\"]",
                "auth.oidc.algorithms",
            ),
            (
                "[auth.oidc]\nissuer = \"https://i\"\n[auth.local_issuer]\nissuer = \"https://l\"\nsigning_key_file = \"k.pem\"",
                "auth.local_issuer",
            ),
            (
                "[auth.local_issuer]\nissuer = \"https://l\"\nsigning_key_file = \"k.pem\"\nalgorithm = \"XX1\"",
                "auth.local_issuer.algorithm",
            ),
            (
                "[auth]\ntoken_cache_max_ttl_secs = 0",
                "auth.token_cache_max_ttl_secs",
            ),
            ("[auth.api_keys]\nstore = \"sqlite\"", "auth.api_keys.path"),
            ("[auth.api_keys]\nstore = \"postgres\"", "auth.api_keys.url"),
            (
                "[auth.api_keys]\nstore = \"memory\"\nschema = \"s\"",
                "auth.api_keys.schema",
            ),
            (
                "[auth.api_keys]\nstore = \"memory\"\nprefix = \"Bad_Prefix\"",
                "auth.api_keys.prefix",
            ),
            (
                "[auth.api_keys]\nstore = \"memory\"\nheader = \"x api key\"",
                "auth.api_keys.header",
            ),
            (
                "[auth.api_keys]\nstore = \"memory\"\nrotation_grace_secs = 99999999",
                "auth.api_keys.rotation_grace_secs",
            ),
            (
                "[server]\ntls = { cert_file = \"\", key_file = \"k.pem\" }",
                "server.tls",
            ),
            ("[pools.read]\nsize = 0", "pools.read"),
            (
                "[pools.write]\nsize = 5\nmax_connections = 3",
                "pools.write",
            ),
            ("[pools.auth]\nacquire_timeout_secs = 0", "pools.auth"),
            ("[pools]\nconnection_budget = 0", "pools.connection_budget"),
            (
                "[pools]\nreplica_url = \"postgres://replica/audit\"",
                "pools.replica_url",
            ),
            (
                "[audit]\nsink = \"postgres\"\nurl = \"postgres://p/a\"\n[pools]\nreplica_url = \"mysql://r\"",
                "pools.replica_url",
            ),
            ("[pools.sampler]\nresolution_secs = 600", "pools.sampler"),
            ("[pools.analytics]\nsized = 3", "sized"),
        ];
        for (extra, key) in cases {
            let text = format!("{MINIMAL}\n{extra}\n");
            let err = Config::from_toml_with_env(&text, "t.toml", []).unwrap_err();
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
        let none = Config::from_toml_with_env("", "t.toml", []).unwrap_err();
        assert!(none.to_string().contains("upstreams"), "{none}");
    }
}
