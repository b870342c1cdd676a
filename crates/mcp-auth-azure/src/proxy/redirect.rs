//! Redirect URIs: which ones a client may register, and when a requested one matches a
//! registered one (exactly, or on a loopback host with any port: RFC 8252 section 7.3).

use url::{Host, Url};

/// Longest redirect URI accepted.
const MAX_REDIRECT_URI_LEN: usize = 2_000;

/// Schemes that can never be redirect targets (script execution, local content).
const FORBIDDEN_SCHEMES: [&str; 6] = ["javascript", "data", "file", "vbscript", "about", "blob"];

/// Whether `host` is `localhost`, an IPv4 loopback address or `::1`.
pub(crate) fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks that `uri` may be registered as a redirect URI: absolute, no fragment, and
/// `https`; or `http` on a loopback host (native apps, RFC 8252 section 7.3); or a private-use
/// scheme in reverse-domain form such as `com.example.app:/cb` (section 7.1).
pub(crate) fn validate_redirect_uri(uri: &str) -> Result<Url, &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("redirect URI too long");
    }
    let url = Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI")?;
    if url.fragment().is_some() {
        return Err("redirect URI must not have a fragment");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if url.host().is_some_and(|h| is_loopback_host(&h)) => Ok(url),
        "http" | "https" => Err("redirect URI must use https (http only on a loopback host)"),
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => Err("redirect URI scheme not allowed"),
        scheme if scheme.contains('.') => Ok(url),
        _ => Err("a private-use redirect URI scheme must be in reverse-domain form"),
    }
}

/// Whether `requested` matches `registered`: the same string, or both `http` on the same
/// loopback host with the same path and query and any port.
pub(crate) fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && reg.host().is_some_and(|h| is_loopback_host(&h))
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
        && reg.username().is_empty()
        && reg.password().is_none()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn registrable_redirect_uris() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1/callback",
            "http://localhost:8080/callback",
            "http://[::1]:9000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
            "/relative",
            "",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(validate_redirect_uri(&format!("https://a.example/{}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn loopback_redirects_match_on_any_port() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb"
        ));
        assert!(redirect_matches(
            "http://localhost:3000/cb",
            "http://localhost:4000/cb"
        ));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/other"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://localhost:5/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb?a=1",
            "http://127.0.0.1:5/cb?a=2"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://u@127.0.0.1:5/cb"
        ));
        // Exact match only for everything else.
        assert!(redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://evil.example/cb"
        ));
    }

    proptest! {
        #[test]
        fn non_loopback_requires_the_exact_string(
            host in "[a-z]{1,10}\\.example",
            path in "/[a-z]{0,8}",
            other in "/[a-z]{0,8}",
            port in 1u16..,
        ) {
            let registered = format!("https://{host}{path}");
            let requested = format!("https://{host}:{port}{other}");
            // An explicit port (even the default one) or another path never matches.
            prop_assert!(!redirect_matches(&registered, &requested));
            prop_assert!(redirect_matches(&registered, &registered));
        }

        #[test]
        fn loopback_ignores_only_the_port(
            path in "/[a-z]{0,8}",
            other in "/[a-z]{0,8}",
            a in 1u16..,
            b in 1u16..,
        ) {
            let registered = format!("http://127.0.0.1:{a}{path}");
            let requested = format!("http://127.0.0.1:{b}{other}");
            prop_assert_eq!(redirect_matches(&registered, &requested), path == other);
        }
    }
}
