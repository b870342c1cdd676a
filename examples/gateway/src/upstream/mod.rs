//! The upstream registry: the MCP servers behind the gateway, reached over Streamable HTTP, a
//! child process's stdio, or in-process, each with its timeout, health, reconnect backoff and
//! circuit breaker.
//!
//! With one upstream, names pass through unchanged. With several, each upstream's tool and
//! prompt names carry its name prefix (default `{name}_`) and its resource URIs its URI prefix
//! (default `{name}+`): calls are routed by prefix and the prefix is removed on the way;
//! `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list` are merged
//! (an upstream that fails is left out, logged and counted); `logging/setLevel` goes to every
//! upstream; anything else goes to the first.

mod assertion;
mod breaker;
mod h1;
mod http;
mod in_process;
mod metrics;
mod names;
mod stdio;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use mcp_auth_core::Principal;
use rmcp::model::{
    ClientRequest, ErrorData, Implementation, RequestId, ServerCapabilities, ServerPeerInfo,
    ServerResult,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde::Serialize;
use tokio::task::JoinHandle;

pub use assertion::GATEWAY_JWKS_PATH;

use self::assertion::{Asserter, AssertionSigner};
use self::breaker::{Breaker, SystemTicker, Ticker, Transition};
use self::http::HttpClient;
use self::in_process::InProcess;
use self::metrics::UpstreamMetrics;
use self::names::{Address, ListOf, Naming};
use self::stdio::StdioClient;
use crate::config::{ConfigError, IdentityAssertionConfig, UpstreamConfig, UpstreamKind};

/// Pages of one upstream's list followed when merging lists.
const MAX_LIST_PAGES: usize = 32;

/// Longest wait for one upstream in a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream answered with a JSON-RPC error (or the request names nothing any
    /// upstream has); it goes back to the client unchanged.
    #[error("upstream error {}: {}", .0.code.0, .0.message)]
    Rpc(ErrorData),
    /// No answer within the upstream's timeout.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream cannot be reached or the connection broke.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The upstream's circuit breaker is open: it was not asked.
    #[error("upstream `{upstream}` circuit open")]
    CircuitOpen {
        /// The upstream.
        upstream: String,
        /// When a probe may be tried.
        retry_after: Duration,
    },
}

fn map_error(error: ServiceError) -> UpstreamError {
    match error {
        ServiceError::McpError(data) => UpstreamError::Rpc(data),
        ServiceError::Timeout { .. } => UpstreamError::Timeout,
        other => UpstreamError::Unavailable(other.to_string()),
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a request reaches the upstream.
#[expect(
    clippy::large_enum_variant,
    reason = "one per upstream, inside its Arc; boxing would add a pointer chase per request"
)]
enum Transport {
    Http(HttpClient),
    Stdio(StdioClient),
    InProcess(InProcess),
}

