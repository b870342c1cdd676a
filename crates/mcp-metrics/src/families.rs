//! The MCP metric families ([`McpMetrics`]), their label values and their configuration.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::concurrency::{
    ConcurrencyConfig, ConcurrencyConfigError, ConcurrentUsers, DetailedGauge, PrimaryGauge,
    UserRing,
};
use crate::envelope::MethodLabel;
use crate::histogram::{AtomicHistogram, Bounds};
use crate::labels::{BoundedLabels, LabelLimit, LabelValue};
use crate::process::ProcessCollector;

/// Every metric family name this crate exports, as it appears in the exposition (counters
/// with their `_total` suffix). The dashboard test checks every query against this list.
pub const FAMILY_NAMES: &[&str] = &[
    "mcp_auth_events_total",
    "mcp_auth_attempts_total",
    "mcp_auth_rate_limit_exceeded_total",
    "mcp_token_refresh_total",
    "mcp_jwks_refresh_total",
    "mcp_user_sessions_active",
    "mcp_user_logins_total",
    "mcp_session_duration_seconds",
    "mcp_requests_total",
    "mcp_request_errors_total",
    "mcp_request_duration_seconds",
    "mcp_tool_calls_total",
    "mcp_tool_usage_duration_seconds",
    "mcp_rate_limit_hits_total",
    "mcp_user_behavior_patterns_total",
    "mcp_tenant_activity_total",
    "mcp_concurrent_users",
    "mcp_concurrent_users_detailed",
    "mcp_audit_queue_depth",
    "mcp_audit_events_dropped_total",
    "mcp_pool_connections",
    "mcp_pool_max_connections",
    "mcp_pool_acquire_timeouts_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// Implements `as_str` and the label encoding of a fieldless enum.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

/// Gives a label enum an array index: `COUNT` values, `index()` below it. The variant list
/// must be complete (checked by an exhaustive match) and in declaration order.
macro_rules! indexed_label {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl $name {
            /// How many values the label takes.
            const COUNT: usize = [$(Self::$variant),+].len();

            /// The position of the value, below `COUNT`.
            fn index(self) -> usize {
                self as usize
            }
        }

        const _: fn($name) = |v| match v {
            $($name::$variant)|+ => {}
        };
    };
}

label_enum! {
    /// `outcome` of `mcp_auth_events_total`.
    AuthOutcome {
        /// Credentials accepted.
        Success => "success",
        /// No credentials presented.
        MissingCredentials => "missing_credentials",
        /// Malformed token, bad signature, wrong issuer or audience, unknown API key.
        InvalidCredentials => "invalid_credentials",
        /// Token or key expired.
        Expired => "expired",
        /// Token or key revoked.
        Revoked => "revoked",
        /// Valid credentials without the required scope or role.
        InsufficientScope => "insufficient_scope",
        /// The check itself failed (JWKS unreachable, store down).
        Error => "error",
    }
}

impl AuthOutcome {
    fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }
}

label_enum! {
    /// `kind` of `mcp_token_refresh_total`.
    RefreshKind {
        /// Refreshed ahead of expiry by the background task.
        Proactive => "proactive",
        /// Refreshed close to expiry.
        Emergency => "emergency",
        /// Refreshed because a request found the token expired.
        OnDemand => "on_demand",
    }
}

label_enum! {
    /// `outcome` of `mcp_token_refresh_total` and `mcp_jwks_refresh_total`.
    RefreshOutcome {
        /// Refreshed.
        Success => "success",
        /// Failed, will be retried.
        Retry => "retry",
        /// Failed for good (retries exhausted or the grant is invalid).
        Failure => "failure",
    }
}

label_enum! {
    /// `scope` of `mcp_rate_limit_hits_total`: which limit refused the request.
    RateLimitScope {
        /// The process-wide limit.
        Global => "global",
        /// The tenant's share.
        Tenant => "tenant",
        /// The per-user limit.
        User => "user",
        /// The per-IP limit.
        Ip => "ip",
        /// A per-tool limit.
        Tool => "tool",
    }
}

label_enum! {
    /// `reason` of `mcp_auth_rate_limit_exceeded_total`.
    AuthLimitReason {
        /// Too many failed logins: the account or client is locked out.
        Lockout => "lockout",
        /// The source IP is blocked.
        IpBlocked => "ip_blocked",
        /// Too many authentication attempts.
        RateLimited => "rate_limited",
    }
}

label_enum! {
    /// `pattern` of `mcp_user_behavior_patterns_total`: coarse, non-identifying patterns.
    BehaviorPattern {
        /// A session was started.
        NewSession => "new_session",
        /// A request resumed an existing session after an idle period.
        ResumedSession => "resumed_session",
        /// A burst of requests close to the rate limit.
        Burst => "burst",
        /// Activity outside the tenant's business hours.
        OffHours => "off_hours",
        /// Several tool calls chained in one session.
        ToolChain => "tool_chain",
    }
}

label_enum! {
    /// `activity` of `mcp_tenant_activity_total`.
    TenantActivity {
        /// Any MCP request.
        Request => "request",
        /// A `tools/call`.
        ToolCall => "tool_call",
        /// A login.
        Login => "login",
        /// A request refused by authorisation.
        Denied => "denied",
        /// A request refused by rate limiting.
        RateLimited => "rate_limited",
    }
}

label_enum! {
    /// `outcome` of `mcp_tool_calls_total`.
    ToolOutcome {
        /// The call completed (HTTP 2xx/3xx).
        Success => "success",
        /// The call was refused by authentication or authorisation (401/403).
        Denied => "denied",
        /// The call was refused by rate limiting (429).
        RateLimited => "rate_limited",
        /// Any other failure.
        Error => "error",
    }
}

label_enum! {
    /// `error_type` of `mcp_request_errors_total`, derived from the HTTP status.
    ErrorType {
        /// 401.
        Unauthenticated => "unauthenticated",
        /// 403.
        Forbidden => "forbidden",
        /// 429.
        RateLimited => "rate_limited",
        /// 408 or 504.
        Timeout => "timeout",
        /// Any other 4xx.
        ClientError => "client_error",
        /// Any other 5xx.
        ServerError => "server_error",
        /// The service failed without producing a response.
        Internal => "internal",
    }
}

indexed_label!(TenantActivity {
    Request,
    ToolCall,
    Login,
    Denied,
    RateLimited
});
indexed_label!(ToolOutcome {
    Success,
    Denied,
    RateLimited,
    Error
});
indexed_label!(ErrorType {
    Unauthenticated,
    Forbidden,
    RateLimited,
    Timeout,
    ClientError,
    ServerError,
    Internal
});
indexed_label!(DurationCategory {
    QuickAction,
    NormalUsage,
    ExtendedUsage,
    LongOperation
});

