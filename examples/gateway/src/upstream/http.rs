//! The client of an HTTP (Streamable HTTP) upstream: each request is one POST made by the
//! request's own task, its body encoded once and its answer (a JSON body or the matching
//! event of an SSE stream, bounded as rmcp's client bounds them) read with the fast paths of
//! `crate::rpc`; `initialize` is one such POST too. POSTs to a plain `http://` upstream go
//! through the pooled HTTP/1.1 client of `super::h1`, to an `https://` one through reqwest
//! (TLS, HTTP/2). The `initialized` notification and the session's deletion use rmcp's
//! reqwest-based `StreamableHttpClient`.
//!
//! rmcp's client service would add, per request, a hop through its worker task and channels,
//! request-header rebuilding and a response router; for a gateway that already holds the
//! parsed request and waits for exactly one answer, that machinery was about a third of its
//! CPU per proxied request (`docs/benchmarks/loadtest.md`). The session is established
//! once with the `initialize` handshake (connect lock, exponential backoff after failures)
//! and shared by all requests; an upstream that forgot it (404, e.g. after a restart) gets a
//! new handshake and the request is sent once more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Either};
use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ClientJsonRpcMessage, ClientNotification, ClientRequest, Implementation,
    InitializeRequest, InitializeRequestParams, InitializedNotification, JsonRpcNotification,
    JsonRpcVersion2_0, ProtocolVersion, RequestId, ServerPeerInfo, ServerResult,
};
use rmcp::transport::streamable_http_client::StreamableHttpClient as _;

use sse_stream::SseStream;

use super::UpstreamError;
use super::assertion::Asserter;
use super::h1;
use super::stdio::Backoff;
use crate::config::{ReconnectSection, UpstreamConfig};
use crate::gateway::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::rpc::{self, Expect};

/// The protocol version the gateway asks its upstreams for: the newest one with the
/// `initialize` handshake (the upstream may answer with an older one).
const UPSTREAM_PROTOCOL: ProtocolVersion = ProtocolVersion::LATEST_WITH_INITIALIZE;

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
/// Both, as the Streamable HTTP transport requires of a client's POST.
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// The largest answer read (a JSON body, or all of an event stream), as rmcp's client.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// The largest body of a failure status read for a JSON-RPC error, as rmcp's client.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An established upstream session.
struct Session {
    /// `Mcp-Session-Id`, when the upstream keeps sessions (always text), sent with every
    /// request.
    id_header: Option<HeaderValue>,
    /// `MCP-Protocol-Version` with the negotiated version, sent with every request.
    version: HeaderValue,
    info: Arc<ServerPeerInfo>,
}

impl Session {
    /// The session id as rmcp's client takes it (for the rare calls made through it).
    fn id(&self) -> Option<Arc<str>> {
        self.id_header
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(Arc::from)
    }
}

/// What a POST brought back.
struct Posted {
    /// The answer to the request.
    answer: Result<ServerResult, ErrorData>,
    /// The `Mcp-Session-Id` the upstream named (it names one in answer to `initialize`).
    session_id: Option<HeaderValue>,
}

/// The body of an upstream's answer: the pooled client's, or reqwest's.
type AnswerBody = Either<h1::PooledBody, reqwest::Body>;

/// A shared client of one HTTP upstream.
pub(crate) struct HttpClient {
    name: String,
    uri: Arc<str>,
    /// The pooled client of a plain `http://` upstream; `None`: reqwest sends the POSTs.
    plain: Option<h1::Pool>,
    http: reqwest::Client,
    asserter: Option<Arc<Asserter>>,
    timeout: Duration,
    reconnect: ReconnectSection,
    /// JSON-RPC ids of the gateway's requests in the shared session (the clients' own ids
    /// would collide there).
    next_id: AtomicI64,
    /// The live session, read on every request without waiting.
    session: RwLock<Option<Arc<Session>>>,
    /// Only one task makes the handshake at a time; the others wait for its result.
    link: tokio::sync::Mutex<Backoff>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client of the HTTP upstream `config`; nothing is connected yet.
    pub(crate) fn new(
        config: &UpstreamConfig,
        asserter: Option<Arc<Asserter>>,
    ) -> Result<Self, UpstreamError> {
        // One HTTP client (and so one connection pool) per upstream.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| UpstreamError::Unavailable(format!("http client: {e}")))?;
        Ok(Self {
            name: config.name.clone(),
            uri: Arc::from(config.url.as_str()),
            plain: h1::Pool::for_url(&config.url),
            http,
            asserter,
            timeout: config.timeout(),
            reconnect: config.reconnect.clone(),
            next_id: AtomicI64::new(1),
            session: RwLock::new(None),
            link: tokio::sync::Mutex::new(Backoff::default()),
        })
    }

