//! `POST {issuer}/token`: the authorization-code grant (with PKCE) and the refresh-token
//! grant (rotation, reuse detection, grace window), answered with the proxy's own tokens.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};
use mcp_auth_core::issuer::{IssuerError, TokenPair};
use mcp_auth_core::{IssueRequest, Secret};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Shared;
use super::authorize::is_our_resource;
use super::clients::{LookupError, authenticate, presented_client};
use super::entra::EntraTokens;
use super::error::{OAuthError, ProxyError};
use super::records::{self, IssuedCode, UpstreamSession, key};
use super::store::{RegisteredClient, unix_secs};

/// The form of a token request.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// How long before its expiry Entra's access token is refreshed during a proxy refresh.
const ENTRA_REFRESH_MARGIN_SECS: u64 = 60;

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, http::HeaderValue::from_static("no-cache"));
    response
}

/// `POST {issuer}/token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let result = match form {
        Ok(Form(form)) => match form.grant_type.as_deref() {
            Some("authorization_code") => code_grant(&shared, &headers, form).await,
            Some("refresh_token") => refresh_grant(&shared, &headers, form).await,
            Some(_) => Err(OAuthError::new(
                http::StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        },
        Err(rejection) => {
            tracing::debug!(%rejection, "token request body refused");
            Err(OAuthError::invalid_request(
                "the body must be a form (application/x-www-form-urlencoded), each parameter once",
            ))
        }
    };
    match result {
        Ok(body) => no_store(Json(body).into_response()),
        Err(error) => error.into_response(),
    }
}

/// Finds and authenticates the client of a token request.
async fn client_of(
    shared: &Shared,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<RegisteredClient, OAuthError> {
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
    if let Some(resource) = form.resource.as_deref()
        && !is_our_resource(shared, resource)
    {
        return Err(OAuthError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_target",
            "the resource is not served by this server",
        ));
    }
    Ok(client)
}

/// Whether `verifier` is a PKCE verifier (RFC 7636 section 4.1) whose S256 challenge is
/// `challenge`, compared in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shaped && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn code_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Value, OAuthError> {
    let client = client_of(shared, headers, &form).await?;
    if !client.allows_grant("authorization_code") {
        return Err(unauthorized_client());
    }
    let code = form
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let store = shared.state.as_ref();
    let Some(issued) = records::take::<IssuedCode>(store, &key::code(code)).await? else {
        // A replayed code ends the login it produced (RFC 6749 section 4.1.2).
        if let Some(sid) = records::get::<String>(store, &key::used_code(code)).await? {
            tracing::warn!(client_id = %client.client_id, "authorization code replayed; its login is ended");
            end_session(shared, &sid).await?;
        }
        return Err(OAuthError::invalid_grant(
            "the authorization code is invalid, expired or already used",
        ));
    };
    records::put(
        store,
        &key::used_code(code),
        &issued.sid,
        shared.config.lifetimes.pending_authorization(),
    )
    .await?;
    if issued.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    match form.redirect_uri.as_deref() {
        Some(uri) if uri == issued.redirect_uri => {}
        None if client.redirect_uris.len() == 1 => {}
        _ => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
    }
    let verifier = form
        .code_verifier
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required"))?;
    if !pkce_matches(verifier, &issued.code_challenge) {
        tracing::info!(client_id = %client.client_id, "PKCE verification failed");
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    issue(shared, &client, &issued.grant).await
}

/// The proxy's tokens for `grant`: an access token, and a refresh token if the client may
/// refresh.
async fn issue(
    shared: &Shared,
    client: &RegisteredClient,
    grant: &IssueRequest,
) -> Result<Value, OAuthError> {
    if client.allows_grant("refresh_token") {
        let pair = shared
            .local
            .issue_with_refresh(grant)
            .await
            .map_err(issuer_error)?;
        tracing::debug!(family_id = %pair.family_id, client_id = %client.client_id, "tokens issued");
        Ok(pair.to_token_response())
    } else {
        let access = shared.local.issue(grant).map_err(issuer_error)?;
        let mut body = serde_json::json!({
            "access_token": access.token.expose(),
            "token_type": "Bearer",
            "expires_in": access.expires_in.as_secs(),
        });
        if !grant.scopes.is_empty() {
            body["scope"] = Value::String(grant.scopes.join(" "));
        }
        Ok(body)
    }
}

