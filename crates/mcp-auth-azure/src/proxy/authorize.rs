//! `GET {issuer}/authorize` and `POST {issuer}/consent`: the client's authorization request
//! is checked, consent is asked once per client and browser, and the user is sent to Entra.

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use super::Shared;
use super::clients::LookupError;
use super::html::{ConsentPage, error_page, harden};
use super::records::{self, PendingAuthorization, UpstreamPending, key, random_token, sha256_hex};
use super::redirect::redirect_matches;
use super::scope::{ScopeError, entra_scopes, requested_scopes};

/// The query of an authorization request (RFC 6749 section 4.1.1, RFC 7636, RFC 8707).
#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
}

/// Where a response for the client goes: its redirect URI with `state` and `iss`.
pub(crate) struct ClientRedirect<'a> {
    pub(crate) redirect_uri: &'a str,
    pub(crate) state: Option<&'a str>,
    pub(crate) issuer: &'a str,
}

impl ClientRedirect<'_> {
    fn to(&self, params: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(self.redirect_uri) else {
            return error_page(StatusCode::BAD_REQUEST, "the redirect URI is not valid");
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            // RFC 9207: the client can tell which server answered.
            query.append_pair("iss", self.issuer);
        }
        found(url.as_str())
    }

    /// A successful response: the proxy's authorization code.
    pub(crate) fn code(&self, code: &str) -> Response {
        self.to(&[("code", code)])
    }

    /// An error response (RFC 6749 section 4.1.2.1).
    pub(crate) fn error(&self, error: &str, description: &str) -> Response {
        tracing::debug!(error, description, "authorization error sent to the client");
        self.to(&[("error", error), ("error_description", description)])
    }
}

/// A `302 Found` to `location`, with the page headers.
pub(crate) fn found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(LOCATION, value);
        }
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "the redirect URI is not valid"),
    }
    harden(response.headers_mut());
    response
}

/// Whether `challenge` is an S256 PKCE challenge: 43 base64url characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a `resource` parameter names the proxy's MCP resource (a trailing slash aside).
pub(crate) fn is_our_resource(shared: &Shared, resource: &str) -> bool {
    resource.trim_end_matches('/') == shared.config.resource.trim_end_matches('/')
}

/// `GET {issuer}/authorize`.
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    params: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The authorization request is malformed (a parameter repeated or not text).",
        );
    };
    let Some(client_id) = params.client_id.as_deref() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The request names no application (client_id).",
        );
    };
    let now = shared.clock.now();
    let client = match shared.clients.find(client_id, now).await {
        Ok(client) => client,
        Err(LookupError::Unknown) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The application is not registered here (unknown client_id).",
            );
        }
        Err(LookupError::Store(error)) => {
            tracing::warn!(%error, "client lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is temporarily unavailable.",
            );
        }
    };
    let redirect_uri = match params.redirect_uri.as_deref() {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| redirect_matches(r, uri)) =>
        {
            uri.to_owned()
        }
        Some(_) => {
            tracing::info!(
                client_id,
                "authorization request with an unregistered redirect_uri"
            );
            return error_page(
                StatusCode::BAD_REQUEST,
                "The redirect URI is not registered for this application.",
            );
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "The request names no redirect URI.",
                );
            }
        },
    };
    let back = ClientRedirect {
        redirect_uri: &redirect_uri,
        state: params.state.as_deref(),
        issuer: &shared.issuer,
    };
    if params.response_type.as_deref() != Some("code") {
        return back.error("unsupported_response_type", "response_type must be code");
    }
    if !client.allows_grant("authorization_code") {
        return back.error(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        );
    }
    let challenge = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => challenge.to_owned(),
        (Some(_), Some("S256")) => {
            return back.error("invalid_request", "code_challenge is not an S256 challenge");
        }
        (Some(_), _) => {
            return back.error("invalid_request", "code_challenge_method must be S256");
        }
        (None, _) => {
            return back.error("invalid_request", "PKCE (code_challenge, S256) is required");
        }
    };
    if let Some(resource) = params.resource.as_deref()
        && !is_our_resource(&shared, resource)
    {
        return back.error(
            "invalid_target",
            "the resource is not served by this server",
        );
    }
    let scopes = match requested_scopes(
        params.scope.as_deref(),
        &shared.config.scopes.supported,
        &shared.config.scopes.default,
    ) {
        Ok(scopes) => scopes,
        Err(ScopeError::Unsupported(scope)) => {
            return back.error("invalid_scope", &format!("scope {scope} is not offered"));
        }
        Err(ScopeError::Malformed) => return back.error("invalid_scope", "scope is malformed"),
        Err(ScopeError::Empty) => return back.error("invalid_scope", "no scope requested"),
    };
    if let Some(registered) = client.scope.as_deref() {
        let registered: Vec<&str> = registered.split(' ').collect();
        if let Some(extra) = scopes.iter().find(|s| !registered.contains(&s.as_str())) {
            return back.error(
                "invalid_scope",
                &format!("scope {extra} was not registered for the client"),
            );
        }
    }
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: params.state.clone(),
        code_challenge: challenge,
        scopes,
        csrf_sha256: None,
    };

    let browser = shared.cookies.browser(&headers);
    if let Some(browser) = &browser {
        match shared
            .state
            .get(&key::consent(browser, &client.client_id))
            .await
        {
            Ok(Some(_)) => return to_entra(&shared, pending, None).await,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "consent lookup failed");
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is temporarily unavailable.",
                );
            }
        }
    }
    ask_consent(&shared, pending, client.client_name.as_deref()).await
}