/// What is known about an upstream's health from its last calls.
#[derive(Debug, Default)]
struct Health {
    /// Unix milliseconds of the last answered call (0: none yet).
    last_success: AtomicU64,
    /// Unix milliseconds of the last failed call (0: none yet).
    last_failure: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// One upstream.
pub(crate) struct Upstream {
    config: UpstreamConfig,
    naming: Naming,
    transport: Transport,
    breaker: Breaker,
    asserter: Option<Arc<Asserter>>,
    health: Health,
    metrics: UpstreamMetrics,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    fn new(
        config: UpstreamConfig,
        signer: &AssertionSigner,
        metrics: UpstreamMetrics,
        ticker: Arc<dyn Ticker>,
    ) -> anyhow::Result<Self> {
        let asserter = config
            .identity_assertion
            .as_ref()
            .map(|a| {
                let audience = a.audience.as_deref().unwrap_or(config.url.as_str());
                signer.asserter(audience, &a.header).map(Arc::new)
            })
            .transpose()?;
        let transport = match config.kind {
            UpstreamKind::InProcess => Transport::InProcess(InProcess::start()),
            UpstreamKind::Stdio => Transport::Stdio(StdioClient::new(&config)),
            UpstreamKind::Http => Transport::Http(HttpClient::new(&config, asserter.clone())?),
        };
        metrics.breaker(&config.name, breaker::State::Closed);
        Ok(Self {
            naming: Naming::new(config.name_prefix(), config.uri_prefix()),
            breaker: Breaker::new(
                config.breaker.failure_threshold,
                Duration::from_secs(config.breaker.cool_down_secs),
                ticker,
            ),
            transport,
            asserter,
            health: Health::default(),
            metrics,
            config,
        })
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    /// Runs the operation `op` makes if the breaker admits it, and records how it went.
    ///
    /// `op` makes its future only once admitted, so the future is held once, in the await,
    /// and not also as an argument beside it (it is most of a request's future's size).
    async fn guarded<T, F>(&self, op: impl FnOnce() -> F) -> Result<T, UpstreamError>
    where
        F: Future<Output = Result<T, UpstreamError>>,
    {
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(retry_after) => {
                let error = UpstreamError::CircuitOpen {
                    upstream: self.config.name.clone(),
                    retry_after,
                };
                self.metrics.failed(self.name(), &error);
                return Err(error);
            }
        };
        let result = op().await;
        let transition = match &result {
            Ok(_) | Err(UpstreamError::Rpc(_)) => {
                self.health
                    .last_success
                    .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
                self.breaker.on_success(permit)
            }
            Err(error) => {
                self.health
                    .last_failure
                    .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
                *self
                    .health
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                self.metrics.failed(self.name(), error);
                self.breaker.on_failure(permit)
            }
        };
        if let Some(transition) = transition {
            match transition {
                Transition::Opened | Transition::Reopened => tracing::warn!(
                    upstream = %self.name(),
                    failures = self.breaker.consecutive_failures(),
                    ?transition,
                    "upstream circuit breaker open"
                ),
                Transition::Closed => {
                    tracing::info!(upstream = %self.name(), "upstream circuit breaker closed");
                }
            }
            self.metrics.breaker(self.name(), self.breaker.state());
        }
        result
    }

    /// What the upstream said about itself (connecting if needed).
    async fn info(&self) -> Result<Arc<ServerPeerInfo>, UpstreamError> {
        match &self.transport {
            Transport::InProcess(tools) => Ok(tools.info()),
            Transport::Http(client) => self.guarded(|| client.info()).await,
            Transport::Stdio(client) => {
                self.guarded(|| async {
                    client
                        .peer()
                        .await?
                        .peer_info()
                        .ok_or_else(|| UpstreamError::Unavailable("no server info".to_owned()))
                })
                .await
            }
        }
    }

    /// Sends `request` (the upstream's own names) for `principal` (the gateway itself when
    /// `None`) and waits for the result, within the timeout.
    ///
    /// Request and result are boxed, and so is each transport's future, right where it is
    /// made: a request's future would otherwise hold them inline, and every layer that moves
    /// it (into a timeout, into an async block, up to the connection's task) would copy them.
    async fn call(
        &self,
        id: &RequestId,
        request: Box<ClientRequest>,
        principal: Option<&Principal>,
    ) -> Result<Box<ServerResult>, UpstreamError> {
        let timeout = self.config.timeout();
        match &self.transport {
            Transport::InProcess(tools) => {
                self.guarded(|| async {
                    let call = Box::pin(tools.call(id.clone(), request));
                    match tokio::time::timeout(timeout, call).await {
                        Ok(result) => result.map_err(UpstreamError::Rpc),
                        Err(_) => Err(UpstreamError::Timeout),
                    }
                })
                .await
            }
            Transport::Http(client) => {
                let assertion = match (&self.asserter, principal) {
                    (Some(asserter), Some(principal)) => {
                        Some(asserter.for_principal(principal).map_err(|error| {
                            tracing::error!(upstream = %self.name(), %error, "cannot sign an identity assertion");
                            UpstreamError::Unavailable("identity assertion unavailable".to_owned())
                        })?)
                    }
                    _ => None,
                };
                self.guarded(|| async {
                    let call = Box::pin(client.call(request, assertion));
                    match tokio::time::timeout(timeout, call).await {
                        Ok(result) => result,
                        Err(_) => Err(UpstreamError::Timeout),
                    }
                })
                .await
            }
            Transport::Stdio(client) => {
                self.guarded(|| {
                    Box::pin(async {
                        let peer = client.peer().await?;
                        let handle = peer
                            .send_request_with_option(
                                *request,
                                PeerRequestOptions::with_timeout(timeout),
                            )
                            .await
                            .map_err(map_error)?;
                        handle
                            .await_response()
                            .await
                            .map(Box::new)
                            .map_err(map_error)
                    })
                })
                .await
            }
        }
    }

