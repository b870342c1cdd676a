//! `mcp-gateway demo`: a local issuer, the demo tools (`echo`, `add`, `tenant_data`,
//! `admin.stats`) served in-process (an upstream of `kind = "in-process"`: no HTTP hop),
//! SQLite audit in a local data directory and in-memory limits. [`DemoUpstream`] serves the
//! same tools over Streamable HTTP on a loopback port, for the end-to-end tests.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{
    SessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::gateway::{BuildOptions, Gateway, MCP_PATH};

/// The scope demo tokens carry and the demo gateway requires.
pub const DEMO_SCOPE: &str = "mcp:tools";

/// Lifetime of the printed demo tokens.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// What the demo upstream counts, for the tests: tool calls executed and requests that
/// arrived with an `Authorization` header (never the client's token; with an identity
/// assertion configured, the gateway's own).
#[derive(Default)]
pub struct UpstreamCounters {
    /// Tool calls the upstream executed.
    pub tool_calls: AtomicU64,
    /// HTTP requests the upstream received.
    pub requests: AtomicU64,
    /// HTTP requests that carried an `Authorization` header.
    pub authorization_headers: AtomicU64,
    /// The `Authorization` header of the latest request that carried one.
    pub last_authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for UpstreamCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCounters")
            .field("tool_calls", &self.tool_calls)
            .field("requests", &self.requests)
            .field("authorization_headers", &self.authorization_headers)
            .finish_non_exhaustive()
    }
}

/// `echo` arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to return.
    pub text: String,
}

/// `add` arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: f64,
    /// Second addend.
    pub b: f64,
}

/// `tenant_data` arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct TenantArgs {
    /// The tenant whose records to return; the gateway binds it to the caller's tenant.
    pub tenant: String,
}

/// The demo MCP server.
#[derive(Clone, Debug)]
pub struct DemoTools {
    tool_router: ToolRouter<Self>,
    counters: Arc<UpstreamCounters>,
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

#[tool_router]
impl DemoTools {
    /// A server counting into `counters`.
    pub fn new(counters: Arc<UpstreamCounters>) -> Self {
        Self {
            tool_router: Self::tool_router(),
            counters,
        }
    }

    fn count(&self) {
        self.counters.tool_calls.fetch_add(1, Ordering::Relaxed);
    }

    #[tool(description = "Returns the text it is given.")]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> Result<CallToolResult, ErrorData> {
        self.count();
        Ok(text_result(args.text))
    }

    #[tool(description = "Adds two numbers.")]
    fn add(&self, Parameters(args): Parameters<AddArgs>) -> Result<CallToolResult, ErrorData> {
        self.count();
        Ok(text_result((args.a + args.b).to_string()))
    }

    #[tool(
        description = "The records of one tenant. The gateway only lets a caller ask for its own tenant."
    )]
    fn tenant_data(
        &self,
        Parameters(args): Parameters<TenantArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.count();
        let records = serde_json::json!({
            "tenant": args.tenant,
            "records": [
                { "id": 1, "name": format!("{}-invoice-1", args.tenant) },
                { "id": 2, "name": format!("{}-invoice-2", args.tenant) },
            ],
        });
        Ok(text_result(records.to_string()))
    }

    #[tool(
        name = "admin.stats",
        description = "Upstream statistics; only the admin role may call it."
    )]
    fn admin_stats(&self) -> Result<CallToolResult, ErrorData> {
        self.count();
        let stats = serde_json::json!({
            "tool_calls": self.counters.tool_calls.load(Ordering::Relaxed),
            "requests": self.counters.requests.load(Ordering::Relaxed),
        });
        Ok(text_result(stats.to_string()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("mcp-gateway demo upstream: echo, add, tenant_data, admin.stats")
    }
}

/// The demo upstream, served over Streamable HTTP on a loopback port (stateless with JSON
/// answers, or stateful).
#[derive(Debug)]
pub struct DemoUpstream {
    addr: SocketAddr,
    counters: Arc<UpstreamCounters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn record_headers(
    axum::extract::State(counters): axum::extract::State<Arc<UpstreamCounters>>,
    request: Request,
    next: Next,
) -> Response {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        counters
            .authorization_headers
            .fetch_add(1, Ordering::Relaxed);
        *counters
            .last_authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    next.run(request).await
}

impl DemoUpstream {
    /// Starts the upstream on `127.0.0.1` with an OS-chosen port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the upstream on `addr` (to bring a stopped one back at its address).
    pub async fn start_at(addr: SocketAddr) -> std::io::Result<Self> {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None);
        Self::serve(addr, config, Arc::new(NeverSessionManager::default())).await
    }

    /// Starts a stateful upstream on `addr`: `initialize` opens a session (`Mcp-Session-Id`,
    /// kept in memory, so a restart forgets it), answers come as SSE.
    pub async fn start_stateful_at(addr: SocketAddr) -> std::io::Result<Self> {
        let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
        Self::serve(addr, config, Arc::new(LocalSessionManager::default())).await
    }

    async fn serve<M: SessionManager>(
        addr: SocketAddr,
        config: StreamableHttpServerConfig,
        sessions: Arc<M>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(UpstreamCounters::default());
        let tools_counters = Arc::clone(&counters);
        let service = StreamableHttpService::new(
            move || Ok(DemoTools::new(Arc::clone(&tools_counters))),
            sessions,
            config,
        );
        let router = Router::new().route_service(MCP_PATH, service).layer(
            axum::middleware::from_fn_with_state(Arc::clone(&counters), record_headers),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "demo upstream failed");
            }
        });
        Ok(Self {
            addr,
            counters,
            stop: Some(stop),
            task,
        })
    }

    /// The upstream's MCP endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}{MCP_PATH}", self.addr)
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<UpstreamCounters> {
        &self.counters
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: no new connections, idle ones closed, in-flight requests finished
    /// (within five seconds).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The demo's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoOptions {
    /// Where the gateway listens (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where the SQLite audit database and the spool live (default `./.mcp-gateway-demo`).
    pub data_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".mcp-gateway-demo"),
        }
    }
}

