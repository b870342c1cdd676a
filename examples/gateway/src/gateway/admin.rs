//! The admin API under `/api/v1/admin/` and `/health/security`: each endpoint authenticates
//! like `/mcp` ([`Admin`]), asks the policy about an `admin:<area>.<verb>` action in the
//! tenant it acts on (`*` for gateway-wide actions, which only `cross_tenant` rules allow;
//! [`Admin::authorize`]), and audits the answer ([`AdminCall::answer`]). Every refusal
//! after authentication, malformed queries and bodies included, is a [`Problem`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Json, Path, Query, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, USER_AGENT};
use http::request::Parts;
use mcp_audit::{AuditEvent, AuditStore, Category, OutcomeStatus, Severity};
use mcp_auth_core::api_key::ApiKeyManager;
use mcp_auth_core::{Principal, RevocationStore};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use super::{App, Core, GLOBAL_TENANT};
use crate::audit_query::{self, AuditParams};
use crate::config::{Config, PoolClass};
use crate::pools::AuditStores;

mod analytics;
mod keys;
mod upstreams;

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
            "/api/v1/admin/connection-pool-status",
            get(connection_pool_status),
        )
        .route(
            "/api/v1/admin/tenant-fairness/{tenant}",
            get(tenant_fairness),
        )
        .route("/health/security", get(health_security))
        .merge(keys::router())
        .merge(analytics::router())
        .merge(upstreams::router())
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
    /// The audit stores of the `read` and `analytics` classes, when the sink is SQL.
    audit_stores: Option<AuditStores>,
    issuer: String,
    /// `[auth.api_keys]`: the keys managed under `/api/v1/admin/api-keys`.
    api_keys: Option<ApiKeyManager>,
    pub(super) auth_failures: FailureWindow,
}

impl AdminState {
    pub(super) fn new(
        config: &Config,
        revocation: Arc<dyn RevocationStore>,
        audit_stores: Option<AuditStores>,
        issuer: String,
        api_keys: Option<ApiKeyManager>,
    ) -> Self {
        Self {
            config: config.clone(),
            revocation,
            audit_stores,
            issuer,
            api_keys,
            auth_failures: FailureWindow::new(),
        }
    }
}

/// The caller of an admin endpoint: authenticated like `/mcp` (401 with the challenge,
/// failures feed the lockout), not yet authorized.
pub(super) struct Admin {
    core: Arc<Core>,
    principal: Principal,
    ip: IpAddr,
    start: Instant,
}

impl FromRequestParts<App> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let start = Instant::now();
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let core = Arc::clone(&app.core);
        let ip = core.ip_resolver.resolve(peer.ip(), &parts.headers);
        let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
        let principal = core.authenticate(parts, ip, user_agent, start).await?;
        Ok(Self {
            core,
            principal,
            ip,
            start,
        })
    }
}

impl Admin {
    /// Asks the policy whether the caller may perform `action` in `tenant` (its own tenant
    /// when `None`, `*` without one): the call to answer, or the 403 refusing it (audited).
    pub(super) fn authorize(
        self,
        action: &'static str,
        tenant: Option<&str>,
    ) -> Result<AdminCall, Problem> {
        let tenant = tenant
            .or(self.principal.tenant())
            .unwrap_or(GLOBAL_TENANT)
            .to_owned();
        let policy = self.core.policy.load();
        let decision = policy.decide(
            &self.principal,
            &mcp_rbac::Request::new(action, "").tenant(&tenant),
        );
        if decision.is_allowed() {
            return Ok(AdminCall {
                admin: self,
                action,
                tenant,
            });
        }
        let mut event = AuditEvent::new(Category::Authorization)
            .severity(Severity::Warning)
            .subject(self.principal.subject())
            .method(action)
            .client_ip(self.ip)
            .decision(mcp_audit::Decision::Deny, decision.to_string())
            .outcome(
                OutcomeStatus::Failure,
                Some(403),
                Some(self.start.elapsed()),
            );
        if let Some(home) = self.principal.tenant() {
            event = event.tenant(home);
        }
        self.core.audit(event);
        Err(Problem {
            status: StatusCode::FORBIDDEN,
            body: json!({ "error": "forbidden", "action": action, "tenant": tenant }),
        })
    }
}

/// An authorized admin call: `action` in `tenant`.
pub(super) struct AdminCall {
    admin: Admin,
    action: &'static str,
    tenant: String,
}

impl AdminCall {
    fn core(&self) -> &Core {
        &self.admin.core
    }

    fn principal(&self) -> &Principal {
        &self.admin.principal
    }

