//! HTTP hardening around the MCP and admin endpoints: `require_https` (believing
//! `X-Forwarded-Proto` / `Forwarded` only from trusted proxies), Host and Origin validation
//! (DNS-rebinding protection), CORS for browser clients, a request time limit, and security
//! headers on every response.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST,
    ORIGIN, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, VARY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use mcp_ratelimit::ClientIpResolver;
use tower::Service;

use crate::config::ServerConfig;

/// Headers a browser client may send to `/mcp` (CORS preflight answer).
const CORS_ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id",
);
/// Response headers a browser client may read.
const CORS_EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "mcp-session-id, www-authenticate, retry-after, ratelimit, ratelimit-policy",
);
const CORS_ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, DELETE, OPTIONS");

/// One allowed `Host` (`host` or `host:port`; without a port any port matches).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    fn parse(text: &str) -> Option<Self> {
        let authority: Authority = text.trim().parse().ok()?;
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }

    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        host.eq_ignore_ascii_case(&self.host) && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// A `Host` header's host and port (`host`, `host:port`, `[v6]`, `[v6]:port`), read in
/// place: a header that is not of that form, has an empty host or an invalid port is `None`
/// (the rules' hosts are valid authorities, so anything else could match none of them).
fn split_host(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')? + 1;
        match &text[end..] {
            "" => (&text[..end], None),
            rest => (&text[..end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['@', '/', ' ']) {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            port.parse().ok().map(|p| (host, Some(p)))
        }
        Some(_) => None,
    }
}

/// One allowed `Origin` (`scheme://host[:port]`; without a port any port matches).
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginRule {
    scheme: String,
    host: HostRule,
}

impl OriginRule {
    fn parse(text: &str) -> Option<Self> {
        let uri: Uri = text.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        Some(Self {
            scheme,
            host: HostRule {
                host: authority.host().to_ascii_lowercase(),
                port: authority.port_u16(),
            },
        })
    }

    fn matches(&self, origin: &str) -> bool {
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(&self.scheme)
            && self.host.matches(authority.host(), authority.port_u16())
    }
}

/// Why a configured host or origin was not understood.
#[derive(Debug, thiserror::Error)]
#[error("{key}: `{value}` is not a valid {what}")]
pub(crate) struct GuardConfigError {
    pub(crate) key: &'static str,
    value: String,
    what: &'static str,
}

/// `None` allows anything (`["*"]`).
type Rules<T> = Option<Vec<T>>;

/// What the guard checks; built once from `[server]`.
#[derive(Debug)]
pub(crate) struct Guard {
    hosts: Rules<HostRule>,
    origins: Rules<OriginRule>,
    cors: Option<HeaderValue>,
    require_https: bool,
    /// The gateway terminates TLS itself (`[server.tls]`).
    tls: bool,
    proxies: ClientIpResolver,
    timeout: Duration,
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Guard {
    /// The guard of `server`; defaults: the public URL's host and origin, plus the loopback
    /// names when the gateway listens on a loopback address.
    pub(crate) fn new(server: &ServerConfig) -> Result<Self, GuardConfigError> {
        let public: Uri = server.public_base().parse().map_err(|_| GuardConfigError {
            key: "server.public_url",
            value: server.public_base(),
            what: "URL",
        })?;
        let loopback = server.listen.ip().is_loopback();
        let hosts = if server.allowed_hosts.is_empty() {
            let mut rules: Vec<HostRule> = public
                .authority()
                .and_then(|a| HostRule::parse(a.as_str()))
                .into_iter()
                .collect();
            if loopback {
                rules.extend(LOOPBACK_HOSTS.iter().filter_map(|h| HostRule::parse(h)));
            }
            Some(rules)
        } else {
            parse_rules(&server.allowed_hosts, "server.allowed_hosts", "host", |t| {
                HostRule::parse(t)
            })?
        };
        let origins = if server.allowed_origins.is_empty() {
            let mut rules: Vec<OriginRule> = public
                .authority()
                .zip(public.scheme_str())
                .and_then(|(a, s)| OriginRule::parse(&format!("{s}://{a}")))
                .into_iter()
                .collect();
            if loopback {
                rules.extend(
                    LOOPBACK_HOSTS
                        .iter()
                        .filter_map(|h| OriginRule::parse(&format!("http://{h}"))),
                );
            }
            Some(rules)
        } else {
            parse_rules(
                &server.allowed_origins,
                "server.allowed_origins",
                "origin",
                OriginRule::parse,
            )?
        };
        let mut proxies = ClientIpResolver::new();
        for net in &server.trusted_proxies {
            let net = net.parse().map_err(|_| GuardConfigError {
                key: "server.trusted_proxies",
                value: net.clone(),
                what: "CIDR",
            })?;
            proxies = proxies.trust(net);
        }
        Ok(Self {
            hosts,
            origins,
            cors: server
                .cors
                .enabled
                .then(|| HeaderValue::from(server.cors.max_age_secs)),
            require_https: server.require_https,
            tls: server.tls.is_some(),
            proxies,
            timeout: Duration::from_secs(server.request_timeout_secs),
        })
    }

    fn host_allowed(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        let Some(rules) = &self.hosts else {
            return true;
        };
        // HTTP/2 carries the host in the URI's authority instead of a Host header.
        let host = match headers.get(HOST) {
            Some(value) => value.to_str().ok().and_then(split_host),
            None => uri.authority().map(|a| (a.host(), a.port_u16())),
        };
        host.is_some_and(|(host, port)| rules.iter().any(|r| r.matches(host, port)))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins
            .as_ref()
            .is_none_or(|rules| rules.iter().any(|r| r.matches(origin)))
    }

    /// Whether the request reached the gateway over HTTPS: a trusted proxy's
    /// `X-Forwarded-Proto` / `Forwarded: proto=` says so for the client's leg; otherwise the
    /// connection itself counts (HTTPS when the gateway terminates TLS).
    fn is_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.proxies.is_trusted(peer) {
            return self.tls;
        }
        if let Some(proto) = headers.get("x-forwarded-proto") {
            // The first value is the one the client-facing proxy set.
            return proto.to_str().is_ok_and(|p| {
                p.split(',')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
            });
        }
        headers
            .get(http::header::FORWARDED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| {
                first.split(';').find_map(|pair| {
                    pair.trim()
                        .split_once('=')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("proto"))
                        .map(|(_, v)| v.trim_matches('"').eq_ignore_ascii_case("https"))
                })
            })
            .unwrap_or(self.tls)
    }
}

