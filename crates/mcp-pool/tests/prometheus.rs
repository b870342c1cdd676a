//! The prometheus-client export: families, labels and values after real acquires on SQLite.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use mcp_pool::{PoolError, PoolSet, SamplerConfig, SqliteClassConfig};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

#[tokio::test]
async fn statistics_are_exported_per_class() {
    let url = "sqlite:file:mcp-pool-prometheus?mode=memory&cache=shared";
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::new("read", url)
                .size(2)
                .max_connections(4),
        )
        .sql(
            SqliteClassConfig::new("write", url)
                .size(1)
                .acquire_timeout(Duration::from_millis(50)),
        )
        .sampler(SamplerConfig::manual())
        .build()
        .await
        .unwrap();
    let mut registry = Registry::default();
    set.register(&mut registry);

    let write = set.sqlite("write").unwrap();
    let held = write.acquire().await.unwrap();
    assert!(matches!(
        write.acquire().await,
        Err(PoolError::Timeout { .. })
    ));
    set.sample_now().await;

    let text = exposition(&registry);
    let write_labels = r#"class="write",backend="sqlite""#;
    for line in [
        format!(r#"mcp_pool_class_connections{{{write_labels},state="in_use"}} 1"#),
        format!(r#"mcp_pool_class_connections{{{write_labels},state="idle"}} 0"#),
        format!(r#"mcp_pool_class_limit{{{write_labels}}} 1"#),
        r#"mcp_pool_class_max_connections{class="read",backend="sqlite"} 4"#.to_owned(),
        format!(r#"mcp_pool_class_recommended_limit{{{write_labels}}} 1"#),
        format!(r#"mcp_pool_class_acquires_total{{{write_labels}}} 1"#),
        format!(r#"mcp_pool_class_acquire_waits_total{{{write_labels}}} 1"#),
        format!(r#"mcp_pool_class_acquire_timeouts_total{{{write_labels}}} 1"#),
        format!(r#"mcp_pool_class_errors_total{{{write_labels}}} 0"#),
        format!(r#"mcp_pool_class_connections_opened_total{{{write_labels}}} 1"#),
        format!(r#"mcp_pool_class_connections_closed_total{{{write_labels}}} 0"#),
        format!(r#"mcp_pool_class_acquire_wait_seconds_count{{{write_labels}}} 2"#),
        format!(r#"mcp_pool_class_acquire_wait_seconds_bucket{{le="+Inf",{write_labels}}} 2"#),
    ] {
        assert!(text.contains(&line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("# TYPE mcp_pool_class_acquire_wait_seconds histogram"));
    assert!(text.contains("# TYPE mcp_pool_class_acquires counter"));
    assert!(text.ends_with("# EOF\n"));

    // The registry does not keep the set alive: once dropped, nothing is exported.
    drop(held);
    set.close().await;
    drop(set);
    assert!(!exposition(&registry).contains("mcp_pool_class"));
}
