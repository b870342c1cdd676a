//! `POST {issuer}/revoke`: RFC 7009 token revocation.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use mcp_auth_core::Secret;
use mcp_auth_core::issuer::REFRESH_TOKEN_PREFIX;
use serde::Deserialize;
use serde_json::Value;

use super::Shared;
use super::clients::{LookupError, authenticate, presented_client};
use super::error::OAuthError;
use super::token::end_session;

/// The form of a revocation request.
#[derive(Debug, Deserialize)]
pub(crate) struct RevokeForm {
    token: Option<String>,
    // Accepted and not needed: the token's form tells its type.
    #[serde(rename = "token_type_hint")]
    _token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST {issuer}/revoke`. A refresh token revokes its whole family; an access token is
/// revoked until it expires and ends the Entra side of its login. Unknown, malformed or
/// expired tokens are answered 200 as well (RFC 7009 section 2.2).
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    match revoke_inner(&shared, &headers, form).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn revoke_inner(
    shared: &Shared,
    headers: &HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<(), OAuthError> {
    let Form(form) = form
        .map_err(|_| OAuthError::invalid_request("the body must be a form, each parameter once"))?;
    let presented = presented_client(
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let client = match shared
        .clients
        .find(&presented.client_id, shared.clock.now())
        .await
    {
        Ok(client) => client,
        Err(LookupError::Unknown) => return Err(OAuthError::invalid_client("unknown client")),
        Err(LookupError::Store(error)) => return Err(error.into()),
    };
    authenticate(&client, &presented)?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;

    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        let found = shared
            .local
            .revoke_refresh_token(&Secret::new(token))
            .await
            .map_err(|error| {
                OAuthError::unavailable(&super::error::ProxyError::Store {
                    what: "refresh-token store failed",
                    source: Some(Box::new(error)),
                })
            })?;
        tracing::info!(client_id = %client.client_id, found, "refresh-token family revoked");
        return Ok(());
    }

    let Ok(verified) = shared.validator.validate(&token, &shared.keys) else {
        // Not one of ours, or expired: nothing to revoke.
        return Ok(());
    };
    let claims = verified.claims();
    if claims.get("client_id").and_then(Value::as_str) != Some(client.client_id.as_str()) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was issued to another client",
        ));
    }
    if let Some(jti) = verified.token_id() {
        let expires_at = UNIX_EPOCH + Duration::from_secs(verified.expires_at());
        shared
            .revocation
            .revoke_token(jti, expires_at)
            .await
            .map_err(|error| {
                OAuthError::unavailable(&super::error::ProxyError::Store {
                    what: "revocation store failed",
                    source: Some(Box::new(error)),
                })
            })?;
    }
    if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
        end_session(shared, sid).await?;
    }
    tracing::info!(client_id = %client.client_id, "access token revoked");
    Ok(())
}
