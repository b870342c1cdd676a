//! # mcp-gateway: the example MCP gateway
//!
//! Wires the workspace crates in front of upstream MCP servers: every `POST /mcp` is
//! authenticated ([`mcp_auth_core`]: a bearer JWT of the OIDC or local issuer, an Entra ID
//! token or a token of the OAuth proxy MCP clients sign in through ([`mcp_auth_azure`],
//! `[auth.azure]`), or an API key), rate limited ([`mcp_ratelimit`]), parsed once,
//! authorized ([`mcp_rbac`], including tenant-bound tool arguments and filtered
//! `tools/list`), forwarded through the upstream registry (HTTP upstreams by one POST per
//! request on a shared session, stdio upstreams through an rmcp client, in-process tools by a
//! direct handler call; per-upstream timeouts, health,
//! reconnect backoff and circuit breaker; name prefixes with several upstreams; the caller's
//! token is never forwarded, an identity assertion signed by the gateway may be), audited
//! ([`mcp_audit`], without blocking) and measured ([`mcp_metrics`]). The SQL stores (audit,
//! API keys) draw their connections from [`mcp_pool`] operation classes (`[pools]`).
//!
//! The gateway holds configuration, wiring and MCP protocol handling only; every decision is
//! taken by a library crate.
//!
//! * [`config`]: the TOML configuration and its `MCP_GATEWAY_` environment overrides.
//! * [`Gateway`]: builds the whole request path from a [`Config`] and serves it with graceful
//!   shutdown.
//! * [`demo`]: `mcp-gateway demo`, a self-contained gateway with a local issuer and an
//!   in-process demo upstream.
//! * [`cli`]: the command line (`serve`, `demo`, `validate`, `token`, `policy`, `keys`,
//!   `audit`).
//! * [`audit_query`]: the audit query parameters shared by the admin API and the CLI.
//!
//! Endpoints: `POST /mcp` (Streamable HTTP, stateless or stateful, JSON or SSE responses),
//! `DELETE /mcp` (ends a session), the admin API under `/api/v1/admin/`, `GET /health`,
//! `GET /health/ready`, `GET /health/security`, `GET /metrics`, the RFC 9728 metadata at
//! `/.well-known/oauth-protected-resource` and `/.well-known/oauth-protected-resource/mcp`,
//! and the identity-assertion keys at [`GATEWAY_JWKS_PATH`]; with `[auth.azure.proxy]`, the
//! OAuth proxy's endpoints (RFC 8414 metadata, `/register`, `/authorize`, `/callback`,
//! `/token`, `/revoke`); over plain HTTP, or HTTPS when `[server.tls]` names a certificate
//! (rustls).

mod api_keys;
pub mod audit_query;
mod auth;
mod azure;
pub mod cli;
pub mod config;
pub mod demo;
mod gateway;
mod hardening;
mod pools;
mod rpc;
mod session;
mod tls;
mod upstream;

pub use config::Config;
pub use gateway::{BuildOptions, Gateway, MCP_PATH, MCP_SESSION_ID, ShutdownReport, build_policy};
pub use hardening::{Hardened, HardenedFuture};
pub use tls::install_crypto_provider;
pub use upstream::{GATEWAY_JWKS_PATH, UpstreamError};

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