    /// Audits the answer (success or refusal alike) and returns it.
    pub(super) fn answer(self, result: Result<Response, Problem>) -> Response {
        self.answer_with(result, "")
    }

    /// Like [`AdminCall::answer`], with `detail` appended to the audited reason.
    pub(super) fn answer_with(self, result: Result<Response, Problem>, detail: &str) -> Response {
        let response = result.unwrap_or_else(IntoResponse::into_response);
        let admin = &self.admin;
        let status = response.status();
        let mut event = AuditEvent::new(Category::Admin)
            .subject(admin.principal.subject())
            .auth_method(crate::auth::method_name(&admin.principal))
            .method(self.action)
            .client_ip(admin.ip)
            .decision(
                mcp_audit::Decision::Allow,
                format!("{} in tenant `{}`{detail}", self.action, self.tenant),
            )
            .outcome(
                super::outcome_of(status),
                Some(i64::from(status.as_u16())),
                Some(admin.start.elapsed()),
            );
        if let Some(home) = admin.principal.tenant() {
            event = event.tenant(home);
        }
        admin.core.audit(event);
        response
    }
}

/// The query string of an admin endpoint; an unknown or malformed parameter is 400.
pub(super) struct Params<T>(T);

impl<T: DeserializeOwned + Send> FromRequestParts<App> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, app)
            .await
            .map(|Query(params)| Self(params))
            .map_err(|rejection| invalid_request(rejection.body_text()))
    }
}

/// Query parameters that name the tenant a call acts in (`?tenant=`).
pub(super) trait InTenant {
    /// The tenant named, if any.
    fn tenant(&self) -> Option<&str>;
}

macro_rules! in_tenant {
    ($($params:ty),*) => {$(
        impl $crate::gateway::admin::InTenant for $params {
            fn tenant(&self) -> Option<&str> {
                self.tenant.as_deref()
            }
        }
    )*};
}

use in_tenant;

in_tenant!(AuditParams, TenantParam);

/// An admin caller with the query of its call: authenticated, not yet authorized.
pub(super) struct Scoped<T> {
    admin: Admin,
    params: T,
}

impl<T: DeserializeOwned + Send> FromRequestParts<App> for Scoped<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let admin = Admin::from_request_parts(parts, app).await?;
        let Params(params) = Params::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self { admin, params })
    }
}

impl<T: InTenant> Scoped<T> {
    /// [`Admin::authorize`] in the tenant the query names (the caller's when it names none):
    /// the call and its query.
    pub(super) fn authorize(self, action: &'static str) -> Result<(AdminCall, T), Problem> {
        let Self { admin, params } = self;
        let call = admin.authorize(action, params.tenant())?;
        Ok((call, params))
    }
}

/// The JSON body of an admin endpoint; a missing or malformed one is 400.
pub(super) struct Payload<T>(T);

impl<T: DeserializeOwned + Send> FromRequest<App> for Payload<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, app: &App) -> Result<Self, Problem> {
        Json::<T>::from_request(request, app)
            .await
            .map(|Json(body)| Self(body))
            .map_err(|rejection| invalid_request(rejection.body_text()))
    }
}

fn json_status(status: StatusCode, body: &Value) -> Response {
    super::json_response(status, body.to_string().into_bytes())
}

/// 200 with `body`.
fn ok(body: &Value) -> Response {
    json_status(StatusCode::OK, body)
}

/// An admin call's error answer: a status and a JSON body naming the error.
pub(super) struct Problem {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        json_status(self.status, &self.body)
    }
}

/// `{"error": code, "message": message}` with `status`.
fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Problem {
    Problem {
        status,
        body: json!({ "error": code, "message": message.to_string() }),
    }
}

/// 400 `invalid_request`.
fn invalid_request(message: impl std::fmt::Display) -> Problem {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// 503 for a failed store, whose error goes to the log only.
fn unavailable(what: &str, failure: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error = %failure, "{what} failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("{what} failed"),
    )
}

/// `part`, or 404 `code` saying why it is not there.
fn configured<'a, T>(part: Option<&'a T>, code: &str, why: &str) -> Result<&'a T, Problem> {
    part.ok_or_else(|| error(StatusCode::NOT_FOUND, code, why))
}

/// The audit stores, or 404 when the sink is not SQL.
fn audit_stores(core: &Core) -> Result<&AuditStores, Problem> {
    configured(
        core.admin.audit_stores.as_ref(),
        "not_queryable",
        "the audit sink is not SQLite or PostgreSQL (or audit is off)",
    )
}

