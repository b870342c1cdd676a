//! The assembled gateway: [`Gateway::build`] wires the crates from a [`Config`], and the
//! `/mcp` request path runs authenticate -> rate limit -> parse once -> authorize -> forward
//! -> audit -> metrics.

use std::convert::Infallible;
use std::future::Future;
use std::mem::take;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use mcp_audit::{AuditEvent, AuditLogger, AuditStore, Category, OutcomeStatus, Severity};
use mcp_auth_azure::proxy::OAuthProxy;
use mcp_auth_core::api_key::{ApiKeyAuthenticator, LastUsedFlusher, MemoryApiKeyStore};
use mcp_auth_core::claims::ClaimMapping;
use mcp_auth_core::jwks::JwksCache;
use mcp_auth_core::jwt::{Algorithm, JwtAuthenticator, JwtValidator, KeyResolver, KeySet};
use mcp_auth_core::{
    AuthChain, AuthError, AuthRejection, Authenticator, ChallengeConfig, CredentialExtractor,
    CredentialKind, LocalIssuer, MemoryRevocationStore, Principal, ProtectedResourceMetadata,
    RevocationStore, TokenRejection,
};
use mcp_metrics::{
    AuthLimitReason, AuthOutcome, McpMetrics, McpRequestInfo, MetricsConfig, MetricsLayer,
    MetricsService, RateLimitScope, RequestRecord,
};
use mcp_pool::PoolSet;
use mcp_ratelimit::{
    ClientIpResolver, FairShare, FairShareConfig, LockoutConfig, LockoutStatus, LoginLockout,
    MemoryStore, RateLimiter, RequestKeys, Rule, Scope,
};
use mcp_rbac::{Binding, ListKind, Policy, PolicyBuilder, PolicyHandle, Reason};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorCode, ErrorData, InitializeResult, JsonObject,
    JsonRpcRequest, NumberOrString, ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult,
};
use tokio::net::TcpListener;
use tower::util::Either;
use tower::{Layer, Service, ServiceExt};

use crate::auth::{API_KEY, JWT as AUTH_METHOD};
use crate::config::{
    AuditSinkKind, AuthMode, Config, FairShareSection, LimitAlgorithm, SessionMode,
};
use crate::hardening::{Guard, Hardened};
use crate::pools::AuditStores;
use crate::session::{Ended, SessionLimits, SessionRefusal, SessionStore};
use crate::upstream::{GATEWAY_JWKS_PATH, Registry, UpstreamError};

mod admin;

/// The tenant gateway-wide admin actions are asked about: no token's home tenant, so only
/// rules marked `cross_tenant` (or a role granted in tenant `*`) allow them.
const GLOBAL_TENANT: &str = "*";

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// The lockout is kept per client IP: a failed token names no subject that can be trusted.
const LOCKOUT_SUBJECT: &str = "*";

/// JSON-RPC error code of a rate-limited request (as `mcp_ratelimit::http` answers).
const JSONRPC_RATE_LIMITED: i32 = -32029;

/// The Streamable HTTP session header.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The header naming the negotiated protocol version on requests after `initialize`.
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The audit `method` of a session ended with `DELETE /mcp`.
const SESSION_END: &str = "session/end";

/// What [`Gateway::build`] needs besides the configuration.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Trust the tokens of this local issuer instead of `[auth.oidc]` (the demo).
    pub local_issuer: Option<Arc<LocalIssuer>>,
}

impl BuildOptions {
    /// Options trusting `issuer`.
    pub fn with_local_issuer(issuer: Arc<LocalIssuer>) -> Self {
        Self {
            local_issuer: Some(issuer),
        }
    }
}

/// Everything the request path shares.
struct Core {
    chain: AuthChain,
    extractor: CredentialExtractor,
    challenge: ChallengeConfig,
    lockout: LoginLockout<MemoryStore>,
    limiter: RateLimiter<MemoryStore>,
    /// Weighted tenant fair share, when configured.
    fair_share: Option<FairShare>,
    ip_resolver: ClientIpResolver,
    policy: PolicyHandle,
    required_scope: Option<String>,
    upstreams: Registry,
    audit: AuditLogger,
    metrics: Arc<McpMetrics>,
    max_body: usize,
    jwks: Option<Arc<JwksCache>>,
    /// Stateful mode's sessions; `None` when stateless.
    sessions: Option<SessionStore>,
    /// What the admin API needs besides the request path.
    admin: admin::AdminState,
    /// The SQL stores' connection classes, when a store is SQL.
    pools: Option<PoolSet>,
    /// `auth.mode = "none"`: the principal of every request.
    anonymous: Option<Principal>,
    /// `rbac.allow_all`: MCP requests are not checked by the policy.
    allow_all: bool,
    /// `audit.enabled`.
    audit_on: bool,
    /// `metrics.enabled`.
    metrics_on: bool,
}

/// The axum state: the shared core and the authorize-and-forward service, inside the
/// metrics layer unless metrics are off.
#[derive(Clone)]
struct App {
    core: Arc<Core>,
    forward: Either<MetricsService<Forward>, Forward>,
}

/// The built gateway, ready to serve.
pub struct Gateway {
    router: Hardened<Router>,
    core: Arc<Core>,
    metadata: ProtectedResourceMetadata,
    audit_store: Option<AuditStore>,
    shutdown_timeout: Duration,
    /// `[server.tls]`: connections are TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Writes API keys' last-use times to their store.
    api_key_flusher: Option<LastUsedFlusher>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("resource", &self.metadata.resource())
            .field("upstreams", &self.core.upstreams)
            .finish_non_exhaustive()
    }
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether every in-flight request finished within the grace period.
    pub drained: bool,
    /// Audit events written in total.
    pub audit_events_written: u64,
    /// Audit events still in a spool (their sink was down); replayed at the next start.
    pub audit_spool_pending: u64,
}

