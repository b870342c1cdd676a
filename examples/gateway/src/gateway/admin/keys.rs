//! `/api/v1/admin/api-keys`: create (the secret is answered once), list (never a secret),
//! rotate (the old key works for a grace period) and revoke API keys, tenant-scoped.
//!
//! A call acts in a tenant like every admin call (`?tenant=`, or `tenant` in the creation
//! body; default the caller's): it sees and changes only that tenant's keys (`*`: every
//! key, and keys of no tenant). A key may grant only roles and scopes the caller holds,
//! unless the caller may also perform `admin:roles.grant` in the tenant; roles with a
//! `cross_tenant` rule are granted only by gateway-wide calls.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::post;
use http::StatusCode;
use mcp_auth_core::api_key::{
    ApiKeyError, ApiKeyFilter, ApiKeyManager, ApiKeyRecord, IssuedApiKey, NewApiKey,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminCall, App, Core, GLOBAL_TENANT, Payload, Problem, Scoped, error, ok};
use crate::api_keys::record_json;
use crate::config::MAX_ROTATION_GRACE_SECS;

/// The longest owner name and key label accepted.
const MAX_NAME_LEN: usize = 256;

/// The action that lets a caller grant roles and scopes it does not hold itself.
const GRANT: &str = "admin:roles.grant";

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/admin/api-keys", post(create).get(list))
        .route("/api/v1/admin/api-keys/{key_id}/rotate", post(rotate))
        .route("/api/v1/admin/api-keys/{key_id}/revoke", post(revoke))
}

