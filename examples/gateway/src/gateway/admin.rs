//! The admin API under `/api/v1/admin/` and `/health/security`: each endpoint authenticates
//! like `/mcp`, asks the policy about an `admin:<area>.<verb>` action in the tenant it acts
//! on (`*` for gateway-wide actions, which only `cross_tenant` rules allow), and audits the
//! call.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, USER_AGENT};
use mcp_audit::{
    AuditEvent, AuditFilter, AuditStore, Category, ExportFormat, Order, OutcomeStatus, PageRequest,
    Scope, Severity, Timestamp,
};
use mcp_auth_core::{Principal, RevocationStore};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use super::{App, Core, GLOBAL_TENANT};
use crate::config::Config;

/// The admin routes (merged into the guarded router).
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/admin/tokens/revoke", post(revoke))
        .route("/api/v1/admin/policy/reload", post(reload_policy))
        .route("/api/v1/admin/audit", get(audit_query))
        .route("/api/v1/admin/audit/export", get(audit_export))
        .route("/api/v1/admin/multi-user-status", get(multi_user_status))
        .route(
            "/api/v1/admin/rate-limiting-performance",
            get(rate_limiting_performance),
        )
        .route(
            "/api/v1/admin/token-refresh-status",
            get(token_refresh_status),
        )
        .route(
            "/api/v1/admin/tenant-fairness/{tenant}",
            get(tenant_fairness),
        )
        .route("/health/security", get(health_security))
}

/// Failed authentications per minute over the last hour: 60 slots, each tagged with the
/// minute it counts. Lock-free and approximate under a race at a minute boundary, which is
/// enough for a status figure.
#[derive(Debug)]
pub(super) struct FailureWindow {
    origin: Instant,
    slots: [(AtomicU64, AtomicU64); 60],
}

impl FailureWindow {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            slots: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
        }
    }

    /// The minute of `at`, counted from 1 so that 0 marks an unused slot.
    fn minute(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs() / 60 + 1
    }

    pub(super) fn record(&self, at: Instant) {
        let minute = self.minute(at);
        let Some((tag, count)) = self.slots.get((minute % 60) as usize) else {
            return;
        };
        let old = tag.swap(minute, Ordering::AcqRel);
        if old == minute {
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            count.store(1, Ordering::Relaxed);
        }
    }

    /// Failures in the hour up to `at`.
    fn last_hour(&self, at: Instant) -> u64 {
        let now = self.minute(at);
        self.slots
            .iter()
            .filter(|(tag, _)| {
                let m = tag.load(Ordering::Acquire);
                m != 0 && m + 60 > now && m <= now
            })
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .sum()
    }
}

/// What the admin API holds besides the request path's parts.
pub(super) struct AdminState {
    /// The configuration the policy is rebuilt from on reload.
    config: Config,
    revocation: Arc<dyn RevocationStore>,
    audit_store: Option<AuditStore>,
    issuer: String,
    pub(super) auth_failures: FailureWindow,
}

impl AdminState {
    pub(super) fn new(
        config: &Config,
        revocation: Arc<dyn RevocationStore>,
        audit_store: Option<AuditStore>,
        issuer: String,
    ) -> Self {
        Self {
            config: config.clone(),
            revocation,
            audit_store,
            issuer,
            auth_failures: FailureWindow::new(),
        }
    }
}

/// An authorized admin call, audited when it is answered.
struct AdminCall {
    principal: Principal,
    ip: IpAddr,
    start: Instant,
    action: &'static str,
    tenant: String,
}

fn json_status(status: StatusCode, body: &Value) -> Response {
    super::json_response(status, body.to_string().into_bytes())
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    json_status(
        status,
        &json!({ "error": code, "message": message.to_string() }),
    )
}

impl Core {
    /// Authenticates the caller and asks the policy whether it may perform `action` in
    /// `tenant` (the caller's own when `None`); the refusal (401, 403) otherwise.
    async fn admin(
        &self,
        parts: &http::request::Parts,
        peer: SocketAddr,
        action: &'static str,
        tenant: Option<&str>,
    ) -> Result<AdminCall, Response> {
        let start = Instant::now();
        let ip = self.ip_resolver.resolve(peer.ip(), &parts.headers);
        let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
        let principal = self.authenticate(parts, ip, user_agent, start).await?;
        let tenant = tenant
            .or(principal.tenant())
            .unwrap_or(GLOBAL_TENANT)
            .to_owned();
        let policy = self.policy.load();
        let decision = policy.decide(
            &principal,
            &mcp_rbac::Request::new(action, "").tenant(&tenant),
        );
        if decision.is_allowed() {
            return Ok(AdminCall {
                principal,
                ip,
                start,
                action,
                tenant,
            });
        }
        let mut event = AuditEvent::new(Category::Authorization)
            .severity(Severity::Warning)
            .subject(principal.subject())
            .method(action)
            .client_ip(ip)
            .decision(mcp_audit::Decision::Deny, decision.to_string())
            .outcome(OutcomeStatus::Failure, Some(403), Some(start.elapsed()));
        if let Some(home) = principal.tenant() {
            event = event.tenant(home);
        }
        self.audit(event);
        Err(json_status(
            StatusCode::FORBIDDEN,
            &json!({ "error": "forbidden", "action": action, "tenant": tenant }),
        ))
    }

