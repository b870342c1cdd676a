//! An rmcp Streamable HTTP server behind `mcp_auth_core::AuthLayer`, whose `whoami` tool reads
//! the caller's `Principal`. The binary (`src/main.rs`) and the tests share this code.
//!
//! The layout of the app:
//!
//! * `POST /mcp`: the MCP endpoint (rmcp `StreamableHttpService`, stateless, JSON responses),
//!   behind the [`AuthLayer`]: a request without a valid bearer token never reaches rmcp.
//! * `GET /.well-known/oauth-protected-resource[/mcp]`: the RFC 9728 metadata, public.
//!
//! Tokens are verified by a [`JwtAuthenticator`] that trusts the keys of a [`LocalIssuer`]
//! created at start-up, which also mints the demo token. A real deployment replaces the
//! local issuer by its identity provider's JWKS (`mcp_auth_core::jwks`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
use mcp_auth_core::{AuthLayer, BoxError, Principal, ProtectedResourceMetadata, Secret};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use tokio::net::TcpListener;

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// The scope a client needs; named in 401 challenges and in the metadata.
pub const SCOPE: &str = "mcp:tools";

/// Lifetime of the demo token: long enough for a demo session.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// What `whoami` returns: the authenticated caller.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Caller {
    /// The subject (`sub`).
    pub subject: String,
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// The roles.
    pub roles: Vec<String>,
    /// The scopes.
    pub scopes: Vec<String>,
}

impl From<&Principal> for Caller {
    fn from(principal: &Principal) -> Self {
        Self {
            subject: principal.subject().to_owned(),
            tenant: principal.tenant().map(str::to_owned),
            roles: principal.roles().iter().cloned().collect(),
            scopes: principal.scopes().iter().cloned().collect(),
        }
    }
}

/// The MCP server: one tool, `whoami`.
#[derive(Clone, Debug)]
pub struct WhoAmI {
    tool_router: ToolRouter<Self>,
}

impl Default for WhoAmI {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl WhoAmI {
    /// A server with its tools.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// rmcp puts the HTTP request head into the request context; the auth layer put the
    /// `Principal` into that head's extensions.
    #[tool(description = "Who is calling: the subject, tenant, roles and scopes of the caller.")]
    fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Caller>, ErrorData> {
        let principal = parts.extensions.get::<Principal>().ok_or_else(|| {
            ErrorData::internal_error("no authenticated principal on the request", None)
        })?;
        Ok(Json(Caller::from(principal)))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for WhoAmI {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The assembled demo: the router to serve and the token to call it with.
#[derive(Debug)]
pub struct Demo {
    /// The axum app: the protected MCP endpoint and the public metadata.
    pub router: Router,
    /// A token minted by the local issuer for `demo-user` (tenant `demo`, role `user`,
    /// scope `mcp:tools`).
    pub demo_token: Secret,
    /// The RFC 9728 metadata document.
    pub metadata: ProtectedResourceMetadata,
}

/// Builds the demo for a server reachable at `public_base` (scheme and authority, for
/// example `http://127.0.0.1:8080`); the MCP endpoint is `{public_base}/mcp`.
pub fn build(public_base: &str) -> Result<Demo, BoxError> {
    let public_base = public_base.trim_end_matches('/');
    let resource = format!("{public_base}{MCP_PATH}");

    // The local issuer stands in for an identity provider. Its audience is the resource
    // URL (RFC 8707), so a token for another resource is refused here.
    let issuer = LocalIssuer::builder(public_base, resource.as_str())
        .access_token_ttl(DEMO_TOKEN_TTL)
        .build()?;
    let demo_token = issuer
        .issue(
            &IssueRequest::new("demo-user")
                .tenant("demo")
                .roles(["user"])
                .scopes([SCOPE]),
        )?
        .token;

    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .algorithms([issuer.algorithm()])
        .build()?;
    let keys = KeySet::from_jwk_set(&issuer.jwks(), 8);
    let authenticator = JwtAuthenticator::builder(validator, Arc::new(keys)).build();

    let metadata = ProtectedResourceMetadata::builder(resource.as_str())
        .authorization_server(issuer.issuer())
        .scopes_supported([SCOPE])
        .resource_name("mcp-auth example: whoami")
        .build()?;

    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None);
    // rmcp accepts only loopback Host headers by default (DNS-rebinding defence); a public
    // base URL adds its own authority.
    let public_authority = public_base
        .parse::<http::Uri>()?
        .authority()
        .map(|a| a.as_str().to_owned());
    if let Some(authority) = public_authority {
        let mut hosts = config.allowed_hosts.clone();
        hosts.push(authority);
        config = config.with_allowed_hosts(hosts);
    }
    let mcp = StreamableHttpService::new(
        || Ok(WhoAmI::new()),
        Arc::new(NeverSessionManager::default()),
        config,
    );

    let auth =
        AuthLayer::new(authenticator).challenge(metadata.challenge_config().default_scope(SCOPE));
    // `route_layer` wraps only the MCP route: the metadata merged afterwards stays public.
    let router = Router::new()
        .route_service(MCP_PATH, mcp)
        .route_layer(auth)
        .merge(metadata.router());

    Ok(Demo {
        router,
        demo_token,
        metadata,
    })
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