impl DemoOptions {
    /// Options listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self { listen, data_dir }
    }
}

/// The demo gateway's configuration: the in-process demo tools, public at `base`.
pub fn demo_config(base: &str, data_dir: &std::path::Path) -> anyhow::Result<Config> {
    let text = format!(
        r#"
        [server]
        public_url = "{base}"
        resource_name = "mcp-gateway demo"

        [auth]
        required_scope = "{DEMO_SCOPE}"

        [rbac]
        default_roles = true
        tenant_bound_arguments = [{{ tool = "tenant_data", argument = "tenant" }}]

        [rate_limit]
        global = "2000/s"
        per_ip = "1200/min burst 200"
        per_user = "600/min burst 100"

        [[upstreams]]
        name = "demo"
        kind = "in-process"
        timeout_secs = 30

        [audit]
        sink = "sqlite"
        path = {path}
        spool_dir = {spool}
        "#,
        path = toml::Value::String(data_dir.join("audit.db").display().to_string()),
        spool = toml::Value::String(data_dir.join("spool").display().to_string()),
    );
    Ok(Config::from_toml_with_env(&text, "demo configuration", [])?)
}

/// Tokens the demo prints: `(who, token)`.
pub fn demo_tokens(issuer: &LocalIssuer) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mint = |subject: &str, tenant: &str, role: &str| {
        issuer
            .issue(
                &IssueRequest::new(subject)
                    .tenant(tenant)
                    .roles([role])
                    .scopes([DEMO_SCOPE]),
            )
            .map(|t| t.token.expose().to_owned())
    };
    Ok(vec![
        (
            "admin (tenant acme, role admin)",
            mint("admin", "acme", "admin")?,
        ),
        (
            "alice (tenant acme, role user)",
            mint("alice", "acme", "user")?,
        ),
        (
            "bob (tenant globex, role user)",
            mint("bob", "globex", "user")?,
        ),
    ])
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let issuer = Arc::new(
        LocalIssuer::builder(base.as_str(), format!("{base}{MCP_PATH}"))
            .access_token_ttl(DEMO_TOKEN_TTL)
            .build()?,
    );
    let config = demo_config(&base, &options.data_dir)?;
    let tokens = demo_tokens(&issuer)?;
    let gateway = Gateway::build(&config, BuildOptions::with_local_issuer(issuer)).await?;
    print_banner(&base, &options.data_dir, &tokens)?;
    let report = gateway.serve(listener, crate::shutdown_signal()).await?;
    tracing::info!(
        drained = report.drained,
        audit_events = report.audit_events_written,
        "demo stopped"
    );
    Ok(())
}

fn print_banner(
    base: &str,
    data_dir: &std::path::Path,
    tokens: &[(&'static str, String)],
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let user = tokens.get(1).map_or("", |(_, t)| t.as_str());
    writeln!(out, "mcp-gateway demo: {base}{MCP_PATH}")?;
    writeln!(
        out,
        "  in-process tools: echo, add, tenant_data (tenant-bound), admin.stats (admin only)"
    )?;
    writeln!(
        out,
        "  audit: SQLite at {}",
        data_dir.join("audit.db").display()
    )?;
    writeln!(
        out,
        "  metrics: {base}/metrics   health: {base}/health/ready"
    )?;
    writeln!(out)?;
    for (who, token) in tokens {
        writeln!(out, "token for {who}:\n{token}\n")?;
    }
    writeln!(out, "Call a tool as alice:")?;
    writeln!(
        out,
        "curl -s {base}{MCP_PATH} -H 'Authorization: Bearer {user}' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"tenant_data\",\"arguments\":{{\"tenant\":\"acme\"}}}}}}'"
    )?;
    writeln!(out)?;
    writeln!(out, "MCP client configuration (e.g. .mcp.json):")?;
    let snippet = serde_json::json!({
        "mcpServers": {
            "mcp-gateway-demo": {
                "type": "http",
                "url": format!("{base}{MCP_PATH}"),
                "headers": { "Authorization": format!("Bearer {user}") },
            }
        }
    });
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    )?;
    writeln!(
        out,
        "\nPress Ctrl-C to stop (the audit trail is flushed on exit)."
    )?;
    out.flush()
}