    /// Every page of a list, as one result.
    async fn list_all(
        &self,
        id: &RequestId,
        request: &ClientRequest,
        principal: &Principal,
    ) -> Result<Box<ServerResult>, UpstreamError> {
        let mut all = self
            .call(id, Box::new(request.clone()), Some(principal))
            .await?;
        for _ in 1..MAX_LIST_PAGES {
            let Some(cursor) = next_cursor(&mut all) else {
                break;
            };
            let mut next = Box::new(request.clone());
            set_cursor(&mut next, cursor);
            let page = self.call(id, next, Some(principal)).await?;
            extend(&mut all, *page);
        }
        // A list longer than MAX_LIST_PAGES pages is cut; its cursor is not passed on.
        let _ = next_cursor(&mut all);
        Ok(all)
    }

    /// A ping, answered by the upstream (not by the gateway).
    async fn ping(&self) -> Result<(), UpstreamError> {
        let ping = Box::new(ClientRequest::PingRequest(Default::default()));
        let id = RequestId::Number(0);
        self.call(&id, ping, None).await.map(drop)
    }

    async fn close(&self) {
        match &self.transport {
            Transport::Http(client) => client.close().await,
            Transport::Stdio(client) => client.close().await,
            Transport::InProcess(tools) => tools.close(),
        }
    }

    fn status(&self) -> UpstreamStatus {
        let millis = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|m| *m != 0);
        UpstreamStatus {
            name: self.config.name.clone(),
            kind: self.config.kind.as_str(),
            target: self.config.target(),
            prefix: self.config.name_prefix(),
            resource_prefix: self.config.uri_prefix(),
            required: self.config.required,
            timeout_secs: self.config.timeout_secs,
            identity_assertion: self.asserter.as_ref().map(|a| AssertionStatus {
                header: a.header().to_string(),
                audience: a.audience().to_owned(),
            }),
            breaker: BreakerStatus {
                state: self.breaker.state().as_str(),
                consecutive_failures: self.breaker.consecutive_failures(),
                threshold: self.config.breaker.failure_threshold,
                opened_total: self.breaker.opened_total(),
                retry_in_ms: self
                    .breaker
                    .retry_in()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            },
            last_success_unix_ms: millis(&self.health.last_success),
            last_failure_unix_ms: millis(&self.health.last_failure),
            last_error: self
                .health
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The cursor of a list result, taken out of it.
fn next_cursor(result: &mut ServerResult) -> Option<String> {
    match result {
        ServerResult::ListToolsResult(r) => r.next_cursor.take(),
        ServerResult::ListPromptsResult(r) => r.next_cursor.take(),
        ServerResult::ListResourcesResult(r) => r.next_cursor.take(),
        ServerResult::ListResourceTemplatesResult(r) => r.next_cursor.take(),
        _ => None,
    }
}

fn set_cursor(request: &mut ClientRequest, cursor: String) {
    let params = match request {
        ClientRequest::ListToolsRequest(r) => &mut r.params,
        ClientRequest::ListPromptsRequest(r) => &mut r.params,
        ClientRequest::ListResourcesRequest(r) => &mut r.params,
        ClientRequest::ListResourceTemplatesRequest(r) => &mut r.params,
        _ => return,
    };
    params.get_or_insert_default().cursor = Some(cursor);
}

/// Appends the items of the list `part` to the list `all` of the same kind.
fn extend(all: &mut ServerResult, part: ServerResult) {
    match (all, part) {
        (ServerResult::ListToolsResult(a), ServerResult::ListToolsResult(b)) => {
            a.tools.extend(b.tools);
        }
        (ServerResult::ListPromptsResult(a), ServerResult::ListPromptsResult(b)) => {
            a.prompts.extend(b.prompts);
        }
        (ServerResult::ListResourcesResult(a), ServerResult::ListResourcesResult(b)) => {
            a.resources.extend(b.resources);
        }
        (
            ServerResult::ListResourceTemplatesResult(a),
            ServerResult::ListResourceTemplatesResult(b),
        ) => a.resource_templates.extend(b.resource_templates),
        (_, other) => {
            tracing::warn!(
                ?other,
                "an upstream answered a list request with another result"
            );
        }
    }
}

/// The capabilities of several upstreams: each capability any of them has (the first one's
/// settings).
fn merge_capabilities(into: &mut ServerCapabilities, from: &ServerCapabilities) {
    fn or<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
        if into.is_none() {
            into.clone_from(from);
        }
    }
    or(&mut into.experimental, &from.experimental);
    or(&mut into.extensions, &from.extensions);
    or(&mut into.logging, &from.logging);
    or(&mut into.completions, &from.completions);
    or(&mut into.prompts, &from.prompts);
    or(&mut into.resources, &from.resources);
    or(&mut into.tools, &from.tools);
}

/// An upstream's identity assertion settings, as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AssertionStatus {
    header: String,
    audience: String,
}

/// An upstream's breaker, as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BreakerStatus {
    state: &'static str,
    consecutive_failures: u32,
    threshold: u32,
    opened_total: u64,
    retry_in_ms: Option<u64>,
}