impl Gateway {
    /// Builds the gateway described by `config`: the authenticator, policy, limits, audit
    /// sink, metrics and the upstream registry (whose clients connect on first use).
    pub async fn build(config: &Config, options: BuildOptions) -> anyhow::Result<Self> {
        config.validate()?;
        let base = config.server.public_base();
        let resource = format!("{base}{MCP_PATH}");

        let revocation: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
        let BearerAuth {
            authenticator,
            jwks,
            authorization_server,
            proxy,
        } = build_authenticator(
            config,
            &resource,
            options.local_issuer.as_deref(),
            Arc::clone(&revocation),
        )
        .await?;
        let scopes: Vec<String> = match (&proxy, &config.auth.azure) {
            _ if !config.auth.scopes_supported.is_empty() => config.auth.scopes_supported.clone(),
            // The scopes clients may ask the proxy for.
            (Some(_), Some(azure)) => azure
                .proxy
                .as_ref()
                .map(|p| p.scopes.supported.clone())
                .unwrap_or_default(),
            _ => config.auth.required_scope.iter().cloned().collect(),
        };
        let mut metadata = ProtectedResourceMetadata::builder(resource.as_str())
            .authorization_server(authorization_server.clone())
            .scopes_supported(scopes);
        if let Some(name) = &config.server.resource_name {
            metadata = metadata.resource_name(name.as_str());
        }
        let metadata = metadata.build()?;
        let mut challenge = metadata.challenge_config();
        if let Some(scope) = &config.auth.required_scope {
            challenge = challenge.default_scope(scope.as_str());
        }

        let policy = build_policy(config)?;
        let limiter = build_limiter(config)?;
        let lockout = LoginLockout::new(
            MemoryStore::new(),
            LockoutConfig {
                max_failures: NonZeroU32::new(config.auth.lockout.max_failures)
                    .context("auth.lockout.max_failures must be positive")?,
                lockout: Duration::from_secs(config.auth.lockout.lockout_secs),
                failure_window: Duration::from_secs(config.auth.lockout.window_secs),
            },
        );
        let mut ip_resolver = ClientIpResolver::new();
        for net in &config.server.trusted_proxies {
            ip_resolver = ip_resolver.trust(net.parse()?);
        }
        let sql = crate::pools::open(config).await?;
        let (audit, audit_store) = build_audit(config, sql.audit.as_ref())?;
        let mut metrics = McpMetrics::new(&MetricsConfig::default())?;
        let upstreams = Registry::new(
            &config.upstreams,
            &config.identity_assertion,
            &base,
            config.server.request_timeout_secs,
            metrics.registry_mut(),
        )?;
        if let Some(pools) = &sql.pools {
            pools.register(metrics.registry_mut());
        }
        let metrics = Arc::new(metrics);
        let tls = config
            .server
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?;
        let mut chain = AuthChain::new().with_shared(authenticator);
        let api_keys = match &config.auth.api_keys {
            Some(section) => {
                let store = sql
                    .api_keys
                    .clone()
                    .unwrap_or_else(|| Arc::new(MemoryApiKeyStore::new()));
                Some(crate::api_keys::manager_with(section, store)?)
            }
            None => None,
        };
        if let Some(keys) = &api_keys {
            chain = chain.with(ApiKeyAuthenticator::new(keys.clone()));
        }
        let api_key_flusher =
            config
                .auth
                .api_keys
                .as_ref()
                .zip(api_keys.as_ref())
                .map(|(section, keys)| {
                    keys.spawn_last_used_flusher(Duration::from_secs(section.last_used_flush_secs))
                });
        let anonymous = (config.auth.mode == AuthMode::None).then(|| {
            tracing::warn!(
                listen = %config.server.listen,
                "AUTHENTICATION IS OFF (auth.mode = \"none\"): every request is served as `{}`; for load tests only",
                crate::auth::ANONYMOUS
            );
            crate::auth::anonymous()
        });
        if config.rbac.allow_all {
            tracing::warn!(
                "rbac.allow_all: MCP requests are not checked by the policy and lists are not filtered"
            );
        }

        let core = Arc::new(Core {
            chain,
            extractor: crate::api_keys::extractor(config.auth.api_keys.as_ref())?,
            challenge,
            lockout,
            limiter,
            fair_share: config
                .rate_limit
                .fair_share
                .as_ref()
                .map(build_fair_share)
                .transpose()?,
            ip_resolver,
            policy: PolicyHandle::new(policy),
            required_scope: config.auth.required_scope.clone(),
            upstreams,
            audit,
            metrics: Arc::clone(&metrics),
            max_body: config.server.max_body_bytes,
            jwks,
            admin: admin::AdminState::new(
                config,
                revocation,
                sql.audit.clone(),
                authorization_server.clone(),
                api_keys,
            ),
            pools: sql.pools,
            anonymous,
            allow_all: config.rbac.allow_all,
            audit_on: config.audit.enabled,
            metrics_on: config.metrics.enabled,
            sessions: (config.sessions.mode == SessionMode::Stateful).then(|| {
                SessionStore::new(SessionLimits {
                    max_sessions: config.sessions.max_sessions,
                    max_per_principal: config.sessions.max_per_principal,
                    idle_timeout: Duration::from_secs(config.sessions.idle_timeout_secs),
                })
            }),
        });
        let forward = Forward {
            core: Arc::clone(&core),
        };
        let forward = if config.metrics.enabled {
            Either::Left(MetricsLayer::new(metrics).layer(forward))
        } else {
            Either::Right(forward)
        };
        let app = App {
            core: Arc::clone(&core),
            forward,
        };
        let guard = Arc::new(Guard::new(&config.server)?);
        let hsts = config.server.public_base().starts_with("https://") || tls.is_some();
        let mut router = Router::new()
            .route(MCP_PATH, post(mcp_post).get(mcp_get).delete(mcp_delete))
            .merge(admin::router())
            .merge(metadata.router());
        if let Some(proxy) = &proxy {
            // RFC 8414 metadata, /register, /authorize, /consent, /callback, /token,
            // /revoke and the proxy's keys, below its issuer's path.
            router = router.merge(proxy.router().with_state::<App>(()));
        }
        let router = router
            .route("/health", get(health))
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics_endpoint))
            .route(GATEWAY_JWKS_PATH, get(gateway_jwks))
            .with_state(app);
        // The MCP, metadata and admin endpoints sit behind the guard (HTTPS, Host, Origin,
        // CORS, time limit); probes and scrapes reach health and metrics by any address.
        let open: Arc<[&'static str]> =
            Arc::new(["/health", "/health/ready", "/metrics", GATEWAY_JWKS_PATH]);
        let router = Hardened::new(router, guard, open, hsts);
        Ok(Self {
            router,
            core,
            metadata,
            audit_store,
            shutdown_timeout: config.server.shutdown_timeout(),
            tls,
            api_key_flusher,
        })
    }

    /// The gateway's HTTP service: its axum router behind the hardening (serve it with
    /// `ConnectInfo<SocketAddr>`, as [`Gateway::serve`] does).
    pub fn router(&self) -> Hardened<Router> {
        self.router.clone()
    }

    /// The RFC 9728 metadata the gateway serves.
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.metadata
    }

    /// The audit logger.
    pub fn audit(&self) -> &AuditLogger {
        &self.core.audit
    }

    /// The SQL audit store, when the sink is SQLite or PostgreSQL.
    pub fn audit_store(&self) -> Option<&AuditStore> {
        self.audit_store.as_ref()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<McpMetrics> {
        &self.core.metrics
    }

    /// Whether connections are TLS (`[server.tls]`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves on `listener` (over TLS when `[server.tls]` is configured) until `shutdown`
    /// completes; then stops accepting, lets in-flight requests finish within the configured
    /// grace period, flushes the audit trail and the API keys' last-use times, and closes the
    /// upstream connection.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<ShutdownReport> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = started_tx.send(());
        };
        let service = axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info::<
            SocketAddr,
        >(self.router.clone());
        let drained = match self.tls.clone() {
            None => {
                let server = axum::serve(listener, service).with_graceful_shutdown(signal);
                drain(server, started_rx, self.shutdown_timeout).await?
            }
            Some(acceptor) => {
                use axum::serve::ListenerExt as _;
                let listener = crate::tls::TlsListener::new(listener, acceptor)?.tap_io(|_| {});
                let server = axum::serve(listener, service).with_graceful_shutdown(signal);
                drain(server, started_rx, self.shutdown_timeout).await?
            }
        };
        if let Some(flusher) = self.api_key_flusher.take()
            && let Err(error) = flusher.shutdown().await
        {
            tracing::warn!(%error, "API keys' last-use times not written");
        }
        if self.core.audit_on {
            self.core.audit.try_record(
                AuditEvent::new(Category::System)
                    .severity(Severity::Notice)
                    .method("shutdown")
                    .outcome(OutcomeStatus::Success, None, None),
            )?;
        }
        let report = self.core.audit.shutdown().await?;
        self.core.upstreams.close().await;
        if let Some(pools) = &self.core.pools {
            pools.close().await;
        }
        let stats = self.core.audit.stats();
        Ok(ShutdownReport {
            drained,
            audit_events_written: stats.events_written,
            audit_spool_pending: report.spool_pending,
        })
    }
}