async fn refresh_grant(
    shared: &Shared,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Value, OAuthError> {
    let client = client_of(shared, headers, &form).await?;
    if !client.allows_grant("refresh_token") {
        return Err(unauthorized_client());
    }
    let token = form
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let pair = shared
        .local
        .refresh(&Secret::new(token))
        .await
        .map_err(issuer_error)?;
    if pair.grant.client_id.as_deref() != Some(client.client_id.as_str()) {
        // Someone else's token: it is used up now, and its family goes too.
        tracing::warn!(client_id = %client.client_id, family_id = %pair.family_id, "refresh token presented by another client; family revoked");
        revoke_family(shared, &pair).await;
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if let Some(scope) = form.scope.as_deref() {
        let granted = &pair.grant.scopes;
        if let Some(extra) = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .find(|s| !granted.iter().any(|g| g == s))
        {
            return Err(OAuthError::new(
                http::StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("scope {extra} was not granted"),
            ));
        }
    }
    let sid = pair
        .grant
        .extra
        .get("sid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match check_upstream(shared, &sid).await {
        Ok(()) => Ok(pair.to_token_response()),
        Err(ProxyError::NoSession | ProxyError::UpstreamRefused { .. }) => {
            tracing::info!(client_id = %client.client_id, family_id = %pair.family_id, "login ended upstream; refresh refused");
            revoke_family(shared, &pair).await;
            Err(OAuthError::invalid_grant(
                "the login is no longer valid; sign in again",
            ))
        }
        Err(error) => {
            // Entra or the store is unreachable: the login was valid, so the refresh goes
            // through and the check is made again at the next refresh.
            tracing::warn!(%error, "login not re-checked with Entra; refresh allowed");
            Ok(pair.to_token_response())
        }
    }
}

/// Makes sure the login behind a refresh still stands: its session exists, and once
/// Entra's access token has expired, Entra still refreshes it.
async fn check_upstream(shared: &Shared, sid: &str) -> Result<(), ProxyError> {
    let session_key = key::session(sid);
    let store = shared.state.as_ref();
    let session: UpstreamSession = records::get(store, &session_key)
        .await?
        .ok_or(ProxyError::NoSession)?;
    let tokens: EntraTokens =
        serde_json::from_slice(&shared.cipher.open(&session_key, &session.sealed_tokens)?)
            .map_err(|_| ProxyError::Crypto)?;
    let now = unix_secs(shared.clock.now());
    if tokens.expires_at > now.saturating_add(ENTRA_REFRESH_MARGIN_SECS) {
        return Ok(());
    }
    match shared.entra.refresh(&tokens).await {
        Ok(fresh) => super::upstream::save_tokens(shared, sid, session, &fresh).await,
        Err(error @ ProxyError::UpstreamRefused { .. }) => {
            end_session(shared, sid).await?;
            Err(error)
        }
        Err(error) => Err(error),
    }
}

/// Removes the Entra side of a login (its tokens and background refresh).
pub(crate) async fn end_session(shared: &Shared, sid: &str) -> Result<(), ProxyError> {
    shared.upstream.forget(sid);
    shared.state.delete(&key::session(sid)).await.map(drop)
}

async fn revoke_family(shared: &Shared, pair: &TokenPair) {
    if let Err(error) = shared.local.revoke_refresh_token(&pair.refresh_token).await {
        tracing::warn!(%error, family_id = %pair.family_id, "refresh-token family could not be revoked");
    }
}

fn unauthorized_client() -> OAuthError {
    OAuthError::new(
        http::StatusCode::BAD_REQUEST,
        "unauthorized_client",
        "the client may not use this grant type",
    )
}

fn issuer_error(error: IssuerError) -> OAuthError {
    match &error {
        IssuerError::UnknownRefreshToken
        | IssuerError::RefreshTokenExpired
        | IssuerError::RefreshFamilyRevoked
        | IssuerError::RefreshTokenReused => {
            tracing::info!(%error, "refresh refused");
            OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
        }
        IssuerError::Store(_) => OAuthError::unavailable(&ProxyError::Store {
            what: "refresh-token store failed",
            source: Some(Box::new(error)),
        }),
        _ => OAuthError::server_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_from_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            challenge
        ));
        // The challenge itself, or a too-short verifier, never passes.
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
    }
}