/// One upstream, as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpstreamStatus {
    name: String,
    kind: &'static str,
    target: String,
    prefix: String,
    resource_prefix: String,
    required: bool,
    timeout_secs: u64,
    identity_assertion: Option<AssertionStatus>,
    breaker: BreakerStatus,
    last_success_unix_ms: Option<u64>,
    last_failure_unix_ms: Option<u64>,
    last_error: Option<String>,
}

/// One upstream in a readiness report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Readiness {
    pub(crate) name: String,
    pub(crate) required: bool,
    pub(crate) reachable: bool,
    pub(crate) breaker: &'static str,
}

/// Why the registry refused a change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RegistryError {
    /// The new upstream's configuration is invalid.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// An upstream of that name exists.
    #[error("an upstream named `{0}` exists")]
    Exists(String),
    /// No upstream has that name.
    #[error("no upstream is named `{0}`")]
    NotFound(String),
    /// The gateway needs at least one upstream.
    #[error("the last upstream cannot be removed")]
    Last,
    /// The upstream could not be set up.
    #[error("{0:#}")]
    Setup(anyhow::Error),
}

/// The upstreams at one moment; requests hold it while they run, so a removal does not
/// disturb a request already routed.
struct Snapshot {
    upstreams: Vec<Arc<Upstream>>,
}

impl Snapshot {
    /// The upstream owning `address`, when names are prefixed.
    fn owner(&self, address: Address<'_>) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.naming.owns(address))
    }
}

/// The upstream registry.
pub(crate) struct Registry {
    snapshot: RwLock<Arc<Snapshot>>,
    signer: AssertionSigner,
    metrics: UpstreamMetrics,
    ticker: Arc<dyn Ticker>,
    request_timeout_secs: u64,
    /// The health-check tasks, by upstream name.
    health_tasks: Mutex<Vec<(String, JoinHandle<()>)>>,
    /// Serializes additions and removals.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("Registry")
            .field("upstreams", &snapshot.upstreams)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry of `upstreams` (validated), its metric families registered in
    /// `registry`; nothing is connected yet. Must run inside a Tokio runtime (health checks
    /// and in-process upstreams start tasks).
    pub(crate) fn new(
        upstreams: &[UpstreamConfig],
        assertion: &IdentityAssertionConfig,
        default_issuer: &str,
        request_timeout_secs: u64,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Self> {
        let signer = AssertionSigner::from_config(assertion, default_issuer)?;
        let metrics = UpstreamMetrics::register(registry);
        let ticker: Arc<dyn Ticker> = Arc::new(SystemTicker);
        let built = upstreams
            .iter()
            .map(|config| {
                Upstream::new(
                    config.clone(),
                    &signer,
                    metrics.clone(),
                    Arc::clone(&ticker),
                )
                .map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let this = Self {
            snapshot: RwLock::new(Arc::new(Snapshot {
                upstreams: built.clone(),
            })),
            signer,
            metrics,
            ticker,
            request_timeout_secs,
            health_tasks: Mutex::new(Vec::new()),
            changes: tokio::sync::Mutex::new(()),
        };
        for upstream in &built {
            this.start_health_checks(upstream);
        }
        Ok(this)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Pings `upstream` every `health_interval_secs` while it is registered (a ping the
    /// breaker refuses is skipped; after the cool-down the ping is the probe).
    fn start_health_checks(&self, upstream: &Arc<Upstream>) {
        let interval = upstream.config.health_interval_secs;
        if interval == 0 {
            return;
        }
        let weak = Arc::downgrade(upstream);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(interval));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = upstream.ping().await {
                    tracing::debug!(upstream = %upstream.name(), %error, "health ping failed");
                }
            }
        });
        self.health_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((upstream.config.name.clone(), task));
    }

    fn stop_health_checks(&self, name: &str) {
        self.health_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(n, task)| {
                if n == name {
                    task.abort();
                }
                n != name
            });
    }