/// Shows the consent page for `pending`, with a CSRF token in the form and in a cookie.
async fn ask_consent(
    shared: &Shared,
    mut pending: PendingAuthorization,
    client_name: Option<&str>,
) -> Response {
    let transaction = random_token();
    let csrf = random_token();
    pending.csrf_sha256 = Some(sha256_hex(&csrf));
    let ttl = shared.config.lifetimes.pending_authorization();
    if let Err(error) = records::put(
        shared.state.as_ref(),
        &key::consent_transaction(&transaction),
        &pending,
        ttl,
    )
    .await
    {
        tracing::warn!(%error, "storing the consent transaction failed");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is temporarily unavailable.",
        );
    }
    let action = shared.endpoint("/consent");
    let mut response = ConsentPage {
        action: &action,
        transaction: &transaction,
        csrf: &csrf,
        client_name,
        client_id: &pending.client_id,
        redirect_uri: &pending.redirect_uri,
        scopes: &pending.scopes,
        resource: &shared.config.resource,
    }
    .render();
    response
        .headers_mut()
        .append(SET_COOKIE, shared.cookies.set_csrf(&csrf, ttl.as_secs()));
    response
}

/// A consent just given in a browser.
struct ConsentGiven {
    /// The browser's id, to remember the consent under once the sign-in succeeds.
    browser: String,
    /// Cookies to set on the redirect.
    cookies: Vec<HeaderValue>,
}

/// Stores the sign-in and redirects the browser to Entra. After the consent form
/// (`consent` given) the redirect is a 303 that also sets the consent's cookies.
async fn to_entra(
    shared: &Shared,
    pending: PendingAuthorization,
    consent: Option<ConsentGiven>,
) -> Response {
    let state = random_token();
    let scopes = entra_scopes(&pending.scopes, &shared.config.entra.scope_prefix());
    let (url, challenge) = match shared.entra.authorization_url(&state, &scopes).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "Entra sign-in could not start");
            return ClientRedirect {
                redirect_uri: &pending.redirect_uri,
                state: pending.state.as_deref(),
                issuer: &shared.issuer,
            }
            .error(
                "temporarily_unavailable",
                "the identity provider is unavailable",
            );
        }
    };
    let (browser, cookies) = match consent {
        Some(ConsentGiven { browser, cookies }) => (Some(browser), Some(cookies)),
        None => (None, None),
    };
    let record = UpstreamPending {
        authorization: pending,
        challenge,
        remember_consent_for: browser,
    };
    if let Err(error) = records::put(
        shared.state.as_ref(),
        &key::upstream(&state),
        &record,
        shared.config.lifetimes.pending_authorization(),
    )
    .await
    {
        tracing::warn!(%error, "storing the sign-in failed");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is temporarily unavailable.",
        );
    }
    // 303 after the consent POST (the browser must GET Entra), 302 otherwise.
    let mut response = if cookies.is_some() {
        Redirect::to(url.as_str()).into_response()
    } else {
        found(url.as_str())
    };
    harden(response.headers_mut());
    for cookie in cookies.unwrap_or_default() {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// The consent form.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsentForm {
    transaction: String,
    csrf: String,
    decision: String,
}

/// `POST {issuer}/consent`.
pub(crate) async fn consent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "The consent form is malformed.");
    };
    let pending: Option<PendingAuthorization> = match records::take(
        shared.state.as_ref(),
        &key::consent_transaction(&form.transaction),
    )
    .await
    {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(%error, "consent transaction lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is temporarily unavailable.",
            );
        }
    };
    let Some(pending) = pending else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was already answered. Start again from your application.",
        );
    };
    // The form's token must be the one of this transaction and the one in this browser's
    // cookie: a form another site makes a browser post carries neither.
    let cookie = shared.cookies.csrf(&headers).unwrap_or_default();
    let matches_cookie: bool = form.csrf.as_bytes().ct_eq(cookie.as_bytes()).into();
    let matches_record: bool = pending
        .csrf_sha256
        .as_deref()
        .is_some_and(|h| bool::from(sha256_hex(&form.csrf).as_bytes().ct_eq(h.as_bytes())));
    if form.csrf.is_empty() || !matches_cookie || !matches_record {
        tracing::warn!(client_id = %pending.client_id, "consent form failed the CSRF check");
        return error_page(
            StatusCode::FORBIDDEN,
            "The consent could not be verified. Start again from your application.",
        );
    }
    let clear = shared.cookies.clear_csrf();
    if form.decision != "approve" {
        tracing::info!(client_id = %pending.client_id, "consent denied");
        let mut response = ClientRedirect {
            redirect_uri: &pending.redirect_uri,
            state: pending.state.as_deref(),
            issuer: &shared.issuer,
        }
        .error("access_denied", "the user denied access");
        response.headers_mut().append(SET_COOKIE, clear);
        return response;
    }
    let browser = shared
        .cookies
        .browser(&headers)
        .unwrap_or_else(random_token);
    tracing::info!(client_id = %pending.client_id, "consent given");
    let cookies = vec![
        clear,
        shared
            .cookies
            .set_browser(&browser, shared.config.lifetimes.consent().as_secs()),
    ];
    to_entra(&shared, pending, Some(ConsentGiven { browser, cookies })).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenges() {
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("short"));
        assert!(!is_s256_challenge(&"a".repeat(44)));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }
}
