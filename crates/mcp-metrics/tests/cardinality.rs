//! Bounded cardinality: 100k distinct users, tools and tenants through the layer leave the
//! label sets and the concurrent-user memory bounded; a property test for the tenant cap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use mcp_metrics::{
    LabelLimit, McpMetrics, McpRequestInfo, MetricsConfig, MetricsLayer, OTHER, RequestRecord,
};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

const TENANT_CAP: usize = 20;
const TOOL_CAP: usize = 50;

fn config() -> MetricsConfig {
    MetricsConfig::default()
        .tenants(LabelLimit::fixed(["acme"]).and_learn(TENANT_CAP - 1))
        .tools(LabelLimit::learned(TOOL_CAP))
}

#[tokio::test]
async fn hundred_thousand_distinct_users_tools_and_tenants_stay_bounded() {
    const N: usize = 100_000;
    let config = config();
    let metrics = Arc::new(McpMetrics::new(&config).unwrap());
    let mut svc = MetricsLayer::new(Arc::clone(&metrics)).layer(tower::service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        },
    ));

    let mut memory_after_warm_up = 0;
    for i in 0..N {
        let mut req = Request::post("/mcp").body(Full::new(Bytes::new())).unwrap();
        req.extensions_mut().insert(
            McpRequestInfo::new("tools/call")
                .with_tool(format!("tool-{i}"))
                .with_tenant(format!("tenant-{i}"))
                .with_subject(format!("user-{i}"))
                .with_session(format!("session-{i}")),
        );
        svc.ready().await.unwrap().call(req).await.unwrap();
        if i == 1_000 {
            memory_after_warm_up = metrics.concurrent_users_memory_bytes();
        }
    }

    // Label values: the caps plus `other`, whatever the number of distinct inputs.
    let (tenants, tools) = metrics.label_cardinality();
    assert_eq!(tenants, TENANT_CAP);
    assert_eq!(tools, TOOL_CAP);
    let exp = common::parse(&metrics.encode().unwrap());
    let tool_values = exp.label_values("mcp_tool_calls", "tool");
    let tenant_values = exp.label_values("mcp_tool_calls", "tenant");
    assert_eq!(tool_values.len(), TOOL_CAP + 1, "{tool_values:?}");
    assert_eq!(
        tenant_values.len(),
        TENANT_CAP,
        "acme is allowed but never seen: {tenant_values:?}"
    );
    assert!(tool_values.contains(OTHER) && tenant_values.contains(OTHER));
    for family in [
        "mcp_requests",
        "mcp_request_duration_seconds",
        "mcp_tool_usage_duration_seconds",
    ] {
        assert!(
            exp.label_values(family, "tool").len() <= TOOL_CAP + 1,
            "{family}"
        );
    }
    for family in [
        "mcp_tenant_activity",
        "mcp_concurrent_users",
        "mcp_concurrent_users_detailed",
    ] {
        assert!(
            exp.label_values(family, "tenant").len() <= TENANT_CAP + 1,
            "{family}"
        );
    }
    // No user or session id leaks into any label.
    let all_values: BTreeSet<&str> = exp
        .samples
        .iter()
        .flat_map(|s| s.labels.values().map(String::as_str))
        .collect();
    assert!(
        all_values
            .iter()
            .all(|v| !v.starts_with("user-") && !v.starts_with("session-"))
    );
    // The whole exposition stays small: bounded series, not one per user.
    assert!(exp.samples.len() < 10_000, "{} samples", exp.samples.len());

    // Concurrent-user memory: fixed after the tenant cap is reached, under the documented limit.
    let memory = metrics.concurrent_users_memory_bytes();
    assert_eq!(memory, memory_after_warm_up);
    assert!(memory <= metrics.concurrent_users_memory_limit(&config));
    assert!(memory <= (TENANT_CAP + 2) * 15 * 1024, "{memory} bytes");

    // And the estimate is still a useful count: the `other` bucket saw ~99,980 distinct users.
    let other = exp
        .value("mcp_concurrent_users", &[("tenant", OTHER)])
        .unwrap();
    let want = (N - (TENANT_CAP - 1)) as f64;
    assert!(
        (other - want).abs() / want < 0.17,
        "estimate {other} for {want}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_number_of_distinct_tenants_yields_at_most_cap_plus_one_label_values(
        cap in 0usize..16,
        tenants in proptest::collection::vec("[a-z0-9-]{1,10}", 0..300),
    ) {
        let config = MetricsConfig::default().tenants(LabelLimit::learned(cap)).process_metrics(false);
        let metrics = McpMetrics::new(&config).unwrap();
        for tenant in &tenants {
            metrics.observe(&RequestRecord {
                method: Some("tools/call"),
                tool: Some("t"),
                tenant: Some(tenant),
                status: 200,
                duration: std::time::Duration::from_millis(1),
            });
            metrics.record_active_user(Some(tenant), tenant);
        }
        let exp = common::parse(&metrics.encode().unwrap());
        for family in ["mcp_tool_calls", "mcp_tenant_activity", "mcp_concurrent_users"] {
            let values = exp.label_values(family, "tenant");
            prop_assert!(values.len() <= cap + 1, "{family}: {values:?} for cap {cap}");
        }
    }
}
