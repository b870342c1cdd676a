//! Credentials as presented by a caller, and how they are taken from an HTTP request.

use std::fmt;

use http::header::{AUTHORIZATION, HeaderName};
use http::request::Parts;

use crate::error::AuthError;

/// A secret string that never shows in `Debug` or `Display` output.
///
/// Read it with [`Secret::expose`]; the name makes every read visible in review. Two secrets
/// compare equal in constant time (for a given length).
#[derive(Clone)]
pub struct Secret(Box<str>);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            self.0.as_bytes(),
            other.0.as_bytes(),
        ))
    }
}

impl Eq for Secret {}

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// A credential a caller presented.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A bearer token from `Authorization: Bearer <token>` (usually a JWT).
    Bearer(Secret),
    /// An API key, from the API-key header or a bearer token with the API-key prefix.
    ApiKey(Secret),
}

impl Credential {
    /// The kind of credential, for logs and metrics.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::Bearer(_) => CredentialKind::Bearer,
            Self::ApiKey(_) => CredentialKind::ApiKey,
        }
    }

    /// The secret material of the credential.
    pub fn secret(&self) -> &Secret {
        match self {
            Self::Bearer(s) | Self::ApiKey(s) => s,
        }
    }
}

/// The kind of a [`Credential`], without its secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A bearer token.
    Bearer,
    /// An API key.
    ApiKey,
}

impl CredentialKind {
    /// A stable lowercase name (`bearer`, `api_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::ApiKey => "api_key",
        }
    }
}

/// Where credentials are looked for in an HTTP request.
///
/// The bearer token is read from the `Authorization` header only; a token in the query
/// string (`access_token=`) is refused, because URLs end up in logs and browser history.
#[derive(Clone, Debug)]
pub struct CredentialExtractor {
    api_key_header: Option<HeaderName>,
    api_key_prefix: Option<String>,
}

impl Default for CredentialExtractor {
    fn default() -> Self {
        Self {
            api_key_header: Some(HeaderName::from_static("x-api-key")),
            api_key_prefix: Some(format!("{}_", crate::DEFAULT_API_KEY_PREFIX)),
        }
    }
}

/// Query parameters that carry tokens and are refused (RFC 6750 section 2.3 is not supported).
const QUERY_TOKEN_PARAMS: [&str; 3] = ["access_token", "api_key", "token"];

impl CredentialExtractor {
    /// An extractor with the defaults: `Authorization: Bearer`, the `x-api-key` header, and
    /// bearer tokens starting with the default API-key prefix treated as API keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the header that carries API keys, or `None` to accept API keys only as bearer tokens.
    pub fn api_key_header(mut self, header: Option<HeaderName>) -> Self {
        self.api_key_header = header;
        self
    }

    /// Sets the API-key prefix (without the trailing `_`): a bearer token that starts with
    /// `<prefix>_` is an API key. `None` treats every bearer token as a token.
    pub fn api_key_prefix(mut self, prefix: Option<&str>) -> Self {
        self.api_key_prefix = prefix.map(|p| format!("{p}_"));
        self
    }

    /// The header that carries API keys, if any.
    pub fn api_key_header_name(&self) -> Option<&HeaderName> {
        self.api_key_header.as_ref()
    }

    /// Takes the credential out of a request.
    ///
    /// Returns `Ok(None)` when the request carries none, and an error when it carries a
    /// malformed one, several conflicting ones, or a token in the query string.
    pub fn extract(&self, parts: &Parts) -> Result<Option<Credential>, AuthError> {
        if parts.uri.query().is_some_and(query_has_token) {
            return Err(AuthError::TokenInQuery);
        }

        let mut authorization = parts.headers.get_all(AUTHORIZATION).iter();
        let bearer = match (authorization.next(), authorization.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => {
                return Err(AuthError::Malformed("more than one Authorization header"));
            }
            (Some(value), None) => Some(parse_bearer(value)?),
        };

        let header_key = match &self.api_key_header {
            Some(name) => {
                let mut values = parts.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => None,
                    (Some(_), Some(_)) => {
                        return Err(AuthError::Malformed("more than one API-key header"));
                    }
                    (Some(value), None) => {
                        let text = value
                            .to_str()
                            .map_err(|_| AuthError::Malformed("API-key header is not ASCII"))?
                            .trim();
                        if text.is_empty() {
                            return Err(AuthError::Malformed("API-key header is empty"));
                        }
                        Some(Secret::new(text))
                    }
                }
            }
            None => None,
        };

