//! RFC 8414 authorization-server metadata and the JWKS of the proxy's signing key.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use serde_json::{Value, json};

use super::Shared;

/// The well-known path of the metadata (RFC 8414 section 3); the issuer's path follows it.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// The metadata document of `shared`.
pub(crate) fn document(shared: &Shared) -> Value {
    let mut doc = json!({
        "issuer": shared.issuer,
        "authorization_endpoint": shared.endpoint("/authorize"),
        "token_endpoint": shared.endpoint("/token"),
        "registration_endpoint": shared.endpoint("/register"),
        "revocation_endpoint": shared.endpoint("/revoke"),
        "jwks_uri": shared.endpoint("/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": shared.clients.supports_documents(),
    });
    if !shared.config.scopes.supported.is_empty() {
        doc["scopes_supported"] = json!(shared.config.scopes.supported);
    }
    doc
}

fn cacheable(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// `GET /.well-known/oauth-authorization-server[/path]`.
pub(crate) async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    cacheable(shared.metadata.clone())
}

/// `GET {issuer}/jwks.json`: the public key of the proxy's access tokens.
pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    cacheable(shared.local.jwks_json())
}
