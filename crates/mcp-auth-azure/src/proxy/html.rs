//! The proxy's few HTML pages (consent, error), served with headers that keep them out of
//! frames and caches, and the cookies that tie a consent to a browser.

use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, HeaderName, REFERRER_POLICY};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The policy of every page: nothing loads, nothing frames it.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;\
         margin:3rem auto;padding:0 1rem;line-height:1.5}}dt{{font-weight:600}}\
         button{{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}}\
         code{{word-break:break-all}}</style></head><body>{body}</body></html>",
        title = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    harden(response.headers_mut());
    response
}

/// Headers for every proxy page and redirect a browser sees.
pub(crate) fn harden(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
}

/// An error page for a request that cannot be sent back to the client (unknown client,
/// redirect URI mismatch, expired sign-in): RFC 6749 section 4.1.2.1 forbids redirecting.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    tracing::debug!(
        status = status.as_u16(),
        message,
        "authorization error page"
    );
    page(
        status,
        "Sign-in failed",
        &format!(
            "<h1>Sign-in failed</h1><p>{}</p><p>Close this window and start again from \
             your application.</p>",
            escape(message)
        ),
    )
}

/// What the consent page shows.
#[derive(Debug)]
pub(crate) struct ConsentPage<'a> {
    pub(crate) action: &'a str,
    pub(crate) transaction: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) client_name: Option<&'a str>,
    pub(crate) client_id: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) resource: &'a str,
}

impl ConsentPage<'_> {
    pub(crate) fn render(&self) -> Response {
        let name = self
            .client_name
            .map_or_else(|| "An unnamed application".to_owned(), escape);
        let scopes: String = self
            .scopes
            .iter()
            .map(|s| format!("<li><code>{}</code></li>", escape(s)))
            .collect();
        let body = format!(
            "<h1>Allow access?</h1>\
             <p><strong>{name}</strong> wants to use your account to reach \
             <code>{resource}</code>.</p>\
             <dl><dt>Application id</dt><dd><code>{client_id}</code></dd>\
             <dt>It will receive access at</dt><dd><code>{redirect}</code></dd>\
             <dt>Permissions</dt><dd><ul>{scopes}</ul></dd></dl>\
             <p>Only allow applications you started yourself and trust.</p>\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"transaction\" value=\"{txn}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
             </form>",
            resource = escape(self.resource),
            client_id = escape(self.client_id),
            redirect = escape(self.redirect_uri),
            action = escape(self.action),
            txn = escape(self.transaction),
            csrf = escape(self.csrf),
        );
        page(StatusCode::OK, "Allow access?", &body)
    }
}

/// How the proxy's cookies are named and flagged.
#[derive(Clone, Debug)]
pub(crate) struct Cookies {
    secure: bool,
}

/// The cookie that names a browser (to remember its consents).
const BROWSER: &str = "mcp_oauth_browser";
/// The cookie that carries the CSRF token of the consent page.
const CSRF: &str = "mcp_oauth_csrf";

impl Cookies {
    /// Cookies for a proxy served over `https` (`secure`) or plain loopback `http`.
    pub(crate) fn new(secure: bool) -> Self {
        Self { secure }
    }

    fn name(&self, base: &str) -> String {
        // `__Host-` binds a cookie to this exact origin; browsers accept it only with
        // `Secure` and `Path=/`.
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    fn set(&self, base: &str, value: &str, max_age: u64, same_site: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}",
            self.name(base)
        );
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn get(&self, headers: &HeaderMap, base: &str) -> Option<String> {
        let name = self.name(base);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 128)
    }

    /// The browser id, if the browser has one.
    pub(crate) fn browser(&self, headers: &HeaderMap) -> Option<String> {
        self.get(headers, BROWSER)
    }

    /// `Set-Cookie` for the browser id. SameSite=Lax: it is read on the top-level GET
    /// navigation to `/authorize` that a client starts.
    pub(crate) fn set_browser(&self, value: &str, max_age: u64) -> HeaderValue {
        self.set(BROWSER, value, max_age, "Lax")
    }

    /// The CSRF token of the consent page.
    pub(crate) fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        self.get(headers, CSRF)
    }

    /// `Set-Cookie` for the CSRF token. SameSite=Strict: a form posted from another site
    /// arrives without it.
    pub(crate) fn set_csrf(&self, value: &str, max_age: u64) -> HeaderValue {
        self.set(CSRF, value, max_age, "Strict")
    }

    /// `Set-Cookie` that removes the CSRF cookie.
    pub(crate) fn clear_csrf(&self) -> HeaderValue {
        self.set(CSRF, "", 0, "Strict")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#x27;b&#x27;&lt;/script&gt;"
        );
    }

    #[tokio::test]
    async fn consent_page_escapes_client_data_and_is_hardened() {
        let scopes = vec!["mcp.tools".to_owned()];
        let response = ConsentPage {
            action: "/consent",
            transaction: "t",
            csrf: "c",
            client_name: Some("<img src=x onerror=alert(1)>"),
            client_id: "mcp_x",
            redirect_uri: "http://127.0.0.1/cb?a=\"b\"",
            scopes: &scopes,
            resource: "https://mcp.example/mcp",
        }
        .render();
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<img"));
        assert!(body.contains("&lt;img src=x"));
        assert!(body.contains("cb?a=&quot;b&quot;"));
    }

    #[test]
    fn cookies_round_trip_with_host_prefix_when_secure() {
        let secure = Cookies::new(true);
        let set = secure.set_csrf("abc", 60);
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-mcp_oauth_csrf=abc;"));
        assert!(
            set.contains("Secure") && set.contains("SameSite=Strict") && set.contains("HttpOnly")
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            "other=1; __Host-mcp_oauth_csrf=abc; mcp_oauth_csrf=plain"
                .parse()
                .unwrap(),
        );
        assert_eq!(secure.csrf(&headers).as_deref(), Some("abc"));
        assert_eq!(Cookies::new(false).csrf(&headers).as_deref(), Some("plain"));
        assert_eq!(secure.browser(&headers), None);
    }
}
