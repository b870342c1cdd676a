//! The tower layer: keys from a closure, 429 with `Retry-After` and the IETF `RateLimit`
//! headers, and a JSON-RPC error body for MCP requests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use serde::Deserialize;
use tower::{Layer, Service};

use crate::block::IpBlocker;
use crate::keys::RequestKeys;
use crate::limiter::{Decision, PolicyInfo, RateLimiter};
use crate::store::RateLimitStore;

/// The JSON-RPC error code sent with a 429 (in the implementation-defined server-error
/// range -32000..-32099; 29 as in HTTP 429).
pub const JSONRPC_RATE_LIMITED: i64 = -32029;

/// The `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What the layer read from an MCP (JSON-RPC) request body.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct McpRequest {
    /// The JSON-RPC id (absent for notifications).
    pub id: Option<serde_json::Value>,
    /// The method, e.g. `tools/call`.
    pub method: String,
    /// For `tools/call`, the tool name (`params.name`).
    pub tool: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    id: Option<serde_json::Value>,
    method: String,
    params: Option<EnvelopeParams>,
}

#[derive(Deserialize)]
struct EnvelopeParams {
    name: Option<serde_json::Value>,
}

impl McpRequest {
    /// Parses a single JSON-RPC request; `None` for anything else (the server answers it).
    #[must_use]
    pub fn parse(body: &[u8]) -> Option<Self> {
        let env: Envelope = serde_json::from_slice(body).ok()?;
        let tool = (env.method == "tools/call")
            .then(|| env.params.and_then(|p| p.name))
            .flatten()
            .and_then(|v| v.as_str().map(str::to_owned));
        Some(Self {
            id: env.id,
            method: env.method,
            tool,
        })
    }
}

/// Computes a request's [`RequestKeys`]. Closures `Fn(&Parts, Option<&McpRequest>) ->
/// RequestKeys` implement it.
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The keys of one request.
    fn extract(&self, parts: &Parts, mcp: Option<&McpRequest>) -> RequestKeys;
}

impl<F> KeyExtractor for F
where
    F: Fn(&Parts, Option<&McpRequest>) -> RequestKeys + Clone + Send + Sync + 'static,
{
    fn extract(&self, parts: &Parts, mcp: Option<&McpRequest>) -> RequestKeys {
        self(parts, mcp)
    }
}

/// Applies a [`RateLimiter`] to HTTP requests.
///
/// JSON `POST` bodies (MCP requests) are read up to `max_body` bytes so the extractor sees
/// the JSON-RPC method and tool, and so a 429 can carry a JSON-RPC error with the request's
/// id; the inner service then receives the buffered body. Other requests pass through
/// unread. Allowed responses carry the `RateLimit-Policy` and `RateLimit` headers too.
#[derive(Clone)]
pub struct RateLimitLayer<S, K> {
    limiter: RateLimiter<S>,
    extractor: K,
    blocker: Option<IpBlocker<S>>,
    max_body: usize,
}

impl<S: fmt::Debug, K> fmt::Debug for RateLimitLayer<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("blocker", &self.blocker.is_some())
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl<S: RateLimitStore, K: KeyExtractor> RateLimitLayer<S, K> {
    /// A layer over `limiter` with keys from `extractor`; bodies up to 1 MiB.
    pub fn new(limiter: RateLimiter<S>, extractor: K) -> Self {
        Self {
            limiter,
            extractor,
            blocker: None,
            max_body: 1 << 20,
        }
    }

    /// Blocks abusive client IPs: blocked IPs get 429 without a limiter check, and every
    /// rate-limit rejection counts toward a block.
    #[must_use]
    pub fn with_blocker(mut self, blocker: IpBlocker<S>) -> Self {
        self.blocker = Some(blocker);
        self
    }

    /// The largest JSON body read (larger ones get 413).
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S: Clone, K: Clone, I> Layer<I> for RateLimitLayer<S, K> {
    type Service = RateLimitService<S, K, I>;

    fn layer(&self, inner: I) -> Self::Service {
        RateLimitService {
            inner,
            shared: Arc::new(Shared {
                limiter: self.limiter.clone(),
                extractor: self.extractor.clone(),
                blocker: self.blocker.clone(),
                max_body: self.max_body,
            }),
        }
    }
}

struct Shared<S, K> {
    limiter: RateLimiter<S>,
    extractor: K,
    blocker: Option<IpBlocker<S>>,
    max_body: usize,
}

/// The service of [`RateLimitLayer`].
pub struct RateLimitService<S, K, I> {
    inner: I,
    shared: Arc<Shared<S, K>>,
}

impl<S, K, I: Clone> Clone for RateLimitService<S, K, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K, I: fmt::Debug> fmt::Debug for RateLimitService<S, K, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, I> RateLimitService<S, K, I> {
    /// The inner service.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut I {
        &mut self.inner
    }

    /// Consumes the layer's service, returning the inner one.
    pub fn into_inner(self) -> I {
        self.inner
    }
}