    /// Audits an answered admin call.
    fn admin_done(&self, call: &AdminCall, status: StatusCode, detail: &str) {
        let mut event = AuditEvent::new(Category::Admin)
            .subject(call.principal.subject())
            .method(call.action)
            .client_ip(call.ip)
            .decision(
                mcp_audit::Decision::Allow,
                format!("{} in tenant `{}`{detail}", call.action, call.tenant),
            )
            .outcome(
                super::outcome_of(status),
                Some(i64::from(status.as_u16())),
                Some(call.start.elapsed()),
            );
        if let Some(home) = call.principal.tenant() {
            event = event.tenant(home);
        }
        self.audit(event);
    }
}

/// `POST /api/v1/admin/tokens/revoke` body: a token id (with the token's `exp`), or a
/// subject whose tokens issued until now are revoked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: Option<String>,
    /// Unix seconds; default now + `auth.max_token_lifetime_secs`.
    expires_at: Option<u64>,
    subject: Option<String>,
}

/// Revocation is gateway-wide (token ids and subjects are not partitioned by tenant), so it
/// is an `admin:tokens.revoke` action in tenant `*`.
async fn revoke(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
    body: Result<Json<RevokeBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:tokens.revoke", Some(GLOBAL_TENANT))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected {\"jti\", \"expires_at\"?} or {\"subject\"}",
        );
    };
    let now = SystemTime::now();
    let horizon = now + Duration::from_secs(core.admin.config.auth.max_token_lifetime_secs);
    let store = &core.admin.revocation;
    let (result, what) = match (&body.jti, &body.subject) {
        (Some(jti), None) => {
            let until = body
                .expires_at
                .map_or(horizon, |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
            (
                store.revoke_token(jti, until).await,
                format!("token `{jti}`"),
            )
        }
        (None, Some(subject)) if body.expires_at.is_none() => (
            store.revoke_subject(subject, now, horizon).await,
            format!("subject `{subject}`"),
        ),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "name exactly one of `jti` (with optional `expires_at`) and `subject`",
            );
        }
    };
    let response = match result {
        Ok(()) => json_status(StatusCode::OK, &json!({ "revoked": what })),
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "revocation store failed",
            )
        }
    };
    core.admin_done(&call, response.status(), &format!(": revoke {what}"));
    response
}

/// `POST /api/v1/admin/policy/reload`: rebuilds the policy from the configuration (the
/// policy file is read again); a broken file leaves the current policy in force.
async fn reload_policy(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:policy.reload", Some(GLOBAL_TENANT))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let response = match crate::build_policy(&core.admin.config) {
        Ok(policy) => {
            let roles = policy.role_names().count();
            let rules = policy.rules().len();
            core.policy.replace(policy);
            json_status(
                StatusCode::OK,
                &json!({
                    "generation": core.policy.generation(),
                    "roles": roles,
                    "rules": rules,
                }),
            )
        }
        // The error names the file, line and key: it is for the operator who asked.
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("{e:#}"),
        ),
    };
    core.admin_done(&call, response.status(), "");
    response
}

/// Query parameters of the audit endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    /// The tenant to read; `*` for all (operators); default the caller's.
    tenant: Option<String>,
    subject: Option<String>,
    category: Option<String>,
    decision: Option<String>,
    tool: Option<String>,
    /// RFC 3339.
    from: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
    /// `newest` (default) or `oldest`.
    order: Option<String>,
    /// Export: `jsonl` (default) or `csv`.
    format: Option<String>,
}

impl AuditParams {
    /// The filter the parameters describe, or what is wrong with them.
    fn filter(&self) -> Result<AuditFilter, &'static str> {
        let mut filter = AuditFilter::new();
        if let Some(s) = &self.subject {
            filter = filter.subject(s.as_str());
        }
        if let Some(c) = &self.category {
            filter = filter.category(c.parse::<Category>().map_err(|_| "unknown category")?);
        }
        if let Some(d) = &self.decision {
            filter = filter.decision(
                d.parse::<mcp_audit::Decision>()
                    .map_err(|_| "unknown decision")?,
            );
        }
        if let Some(t) = &self.tool {
            filter = filter.tool(t.as_str());
        }
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(str::parse::<Timestamp>)
                .transpose()
                .map_err(|_| "times are RFC 3339")
        };
        filter.from = time(&self.from)?;
        filter.until = time(&self.until)?;
        Ok(filter)
    }

    fn scope(tenant: &str) -> Scope {
        if tenant == GLOBAL_TENANT {
            Scope::All
        } else {
            Scope::Tenant(tenant.to_owned())
        }
    }
}

