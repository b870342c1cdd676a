//! `[[upstreams]]` (the MCP servers the gateway routes to) and `[identity_assertion]` (the key
//! the gateway signs its identity assertions with), with their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Upstreams one gateway holds at most (each has its own connection, health task and metric
/// labels).
pub const MAX_UPSTREAMS: usize = 64;

/// Headers the upstream transport sets itself, so an identity assertion may not use them.
const RESERVED_ASSERTION_HEADERS: [&str; 7] = [
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UpstreamKind {
    /// An MCP server at a Streamable HTTP `url`.
    #[default]
    Http,
    /// An MCP server the gateway starts as a child process (`command`, `args`, `env`) and
    /// talks to over its stdin and stdout.
    Stdio,
    /// The demo tools (`echo`, `add`, `tenant_data`, `admin.stats`) served inside the
    /// gateway process, without a transport.
    InProcess,
}

impl UpstreamKind {
    /// The kind as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Stdio => "stdio",
            Self::InProcess => "in-process",
        }
    }
}

/// One `[[upstreams]]`. `Debug` shows the names of `env` variables, not their values.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// A short name (a letter, then letters, digits or `-`; at most 64), used in logs, health
    /// reports, metrics and the default prefixes.
    pub name: String,
    /// `http` (default), `stdio` or `in-process`.
    #[serde(default)]
    pub kind: UpstreamKind,
    /// `http`: the Streamable HTTP endpoint, e.g. `http://127.0.0.1:9000/mcp`.
    #[serde(default)]
    pub url: String,
    /// `stdio`: the program to start.
    #[serde(default)]
    pub command: Option<String>,
    /// `stdio`: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `stdio`: environment variables set for it. The child inherits only `PATH`, `HOME`,
    /// `USER`, `LOGNAME`, `SHELL`, `TERM`, `LANG` and `TMPDIR` from the gateway, never its
    /// secrets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// With several upstreams: what is put before this upstream's tool and prompt names
    /// (default `{name}_`). Ignored with one upstream.
    #[serde(default)]
    pub prefix: Option<String>,
    /// With several upstreams: what is put before this upstream's resource URIs and URI
    /// templates (default `{name}+`, which turns `file:///a` into the URI `crm+file:///a`).
    #[serde(default)]
    pub resource_prefix: Option<String>,
    /// Longest wait for one upstream response (and for connecting), in seconds (default 30).
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: BreakerSection,
    /// Reconnection after a failed connect.
    #[serde(default)]
    pub reconnect: ReconnectSection,
    /// How often an idle upstream is pinged, in seconds (default 30; 0 turns pings off, and
    /// health is then known from requests only).
    #[serde(default = "default_health_interval")]
    pub health_interval_secs: u64,
    /// Whether `/health/ready` fails while this upstream is unreachable (default true).
    #[serde(default = "default_true")]
    pub required: bool,
    /// `http` only: attach a short-lived identity assertion signed by the gateway (see
    /// `[identity_assertion]`). Absent: no assertion.
    #[serde(default)]
    pub identity_assertion: Option<UpstreamAssertion>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("prefix", &self.prefix)
            .field("resource_prefix", &self.resource_prefix)
            .field("timeout_secs", &self.timeout_secs)
            .field("breaker", &self.breaker)
            .field("reconnect", &self.reconnect)
            .field("health_interval_secs", &self.health_interval_secs)
            .field("required", &self.required)
            .field("identity_assertion", &self.identity_assertion)
            .finish()
    }
}

fn default_upstream_timeout() -> u64 {
    30
}

fn default_health_interval() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

/// `[upstreams.breaker]`: after `failure_threshold` consecutive failures (timeouts, broken
/// connections) the breaker opens and requests fail fast with 503 for `cool_down_secs`; then
/// one probe request is let through, which closes it again or reopens it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BreakerSection {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long it stays open before a probe, in seconds (default 30).
    pub cool_down_secs: u64,
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down_secs: 30,
        }
    }
}

/// `[upstreams.reconnect]`: after a failed connect the next attempt waits
/// `initial_backoff_ms`, doubling with each further failure up to `max_backoff_secs`;
/// requests arriving meanwhile fail at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ReconnectSection {
    /// The first wait, in milliseconds (default 250).
    pub initial_backoff_ms: u64,
    /// The longest wait, in seconds (default 30).
    pub max_backoff_secs: u64,
}

