//! `mcp-gateway`: the command line (`serve`, `demo`, `validate`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_gateway::config::{Config, LogFormatKind};
use mcp_gateway::demo::{self, DemoOptions};
use mcp_gateway::{BuildOptions, Gateway};
use mcp_metrics::logging::LogConfig;

/// An MCP gateway: authentication, rate limits, RBAC, audit and metrics in front of an
/// upstream MCP server.
#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file (TOML; `MCP_GATEWAY_*` variables override it).
    Serve {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "MCP_GATEWAY_CONFIG",
            default_value = "gateway.toml"
        )]
        config: PathBuf,
    },
    /// Run a self-contained demo: local issuer, demo upstream, SQLite audit; prints tokens.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the audit database and spool live.
        #[arg(long, default_value = ".mcp-gateway-demo")]
        data_dir: PathBuf,
    },
    /// Check a configuration file and its policy without serving.
    Validate {
        /// The configuration file.
        #[arg(
            long,
            short,
            env = "MCP_GATEWAY_CONFIG",
            default_value = "gateway.toml"
        )]
        config: PathBuf,
    },
}

fn init_logging(format: LogFormatKind, filter: &str) {
    let config = match format {
        LogFormatKind::Json => LogConfig::json(),
        _ => LogConfig::human(),
    }
    .filter(filter);
    // A second initialisation (never in this binary) would only fail to replace the first.
    let _ = mcp_metrics::logging::init(&config);
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            init_logging(config.logging.format, &config.logging.filter);
            let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
            let gateway = Gateway::build(&config, BuildOptions::default()).await?;
            tracing::info!(
                listen = %listener.local_addr()?,
                resource = gateway.metadata().resource(),
                "mcp-gateway serving"
            );
            let report = gateway
                .serve(listener, mcp_gateway::shutdown_signal())
                .await?;
            tracing::info!(
                drained = report.drained,
                audit_events = report.audit_events_written,
                audit_spool_pending = report.audit_spool_pending,
                "mcp-gateway stopped"
            );
            Ok(())
        }
        Command::Demo { listen, data_dir } => {
            init_logging(LogFormatKind::Human, "info");
            demo::run(DemoOptions::new(listen, data_dir)).await
        }
        Command::Validate { config } => {
            let config = Config::load(&config)?;
            let policy = mcp_gateway::build_policy(&config)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "configuration OK")?;
            writeln!(
                out,
                "  resource: {}{}",
                config.server.public_base(),
                mcp_gateway::MCP_PATH
            )?;
            match &config.auth.oidc {
                Some(oidc) => writeln!(out, "  issuer: {}", oidc.issuer)?,
                None => writeln!(
                    out,
                    "  issuer: none configured (serve will refuse to start)"
                )?,
            }
            for upstream in &config.upstreams {
                writeln!(out, "  upstream {}: {}", upstream.name, upstream.url)?;
            }
            let roles: Vec<&str> = policy.role_names().collect();
            writeln!(
                out,
                "  policy: {} roles ({}), {} rules",
                roles.len(),
                roles.join(", "),
                policy.rules().len()
            )?;
            if config.auth.oidc.is_none() {
                anyhow::bail!("auth.oidc is required to serve");
            }
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr().lock(), "mcp-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}
