//! Authentication errors, each mapped to its HTTP status and RFC 6750 error code.

use http::StatusCode;

/// A boxed error from a store or a key source, kept as the `source()` of an [`AuthError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a bearer token was rejected. Logged at debug level; never sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// The token is larger than the configured limit and was not parsed.
    #[error("token is larger than the size limit")]
    Oversized,
    /// The token is not a well-formed compact JWS (segments, base64url, JSON).
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm that is not allowed (including `none`).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header carries a `crit` parameter this verifier does not understand.
    #[error("unknown critical header parameter")]
    UnknownCritical,
    /// The header `typ` is not the required one (for example `at+jwt`).
    #[error("wrong token type")]
    WrongType,
    /// No key with the token's `kid` (or no key at all that fits) is known.
    #[error("no key for the token's key id")]
    UnknownKey,
    /// The key found for the `kid` cannot be used with the token's algorithm.
    #[error("key does not match the token's algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// `exp - iat` exceeds the configured maximum lifetime.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// `iss` is not an accepted issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The token's tenant (for example Entra ID's `tid`) is not on the allowlist of an
    /// [`IssuerPolicy`](crate::jwt::IssuerPolicy).
    #[error("tenant not allowed")]
    TenantNotAllowed,
    /// `aud` holds none of the accepted audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing or has the wrong JSON type.
    #[error("required claim missing or invalid: {0}")]
    MissingClaim(&'static str),
}

/// Why authentication failed.
///
/// Each variant knows its HTTP status ([`AuthError::status`]) and its RFC 6750 error code
/// ([`AuthError::error_code`]); the `Display` text is detail for logs, never for clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no credential. 401 with a challenge and no error code.
    #[error("no credential presented")]
    Missing,
    /// The `Authorization` header uses a scheme other than `Bearer`. 401, no error code.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// A token was passed in the query string, which is refused. 400 `invalid_request`.
    #[error("access token in the query string")]
    TokenInQuery,
    /// The credential headers are malformed (duplicates, not ASCII, empty). 400 `invalid_request`.
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// A bearer token failed verification. 401 `invalid_token`.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenRejection),
    /// An API key is malformed, unknown, expired or does not match. 401 `invalid_token`.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The credential was revoked. 401 `invalid_token`.
    #[error("credential revoked")]
    Revoked,
    /// No configured authenticator accepts this kind of credential. 401 `invalid_token`.
    #[error("no authenticator for this credential kind")]
    NotAccepted,
    /// The caller is authenticated but lacks a scope. 403 `insufficient_scope`.
    #[error("insufficient scope, needs {scope}")]
    InsufficientScope {
        /// The scope (space-separated scopes) that would allow the request.
        scope: String,
    },
    /// Keys or a store needed to decide are unavailable (issuer down with no cached keys,
    /// database unreachable). 503: the credential may be fine, the server cannot tell.
    #[error("authentication backend unavailable: {message}")]
    Unavailable {
        /// What was unavailable.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl AuthError {
    /// Builds [`AuthError::Unavailable`] from a message and an optional source.
    pub fn unavailable(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source,
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TokenInQuery | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Missing
            | Self::UnsupportedScheme
            | Self::InvalidToken(_)
            | Self::InvalidApiKey
            | Self::Revoked
            | Self::NotAccepted => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code, if the challenge carries one.
    ///
    /// A request without credentials gets a challenge without an error code (RFC 6750
    /// section 3.1); a 503 carries none either.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::UnsupportedScheme | Self::Unavailable { .. } => None,
            Self::TokenInQuery | Self::Malformed(_) => Some("invalid_request"),
            Self::InvalidToken(_) | Self::InvalidApiKey | Self::Revoked | Self::NotAccepted => {
                Some("invalid_token")
            }
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// Whether this failure says the presented credential is bad (and so should count
    /// towards a brute-force lockout), as opposed to missing or a server-side problem.
    pub fn is_credential_failure(&self) -> bool {
        matches!(
            self,
            Self::InvalidToken(_) | Self::InvalidApiKey | Self::Revoked | Self::NotAccepted
        )
    }

    /// The public JSON body for this error: only the error code, never the detail.
    pub fn public_body(&self) -> String {
        let code = self.error_code().unwrap_or(match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            _ => "unauthorized",
        });
        format!("{{\"error\":\"{code}\"}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(AuthError, u16, Option<&str>)> = vec![
            (AuthError::Missing, 401, None),
            (AuthError::TokenInQuery, 400, Some("invalid_request")),
            (
                AuthError::InvalidToken(TokenRejection::Expired),
                401,
                Some("invalid_token"),
            ),
            (AuthError::Revoked, 401, Some("invalid_token")),
            (
                AuthError::InsufficientScope {
                    scope: "mcp:tools".into(),
                },
                403,
                Some("insufficient_scope"),
            ),
            (AuthError::unavailable("jwks down", None), 503, None),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.error_code(), code, "{err}");
        }
    }

    #[test]
    fn public_body_has_only_the_code() {
        let err = AuthError::InvalidToken(TokenRejection::Malformed("secret detail"));
        assert_eq!(err.public_body(), r#"{"error":"invalid_token"}"#);
        assert_eq!(
            AuthError::unavailable("db down", None).public_body(),
            r#"{"error":"temporarily_unavailable"}"#
        );
    }
}