impl Default for ReconnectSection {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 250,
            max_backoff_secs: 30,
        }
    }
}

/// `[upstreams.identity_assertion]`: the gateway sends `header` with a JWT it signs (claims
/// `iss`, `sub`, `tid`, `roles`, `scope`, `aud`, `iat`, `exp`, `jti`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamAssertion {
    /// The header (default `authorization`, sent as `Bearer <jwt>`; any other header carries
    /// the bare JWT).
    pub header: String,
    /// The `aud` claim (default: the upstream's `url`).
    pub audience: Option<String>,
}

impl Default for UpstreamAssertion {
    fn default() -> Self {
        Self {
            header: "authorization".to_owned(),
            audience: None,
        }
    }
}

/// `[identity_assertion]`: the key and lifetime of the assertions sent to upstreams that ask
/// for them. Its public key is served at `/.well-known/gateway-jwks.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IdentityAssertionConfig {
    /// The `iss` claim (default: the public URL).
    pub issuer: Option<String>,
    /// The JWS algorithm: `EdDSA` (default) or `ES256` for a generated key; for a loaded key
    /// the key's algorithm (`EdDSA`, `ES256`, `ES384`, `RS256`, `PS256`, ...).
    pub algorithm: String,
    /// A PKCS#8 PEM private key file.
    pub key_file: Option<PathBuf>,
    /// The name of an environment variable holding the PEM private key (not starting with
    /// `MCP_GATEWAY_`, which names configuration overrides). Without `key_file` and
    /// `key_env` a key is generated at start.
    pub key_env: Option<String>,
    /// Assertion lifetime, in seconds (default 60; at most 3600). An assertion is reused for
    /// the same caller until three quarters of it have passed.
    pub ttl_secs: u64,
}

impl Default for IdentityAssertionConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            algorithm: "EdDSA".to_owned(),
            key_file: None,
            key_env: None,
            ttl_secs: 60,
        }
    }
}

impl IdentityAssertionConfig {
    /// The assertion lifetime.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// Checks the lifetime, the algorithm and the key source.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl_secs == 0 || self.ttl_secs > 3600 {
            return Err(invalid(
                "identity_assertion.ttl_secs",
                "must be between 1 and 3600",
            ));
        }
        let algorithm = self
            .algorithm
            .parse::<mcp_auth_core::jwt::Algorithm>()
            .map_err(|_| {
                invalid(
                    "identity_assertion.algorithm",
                    format!("unknown algorithm `{}`", self.algorithm),
                )
            })?;
        if self.algorithm.starts_with("HS") {
            return Err(invalid(
                "identity_assertion.algorithm",
                "HMAC cannot be verified through a published JWKS; use a key pair",
            ));
        }
        match (&self.key_file, &self.key_env) {
            (Some(_), Some(_)) => Err(invalid(
                "identity_assertion.key_env",
                "name either key_file or key_env, not both",
            )),
            (None, Some(var)) if var.is_empty() || var.starts_with(super::ENV_PREFIX) => {
                Err(invalid(
                    "identity_assertion.key_env",
                    format!(
                        "`{var}`: name a variable outside the {} prefix (those are configuration overrides)",
                        super::ENV_PREFIX
                    ),
                ))
            }
            (None, None)
                if !matches!(
                    algorithm,
                    mcp_auth_core::jwt::Algorithm::EdDSA | mcp_auth_core::jwt::Algorithm::ES256
                ) =>
            {
                Err(invalid(
                    "identity_assertion.algorithm",
                    "a generated key is EdDSA or ES256; load other keys with key_file or key_env",
                ))
            }
            _ => Ok(()),
        }
    }
}