/// The body the inner service receives: buffered (JSON requests) or untouched.
pub type LimitedRequestBody<B> = Either<Full<Bytes>, B>;
/// The body of the layer's responses: its own (429, 413, 400) or the inner one.
pub type RateLimitResponseBody<B> = Either<Full<Bytes>, B>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn is_json_post(parts: &Parts) -> bool {
    parts.method == Method::POST
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

impl<S, K, I, B, RB> Service<Request<B>> for RateLimitService<S, K, I>
where
    S: RateLimitStore,
    K: KeyExtractor,
    I: Service<Request<LimitedRequestBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    I::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<RateLimitResponseBody<RB>>;
    type Error = I::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready inner service goes into the future; a fresh clone stays for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let json = is_json_post(&parts);
            let (body, mcp) = if json {
                match Limited::new(body, shared.max_body).collect().await {
                    Ok(collected) => {
                        let bytes = collected.to_bytes();
                        let mcp = McpRequest::parse(&bytes);
                        (Either::Left(Full::new(bytes)), mcp)
                    }
                    Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
                        return Ok(plain(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "request body too large",
                        ));
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "reading the request body failed");
                        return Ok(plain(StatusCode::BAD_REQUEST, "unreadable request body"));
                    }
                }
            } else {
                (Either::Right(body), None)
            };
            let keys = shared.extractor.extract(&parts, mcp.as_ref());
            if let (Some(blocker), Some(ip)) = (&shared.blocker, keys.client_ip) {
                match blocker.blocked_for(ip).await {
                    Ok(Some(left)) => {
                        tracing::debug!(%ip, "request from a blocked client IP");
                        let d = Decision::denied_for(left, None);
                        return Ok(too_many(&d, json, mcp.as_ref()));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "IP block lookup failed; not blocking")
                    }
                }
            }
            let decision = shared.limiter.check(&keys).await;
            if !decision.is_allowed() {
                if let (Some(blocker), Some(ip)) = (&shared.blocker, keys.client_ip)
                    && let Err(err) = blocker.record_rejection(ip).await
                {
                    tracing::warn!(error = %err, "counting a rejection toward an IP block failed");
                }
                tracing::debug!(
                    policy = decision.policy().map(|p| p.name.as_ref()),
                    source = ?decision.source(),
                    "request rate limited"
                );
                return Ok(too_many(&decision, json, mcp.as_ref()));
            }
            let req = Request::from_parts(parts, body);
            let mut res = inner.call(req).await?;
            set_ratelimit_headers(res.headers_mut(), &decision);
            Ok(res.map(Either::Right))
        })
    }
}

/// Whole seconds, rounded up, at least `min`.
fn secs_ceil(d: Duration, min: u64) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(min)
}

/// Formats the `RateLimit-Policy` and `RateLimit` values of a decision.
#[must_use]
pub fn ratelimit_header_values(policy: &PolicyInfo, d: &Decision) -> (String, String) {
    (
        format!(
            "\"{}\";q={};w={}",
            policy.name,
            policy.limit,
            secs_ceil(policy.window, 1)
        ),
        format!(
            "\"{}\";r={};t={}",
            policy.name,
            d.remaining(),
            secs_ceil(d.reset_after(), 0)
        ),
    )
}

fn set_ratelimit_headers(headers: &mut http::HeaderMap, d: &Decision) {
    let Some(policy) = d.policy() else { return };
    let (p, r) = ratelimit_header_values(policy, d);
    // Rule names are validated to [A-Za-z0-9_.-], so both values are valid header text.
    if let (Ok(p), Ok(r)) = (HeaderValue::from_str(&p), HeaderValue::from_str(&r)) {
        headers.insert(RATELIMIT_POLICY.clone(), p);
        headers.insert(RATELIMIT.clone(), r);
    }
}

fn plain<RB>(status: StatusCode, msg: &'static str) -> Response<RateLimitResponseBody<RB>> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(msg.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The 429 response for a denial: `Retry-After`, the `RateLimit` headers, and for MCP
/// (JSON) requests a JSON-RPC error carrying the request's id.
fn too_many<RB>(
    d: &Decision,
    json: bool,
    mcp: Option<&McpRequest>,
) -> Response<RateLimitResponseBody<RB>> {
    let retry = secs_ceil(d.retry_after().unwrap_or(Duration::from_secs(1)), 1);
    let mut res = if json {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": mcp.and_then(|m| m.id.clone()).unwrap_or(serde_json::Value::Null),
            "error": {
                "code": JSONRPC_RATE_LIMITED,
                "message": "Rate limit exceeded",
                "data": {
                    "retryAfterSeconds": retry,
                    "policy": d.policy().map(|p| p.name.to_string()),
                }
            }
        });
        let mut res = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    } else {
        plain(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
    };
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry));
    set_ratelimit_headers(res.headers_mut(), d);
    res
}
