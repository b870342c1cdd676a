//! `GET {issuer}/callback`: Entra sends the user back; the proxy exchanges Entra's code,
//! validates the ID token, keeps Entra's tokens encrypted, and sends the client its own
//! authorization code.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use mcp_auth_core::{Credential, IssueRequest, Secret};
use serde::Deserialize;

use super::Shared;
use super::authorize::ClientRedirect;
use super::entra::EntraLogin;
use super::error::ProxyError;
use super::html::error_page;
use super::records::{
    self, IssuedCode, PendingAuthorization, UpstreamPending, UpstreamSession, key, random_token,
};
use super::scope::from_entra;
use super::store::unix_secs;

/// The query Entra redirects with.
#[derive(Debug, Deserialize)]
pub(crate) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The OAuth errors passed on to the client as they are; anything else is `server_error`.
const PASSED_ON: [&str; 4] = [
    "access_denied",
    "invalid_scope",
    "temporarily_unavailable",
    "consent_required",
];

/// `GET {issuer}/callback`.
pub(crate) async fn callback(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in response is malformed.",
        );
    };
    let Some(state) = params.state.as_deref() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in response has no state.",
        );
    };
    let pending: Option<UpstreamPending> =
        match records::take(shared.state.as_ref(), &key::upstream(state)).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "sign-in lookup failed");
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is temporarily unavailable.",
                );
            }
        };
    let Some(UpstreamPending {
        authorization,
        challenge,
        remember_consent_for,
    }) = pending
    else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already completed. Start again from your application.",
        );
    };
    let back = ClientRedirect {
        redirect_uri: &authorization.redirect_uri,
        state: authorization.state.as_deref(),
        issuer: &shared.issuer,
    };
    if let Some(error) = params.error.as_deref() {
        tracing::info!(error, client_id = %authorization.client_id, "Entra refused the sign-in");
        let code = PASSED_ON
            .iter()
            .find(|known| **known == error)
            .copied()
            .unwrap_or("server_error");
        return back.error(code, "the identity provider did not sign the user in");
    }
    let Some(code) = params.code.as_deref() else {
        return back.error("server_error", "the identity provider returned no code");
    };
    let login = match shared.entra.exchange_code(code, &challenge).await {
        Ok(login) => login,
        Err(error) => {
            tracing::warn!(%error, source = ?std::error::Error::source(&error), "Entra code exchange failed");
            let code = match error {
                ProxyError::Upstream { .. } => "temporarily_unavailable",
                ProxyError::IdTokenRejected(_) => "access_denied",
                _ => "server_error",
            };
            return back.error(code, "the sign-in could not be completed");
        }
    };
    let sid = random_token();
    let grant = match grant_for(&shared, &login, &authorization, &sid).await {
        Ok(grant) => grant,
        Err(GrantError::NoScope) => {
            return back.error("access_denied", "none of the requested scopes was granted");
        }
        Err(GrantError::Refused(error)) => {
            tracing::warn!(%error, "Entra access token refused by the configured authenticator");
            return back.error("access_denied", "the account may not use this server");
        }
    };
    match store_login(&shared, &login, &authorization, grant, &sid).await {
        Ok(code) => {
            if let Some(browser) = &remember_consent_for {
                remember_consent(&shared, browser, &authorization.client_id).await;
            }
            tracing::info!(
                client_id = %authorization.client_id,
                tenant = %login.identity.tid,
                "sign-in completed through Entra"
            );
            back.code(&code)
        }
        Err(error) => {
            tracing::warn!(%error, "storing the login failed");
            back.error("temporarily_unavailable", "the sign-in could not be stored")
        }
    }
}

#[derive(Debug)]
enum GrantError {
    NoScope,
    Refused(mcp_auth_core::AuthError),
}

/// What the proxy's tokens will say about the user.
async fn grant_for(
    shared: &Shared,
    login: &EntraLogin,
    authorization: &PendingAuthorization,
    sid: &str,
) -> Result<IssueRequest, GrantError> {
    let prefix = shared.config.entra.scope_prefix();
    let identity = &login.identity;
    let (subject, tenant, roles, granted) = match &shared.entra_authenticator {
        Some(authenticator) => {
            let credential = Credential::Bearer(Secret::new(login.tokens.access_token.as_str()));
            let principal = authenticator
                .authenticate(&credential)
                .await
                .map_err(GrantError::Refused)?;
            (
                principal.subject().to_owned(),
                principal.tenant().map(str::to_owned),
                principal.roles().iter().cloned().collect::<Vec<_>>(),
                from_entra(principal.scopes().iter().map(String::as_str), &prefix),
            )
        }
        None => (
            identity.oid.clone(),
            Some(identity.tid.clone()),
            identity.roles.clone(),
            from_entra(login.tokens.scope.iter().map(String::as_str), &prefix),
        ),
    };
    // A response without `scope` grants what was asked (RFC 6749 section 5.1).
    let scopes: Vec<String> = if granted.is_empty() && login.tokens.scope.is_empty() {
        authorization.scopes.clone()
    } else {
        let granted: BTreeSet<&String> = granted.iter().collect();
        authorization
            .scopes
            .iter()
            .filter(|s| granted.contains(s))
            .cloned()
            .collect()
    };
    if scopes.is_empty() {
        return Err(GrantError::NoScope);
    }
    let mut grant = IssueRequest::new(subject)
        .roles(roles)
        .scopes(scopes)
        .client_id(authorization.client_id.clone())
        .claim("sid", sid)
        .claim("oid", identity.oid.clone());
    if let Some(tenant) = tenant {
        grant = grant.tenant(tenant);
    }
    if let Some(name) = &identity.name {
        grant = grant.claim("name", name.clone());
    }
    if let Some(username) = &identity.preferred_username {
        grant = grant.claim("preferred_username", username.clone());
    }
    Ok(grant)
}

/// Records the consent a browser gave to a client, now that a sign-in with it succeeded.
/// A failure costs the user one more consent page, so it is logged and not fatal.
async fn remember_consent(shared: &Shared, browser: &str, client_id: &str) {
    let ttl = shared.config.lifetimes.consent();
    if let Err(error) = shared
        .state
        .put(&key::consent(browser, client_id), b"1", ttl)
        .await
    {
        tracing::warn!(%error, client_id, "the consent could not be remembered");
    }
}

/// Keeps Entra's tokens (sealed) as the login's session and issues the proxy's code.
async fn store_login(
    shared: &Shared,
    login: &EntraLogin,
    authorization: &PendingAuthorization,
    grant: IssueRequest,
    sid: &str,
) -> Result<String, ProxyError> {
    let session_key = key::session(sid);
    let tokens =
        serde_json::to_vec(&login.tokens).map_err(|e| ProxyError::store("token encode", e))?;
    let lifetime = shared.config.lifetimes.refresh_family();
    let session = UpstreamSession {
        subject: grant.subject.clone(),
        client_id: authorization.client_id.clone(),
        ends_at: unix_secs(shared.clock.now()).saturating_add(lifetime.as_secs()),
        sealed_tokens: shared.cipher.seal(&session_key, &tokens)?,
    };
    records::put(shared.state.as_ref(), &session_key, &session, lifetime).await?;
    let code = random_token();
    let issued = IssuedCode {
        client_id: authorization.client_id.clone(),
        redirect_uri: authorization.redirect_uri.clone(),
        code_challenge: authorization.code_challenge.clone(),
        grant,
        sid: sid.to_owned(),
    };
    records::put(
        shared.state.as_ref(),
        &key::code(&code),
        &issued,
        shared.config.lifetimes.authorization_code(),
    )
    .await?;
    Ok(code)
}
