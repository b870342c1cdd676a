//! The HTTP response for a failed authentication: [`AuthRejection`] and its [`ChallengeConfig`].

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::challenge::BearerChallenge;
use crate::error::AuthError;

/// What a challenge names besides the error: the RFC 9728 metadata URL and the scope a
/// client should ask for.
///
/// Cheap to clone. [`crate::layer::AuthService`] puts a copy into the extensions of every
/// request it lets through, so that extractors further in (the axum `Principal` extractor)
/// can answer with the same challenge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeConfig {
    inner: Arc<ChallengeData>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ChallengeData {
    resource_metadata: Option<String>,
    default_scope: Option<String>,
}

impl ChallengeConfig {
    /// A configuration that names neither a metadata URL nor a scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the `resource_metadata` URL (see
    /// [`ProtectedResourceMetadata::resource_metadata_url`](crate::resource::ProtectedResourceMetadata::resource_metadata_url)).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).resource_metadata = Some(url.into());
        self
    }

    /// Sets the scope (space-separated scopes) named in 401 challenges.
    pub fn default_scope(mut self, scope: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).default_scope = Some(scope.into());
        self
    }

    /// The `resource_metadata` URL, if set.
    pub fn resource_metadata_url(&self) -> Option<&str> {
        self.inner.resource_metadata.as_deref()
    }

    /// The scope named in 401 challenges, if set.
    pub fn scope(&self) -> Option<&str> {
        self.inner.default_scope.as_deref()
    }

    /// The challenge for `error` under this configuration.
    pub fn challenge_for(&self, error: &AuthError) -> BearerChallenge {
        BearerChallenge::for_error(error, self.resource_metadata_url(), self.scope())
    }
}

/// A failed authentication, ready to become an HTTP response.
///
/// The response carries the error's status, a `WWW-Authenticate: Bearer` challenge (for 401
/// and 403), the JSON body of [`AuthError::public_body`] (only the error code) and
/// `Cache-Control: no-store`. The error's detail is logged at debug level when the response
/// is built and never reaches the client. No credential is ever part of an [`AuthError`], so
/// none is logged.
///
/// ```
/// use mcp_auth_core::{AuthError, AuthRejection, ChallengeConfig};
///
/// let config = ChallengeConfig::new()
///     .resource_metadata("https://mcp.example/.well-known/oauth-protected-resource/mcp")
///     .default_scope("mcp:tools");
/// let response = AuthRejection::new(AuthError::Missing, config).into_http_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
/// );
/// assert_eq!(response.body().as_ref(), br#"{"error":"unauthorized"}"#);
/// ```
#[derive(Debug)]
pub struct AuthRejection {
    error: AuthError,
    config: ChallengeConfig,
}

impl AuthRejection {
    /// A rejection for `error`, challenging with `config`.
    pub fn new(error: AuthError, config: ChallengeConfig) -> Self {
        Self { error, config }
    }

    /// The error being answered.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// Takes the error back.
    pub fn into_error(self) -> AuthError {
        self.error
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.error.status()
    }

    /// Builds the response. Logs the error's detail at debug level.
    pub fn into_http_response(self) -> Response<Bytes> {
        let status = self.error.status();
        tracing::debug!(
            status = status.as_u16(),
            code = self.error.error_code().unwrap_or("none"),
            error = %self.error,
            "authentication rejected"
        );
        let mut response = Response::new(Bytes::from(self.error.public_body()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // RFC 6750 section 3: a challenge answers 401 and 403. A 400 (a token in the query
        // string, malformed headers) also carries one so the client learns where to get a
        // token; a 503 does not, the credential may be fine.
        if status != StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(
                WWW_AUTHENTICATE,
                self.config.challenge_for(&self.error).to_header_value(),
            );
        }
        response
    }
}

impl From<AuthError> for AuthRejection {
    fn from(error: AuthError) -> Self {
        Self::new(error, ChallengeConfig::default())
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthRejection {
    fn into_response(self) -> axum::response::Response {
        self.into_http_response().map(axum::body::Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenRejection;

    fn config() -> ChallengeConfig {
        ChallengeConfig::new()
            .resource_metadata("https://mcp.example/.well-known/oauth-protected-resource/mcp")
            .default_scope("mcp:tools")
    }

    #[test]
    fn invalid_token_response() {
        let response = AuthRejection::new(
            AuthError::InvalidToken(TokenRejection::Malformed("bad segment count")),
            config(),
        )
        .into_http_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\", error=\"invalid_token\""
        );
        assert_eq!(response.body().as_ref(), br#"{"error":"invalid_token"}"#);
    }

    #[test]
    fn insufficient_scope_names_needed_scope() {
        let response = AuthRejection::new(
            AuthError::InsufficientScope {
                scope: "files:write".into(),
            },
            config(),
        )
        .into_http_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.contains("scope=\"files:write\""), "{challenge}");
        assert!(challenge.contains("error=\"insufficient_scope\""));
    }

    #[test]
    fn query_token_is_400_and_unavailable_has_no_challenge() {
        let response = AuthRejection::new(AuthError::TokenInQuery, config()).into_http_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.body().as_ref(), br#"{"error":"invalid_request"}"#);

        let response = AuthRejection::from(AuthError::unavailable(
            "postgres://user:pw@db is down",
            None,
        ))
        .into_http_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            response.body().as_ref(),
            br#"{"error":"temporarily_unavailable"}"#
        );
    }
}
