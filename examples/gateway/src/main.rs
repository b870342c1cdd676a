//! `mcp-gateway`: the command line (see [`mcp_gateway::cli`]).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use mcp_gateway::cli::{self, Cli, Verdict};

/// mimalloc instead of glibc's malloc: the gateway allocates and frees many small, short-lived
/// objects per request on several threads (`docs/benchmarks/loadtest.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    mcp_gateway::install_crypto_provider();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match cli::run(cli, &mut out, &mut err).await {
        Ok(Verdict::Yes) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(error) => {
            let _ = writeln!(err, "mcp-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}