        match (bearer, header_key) {
            (Some(_), Some(_)) => Err(AuthError::Malformed(
                "both an Authorization header and an API-key header",
            )),
            (None, Some(key)) => Ok(Some(Credential::ApiKey(key))),
            (Some(token), None) => {
                let is_key = self
                    .api_key_prefix
                    .as_deref()
                    .is_some_and(|prefix| token.expose().starts_with(prefix));
                Ok(Some(if is_key {
                    Credential::ApiKey(token)
                } else {
                    Credential::Bearer(token)
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Whether a query string names one of [`QUERY_TOKEN_PARAMS`]. Names are compared after
/// percent-decoding (`access%5Ftoken` is `access_token` to the application behind us) and
/// without regard to case; both `&` and the legacy `;` separate parameters.
fn query_has_token(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let name = percent_decode(name.as_bytes());
        QUERY_TOKEN_PARAMS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
    })
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%'
            && let [high, low, after @ ..] = tail
            && let (Some(high), Some(low)) = (hex(*high), hex(*low))
        {
            out.push(high << 4 | low);
            rest = after;
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    out
}

fn parse_bearer(value: &http::HeaderValue) -> Result<Secret, AuthError> {
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not ASCII"))?;
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or(AuthError::Malformed("Authorization header has no scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::UnsupportedScheme);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Malformed("empty bearer token"));
    }
    // RFC 6750 b64token: no spaces inside the token.
    if token.contains(' ') {
        return Err(AuthError::Malformed("bearer token contains spaces"));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_and_api_key() {
        let ex = CredentialExtractor::new();
        let c = ex
            .extract(&parts("/mcp", &[("authorization", "Bearer abc.def.ghi")]))
            .unwrap()
            .unwrap();
        assert_eq!(c, Credential::Bearer(Secret::new("abc.def.ghi")));

        let c = ex
            .extract(&parts(
                "/mcp",
                &[("authorization", "bearer mcpk_id_secret")],
            ))
            .unwrap()
            .unwrap();
        assert_eq!(c.kind(), CredentialKind::ApiKey);

        let c = ex
            .extract(&parts("/mcp", &[("x-api-key", "mcpk_id_secret")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.kind(), CredentialKind::ApiKey);

        assert!(ex.extract(&parts("/mcp", &[])).unwrap().is_none());
    }

    #[test]
    fn refuses_query_tokens_and_bad_headers() {
        let ex = CredentialExtractor::new();
        assert!(matches!(
            ex.extract(&parts("/mcp?access_token=abc", &[])),
            Err(AuthError::TokenInQuery)
        ));
        assert!(matches!(
            ex.extract(&parts("/mcp?x=1&ACCESS_TOKEN=abc", &[])),
            Err(AuthError::TokenInQuery)
        ));
        // Percent-encoded names, the `;` separator and a bare name are refused too.
        for uri in [
            "/mcp?access%5Ftoken=abc",
            "/mcp?%61ccess_token=abc",
            "/mcp?x=1;token=abc",
            "/mcp?API_KEY",
        ] {
            assert!(
                matches!(
                    ex.extract(&parts(uri, &[("authorization", "Bearer abc.def.ghi")])),
                    Err(AuthError::TokenInQuery)
                ),
                "{uri}"
            );
        }
        // Names that merely contain or resemble one are fine.
        for uri in [
            "/mcp?tokens=1",
            "/mcp?x=access_token",
            "/mcp?access%5Gtoken=1&%",
        ] {
            assert!(ex.extract(&parts(uri, &[])).unwrap().is_none(), "{uri}");
        }
        assert!(matches!(
            ex.extract(&parts("/mcp", &[("authorization", "Basic dXNlcjpwYXNz")])),
            Err(AuthError::UnsupportedScheme)
        ));
        assert!(matches!(
            ex.extract(&parts("/mcp", &[("authorization", "Bearer ")])),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            ex.extract(&parts(
                "/mcp",
                &[("authorization", "Bearer a"), ("x-api-key", "b")]
            )),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn secret_equality() {
        assert_eq!(Secret::new("same-value"), Secret::new("same-value"));
        assert_ne!(Secret::new("same-value"), Secret::new("same-valuE"));
        assert_ne!(Secret::new("same-value"), Secret::new("same-value-longer"));
        assert_ne!(Secret::new(""), Secret::new("x"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = Credential::Bearer(Secret::new("very-secret-token"));
        assert!(!format!("{c:?}").contains("very-secret-token"));
    }
}