fn parse_rules<T>(
    entries: &[String],
    key: &'static str,
    what: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Rules<T>, GuardConfigError> {
    if entries.iter().any(|e| e == "*") {
        return Ok(None);
    }
    entries
        .iter()
        .map(|e| {
            parse(e).ok_or_else(|| GuardConfigError {
                key,
                value: e.clone(),
                what,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn refuse(status: StatusCode, error: &'static str) -> Response {
    let mut response = Response::new(Body::from(format!(r#"{{"error":"{error}"}}"#)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What the guard makes of a request before it reaches a guarded route.
enum Verdict {
    /// Pass it on; the `Origin` to allow in the CORS answer headers, if any.
    Pass(Option<HeaderValue>),
    /// Answer it here (a refusal or a CORS preflight answer).
    Answer(Response),
}

impl Guard {
    /// HTTPS, Host and Origin checks, and the CORS preflight answer.
    fn check<B>(&self, request: &Request<B>) -> Verdict {
        let headers = request.headers();
        if self.require_https {
            // Without the connection's address (a service not served with connect info), no
            // proxy is trusted: only the gateway's own TLS counts.
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip());
            let https = match peer {
                Some(peer) => self.is_https(peer, headers),
                None => self.tls,
            };
            if !https {
                tracing::debug!(peer = ?peer, "refused: HTTPS required");
                return Verdict::Answer(refuse(StatusCode::FORBIDDEN, "https_required"));
            }
        }
        if !self.host_allowed(headers, request.uri()) {
            tracing::debug!(host = ?headers.get(HOST), "refused: Host not allowed");
            return Verdict::Answer(refuse(StatusCode::FORBIDDEN, "host_not_allowed"));
        }
        // Browsers send Origin on cross-origin (and some same-origin) requests; other clients
        // do not, and are not subject to DNS rebinding.
        let origin = match headers.get(ORIGIN) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(text) if self.origin_allowed(text) => Some(value.clone()),
                _ => {
                    tracing::debug!(origin = ?value, "refused: Origin not allowed");
                    return Verdict::Answer(refuse(StatusCode::FORBIDDEN, "origin_not_allowed"));
                }
            },
        };
        let Some((max_age, origin)) = self.cors.as_ref().zip(origin) else {
            return Verdict::Pass(None);
        };
        if request.method() == Method::OPTIONS
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, CORS_ALLOW_METHODS);
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS);
            h.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
            h.insert(VARY, HeaderValue::from_static("origin"));
            return Verdict::Answer(response);
        }
        Verdict::Pass(Some(origin))
    }
}

/// The answer headers of a guarded route's response: CORS for an allowed `Origin`, no
/// credentials mode (bearer tokens, not cookies), `Cache-Control: no-store` unless set.
fn guarded_headers(response: &mut Response, cors: Option<HeaderValue>) {
    let h = response.headers_mut();
    if let Some(origin) = cors {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE_HEADERS);
        h.append(VARY, HeaderValue::from_static("origin"));
    }
    h.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Security headers on every response (a `Content-Security-Policy` the handler set is
/// kept); HSTS when the public URL is HTTPS.
fn security_headers(response: &mut Response, hsts: bool) {
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page that sets its own policy keeps it (the OAuth proxy's consent page styles
    // itself inline); everything else gets the strictest.
    h.entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    if hsts {
        h.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// The gateway's HTTP hardening around its whole router: every path but the open ones
/// (health probes, the metrics scrape, the gateway's own keys) passes the guard (HTTPS,
/// Host, Origin, CORS) and the request time limit; every response gets the security headers.
///
/// One service around the router instead of two `axum::middleware::from_fn` layers, which
/// box and clone the route's service and the middleware's future on every request.
#[derive(Debug, Clone)]
pub struct Hardened<S> {
    inner: S,
    guard: Arc<Guard>,
    open_paths: Arc<[&'static str]>,
    hsts: bool,
}

impl<S> Hardened<S> {
    /// `inner` behind `guard`, but for `open_paths` (matched exactly); HSTS with `hsts`.
    pub(crate) fn new(
        inner: S,
        guard: Arc<Guard>,
        open_paths: Arc<[&'static str]>,
        hsts: bool,
    ) -> Self {
        Self {
            inner,
            guard,
            open_paths,
            hsts,
        }
    }
}

impl<S, B> Service<Request<B>> for Hardened<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = HardenedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let hsts = self.hsts;
        if self.open_paths.contains(&request.uri().path()) {
            return HardenedFuture::new(State::Open {
                inner: self.inner.call(request),
                hsts,
            });
        }
        match self.guard.check(&request) {
            Verdict::Answer(mut response) => {
                security_headers(&mut response, hsts);
                HardenedFuture::new(State::Answered {
                    response: std::future::ready(Ok(response)),
                })
            }
            Verdict::Pass(cors) => HardenedFuture::new(State::Guarded {
                inner: tokio::time::timeout(self.guard.timeout, self.inner.call(request)),
                cors,
                hsts,
                limit: self.guard.timeout,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Hardened`].
    pub struct HardenedFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Answered by the guard.
        Answered { #[pin] response: std::future::Ready<Result<Response, Infallible>> },
        // An open path: security headers only.
        Open { #[pin] inner: F, hsts: bool },
        // A guarded route, within the time limit.
        Guarded {
            #[pin]
            inner: tokio::time::Timeout<F>,
            cors: Option<HeaderValue>,
            hsts: bool,
            limit: Duration,
        },
    }
}

impl<F> HardenedFuture<F> {
    fn new(state: State<F>) -> Self {
        Self { state }
    }
}

impl<F> std::fmt::Debug for HardenedFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardenedFuture").finish_non_exhaustive()
    }
}

impl<F> Future for HardenedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Answered { response } => response.poll(cx),
            StateProj::Open { inner, hsts } => {
                let Ok(mut response) = std::task::ready!(inner.poll(cx));
                security_headers(&mut response, *hsts);
                Poll::Ready(Ok(response))
            }
            StateProj::Guarded {
                inner,
                cors,
                hsts,
                limit,
            } => {
                let mut response = match std::task::ready!(inner.poll(cx)) {
                    Ok(Ok(response)) => response,
                    Err(_) => {
                        tracing::warn!(limit = ?limit, "request time limit reached");
                        let mut response = refuse(StatusCode::REQUEST_TIMEOUT, "request_timeout");
                        response
                            .headers_mut()
                            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                        response
                    }
                };
                guarded_headers(&mut response, cors.take());
                security_headers(&mut response, *hsts);
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(toml: &str) -> ServerConfig {
        toml::from_str(toml).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn default_hosts_are_the_public_url_and_loopback_names_when_listening_on_loopback() {
        let g = Guard::new(&server(r#"public_url = "https://mcp.example.com""#)).unwrap();
        let uri = Uri::from_static("/mcp");
        for ok in [
            "mcp.example.com",
            "MCP.example.com:443",
            "localhost:8080",
            "[::1]:1",
        ] {
            assert!(g.host_allowed(&headers(&[("host", ok)]), &uri), "{ok}");
        }
        for bad in ["evil.example", "mcp.example.com.evil.example", "", "a b"] {
            assert!(!g.host_allowed(&headers(&[("host", bad)]), &uri), "{bad}");
        }
        // HTTP/2: the authority comes from the URI.
        assert!(g.host_allowed(
            &HeaderMap::new(),
            &Uri::from_static("https://mcp.example.com/mcp")
        ));
        assert!(!g.host_allowed(&HeaderMap::new(), &uri));

        let public = Guard::new(&server(
            "listen = \"0.0.0.0:8080\"\npublic_url = \"https://mcp.example.com:8443\"",
        ))
        .unwrap();
        assert!(public.host_allowed(&headers(&[("host", "mcp.example.com:8443")]), &uri));
        assert!(!public.host_allowed(&headers(&[("host", "mcp.example.com:9000")]), &uri));
        assert!(!public.host_allowed(&headers(&[("host", "localhost:8080")]), &uri));
    }

    #[test]
    fn configured_hosts_and_origins_replace_the_defaults_and_star_allows_all() {
        let g = Guard::new(&server(
            "allowed_hosts = [\"gw.internal:9000\"]\nallowed_origins = [\"https://app.example\"]",
        ))
        .unwrap();
        let uri = Uri::from_static("/mcp");
        assert!(g.host_allowed(&headers(&[("host", "gw.internal:9000")]), &uri));
        assert!(!g.host_allowed(&headers(&[("host", "localhost:8080")]), &uri));
        assert!(g.origin_allowed("https://app.example"));
        assert!(g.origin_allowed("https://app.example:444"));
        assert!(!g.origin_allowed("http://app.example"));
        assert!(!g.origin_allowed("null"));
        assert!(!g.origin_allowed("http://localhost:3000"));

        let any = Guard::new(&server(
            "allowed_hosts = [\"*\"]\nallowed_origins = [\"*\"]",
        ))
        .unwrap();
        assert!(any.host_allowed(&headers(&[("host", "anything")]), &uri));
        assert!(any.origin_allowed("null"));

        let err = Guard::new(&server("allowed_origins = [\"not an origin\"]")).unwrap_err();
        assert!(err.to_string().contains("server.allowed_origins"), "{err}");
    }

    #[test]
    fn host_headers_split_as_authorities_do() {
        for text in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "mcp.example.com:65535",
            "a-b.example",
        ] {
            let authority: Authority = text.parse().unwrap();
            assert_eq!(
                split_host(text),
                Some((authority.host(), authority.port_u16())),
                "{text}"
            );
        }
        for bad in [
            "",
            ":80",
            "localhost:",
            "localhost:+80",
            "localhost:65536",
            "localhost:80:81",
            "user@localhost",
            "[::1",
            "[::1]x",
            "[::1]:",
            "a b",
            "host/path",
        ] {
            assert_eq!(split_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn https_is_a_trusted_proxys_word_else_the_connection() {
        let proxies = "require_https = true\ntrusted_proxies = [\"10.0.0.0/8\"]";
        let plain = Guard::new(&server(proxies)).unwrap();
        let tls = Guard::new(&server(&format!(
            "{proxies}\ntls = {{ cert_file = \"c.pem\", key_file = \"k.pem\" }}"
        )))
        .unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // (peer, headers, HTTPS behind a proxy, HTTPS when the gateway terminates TLS)
        let cases = [
            (proxy, vec![("x-forwarded-proto", "https")], true, true),
            (stranger, vec![("x-forwarded-proto", "https")], false, true),
            (stranger, vec![("x-forwarded-proto", "http")], false, true),
            (
                proxy,
                vec![("x-forwarded-proto", "http, https")],
                false,
                false,
            ),
            (
                proxy,
                vec![("forwarded", "for=1.2.3.4;proto=https")],
                true,
                true,
            ),
            (
                proxy,
                vec![("forwarded", "for=1.2.3.4;proto=http")],
                false,
                false,
            ),
            (proxy, vec![("forwarded", "for=1.2.3.4")], false, true),
            (proxy, vec![], false, true),
            (stranger, vec![], false, true),
        ];
        for (peer, pairs, behind_proxy, terminating) in cases {
            let h = headers(&pairs);
            assert_eq!(plain.is_https(peer, &h), behind_proxy, "{peer} {pairs:?}");
            assert_eq!(tls.is_https(peer, &h), terminating, "TLS: {peer} {pairs:?}");
        }
    }
}