/// The audit store of queries (class `read`), or 404 when the sink is not SQL.
fn audit_store(core: &Core) -> Result<&AuditStore, Problem> {
    audit_stores(core).map(|s| &s.read)
}

/// The audit store of exports and analytics (class `analytics`), or 404 when the sink is
/// not SQL.
fn analytics_store(core: &Core) -> Result<&AuditStore, Problem> {
    audit_stores(core).map(|s| &s.analytics)
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
async fn revoke(admin: Admin, Payload(body): Payload<RevokeBody>) -> Result<Response, Problem> {
    let call = admin.authorize("admin:tokens.revoke", Some(GLOBAL_TENANT))?;
    let now = SystemTime::now();
    let core = call.core();
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
            return Ok(call.answer(Err(invalid_request(
                "name exactly one of `jti` (with optional `expires_at`) and `subject`",
            ))));
        }
    };
    let result = result
        .map(|()| ok(&json!({ "revoked": what })))
        .map_err(|e| unavailable("revocation store", &e));
    Ok(call.answer_with(result, &format!(": revoke {what}")))
}

/// `POST /api/v1/admin/policy/reload`: rebuilds the policy from the configuration (the
/// policy file is read again); a broken file leaves the current policy in force.
async fn reload_policy(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:policy.reload", Some(GLOBAL_TENANT))?;
    let core = call.core();
    let result = match crate::build_policy(&core.admin.config) {
        Ok(policy) => {
            let roles = policy.role_names().count();
            let rules = policy.rules().len();
            core.policy.replace(policy);
            Ok(ok(&json!({
                "generation": core.policy.generation(),
                "roles": roles,
                "rules": rules,
            })))
        }
        // The error names the file, line and key: it is for the operator who asked.
        Err(e) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("{e:#}"),
        )),
    };
    Ok(call.answer(result))
}

/// `GET /api/v1/admin/audit`: one page of events of the tenant (`admin:audit.read`).
async fn audit_query(scoped: Scoped<AuditParams>) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:audit.read")?;
    let result = async {
        let store = audit_store(call.core())?;
        let filter = params.filter().map_err(invalid_request)?;
        let page = params.page().map_err(invalid_request)?;
        match store
            .query(&audit_query::scope(&call.tenant), &filter, &page)
            .await
        {
            Ok(page) => Ok(ok(&json!({ "events": page.events, "next": page.next }))),
            Err(mcp_audit::StoreError::InvalidCursor) => Err(invalid_request("invalid cursor")),
            Err(e) => Err(unavailable("audit store", &e)),
        }
    }
    .await;
    Ok(call.answer(result))
}

/// `GET /api/v1/admin/audit/export`: every matching event of the tenant, oldest first, as
/// JSON lines or CSV (`admin:audit.export`), streamed with back-pressure.
async fn audit_export(scoped: Scoped<AuditParams>) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:audit.export")?;
    let result = export(call.core(), &call.tenant, &params);
    Ok(call.answer(result))
}

/// The export of `params` in `tenant` as a streamed response.
fn export(core: &Core, tenant: &str, params: &AuditParams) -> Result<Response, Problem> {
    let (format, content_type, extension) = params.export_format().map_err(invalid_request)?;
    let filter = params.filter().map_err(invalid_request)?;
    let store = analytics_store(core)?.clone();
    let scope = audit_query::scope(tenant);
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
    Ok(response)
}

/// `?tenant=` of the status endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantParam {
    tenant: Option<String>,
}

/// `GET /api/v1/admin/multi-user-status`: sessions and active users of a tenant
/// (`admin:metrics.read`; `tenant=*` for all).
async fn multi_user_status(scoped: Scoped<TenantParam>) -> Result<Response, Problem> {
    let (call, _) = scoped.authorize("admin:metrics.read")?;
    let core = call.core();
    let now = Instant::now();
    let tenant = (call.tenant != GLOBAL_TENANT).then_some(call.tenant.as_str());
    let sessions = core
        .sessions
        .as_ref()
        .map(|s| serde_json::to_value(s.census(tenant, now)).unwrap_or(Value::Null));
    let body = json!({
        "tenant": call.tenant,
        "mode": if core.sessions.is_some() { "stateful" } else { "stateless" },
        "sessions": sessions,
        "active_users": active_users(core, tenant, now),
    });
    Ok(call.answer(Ok(ok(&body))))
}