    /// What the upstream said about itself in the handshake (making it if needed).
    pub(crate) async fn info(&self) -> Result<Arc<ServerPeerInfo>, UpstreamError> {
        Ok(Arc::clone(&self.session().await?.info))
    }

    /// Sends `request` with `assertion` (the gateway's own when `None` and assertions are
    /// on) and waits for its result; the caller bounds the wait.
    pub(crate) async fn call(
        &self,
        request: Box<ClientRequest>,
        assertion: Option<HeaderValue>,
    ) -> Result<Box<ServerResult>, UpstreamError> {
        let assertion = match assertion {
            Some(value) => Some(value),
            None => self.gateway_assertion(),
        };
        let session = self.session().await?;
        let id = RequestId::Number(self.next_id.fetch_add(1, Ordering::Relaxed));
        // Encoded once: the same body is sent again if the session has expired.
        let (body, expect) = rpc::encode_request(&id, *request)
            .map_err(|e| UpstreamError::Unavailable(format!("cannot encode the request: {e}")))?;
        let body = Bytes::from(body);
        let posted = match self
            .post(
                &session.version,
                session.id_header.as_ref(),
                body.clone(),
                &id,
                expect,
                assertion.as_ref(),
            )
            .await?
        {
            Some(posted) => posted,
            None => {
                self.forget(&session);
                tracing::info!(upstream = %self.name, "upstream session expired; reconnecting");
                let session = self.session().await?;
                self.post(
                    &session.version,
                    session.id_header.as_ref(),
                    body,
                    &id,
                    expect,
                    assertion.as_ref(),
                )
                .await?
                .ok_or_else(|| {
                    UpstreamError::Unavailable("the new upstream session expired".to_owned())
                })?
            }
        };
        posted.answer.map(Box::new).map_err(UpstreamError::Rpc)
    }

