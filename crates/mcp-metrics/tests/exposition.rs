//! Every family renders with its documented name, type and labels; `/metrics` is served with
//! the OpenMetrics content type over loopback and passes `promtool check metrics`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::post;
use mcp_metrics::{
    AuthLimitReason, AuthOutcome, BehaviorPattern, FAMILY_NAMES, McpMetrics, MetricsConfig,
    MetricsHandler, MetricsLayer, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
    RateLimitScope, RefreshKind, RefreshOutcome, RequestRecord, TenantActivity, ToolOutcome,
};

/// The documented labels of every family (README table in the crate docs).
const DOCUMENTED: &[(&str, &str, &[&str])] = &[
    (
        "mcp_auth_events",
        "counter",
        &["tenant", "method", "outcome"],
    ),
    ("mcp_auth_attempts", "counter", &["method", "status"]),
    ("mcp_auth_rate_limit_exceeded", "counter", &["reason"]),
    ("mcp_token_refresh", "counter", &["kind", "outcome"]),
    ("mcp_jwks_refresh", "counter", &["outcome"]),
    ("mcp_user_sessions_active", "gauge", &["tenant"]),
    ("mcp_user_logins", "counter", &["tenant", "time_of_day"]),
    ("mcp_session_duration_seconds", "histogram", &["tenant"]),
    ("mcp_requests", "counter", &["method", "tool", "status"]),
    (
        "mcp_request_errors",
        "counter",
        &["method", "tool", "error_type"],
    ),
    (
        "mcp_request_duration_seconds",
        "histogram",
        &["method", "tool"],
    ),
    ("mcp_tool_calls", "counter", &["tool", "tenant", "outcome"]),
    (
        "mcp_tool_usage_duration_seconds",
        "histogram",
        &["tool", "category"],
    ),
    ("mcp_rate_limit_hits", "counter", &["tenant", "scope"]),
    (
        "mcp_user_behavior_patterns",
        "counter",
        &["tenant", "pattern"],
    ),
    ("mcp_tenant_activity", "counter", &["tenant", "activity"]),
    ("mcp_concurrent_users", "gauge", &["tenant"]),
    (
        "mcp_concurrent_users_detailed",
        "gauge",
        &["tenant", "window"],
    ),
    ("mcp_audit_queue_depth", "gauge", &[]),
    ("mcp_audit_events_dropped", "counter", &[]),
    ("mcp_pool_connections", "gauge", &["pool", "state"]),
    ("mcp_pool_max_connections", "gauge", &["pool"]),
    ("mcp_pool_acquire_timeouts", "counter", &["pool"]),
];

