//! Scope handling: RFC 6749 scope tokens, and the mapping between MCP scope names and
//! Entra's (`api://{client_id}/` prefixed, plus the OpenID Connect scopes).

use std::collections::BTreeSet;

/// The OpenID Connect scopes the proxy asks Entra for itself.
pub(crate) const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// Whether `scope` is one of the OpenID Connect scopes (`openid`, `profile`, `email`,
/// `offline_access`), which the proxy handles itself.
pub(crate) fn is_oidc_scope(scope: &str) -> bool {
    matches!(scope, "openid" | "profile" | "email" | "offline_access")
}

/// Whether `scope` is an RFC 6749 scope token: one or more of `%x21 / %x23-5B / %x5D-7E`.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 256
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Why a requested scope list was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScopeError {
    /// A scope is not a scope token.
    Malformed,
    /// A scope is not offered.
    Unsupported(String),
    /// Nothing was asked for and there is no default.
    Empty,
}

/// Parses a space-delimited `scope` parameter into the MCP scopes granted for it: every
/// requested scope must be in `supported`, OpenID Connect scopes are dropped (the proxy
/// adds its own), and an empty request gets `default`.
pub(crate) fn requested_scopes(
    scope: Option<&str>,
    supported: &[String],
    default: &[String],
) -> Result<Vec<String>, ScopeError> {
    let mut out = BTreeSet::new();
    for scope in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !is_scope_token(scope) {
            return Err(ScopeError::Malformed);
        }
        if is_oidc_scope(scope) {
            continue;
        }
        if !supported.iter().any(|s| s == scope) {
            return Err(ScopeError::Unsupported(scope.to_owned()));
        }
        out.insert(scope.to_owned());
    }
    if out.is_empty() {
        out.extend(default.iter().cloned());
    }
    if out.is_empty() {
        return Err(ScopeError::Empty);
    }
    Ok(out.into_iter().collect())
}

/// The scopes to ask Entra for: each MCP scope with `prefix`, then the OIDC scopes.
pub(crate) fn entra_scopes(scopes: &[String], prefix: &str) -> Vec<String> {
    scopes
        .iter()
        .map(|s| format!("{prefix}{s}"))
        .chain(OIDC_SCOPES.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// The MCP scopes in an Entra token response's `scope` (or a token's `scp`): names with
/// `prefix` lose it, bare names (Entra's `scp` claim) stay; OIDC scopes and names of other
/// resources are dropped.
pub(crate) fn from_entra<'a>(
    granted: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> BTreeSet<String> {
    granted
        .into_iter()
        .filter_map(|s| match s.strip_prefix(prefix) {
            Some(bare) => Some(bare),
            None if s.contains("://") || s.contains('/') || is_oidc_scope(s) => None,
            None => Some(s),
        })
        .filter(|s| is_scope_token(s))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn requested_scopes_are_checked_and_defaulted() {
        let supported = v(&["tools.read", "tools.call"]);
        let default = v(&["tools.read"]);
        assert_eq!(
            requested_scopes(Some("tools.call  openid"), &supported, &default),
            Ok(v(&["tools.call"]))
        );
        assert_eq!(
            requested_scopes(None, &supported, &default),
            Ok(v(&["tools.read"]))
        );
        assert_eq!(
            requested_scopes(Some("offline_access"), &supported, &default),
            Ok(v(&["tools.read"]))
        );
        assert_eq!(
            requested_scopes(Some("admin"), &supported, &default),
            Err(ScopeError::Unsupported("admin".into()))
        );
        assert_eq!(
            requested_scopes(Some("a\"b"), &supported, &default),
            Err(ScopeError::Malformed)
        );
        assert_eq!(
            requested_scopes(None, &supported, &[]),
            Err(ScopeError::Empty)
        );
    }

    #[test]
    fn entra_scopes_are_prefixed_and_mapped_back() {
        let out = entra_scopes(&v(&["tools.call"]), "api://app/");
        assert_eq!(
            out,
            v(&[
                "api://app/tools.call",
                "openid",
                "profile",
                "offline_access"
            ])
        );
        let back = from_entra(
            [
                "api://app/tools.call",
                "openid",
                "https://graph.microsoft.com/User.Read",
                "tools.read",
            ],
            "api://app/",
        );
        assert_eq!(
            back.into_iter().collect::<Vec<_>>(),
            v(&["tools.call", "tools.read"])
        );
    }

    proptest! {
        #[test]
        fn prefixing_round_trips(names in proptest::collection::vec("[a-z][a-z.]{0,12}", 1..6)) {
            let names: Vec<String> = names.into_iter().filter(|n| !is_oidc_scope(n)).collect();
            let entra = entra_scopes(&names, "api://app/");
            let back = from_entra(entra.iter().map(String::as_str), "api://app/");
            let expected: BTreeSet<String> = names.into_iter().collect();
            prop_assert_eq!(back, expected);
        }

        #[test]
        fn scope_tokens_have_no_space_quote_or_backslash(s in "\\PC{0,20}") {
            if is_scope_token(&s) {
                prop_assert!(!s.contains([' ', '"', '\\']));
                prop_assert!(s.is_ascii());
            }
        }
    }
}