    /// Ends the upstream session (best effort: the upstream may be gone).
    pub(crate) async fn close(&self) {
        let session = self
            .session
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(session) = session else {
            return;
        };
        let Some(id) = session.id() else {
            return;
        };
        let headers = self.headers(&session.version, self.gateway_assertion().as_ref());
        let deleted = self
            .http
            .delete_session(Arc::clone(&self.uri), id, None, headers);
        match tokio::time::timeout(Duration::from_secs(5), deleted).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(upstream = %self.name, %error, "upstream session not deleted");
            }
            Err(_) => tracing::debug!(upstream = %self.name, "upstream session delete timed out"),
        }
    }

    fn gateway_assertion(&self) -> Option<HeaderValue> {
        self.asserter.as_ref().and_then(|asserter| {
            asserter
                .for_gateway()
                .inspect_err(|error| tracing::error!(%error, "cannot sign the gateway's assertion"))
                .ok()
        })
    }

    fn headers(
        &self,
        version: &HeaderValue,
        assertion: Option<&HeaderValue>,
    ) -> HashMap<HeaderName, HeaderValue> {
        let mut headers = HashMap::with_capacity(2);
        headers.insert(MCP_PROTOCOL_VERSION, version.clone());
        if let (Some(asserter), Some(value)) = (&self.asserter, assertion) {
            headers.insert(asserter.header().clone(), value.clone());
        }
        headers
    }

    /// One POST of `body` (a request with id `id`) with protocol version `version`, in
    /// session `session_id` (none for `initialize`), and the upstream's answer to it: the JSON
    /// body, or the message with `id` on the SSE stream; `None` when the upstream no longer
    /// knows the session. Statuses and bodies are handled as rmcp's client does (a JSON-RPC
    /// error in a failure status is the request's error; bodies are bounded), without its
    /// typed encoding and decoding (`crate::rpc`).
    async fn post(
        &self,
        version: &HeaderValue,
        session_id: Option<&HeaderValue>,
        body: Bytes,
        id: &RequestId,
        expect: Expect,
        assertion: Option<&HeaderValue>,
    ) -> Result<Option<Posted>, UpstreamError> {
        let mut request = http::Request::new(body);
        *request.method_mut() = Method::POST;
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        headers.insert(MCP_PROTOCOL_VERSION, version.clone());
        if let Some(session_id) = session_id {
            headers.insert(MCP_SESSION_ID, session_id.clone());
        }
        if let (Some(asserter), Some(value)) = (&self.asserter, assertion) {
            headers.insert(asserter.header().clone(), value.clone());
        }
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Ok(None);
        }
        let named_session = response.headers().get(MCP_SESSION_ID).cloned();
        let posted = |answer| {
            Ok(Some(Posted {
                answer,
                session_id: named_session,
            }))
        };
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.as_bytes().to_ascii_lowercase())
            .unwrap_or_default();
        let is_json = content_type.starts_with(JSON.as_bytes());
        if !status.is_success() {
            // A JSON-RPC error carried by a failure status is the request's answer.
            if is_json && !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                let body = read_bounded(response.into_body(), MAX_ERROR_BODY).await?;
                if let Some(Err(error)) = rpc::parse_answer(&body, id, expect) {
                    return posted(Err(error));
                }
            }
            return Err(UpstreamError::Unavailable(format!(
                "the upstream answered HTTP {status}"
            )));
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Err(UpstreamError::Unavailable(
                "the upstream accepted a request without answering it".to_owned(),
            ));
        }
        if is_json {
            let body = read_bounded(response.into_body(), MAX_ANSWER).await?;
            return match rpc::parse_answer(&body, id, expect) {
                Some(answer) => posted(answer),
                None => Err(UpstreamError::Unavailable(
                    "upstream answered without a response".to_owned(),
                )),
            };
        }
        if !content_type.starts_with(EVENT_STREAM.as_bytes()) {
            return Err(UpstreamError::Unavailable(format!(
                "the upstream answered with content type `{}`",
                String::from_utf8_lossy(&content_type)
            )));
        }
        let mut read = 0usize;
        let bytes = response.into_body().into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            read += chunk.len();
            if read > MAX_ANSWER {
                return Err(std::io::Error::other("event stream over the size limit"));
            }
            Ok(chunk)
        });
        let mut events = SseStream::from_bytes_stream(bytes);
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| unavailable(&e))?;
            let Some(data) = event.data.as_deref().filter(|d| !d.is_empty()) else {
                continue;
            };
            // Progress, logging and the upstream's own requests have no taker here: the
            // gateway holds one shared session for all its clients.
            if let Some(answer) = rpc::parse_answer(data.as_bytes(), id, expect) {
                return posted(answer);
            }
        }
        Err(UpstreamError::Unavailable(
            "the upstream's event stream ended without a response".to_owned(),
        ))
    }

    /// Sends `request` (a POST to the upstream's URL) with the pooled client or reqwest.
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<AnswerBody>, UpstreamError> {
        if let Some(pool) = &self.plain {
            let response = pool.send(request).await.map_err(|e| unavailable(&e))?;
            return Ok(response.map(Either::Left));
        }
        // reqwest's builder, which turns credentials in the URL into basic authentication.
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .post(self.uri.as_ref())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(http::Response::from(response).map(Either::Right))
    }

    /// The live session, or a new one (made once for all waiting callers). While a
    /// reconnect waits out its backoff, callers fail at once.
    async fn session(&self) -> Result<Arc<Session>, UpstreamError> {
        match self.live() {
            Some(session) => Ok(session),
            // Boxed: the handshake's future would otherwise be part of every request's.
            None => Box::pin(self.reconnect()).await,
        }
    }

    /// [`Self::session`] when there is no live session.
    async fn reconnect(&self) -> Result<Arc<Session>, UpstreamError> {
        let mut backoff = self.link.lock().await;
        if let Some(session) = self.live() {
            return Ok(session);
        }
        backoff.check()?;
        match tokio::time::timeout(self.timeout, self.handshake()).await {
            Ok(Ok(session)) => {
                let session = Arc::new(session);
                tracing::info!(upstream = %self.name, "connected to upstream");
                *self.session.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&session));
                backoff.succeeded();
                Ok(session)
            }
            result => {
                let error = match result {
                    Ok(Err(error)) => error,
                    _ => UpstreamError::Timeout,
                };
                let wait = backoff.failed(&self.reconnect);
                tracing::warn!(
                    upstream = %self.name,
                    %error,
                    failures = backoff.failures(),
                    retry_in_ms = wait.as_millis(),
                    "cannot connect to upstream"
                );
                Err(error)
            }
        }
    }

    /// `initialize`, then `notifications/initialized`.
    async fn handshake(&self) -> Result<Session, UpstreamError> {
        let params = InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-gateway", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(UPSTREAM_PROTOCOL);
        let id = RequestId::Number(0);
        let request = ClientRequest::InitializeRequest(InitializeRequest::new(params));
        let (body, expect) = rpc::encode_request(&id, request)
            .map_err(|e| UpstreamError::Unavailable(format!("cannot encode initialize: {e}")))?;
        let assertion = self.gateway_assertion();
        let version = version_header(&UPSTREAM_PROTOCOL);
        // Without a session the upstream cannot answer "expired": `None` does not happen.
        let posted = self
            .post(
                &version,
                None,
                Bytes::from(body),
                &id,
                expect,
                assertion.as_ref(),
            )
            .await?
            .ok_or_else(|| UpstreamError::Unavailable("no answer to initialize".to_owned()))?;
        let result = match posted.answer {
            Ok(ServerResult::InitializeResult(result)) => result,
            Ok(_) => {
                return Err(UpstreamError::Unavailable(
                    "the upstream answered initialize with something else".to_owned(),
                ));
            }
            Err(error) => return Err(UpstreamError::Rpc(error)),
        };
        // Kept only when it is text: rmcp's client sends it as a string.
        let id_header = posted.session_id.filter(|v| v.to_str().is_ok());
        let session = Session {
            id_header,
            version: version_header(&result.protocol_version),
            info: Arc::new(ServerPeerInfo::from(result)),
        };
        let initialized = ClientJsonRpcMessage::Notification(JsonRpcNotification {
            jsonrpc: JsonRpcVersion2_0,
            notification: ClientNotification::InitializedNotification(
                InitializedNotification::default(),
            ),
        });
        let headers = self.headers(&session.version, assertion.as_ref());
        self.http
            .post_message(
                Arc::clone(&self.uri),
                initialized,
                session.id(),
                None,
                headers,
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(session)
    }

    fn live(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops `session` unless another task replaced it already.
    fn forget(&self, session: &Arc<Session>) {
        let mut current = self.session.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
            *current = None;
        }
    }
}

