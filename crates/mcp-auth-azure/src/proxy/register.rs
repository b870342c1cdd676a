//! `POST {issuer}/register`: RFC 7591 dynamic client registration.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, PRAGMA};

use super::Shared;
use super::clients::{ClientMetadata, Registration};
use super::error::OAuthError;

/// Registers a client. Public clients (`token_endpoint_auth_method: none`, what MCP clients
/// send) get no secret; confidential ones get a secret, shown in this response only.
pub(crate) async fn register(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<ClientMetadata>, JsonRejection>,
) -> Response {
    let Json(metadata) = match body {
        Ok(body) => body,
        Err(rejection) => {
            tracing::debug!(%rejection, "registration body refused");
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata",
            )
            .into_response();
        }
    };
    let now = shared.clock.now();
    let registration = match Registration::from_request(
        metadata,
        now,
        shared.config.lifetimes.client_registration(),
    ) {
        Ok(registration) => registration,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = shared
        .clients
        .store()
        .insert(&registration.client, now)
        .await
    {
        return OAuthError::from(error).into_response();
    }
    tracing::info!(
        client_id = %registration.client.client_id,
        client_name = ?registration.client.client_name,
        auth_method = registration.client.token_endpoint_auth_method.as_str(),
        "OAuth client registered"
    );
    let mut response = (StatusCode::CREATED, Json(registration.response())).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, http::HeaderValue::from_static("no-cache"));
    response
}