/// Runs `server` to its end; once `started` fires (shutdown began), in-flight requests get
/// `grace`. Whether they all finished.
async fn drain(
    server: impl IntoFuture<Output = std::io::Result<()>>,
    started: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) -> anyhow::Result<bool> {
    let mut server = std::pin::pin!(server.into_future());
    Ok(tokio::select! {
        result = &mut server => {
            result.context("server failed")?;
            true
        }
        _ = started => {
            // Shutdown began: in-flight requests get the grace period.
            match tokio::time::timeout(grace, &mut server).await {
                Ok(result) => {
                    result.context("server failed")?;
                    true
                }
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish within the grace period");
                    false
                }
            }
        }
    })
}

/// The bearer-token side of authentication that `[auth]` describes.
pub(crate) struct BearerAuth {
    /// Verifies bearer tokens.
    pub(crate) authenticator: Arc<dyn Authenticator>,
    /// The identity provider's key set, when fetched (OIDC, Entra).
    pub(crate) jwks: Option<Arc<JwksCache>>,
    /// The authorization server named in the protected-resource metadata.
    pub(crate) authorization_server: String,
    /// `[auth.azure.proxy]`: the OAuth proxy to mount.
    pub(crate) proxy: Option<OAuthProxy>,
}

/// The bearer-token verifier of `[auth.oidc]`, `[auth.local_issuer]` (or `local`, the
/// demo's) or `[auth.azure]`, checking `revocation`.
pub(crate) async fn build_authenticator(
    config: &Config,
    resource: &str,
    local: Option<&LocalIssuer>,
    revocation: Arc<dyn RevocationStore>,
) -> anyhow::Result<BearerAuth> {
    if let (None, Some(azure)) = (local, &config.auth.azure) {
        return crate::azure::build(azure, &config.auth, revocation).await;
    }
    let mapping = ClaimMapping::new()
        .subject_claims(config.auth.claims.subject.iter().map(String::as_str))
        .tenant_claims(config.auth.claims.tenant.iter().map(String::as_str))
        .role_claims(config.auth.claims.roles.iter().map(String::as_str))
        .scope_claims(config.auth.claims.scope.iter().map(String::as_str));
    let audiences = if config.auth.audiences.is_empty() {
        vec![resource.to_owned()]
    } else {
        config.auth.audiences.clone()
    };
    let configured = match local {
        Some(_) => None,
        None => crate::auth::local_issuer(config, resource)?,
    };
    let (validator, keys, jwks, issuer): (_, Arc<dyn KeyResolver>, _, _) = match (
        local.or(configured.as_ref()),
        &config.auth.oidc,
    ) {
        (Some(local), _) => {
            let validator = JwtValidator::builder()
                .issuer(local.issuer())
                .audience(local.audience())
                .algorithms([local.algorithm()])
                .build()?;
            let keys = Arc::new(KeySet::from_jwk_set(&local.jwks(), 8));
            (validator, keys, None, local.issuer().to_owned())
        }
        (None, Some(oidc)) => {
            let algorithms = oidc
                .algorithms
                .iter()
                .map(|a| a.parse::<Algorithm>())
                .collect::<Result<Vec<_>, _>>()?;
            let validator = JwtValidator::builder()
                .issuer(oidc.issuer.as_str())
                .audiences(audiences)
                .algorithms(algorithms)
                .leeway(Duration::from_secs(oidc.leeway_secs))
                .build()?;
            let cache = Arc::new(match &oidc.jwks_url {
                Some(url) => JwksCache::from_url(url.as_str())?,
                None => JwksCache::discover(oidc.issuer.as_str())?,
            });
            // Load the keys now so that the first request does not wait for them; a failure
            // is not fatal (the issuer may come up later) but /health/ready reports it.
            if let Err(error) = cache.refresh().await {
                tracing::warn!(issuer = %oidc.issuer, %error, "could not load the issuer's keys yet");
            }
            let keys: Arc<dyn KeyResolver> = cache.clone();
            (validator, keys, Some(cache), oidc.issuer.clone())
        }
        (None, None) => anyhow::bail!(
            "auth.oidc, auth.local_issuer or auth.azure: configure the issuer whose tokens are accepted"
        ),
    };
    let authenticator = JwtAuthenticator::builder(validator, keys)
        .claim_mapping(mapping)
        .revocation(revocation)
        .token_cache_capacity(config.auth.token_cache_capacity)
        .token_cache_max_ttl(Duration::from_secs(config.auth.token_cache_max_ttl_secs))
        .build();
    Ok(BearerAuth {
        authenticator: Arc::new(authenticator),
        jwks,
        authorization_server: issuer,
        proxy: None,
    })
}

/// The policy: predefined roles, inline policy, policy file, tenant-bound arguments.
pub fn build_policy(config: &Config) -> anyhow::Result<Policy> {
    let rbac = &config.rbac;
    let mut builder = PolicyBuilder::new();
    if rbac.default_roles {
        builder = builder.extend_toml(mcp_rbac::DEFAULT_POLICY_TOML, "default roles")?;
    }
    if let Some(inline) = &rbac.policy {
        builder = builder.extend_toml(inline, "[rbac] policy")?;
    }
    if let Some(path) = &rbac.policy_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("rbac.policy_file: cannot read {}", path.display()))?;
        builder = builder.extend_toml(&text, &path.display().to_string())?;
    }
    for bound in &rbac.tenant_bound_arguments {
        builder = builder.binding(
            Binding::new("tools/call")
                .resource(bound.tool.as_str())
                .arg(bound.argument.as_str(), "$tenant")
                .describe(format!(
                    "argument `{}` of `{}` is the caller's tenant",
                    bound.argument, bound.tool
                )),
        );
    }
    Ok(builder.build()?)
}

/// The fair-share limiter of `[rate_limit.fair_share]`.
pub(crate) fn build_fair_share(section: &FairShareSection) -> anyhow::Result<FairShare> {
    let limit = NonZeroU32::new(section.limit).context("limit must be positive")?;
    anyhow::ensure!(section.window_secs > 0, "window_secs must be positive");
    let mut config = FairShareConfig::new(limit, Duration::from_secs(section.window_secs))
        .burst_factor(section.burst_factor);
    for (tenant, weight) in &section.weights {
        let weight = NonZeroU32::new(*weight)
            .with_context(|| format!("weight of `{tenant}` must be positive"))?;
        config = config.weight(tenant.as_str(), weight);
    }
    Ok(FairShare::new(config)?)
}

