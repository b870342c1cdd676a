//! An rmcp client of an HTTP (Streamable HTTP) or stdio (child process) upstream: connected
//! lazily, shared by all requests, reconnected with exponential backoff when its transport
//! closes, and (HTTP) carrying the gateway's identity assertions.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions as _, JsonRpcMessage};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, ServiceExt as _};
use tokio::time::Instant;

use super::UpstreamError;
use super::assertion::Asserter;
use crate::config::{ReconnectSection, UpstreamConfig, UpstreamKind};

/// Variables a stdio upstream inherits from the gateway's environment (the gateway's own
/// secrets stay with it).
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "TMPDIR",
];

/// The identity assertion a request carries to the HTTP client, as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct AssertionHeader(pub(crate) HeaderValue);

/// The reqwest client with the identity assertion added: the one a request carries, or the
/// gateway's own for the requests it makes itself.
#[derive(Clone)]
pub(crate) struct AssertingHttp {
    http: reqwest::Client,
    asserter: Option<Arc<Asserter>>,
}

impl AssertingHttp {
    fn headers(
        &self,
        message: Option<&ClientJsonRpcMessage>,
        mut custom: HashMap<HeaderName, HeaderValue>,
    ) -> HashMap<HeaderName, HeaderValue> {
        let Some(asserter) = &self.asserter else {
            return custom;
        };
        let carried = match message {
            Some(JsonRpcMessage::Request(r)) => r
                .request
                .extensions()
                .get::<AssertionHeader>()
                .map(|a| a.0.clone()),
            _ => None,
        };
        let value = match carried {
            Some(value) => Some(value),
            None => asserter
                .for_gateway()
                .inspect_err(|error| tracing::error!(%error, "cannot sign the gateway's assertion"))
                .ok(),
        };
        if let Some(value) = value {
            custom.insert(asserter.header().clone(), value);
        }
        custom
    }
}

impl StreamableHttpClient for AssertingHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = self.headers(Some(&message), custom_headers);
        self.http
            .post_message(uri, message, session_id, auth_header, headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = self.headers(Some(&message), custom_headers);
        self.http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let headers = self.headers(None, custom_headers);
        self.http
            .delete_session(uri, session_id, auth_header, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let headers = self.headers(None, custom_headers);
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let headers = self.headers(None, custom_headers);
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }
}

/// How a connection is made.
enum Connector {
    Http {
        url: String,
        http: AssertingHttp,
    },
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
}

type Connection = RunningService<RoleClient, ()>;

/// The exponential backoff after `failures` consecutive failed connects.
pub(crate) fn backoff(failures: u32, reconnect: &ReconnectSection) -> Duration {
    let initial = Duration::from_millis(reconnect.initial_backoff_ms);
    let max = Duration::from_secs(reconnect.max_backoff_secs);
    let doublings = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

/// The connection state behind the connect lock.
struct Link {
    running: Option<Connection>,
    /// Consecutive failed connects.
    failures: u32,
    /// No new attempt before this instant.
    retry_at: Option<Instant>,
}

/// A shared rmcp client of one upstream.
pub(crate) struct RmcpClient {
    name: String,
    connector: Connector,
    timeout: Duration,
    reconnect: ReconnectSection,
    /// The live peer, read on every request without waiting.
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// Only one task connects at a time; the others wait for its result.
    link: tokio::sync::Mutex<Link>,
}

impl std::fmt::Debug for RmcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmcpClient")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RmcpClient {
    /// A client of the HTTP or stdio upstream `config`; nothing is connected yet.
    pub(crate) fn new(
        config: &UpstreamConfig,
        asserter: Option<Arc<Asserter>>,
    ) -> Result<Self, UpstreamError> {
        let connector = match config.kind {
            UpstreamKind::Stdio => Connector::Stdio {
                command: config.command.clone().unwrap_or_default(),
                args: config.args.clone(),
                env: config.env.clone(),
            },
            _ => {
                // One HTTP client (and so one connection pool) per upstream.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(64)
                    .build()
                    .map_err(|e| UpstreamError::Unavailable(format!("http client: {e}")))?;
                Connector::Http {
                    url: config.url.clone(),
                    http: AssertingHttp { http, asserter },
                }
            }
        };
        Ok(Self {
            name: config.name.clone(),
            connector,
            timeout: config.timeout(),
            reconnect: config.reconnect.clone(),
            peer: RwLock::new(None),
            link: tokio::sync::Mutex::new(Link {
                running: None,
                failures: 0,
                retry_at: None,
            }),
        })
    }

    /// The current peer, connecting (once, for all waiting callers) when there is none or
    /// its transport has closed. While a reconnect waits out its backoff, callers fail at
    /// once.
    pub(crate) async fn peer(&self) -> Result<Peer<RoleClient>, UpstreamError> {
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        let mut link = self.link.lock().await;
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        let now = Instant::now();
        if let Some(retry_at) = link.retry_at
            && now < retry_at
        {
            return Err(UpstreamError::Unavailable(format!(
                "reconnecting in {} ms",
                (retry_at - now).as_millis()
            )));
        }
        if let Some(mut old) = link.running.take() {
            // The old transport is closed already; closing it ends its task (and a stdio
            // upstream's process).
            let _ = old.close_with_timeout(Duration::from_secs(1)).await;
        }
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(running)) => {
                let peer = running.peer().clone();
                tracing::info!(upstream = %self.name, "connected to upstream");
                *self.peer.write().unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
                link.running = Some(running);
                link.failures = 0;
                link.retry_at = None;
                Ok(peer)
            }
            result => {
                link.failures = link.failures.saturating_add(1);
                let wait = backoff(link.failures, &self.reconnect);
                link.retry_at = Some(Instant::now() + wait);
                let error = match result {
                    Ok(Err(error)) => error,
                    _ => UpstreamError::Timeout,
                };
                tracing::warn!(
                    upstream = %self.name,
                    %error,
                    failures = link.failures,
                    retry_in_ms = wait.as_millis(),
                    "cannot connect to upstream"
                );
                Err(error)
            }
        }
    }

    async fn connect(&self) -> Result<Connection, UpstreamError> {
        let unavailable = |e: &dyn std::fmt::Display| UpstreamError::Unavailable(e.to_string());
        match &self.connector {
            Connector::Http { url, http } => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .max_concurrent_requests(256);
                let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
                ().serve(transport).await.map_err(|e| unavailable(&e))
            }
            Connector::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).env_clear().kill_on_drop(true);
                for var in INHERITED_ENV {
                    if let Some(value) = std::env::var_os(var) {
                        cmd.env(var, value);
                    }
                }
                cmd.envs(env);
                // The child's diagnostics go to the gateway's stderr.
                let (transport, _) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| {
                        UpstreamError::Unavailable(format!("cannot start `{command}`: {e}"))
                    })?;
                ().serve(transport).await.map_err(|e| unavailable(&e))
            }
        }
    }

    fn live_peer(&self) -> Option<Peer<RoleClient>> {
        self.peer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|p| !p.is_transport_closed())
            .cloned()
    }

    /// Closes the connection (and ends a stdio upstream's process).
    pub(crate) async fn close(&self) {
        *self.peer.write().unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(mut running) = self.link.lock().await.running.take() {
            let _ = running.close_with_timeout(Duration::from_secs(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let reconnect = ReconnectSection {
            initial_backoff_ms: 250,
            max_backoff_secs: 2,
        };
        let waits: Vec<u128> = (1..=6)
            .map(|n| backoff(n, &reconnect).as_millis())
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX, &reconnect), Duration::from_secs(2));
    }
}
