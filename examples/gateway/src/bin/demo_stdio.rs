//! `mcp-gateway-demo-stdio`: the demo tools (`echo`, `add`, `tenant_data`, `admin.stats`)
//! served over stdin and stdout, to try an upstream of `kind = "stdio"`:
//!
//! ```toml
//! [[upstreams]]
//! name = "demo"
//! kind = "stdio"
//! command = "mcp-gateway-demo-stdio"
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use mcp_gateway::demo::{DemoTools, UpstreamCounters};
use rmcp::ServiceExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let tools = DemoTools::new(Arc::new(UpstreamCounters::default()));
    let served = match tools.serve((tokio::io::stdin(), tokio::io::stdout())).await {
        Ok(running) => running.waiting().await.map(drop).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "mcp-gateway-demo-stdio: {error}");
            ExitCode::FAILURE
        }
    }
}