    /// The JWK set verifying the gateway's identity assertions.
    pub(crate) fn jwks_json(&self) -> serde_json::Value {
        self.signer.jwks_json()
    }

    /// What `initialize` answers: the upstream's own description, or with several the union
    /// of their capabilities under the gateway's name (unreachable upstreams left out).
    pub(crate) async fn server_info(&self) -> Result<Arc<ServerPeerInfo>, UpstreamError> {
        let snapshot = self.snapshot();
        if let [one] = snapshot.upstreams.as_slice() {
            return one.info().await;
        }
        let infos = join_all(snapshot.upstreams.iter().map(|u| u.info())).await;
        let mut capabilities = ServerCapabilities::default();
        let mut instructions = String::new();
        let mut first_error = None;
        let mut reached = 0usize;
        for (upstream, info) in snapshot.upstreams.iter().zip(infos) {
            match info {
                Ok(info) => {
                    reached += 1;
                    merge_capabilities(&mut capabilities, &info.capabilities);
                    if let Some(text) = &info.instructions {
                        if !instructions.is_empty() {
                            instructions.push_str("\n\n");
                        }
                        instructions.push_str(&format!(
                            "[{} tools are prefixed `{}`] {text}",
                            upstream.name(),
                            upstream.config.name_prefix()
                        ));
                    }
                }
                Err(error) => {
                    tracing::warn!(upstream = %upstream.name(), %error, "upstream left out of initialize");
                    first_error.get_or_insert(error);
                }
            }
        }
        if reached == 0
            && let Some(error) = first_error
        {
            return Err(error);
        }
        let mut info = ServerPeerInfo::new(Default::default(), capabilities).with_server_info(
            Implementation::new("mcp-gateway", env!("CARGO_PKG_VERSION")),
        );
        if !instructions.is_empty() {
            info = info.with_instructions(instructions);
        }
        Ok(Arc::new(info))
    }

    /// Sends `request` (JSON-RPC id `id`, names as the client sees them) for `principal` to
    /// the upstream it belongs to, or to every upstream for merged lists and the log level.
    pub(crate) async fn forward(
        &self,
        id: &RequestId,
        mut request: Box<ClientRequest>,
        principal: &Principal,
    ) -> Result<Box<ServerResult>, UpstreamError> {
        let snapshot = self.snapshot();
        let [first, ..] = snapshot.upstreams.as_slice() else {
            return Err(UpstreamError::Unavailable("no upstream".to_owned()));
        };
        if snapshot.upstreams.len() == 1 {
            return first.call(id, request, Some(principal)).await;
        }
        match names::address(&request) {
            address @ (Address::Name(_) | Address::Uri(_)) => {
                let Some(owner) = snapshot.owner(address) else {
                    let what = match address {
                        Address::Name(name) => format!("unknown name `{name}`"),
                        Address::Uri(uri) => format!("unknown resource `{uri}`"),
                        _ => String::new(),
                    };
                    return Err(UpstreamError::Rpc(ErrorData::invalid_params(what, None)));
                };
                owner.naming.to_upstream(&mut request);
                let mut result = owner.call(id, request, Some(principal)).await?;
                owner.naming.to_client(&mut result);
                Ok(result)
            }
            Address::List(of) => {
                self.merged_list(&snapshot, id, &request, of, principal)
                    .await
            }
            Address::Everyone => {
                let results = join_all(
                    snapshot
                        .upstreams
                        .iter()
                        .map(|u| u.call(id, request.clone(), Some(principal))),
                )
                .await;
                let mut first_error = None;
                for result in results {
                    match result {
                        Ok(_) => return Ok(Box::new(ServerResult::empty(()))),
                        Err(error) => {
                            first_error.get_or_insert(error);
                        }
                    }
                }
                Err(first_error
                    .unwrap_or_else(|| UpstreamError::Unavailable("no upstream".to_owned())))
            }
            Address::Default => first.call(id, request, Some(principal)).await,
        }
    }

