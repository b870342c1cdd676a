//! # mcp-gateway: the example MCP gateway
//!
//! Wires the workspace crates in front of an upstream MCP server: every `POST /mcp` is
//! authenticated ([`mcp_auth_core`]), rate limited ([`mcp_ratelimit`]), parsed once,
//! authorized ([`mcp_rbac`], including tenant-bound tool arguments and filtered
//! `tools/list`), forwarded through an rmcp client (the caller's token is never forwarded),
//! audited ([`mcp_audit`], without blocking) and measured ([`mcp_metrics`]).
//!
//! The gateway holds configuration, wiring and MCP protocol handling only; every decision is
//! taken by a library crate.
//!
//! * [`config`]: the TOML configuration and its `MCP_GATEWAY_` environment overrides.
//! * [`Gateway`]: builds the whole request path from a [`Config`] and serves it with graceful
//!   shutdown.
//! * [`demo`]: `mcp-gateway demo`, a self-contained gateway with a local issuer and an
//!   in-process demo upstream.
//!
//! Endpoints: `POST /mcp` (Streamable HTTP, stateless or stateful, JSON or SSE responses),
//! `DELETE /mcp` (ends a session), the admin API under `/api/v1/admin/`, `GET /health`,
//! `GET /health/ready`, `GET /health/security`, `GET /metrics`, and the RFC 9728 metadata at
//! `/.well-known/oauth-protected-resource` and `/.well-known/oauth-protected-resource/mcp`.

pub mod config;
pub mod demo;
mod gateway;
mod hardening;
mod session;
mod upstream;

pub use config::Config;
pub use gateway::{BuildOptions, Gateway, MCP_PATH, MCP_SESSION_ID, ShutdownReport, build_policy};
pub use upstream::{Upstream, UpstreamError};

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
