//! One upstream MCP server reached through an rmcp Streamable HTTP client: connected lazily,
//! shared by all requests, and reconnected when its transport closes.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rmcp::model::{ClientRequest, ServerPeerInfo, ServerResult};
use rmcp::service::{PeerRequestOptions, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, ServiceExt};

use crate::config::UpstreamConfig;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream answered with a JSON-RPC error; it goes back to the client unchanged.
    #[error("upstream error {}: {}", .0.code.0, .0.message)]
    Rpc(rmcp::ErrorData),
    /// No answer within the upstream's timeout.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream cannot be reached or the connection broke.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
}

type Connection = RunningService<RoleClient, ()>;

/// A shared client of one upstream.
pub struct Upstream {
    name: String,
    url: String,
    timeout: Duration,
    http: reqwest::Client,
    /// The live peer, read on every request without waiting.
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// The running client service; held so that it can be closed, and so that only one
    /// task connects at a time.
    connection: tokio::sync::Mutex<Option<Connection>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// A client of the upstream described by `config`; nothing is connected yet.
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        // One HTTP client (and so one connection pool) per upstream, shared by all requests.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| UpstreamError::Unavailable(format!("http client: {e}")))?;
        Ok(Self {
            name: config.name.clone(),
            url: config.url.clone(),
            timeout: Duration::from_secs(config.timeout_secs),
            http,
            peer: RwLock::new(None),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current peer, connecting (once, for all waiting callers) when there is none or
    /// its transport has closed.
    pub async fn peer(&self) -> Result<Peer<RoleClient>, UpstreamError> {
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        let mut connection = self.connection.lock().await;
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        if let Some(mut old) = connection.take() {
            // The old transport is closed already; closing it only ends its task.
            let _ = old.close_with_timeout(Duration::from_secs(1)).await;
        }
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .max_concurrent_requests(256);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let running = tokio::time::timeout(self.timeout, ().serve(transport))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let peer = running.peer().clone();
        tracing::info!(upstream = %self.name, url = %self.url, "connected to upstream");
        *self.peer.write().unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
        *connection = Some(running);
        Ok(peer)
    }

    fn live_peer(&self) -> Option<Peer<RoleClient>> {
        self.peer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|p| !p.is_transport_closed())
            .cloned()
    }

    /// What the upstream said about itself when the client connected.
    pub async fn info(&self) -> Result<Arc<ServerPeerInfo>, UpstreamError> {
        self.peer()
            .await?
            .peer_info()
            .ok_or_else(|| UpstreamError::Unavailable("no server info".to_owned()))
    }

    /// Sends `request` and waits for the result, within the upstream's timeout.
    pub async fn call(&self, request: ClientRequest) -> Result<ServerResult, UpstreamError> {
        let peer = self.peer().await?;
        let options = PeerRequestOptions::with_timeout(self.timeout);
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(map_error)?;
        handle.await_response().await.map_err(map_error)
    }

    /// Whether the upstream is reachable now (connecting if needed).
    pub async fn is_ready(&self) -> bool {
        self.peer().await.is_ok()
    }

    /// Closes the connection.
    pub async fn close(&self) {
        *self.peer.write().unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(mut running) = self.connection.lock().await.take() {
            let _ = running.close_with_timeout(Duration::from_secs(5)).await;
        }
    }
}

fn map_error(error: ServiceError) -> UpstreamError {
    match error {
        ServiceError::McpError(data) => UpstreamError::Rpc(data),
        ServiceError::Timeout { .. } => UpstreamError::Timeout,
        other => UpstreamError::Unavailable(other.to_string()),
    }
}