/// `GET /api/v1/admin/audit`: one page of events of the tenant (`admin:audit.read`).
async fn audit_query(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let core = &app.core;
    let Ok(Query(params)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown query parameter",
        );
    };
    let call = match core
        .admin(&parts, peer, "admin:audit.read", params.tenant.as_deref())
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let response = match (&core.admin.audit_store, params.filter()) {
        (_, Err(what)) => error(StatusCode::BAD_REQUEST, "invalid_request", what),
        (None, _) => error(
            StatusCode::NOT_FOUND,
            "not_queryable",
            "the audit sink is not SQLite or PostgreSQL",
        ),
        (Some(store), Ok(filter)) => {
            let mut page = PageRequest::first(params.limit.unwrap_or(100));
            if params.order.as_deref() == Some("oldest") {
                page = page.order(Order::OldestFirst);
            }
            if let Some(after) = &params.after {
                page = page.after(after.as_str());
            }
            match store
                .query(&AuditParams::scope(&call.tenant), &filter, &page)
                .await
            {
                Ok(page) => json_status(
                    StatusCode::OK,
                    &json!({ "events": page.events, "next": page.next }),
                ),
                Err(mcp_audit::StoreError::InvalidCursor) => {
                    error(StatusCode::BAD_REQUEST, "invalid_request", "invalid cursor")
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit query failed");
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "audit store failed",
                    )
                }
            }
        }
    };
    core.admin_done(&call, response.status(), "");
    response
}

/// `GET /api/v1/admin/audit/export`: every matching event of the tenant, oldest first, as
/// JSON lines or CSV (`admin:audit.export`), streamed with back-pressure.
async fn audit_export(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let core = &app.core;
    let Ok(Query(params)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unknown query parameter",
        );
    };
    let call = match core
        .admin(&parts, peer, "admin:audit.export", params.tenant.as_deref())
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let (format, content_type, extension) = match params.format.as_deref() {
        None | Some("jsonl") => (ExportFormat::JsonLines, "application/x-ndjson", "jsonl"),
        Some("csv") => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "format is jsonl or csv",
            );
        }
    };
    let filter = match params.filter() {
        Ok(filter) => filter,
        Err(what) => return error(StatusCode::BAD_REQUEST, "invalid_request", what),
    };
    let Some(store) = core.admin.audit_store.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_queryable",
            "the audit sink is not SQLite or PostgreSQL",
        );
    };
    let scope = AuditParams::scope(&call.tenant);
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Err(e) = store.export(&scope, &filter, format, &mut writer).await {
            // The client sees a truncated body; the log says why.
            tracing::error!(error = %e, "audit export failed");
        }
    });
    let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), reader))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    if let Ok(v) =
        http::HeaderValue::from_str(&format!("attachment; filename=\"audit.{extension}\""))
    {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    core.admin_done(&call, StatusCode::OK, "");
    response
}

/// `?tenant=` of the status endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantParam {
    tenant: Option<String>,
}

/// `GET /api/v1/admin/multi-user-status`: sessions and active users of a tenant
/// (`admin:metrics.read`; `tenant=*` for all).
async fn multi_user_status(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
    Query(params): Query<TenantParam>,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:metrics.read", params.tenant.as_deref())
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let now = Instant::now();
    let tenant = (call.tenant != GLOBAL_TENANT).then_some(call.tenant.as_str());
    let sessions = core
        .sessions
        .as_ref()
        .map(|s| serde_json::to_value(s.census(tenant, now)).unwrap_or(Value::Null));
    let active_users: BTreeMap<&str, f64> = match tenant {
        Some(t) => ["1m", "5m", "15m", "1h"]
            .into_iter()
            .filter_map(|w| Some((w, core.metrics.concurrent_users_at(t, w, now)?)))
            .collect(),
        None => BTreeMap::new(),
    };
    let response = json_status(
        StatusCode::OK,
        &json!({
            "tenant": call.tenant,
            "mode": if core.sessions.is_some() { "stateful" } else { "stateless" },
            "sessions": sessions,
            "active_users": active_users,
        }),
    );
    core.admin_done(&call, response.status(), "");
    response
}