    async fn merged_list(
        &self,
        snapshot: &Snapshot,
        id: &RequestId,
        request: &ClientRequest,
        of: ListOf,
        principal: &Principal,
    ) -> Result<Box<ServerResult>, UpstreamError> {
        if names::cursor(request).is_some() {
            return Err(UpstreamError::Rpc(ErrorData::invalid_params(
                format!("unknown cursor: the merged {of:?} list comes in one page"),
                None,
            )));
        }
        let parts = join_all(
            snapshot
                .upstreams
                .iter()
                .map(|u| u.list_all(id, request, principal)),
        )
        .await;
        let mut merged: Option<Box<ServerResult>> = None;
        let mut first_error = None;
        for (upstream, part) in snapshot.upstreams.iter().zip(parts) {
            match part {
                Ok(mut part) => {
                    upstream.naming.to_client(&mut part);
                    match &mut merged {
                        None => merged = Some(part),
                        Some(all) => extend(all, *part),
                    }
                }
                Err(error) => {
                    tracing::warn!(upstream = %upstream.name(), %error, list = ?of, "upstream left out of a merged list");
                    self.metrics.partial_list(upstream.name());
                    first_error.get_or_insert(error);
                }
            }
        }
        match (merged, first_error) {
            (Some(merged), _) => Ok(merged),
            (None, Some(error)) => Err(error),
            (None, None) => Err(UpstreamError::Unavailable("no upstream".to_owned())),
        }
    }

    /// Pings every upstream (the breaker permitting) within a few seconds each.
    pub(crate) async fn readiness(&self) -> Vec<Readiness> {
        let snapshot = self.snapshot();
        join_all(snapshot.upstreams.iter().map(|u| async move {
            let reachable = tokio::time::timeout(READY_TIMEOUT.min(u.config.timeout()), u.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            Readiness {
                name: u.config.name.clone(),
                required: u.config.required,
                reachable,
                breaker: u.breaker.state().as_str(),
            }
        }))
        .await
    }

    /// Every upstream's configuration, health and breaker.
    pub(crate) fn statuses(&self) -> Vec<UpstreamStatus> {
        self.snapshot()
            .upstreams
            .iter()
            .map(|u| u.status())
            .collect()
    }

    /// Adds an upstream (validated against the others); it connects on first use.
    pub(crate) async fn add(
        &self,
        config: UpstreamConfig,
    ) -> Result<UpstreamStatus, RegistryError> {
        crate::config::validate_upstreams(
            std::slice::from_ref(&config),
            self.request_timeout_secs,
        )?;
        let _change = self.changes.lock().await;
        let current = self.snapshot();
        if current.upstreams.len() >= crate::config::MAX_UPSTREAMS {
            return Err(RegistryError::Invalid(ConfigError::Invalid {
                key: "upstreams",
                message: format!("at most {} upstreams", crate::config::MAX_UPSTREAMS),
            }));
        }
        for other in &current.upstreams {
            if other.config.name == config.name {
                return Err(RegistryError::Exists(config.name));
            }
            crate::config::check_distinct(&other.config, &config)?;
        }
        let upstream = Arc::new(
            Upstream::new(
                config,
                &self.signer,
                self.metrics.clone(),
                Arc::clone(&self.ticker),
            )
            .map_err(RegistryError::Setup)?,
        );
        let mut upstreams = current.upstreams.clone();
        upstreams.push(Arc::clone(&upstream));
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot { upstreams });
        self.start_health_checks(&upstream);
        tracing::info!(upstream = %upstream.name(), "upstream added");
        Ok(upstream.status())
    }

    /// Removes the upstream `name`; requests already routed to it finish, then its
    /// connection closes.
    pub(crate) async fn remove(&self, name: &str) -> Result<(), RegistryError> {
        let _change = self.changes.lock().await;
        let current = self.snapshot();
        let Some(removed) = current
            .upstreams
            .iter()
            .find(|u| u.config.name == name)
            .cloned()
        else {
            return Err(RegistryError::NotFound(name.to_owned()));
        };
        if current.upstreams.len() == 1 {
            return Err(RegistryError::Last);
        }
        let upstreams = current
            .upstreams
            .iter()
            .filter(|u| u.config.name != name)
            .cloned()
            .collect();
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot { upstreams });
        self.stop_health_checks(name);
        self.metrics.forget(name);
        drop(current);
        tracing::info!(upstream = %name, "upstream removed");
        tokio::spawn(async move {
            removed.close().await;
        });
        Ok(())
    }

    /// Stops the health checks and closes every connection (stdio upstreams' processes end).
    pub(crate) async fn close(&self) {
        for (_, task) in self
            .health_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let snapshot = self.snapshot();
        join_all(snapshot.upstreams.iter().map(|u| u.close())).await;
    }
}