fn build_limiter(config: &Config) -> anyhow::Result<RateLimiter<MemoryStore>> {
    let rl = &config.rate_limit;
    let algorithm = match rl.algorithm {
        LimitAlgorithm::Gcra => mcp_ratelimit::Algorithm::Gcra,
        LimitAlgorithm::SlidingWindow => mcp_ratelimit::Algorithm::SlidingWindow,
    };
    let mut builder = RateLimiter::builder();
    let rules = [
        ("global", Scope::Global, &rl.global),
        ("tenant", Scope::Tenant, &rl.per_tenant),
        ("user", Scope::User, &rl.per_user),
        ("ip", Scope::ClientIp, &rl.per_ip),
        ("tool", Scope::Tool, &rl.per_tool),
    ];
    for (name, scope, quota) in rules {
        if let Some(quota) = quota {
            builder = builder.rule(Rule::new(name, scope, quota.parse()?, algorithm)?);
        }
    }
    for (tool, cost) in &rl.tool_costs {
        let cost = NonZeroU32::new(*cost).context("rate_limit.tool_costs must be positive")?;
        builder = builder.tool_cost(tool.as_str(), cost);
    }
    Ok(builder.build(MemoryStore::new())?)
}

/// The audit logger of `[audit]`; a SQL sink writes through the `write` class's store.
fn build_audit(
    config: &Config,
    stores: Option<&AuditStores>,
) -> anyhow::Result<(AuditLogger, Option<AuditStore>)> {
    let audit = &config.audit;
    let builder =
        AuditLogger::builder(audit.spool_dir.clone()).queue_capacity(audit.queue_capacity);
    let (builder, store) = match audit.sink {
        // Audit off: the logger exists for the shutdown path only; nothing is recorded.
        _ if !audit.enabled => (builder.sink(mcp_audit::TracingSink::new()), None),
        AuditSinkKind::Tracing => (builder.sink(mcp_audit::TracingSink::new()), None),
        AuditSinkKind::Jsonl => {
            let dir = audit.path.clone().context("audit.path is required")?;
            let sink = mcp_audit::JsonlSink::new(mcp_audit::JsonlSinkConfig::new(dir))?;
            (builder.sink(sink), None)
        }
        AuditSinkKind::Sqlite | AuditSinkKind::Postgres => {
            let store = stores
                .map(|s| s.write.clone())
                .context("the audit sink is not queryable")?;
            (builder.sink(store.clone()), Some(store))
        }
    };
    Ok((builder.build()?, store))
}

/// One authenticated, parsed, rate-checked request on its way to authorization.
#[derive(Clone)]
struct Call {
    principal: Principal,
    request: Box<JsonRpcRequest<ClientRequest>>,
    client_ip: IpAddr,
    user_agent: Option<String>,
    start: Instant,
    format: Format,
}

/// Authorize -> forward -> audit, run inside the metrics layer.
#[derive(Clone)]
struct Forward {
    core: Arc<Core>,
}

impl<B> Service<Request<B>> for Forward {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let core = Arc::clone(&self.core);
        let call = request.extensions_mut().remove::<Call>();
        Box::pin(async move {
            Ok(match call {
                Some(call) => core.dispatch(call).await,
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            })
        })
    }
}

/// What RBAC is asked about a request.
struct Target<'a> {
    action: &'a str,
    resource: &'a str,
    arguments: Option<&'a JsonObject>,
    kind: Option<mcp_audit::TargetKind>,
}

impl<'a> Target<'a> {
    fn of(request: &'a ClientRequest) -> Self {
        let plain = |action| Self {
            action,
            resource: "",
            arguments: None,
            kind: None,
        };
        match request {
            ClientRequest::CallToolRequest(r) => Self {
                action: "tools/call",
                resource: r.params.name.as_ref(),
                arguments: r.params.arguments.as_ref(),
                kind: Some(mcp_audit::TargetKind::Tool),
            },
            ClientRequest::GetPromptRequest(r) => Self {
                action: "prompts/get",
                resource: r.params.name.as_str(),
                arguments: r.params.arguments.as_ref(),
                kind: Some(mcp_audit::TargetKind::Prompt),
            },
            ClientRequest::ReadResourceRequest(r) => Self {
                action: "resources/read",
                resource: r.params.uri.as_str(),
                arguments: None,
                kind: Some(mcp_audit::TargetKind::Resource),
            },
            ClientRequest::SubscribeRequest(r) => Self {
                resource: r.params.uri.as_str(),
                kind: Some(mcp_audit::TargetKind::Resource),
                ..plain("resources/subscribe")
            },
            ClientRequest::UnsubscribeRequest(r) => Self {
                resource: r.params.uri.as_str(),
                kind: Some(mcp_audit::TargetKind::Resource),
                ..plain("resources/unsubscribe")
            },
            other => plain(other.method()),
        }
    }
}

/// A request id as the audit trail records it: what its `Display` writes, a number through
/// itoa (the formatting machinery wrote it into a buffer grown from empty).
fn request_id_text(id: &RequestId) -> String {
    match id {
        NumberOrString::Number(n) => itoa::Buffer::new().format(*n).to_owned(),
        NumberOrString::String(s) => s.to_string(),
    }
}

impl Core {
    fn audit(&self, event: AuditEvent) {
        if !self.audit_on {
            return;
        }
        // Never waits: a full queue spills to disk; only a closed logger refuses.
        if let Err(error) = self.audit.try_record(event) {
            tracing::warn!(%error, "audit event not recorded");
        }
    }

    fn event(&self, category: Category, call: &Call) -> AuditEvent {
        let p = &call.principal;
        let mut event = AuditEvent::new(category)
            .subject(p.subject())
            .auth_method(crate::auth::method_name(p))
            .method(call.request.request.method())
            .request_id(request_id_text(&call.request.id))
            .client_ip(call.client_ip);
        if let Some(tenant) = p.tenant() {
            event = event.tenant(tenant);
        }
        if let mcp_auth_core::AuthMethod::ApiKey { key_id } = p.method() {
            event = event.api_key_id(key_id.as_str());
        }
        if let Some(ua) = &call.user_agent {
            event = event.user_agent(ua.as_str());
        }
        event
    }