/// 201 with a freshly issued key: its secret, shown this once, and its record.
fn issued_json(issued: &IssuedApiKey) -> Response {
    let mut response = super::json_status(
        StatusCode::CREATED,
        &json!({ "key": issued.key.expose(), "record": record_json(&issued.record) }),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn key_error(e: &ApiKeyError) -> Problem {
    match e {
        ApiKeyError::NotFound => not_found(),
        ApiKeyError::Inactive | ApiKeyError::AlreadyRotated | ApiKeyError::AlreadyExists => {
            error(StatusCode::CONFLICT, "conflict", e)
        }
        _ => super::unavailable("API-key store", e),
    }
}

fn not_found() -> Problem {
    error(StatusCode::NOT_FOUND, "not_found", "no such API key")
}

/// The key manager, or 404 without `[auth.api_keys]`.
fn manager(core: &Core) -> Result<&ApiKeyManager, Problem> {
    super::configured(
        core.admin.api_keys.as_ref(),
        "not_configured",
        "auth.api_keys is not configured",
    )
}

/// `POST /api/v1/admin/api-keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// The subject the key authenticates as.
    owner: String,
    /// The key's tenant (default the caller's; `*`: a key of no tenant).
    tenant: Option<String>,
    #[serde(default)]
    roles: BTreeSet<String>,
    #[serde(default)]
    scopes: BTreeSet<String>,
    /// A label.
    #[serde(default)]
    name: String,
    /// The key expires this many seconds after its creation (default never).
    ttl_secs: Option<u64>,
}

/// `POST /api/v1/admin/api-keys`: issues a key (`admin:keys.create` in its tenant); 201 with
/// the key, whose secret is never shown again.
async fn create(admin: Admin, Payload(body): Payload<CreateBody>) -> Result<Response, Problem> {
    let call = admin.authorize("admin:keys.create", body.tenant.as_deref())?;
    Ok(match issue(&call, body).await {
        Ok(issued) => {
            let detail = format!(
                ": key `{}` for `{}`",
                issued.record.key_id, issued.record.owner
            );
            call.answer_with(Ok(issued_json(&issued)), &detail)
        }
        Err(refusal) => call.answer(Err(refusal)),
    })
}

async fn issue(call: &AdminCall, body: CreateBody) -> Result<IssuedApiKey, Problem> {
    let keys = manager(call.core())?;
    if body.owner.is_empty() || body.owner.len() > MAX_NAME_LEN || body.name.len() > MAX_NAME_LEN {
        return Err(super::invalid_request(format!(
            "owner must be 1 to {MAX_NAME_LEN} bytes, name at most {MAX_NAME_LEN}"
        )));
    }
    check_grants(call, &body.roles, &body.scopes)?;
    let mut new = NewApiKey::new(body.owner)
        .roles(body.roles)
        .scopes(body.scopes)
        .name(body.name);
    if call.tenant != GLOBAL_TENANT {
        new = new.tenant(call.tenant.as_str());
    }
    if let Some(ttl) = body.ttl_secs {
        new = new.ttl(Duration::from_secs(ttl));
    }
    keys.issue(new).await.map_err(|e| key_error(&e))
}

/// Refuses (403) a key that would grant more than the caller may hand out: a role with a
/// cross-tenant rule outside a gateway-wide call, or, without `admin:roles.grant` in the
/// tenant, a role or scope the caller does not hold. An unknown role is 400.
fn check_grants(
    call: &AdminCall,
    roles: &BTreeSet<String>,
    scopes: &BTreeSet<String>,
) -> Result<(), Problem> {
    let policy = call.core().policy.load();
    let caller = call.principal();
    let refuse = |what: String| Err(error(StatusCode::FORBIDDEN, "forbidden", what));
    for role in roles {
        if policy.role(role).is_none() {
            return Err(super::invalid_request(format!("unknown role `{role}`")));
        }
        if call.tenant != GLOBAL_TENANT && crosses_tenants(&policy, role) {
            return refuse(format!(
                "role `{role}` reaches other tenants: only a gateway-wide call (tenant `*`) grants it"
            ));
        }
    }
    let holds_all =
        roles.iter().all(|r| caller.has_role(r)) && scopes.iter().all(|s| caller.has_scope(s));
    if !holds_all
        && !policy
            .decide(
                caller,
                &mcp_rbac::Request::new(GRANT, "").tenant(&call.tenant),
            )
            .is_allowed()
    {
        return refuse(format!(
            "a key may grant only the roles and scopes its creator holds, unless the creator may perform `{GRANT}`"
        ));
    }
    Ok(())
}

/// Whether `role`, or a role it inherits, has a `cross_tenant` rule.
fn crosses_tenants(policy: &mcp_rbac::Policy, role: &str) -> bool {
    let mut pending = vec![role];
    let mut seen = BTreeSet::new();
    // Bounded by the number of roles: each is expanded once.
    while let Some(name) = pending.pop() {
        if !seen.insert(name) {
            continue;
        }
        if policy
            .rules()
            .iter()
            .any(|r| r.role() == name && r.is_cross_tenant())
        {
            return true;
        }
        if let Some((_, parents)) = policy.role(name) {
            pending.extend(parents);
        }
    }
    false
}

super::in_tenant!(ListParams, KeyParams);

/// `?tenant=&owner=&limit=` of the list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    tenant: Option<String>,
    owner: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/admin/api-keys`: the tenant's keys, oldest first (`admin:keys.read`).
async fn list(scoped: Scoped<ListParams>) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:keys.read")?;
    let result = async {
        let keys = manager(call.core())?;
        let mut filter = ApiKeyFilter::all();
        if call.tenant != GLOBAL_TENANT {
            filter = filter.in_tenant(call.tenant.as_str());
        }
        filter.owner = params.owner;
        if let Some(limit) = params.limit {
            filter = filter.limit(limit);
        }
        let records = keys.list(&filter).await.map_err(|e| key_error(&e))?;
        let keys: Vec<Value> = records.iter().map(record_json).collect();
        Ok(ok(&json!({ "tenant": call.tenant, "keys": keys })))
    }
    .await;
    Ok(call.answer(result))
}

/// `?tenant=&grace_secs=` of rotate and revoke.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    tenant: Option<String>,
    /// Rotation only: how long the old key keeps working (default
    /// `auth.api_keys.rotation_grace_secs`).
    grace_secs: Option<u64>,
}

/// The record of `key_id` if it belongs to the call's tenant; 404 otherwise, so that keys
/// of other tenants are indistinguishable from absent ones.
async fn record_in_tenant(call: &AdminCall, key_id: &str) -> Result<ApiKeyRecord, Problem> {
    let record = manager(call.core())?
        .get(key_id)
        .await
        .map_err(|e| key_error(&e))?
        .ok_or_else(not_found)?;
    if call.tenant == GLOBAL_TENANT || record.tenant.as_deref() == Some(call.tenant.as_str()) {
        Ok(record)
    } else {
        Err(not_found())
    }
}

/// `POST /api/v1/admin/api-keys/{key_id}/rotate`: a new key with the same grants; the old
/// one works for the grace period (`admin:keys.rotate`). 201 with the new key.
async fn rotate(
    scoped: Scoped<KeyParams>,
    Path(key_id): Path<String>,
) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:keys.rotate")?;
    let core = call.core();
    let default_grace = core
        .admin
        .config
        .auth
        .api_keys
        .as_ref()
        .map_or(0, |k| k.rotation_grace_secs);
    let grace = params.grace_secs.unwrap_or(default_grace);
    if grace > MAX_ROTATION_GRACE_SECS {
        let refusal =
            super::invalid_request(format!("grace_secs is at most {MAX_ROTATION_GRACE_SECS}"));
        return Ok(call.answer(Err(refusal)));
    }
    let result = async {
        record_in_tenant(&call, &key_id).await?;
        manager(core)?
            .rotate(&key_id, Duration::from_secs(grace))
            .await
            .map_err(|e| key_error(&e))
    }
    .await;
    Ok(match result {
        Ok(issued) => {
            let detail = format!(
                ": key `{key_id}` rotated to `{}`, grace {grace} s",
                issued.record.key_id
            );
            call.answer_with(Ok(issued_json(&issued)), &detail)
        }
        Err(refusal) => call.answer(Err(refusal)),
    })
}

/// `POST /api/v1/admin/api-keys/{key_id}/revoke`: the key fails from the next request on
/// (`admin:keys.revoke`).
async fn revoke(
    scoped: Scoped<KeyParams>,
    Path(key_id): Path<String>,
) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:keys.revoke")?;
    if params.grace_secs.is_some() {
        return Ok(call.answer(Err(super::invalid_request("grace_secs belongs to rotate"))));
    }
    let result = async {
        record_in_tenant(&call, &key_id).await?;
        let record = manager(call.core())?
            .revoke(&key_id)
            .await
            .map_err(|e| key_error(&e))?;
        Ok(ok(&json!({ "revoked": record_json(&record) })))
    }
    .await;
    let detail = format!(": key `{key_id}`");
    Ok(call.answer_with(result, &detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_tenant_rules_are_found_through_inheritance() {
        let policy = mcp_rbac::Policy::from_toml_str(
            r#"
            [roles.platform]
            allow = [{ action = "admin:*", cross_tenant = true }]
            [roles.deputy]
            inherits = ["platform"]
            [roles.local]
            allow = [{ action = "admin:*" }]
            [roles.loop_a]
            inherits = ["loop_b"]
            [roles.loop_b]
            inherits = ["local"]
            "#,
            "t.toml",
        )
        .unwrap();
        assert!(crosses_tenants(&policy, "platform"));
        assert!(crosses_tenants(&policy, "deputy"));
        assert!(!crosses_tenants(&policy, "local"));
        assert!(!crosses_tenants(&policy, "loop_a"));
        assert!(!crosses_tenants(&policy, "unknown"));
    }
}