/// Estimated distinct active users of `tenant` over each window the metrics keep (none for
/// every tenant together, or when metrics are off).
fn active_users(core: &Core, tenant: Option<&str>, now: Instant) -> BTreeMap<&'static str, f64> {
    match tenant {
        Some(t) if core.metrics_on => ["1m", "5m", "15m", "1h"]
            .into_iter()
            .filter_map(|w| Some((w, core.metrics.concurrent_users_at(t, w, now)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `GET /api/v1/admin/rate-limiting-performance`: the limiter's rules and counters
/// (gateway-wide: `admin:metrics.read` in tenant `*`).
async fn rate_limiting_performance(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:metrics.read", Some(GLOBAL_TENANT))?;
    let core = call.core();
    let stats = core.limiter.stats();
    let store = core.limiter.store().stats();
    let rules: Vec<&str> = core.limiter.rules().iter().map(|r| r.name()).collect();
    let decided = stats.allowed + stats.denied;
    let body = json!({
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
    });
    Ok(call.answer(Ok(ok(&body))))
}

/// `GET /api/v1/admin/connection-pool-status`: every SQL connection class with its
/// statistics, sampled usage and sizing advice, and what the gateway uses it for
/// (gateway-wide: `admin:metrics.read` in tenant `*`); 404 when no store is SQL.
async fn connection_pool_status(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:metrics.read", Some(GLOBAL_TENANT))?;
    let result = configured(
        call.core().pools.as_ref(),
        "not_configured",
        "no store is SQL: the audit sink and the API keys are not SQLite or PostgreSQL",
    )
    .map(|pools| {
        let snapshot = pools.snapshot();
        let used_for: BTreeMap<&str, &str> = PoolClass::ALL
            .iter()
            .filter(|c| snapshot.classes.iter().any(|s| s.class == c.name()))
            .map(|c| (c.name(), c.used_for()))
            .collect();
        ok(&json!({ "pools": snapshot, "used_for": used_for }))
    });
    Ok(call.answer(result))
}

/// The fair-share numbers of `tenant`, or 404 without `[rate_limit.fair_share]`.
fn fairness(core: &Core, tenant: &str) -> Result<Value, Problem> {
    let fair = configured(
        core.fair_share.as_ref(),
        "not_configured",
        "rate_limit.fair_share is not configured",
    )?;
    let usage = fair.usage().into_iter().find(|u| u.tenant == tenant);
    Ok(json!({
        "tenant": tenant,
        "tracked": usage.is_some(),
        "weight": usage.as_ref().map(|u| u.weight),
        "share": usage.as_ref().map(|u| u.share),
        "burst_limit": usage.as_ref().map(|u| u.burst_limit),
        "window_usage": usage.as_ref().map_or(0, |u| u.window_usage),
        "admitted": usage.as_ref().map_or(0, |u| u.admitted),
        "rejected": usage.as_ref().map_or(0, |u| u.rejected),
        "fairness_index": fair.fairness_index(),
    }))
}

/// `GET /api/v1/admin/tenant-fairness/{tenant}`: the tenant's fair-share numbers and the
/// fairness index (`admin:metrics.read` in that tenant).
async fn tenant_fairness(admin: Admin, Path(tenant): Path<String>) -> Result<Response, Problem> {
    let call = admin.authorize("admin:metrics.read", Some(&tenant))?;
    let result = fairness(call.core(), &tenant).map(|body| ok(&body));
    Ok(call.answer(result))
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
async fn token_refresh_status(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:metrics.read", Some(GLOBAL_TENANT))?;
    let body = json!({ "keys": key_source(call.core()) });
    Ok(call.answer(Ok(ok(&body))))
}

/// `GET /health/security`: the security posture (gateway-wide `admin:security.read`).
async fn health_security(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:security.read", Some(GLOBAL_TENANT))?;
    let core = call.core();
    let config = &core.admin.config;
    let body = json!({
        "authentication": {
            "required": core.anonymous.is_none(),
            "api_keys": config.auth.api_keys.as_ref().map(|k| k.store),
            "token_cache": config.auth.token_cache_capacity > 0,
        },
        "authorization": { "policy": !core.allow_all },
        "rate_limiting": {
            "enabled": !core.limiter.rules().is_empty(),
            "rules": core.limiter.rules().len(),
            "degraded": core.limiter.is_degraded(),
        },
        "https_required": config.server.require_https,
        "tls": config.server.tls.is_some(),
        "audit": config.audit.enabled,
        "key_source": key_source(core),
        "failed_authentications_last_hour": core.admin.auth_failures.last_hour(Instant::now()),
        "sessions": if core.sessions.is_some() { "stateful" } else { "stateless" },
        "policy_generation": core.policy.generation(),
    });
    Ok(call.answer(Ok(ok(&body))))
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