impl UpstreamConfig {
    /// An HTTP upstream named `name` at `url` with the defaults.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::of_kind(name, UpstreamKind::Http).with_url(url)
    }

    /// A stdio upstream named `name` starting `command` with `args`.
    pub fn stdio<I, S>(name: impl Into<String>, command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = Self::of_kind(name, UpstreamKind::Stdio);
        config.command = Some(command.into());
        config.args = args.into_iter().map(Into::into).collect();
        config
    }

    /// The in-process demo tools, named `name`.
    pub fn in_process(name: impl Into<String>) -> Self {
        Self::of_kind(name, UpstreamKind::InProcess)
    }

    fn of_kind(name: impl Into<String>, kind: UpstreamKind) -> Self {
        Self {
            name: name.into(),
            kind,
            url: String::new(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            prefix: None,
            resource_prefix: None,
            timeout_secs: default_upstream_timeout(),
            breaker: BreakerSection::default(),
            reconnect: ReconnectSection::default(),
            health_interval_secs: default_health_interval(),
            required: true,
            identity_assertion: None,
        }
    }

    fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The tool and prompt name prefix used when there are several upstreams.
    pub fn name_prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("{}_", self.name))
    }

    /// The resource URI prefix used when there are several upstreams.
    pub fn uri_prefix(&self) -> String {
        self.resource_prefix
            .clone()
            .unwrap_or_else(|| format!("{}+", self.name))
    }

    /// Where the upstream is, for reports: its URL, its program (not its arguments, which
    /// may hold secrets), or `in-process demo tools`.
    pub fn target(&self) -> String {
        match self.kind {
            UpstreamKind::Http => self.url.clone(),
            UpstreamKind::Stdio => format!("stdio: {}", self.command.as_deref().unwrap_or("")),
            UpstreamKind::InProcess => "in-process demo tools".to_owned(),
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks one upstream on its own (the set is checked by [`validate_upstreams`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        let valid_name = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid_name {
            return Err(invalid(
                "upstreams.name",
                format!("`{name}`: a letter, then letters, digits or `-` (at most 64)"),
            ));
        }
        let at = |message: &str| format!("upstream `{name}`: {message}");
        match self.kind {
            UpstreamKind::Http => {
                if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                    return Err(invalid(
                        "upstreams.url",
                        at(&format!("`{}` is not an http(s) URL", self.url)),
                    ));
                }
                if self.command.is_some() || !self.args.is_empty() || !self.env.is_empty() {
                    return Err(invalid(
                        "upstreams.command",
                        at("command, args and env are for kind = \"stdio\""),
                    ));
                }
            }
            UpstreamKind::Stdio => {
                if self.command.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid(
                        "upstreams.command",
                        at("kind = \"stdio\" needs a command"),
                    ));
                }
                if !self.url.is_empty() {
                    return Err(invalid("upstreams.url", at("url is for kind = \"http\"")));
                }
                if let Some(var) = self.env.keys().find(|k| k.is_empty() || k.contains('=')) {
                    return Err(invalid(
                        "upstreams.env",
                        at(&format!("`{var}` is not a variable name")),
                    ));
                }
            }
            UpstreamKind::InProcess => {
                if !self.url.is_empty()
                    || self.command.is_some()
                    || !self.args.is_empty()
                    || !self.env.is_empty()
                {
                    return Err(invalid(
                        "upstreams.kind",
                        at("an in-process upstream takes no url, command, args or env"),
                    ));
                }
            }
        }
        if let Some(assertion) = &self.identity_assertion {
            if self.kind != UpstreamKind::Http {
                return Err(invalid(
                    "upstreams.identity_assertion",
                    at("only http upstreams receive identity assertions"),
                ));
            }
            let header = assertion.header.to_ascii_lowercase();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err()
                || RESERVED_ASSERTION_HEADERS.contains(&header.as_str())
            {
                return Err(invalid(
                    "upstreams.identity_assertion.header",
                    at(&format!(
                        "`{}` is not a header the assertion can use",
                        assertion.header
                    )),
                ));
            }
            if assertion.audience.as_deref() == Some("") {
                return Err(invalid(
                    "upstreams.identity_assertion.audience",
                    at("must not be empty"),
                ));
            }
        }
        let prefix = self.name_prefix();
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        {
            return Err(invalid(
                "upstreams.prefix",
                at(&format!(
                    "`{prefix}`: letters, digits, `_`, `-`, `.` or `/`, not empty"
                )),
            ));
        }
        let uri_prefix = self.uri_prefix();
        if uri_prefix.is_empty()
            || uri_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "upstreams.resource_prefix",
                at(&format!(
                    "`{uri_prefix}`: must not be empty or contain spaces"
                )),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("upstreams.timeout_secs", at("must be positive")));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(invalid(
                "upstreams.breaker.failure_threshold",
                at("must be positive"),
            ));
        }
        if self.breaker.cool_down_secs == 0 {
            return Err(invalid(
                "upstreams.breaker.cool_down_secs",
                at("must be positive"),
            ));
        }
        let reconnect = &self.reconnect;
        if reconnect.initial_backoff_ms == 0
            || reconnect.max_backoff_secs.saturating_mul(1000) < reconnect.initial_backoff_ms
        {
            return Err(invalid(
                "upstreams.reconnect",
                at("initial_backoff_ms must be positive and at most max_backoff_secs"),
            ));
        }
        Ok(())
    }
}