fn record_everything(m: &McpMetrics) {
    m.observe(&RequestRecord {
        method: Some("tools/call"),
        tool: Some("search"),
        tenant: Some("acme"),
        status: 200,
        duration: Duration::from_millis(12),
    });
    m.observe(&RequestRecord {
        method: Some("tools/call"),
        tool: Some("search"),
        tenant: Some("acme"),
        status: 403,
        duration: Duration::from_millis(2),
    });
    m.record_auth(Some("acme"), "jwt", AuthOutcome::Success);
    m.record_auth(None, "api_key", AuthOutcome::Expired);
    m.record_auth_rate_limited(AuthLimitReason::Lockout);
    m.record_token_refresh(RefreshKind::Proactive, RefreshOutcome::Success);
    m.record_jwks_refresh(RefreshOutcome::Failure);
    m.session_started(Some("acme"));
    m.session_started(Some("acme"));
    m.session_ended(Some("acme"), Duration::from_secs(600));
    m.record_login(
        Some("acme"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(13 * 3600),
    );
    m.record_rate_limit_hit(Some("acme"), RateLimitScope::Tenant);
    m.record_behavior(Some("acme"), BehaviorPattern::Burst);
    m.record_tenant_activity(Some("acme"), TenantActivity::Login);
    m.record_tool_call(
        "fetch",
        Some("acme"),
        ToolOutcome::Success,
        Duration::from_secs(90),
    );
    m.record_tool_call(
        "fetch",
        Some("acme"),
        ToolOutcome::Error,
        Duration::from_secs(30),
    );
    m.record_active_user(Some("acme"), "alice");
    m.record_active_user(Some("acme"), "bob");
    m.set_audit_queue_depth(17);
    m.record_audit_dropped(2);
    m.set_pool_connections("auth", 3, 7, 25);
    m.record_pool_acquire_timeout("auth");
}

#[test]
fn every_family_renders_with_documented_name_type_and_labels() {
    let metrics = McpMetrics::new(&MetricsConfig::default()).unwrap();
    record_everything(&metrics);
    let exp = common::parse(&metrics.encode().unwrap());
    assert!(exp.saw_eof, "OpenMetrics text must end with # EOF");

    for (family, ty, labels) in DOCUMENTED {
        assert_eq!(
            exp.types.get(*family).map(String::as_str),
            Some(*ty),
            "{family}"
        );
        assert!(exp.help.contains_key(*family), "{family} has HELP");
        assert!(
            !exp.family_samples(family).is_empty(),
            "{family} has samples"
        );
        let want: BTreeSet<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        assert_eq!(exp.label_names(family), want, "labels of {family}");
    }
    // No family is exported that the crate does not list, and every listed family is exported.
    let exposed = exp.exposed_families();
    let listed: BTreeSet<String> = FAMILY_NAMES.iter().map(|f| (*f).to_owned()).collect();
    if cfg!(target_os = "linux") {
        assert_eq!(exposed, listed);
    } else {
        assert!(exposed.is_subset(&listed));
    }

    // Spot-check values and the seeds' duration categories.
    let v = |name: &str, labels: &[(&str, &str)]| exp.value(name, labels);
    assert_eq!(
        v(
            "mcp_requests_total",
            &[
                ("method", "tools/call"),
                ("tool", "search"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_request_errors_total",
            &[
                ("method", "tools/call"),
                ("tool", "search"),
                ("error_type", "forbidden")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_tool_calls_total",
            &[
                ("tool", "search"),
                ("tenant", "acme"),
                ("outcome", "denied")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        exp.label_values("mcp_tool_usage_duration_seconds", "category"),
        ["extended_usage", "long_operation", "quick_action"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    assert_eq!(
        v("mcp_user_sessions_active", &[("tenant", "acme")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_user_logins_total",
            &[("tenant", "acme"), ("time_of_day", "afternoon")]
        ),
        Some(1.0)
    );
    // Two users: a HyperLogLog estimate, one low if both hash into the same register (~0.1 %).
    let users = v("mcp_concurrent_users", &[("tenant", "acme")]);
    assert!(
        matches!(users, Some(u) if u == 2.0 || u == 1.0),
        "{users:?}"
    );
    assert_eq!(
        v(
            "mcp_concurrent_users_detailed",
            &[("tenant", "acme"), ("window", "15m")]
        ),
        users
    );
    assert_eq!(
        v(
            "mcp_auth_attempts_total",
            &[("method", "api_key"), ("status", "failure")]
        ),
        Some(1.0)
    );
    // No tenant is exported as the empty value, which Prometheus treats as an absent label.
    assert_eq!(
        v(
            "mcp_auth_events_total",
            &[
                ("tenant", ""),
                ("method", "api_key"),
                ("outcome", "expired")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(v("mcp_audit_queue_depth", &[]), Some(17.0));
    assert_eq!(
        v(
            "mcp_pool_connections",
            &[("pool", "auth"), ("state", "idle")]
        ),
        Some(7.0)
    );
    assert_eq!(
        v(
            "mcp_tenant_activity_total",
            &[("tenant", "acme"), ("activity", "tool_call")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcp_tenant_activity_total",
            &[("tenant", "acme"), ("activity", "denied")]
        ),
        Some(1.0)
    );
    if cfg!(target_os = "linux") {
        assert!(v("process_resident_memory_bytes", &[]).is_some_and(|b| b > 0.0));
        assert!(v("process_open_fds", &[]).is_some_and(|n| n >= 1.0));
        assert!(v("process_cpu_seconds_total", &[]).is_some());
    }
}

#[test]
fn process_metrics_can_be_turned_off() {
    let metrics = McpMetrics::new(&MetricsConfig::default().process_metrics(false)).unwrap();
    let exp = common::parse(&metrics.encode().unwrap());
    assert!(exp.types.keys().all(|k| !k.starts_with("process_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_over_loopback_and_promtool() {
    let metrics = Arc::new(McpMetrics::new(&MetricsConfig::default()).unwrap());
    record_everything(&metrics);
    let mcp = Router::new()
        .route("/mcp", post(|| async { "ok" }))
        .layer(MetricsLayer::new(Arc::clone(&metrics)).parse_body(64 * 1024));
    let app = mcp.route_service("/metrics", MetricsHandler::new(Arc::clone(&metrics)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // One MCP request through the layer (body parsed by the layer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup"}}"#;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    }

    let (status, headers, body) = common::http_get(addr, "/metrics").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some(OPENMETRICS_CONTENT_TYPE));
    let exp = common::parse(&body);
    assert_eq!(
        exp.value(
            "mcp_requests_total",
            &[
                ("method", "tools/call"),
                ("tool", "lookup"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );

    // The same scrape in the Prometheus text format, as promtool reads it.
    let (status, headers, text) =
        common::http_get_accept(addr, "/metrics", "text/plain;version=0.0.4").await;
    server.abort();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == PROMETHEUS_TEXT_CONTENT_TYPE)
    );
    assert!(text.contains("# TYPE mcp_requests_total counter"));
    assert!(!text.contains("# EOF"));
    if let Some((ok, output)) = common::promtool(&["check", "metrics"], Some(&text)) {
        assert!(ok, "promtool check metrics failed:\n{output}\n{text}");
    }
}
