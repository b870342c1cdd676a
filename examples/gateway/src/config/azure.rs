//! `[auth.azure]`: Entra ID access tokens (the keys of [`EntraConfig`]) and, under
//! `[auth.azure.proxy]`, the OAuth proxy MCP clients sign in through (the keys of
//! [`OAuthProxyConfig`]).

use mcp_auth_azure::EntraConfig;
use mcp_auth_azure::proxy::OAuthProxyConfig;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{ConfigError, invalid};

/// `[auth.azure]`: its own keys are [`EntraConfig`]'s (`tenant`, `client_id`,
/// `allowed_tenants`, `cloud`, `token_versions`, `group_roles`, ...); the table `proxy`
/// is an [`OAuthProxyConfig`]. Secrets are redacted in `Debug` output.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AzureConfig {
    /// Which Entra access tokens are accepted, and how their claims map to principals.
    pub entra: EntraConfig,
    /// The OAuth proxy, mounted on the gateway (off when absent: only tokens the callers
    /// obtained from Entra themselves are accepted).
    pub proxy: Option<OAuthProxyConfig>,
}

impl<'de> Deserialize<'de> for AzureConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        let proxy = table
            .remove("proxy")
            .map(|value| value.try_into::<OAuthProxyConfig>())
            .transpose()
            .map_err(|e| D::Error::custom(format!("auth.azure.proxy: {e}")))?;
        let entra = toml::Value::Table(table)
            .try_into::<EntraConfig>()
            .map_err(|e| D::Error::custom(format!("auth.azure: {e}")))?;
        Ok(Self { entra, proxy })
    }
}

impl AzureConfig {
    /// Checks the section against itself and the gateway: both halves are valid, the
    /// proxy signs in with the app whose tokens are accepted, its tokens are for this
    /// gateway's MCP endpoint (`resource`), and it is served below the public URL
    /// (`base`); a `required_scope` must be one the proxy can grant.
    pub(crate) fn validate(
        &self,
        base: &str,
        resource: &str,
        required_scope: Option<&str>,
    ) -> Result<(), ConfigError> {
        self.entra
            .validate()
            .map_err(|e| invalid("auth.azure", e.to_string()))?;
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        proxy
            .validate()
            .map_err(|e| invalid("auth.azure.proxy", e.to_string()))?;
        if proxy.resource != resource {
            return Err(invalid(
                "auth.azure.proxy.resource",
                format!(
                    "must be the gateway's MCP endpoint `{resource}` (server.public_url + /mcp), \
                     the audience of the proxy's tokens; it is `{}`",
                    proxy.resource
                ),
            ));
        }
        let issuer = proxy.issuer.trim_end_matches('/');
        if issuer != base && !issuer.starts_with(&format!("{base}/")) {
            return Err(invalid(
                "auth.azure.proxy.issuer",
                format!(
                    "the gateway serves the proxy: its issuer must be `{base}` (or a path below \
                     it), not `{issuer}`"
                ),
            ));
        }
        let entra = &proxy.entra;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let mismatch = |key: &'static str, what: &str| {
            invalid(
                key,
                format!(
                    "must equal auth.azure.{what}: the proxy signs users in with the app \
                     registration whose tokens the gateway accepts"
                ),
            )
        };
        if !same(&entra.client_id, &self.entra.client_id) {
            return Err(mismatch("auth.azure.proxy.entra.client_id", "client_id"));
        }
        if !same(&entra.tenant, &self.entra.tenant) {
            return Err(mismatch("auth.azure.proxy.entra.tenant", "tenant"));
        }
        if entra.cloud != self.entra.cloud {
            return Err(mismatch("auth.azure.proxy.entra.cloud", "cloud"));
        }
        let lower = |list: &[String]| {
            let mut list: Vec<String> = list.iter().map(|t| t.to_ascii_lowercase()).collect();
            list.sort();
            list.dedup();
            list
        };
        if lower(&entra.allowed_tenants) != lower(&self.entra.allowed_tenants) {
            return Err(mismatch(
                "auth.azure.proxy.entra.allowed_tenants",
                "allowed_tenants",
            ));
        }
        if let Some(scope) = required_scope
            && !proxy.scopes.supported.iter().any(|s| s == scope)
        {
            return Err(invalid(
                "auth.required_scope",
                format!(
                    "`{scope}` is not in auth.azure.proxy.scopes.supported: clients signing in \
                     through the proxy could never obtain it"
                ),
            ));
        }
        Ok(())
    }
}
