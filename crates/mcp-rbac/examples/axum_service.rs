//! An axum service guarded by mcp-rbac alone: `cargo run -p mcp-rbac --features tower --example axum_service`.
//!
//! Identity comes from `X-User`, `X-Tenant`, `X-Roles` and `X-Scopes` headers — a stand-in for
//! a real authentication layer (such as mcp-auth-core's), so that the example needs nothing
//! but mcp-rbac. Never trust such headers in production.
//!
//! ```text
//! curl -X POST localhost:3000/tools/git.log -H 'X-User: dev' -H 'X-Roles: developer'     # 200
//! curl -X POST localhost:3000/tools/system.reboot -H 'X-User: dev' -H 'X-Roles: developer' # 403
//! curl localhost:3000/tools -H 'X-User: dev' -H 'X-Roles: developer'                        # filtered list
//! ```

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mcp_rbac::{BasicSubject, ListKind, McpCall, Policy, PolicyHandle, RbacLayer};

/// The tools this service offers.
const TOOLS: &[&str] = &[
    "git.log",
    "git.commit",
    "fs/read_file",
    "fs/write_file",
    "monitoring.cpu",
    "system.reboot",
    "deploy.run",
];

/// Demo authentication: builds the subject from headers.
async fn authenticate(mut request: Request, next: Next) -> Response {
    match subject_from_headers(request.headers()) {
        Some(subject) => {
            request.extensions_mut().insert(subject);
            next.run(request).await
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn subject_from_headers(headers: &HeaderMap) -> Option<BasicSubject> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut subject = BasicSubject::new(header("x-user")?);
    if let Some(tenant) = header("x-tenant") {
        subject = subject.tenant(tenant);
    }
    for role in header("x-roles").unwrap_or_default().split(',') {
        if !role.trim().is_empty() {
            subject = subject.role(role.trim());
        }
    }
    for scope in header("x-scopes").unwrap_or_default().split_whitespace() {
        subject = subject.scope(scope);
    }
    Some(subject)
}

/// Maps `POST /tools/{name}` to the MCP call `tools/call` on `name`.
fn call_from_path(request: &Request<Body>) -> Option<McpCall> {
    let name = request.uri().path().strip_prefix("/tools/")?;
    Some(McpCall::new("tools/call", name))
}

async fn call_tool(Path(name): Path<String>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "tool": name, "result": "done" }))
}

/// The plain API: filter the tool list for the caller.
async fn list_tools(
    State(policy): State<PolicyHandle>,
    Extension(subject): Extension<BasicSubject>,
) -> Json<Vec<&'static str>> {
    let visible = policy
        .load()
        .filter(&subject, ListKind::Tools, None, TOOLS.to_vec(), |t| t);
    Json(visible)
}

/// The application: tool calls behind the RBAC layer, the list filtered per caller.
fn app(policy: PolicyHandle) -> Router {
    let guarded = Router::new()
        .route("/tools/{name}", post(call_tool))
        .route_layer(
            RbacLayer::<BasicSubject, Body>::new(policy.clone()).with_extractor(call_from_path),
        );
    Router::new()
        .route("/tools", get(list_tools))
        .merge(guarded)
        .layer(middleware::from_fn(authenticate))
        .with_state(policy)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = match std::env::args().nth(1) {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default_roles()?,
    };
    let handle = PolicyHandle::new(policy);
    let addr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    #[expect(
        clippy::print_stdout,
        reason = "an example tells its user where it listens"
    )]
    {
        println!("listening on http://{addr} (try the curl commands in the source)");
    }
    axum::serve(listener, app(handle)).await?;
    Ok(())
}