    async fn dispatch(&self, call: Call) -> Response {
        let id = call.request.id.clone();
        match &call.request.request {
            ClientRequest::InitializeRequest(init) => {
                let requested = init.params.protocol_version.clone();
                let mut session = None;
                // Boxed: connecting to upstreams would make every request's future larger.
                let response = match Box::pin(self.upstreams.server_info()).await {
                    Ok(info) => {
                        let version = negotiate(&requested);
                        let mut result = InitializeResult::new(info.capabilities.clone())
                            .with_protocol_version(version);
                        if let Some(server) = &info.server_info {
                            result = result.with_server_info(server.clone());
                        }
                        if let Some(text) = &info.instructions {
                            result = result.with_instructions(text.clone());
                        }
                        match &self.sessions {
                            None => rpc_result(
                                call.format,
                                &id,
                                &ServerResult::InitializeResult(result),
                            ),
                            Some(sessions) => {
                                match sessions.create(&call.principal, Instant::now()) {
                                    Ok((session_id, ended)) => {
                                        self.record_ended(ended);
                                        self.metrics.session_started(call.principal.tenant());
                                        let mut response = rpc_result(
                                            call.format,
                                            &id,
                                            &ServerResult::InitializeResult(result),
                                        );
                                        if let Ok(value) = HeaderValue::from_str(&session_id) {
                                            response.headers_mut().insert(MCP_SESSION_ID, value);
                                        }
                                        session = Some(session_id);
                                        response
                                    }
                                    Err(full) => {
                                        tracing::warn!(error = %full, "initialize refused");
                                        let mut response = json_rpc_error(
                                            StatusCode::SERVICE_UNAVAILABLE,
                                            Some(id),
                                            ErrorData::new(
                                                ErrorCode::INTERNAL_ERROR,
                                                "too many sessions",
                                                None,
                                            ),
                                        );
                                        let retry = sessions.idle_timeout().as_secs().clamp(1, 60);
                                        response
                                            .headers_mut()
                                            .insert(RETRY_AFTER, HeaderValue::from(retry));
                                        response
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => upstream_failure(id, &error),
                };
                let mut event = self
                    .event(Category::Authentication, &call)
                    .decision(
                        mcp_audit::Decision::Allow,
                        "authenticated; session initialized",
                    )
                    .outcome(
                        outcome_of(response.status()),
                        Some(i64::from(response.status().as_u16())),
                        Some(call.start.elapsed()),
                    );
                if let Some(session) = session {
                    event = event.session_id(session);
                }
                self.audit(event);
                return response;
            }
            ClientRequest::PingRequest(_) => {
                return rpc_result(call.format, &id, &ServerResult::empty(()));
            }
            _ => {}
        }

        let policy = self.policy.load();
        let target = Target::of(&call.request.request);
        let principal = &call.principal;
        let mut rbac = mcp_rbac::Request::new(target.action, target.resource);
        if let Some(arguments) = target.arguments {
            rbac = rbac.arguments(arguments);
        }
        let missing_required = self
            .required_scope
            .as_deref()
            .filter(|scope| self.anonymous.is_none() && !principal.has_scope(scope));
        let decision = (!self.allow_all).then(|| policy.decide(principal, &rbac));
        let mut event = self.event(
            if target.kind == Some(mcp_audit::TargetKind::Tool) {
                Category::ToolCall
            } else {
                Category::Authorization
            },
            &call,
        );
        if let Some(kind) = target.kind {
            event = event.target(kind, target.resource);
        }
        if let Some(scope) = missing_required {
            let reason = format!("required scope `{scope}` is missing");
            return self.forbid(event, &reason, scope, &call);
        }
        if let Some(decision) = decision.filter(|d| !d.is_allowed()) {
            let scope = decision
                .missing_scope()
                .or(self.required_scope.as_deref())
                .unwrap_or("");
            let category_violation = matches!(
                decision.reason(),
                Reason::CrossTenant { .. } | Reason::ArgumentViolation { .. }
            );
            let mut event = event;
            if category_violation {
                event.category = Category::SecurityViolation;
                event.severity = Severity::Warning;
            }
            return self.forbid(event, &decision.to_string(), scope, &call);
        }
        let event = match decision {
            // The reason names rule and role: only worth formatting when it is recorded.
            Some(decision) if self.audit_on => {
                event.decision(mcp_audit::Decision::Allow, decision.to_string())
            }
            Some(_) => event,
            None => event.decision(mcp_audit::Decision::Allow, "rbac.allow_all"),
        };

        let Call {
            principal,
            request,
            start,
            format,
            ..
        } = call;
        let JsonRpcRequest { id, request, .. } = *request;
        let list = matches!(
            &request,
            ClientRequest::ListToolsRequest(_)
                | ClientRequest::ListResourcesRequest(_)
                | ClientRequest::ListPromptsRequest(_)
        );
        let (response, status, code) = match self
            .upstreams
            .forward(&id, Box::new(request), &principal)
            .await
        {
            Ok(mut result) => {
                if list && !self.allow_all {
                    filter_list(&policy, &principal, &mut result);
                }
                let failed =
                    matches!(&*result, ServerResult::CallToolResult(r) if r.is_error == Some(true));
                let status = if failed {
                    OutcomeStatus::Failure
                } else {
                    OutcomeStatus::Success
                };
                (rpc_result(format, &id, &result), status, None)
            }
            Err(UpstreamError::Rpc(error)) => {
                let code = i64::from(error.code.0);
                (
                    rpc_message(
                        format,
                        &ServerJsonRpcMessage::Error(rmcp::model::JsonRpcError::new(
                            Some(id),
                            error,
                        )),
                    ),
                    OutcomeStatus::Failure,
                    Some(code),
                )
            }
            Err(error) => (upstream_failure(id, &error), OutcomeStatus::Error, None),
        };
        let code = code.or(Some(i64::from(response.status().as_u16())));
        self.audit(event.outcome(status, code, Some(start.elapsed())));
        response
    }

    /// The lockout check and the authenticator chain: the caller's principal, or the
    /// response refusing it (429 while locked out, 401 with the challenge).
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
        ip: IpAddr,
        user_agent: Option<&str>,
        start: Instant,
    ) -> Result<Principal, Response> {
        if let Some(anonymous) = &self.anonymous {
            return Ok(anonymous.clone());
        }
        // A locked-out client is refused before its credentials are even looked at.
        if let Ok(LockoutStatus::Locked { retry_after }) =
            self.lockout.check(ip, LOCKOUT_SUBJECT).await
        {
            self.metrics
                .record_auth_rate_limited(AuthLimitReason::Lockout);
            let mut event = AuditEvent::new(Category::RateLimit)
                .client_ip(ip)
                .decision(mcp_audit::Decision::Deny, "authentication lockout")
                .outcome(OutcomeStatus::Failure, Some(429), Some(start.elapsed()));
            event.severity = Severity::Warning;
            self.audit(event);
            let response = too_many_requests(retry_after, None, None);
            self.observe(None, None, None, response.status(), start);
            return Err(response);
        }
        let failed = |error, method| self.auth_failed(error, method, ip, user_agent, start);
        let credential = match self.extractor.extract(parts) {
            Ok(Some(credential)) => credential,
            Ok(None) => return Err(failed(AuthError::Missing, AUTH_METHOD).await),
            Err(error) => return Err(failed(error, AUTH_METHOD).await),
        };
        let method = match credential.kind() {
            CredentialKind::ApiKey => API_KEY,
            _ => AUTH_METHOD,
        };
        match self.chain.authenticate(&credential).await {
            Ok(principal) => Ok(principal),
            Err(error) => Err(failed(error, method).await),
        }
    }

    /// Stateful mode: the request's session must exist and belong to `principal`; the
    /// refusal otherwise.
    fn check_session(
        &self,
        sessions: &SessionStore,
        headers: &http::HeaderMap,
        principal: &Principal,
        ip: IpAddr,
        method: Option<&str>,
        start: Instant,
    ) -> Option<Response> {
        let Some(id) = session_header(headers) else {
            return Some(missing_session(self, principal, start));
        };
        let (refusal, ended) = sessions.touch(id, principal, Instant::now()).err()?;
        self.record_ended(ended);
        let response = self.session_refused(refusal, id, principal, ip, method, start);
        self.observe(method, None, principal.tenant(), response.status(), start);
        Some(response)
    }

    /// 404 for an unknown session; the same 404 for another principal's session (so that
    /// a guessed id learns nothing), audited as a security violation.
    fn session_refused(
        &self,
        refusal: SessionRefusal,
        id: &str,
        principal: &Principal,
        ip: IpAddr,
        method: Option<&str>,
        start: Instant,
    ) -> Response {
        if let SessionRefusal::Foreign {
            owner,
            owner_tenant,
        } = refusal
        {
            let reason = format!(
                "session of `{owner}` (tenant `{}`) presented by another principal",
                owner_tenant.as_deref().unwrap_or("-")
            );
            let mut event = AuditEvent::new(Category::SecurityViolation)
                .severity(Severity::Warning)
                .subject(principal.subject())
                .auth_method(crate::auth::method_name(principal))
                .session_id(id)
                .client_ip(ip)
                .decision(mcp_audit::Decision::Deny, reason)
                .outcome(OutcomeStatus::Failure, Some(404), Some(start.elapsed()));
            if let Some(tenant) = principal.tenant() {
                event = event.tenant(tenant);
            }
            if let Some(method) = method {
                event = event.method(method);
            }
            self.audit(event);
        }
        json_rpc_error(
            StatusCode::NOT_FOUND,
            None,
            ErrorData::invalid_request("session not found", None),
        )
    }

    fn record_ended(&self, ended: impl IntoIterator<Item = Ended>) {
        for ended in ended {
            self.metrics
                .session_ended(ended.tenant.as_deref(), ended.lifetime);
        }
    }

    fn forbid(&self, event: AuditEvent, reason: &str, scope: &str, call: &Call) -> Response {
        self.metrics.record_auth(
            call.principal.tenant(),
            crate::auth::method_name(&call.principal),
            AuthOutcome::InsufficientScope,
        );
        self.audit(event.decision(mcp_audit::Decision::Deny, reason).outcome(
            OutcomeStatus::Failure,
            Some(403),
            Some(call.start.elapsed()),
        ));
        let error = AuthError::InsufficientScope {
            scope: scope.to_owned(),
        };
        auth_response(AuthRejection::new(error, self.challenge.clone()))
    }

    /// Answers a failed authentication: lockout, metrics, audit, 401 with the challenge.
    async fn auth_failed(
        &self,
        error: AuthError,
        method: &'static str,
        ip: IpAddr,
        user_agent: Option<&str>,
        start: Instant,
    ) -> Response {
        if error.is_credential_failure()
            && let Err(store) = self.lockout.record_failure(ip, LOCKOUT_SUBJECT).await
        {
            tracing::warn!(error = %store, "lockout store failed");
        }
        let outcome = match &error {
            AuthError::Missing => AuthOutcome::MissingCredentials,
            AuthError::InvalidToken(TokenRejection::Expired) => AuthOutcome::Expired,
            AuthError::Revoked => AuthOutcome::Revoked,
            AuthError::Unavailable { .. } => AuthOutcome::Error,
            _ => AuthOutcome::InvalidCredentials,
        };
        self.metrics.record_auth(None, method, outcome);
        if error.is_credential_failure() {
            self.admin.auth_failures.record(Instant::now());
        }
        let mut event = AuditEvent::new(Category::Authentication)
            .client_ip(ip)
            .auth_method(method)
            .decision(mcp_audit::Decision::Deny, error.to_string())
            .outcome(
                OutcomeStatus::Failure,
                Some(i64::from(error.status().as_u16())),
                Some(start.elapsed()),
            );
        if error.is_credential_failure() {
            event.severity = Severity::Warning;
        }
        if let Some(ua) = user_agent {
            event = event.user_agent(ua);
        }
        self.audit(event);
        let response = auth_response(AuthRejection::new(error, self.challenge.clone()));
        self.observe(None, None, None, response.status(), start);
        response
    }

    /// A JSON-RPC error answering a request refused before it was forwarded, measured.
    fn refuse(
        &self,
        status: StatusCode,
        id: Option<RequestId>,
        error: ErrorData,
        principal: &Principal,
        start: Instant,
    ) -> Response {
        let response = json_rpc_error(status, id, error);
        self.observe(None, None, principal.tenant(), response.status(), start);
        response
    }

    fn observe(
        &self,
        method: Option<&str>,
        tool: Option<&str>,
        tenant: Option<&str>,
        status: StatusCode,
        start: Instant,
    ) {
        if !self.metrics_on {
            return;
        }
        self.metrics.observe(&RequestRecord {
            method,
            tool,
            tenant,
            status: status.as_u16(),
            duration: start.elapsed(),
        });
    }
}

/// The protocol version answered to `initialize`: the client's when this SDK knows it and it
/// still has the handshake, else the newest one that does.
fn negotiate(requested: &ProtocolVersion) -> ProtocolVersion {
    if requested.has_initialize() && ProtocolVersion::KNOWN_VERSIONS.contains(requested) {
        requested.clone()
    } else {
        ProtocolVersion::LATEST_WITH_INITIALIZE
    }
}

/// Drops from a list result the entries `principal` may not see.
fn filter_list(policy: &Policy, principal: &Principal, result: &mut ServerResult) {
    fn keep<T>(
        policy: &Policy,
        principal: &Principal,
        kind: ListKind,
        items: &mut Vec<T>,
        name: impl Fn(&T) -> &str,
    ) {
        *items = policy.filter(principal, kind, None, take(items), name);
    }
    match result {
        ServerResult::ListToolsResult(r) => {
            keep(policy, principal, ListKind::Tools, &mut r.tools, |t| {
                t.name.as_ref()
            });
        }
        ServerResult::ListResourcesResult(r) => {
            keep(
                policy,
                principal,
                ListKind::Resources,
                &mut r.resources,
                |x| x.uri.as_str(),
            );
        }
        ServerResult::ListPromptsResult(r) => {
            keep(policy, principal, ListKind::Prompts, &mut r.prompts, |p| {
                p.name.as_str()
            });
        }
        _ => {}
    }
}

fn outcome_of(status: StatusCode) -> OutcomeStatus {
    if status.is_success() {
        OutcomeStatus::Success
    } else if status.is_server_error() {
        OutcomeStatus::Error
    } else {
        OutcomeStatus::Failure
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    // Room for the headers every answer gets on its way out (session, CORS, the hardening's
    // security headers), so the map is allocated once instead of grown.
    let headers = response.headers_mut();
    *headers = http::HeaderMap::with_capacity(12);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `200` carrying `result` in `format`.
fn rpc_result(format: Format, id: &RequestId, result: &ServerResult) -> Response {
    rpc_message(format, &crate::rpc::Reply::new(id, result))
}

/// A `200` carrying `message`: a JSON body, or one SSE `message` event.
fn rpc_message(format: Format, message: &impl serde::Serialize) -> Response {
    let mut body = Vec::with_capacity(256);
    if format == Format::Sse {
        body.extend_from_slice(b"event: message\ndata: ");
    }
    if let Err(error) = serde_json::to_writer(&mut body, message) {
        tracing::error!(%error, "cannot serialize an upstream result");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    match format {
        Format::Json => json_response(StatusCode::OK, body),
        Format::Sse => {
            body.extend_from_slice(b"\n\n");
            let mut response = Response::new(Body::from(body));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            response
        }
    }
}

fn json_rpc_error(status: StatusCode, id: Option<RequestId>, error: ErrorData) -> Response {
    let message = ServerJsonRpcMessage::Error(rmcp::model::JsonRpcError::new(id, error));
    match serde_json::to_vec(&message) {
        Ok(body) => json_response(status, body),
        Err(_) => status.into_response(),
    }
}

fn upstream_failure(id: RequestId, error: &UpstreamError) -> Response {
    tracing::warn!(%error, "upstream call failed");
    let (status, message) = match error {
        UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
        UpstreamError::CircuitOpen { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream unavailable (circuit open)",
        ),
        _ => (StatusCode::BAD_GATEWAY, "upstream unavailable"),
    };
    let mut response = json_rpc_error(
        status,
        Some(id),
        ErrorData::new(ErrorCode::INTERNAL_ERROR, message, None),
    );
    if let UpstreamError::CircuitOpen { retry_after, .. } = error {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

fn auth_response(rejection: AuthRejection) -> Response {
    rejection.into_http_response().map(Body::from)
}

fn too_many_requests(
    retry_after: Duration,
    id: Option<RequestId>,
    extra: Option<(String, String)>,
) -> Response {
    let error = ErrorData::new(ErrorCode(JSONRPC_RATE_LIMITED), "rate limit exceeded", None);
    let mut response = json_rpc_error(StatusCode::TOO_MANY_REQUESTS, id, error);
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    if let Some((policy, state)) = extra {
        if let Ok(v) = HeaderValue::from_str(&policy) {
            headers.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&state) {
            headers.insert("ratelimit", v);
        }
    }
    response
}

fn limit_scope(rule: &str) -> RateLimitScope {
    match rule {
        "tenant" => RateLimitScope::Tenant,
        "user" => RateLimitScope::User,
        "ip" => RateLimitScope::Ip,
        "tool" => RateLimitScope::Tool,
        _ => RateLimitScope::Global,
    }
}

/// How a request's result is sent back: JSON, or one SSE event when the client accepts only
/// `text/event-stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
}

impl Format {
    /// The format the `Accept` header asks for: JSON when it allows JSON (or is absent), SSE
    /// when it allows only the event stream, `None` when it allows neither (406).
    fn negotiate(headers: &http::HeaderMap) -> Option<Self> {
        let mut any = false;
        let mut sse = false;
        for value in headers.get_all(ACCEPT) {
            any = true;
            let Ok(value) = value.to_str() else { continue };
            for range in value.split(',') {
                let media = range.split(';').next().unwrap_or("").trim();
                if media.eq_ignore_ascii_case("application/json")
                    || media.eq_ignore_ascii_case("application/*")
                    || media == "*/*"
                {
                    return Some(Self::Json);
                }
                sse |= media.eq_ignore_ascii_case("text/event-stream")
                    || media.eq_ignore_ascii_case("text/*");
            }
        }
        match (any, sse) {
            (false, _) => Some(Self::Json),
            (true, true) => Some(Self::Sse),
            (true, false) => None,
        }
    }
}

/// `POST /mcp`: the request path up to the metrics layer.
async fn mcp_post(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let start = Instant::now();
    let core = &app.core;
    let (parts, body) = request.into_parts();
    let ip = core.ip_resolver.resolve(peer.ip(), &parts.headers);
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let principal = match core
        .authenticate(&parts, ip, user_agent.as_deref(), start)
        .await
    {
        Ok(principal) => principal,
        Err(response) => return response,
    };

    if let Some(version) = parts.headers.get(MCP_PROTOCOL_VERSION)
        && !is_known_protocol_version(version)
    {
        let error = ErrorData::invalid_request("unsupported MCP-Protocol-Version", None);
        return core.refuse(StatusCode::BAD_REQUEST, None, error, &principal, start);
    }

    let bytes = match axum::body::to_bytes(body, core.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let error = ErrorData::invalid_request("request body too large", None);
            return core.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                error,
                &principal,
                start,
            );
        }
    };
    // The one parse of the request.
    let parsed = crate::rpc::parse(&bytes);
    let parsed_request = match &parsed {
        Ok(ClientJsonRpcMessage::Request(r)) => Some(r),
        _ => None,
    };

    // Stateful mode: everything but `initialize` belongs to a session of this principal.
    let initializing = matches!(
        parsed_request.map(|r| &r.request),
        Some(ClientRequest::InitializeRequest(_))
    );
    if parsed.is_ok()
        && !initializing
        && let Some(sessions) = &core.sessions
        && let Some(response) = core.check_session(
            sessions,
            &parts.headers,
            &principal,
            ip,
            parsed_request.map(|r| r.request.method()),
            start,
        )
    {
        return response;
    }

    let keys = RequestKeys {
        tenant: principal.tenant().map(str::to_owned),
        user: Some(principal.subject().to_owned()),
        client_ip: Some(ip),
        tool: parsed_request.and_then(|r| match &r.request {
            ClientRequest::CallToolRequest(c) => Some(String::from(c.params.name.as_ref())),
            _ => None,
        }),
        ..RequestKeys::default()
    };
    let decision = core.limiter.check(&keys).await;
    let tool = keys.tool.as_deref();
    if !decision.is_allowed() {
        let method = parsed_request.map(|r| r.request.method());
        let rule = decision.policy().map_or("global", |p| &*p.name);
        core.metrics
            .record_rate_limit_hit(principal.tenant(), limit_scope(rule));
        let mut event = AuditEvent::new(Category::RateLimit)
            .subject(principal.subject())
            .client_ip(ip)
            .decision(mcp_audit::Decision::Deny, format!("rate limit `{rule}`"))
            .outcome(OutcomeStatus::Failure, Some(429), Some(start.elapsed()));
        if let Some(tenant) = principal.tenant() {
            event = event.tenant(tenant);
        }
        if let Some(method) = method {
            event = event.method(method);
        }
        if let Some(tool) = tool {
            event = event.tool(tool);
        }
        core.audit(event);
        let id = parsed_request.map(|r| r.id.clone());
        let headers = decision
            .policy()
            .map(|p| mcp_ratelimit::http::ratelimit_header_values(p, &decision));
        let response = too_many_requests(
            decision.retry_after().unwrap_or(Duration::from_secs(1)),
            id,
            headers,
        );
        core.observe(method, tool, principal.tenant(), response.status(), start);
        return response;
    }

    if let (Some(fair), Some(tenant)) = (&core.fair_share, principal.tenant()) {
        let verdict = fair.check(tenant, 1);
        if !verdict.allowed {
            let method = parsed_request.map(|r| r.request.method());
            core.metrics
                .record_rate_limit_hit(Some(tenant), RateLimitScope::Tenant);
            let mut event = AuditEvent::new(Category::RateLimit)
                .subject(principal.subject())
                .tenant(tenant)
                .client_ip(ip)
                .decision(
                    mcp_audit::Decision::Deny,
                    format!("tenant fair share ({:?})", verdict.reason),
                )
                .outcome(OutcomeStatus::Failure, Some(429), Some(start.elapsed()));
            if let Some(method) = method {
                event = event.method(method);
            }
            core.audit(event);
            let response = too_many_requests(
                Duration::from_secs(1),
                parsed_request.map(|r| r.id.clone()),
                None,
            );
            core.observe(method, tool, Some(tenant), response.status(), start);
            return response;
        }
    }

    let request = match parsed {
        Ok(ClientJsonRpcMessage::Request(request)) => request,
        Ok(
            ClientJsonRpcMessage::Notification(_)
            | ClientJsonRpcMessage::Response(_)
            | ClientJsonRpcMessage::Error(_),
        ) => {
            // Nothing upstream waits for the client's notifications or replies: the gateway
            // holds one shared upstream session and answers the handshake itself.
            return StatusCode::ACCEPTED.into_response();
        }
        Err(error) => {
            let mut event = AuditEvent::new(Category::SecurityViolation)
                .subject(principal.subject())
                .client_ip(ip)
                .decision(mcp_audit::Decision::Deny, "malformed JSON-RPC request")
                .outcome(OutcomeStatus::Failure, Some(400), Some(start.elapsed()));
            event.severity = Severity::Notice;
            if let Some(tenant) = principal.tenant() {
                event = event.tenant(tenant);
            }
            core.audit(event);
            tracing::debug!(%error, "malformed JSON-RPC request");
            let error = ErrorData::parse_error("malformed JSON-RPC request", None);
            return core.refuse(StatusCode::BAD_REQUEST, None, error, &principal, start);
        }
    };
    let Some(format) = Format::negotiate(&parts.headers) else {
        let error = ErrorData::invalid_request(
            "Accept must allow application/json or text/event-stream",
            None,
        );
        let id = Some(request.id);
        return core.refuse(StatusCode::NOT_ACCEPTABLE, id, error, &principal, start);
    };

    let mut info = McpRequestInfo::new(request.request.method()).with_subject(principal.subject());
    if let Some(tool) = tool {
        info = info.with_tool(tool);
    }
    if let Some(tenant) = principal.tenant() {
        info = info.with_tenant(tenant);
    }
    let mut inner = Request::new(Body::empty());
    *inner.uri_mut() = parts.uri;
    *inner.method_mut() = parts.method;
    *inner.headers_mut() = parts.headers;
    let extensions = inner.extensions_mut();
    extensions.insert(info);
    extensions.insert(Call {
        principal,
        request: Box::new(request),
        client_ip: ip,
        user_agent,
        start,
        format,
    });
    match app.forward.oneshot(inner).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Whether an `MCP-Protocol-Version` header names a version this gateway speaks.
fn is_known_protocol_version(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .any(|known| known.as_str() == v)
    })
}

/// `DELETE /mcp`: ends the caller's session (stateful mode; 405 when stateless).
async fn mcp_delete(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let core = &app.core;
    let Some(sessions) = &core.sessions else {
        return method_not_allowed_with("POST");
    };
    let start = Instant::now();
    let (parts, _) = request.into_parts();
    let ip = core.ip_resolver.resolve(peer.ip(), &parts.headers);
    let user_agent = parts.headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    let principal = match core.authenticate(&parts, ip, user_agent, start).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let Some(id) = session_header(&parts.headers) else {
        return missing_session(core, &principal, start);
    };
    let now = Instant::now();
    let response = match sessions.end(id, &principal, now) {
        Ok(ended) => {
            core.metrics
                .session_ended(ended.tenant.as_deref(), ended.lifetime);
            let mut event = AuditEvent::new(Category::Authentication)
                .subject(principal.subject())
                .auth_method(crate::auth::method_name(&principal))
                .method(SESSION_END)
                .session_id(id)
                .client_ip(ip)
                .decision(mcp_audit::Decision::Allow, "session ended by its owner")
                .outcome(OutcomeStatus::Success, Some(204), Some(start.elapsed()));
            if let Some(tenant) = principal.tenant() {
                event = event.tenant(tenant);
            }
            core.audit(event);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => core.session_refused(refusal, id, &principal, ip, Some(SESSION_END), start),
    };
    core.observe(
        Some(SESSION_END),
        None,
        principal.tenant(),
        response.status(),
        start,
    );
    response
}

/// `GET /mcp`: the gateway opens no server-to-client stream (its one upstream session is
/// shared, so upstream notifications have no single recipient); 405 as the Streamable HTTP
/// transport specifies for servers without one.
async fn mcp_get(State(app): State<App>) -> Response {
    method_not_allowed_with(if app.core.sessions.is_some() {
        "POST, DELETE"
    } else {
        "POST"
    })
}

fn method_not_allowed_with(allow: &'static str) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The `Mcp-Session-Id` header, when present and visible ASCII.
fn session_header(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

fn missing_session(core: &Core, principal: &Principal, start: Instant) -> Response {
    let error = ErrorData::invalid_request("Mcp-Session-Id header required", None);
    core.refuse(StatusCode::BAD_REQUEST, None, error, principal, start)
}

async fn health() -> Response {
    json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

async fn ready(State(app): State<App>) -> Response {
    let core = &app.core;
    let keys = core.jwks.as_ref().is_none_or(|jwks| jwks.keys().is_some());
    let upstreams = core.upstreams.readiness().await;
    let upstream = upstreams.iter().all(|u| u.reachable || !u.required);
    let stats = core.audit.stats();
    let audit = stats.spool_pending == 0 && stats.lost == 0;
    let pools = match &core.pools {
        Some(pools) => Some(pools.health().await),
        None => None,
    };
    let all = keys && upstream && audit && pools.as_ref().is_none_or(|p| p.healthy);
    let body = serde_json::json!({
        "status": if all { "ready" } else { "not_ready" },
        "checks": {
            "identity_provider_keys": keys,
            "upstreams": upstreams,
            "audit_sink_writable": audit,
            "pools": pools,
        }
    });
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string().into_bytes())
}

/// `GET /.well-known/gateway-jwks.json`: the keys verifying the gateway's identity
/// assertions.
async fn gateway_jwks(State(app): State<App>) -> Response {
    json_response(
        StatusCode::OK,
        app.core.upstreams.jwks_json().to_string().into_bytes(),
    )
}

async fn metrics_endpoint(State(app): State<App>, headers: http::HeaderMap) -> Response {
    let core = &app.core;
    if !core.metrics_on {
        return StatusCode::NOT_FOUND.into_response();
    }
    let stats = core.audit.stats();
    core.metrics
        .set_audit_queue_depth(u64::try_from(stats.queue_depth).unwrap_or(u64::MAX));
    mcp_metrics::metrics_response_for(&core.metrics, headers.get(ACCEPT)).map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn request_ids_are_recorded_as_displayed(n in proptest::prelude::any::<i64>(), s in "\\PC{0,20}") {
            for id in [NumberOrString::Number(n), NumberOrString::String(s.as_str().into())] {
                proptest::prop_assert_eq!(request_id_text(&id), id.to_string());
            }
        }
    }
}
