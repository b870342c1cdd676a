//! RFC 6750 `WWW-Authenticate: Bearer` challenges, correctly quoted.

use http::HeaderValue;

use crate::error::AuthError;

/// A `WWW-Authenticate: Bearer ...` challenge (RFC 6750 section 3, RFC 9728 section 5.1).
///
/// Parameter values are quoted strings; characters that cannot appear in one (controls,
/// non-ASCII) are dropped rather than risk a header injection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `realm`.
    pub realm: Option<String>,
    /// `resource_metadata`: the URL of the RFC 9728 protected-resource metadata.
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes needed (space-separated).
    pub scope: Option<String>,
    /// `error`: an RFC 6750 error code.
    pub error: Option<&'static str>,
}

impl BearerChallenge {
    /// The challenge for `error`, naming the metadata URL and the scope needed.
    ///
    /// `default_scope` is used when the error does not name a scope itself (a 401).
    pub fn for_error(
        error: &AuthError,
        resource_metadata: Option<&str>,
        default_scope: Option<&str>,
    ) -> Self {
        let scope = match error {
            AuthError::InsufficientScope { scope } => Some(scope.clone()),
            _ => default_scope.map(str::to_owned),
        };
        Self {
            realm: None,
            resource_metadata: resource_metadata.map(str::to_owned),
            scope: scope.filter(|s| !s.is_empty()),
            error: error.error_code(),
        }
    }

    /// Renders the header value.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut out = String::from("Bearer");
        let mut first = true;
        let mut push = |name: &str, value: &str| {
            out.push_str(if first { " " } else { ", " });
            first = false;
            out.push_str(name);
            out.push_str("=\"");
            for ch in value.chars() {
                match ch {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(ch);
                    }
                    ' '..='~' => out.push(ch),
                    _ => {}
                }
            }
            out.push('"');
        };
        if let Some(realm) = &self.realm {
            push("realm", realm);
        }
        if let Some(url) = &self.resource_metadata {
            push("resource_metadata", url);
        }
        if let Some(scope) = &self.scope {
            push("scope", scope);
        }
        if let Some(error) = self.error {
            push("error", error);
        }
        // Only visible ASCII and spaces were written, so this cannot fail; fall back to a
        // bare scheme rather than panic.
        HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static("Bearer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenRejection;

    #[test]
    fn missing_token_challenge() {
        let c = BearerChallenge::for_error(
            &AuthError::Missing,
            Some("https://mcp.example/.well-known/oauth-protected-resource"),
            Some("mcp:tools"),
        );
        assert_eq!(
            c.to_header_value(),
            "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource\", scope=\"mcp:tools\""
        );
    }

    #[test]
    fn invalid_and_insufficient() {
        let c = BearerChallenge::for_error(
            &AuthError::InvalidToken(TokenRejection::Expired),
            None,
            None,
        );
        assert_eq!(c.to_header_value(), "Bearer error=\"invalid_token\"");
        let c = BearerChallenge::for_error(
            &AuthError::InsufficientScope {
                scope: "files:read files:write".into(),
            },
            Some("https://x/m"),
            Some("ignored"),
        );
        assert_eq!(
            c.to_header_value(),
            "Bearer resource_metadata=\"https://x/m\", scope=\"files:read files:write\", error=\"insufficient_scope\""
        );
    }

    #[test]
    fn quoting_escapes_and_drops() {
        let c = BearerChallenge {
            realm: Some("a\"b\\c\r\nSet-Cookie: x\u{e9}".into()),
            ..Default::default()
        };
        assert_eq!(
            c.to_header_value(),
            "Bearer realm=\"a\\\"b\\\\cSet-Cookie: x\""
        );
    }
}