/// `GET /api/v1/admin/rate-limiting-performance`: the limiter's rules and counters
/// (gateway-wide: `admin:metrics.read` in tenant `*`).
async fn rate_limiting_performance(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:metrics.read", Some(GLOBAL_TENANT))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let stats = core.limiter.stats();
    let store = core.limiter.store().stats();
    let rules: Vec<&str> = core.limiter.rules().iter().map(|r| r.name()).collect();
    let decided = stats.allowed + stats.denied;
    let response = json_status(
        StatusCode::OK,
        &json!({
            "rules": rules,
            "degraded": core.limiter.is_degraded(),
            "decisions": {
                "allowed": stats.allowed,
                "denied": stats.denied,
                "denied_ratio": if decided == 0 { 0.0 } else { stats.denied as f64 / decided as f64 },
            },
            "store": {
                "keys": store.keys,
                "expired": store.expired,
                "evicted": store.evicted,
                "errors": stats.store_errors,
                "fallback_decisions": stats.fallback_decisions,
                "fail_open_decisions": stats.fail_open_decisions,
                "fail_closed_decisions": stats.fail_closed_decisions,
            },
        }),
    );
    core.admin_done(&call, response.status(), "");
    response
}

/// `GET /api/v1/admin/tenant-fairness/{tenant}`: the tenant's fair-share numbers and the
/// fairness index (`admin:metrics.read` in that tenant).
async fn tenant_fairness(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
    Path(tenant): Path<String>,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:metrics.read", Some(&tenant))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let response = match &core.fair_share {
        None => error(
            StatusCode::NOT_FOUND,
            "not_configured",
            "rate_limit.fair_share is not configured",
        ),
        Some(fair) => {
            let usage = fair.usage().into_iter().find(|u| u.tenant == tenant);
            json_status(
                StatusCode::OK,
                &json!({
                    "tenant": tenant,
                    "tracked": usage.is_some(),
                    "weight": usage.as_ref().map(|u| u.weight),
                    "share": usage.as_ref().map(|u| u.share),
                    "burst_limit": usage.as_ref().map(|u| u.burst_limit),
                    "window_usage": usage.as_ref().map_or(0, |u| u.window_usage),
                    "admitted": usage.as_ref().map_or(0, |u| u.admitted),
                    "rejected": usage.as_ref().map_or(0, |u| u.rejected),
                    "fairness_index": fair.fairness_index(),
                }),
            )
        }
    };
    core.admin_done(&call, response.status(), "");
    response
}

/// What the gateway knows about its token-verification keys.
fn key_source(core: &Core) -> Value {
    match &core.jwks {
        Some(jwks) => {
            let keys = jwks.keys();
            json!({
                "kind": "jwks",
                "issuer": core.admin.issuer,
                "loaded": keys.is_some(),
                "keys": keys.as_ref().map_or(0, |k| k.len()),
                "fetches": jwks.fetch_count(),
            })
        }
        None => json!({ "kind": "local_issuer", "issuer": core.admin.issuer, "loaded": true }),
    }
}

/// `GET /api/v1/admin/token-refresh-status`: the identity provider's key set (gateway-wide).
async fn token_refresh_status(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:metrics.read", Some(GLOBAL_TENANT))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let response = json_status(StatusCode::OK, &json!({ "keys": key_source(core) }));
    core.admin_done(&call, response.status(), "");
    response
}

/// `GET /health/security`: the security posture (gateway-wide `admin:security.read`).
async fn health_security(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    parts: http::request::Parts,
) -> Response {
    let core = &app.core;
    let call = match core
        .admin(&parts, peer, "admin:security.read", Some(GLOBAL_TENANT))
        .await
    {
        Ok(call) => call,
        Err(response) => return response,
    };
    let server = &core.admin.config.server;
    let response = json_status(
        StatusCode::OK,
        &json!({
            "rate_limiting": {
                "enabled": !core.limiter.rules().is_empty(),
                "rules": core.limiter.rules().len(),
                "degraded": core.limiter.is_degraded(),
            },
            "https_required": server.require_https,
            "key_source": key_source(core),
            "failed_authentications_last_hour": core.admin.auth_failures.last_hour(Instant::now()),
            "sessions": if core.sessions.is_some() { "stateful" } else { "stateless" },
            "policy_generation": core.policy.generation(),
        }),
    );
    core.admin_done(&call, response.status(), "");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_window_counts_the_last_hour_only() {
        let w = FailureWindow::new();
        let t0 = w.origin;
        w.record(t0);
        w.record(t0 + Duration::from_secs(30));
        w.record(t0 + Duration::from_secs(90));
        assert_eq!(w.last_hour(t0 + Duration::from_secs(100)), 3);
        // An hour later the first minute has left the window; its slot is reused.
        let later = t0 + Duration::from_secs(60 * 60 + 10);
        assert_eq!(w.last_hour(later), 1);
        w.record(later);
        assert_eq!(w.last_hour(later), 2);
        assert_eq!(w.last_hour(t0 + Duration::from_secs(3 * 3600)), 0);
    }
}
