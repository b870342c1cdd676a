//! `serve`, `demo` and `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;

use mcp_metrics::logging::LogConfig;

use super::{Io, Verdict};
use crate::config::{AuthMode, Config, LogFormatKind};
use crate::demo::{self, DemoOptions};
use crate::{BuildOptions, Gateway, MCP_PATH};

fn init_logging(format: LogFormatKind, filter: &str) {
    let config = match format {
        LogFormatKind::Json => LogConfig::json(),
        _ => LogConfig::human(),
    }
    .filter(filter);
    // A second initialisation (never in this binary) would only fail to replace the first.
    let _ = mcp_metrics::logging::init(&config);
}

/// `serve`: until SIGINT/SIGTERM.
pub(super) async fn serve(config: &Config) -> anyhow::Result<Verdict> {
    init_logging(config.logging.format, &config.logging.filter);
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    let gateway = Gateway::build(config, BuildOptions::default()).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = gateway.is_tls(),
        resource = gateway.metadata().resource(),
        "mcp-gateway serving"
    );
    let report = gateway.serve(listener, crate::shutdown_signal()).await?;
    tracing::info!(
        drained = report.drained,
        audit_events = report.audit_events_written,
        audit_spool_pending = report.audit_spool_pending,
        "mcp-gateway stopped"
    );
    Ok(Verdict::Yes)
}

/// `demo`.
pub(super) async fn demo(listen: SocketAddr, data_dir: PathBuf) -> anyhow::Result<Verdict> {
    // rmcp's per-connection notices (the in-process tools' handshake) would precede the
    // banner with the tokens.
    init_logging(LogFormatKind::Human, "info,rmcp=warn");
    demo::run(DemoOptions::new(listen, data_dir)).await?;
    Ok(Verdict::Yes)
}

/// `validate`: what can be checked without serving: the configuration (already parsed and
/// validated by the caller), the policy, the local issuer's key, the TLS certificate and
/// key, the API-key pepper. Warnings for the switches that weaken the request path.
pub(super) fn validate(config: &Config, io: &mut Io<'_>) -> anyhow::Result<Verdict> {
    let policy = crate::build_policy(config)?;
    let resource = format!("{}{MCP_PATH}", config.server.public_base());
    let local = crate::auth::local_issuer(config, &resource)?;
    if let Some(tls) = &config.server.tls {
        crate::tls::acceptor(tls)?;
    }
    if let Some(keys) = &config.auth.api_keys {
        crate::api_keys::check(keys)?;
    }
    writeln!(io.out, "configuration OK")?;
    writeln!(io.out, "  resource: {resource}")?;
    match (&config.auth.oidc, &local) {
        (Some(oidc), _) => writeln!(io.out, "  issuer: {}", oidc.issuer)?,
        (None, None) if config.auth.azure.is_some() => azure_lines(config, io)?,
        (None, Some(local)) => writeln!(
            io.out,
            "  issuer: {} (local, {:?}, key id {})",
            local.issuer(),
            local.algorithm(),
            local.kid()
        )?,
        (None, None) => writeln!(
            io.out,
            "  issuer: none configured (serve will refuse to start)"
        )?,
    }
    if let Some(keys) = &config.auth.api_keys {
        writeln!(
            io.out,
            "  api keys: {:?} store, prefix {}",
            keys.store, keys.prefix
        )?;
    }
    if config.server.tls.is_some() {
        writeln!(io.out, "  tls: certificate and key load")?;
    }
    for upstream in &config.upstreams {
        writeln!(
            io.out,
            "  upstream {}: {}",
            upstream.name,
            upstream.target()
        )?;
    }
    let roles: Vec<&str> = policy.role_names().collect();
    writeln!(
        io.out,
        "  policy: {} roles ({}), {} rules",
        roles.len(),
        roles.join(", "),
        policy.rules().len()
    )?;
    let warnings = [
        (
            config.auth.mode == AuthMode::None,
            "auth.mode = \"none\": requests are NOT authenticated (load tests only)",
        ),
        (
            config.rbac.allow_all,
            "rbac.allow_all: MCP requests are not checked by the policy",
        ),
        (
            !config.audit.enabled,
            "audit.enabled = false: nothing is audited",
        ),
        (
            !config.metrics.enabled,
            "metrics.enabled = false: no request metrics, /metrics is 404",
        ),
        (
            config.auth.token_cache_capacity == 0,
            "auth.token_cache_capacity = 0: every token's signature is verified on every request",
        ),
    ];
    for (_, warning) in warnings.iter().filter(|(on, _)| *on) {
        writeln!(io.err, "warning: {warning}")?;
    }
    if config.auth.oidc.is_none() && local.is_none() && config.auth.azure.is_none() {
        anyhow::bail!("auth.oidc, auth.local_issuer or auth.azure is required to serve");
    }
    Ok(Verdict::Yes)
}

/// What `validate` says about `[auth.azure]`: the tenants and app, the proxy's endpoints
/// and the redirect URI to register in Entra.
fn azure_lines(config: &Config, io: &mut Io<'_>) -> anyhow::Result<()> {
    let Some(azure) = &config.auth.azure else {
        return Ok(());
    };
    let entra = &azure.entra;
    let tenants = if entra.allowed_tenants.is_empty() {
        String::new()
    } else {
        format!(" (allowed: {})", entra.allowed_tenants.join(", "))
    };
    writeln!(
        io.out,
        "  issuer: Entra ID, tenant {}{tenants}, app {}, {} cloud",
        entra.tenant,
        entra.client_id,
        entra.cloud.authority()
    )?;
    match &azure.proxy {
        Some(proxy) => {
            writeln!(
                io.out,
                "  oauth proxy: {} (scopes {})",
                proxy.issuer,
                proxy.scopes.supported.join(" ")
            )?;
            writeln!(
                io.out,
                "  entra redirect uri: {}/callback",
                proxy.issuer.trim_end_matches('/')
            )?;
        }
        None => writeln!(
            io.out,
            "  oauth proxy: off (only Entra tokens callers obtain themselves)"
        )?,
    }
    Ok(())
}
