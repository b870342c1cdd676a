//! `token mint` (with the `[auth.local_issuer]` key) and `token inspect` (decode, then verify
//! against the configured issuer the way `serve` does; the token itself is never printed).

use std::io::{Read as _, Write};
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Subcommand;
use mcp_auth_core::issuer::IssueRequest;
use mcp_auth_core::{Authenticator as _, Credential, LocalIssuer, MemoryRevocationStore, Secret};
use serde_json::{Map, Value, json};

use super::{ConfigArg, Grants, Io, Verdict};
use crate::MCP_PATH;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Mint an access token with the `[auth.local_issuer]` key; prints the token only.
    Mint {
        #[command(flatten)]
        config: ConfigArg,
        /// The subject (`sub`).
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        grants: Grants,
        /// Lifetime in seconds (default `auth.local_issuer.token_ttl_secs`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl_secs: Option<u64>,
    },
    /// Decode a token (header and claims) and verify it against the configured issuer
    /// (signature, issuer, audience, lifetime); exit code 3 when it is not valid.
    Inspect {
        #[command(flatten)]
        config: ConfigArg,
        /// The token; read from standard input when absent (keeps it out of the shell
        /// history and the process list).
        token: Option<String>,
    },
}

impl TokenCommand {
    pub(super) async fn run(self, io: &mut Io<'_>) -> anyhow::Result<Verdict> {
        match self {
            Self::Mint {
                config,
                subject,
                grants,
                ttl_secs,
            } => {
                let config = config.load()?;
                let issuer = local_issuer(&config, ttl_secs)?;
                let mut request = IssueRequest::new(subject)
                    .roles(grants.roles.iter().map(String::as_str))
                    .scopes(grants.scopes_or_required(&config));
                if let Some(tenant) = grants.tenant {
                    request = request.tenant(tenant);
                }
                let token = issuer.issue(&request).context("minting the token")?;
                writeln!(io.out, "{}", token.token.expose())?;
                Ok(Verdict::Yes)
            }
            Self::Inspect { config, token } => {
                let config = config.load()?;
                let token = match token {
                    Some(token) => token,
                    None => {
                        let mut text = String::new();
                        std::io::stdin()
                            .read_to_string(&mut text)
                            .context("reading the token from standard input")?;
                        text
                    }
                };
                inspect(&config, token.trim(), io.out).await
            }
        }
    }
}

/// The configured local issuer, with the lifetime `ttl_secs` when given.
fn local_issuer(config: &Config, ttl_secs: Option<u64>) -> anyhow::Result<LocalIssuer> {
    let mut config = config.clone();
    let Some(section) = config.auth.local_issuer.as_mut() else {
        anyhow::bail!(
            "token mint signs with [auth.local_issuer]; this configuration has none (an OIDC issuer's tokens come from the issuer)"
        );
    };
    if let Some(ttl) = ttl_secs {
        section.token_ttl_secs = ttl;
    }
    let resource = format!("{}{MCP_PATH}", config.server.public_base());
    crate::auth::local_issuer(&config, &resource)?.context("auth.local_issuer is not configured")
}

/// A base64url JSON segment of a JWT.
fn segment(part: Option<&str>, what: &str) -> anyhow::Result<Map<String, Value>> {
    let part = part.with_context(|| format!("not a JWT: no {what}"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .with_context(|| format!("not a JWT: the {what} is not base64url"))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("not a JWT: the {what} is not a JSON object"))
}

async fn inspect(config: &Config, token: &str, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let mut parts = token.split('.');
    let header = segment(parts.next(), "header")?;
    let claims = segment(parts.next(), "payload")?;
    let resource = format!("{}{MCP_PATH}", config.server.public_base());
    // Without a token cache: this one token is verified once.
    let mut uncached = config.clone();
    uncached.auth.token_cache_capacity = 0;
    let bearer = crate::gateway::build_authenticator(
        &uncached,
        &resource,
        None,
        Arc::new(MemoryRevocationStore::new()),
    )
    .await?;
    let credential = Credential::Bearer(Secret::from(token));
    let verdict = match bearer.authenticator.authenticate(&credential).await {
        Ok(principal) => json!({
            "valid": true,
            "subject": principal.subject(),
            "tenant": principal.tenant(),
            "roles": principal.roles(),
            "scopes": principal.scopes(),
            "has_required_scope": config
                .auth
                .required_scope
                .as_deref()
                .map(|scope| principal.has_scope(scope)),
            "expires_in_secs": principal
                .expires_at()
                .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                .map(|d| d.as_secs()),
        }),
        Err(error) => json!({ "valid": false, "reason": error.to_string() }),
    };
    let valid = verdict["valid"] == true;
    let report = json!({
        "header": header,
        "claims": claims,
        "checked_against": bearer.authorization_server,
        "verification": verdict,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    Ok(if valid { Verdict::Yes } else { Verdict::No })
}
