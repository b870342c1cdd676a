//! The tower layer: times each HTTP request, records MCP method, tool and status, and runs the
//! request inside a span carrying the request context (and the caller's trace parent).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::{Level, Span};

use crate::envelope::McpRequestInfo;
use crate::families::{McpMetrics, Resolved};
use crate::traceparent::TraceParent;

/// A boxed error, as used by tower and hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request id header read by default.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The MCP session header of the Streamable HTTP transport.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The W3C trace context header.
pub const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// The longest request id or session id copied from a header into the span.
const MAX_ID_LEN: usize = 128;

/// Layer that records [`McpMetrics`] and opens the `mcp.request` span for each request.
///
/// The MCP envelope is taken from a [`McpRequestInfo`] in the request extensions (put there by
/// an outer layer that has already parsed the JSON-RPC body and authenticated the caller).
/// Only when none is present and [`MetricsLayer::parse_body`] was enabled does this layer read
/// the body itself, and only when the body's size is known and within the limit; the parsed
/// info is then inserted into the extensions for the layers below.
///
/// The mode `M` says what the inner service receives: with [`Passthrough`] (the default) the
/// request exactly as it came, body type included, so nothing is re-wrapped or boxed on the
/// way (axum, for one, boxes every body that is not its own); with [`ParseBody`] a
/// [`MetricsBody`], which holds either the original body or the bytes this layer read.
///
/// Duration is measured to the response head (streamed bodies are not waited for), so the
/// response and its body are handed on untouched. A request whose future is dropped before it
/// completes is not counted.
///
/// The `mcp.request` span is created only when a subscriber wants it; otherwise a request
/// costs one atomic load for it and the response future carries no span.
#[derive(Debug, Clone)]
pub struct MetricsLayer<M = Passthrough> {
    shared: Arc<Shared>,
    mode: M,
}

/// [`MetricsLayer`] mode: the body is never read and reaches the inner service untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough;

/// [`MetricsLayer`] mode: without an outer layer's [`McpRequestInfo`], a body of known size up
/// to the limit is read and parsed; the inner service receives a [`MetricsBody`].
#[derive(Debug, Clone, Copy)]
pub struct ParseBody {
    max_bytes: usize,
}

/// What every [`MetricsService`] made by one layer shares (so wrapping a service, which axum
/// may do per request, is one reference-count increment).
#[derive(Debug, Clone)]
struct Shared {
    metrics: Arc<McpMetrics>,
    request_id_header: HeaderName,
    ids: Arc<AtomicU64>,
    id_seed: u64,
}

impl MetricsLayer {
    /// A layer recording into `metrics`, without body parsing.
    pub fn new(metrics: Arc<McpMetrics>) -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            shared: Arc::new(Shared {
                metrics,
                request_id_header: REQUEST_ID_HEADER,
                ids: Arc::new(AtomicU64::new(0)),
                id_seed: RandomState::new().hash_one("mcp-metrics request ids"),
            }),
            mode: Passthrough,
        }
    }

    /// Parses the JSON-RPC body when no [`McpRequestInfo`] is in the extensions and the body's
    /// size is known to be at most `max_bytes`. The inner service then receives a
    /// [`MetricsBody`].
    #[must_use]
    pub fn parse_body(self, max_bytes: usize) -> MetricsLayer<ParseBody> {
        MetricsLayer {
            shared: self.shared,
            mode: ParseBody { max_bytes },
        }
    }
}

impl<M> MetricsLayer<M> {
    /// Reads the request id from `header` instead of `x-request-id`.
    #[must_use]
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        Arc::make_mut(&mut self.shared).request_id_header = header;
        self
    }
}

impl<S, M: Clone> Layer<S> for MetricsLayer<M> {
    type Service = MetricsService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            shared: Arc::clone(&self.shared),
            mode: self.mode.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S, M = Passthrough> {
    inner: S,
    shared: Arc<Shared>,
    mode: M,
}

impl<S, M> MetricsService<S, M> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN)
}

/// What the span needs of the request line and headers.
#[derive(Clone, Copy)]
struct Head<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl<'a> Head<'a> {
    fn of<B>(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }

    fn of_parts(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
        }
    }
}