/// Checks the upstream set: each upstream, unique names, prefixes no other prefix starts with
/// (so every prefixed name belongs to exactly one upstream), and timeouts below the request
/// time limit.
pub fn validate_upstreams(
    upstreams: &[UpstreamConfig],
    request_timeout_secs: u64,
) -> Result<(), ConfigError> {
    if upstreams.is_empty() {
        return Err(invalid("upstreams", "configure at least one upstream"));
    }
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(invalid(
            "upstreams",
            format!("at most {MAX_UPSTREAMS} upstreams"),
        ));
    }
    for (i, upstream) in upstreams.iter().enumerate() {
        upstream.validate()?;
        if request_timeout_secs <= upstream.timeout_secs {
            return Err(invalid(
                "server.request_timeout_secs",
                "must exceed every upstream's timeout_secs (so an upstream timeout is answered and audited)",
            ));
        }
        for other in &upstreams[..i] {
            check_distinct(other, upstream)?;
        }
    }
    Ok(())
}

/// Whether `a` and `b` can live in one registry: different names, and (with several
/// upstreams) prefixes that cannot both match one name.
pub(crate) fn check_distinct(a: &UpstreamConfig, b: &UpstreamConfig) -> Result<(), ConfigError> {
    if a.name == b.name {
        return Err(invalid(
            "upstreams.name",
            format!("`{}` is used twice", a.name),
        ));
    }
    let overlap = |x: &str, y: &str| x.starts_with(y) || y.starts_with(x);
    if overlap(&a.name_prefix(), &b.name_prefix()) {
        return Err(invalid(
            "upstreams.prefix",
            format!(
                "the prefixes of `{}` (`{}`) and `{}` (`{}`) overlap, so a name could belong to both",
                a.name,
                a.name_prefix(),
                b.name,
                b.name_prefix()
            ),
        ));
    }
    if overlap(&a.uri_prefix(), &b.uri_prefix()) {
        return Err(invalid(
            "upstreams.resource_prefix",
            format!(
                "the resource prefixes of `{}` (`{}`) and `{}` (`{}`) overlap",
                a.name,
                a.uri_prefix(),
                b.name,
                b.uri_prefix()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, "t.toml", [])
    }

    const TWO: &str = r#"
        [[upstreams]]
        name = "crm"
        url = "http://127.0.0.1:9000/mcp"

        [upstreams.identity_assertion]

        [[upstreams]]
        name = "files"
        kind = "stdio"
        command = "files-server"
        args = ["--root", "/srv"]
        env = { LOG = "warn" }
        prefix = "fs."
        breaker = { failure_threshold = 2, cool_down_secs = 5 }
    "#;

    #[test]
    fn several_kinds_with_their_defaults() {
        let config = load(TWO).unwrap();
        let [crm, files] = config.upstreams.as_slice() else {
            panic!("two upstreams")
        };
        assert_eq!(crm.kind, super::UpstreamKind::Http);
        assert_eq!(crm.name_prefix(), "crm_");
        assert_eq!(crm.uri_prefix(), "crm+");
        let assertion = crm.identity_assertion.as_ref().unwrap();
        assert_eq!(assertion.header, "authorization");
        assert_eq!(crm.breaker.failure_threshold, 5);
        assert_eq!(crm.health_interval_secs, 30);
        assert!(crm.required);
        assert_eq!(files.kind, super::UpstreamKind::Stdio);
        assert_eq!(files.name_prefix(), "fs.");
        assert_eq!(files.target(), "stdio: files-server");
        assert_eq!(files.args, ["--root", "/srv"]);
        let debug = format!("{files:?}");
        assert!(debug.contains("LOG") && !debug.contains("warn"), "{debug}");
        assert_eq!(files.breaker.cool_down_secs, 5);
        assert_eq!(config.identity_assertion.ttl_secs, 60);
        let in_process = load("[[upstreams]]\nname = \"demo\"\nkind = \"in-process\"").unwrap();
        assert_eq!(in_process.upstreams[0].target(), "in-process demo tools");
    }

    #[test]
    fn env_overrides_reach_nested_upstream_keys() {
        let vars = [
            (
                "MCP_GATEWAY_UPSTREAMS__1__BREAKER__COOL_DOWN_SECS".to_owned(),
                "9".to_owned(),
            ),
            (
                "MCP_GATEWAY_IDENTITY_ASSERTION__TTL_SECS".to_owned(),
                "120".to_owned(),
            ),
        ];
        let config = Config::from_toml_with_env(TWO, "t.toml", vars).unwrap();
        assert_eq!(config.upstreams[1].breaker.cool_down_secs, 9);
        assert_eq!(config.identity_assertion.ttl_secs, 120);
    }

    #[test]
    fn invalid_upstreams_name_their_key_and_upstream() {
        let http = "[[upstreams]]\nname = \"a\"\nurl = \"http://x/mcp\"\n";
        let cases = [
            (
                "[[upstreams]]\nname = \"1a\"\nurl = \"http://x\"",
                "upstreams.name",
            ),
            (
                "[[upstreams]]\nname = \"a_b\"\nurl = \"http://x\"",
                "upstreams.name",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"",
                "upstreams.url",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nkind = \"stdio\"",
                "upstreams.command",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nkind = \"stdio\"\ncommand = \"x\"\nurl = \"http://x\"",
                "upstreams.url",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nkind = \"in-process\"\ncommand = \"x\"",
                "upstreams.kind",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nkind = \"in-process\"\nidentity_assertion = {}",
                "upstreams.identity_assertion",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\nidentity_assertion = { header = \"mcp-session-id\" }",
                "upstreams.identity_assertion.header",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\nprefix = \"a b\"",
                "upstreams.prefix",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\nbreaker = { failure_threshold = 0 }",
                "upstreams.breaker.failure_threshold",
            ),
            (
                "[[upstreams]]\nname = \"a\"\nurl = \"http://x\"\nreconnect = { initial_backoff_ms = 5000, max_backoff_secs = 1 }",
                "upstreams.reconnect",
            ),
        ];
        for (text, key) in cases {
            let err = load(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        let twice = format!("{http}{http}");
        let err = load(&twice).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let overlapping = format!(
            "{http}[[upstreams]]\nname = \"b\"\nurl = \"http://y/mcp\"\nprefix = \"a_x\"\n"
        );
        let err = load(&overlapping).unwrap_err();
        assert!(err.to_string().contains("upstreams.prefix"), "{err}");
        assert!(err.to_string().contains("overlap"), "{err}");
    }

    #[test]
    fn invalid_assertion_keys_are_refused() {
        let http = "[[upstreams]]\nname = \"a\"\nurl = \"http://x/mcp\"\n";
        let cases = [
            ("ttl_secs = 0", "identity_assertion.ttl_secs"),
            ("algorithm = \"HS256\"", "identity_assertion.algorithm"),
            ("algorithm = \"XX\"", "identity_assertion.algorithm"),
            ("algorithm = \"RS256\"", "identity_assertion.algorithm"),
            (
                "key_env = \"MCP_GATEWAY_KEY\"",
                "identity_assertion.key_env",
            ),
            (
                "key_env = \"K\"\nkey_file = \"/k.pem\"",
                "identity_assertion.key_env",
            ),
        ];
        for (extra, key) in cases {
            let text = format!("{http}[identity_assertion]\n{extra}\n");
            let err = load(&text).unwrap_err();
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
        let loaded =
            format!("{http}[identity_assertion]\nalgorithm = \"RS256\"\nkey_file = \"/k.pem\"\n");
        assert!(load(&loaded).is_ok());
    }
}