impl ErrorType {
    /// The error class of a response status; `None` for success. Status 0 means "no response".
    pub fn from_status(status: u16) -> Option<Self> {
        Some(match status {
            0 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::Forbidden,
            429 => Self::RateLimited,
            408 | 504 => Self::Timeout,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            _ => return None,
        })
    }
}

label_enum! {
    /// `category` of `mcp_tool_usage_duration_seconds` (the seeds' duration categories).
    DurationCategory {
        /// Shorter than [`ToolUsageThresholds::quick`].
        QuickAction => "quick_action",
        /// Shorter than [`ToolUsageThresholds::normal`].
        NormalUsage => "normal_usage",
        /// Shorter than [`ToolUsageThresholds::extended`].
        ExtendedUsage => "extended_usage",
        /// Anything longer.
        LongOperation => "long_operation",
    }
}

label_enum! {
    /// `time_of_day` of `mcp_user_logins_total` (UTC).
    TimeOfDay {
        /// 00:00 to 05:59.
        Night => "night",
        /// 06:00 to 11:59.
        Morning => "morning",
        /// 12:00 to 17:59.
        Afternoon => "afternoon",
        /// 18:00 to 23:59.
        Evening => "evening",
    }
}

impl TimeOfDay {
    /// The UTC time-of-day bucket of `at`.
    pub fn of(at: SystemTime) -> Self {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match (secs / 3600) % 24 {
            0..=5 => Self::Night,
            6..=11 => Self::Morning,
            12..=17 => Self::Afternoon,
            _ => Self::Evening,
        }
    }
}

label_enum! {
    /// `state` of `mcp_pool_connections`.
    PoolState {
        /// Checked out.
        InUse => "in_use",
        /// Idle in the pool.
        Idle => "idle",
    }
}

/// Limits of the [`DurationCategory`] of a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolUsageThresholds {
    /// Below this a call is a `quick_action` (default 1 s).
    pub quick: Duration,
    /// Below this a call is `normal_usage` (default 10 s).
    pub normal: Duration,
    /// Below this a call is `extended_usage`, above it a `long_operation` (default 60 s).
    pub extended: Duration,
}

impl Default for ToolUsageThresholds {
    fn default() -> Self {
        Self {
            quick: Duration::from_secs(1),
            normal: Duration::from_secs(10),
            extended: Duration::from_secs(60),
        }
    }
}

impl ToolUsageThresholds {
    /// The category of a call that took `d`.
    pub fn categorise(&self, d: Duration) -> DurationCategory {
        if d < self.quick {
            DurationCategory::QuickAction
        } else if d < self.normal {
            DurationCategory::NormalUsage
        } else if d < self.extended {
            DurationCategory::ExtendedUsage
        } else {
            DurationCategory::LongOperation
        }
    }
}

/// [`ToolUsageThresholds`] in whole nanoseconds (saturated at `u64::MAX`).
#[derive(Debug, Clone, Copy)]
struct NanosThresholds([u64; 3]);

impl NanosThresholds {
    fn new(t: &ToolUsageThresholds) -> Self {
        Self([t.quick, t.normal, t.extended].map(duration_nanos))
    }

    /// [`ToolUsageThresholds::categorise`] of a duration of `nanos` ns, for `nanos` below
    /// `u64::MAX` (where the saturated thresholds compare like the durations).
    fn categorise(self, nanos: u64) -> DurationCategory {
        let [quick, normal, extended] = self.0;
        if nanos < quick {
            DurationCategory::QuickAction
        } else if nanos < normal {
            DurationCategory::NormalUsage
        } else if nanos < extended {
            DurationCategory::ExtendedUsage
        } else {
            DurationCategory::LongOperation
        }
    }
}

/// A duration in whole nanoseconds, saturated at `u64::MAX` (584 years).
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Configuration of [`McpMetrics`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Values of the `tenant` label (default: the first 100 tenants seen).
    pub tenants: LabelLimit,
    /// Values of the `tool` label (default: the first 200 tools seen).
    pub tools: LabelLimit,
    /// Values of the `pool` label (default: the first 16 pools seen).
    pub pools: LabelLimit,
    /// Concurrent-user windows and sketch precision.
    pub concurrency: ConcurrencyConfig,
    /// Duration categories of tool calls.
    pub tool_usage: ToolUsageThresholds,
    /// Buckets of `mcp_request_duration_seconds`, in seconds.
    pub request_buckets: Vec<f64>,
    /// Buckets of `mcp_tool_usage_duration_seconds`, in seconds.
    pub tool_buckets: Vec<f64>,
    /// Buckets of `mcp_session_duration_seconds`, in seconds.
    pub session_buckets: Vec<f64>,
    /// Export the `process_*` families (default true).
    pub process_metrics: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            tenants: LabelLimit::learned(100),
            tools: LabelLimit::learned(200),
            pools: LabelLimit::learned(16),
            concurrency: ConcurrencyConfig::default(),
            tool_usage: ToolUsageThresholds::default(),
            request_buckets: vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
            tool_buckets: vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ],
            session_buckets: vec![
                60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
            ],
            process_metrics: true,
        }
    }
}

impl MetricsConfig {
    /// Sets the `tenant` label values.
    #[must_use]
    pub fn tenants(mut self, limit: LabelLimit) -> Self {
        self.tenants = limit;
        self
    }

    /// Sets the `tool` label values.
    #[must_use]
    pub fn tools(mut self, limit: LabelLimit) -> Self {
        self.tools = limit;
        self
    }

    /// Sets the `pool` label values.
    #[must_use]
    pub fn pools(mut self, limit: LabelLimit) -> Self {
        self.pools = limit;
        self
    }

    /// Sets the concurrent-user configuration.
    #[must_use]
    pub fn concurrency(mut self, concurrency: ConcurrencyConfig) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the tool duration categories.
    #[must_use]
    pub fn tool_usage(mut self, thresholds: ToolUsageThresholds) -> Self {
        self.tool_usage = thresholds;
        self
    }

    /// Turns the `process_*` families on or off.
    #[must_use]
    pub fn process_metrics(mut self, on: bool) -> Self {
        self.process_metrics = on;
        self
    }
}

