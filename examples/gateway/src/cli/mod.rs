//! The `mcp-gateway` command line: `serve`, `demo`, `validate`, and the operator commands
//! `token`, `policy`, `keys` and `audit`, which work on the configuration file and the
//! stores it names directly (no running gateway needed).
//!
//! [`run`] writes results to `out` and notes (next-page cursors, what a command did) to
//! `err`; `main` maps its [`Verdict`] and errors to exit codes (see [`EXIT_CODES`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

mod audit;
mod keys;
mod policy;
mod serve;
mod token;

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES: &str = "Exit codes: 0 success (allowed, valid, intact); 1 error (bad \
configuration, unreachable store, ...); 2 bad command line; 3 a negative answer (policy \
check denied, token invalid, audit chain broken).";

/// An MCP gateway: authentication, rate limits, RBAC, audit and metrics in front of an
/// upstream MCP server.
#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The configuration file option shared by the commands that read one.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// The configuration file (TOML; `MCP_GATEWAY_*` variables override it).
    #[arg(
        long,
        short,
        env = "MCP_GATEWAY_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config)?)
    }
}

/// The tenant, roles and scopes of a token, an API key or a caller.
#[derive(Debug, Clone, Args)]
pub struct Grants {
    /// The tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// A role (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// A scope (repeatable). Tokens and policy questions default to `auth.required_scope`;
    /// an API key needs it among its scopes to call tools.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
}

impl Grants {
    /// The scopes given, else the configuration's required scope (if any).
    fn scopes_or_required(&self, config: &Config) -> Vec<String> {
        if self.scopes.is_empty() {
            config.auth.required_scope.iter().cloned().collect()
        } else {
            self.scopes.clone()
        }
    }
}

/// Where a command writes: results to `out`, notes to `err`.
struct Io<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Serve(ConfigArg),
    /// Run a self-contained demo: local issuer, demo upstream, SQLite audit; prints tokens.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the audit database and spool live.
        #[arg(long, default_value = ".mcp-gateway-demo")]
        data_dir: PathBuf,
    },
    /// Check a configuration file, its policy, keys and certificates without serving.
    Validate(ConfigArg),
    /// Mint tokens with the configured local issuer, or inspect a token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Ask the configured policy whether a caller may make a call, and why.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Manage API keys in the configured store (`[auth.api_keys]`, SQLite or PostgreSQL).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Query, verify and export the configured audit store (SQLite or PostgreSQL).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// How a command that answers a question came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Done, or the answer is yes (allowed, valid, intact): exit code 0.
    Yes,
    /// The answer is no (denied, invalid, tampered): exit code 3.
    No,
}

/// Runs `cli`, writing results to `out` and notes to `err`.
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Verdict> {
    let io = &mut Io { out, err };
    match cli.command {
        Command::Serve(config) => serve::serve(&config.load()?).await,
        Command::Demo { listen, data_dir } => serve::demo(listen, data_dir).await,
        Command::Validate(config) => serve::validate(&config.load()?, io),
        Command::Token(command) => command.run(io).await,
        Command::Policy(command) => command.run(io),
        Command::Keys(command) => command.run(io).await,
        Command::Audit(command) => command.run(io).await,
    }
}
