//! The proxy's errors: [`ConfigError`] and [`ProxyError`] at build time, and the OAuth 2.0
//! error responses ([`OAuthError`]) its endpoints answer with.

use std::borrow::Cow;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use mcp_auth_core::BoxError;
use serde_json::json;

/// The configuration is invalid; the message names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid OAuth proxy configuration: {0}")]
pub struct ConfigError(Cow<'static, str>);

impl ConfigError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self(message.into())
    }
}

/// Why the proxy could not be built or a store or upstream operation failed.
///
/// Messages never hold a token, secret or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local issuer of the proxy's tokens could not be built.
    #[error("token issuer setup failed")]
    Issuer(#[source] mcp_auth_core::issuer::IssuerError),
    /// A store failed (connection, query, serialization).
    #[error("{what}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
    /// A store is full and refuses new entries.
    #[error("{0} is full")]
    Full(&'static str),
    /// Entra could not be reached or answered with something unusable.
    #[error("Entra request failed: {what}")]
    Upstream {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
    /// Entra refused the request with an OAuth error (`invalid_grant`, ...).
    #[error("Entra refused the request: {error}")]
    UpstreamRefused {
        /// The OAuth error code Entra answered with.
        error: String,
    },
    /// Entra's ID token was refused (signature, audience, nonce, expiry, or the issuer and
    /// tenant checks); the reason names the check.
    #[error("Entra ID token rejected: {0}")]
    IdTokenRejected(String),
    /// There is no (longer an) upstream session for the login.
    #[error("no upstream session for this login")]
    NoSession,
    /// Encrypting or decrypting a stored Entra token failed (wrong key, tampered record).
    #[error("token encryption failed")]
    Crypto,
}

impl ProxyError {
    pub(crate) fn store(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Store {
            what,
            source: Some(source.into()),
        }
    }

    pub(crate) fn upstream(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Upstream {
            what,
            source: Some(source.into()),
        }
    }
}

/// An OAuth 2.0 error response (RFC 6749 section 5.2, RFC 7591 section 3.2.2, RFC 7009):
/// a status, an error code and a description safe to show to the client.
///
/// Internal details are logged where the error is made, never put in the description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
}

impl OAuthError {
    /// An error with `status`, OAuth `code` and a public `description`.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 401 `invalid_client`.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    /// 503 `temporarily_unavailable`, for a failed store or upstream; logs `error`.
    pub(crate) fn unavailable(error: &ProxyError) -> Self {
        tracing::warn!(error = %error, source = ?std::error::Error::source(error), "OAuth proxy dependency failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the authorization server is temporarily unavailable",
        )
    }

    /// 500 `server_error`; logs `error`.
    pub(crate) fn server_error(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "OAuth proxy internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The public description.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 section 5.2: a failed client authentication names the scheme.
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        response
    }
}

impl From<ProxyError> for OAuthError {
    fn from(error: ProxyError) -> Self {
        match &error {
            ProxyError::Store { .. } | ProxyError::Full(_) | ProxyError::Upstream { .. } => {
                Self::unavailable(&error)
            }
            ProxyError::NoSession | ProxyError::UpstreamRefused { .. } => {
                tracing::info!(error = %error, "login no longer valid upstream");
                Self::invalid_grant("the login is no longer valid; sign in again")
            }
            ProxyError::Config(_)
            | ProxyError::Issuer(_)
            | ProxyError::Crypto
            | ProxyError::IdTokenRejected(_) => Self::server_error(&error),
        }
    }
}
