//! `example-rmcp-server`: an rmcp Streamable HTTP server behind the mcp-auth-core auth layer.
//!
//! ```text
//! cargo run -p example-rmcp-server [-- --bind 127.0.0.1:8080 --public-base http://127.0.0.1:8080]
//! ```
//!
//! At start-up it prints a demo token; call the `whoami` tool with it:
//!
//! ```text
//! curl -s http://127.0.0.1:8080/mcp -H "authorization: Bearer $TOKEN" \
//!   -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
//!   -H 'mcp-protocol-version: 2025-06-18' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Command line; every option can also come from the environment.
#[derive(Debug, Parser)]
#[command(
    about = "An rmcp Streamable HTTP server whose `whoami` tool reads the caller's Principal"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EXAMPLE_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Public base URL (scheme and authority) clients use; default `http://<bind>`.
    #[arg(long, env = "EXAMPLE_PUBLIC_BASE")]
    public_base: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr so that stdout carries only the demo token.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "example-rmcp-server failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), mcp_auth_core::BoxError> {
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let local = listener.local_addr()?;
    let public_base = args
        .public_base
        .unwrap_or_else(|| format!("http://{local}"));
    let demo = example_rmcp_server::build(&public_base)?;
    tracing::info!(
        mcp = %format!("{public_base}{}", example_rmcp_server::MCP_PATH),
        metadata = demo.metadata.resource_metadata_url(),
        "listening on {local}; Ctrl-C to stop"
    );
    print_demo_token(demo.demo_token.expose());
    example_rmcp_server::serve(listener, demo.router, async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C; stopping");
        }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}

/// Prints the demo token so a user can call the server right away.
///
/// Printing a token is acceptable only because this one comes from the local development
/// issuer created a moment ago, whose keys live in this process and vanish with it; never
/// print tokens of a real identity provider.
#[expect(
    clippy::print_stdout,
    reason = "the demo token is the program's output"
)]
fn print_demo_token(token: &str) {
    println!("demo token (local development issuer, valid 8 hours):\n{token}");
}
