//! Authentication pieces the configuration describes besides the OIDC issuer: the local
//! issuer of `[auth.local_issuer]`, the principal of `auth.mode = "none"`, and the names of
//! authentication methods in audit events and metrics.

use std::time::Duration;

use anyhow::Context as _;
use mcp_auth_core::issuer::SigningKey;
use mcp_auth_core::jwt::Algorithm;
use mcp_auth_core::{AuthMethod, LocalIssuer, Principal};

use crate::config::Config;

/// The `auth_method` of bearer-token authentications (audit) and their metrics label.
pub(crate) const JWT: &str = "jwt";

/// The `auth_method` of API-key authentications.
pub(crate) const API_KEY: &str = "api_key";

/// The `auth_method` of the unauthenticated principal of `auth.mode = "none"`.
pub(crate) const NONE: &str = "none";

/// The subject of every request when authentication is off.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// The name of the way `principal` authenticated.
pub(crate) fn method_name(principal: &Principal) -> &'static str {
    match principal.method() {
        AuthMethod::ApiKey { .. } => API_KEY,
        AuthMethod::Jwt { .. } => JWT,
        _ => NONE,
    }
}

/// The principal of every request when `auth.mode = "none"`: no tenant, roles or scopes.
pub(crate) fn anonymous() -> Principal {
    Principal::builder(ANONYMOUS, AuthMethod::Local).build()
}

/// The audience of tokens the gateway issues or accepts by default: the first of
/// `auth.audiences`, else the resource URL.
pub(crate) fn audience(config: &Config, resource: &str) -> String {
    config
        .auth
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| resource.to_owned())
}

/// The local issuer of `[auth.local_issuer]`, if configured: its key read from the PEM file,
/// its tokens addressed to [`audience`].
pub(crate) fn local_issuer(config: &Config, resource: &str) -> anyhow::Result<Option<LocalIssuer>> {
    let Some(section) = &config.auth.local_issuer else {
        return Ok(None);
    };
    let algorithm = section.algorithm.parse::<Algorithm>().map_err(|_| {
        anyhow::anyhow!(
            "auth.local_issuer.algorithm: unknown `{}`",
            section.algorithm
        )
    })?;
    let pem = std::fs::read(&section.signing_key_file).with_context(|| {
        format!(
            "auth.local_issuer.signing_key_file: cannot read {}",
            section.signing_key_file.display()
        )
    })?;
    let key = SigningKey::from_pem(algorithm, &pem).with_context(|| {
        format!(
            "auth.local_issuer.signing_key_file: {} is not a {} private key",
            section.signing_key_file.display(),
            section.algorithm
        )
    })?;
    let issuer = LocalIssuer::builder(section.issuer.as_str(), audience(config, resource))
        .key(key)
        .access_token_ttl(Duration::from_secs(section.token_ttl_secs))
        .build()
        .context("auth.local_issuer")?;
    Ok(Some(issuer))
}