fn version_header(version: &ProtocolVersion) -> HeaderValue {
    HeaderValue::from_str(version.as_str())
        .unwrap_or_else(|_| HeaderValue::from_static("2025-11-25"))
}

/// `body`, refused when it is longer than `limit` bytes.
async fn read_bounded(mut body: AnswerBody, limit: usize) -> Result<Vec<u8>, UpstreamError> {
    let too_large = || UpstreamError::Unavailable(format!("answer over {limit} bytes"));
    let expected = body.size_hint().lower();
    if expected > limit as u64 {
        return Err(too_large());
    }
    let mut read = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(|e| unavailable(&e))?.into_data() else {
            continue;
        };
        if read.len() + chunk.len() > limit {
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read)
}

fn unavailable(error: &dyn std::fmt::Display) -> UpstreamError {
    UpstreamError::Unavailable(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ErrorCode, ErrorData, JsonRpcError, JsonRpcResponse, ServerJsonRpcMessage};

    #[test]
    fn only_the_answer_to_the_request_is_taken() {
        let id = RequestId::Number(7);
        let answers = |message: ServerJsonRpcMessage| {
            let bytes = serde_json::to_vec(&message).unwrap();
            rpc::parse_answer(&bytes, &id, Expect::Any).is_some()
        };
        let response = |id| {
            ServerJsonRpcMessage::Response(JsonRpcResponse {
                jsonrpc: JsonRpcVersion2_0,
                id,
                result: ServerResult::empty(()),
            })
        };
        assert!(answers(response(RequestId::Number(7))));
        assert!(!answers(response(RequestId::Number(8))));
        let error = |id| {
            ServerJsonRpcMessage::Error(JsonRpcError::new(
                id,
                ErrorData::new(ErrorCode::INTERNAL_ERROR, "no", None),
            ))
        };
        assert!(answers(error(Some(RequestId::Number(7)))));
        assert!(!answers(error(None)));
    }

    #[test]
    fn the_version_header_names_the_version() {
        assert_eq!(
            version_header(&ProtocolVersion::V_2025_06_18),
            HeaderValue::from_static("2025-06-18")
        );
    }
}