/// The request's span. Fields follow the OpenTelemetry conventions where they exist
/// (`mcp.method.name`, `mcp.session.id`, `gen_ai.tool.name`, `http.*`).
fn make_span(shared: &Shared, head: Head<'_>, info: Option<&McpRequestInfo>) -> Span {
    let method = info.map(|i| i.method.as_str());
    let tool = info.and_then(|i| i.tool.as_deref());
    // The closures below run only when a subscriber wants the span: with none, a request costs
    // neither the header lookups nor the shared id counter.
    let request_id = || match header_str(head.headers, &shared.request_id_header) {
        Some(id) => RequestId::Header(id),
        None => RequestId::Generated(shared.id_seed ^ shared.ids.fetch_add(1, Ordering::Relaxed)),
    };
    let session = || {
        info.and_then(|i| i.session.as_deref())
            .or_else(|| header_str(head.headers, &SESSION_HEADER))
    };
    // The MCP `_meta.traceparent` is more specific than the HTTP header (it survives proxies
    // and is set per message), so it wins.
    let traceparent = || {
        info.and_then(|i| i.traceparent).or_else(|| {
            head.headers
                .get(TRACEPARENT_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| TraceParent::parse(v).ok())
        })
    };
    // Every value is given when the span is created: recording fields later is expensive with
    // the JSON formatter (it re-serialises the span's fields on each record).
    let span = tracing::info_span!(
        "mcp.request",
        otel.name = %SpanName { method, tool, http: head.method },
        otel.kind = "server",
        otel.status_code = Empty,
        request_id = %request_id(),
        subject = info.and_then(|i| i.subject.as_deref()),
        tenant = info.and_then(|i| i.tenant.as_deref()),
        mcp.session.id = session(),
        mcp.method.name = method,
        gen_ai.tool.name = tool,
        http.request.method = %head.method,
        url.path = head.uri.path(),
        http.response.status_code = Empty,
        trace_id = traceparent().as_ref().map(|tp| tracing::field::display(TraceIdHex(tp))),
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled()
        && let Some(tp) = traceparent()
    {
        crate::otel::set_remote_parent(&span, &tp);
    }
    span
}

/// `tools/call search`, `ping` or `HTTP GET`: the OpenTelemetry span name.
struct SpanName<'a> {
    method: Option<&'a str>,
    tool: Option<&'a str>,
    http: &'a Method,
}

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.method, self.tool) {
            (Some(m), Some(t)) => write!(f, "{m} {t}"),
            (Some(m), None) => f.write_str(m),
            (None, _) => write!(f, "HTTP {}", self.http),
        }
    }
}

/// The request id: the caller's header, or a generated 16-hex-digit id.
enum RequestId<'a> {
    Header(&'a str),
    Generated(u64),
}

impl std::fmt::Display for RequestId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(id) => f.write_str(id),
            Self::Generated(n) => write_hex(f, &n.to_be_bytes()),
        }
    }
}

/// A trace id as 32 lower-case hex digits, without allocating.
struct TraceIdHex<'a>(&'a TraceParent);

impl std::fmt::Display for TraceIdHex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_hex(f, &self.0.trace_id)
    }
}

/// Writes `bytes` as lower-case hex in one `write_str` (a formatter writes padded numbers a
/// character at a time, which a subscriber's writer pays for per call).
fn write_hex(f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let bytes = bytes.get(..16).unwrap_or(bytes);
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    match std::str::from_utf8(&buf[..2 * bytes.len()]) {
        Ok(hex) => f.write_str(hex),
        Err(_) => Err(std::fmt::Error),
    }
}

/// Whether any subscriber may want the `mcp.request` span: the level check every `span!`
/// starts with (a constant and one atomic load). Only past it is the span's callsite asked.
#[inline(always)]
fn span_may_be_wanted() -> bool {
    Level::INFO <= STATIC_MAX_LEVEL && Level::INFO <= LevelFilter::current()
}

/// The request's span if a subscriber wants it: `None` otherwise, so that a request without
/// one has no span to enter, record or close. The span is boxed so that the response future
/// stays small for the requests that have none.
fn request_span(
    shared: &Shared,
    head: Head<'_>,
    info: Option<&McpRequestInfo>,
) -> Option<Box<Span>> {
    if !span_may_be_wanted() {
        return None;
    }
    let span = make_span(shared, head, info);
    (!span.is_disabled()).then(|| Box::new(span))
}

