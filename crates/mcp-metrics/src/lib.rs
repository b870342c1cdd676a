//! Observability for MCP servers: Prometheus metric families, a tower layer, logs and traces.
//!
//! `mcp-metrics` answers "how is it going?" for an MCP server or gateway. It exports the MCP
//! metric families on [prometheus-client](prometheus_client) with **bounded label
//! cardinality**, times HTTP/MCP requests in a tower layer, serves `/metrics` as OpenMetrics
//! text, sets up JSON or human-readable logs whose lines carry the request context, and
//! exports OpenTelemetry traces over OTLP/HTTP (feature `otel`). It depends on no other crate
//! of the workspace. Ready-made Grafana dashboard and Prometheus alert rules live in the
//! repository's `docs/grafana/` and `docs/prometheus/`; a test keeps them in step with
//! [`FAMILY_NAMES`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mcp_metrics::{AuthOutcome, LabelLimit, McpMetrics, MetricsConfig, RequestRecord};
//!
//! let config = MetricsConfig::default()
//!     .tenants(LabelLimit::fixed(["acme", "globex"])) // anything else is `other`
//!     .tools(LabelLimit::learned(100));               // the first 100 tools seen, then `other`
//! let metrics = Arc::new(McpMetrics::new(&config)?);
//!
//! metrics.observe(&RequestRecord {
//!     method: Some("tools/call"),
//!     tool: Some("search"),
//!     tenant: Some("acme"),
//!     status: 200,
//!     duration: Duration::from_millis(42),
//! });
//! metrics.record_auth(Some("initech"), "jwt", AuthOutcome::Expired);
//! metrics.record_active_user(Some("acme"), "user-123"); // hashed, never a label
//!
//! let text = metrics.encode()?;
//! assert!(text.contains(r#"mcp_tool_calls_total{tool="search",tenant="acme",outcome="success"} 1"#));
//! assert!(text.contains(r#"mcp_auth_events_total{tenant="other",method="jwt",outcome="expired"} 1"#));
//! assert!(text.contains(r#"mcp_concurrent_users{tenant="acme"} 1"#));
//! assert!(text.ends_with("# EOF\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With tower or axum, put [`MetricsLayer`] inside the layer that parses the JSON-RPC envelope
//! and authenticates the caller, and hand it a [`McpRequestInfo`] in the request extensions so
//! the body is parsed only once; mount [`MetricsHandler`] on `/metrics`:
//!
//! ```
//! # #[cfg(feature = "tower")] {
//! use std::sync::Arc;
//! use mcp_metrics::{McpMetrics, MetricsConfig, MetricsHandler, MetricsLayer};
//! use tower::{Layer, ServiceExt};
//!
//! let metrics = Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap());
//! // Parse the body only when no outer layer supplied a `McpRequestInfo` (at most 64 KiB).
//! let layer = MetricsLayer::new(Arc::clone(&metrics)).parse_body(64 * 1024);
//! let handler = MetricsHandler::new(metrics);
//! // axum: Router::new().route("/mcp", post(mcp)).layer(layer).route_service("/metrics", handler)
//! # let _ = (layer, handler);
//! # }
//! ```
//!
//! # Metric families
//!
//! Counters are listed with the `_total` suffix they have in the exposition.
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `mcp_requests_total` | counter | `method`, `tool`, `status` |
//! | `mcp_request_errors_total` | counter | `method`, `tool`, `error_type` |
//! | `mcp_request_duration_seconds` | histogram | `method`, `tool` |
//! | `mcp_tool_calls_total` | counter | `tool`, `tenant`, `outcome` |
//! | `mcp_tool_usage_duration_seconds` | histogram | `tool`, `category` (`quick_action`, `normal_usage`, `extended_usage`, `long_operation`) |
//! | `mcp_auth_events_total` | counter | `tenant`, `method`, `outcome` |
//! | `mcp_auth_attempts_total` | counter | `method`, `status` (`success`, `failure`) |
//! | `mcp_auth_rate_limit_exceeded_total` | counter | `reason` |
//! | `mcp_token_refresh_total` | counter | `kind`, `outcome` |
//! | `mcp_jwks_refresh_total` | counter | `outcome` |
//! | `mcp_user_sessions_active` | gauge | `tenant` |
//! | `mcp_user_logins_total` | counter | `tenant`, `time_of_day` (UTC) |
//! | `mcp_session_duration_seconds` | histogram | `tenant` |
//! | `mcp_rate_limit_hits_total` | counter | `tenant`, `scope` |
//! | `mcp_user_behavior_patterns_total` | counter | `tenant`, `pattern` |
//! | `mcp_tenant_activity_total` | counter | `tenant`, `activity` |
//! | `mcp_concurrent_users` | gauge | `tenant` (primary window, default 5 min) |
//! | `mcp_concurrent_users_detailed` | gauge | `tenant`, `window` (default `1m`, `5m`, `15m`) |
//! | `mcp_audit_queue_depth` | gauge | |
//! | `mcp_audit_events_dropped_total` | counter | |
//! | `mcp_pool_connections` | gauge | `pool`, `state` (`in_use`, `idle`) |
//! | `mcp_pool_max_connections` | gauge | `pool` |
//! | `mcp_pool_acquire_timeouts_total` | counter | `pool` |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | counter / gauges | (Linux `/proc`; absent elsewhere) |
//!
//! `method` is one of [`KNOWN_METHODS`], `http` for a request without an MCP envelope, or
//! `other`. `status` is the HTTP status, or `error` when the service failed without a
//! response. An absent tenant or tool is the empty label value. The JWKS, audit and pool
//! families are not in the seeds; they exist because the shipped alerts need them.
//!
//! Families from the seeds that were **left out**: the agent families (`mcp_agents_active`,
//! `mcp_agents_spawned_total`, `mcp_agents_failed_total`), the task and in-process memory
//! families (`mcp_tasks_*`, `mcp_memory_*`) and the neural inference families
//! (`mcp_neural_inference_duration_seconds`, `mcp_neural_tokens_processed_total`). They
//! describe an agent orchestrator and a model runtime, not an auth, rate-limit and audit
//! toolkit, and nothing in this workspace could record them. `mcp_system_cpu_usage_percent` and
//! `mcp_system_memory_usage_percent` are replaced by the standard `process_*` families, which
//! dashboards and alerts already understand.
//!
//! # Bounded cardinality
//!
//! * No user, session, request or IP id is ever a label. Users are counted by
//!   `mcp_concurrent_users*` through HyperLogLog sketches of their hashed ids.
//! * `tenant`, `tool` and `pool` values go through a [`LabelLimit`]: a fixed allow-list
//!   and/or the first N values learned, then [`OTHER`]. Values that are empty, longer than
//!   [`MAX_LABEL_VALUE_LEN`] or contain unusual characters are also folded into `other`.
//! * Every other label is a closed enum or a `&'static str` chosen in code.
//! * Concurrent users: per tenant a ring of time slots, each a HyperLogLog sketch of
//!   `2^precision` bytes; memory is `slots * 2^precision` bytes per tenant (15 KiB with the
//!   defaults) whatever the number of users, and the number of tenants is capped. The relative
//!   standard error is about `1.04 / sqrt(2^precision)`: 3.25 % at the default precision 10
//!   (small counts are close to exact). A window of `k` slots covers between `k - 1` and `k`
//!   slot lengths of history. See [`ConcurrencyConfig`].
//!
//! # Logs and traces
//!
//! The layer runs each request in an `mcp.request` span with the fields `request_id` (from
//! `x-request-id` or generated), `subject`, `tenant`, `mcp.session.id` (from the info or the
//! `Mcp-Session-Id` header), `mcp.method.name`, `gen_ai.tool.name`, `http.request.method`,
//! `url.path`, `http.response.status_code` and `trace_id`; [`logging`] prints them on every
//! line logged inside the request (JSON: under `span` and `spans`). The caller's W3C trace
//! context is taken from MCP `params._meta.traceparent` ([`McpRequestInfo::traceparent`], or
//! the parsed body) and otherwise from the `traceparent` header. With feature `otel` it becomes
//! the remote parent of the exported span ([`otel`]).
//!
//! # Benchmarks
//!
//! * `cargo bench -p mcp-metrics --all-features --bench metrics`: criterion benches
//!   `metrics/record_request`, `metrics/observe_tool_call`, `metrics/layer_overhead/*` (a
//!   trivial axum handler in process: without the layer, behind a no-op layer, with the layer,
//!   with the layer under an info-level JSON subscriber, and with the layers wrapped around the
//!   router instead of added with `Router::layer`) and `metrics/layer_overhead_http/*` (the same
//!   over loopback HTTP/1.1 keep-alive, client and server on one runtime thread: with
//!   `Router::layer`, and `around_router/*` with the layers wrapped around the router).
//! * `cargo bench -p mcp-metrics --all-features --bench layer_instructions`: the same handler
//!   served over loopback HTTP/1.1 keep-alive, counted by callgrind: server-side instructions
//!   per request for each variant and what the layer adds. Instruction counts do not depend on
//!   the machine's load, so this is the number to compare between changes; it needs
//!   `valgrind` on `PATH`. With `-- --cpu` it reports the server thread's CPU time per
//!   request (user plus system) instead, with and without the layer, interleaved.
//!
//! What the layer costs, from `layer_instructions` (user-space instructions of the server per
//! request; kernel work for the socket calls is not counted):
//!
//! | set-up | without the layer | with it | added |
//! | --- | ---: | ---: | ---: |
//! | layer wrapped around the router | 13.8k | 14.3k | 0.53k (3.9 %) |
//! | `Router::layer` (axum adds ~1.5k for any layer) | 14.8k | 17.1k | 2.3k (16 %) |
//! | `Router::layer`, info-level JSON logs | 14.8k | 27.3k | 12.5k (85 %) |
//!
//! The added count is a difference of whole-server counts. Function by function it is about
//! 0.63k instructions in the layer's code (its `call`, which the compiler inlines into
//! hyper's dispatcher, and its response future), 0.07k more in `memcpy` (the inner service's
//! future is copied into the layer's), and about -0.18k in glibc's allocator, whose paths
//! happen to be shorter in this binary with the layer (the same allocations, in the same
//! number, are made with and without it). The layer's code does this:
//!
//! * reading the [`McpRequestInfo`] from the extensions (a type-id map look-up), and the
//!   time-stamp counter twice (quanta: one `rdtsc` and a multiply each);
//! * the method label (a few word compares), and the tool and tenant labels: one hash each
//!   into a lock-free open-addressing table, compared without a call into libc, nothing
//!   written; the request keeps the labels' ids, which are read back by index at the end, so
//!   no reference count shared by all requests is touched;
//! * the concurrent-user sketch: one hash of the subject and at most one atomic `fetch_max`;
//!   the current time slot is cached, so no division is needed within a slot;
//! * at the response head, two histogram observations in whole nanoseconds (an integer
//!   compare per bucket passed, one increment, one `fetch_add` for the sum) and three counter
//!   increments, through metric handles cached on the label values (no label set is hashed);
//! * one atomic load to learn that no subscriber wants the `mcp.request` span: without one,
//!   there is no span to create, enter or close.
//!
//! Counted in CPU time instead (`layer_instructions -- --cpu`: the server thread's user plus
//! system time, so the kernel's socket work is in it), a request to the trivial handler costs
//! about 8.7 µs on an idle machine, of which only about 2 µs is user space, so the layer's
//! 0.53k instructions are about 1 % of it. On a loaded machine the per-round differences of
//! this measurement spread over several percent either way, which is why the instruction
//! counts are the reference; the criterion benches (wall-clock time) cannot resolve a
//! difference that small there either. In process, without the HTTP stack
//! (`metrics/layer_overhead/around_router/*`, a request of 0.6 to 2 µs depending on the
//! machine), the same work is a larger share, 10 % to 30 %.
//!
//! Over loopback HTTP in wall-clock time (criterion, `metrics/layer_overhead_http/*`, a whole
//! round trip of a client and the server on one thread), the variants run one after another
//! and the machine's drift between them is larger than the layer: on one quiet VM around
//! the router 30.1 -> 30.9 µs (+2.7 %), on a faster one (2026-11-21) 28.1 -> 30.2 µs, where
//! the layer's own work in process was 0.18 µs (`around_router/*`: 599 -> 778 ns) and the
//! server thread's CPU time per request about 15.9 µs (`layer_instructions -- --cpu`), so
//! about 1.1 % of it if nothing else changed. The interleaved CPU-time rounds of
//! `layer_instructions -- --cpu` say otherwise there: with 20 000 requests per round the
//! per-round differences spread over ±15 % (median -1.7 % around the router); with
//! `--requests 100000 --rounds 9` the server thread spent 12.5 -> 13.4 µs per request around
//! the router (+5.6 %, rounds +0.6 % to +21.7 %), +0.57 µs of user and +0.46 µs of system
//! time (the split comes from 10 ms ticks), five times the layer's own 0.18 µs in process. It
//! is not extra system calls: under `strace -c` both servers (`layer_instructions --serve
//! VARIANT 20000`) make the same calls per request (two `recvfrom` counting the client's, one
//! `epoll_wait`, one `writev`, one `sendto`). The likely cause, not yet confirmed, is cache
//! misses: between two requests the kernel's network path runs on the same core, so the
//! layer's state (shared metrics, label tables, histogram buckets) is cold on every request,
//! while the in-process loop keeps it hot.
//!
//! For the lowest overhead, wrap the whole router
//! (`axum::serve(listener, layer.layer(router).into_make_service())` with `axum::ServiceExt`)
//! instead of `Router::layer`, which boxes and clones the route per request for every layer.
//! With a subscriber that wants the `mcp.request` span, creating it costs more than all the
//! metrics: log at `warn` for the `mcp_metrics` target where per-request context is not needed.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tower` | yes | [`MetricsLayer`], [`MetricsHandler`], [`metrics_response`] (tower 0.5, http 1) |
//! | `logging` | yes | [`logging`]: JSON or human logs with an env filter (tracing-subscriber) |
//! | `otel` | no | [`otel`]: OTLP/HTTP trace export (opentelemetry 0.33, blocking reqwest client) and `traceparent` parents |
//! | `full` | no | all of the above |
//!
//! # MSRV
//!
//! Rust 1.94 (edition 2024), like the rest of the workspace.

