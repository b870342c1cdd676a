//! The upstream registry's admin endpoints (gateway-wide, so only `cross_tenant` admin rules
//! allow them): list the upstreams with their health and breaker (`admin:upstreams.read`),
//! add one (`admin:upstreams.add`), remove one (`admin:upstreams.remove`).
//!
//! The body of an add is read after the call is authorized, so a caller who may not add
//! upstreams is refused (403) whatever it sent, and a malformed entry is an audited 400.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{delete, get};
use http::StatusCode;
use serde_json::json;

use super::{Admin, App, GLOBAL_TENANT, Payload, Problem, error, json_status, ok};
use crate::config::{UpstreamConfig, UpstreamKind};
use crate::upstream::RegistryError;

/// The routes (merged into the admin router).
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/admin/upstreams", get(list).post(add))
        .route("/api/v1/admin/upstreams/{name}", delete(remove))
}

/// `GET /api/v1/admin/upstreams`: every upstream's configuration, breaker and last results.
async fn list(admin: Admin) -> Result<Response, Problem> {
    let call = admin.authorize("admin:upstreams.read", Some(GLOBAL_TENANT))?;
    let body = json!({ "upstreams": call.core().upstreams.statuses() });
    Ok(call.answer(Ok(ok(&body))))
}

/// `POST /api/v1/admin/upstreams` with one `[[upstreams]]` entry as JSON: adds an `http` or
/// `in-process` upstream (stdio upstreams start programs, so only the configuration file
/// names them). 201 with its status; 400 for an invalid entry, 409 for a taken name.
async fn add(
    admin: Admin,
    body: Result<Payload<UpstreamConfig>, Problem>,
) -> Result<Response, Problem> {
    let call = admin.authorize("admin:upstreams.add", Some(GLOBAL_TENANT))?;
    let Payload(config) = match body {
        Ok(body) => body,
        Err(refusal) => return Ok(call.answer(Err(refusal))),
    };
    if config.kind == UpstreamKind::Stdio {
        let refusal = error(
            StatusCode::BAD_REQUEST,
            "invalid_upstream",
            "stdio upstreams start programs: name them in the configuration file",
        );
        let detail = format!(": add stdio upstream `{}` refused", config.name);
        return Ok(call.answer_with(Err(refusal), &detail));
    }
    let detail = format!(": add upstream `{}`", config.name);
    let result = match call.core().upstreams.add(config).await {
        Ok(status) => Ok(json_status(StatusCode::CREATED, &json!(status))),
        Err(e @ RegistryError::Exists(_)) => Err(error(StatusCode::CONFLICT, "exists", e)),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, "invalid_upstream", e)),
    };
    Ok(call.answer_with(result, &detail))
}

/// `DELETE /api/v1/admin/upstreams/{name}`: 204; 404 for an unknown name, 409 for the last
/// upstream.
async fn remove(admin: Admin, Path(name): Path<String>) -> Result<Response, Problem> {
    let call = admin.authorize("admin:upstreams.remove", Some(GLOBAL_TENANT))?;
    let result = match call.core().upstreams.remove(&name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e @ RegistryError::NotFound(_)) => Err(error(StatusCode::NOT_FOUND, "not_found", e)),
        Err(e) => Err(error(StatusCode::CONFLICT, "conflict", e)),
    };
    Ok(call.answer_with(result, &format!(": remove upstream `{name}`")))
}