/// Records the status on a live span and logs the end of the request inside it.
fn finish_span(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status == 0 || status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(parent: span, status, "request finished");
}

/// What a request still has to record once its response head is ready.
struct Pending {
    /// The layer's shared state (whose reference count the service clones per request touch
    /// anyway), not the metrics themselves.
    shared: Arc<Shared>,
    labels: Resolved,
    /// The request's start in raw ticks of the metrics' clock.
    start: u64,
}

impl Pending {
    /// Records the request, finished with `status`.
    #[inline(always)]
    fn record(&self, status: u16) {
        self.shared
            .metrics
            .end_request(&self.labels, status, self.start);
    }
}

/// The status label of a finished request: the response's status, or 0 when the service failed.
fn status_of<R, E>(result: &Result<Response<R>, E>) -> u16 {
    match result {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

impl<S, B, ResBody> Service<Request<B>> for MetricsService<S, Passthrough>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let metrics = &self.shared.metrics;
        let start = metrics.clock().raw();
        let labels = metrics.begin_request(req.extensions().get(), start);
        let pending = Some(Pending {
            shared: Arc::clone(&self.shared),
            labels,
            start,
        });
        if span_may_be_wanted() {
            return call_in_span(&mut self.inner, &self.shared, req, pending, |fut| fut);
        }
        // No reference into `req` has left this function, so the request can be handed on and
        // the inner future written into the response future without copies.
        ResponseFuture {
            fut: self.inner.call(req),
            pending,
            span: None,
        }
    }
}

/// [`Service::call`] once a subscriber may want the request's span (out of line, so that the
/// references into the request the span takes stay out of the usual path). `wrap` turns the
/// inner service's future into the response future's.
#[inline(never)]
fn call_in_span<S, B, F>(
    inner: &mut S,
    shared: &Shared,
    req: Request<B>,
    pending: Option<Pending>,
    wrap: impl FnOnce(S::Future) -> F,
) -> ResponseFuture<F>
where
    S: Service<Request<B>>,
{
    let span = request_span(shared, Head::of(&req), req.extensions().get());
    let fut = match span.as_deref() {
        Some(span) => span.in_scope(|| inner.call(req)),
        None => inner.call(req),
    };
    ResponseFuture {
        fut: wrap(fut),
        pending,
        span,
    }
}

impl<S, B, ResBody> Service<Request<B>> for MetricsService<S, ParseBody>
where
    S: Service<Request<MetricsBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ParseFuture<S::Future, ResBody, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = self.shared.metrics.clock().raw();
        let limit = self.mode.max_bytes;
        let parse = req.extensions().get::<McpRequestInfo>().is_none()
            && req.method() == Method::POST
            && req
                .body()
                .size_hint()
                .upper()
                .is_some_and(|n| n <= limit as u64);
        if !parse {
            let labels = self
                .shared
                .metrics
                .begin_request(req.extensions().get(), start);
            let pending = Some(Pending {
                shared: Arc::clone(&self.shared),
                labels,
                start,
            });
            return call_in_span(
                &mut self.inner,
                &self.shared,
                req.map(MetricsBody::passthrough),
                pending,
                |fut| ParseFuture {
                    kind: ParseKind::Direct { fut },
                },
            );
        }
        // Take the service that was driven to readiness, leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let (mut parts, body) = req.into_parts();
        let fut = async move {
            let (body, info) = match Limited::new(body, limit).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    let info = McpRequestInfo::from_json_rpc(&bytes);
                    (MetricsBody::buffered(bytes), info)
                }
                Err(error) => (MetricsBody::failed(error), None),
            };
            let labels = shared.metrics.begin_request(info.as_ref(), start);
            let span = request_span(&shared, Head::of_parts(&parts), info.as_ref());
            if let Some(info) = info {
                parts.extensions.insert(info);
            }
            let req = Request::from_parts(parts, body);
            let result = match span.as_deref() {
                Some(span) => {
                    let call = span.in_scope(|| inner.call(req));
                    tracing::Instrument::instrument(call, span.clone()).await
                }
                None => inner.call(req).await,
            };
            let pending = Pending {
                shared,
                labels,
                start,
            };
            let status = status_of(&result);
            pending.record(status);
            if let Some(span) = span {
                finish_span(&span, status);
            }
            result
        };
        ResponseFuture {
            fut: ParseFuture {
                kind: ParseKind::Parsing { fut: Box::pin(fut) },
            },
            pending: None,
            span: None,
        }
    }
}