/// Why a [`MetricsConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsConfigError {
    /// Histogram buckets that are empty, not finite or not strictly increasing.
    #[error("histogram buckets of {0} must be finite, non-empty and strictly increasing")]
    Buckets(&'static str),
    /// Tool usage thresholds that are not increasing.
    #[error("tool usage thresholds must satisfy quick < normal < extended")]
    Thresholds,
    /// Bad concurrent-user configuration.
    #[error(transparent)]
    Concurrency(#[from] ConcurrencyConfigError),
}

fn check_buckets(buckets: &[f64], name: &'static str) -> Result<Bounds, MetricsConfigError> {
    let increasing = buckets.windows(2).all(|w| matches!(w, [a, b] if a < b));
    if buckets.is_empty() || !increasing || buckets.iter().any(|b| !b.is_finite()) {
        return Err(MetricsConfigError::Buckets(name));
    }
    Ok(Bounds::new(buckets))
}

/// Makes histograms with fixed buckets (a named type: `Family` needs a `Debug` constructor).
#[derive(Debug, Clone)]
pub(crate) struct Buckets(Bounds);

impl MetricConstructor<AtomicHistogram> for Buckets {
    fn new_metric(&self) -> AtomicHistogram {
        AtomicHistogram::new(self.0.clone())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthEventLabels {
    tenant: Arc<str>,
    method: &'static str,
    outcome: AuthOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthAttemptLabels {
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLimitLabels {
    reason: AuthLimitReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    kind: RefreshKind,
    outcome: RefreshOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: RefreshOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    tenant: Arc<str>,
    time_of_day: TimeOfDay,
}

/// The HTTP status label; 0 ("no response") is exported as `error`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StatusLabel(u16);

impl EncodeLabelValue for StatusLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        if self.0 == 0 {
            EncodeLabelValue::encode(&"error", encoder)
        } else {
            EncodeLabelValue::encode(&self.0, encoder)
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodToolLabels {
    method: &'static str,
    tool: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    tool: Arc<str>,
    status: StatusLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: &'static str,
    tool: Arc<str>,
    error_type: ErrorType,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolCallLabels {
    tool: Arc<str>,
    tenant: Arc<str>,
    outcome: ToolOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolUsageLabels {
    tool: Arc<str>,
    category: DurationCategory,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    tenant: Arc<str>,
    scope: RateLimitScope,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BehaviorLabels {
    tenant: Arc<str>,
    pattern: BehaviorPattern,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActivityLabels {
    tenant: Arc<str>,
    activity: TenantActivity,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: Arc<str>,
    state: PoolState,
}

/// How many distinct statuses of one (method, tool) keep a cached `mcp_requests_total` handle;
/// rarer statuses go through the family's map.
const STATUS_SLOTS: usize = 8;

/// Metric handles of one (method, tool) label pair, taken from the families once and reused:
/// recording is then a lock-free histogram update and atomic increments, with no label
/// set hashed or compared.
#[derive(Debug)]
struct RequestSeries {
    method: MethodLabel,
    tool: Arc<str>,
    duration: AtomicHistogram,
    /// `mcp_requests_total` by status, filled in first-seen order.
    statuses: [OnceLock<(u16, Counter)>; STATUS_SLOTS],
    errors: [OnceLock<Counter>; ErrorType::COUNT],
}

/// `cell.get_or_init(Default::default)` with the initialisation out of line, so the hot path
/// is a load and a branch.
#[inline(always)]
fn get_or_default<T: Default>(cell: &OnceLock<T>) -> &T {
    match cell.get() {
        Some(value) => value,
        None => init_default(cell),
    }
}

#[cold]
#[inline(never)]
fn init_default<T: Default>(cell: &OnceLock<T>) -> &T {
    cell.get_or_init(T::default)
}

/// `mcp_tool_calls_total` handles of one (tool, tenant) pair, by outcome.
type ToolCallCounters = [OnceLock<Counter>; ToolOutcome::COUNT];

/// Tenants per chunk of [`ToolSeries::calls`].
const TENANT_CHUNK: usize = 32;
/// Tenant ids below this find their [`ToolCallCounters`] by index (32 chunks of 32); higher
/// ids, which only exist with more than 1 022 configured tenants, go through a map.
const DIRECT_TENANTS: usize = 32 * TENANT_CHUNK;

/// [`ToolCallCounters`] of 32 consecutive tenant ids.
type TenantChunk = [OnceLock<Box<ToolCallCounters>>; TENANT_CHUNK];

/// Metric handles cached on one `tool` label value (including the empty value of requests
/// without a tool and `other`).
#[derive(Debug, Default)]
pub(crate) struct ToolSeries {
    /// By [`MethodLabel`] index.
    requests: [OnceLock<Box<RequestSeries>>; MethodLabel::COUNT],
    /// `mcp_tool_usage_duration_seconds` by duration category.
    usage: [OnceLock<AtomicHistogram>; DurationCategory::COUNT],
    /// By tenant id, in chunks allocated when one of their tenants first calls the tool.
    calls: [OnceLock<Box<TenantChunk>>; DIRECT_TENANTS / TENANT_CHUNK],
    /// Tenant ids from [`DIRECT_TENANTS`] on; at most one entry per tenant label value.
    more_calls: RwLock<HashMap<u32, Box<ToolCallCounters>, foldhash::fast::RandomState>>,
}

/// What is cached on one `tenant` label value: `mcp_tenant_activity_total` handles and the
/// tenant's concurrent-user sketches.
#[derive(Debug, Default)]
pub(crate) struct TenantSeries {
    activity: [OnceLock<Counter>; TenantActivity::COUNT],
    pub(crate) users: UserRing,
}

/// A tenant label value with its cached handles.
pub(crate) type Tenant = LabelValue<TenantSeries>;
/// A tool label value with its cached handles.
type Tool = LabelValue<ToolSeries>;

/// The bounded label values of one request, resolved when the request starts. Tool and
/// tenant are kept as ids and read back when the request is recorded, so a request takes no
/// reference count on values that every request shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    method: MethodLabel,
    has_envelope: bool,
    is_tool_call: bool,
    tool_call: bool,
    tool: u32,
    tenant: u32,
}

impl Resolved {
    #[inline]
    fn new(method: Option<&str>, tool: Option<&Tool>, tenant: &Tenant) -> Self {
        let label = MethodLabel::of(method);
        let is_tool_call = label == MethodLabel::TOOLS_CALL;
        Self {
            method: label,
            has_envelope: method.is_some(),
            tool_call: is_tool_call && tool.is_some(),
            is_tool_call,
            tool: tool.map_or(0, |t| t.id()),
            tenant: tenant.id(),
        }
    }
}

/// One finished request, as the layer (or any caller without tower) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord<'a> {
    /// MCP method (`tools/call`), or `None` for a request without an MCP envelope.
    pub method: Option<&'a str>,
    /// Tool name of a `tools/call`.
    pub tool: Option<&'a str>,
    /// Tenant of the caller.
    pub tenant: Option<&'a str>,
    /// HTTP status; 0 when the service failed without a response.
    pub status: u16,
    /// Time to the response head.
    pub duration: Duration,
}

/// The MCP metric families on one prometheus-client [`Registry`].
///
/// Cheap to share behind an `Arc`; every method takes `&self` and never blocks on I/O. Label
/// values that come from requests (tenant, tool, pool) go through bounded sets (see
/// [`LabelLimit`]); user ids are never labels.
#[derive(Debug)]
pub struct McpMetrics {
    registry: Registry,
    tenants: Arc<BoundedLabels<TenantSeries>>,
    tools: BoundedLabels<ToolSeries>,
    pools: BoundedLabels,
    tool_usage: NanosThresholds,
    users: Arc<ConcurrentUsers>,
    #[cfg(feature = "tower")]
    clock: quanta::Clock,
    /// The origin of the concurrent-user slots in raw ticks of `clock`.
    #[cfg(feature = "tower")]
    users_origin_raw: u64,

    auth_events: Family<AuthEventLabels, Counter>,
    auth_attempts: Family<AuthAttemptLabels, Counter>,
    auth_rate_limited: Family<AuthLimitLabels, Counter>,
    token_refresh: Family<RefreshLabels, Counter>,
    jwks_refresh: Family<OutcomeLabels, Counter>,
    sessions_active: Family<TenantLabels, Gauge>,
    logins: Family<LoginLabels, Counter>,
    session_duration: Family<TenantLabels, AtomicHistogram, Buckets>,
    requests: Family<RequestLabels, Counter>,
    request_errors: Family<ErrorLabels, Counter>,
    request_duration: Family<MethodToolLabels, AtomicHistogram, Buckets>,
    tool_calls: Family<ToolCallLabels, Counter>,
    tool_duration: Family<ToolUsageLabels, AtomicHistogram, Buckets>,
    rate_limit_hits: Family<RateLimitLabels, Counter>,
    behavior: Family<BehaviorLabels, Counter>,
    tenant_activity: Family<ActivityLabels, Counter>,
    audit_queue_depth: Gauge,
    audit_dropped: Counter,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_timeouts: Family<PoolLabels, Counter>,
}

impl McpMetrics {
    /// Builds every family on a new registry.
    pub fn new(config: &MetricsConfig) -> Result<Self, MetricsConfigError> {
        let t = &config.tool_usage;
        if !(t.quick < t.normal && t.normal < t.extended) {
            return Err(MetricsConfigError::Thresholds);
        }
        let request_buckets = Buckets(check_buckets(&config.request_buckets, "request_buckets")?);
        let tool_buckets = Buckets(check_buckets(&config.tool_buckets, "tool_buckets")?);
        let session_buckets = Buckets(check_buckets(&config.session_buckets, "session_buckets")?);
        let tenants = Arc::new(BoundedLabels::new(&config.tenants));
        #[cfg(feature = "tower")]
        let clock = quanta::Clock::new();
        // The users' origin on both clocks, read together.
        #[cfg(feature = "tower")]
        let users_origin_raw = clock.raw();
        let users = Arc::new(ConcurrentUsers::new(
            &config.concurrency,
            Arc::clone(&tenants),
            Instant::now(),
        )?);

        let metrics = Self {
            registry: Registry::default(),
            tools: BoundedLabels::new(&config.tools),
            pools: BoundedLabels::new(&config.pools),
            tenants,
            tool_usage: NanosThresholds::new(&config.tool_usage),
            users,
            #[cfg(feature = "tower")]
            clock,
            #[cfg(feature = "tower")]
            users_origin_raw,
            auth_events: Family::default(),
            auth_attempts: Family::default(),
            auth_rate_limited: Family::default(),
            token_refresh: Family::default(),
            jwks_refresh: Family::default(),
            sessions_active: Family::default(),
            logins: Family::default(),
            session_duration: Family::new_with_constructor(session_buckets),
            requests: Family::default(),
            request_errors: Family::default(),
            request_duration: Family::new_with_constructor(request_buckets),
            tool_calls: Family::default(),
            tool_duration: Family::new_with_constructor(tool_buckets),
            rate_limit_hits: Family::default(),
            behavior: Family::default(),
            tenant_activity: Family::default(),
            audit_queue_depth: Gauge::default(),
            audit_dropped: Counter::default(),
            pool_connections: Family::default(),
            pool_max: Family::default(),
            pool_timeouts: Family::default(),
        };
        Ok(metrics.register(config.process_metrics))
    }

    fn register(mut self, process: bool) -> Self {
        let r = &mut self.registry;
        r.register(
            "mcp_auth_events",
            "Authentication events by tenant, auth method and outcome",
            self.auth_events.clone(),
        );
        r.register(
            "mcp_auth_attempts",
            "Authentication attempts by auth method and status (success or failure)",
            self.auth_attempts.clone(),
        );
        r.register(
            "mcp_auth_rate_limit_exceeded",
            "Authentication attempts refused by lockout, IP blocking or rate limiting, by reason",
            self.auth_rate_limited.clone(),
        );
        r.register(
            "mcp_token_refresh",
            "Token refresh operations by kind and outcome",
            self.token_refresh.clone(),
        );
        r.register(
            "mcp_jwks_refresh",
            "JWKS (signing key set) refreshes by outcome",
            self.jwks_refresh.clone(),
        );
        r.register(
            "mcp_user_sessions_active",
            "Active user sessions by tenant",
            self.sessions_active.clone(),
        );
        r.register(
            "mcp_user_logins",
            "User logins by tenant and UTC time of day",
            self.logins.clone(),
        );
        r.register_with_unit(
            "mcp_session_duration",
            "Duration of ended user sessions by tenant",
            Unit::Seconds,
            self.session_duration.clone(),
        );
        r.register(
            "mcp_requests",
            "Requests by MCP method, tool and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "mcp_request_errors",
            "Failed requests by MCP method, tool and error type",
            self.request_errors.clone(),
        );
        r.register_with_unit(
            "mcp_request_duration",
            "Request latency to the response head by MCP method and tool",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        r.register(
            "mcp_tool_calls",
            "MCP tool calls by tool, tenant and outcome",
            self.tool_calls.clone(),
        );
        r.register_with_unit(
            "mcp_tool_usage_duration",
            "Tool call duration by tool and duration category",
            Unit::Seconds,
            self.tool_duration.clone(),
        );
        r.register(
            "mcp_rate_limit_hits",
            "Requests refused by rate limiting, by tenant and limit scope",
            self.rate_limit_hits.clone(),
        );
        r.register(
            "mcp_user_behavior_patterns",
            "Coarse user interaction patterns by tenant",
            self.behavior.clone(),
        );
        r.register(
            "mcp_tenant_activity",
            "Tenant activity by kind",
            self.tenant_activity.clone(),
        );
        r.register(
            "mcp_concurrent_users",
            "Distinct authenticated users per tenant over the primary sliding window (HyperLogLog estimate)",
            PrimaryGauge(Arc::clone(&self.users)),
        );
        r.register(
            "mcp_concurrent_users_detailed",
            "Distinct authenticated users per tenant and sliding window (HyperLogLog estimate)",
            DetailedGauge(Arc::clone(&self.users)),
        );
        r.register(
            "mcp_audit_queue_depth",
            "Audit events queued and not yet written",
            self.audit_queue_depth.clone(),
        );
        r.register(
            "mcp_audit_events_dropped",
            "Audit events dropped or spooled because the queue was full",
            self.audit_dropped.clone(),
        );
        r.register(
            "mcp_pool_connections",
            "Connections per pool and state",
            self.pool_connections.clone(),
        );
        r.register(
            "mcp_pool_max_connections",
            "Configured maximum connections per pool",
            self.pool_max.clone(),
        );
        r.register(
            "mcp_pool_acquire_timeouts",
            "Pool acquisitions that timed out, by pool",
            self.pool_timeouts.clone(),
        );
        if process {
            r.register_collector(Box::new(ProcessCollector));
        }
        self
    }

    /// The registry, to encode or to inspect.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, to add the application's own metrics before sharing `self`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition of every family (ends with `# EOF`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The same families in the Prometheus text format 0.0.4, for scrapers and tools that do not
    /// read OpenMetrics (`promtool check metrics`, old Prometheus servers): counter families
    /// are named with their `_total` suffix, and `# UNIT` and `# EOF` lines are left out.
    pub fn encode_prometheus_text(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus_text(&self.encode()?))
    }

    /// Resolves the request's labels and notes its subject, if any, as an active user of its
    /// tenant at `start` (raw ticks of [`Self::clock`]: the request's start is the moment the
    /// user was active).
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn begin_request(
        &self,
        info: Option<&crate::envelope::McpRequestInfo>,
        start: u64,
    ) -> Resolved {
        let tool = info
            .and_then(|i| i.tool.as_deref())
            .map(|t| self.tools.resolve(t));
        let tenant = self
            .tenants
            .resolve_opt(info.and_then(|i| i.tenant.as_deref()));
        if let Some(subject) = info.and_then(|i| i.subject.as_deref()) {
            let since_origin = self.clock.delta_as_nanos(self.users_origin_raw, start);
            self.users
                .record_tenant_nanos(tenant, subject, since_origin);
        }
        Resolved::new(info.map(|i| i.method.as_str()), tool, tenant)
    }

    /// Records a request that started at `start` (raw ticks of [`Self::clock`]) and ended now
    /// with `status`.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn end_request(&self, labels: &Resolved, status: u16, start: u64) {
        let nanos = self.clock.delta_as_nanos(start, self.clock.raw());
        let tool = self.tools.by_id(labels.tool);
        let tenant = self.tenants.by_id(labels.tenant);
        self.observe_values(labels, tool, tenant, status, nanos);
    }

    /// The cached handles of (`method`, `tool`), taken from the families on first use.
    #[inline(always)]
    fn request_series<'a>(&self, method: MethodLabel, tool: &'a Tool) -> &'a RequestSeries {
        let cell = &tool.data().requests[method.index()];
        match cell.get() {
            Some(series) => series,
            None => self.new_request_series(cell, method, tool),
        }
    }

    // The first use of a cell is out of line (also below): the hot path only loads and tests
    // it, without laying out an initialising closure's captures first.
    #[cold]
    #[inline(never)]
    fn new_request_series<'a>(
        &self,
        cell: &'a OnceLock<Box<RequestSeries>>,
        method: MethodLabel,
        tool: &Tool,
    ) -> &'a RequestSeries {
        cell.get_or_init(|| {
            Box::new(RequestSeries {
                method,
                tool: Arc::clone(tool.value()),
                duration: self
                    .request_duration
                    .get_or_create_owned(&MethodToolLabels {
                        method: method.as_str(),
                        tool: Arc::clone(tool.value()),
                    }),
                statuses: Default::default(),
                errors: Default::default(),
            })
        })
    }

    #[inline(always)]
    fn record_series(&self, series: &RequestSeries, status: u16, nanos: u64) {
        series.duration.observe_nanos(nanos);
        if !(1..400).contains(&status)
            && let Some(error_type) = ErrorType::from_status(status)
        {
            self.count_error(series, error_type);
        }
        for slot in &series.statuses {
            // An empty slot is claimed for this status; a slot another thread claimed first for
            // a different status is skipped.
            let (slot_status, counter) = match slot.get() {
                Some(claimed) => claimed,
                None => self.claim_status_slot(slot, series, status),
            };
            if *slot_status == status {
                counter.inc();
                return;
            }
        }
        self.requests
            .get_or_create(&RequestLabels {
                method: series.method.as_str(),
                tool: Arc::clone(&series.tool),
                status: StatusLabel(status),
            })
            .inc();
    }

    #[cold]
    #[inline(never)]
    fn claim_status_slot<'a>(
        &self,
        slot: &'a OnceLock<(u16, Counter)>,
        series: &RequestSeries,
        status: u16,
    ) -> &'a (u16, Counter) {
        slot.get_or_init(|| {
            let counter = self.requests.get_or_create_owned(&RequestLabels {
                method: series.method.as_str(),
                tool: Arc::clone(&series.tool),
                status: StatusLabel(status),
            });
            (status, counter)
        })
    }

    fn count_error(&self, series: &RequestSeries, error_type: ErrorType) {
        series.errors[error_type.index()]
            .get_or_init(|| {
                self.request_errors.get_or_create_owned(&ErrorLabels {
                    method: series.method.as_str(),
                    tool: Arc::clone(&series.tool),
                    error_type,
                })
            })
            .inc();
    }

    /// Counts one request: `mcp_requests_total`, `mcp_request_duration_seconds` and, for a
    /// failure, `mcp_request_errors_total`. (`r.tenant` is not a label of these families.)
    pub fn record_request(&self, r: &RequestRecord<'_>) {
        let tool = self.tools.resolve_opt(r.tool);
        let series = self.request_series(MethodLabel::of(r.method), tool);
        self.record_series(series, r.status, duration_nanos(r.duration));
    }

    /// Everything the layer records for one request: [`Self::record_request`], plus the tool
    /// families for a `tools/call` and `mcp_tenant_activity_total`.
    pub fn observe(&self, r: &RequestRecord<'_>) {
        let tool = r.tool.map(|t| self.tools.resolve(t));
        let tenant = self.tenants.resolve_opt(r.tenant);
        let labels = Resolved::new(r.method, tool, tenant);
        let tool = tool.unwrap_or_else(|| self.tools.resolve_opt(None));
        self.observe_values(&labels, tool, tenant, r.status, duration_nanos(r.duration));
    }

    /// Records a request with `labels`, whose tool and tenant are `tool` and `tenant`.
    #[inline(always)]
    fn observe_values(
        &self,
        labels: &Resolved,
        tool: &Tool,
        tenant: &Tenant,
        status: u16,
        nanos: u64,
    ) {
        let series = self.request_series(labels.method, tool);
        self.record_series(series, status, nanos);
        if labels.tool_call {
            let outcome = match status {
                200..=399 => ToolOutcome::Success,
                401 | 403 => ToolOutcome::Denied,
                429 => ToolOutcome::RateLimited,
                _ => ToolOutcome::Error,
            };
            self.count_tool_call(tool, tenant, outcome, nanos);
        }
        if labels.has_envelope {
            let activity = match status {
                403 => TenantActivity::Denied,
                429 => TenantActivity::RateLimited,
                _ if labels.is_tool_call => TenantActivity::ToolCall,
                _ => TenantActivity::Request,
            };
            self.count_tenant_activity(tenant, activity);
        }
    }

    #[inline(always)]
    fn count_tool_call(&self, tool: &Tool, tenant: &Tenant, outcome: ToolOutcome, nanos: u64) {
        // Clamped like the histogram's observations, so the saturated thresholds are exact.
        let category = self.tool_usage.categorise(nanos.min(u64::MAX - 1));
        let usage = &tool.data().usage[category.index()];
        match usage.get() {
            Some(histogram) => histogram,
            None => self.new_usage_histogram(usage, tool, category),
        }
        .observe_nanos(nanos);
        let id = tenant.id() as usize;
        let counters = tool
            .data()
            .calls
            .get(id / TENANT_CHUNK)
            .map(get_or_default)
            .and_then(|chunk| chunk.get(id % TENANT_CHUNK))
            .map(get_or_default);
        match counters {
            Some(counters) => self
                .tool_call_counter(counters, tool, tenant, outcome)
                .inc(),
            None => self.count_tool_call_beyond_chunks(tool, tenant, outcome),
        };
    }

    #[cold]
    #[inline(never)]
    fn new_usage_histogram<'a>(
        &self,
        cell: &'a OnceLock<AtomicHistogram>,
        tool: &Tool,
        category: DurationCategory,
    ) -> &'a AtomicHistogram {
        cell.get_or_init(|| {
            self.tool_duration.get_or_create_owned(&ToolUsageLabels {
                tool: Arc::clone(tool.value()),
                category,
            })
        })
    }

    /// The `mcp_tool_calls_total` counter of `outcome` among the (tool, tenant) `counters`.
    #[inline(always)]
    fn tool_call_counter<'a>(
        &self,
        counters: &'a ToolCallCounters,
        tool: &Tool,
        tenant: &Tenant,
        outcome: ToolOutcome,
    ) -> &'a Counter {
        let cell = &counters[outcome.index()];
        match cell.get() {
            Some(counter) => counter,
            None => self.new_tool_call_counter(cell, tool, tenant, outcome),
        }
    }

    #[cold]
    #[inline(never)]
    fn new_tool_call_counter<'a>(
        &self,
        cell: &'a OnceLock<Counter>,
        tool: &Tool,
        tenant: &Tenant,
        outcome: ToolOutcome,
    ) -> &'a Counter {
        cell.get_or_init(|| {
            self.tool_calls.get_or_create_owned(&ToolCallLabels {
                tool: Arc::clone(tool.value()),
                tenant: Arc::clone(tenant.value()),
                outcome,
            })
        })
    }

    /// [`Self::count_tool_call`] for tenant ids from [`DIRECT_TENANTS`] on.
    #[cold]
    fn count_tool_call_beyond_chunks(
        &self,
        tool: &Tool,
        tenant: &Tenant,
        outcome: ToolOutcome,
    ) -> u64 {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // always consistent, so keep using it.
        let calls = &tool.data().more_calls;
        if let Some(counters) = calls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant.id())
        {
            return self
                .tool_call_counter(counters, tool, tenant, outcome)
                .inc();
        }
        let mut calls = calls.write().unwrap_or_else(|e| e.into_inner());
        let counters = calls.entry(tenant.id()).or_default();
        self.tool_call_counter(counters, tool, tenant, outcome)
            .inc()
    }

    #[inline(always)]
    fn count_tenant_activity(&self, tenant: &Tenant, activity: TenantActivity) {
        let cell = &tenant.data().activity[activity.index()];
        match cell.get() {
            Some(counter) => counter,
            None => self.new_activity_counter(cell, tenant, activity),
        }
        .inc();
    }

    #[cold]
    #[inline(never)]
    fn new_activity_counter<'a>(
        &self,
        cell: &'a OnceLock<Counter>,
        tenant: &Tenant,
        activity: TenantActivity,
    ) -> &'a Counter {
        cell.get_or_init(|| {
            self.tenant_activity.get_or_create_owned(&ActivityLabels {
                tenant: Arc::clone(tenant.value()),
                activity,
            })
        })
    }

    /// Counts a tool call (`mcp_tool_calls_total`) and its duration and category
    /// (`mcp_tool_usage_duration_seconds`).
    pub fn record_tool_call(
        &self,
        tool: &str,
        tenant: Option<&str>,
        outcome: ToolOutcome,
        duration: Duration,
    ) {
        let tool = self.tools.resolve(tool);
        let tenant = self.tenants.resolve_opt(tenant);
        self.count_tool_call(tool, tenant, outcome, duration_nanos(duration));
    }

    /// Counts one authentication (`mcp_auth_events_total` and `mcp_auth_attempts_total`).
    ///
    /// `method` is a fixed name chosen in code (`jwt`, `api_key`, `entra`, ...), never a value
    /// taken from the request.
    pub fn record_auth(&self, tenant: Option<&str>, method: &'static str, outcome: AuthOutcome) {
        let status = if outcome.is_success() {
            "success"
        } else {
            "failure"
        };
        self.auth_attempts
            .get_or_create(&AuthAttemptLabels { method, status })
            .inc();
        self.auth_events
            .get_or_create(&AuthEventLabels {
                tenant: self.tenants.value_opt(tenant),
                method,
                outcome,
            })
            .inc();
    }

    /// Counts an authentication refused by lockout, IP blocking or rate limiting.
    pub fn record_auth_rate_limited(&self, reason: AuthLimitReason) {
        self.auth_rate_limited
            .get_or_create(&AuthLimitLabels { reason })
            .inc();
    }

    /// Counts a token refresh.
    pub fn record_token_refresh(&self, kind: RefreshKind, outcome: RefreshOutcome) {
        self.token_refresh
            .get_or_create(&RefreshLabels { kind, outcome })
            .inc();
    }

    /// Counts a JWKS refresh.
    pub fn record_jwks_refresh(&self, outcome: RefreshOutcome) {
        self.jwks_refresh
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a login at `at` (bucketed by UTC time of day) and the tenant's activity.
    pub fn record_login(&self, tenant: Option<&str>, at: SystemTime) {
        self.logins
            .get_or_create(&LoginLabels {
                tenant: self.tenants.value_opt(tenant),
                time_of_day: TimeOfDay::of(at),
            })
            .inc();
        self.record_tenant_activity(tenant, TenantActivity::Login);
    }

    /// A session started: `mcp_user_sessions_active` goes up.
    pub fn session_started(&self, tenant: Option<&str>) {
        self.sessions_active
            .get_or_create(&TenantLabels {
                tenant: self.tenants.value_opt(tenant),
            })
            .inc();
    }

    /// A session ended after `duration`: the gauge goes down and the duration is observed.
    pub fn session_ended(&self, tenant: Option<&str>, duration: Duration) {
        let labels = TenantLabels {
            tenant: self.tenants.value_opt(tenant),
        };
        self.sessions_active.get_or_create(&labels).dec();
        self.session_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Counts a request refused by rate limiting and the tenant's activity.
    pub fn record_rate_limit_hit(&self, tenant: Option<&str>, scope: RateLimitScope) {
        self.rate_limit_hits
            .get_or_create(&RateLimitLabels {
                tenant: self.tenants.value_opt(tenant),
                scope,
            })
            .inc();
    }

    /// Counts a behaviour pattern.
    pub fn record_behavior(&self, tenant: Option<&str>, pattern: BehaviorPattern) {
        self.behavior
            .get_or_create(&BehaviorLabels {
                tenant: self.tenants.value_opt(tenant),
                pattern,
            })
            .inc();
    }

    /// Counts tenant activity.
    pub fn record_tenant_activity(&self, tenant: Option<&str>, activity: TenantActivity) {
        self.count_tenant_activity(self.tenants.resolve_opt(tenant), activity);
    }

    /// Notes that `user` of `tenant` was active now. The user id is hashed into a fixed-size
    /// sketch and never stored or exported.
    pub fn record_active_user(&self, tenant: Option<&str>, user: &str) {
        self.users.record(tenant, user, Instant::now());
    }

    /// Like [`Self::record_active_user`] at an explicit instant (for tests and replays).
    pub fn record_active_user_at(&self, tenant: Option<&str>, user: &str, at: Instant) {
        self.users.record(tenant, user, at);
    }

    /// The clock the layer times requests with: the CPU's time-stamp counter where it is
    /// invariant, the OS monotonic clock otherwise.
    #[cfg(feature = "tower")]
    pub(crate) fn clock(&self) -> &quanta::Clock {
        &self.clock
    }

    /// Estimated distinct users of `tenant` over the window labelled `window` (`1m`, `5m`, ...)
    /// at `at`; `None` if there is no such window.
    pub fn concurrent_users_at(&self, tenant: &str, window: &str, at: Instant) -> Option<f64> {
        self.users.estimate(tenant, window, at)
    }

    /// Bytes held by the concurrent-user sketches; bounded by the tenant cap, not by users.
    pub fn concurrent_users_memory_bytes(&self) -> usize {
        self.users.memory_bytes()
    }

    /// The upper bound of [`Self::concurrent_users_memory_bytes`] for this configuration.
    pub fn concurrent_users_memory_limit(&self, config: &MetricsConfig) -> usize {
        // Every configured tenant, `other` and the empty (no tenant) value.
        (config.tenants.cap() + 2) * self.users.per_tenant_bytes()
    }

    /// Sets the audit queue depth.
    pub fn set_audit_queue_depth(&self, depth: u64) {
        self.audit_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts audit events dropped or spooled because the queue was full.
    pub fn record_audit_dropped(&self, n: u64) {
        self.audit_dropped.inc_by(n);
    }

    /// Sets a pool's connection counts.
    pub fn set_pool_connections(&self, pool: &str, in_use: u64, idle: u64, max: u64) {
        let pool = self.pools.value_opt(Some(pool));
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.pool_connections
            .get_or_create(&PoolStateLabels {
                pool: Arc::clone(&pool),
                state: PoolState::InUse,
            })
            .set(as_i64(in_use));
        self.pool_connections
            .get_or_create(&PoolStateLabels {
                pool: Arc::clone(&pool),
                state: PoolState::Idle,
            })
            .set(as_i64(idle));
        self.pool_max
            .get_or_create(&PoolLabels { pool })
            .set(as_i64(max));
    }

    /// Counts a pool acquisition that timed out.
    pub fn record_pool_acquire_timeout(&self, pool: &str) {
        self.pool_timeouts
            .get_or_create(&PoolLabels {
                pool: self.pools.value_opt(Some(pool)),
            })
            .inc();
    }

    /// How many distinct values the `tenant` and `tool` labels currently take (not counting
    /// `other` and the empty value).
    pub fn label_cardinality(&self) -> (usize, usize) {
        (self.tenants.len(), self.tools.len())
    }
}

/// Rewrites OpenMetrics text (as prometheus-client writes it: `# HELP`, `# TYPE`, optional
/// `# UNIT`, samples, `# EOF`) into the Prometheus text format 0.0.4.
fn openmetrics_to_prometheus_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_help: Option<(&str, &str)> = None;
    let mut counter_family: Option<String> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            pending_help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => {
                    counter_family = Some(name.to_owned());
                    (format!("{name}_total"), "counter")
                }
                "unknown" | "info" | "stateset" => {
                    counter_family = None;
                    (
                        name.to_owned(),
                        if kind == "unknown" {
                            "untyped"
                        } else {
                            "gauge"
                        },
                    )
                }
                other => {
                    counter_family = (other == "counter").then(|| name.to_owned());
                    (name.to_owned(), other)
                }
            };
            if let Some((help_name, help)) = pending_help.take() {
                let help_name = if help_name == name.trim_end_matches("_total") || help_name == name
                {
                    name.as_str()
                } else {
                    help_name
                };
                out.push_str("# HELP ");
                out.push_str(help_name);
                out.push(' ');
                out.push_str(help);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            continue;
        }
        // A counter's `_created` sample has no place in the 0.0.4 format.
        if let Some(family) = &counter_family
            && line
                .strip_prefix(family.as_str())
                .is_some_and(|rest| rest.starts_with("_created"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_become_total_families() {
        let om = "# HELP mcp_requests Requests.\n# TYPE mcp_requests counter\nmcp_requests_total{a=\"b\"} 1\nmcp_requests_created 1.7e9\n# HELP d Latency.\n# TYPE d histogram\n# UNIT d seconds\nd_sum 1.0\n# EOF\n";
        let text = openmetrics_to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP mcp_requests_total Requests.\n# TYPE mcp_requests_total counter\nmcp_requests_total{a=\"b\"} 1\n# HELP d Latency.\n# TYPE d histogram\nd_sum 1.0\n"
        );
    }

    #[test]
    fn bad_configs_are_rejected() {
        let c = MetricsConfig {
            request_buckets: vec![1.0, 0.5],
            ..MetricsConfig::default()
        };
        assert_eq!(
            McpMetrics::new(&c).err(),
            Some(MetricsConfigError::Buckets("request_buckets"))
        );
        let c = MetricsConfig {
            tool_buckets: vec![],
            ..MetricsConfig::default()
        };
        assert_eq!(
            McpMetrics::new(&c).err(),
            Some(MetricsConfigError::Buckets("tool_buckets"))
        );
        let c = MetricsConfig {
            session_buckets: vec![f64::NAN],
            ..MetricsConfig::default()
        };
        assert_eq!(
            McpMetrics::new(&c).err(),
            Some(MetricsConfigError::Buckets("session_buckets"))
        );
        let c = MetricsConfig::default().tool_usage(ToolUsageThresholds {
            quick: Duration::from_secs(5),
            normal: Duration::from_secs(5),
            extended: Duration::from_secs(60),
        });
        assert_eq!(
            McpMetrics::new(&c).err(),
            Some(MetricsConfigError::Thresholds)
        );
    }

    fn call(status: u16, tool: &'static str, tenant: &'static str) -> RequestRecord<'static> {
        RequestRecord {
            method: Some("tools/call"),
            tool: Some(tool),
            tenant: Some(tenant),
            status,
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn more_statuses_than_cached_slots_are_all_counted() {
        let m = McpMetrics::new(&MetricsConfig::default().process_metrics(false)).unwrap();
        let statuses = [
            200u16, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 0,
        ];
        assert!(statuses.len() > STATUS_SLOTS);
        for (i, status) in statuses.iter().enumerate() {
            for _ in 0..=i {
                m.record_request(&call(*status, "t", "acme"));
            }
        }
        let text = m.encode().unwrap();
        for (i, status) in statuses.iter().enumerate() {
            let status = match status {
                0 => "error".to_owned(),
                s => s.to_string(),
            };
            let line = format!(
                "mcp_requests_total{{method=\"tools/call\",tool=\"t\",status=\"{status}\"}} {}\n",
                i + 1
            );
            assert!(text.contains(&line), "{line}");
        }
        let total = statuses.len() * (statuses.len() + 1) / 2;
        let count = format!(
            "mcp_request_duration_seconds_count{{method=\"tools/call\",tool=\"t\"}} {total}\n"
        );
        assert!(text.contains(&count), "{count}");
        assert!(text.contains(
            "mcp_request_errors_total{method=\"tools/call\",tool=\"t\",error_type=\"client_error\"} 22\n"
        ));
    }

    #[test]
    fn cached_handles_count_exactly_across_threads() {
        let m = McpMetrics::new(
            &MetricsConfig::default()
                .tools(LabelLimit::learned(2))
                .process_metrics(false),
        )
        .unwrap();
        const PER_THREAD: usize = 2_000;
        std::thread::scope(|scope| {
            for t in 0..4 {
                let m = &m;
                scope.spawn(move || {
                    for i in 0..PER_THREAD {
                        let tool = ["a", "b", "c"][(i + t) % 3];
                        let tenant = ["x", "y"][i % 2];
                        let status = if i % 4 == 0 { 500 } else { 200 };
                        m.observe(&call(status, tool, tenant));
                    }
                });
            }
        });
        let text = m.encode().unwrap();
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let n = (4 * PER_THREAD) as f64;
        assert_eq!(sum("mcp_requests_total{"), n);
        assert_eq!(sum("mcp_tool_calls_total{"), n);
        assert_eq!(sum("mcp_tenant_activity_total{"), n);
        assert_eq!(sum("mcp_request_duration_seconds_count{"), n);
        assert_eq!(sum("mcp_tool_usage_duration_seconds_count{"), n);
        assert_eq!(sum("mcp_request_errors_total{"), n / 4.0);
        // Two learned tools and `other`; tenant `x` saw successes and errors, `y` successes.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("mcp_tool_calls_total{"))
                .count(),
            3 * 3
        );
    }

    #[test]
    fn categories_follow_thresholds() {
        let t = ToolUsageThresholds::default();
        assert_eq!(
            t.categorise(Duration::from_millis(999)),
            DurationCategory::QuickAction
        );
        assert_eq!(
            t.categorise(Duration::from_secs(1)),
            DurationCategory::NormalUsage
        );
        assert_eq!(
            t.categorise(Duration::from_secs(10)),
            DurationCategory::ExtendedUsage
        );
        assert_eq!(
            t.categorise(Duration::from_secs(60)),
            DurationCategory::LongOperation
        );
    }

    #[test]
    fn error_types_and_time_of_day() {
        assert_eq!(ErrorType::from_status(200), None);
        assert_eq!(ErrorType::from_status(304), None);
        assert_eq!(ErrorType::from_status(0), Some(ErrorType::Internal));
        assert_eq!(
            ErrorType::from_status(401),
            Some(ErrorType::Unauthenticated)
        );
        assert_eq!(ErrorType::from_status(504), Some(ErrorType::Timeout));
        assert_eq!(ErrorType::from_status(418), Some(ErrorType::ClientError));
        assert_eq!(ErrorType::from_status(502), Some(ErrorType::ServerError));
        let at = |h: u64| TimeOfDay::of(UNIX_EPOCH + Duration::from_secs(h * 3600 + 59));
        assert_eq!(at(5), TimeOfDay::Night);
        assert_eq!(at(6), TimeOfDay::Morning);
        assert_eq!(at(17), TimeOfDay::Afternoon);
        assert_eq!(at(23), TimeOfDay::Evening);
    }
}