#![forbid(unsafe_code)]

mod concurrency;
mod envelope;
mod families;
mod histogram;
mod labels;
mod process;
mod sketch;
mod traceparent;

pub use concurrency::{ConcurrencyConfig, ConcurrencyConfigError, MAX_SLOTS, MAX_WINDOWS};
pub use envelope::{HTTP_METHOD_LABEL, KNOWN_METHODS, McpRequestInfo};
pub use families::{
    AuthLimitReason, AuthOutcome, BehaviorPattern, DurationCategory, ErrorType, FAMILY_NAMES,
    McpMetrics, MetricsConfig, MetricsConfigError, PoolState, RateLimitScope, RefreshKind,
    RefreshOutcome, RequestRecord, TenantActivity, TimeOfDay, ToolOutcome, ToolUsageThresholds,
};
pub use labels::{LabelLimit, MAX_LABEL_VALUE_LEN, OTHER};
pub use process::ProcessStats;
pub use traceparent::{TraceParent, TraceParentError};

#[cfg(feature = "tower")]
mod exposition;
#[cfg(feature = "tower")]
mod layer;

#[cfg(feature = "tower")]
pub use exposition::{
    MetricsHandler, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, metrics_response,
    metrics_response_for,
};
#[cfg(feature = "tower")]
pub use layer::{
    BoxError, MetricsBody, MetricsLayer, MetricsService, ParseBody, ParseFuture, Passthrough,
    REQUEST_ID_HEADER, ResponseFuture, SESSION_HEADER, TRACEPARENT_HEADER,
};

#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "otel")]
pub mod otel;