type BoxedCall<R, E> = Pin<Box<dyn Future<Output = Result<Response<R>, E>> + Send>>;

pin_project! {
    /// The inner future of a [`MetricsService`] in [`ParseBody`] mode: the inner service's
    /// future, or the request body being read and parsed before the inner service is called
    /// (that path records the request itself).
    pub struct ParseFuture<F, R, E> {
        #[pin]
        kind: ParseKind<F, R, E>,
    }
}

pin_project! {
    #[project = ParseKindProj]
    enum ParseKind<F, R, E> {
        Direct { #[pin] fut: F },
        Parsing { fut: BoxedCall<R, E> },
    }
}

impl<F, R, E> std::fmt::Debug for ParseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ParseFuture<F, R, E>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ParseKindProj::Direct { fut } => fut.poll(cx),
            ParseKindProj::Parsing { fut } => fut.as_mut().poll(cx),
        }
    }
}

pin_project! {
    /// The future of [`MetricsService`]: the inner service's future `F`, and what is needed to
    /// record the request when it yields the response head (label ids, the start time and,
    /// only when a subscriber wants it, the boxed span). The response is returned as the inner
    /// future produced it.
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        // What is left to record; taken when the response head is ready.
        pending: Option<Pending>,
        // The request's span, if a subscriber wants it.
        span: Option<Box<Span>>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let fut = this.fut;
        let poll = match this.span.as_deref() {
            Some(span) => span.in_scope(|| fut.poll(cx)),
            None => fut.poll(cx),
        };
        // Only the status is read from the response, which is returned where the inner poll
        // put it.
        if let Poll::Ready(result) = &poll
            && let Some(pending) = this.pending.as_ref()
        {
            let status = status_of(result);
            pending.record(status);
            *this.pending = None;
            // A live span closes now, not when the finished future is dropped.
            if let Some(span) = this.span.take() {
                finish_span(&span, status);
            }
        }
        poll
    }
}

pin_project! {
    /// The request body the inner service sees: the original body, or the bytes this layer
    /// read to parse the JSON-RPC envelope.
    pub struct MetricsBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Passthrough { #[pin] inner: B },
        Buffered { data: Option<Bytes> },
        Failed { error: Option<BoxError> },
    }
}

impl<B> MetricsBody<B> {
    fn passthrough(inner: B) -> Self {
        Self {
            kind: BodyKind::Passthrough { inner },
        }
    }

    fn buffered(data: Bytes) -> Self {
        Self {
            kind: BodyKind::Buffered {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    fn failed(error: BoxError) -> Self {
        Self {
            kind: BodyKind::Failed { error: Some(error) },
        }
    }
}

impl<B> std::fmt::Debug for MetricsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            BodyKind::Passthrough { .. } => "passthrough",
            BodyKind::Buffered { .. } => "buffered",
            BodyKind::Failed { .. } => "failed",
        };
        f.debug_struct("MetricsBody").field("kind", &kind).finish()
    }
}

impl<B> Body for MetricsBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            BodyKindProj::Passthrough { inner } => inner.poll_frame(cx).map_err(Into::into),
            BodyKindProj::Buffered { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyKindProj::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Passthrough { inner } => inner.is_end_stream(),
            BodyKind::Buffered { data } => data.is_none(),
            BodyKind::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Passthrough { inner } => inner.size_hint(),
            BodyKind::Buffered { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            BodyKind::Failed { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_zero_padded_lower_case_hex() {
        assert_eq!(RequestId::Generated(1).to_string(), "0000000000000001");
        assert_eq!(
            RequestId::Generated(0x0123_4567_89ab_cdef).to_string(),
            "0123456789abcdef"
        );
        assert_eq!(
            RequestId::Generated(u64::MAX).to_string(),
            "ffffffffffffffff"
        );
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            TraceIdHex(&tp).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
