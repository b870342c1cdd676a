//! SQLite classes on a temporary database file: saturation, applied shrinking, the
//! background sampler, health against a file that cannot be opened, configuration errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, unique};
use mcp_pool::{
    Action, AdviceConfig, Backend, ConfigError, PoolError, PoolSet, SamplerConfig,
    SqliteClassConfig, WAIT_BUCKETS_SECONDS,
};

/// A database file under the temp dir, removed (with its journal files) on drop.
struct DbFile(PathBuf);

impl DbFile {
    fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("mcp-pool-{}.db", unique(tag))))
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Drop for DbFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn manual() -> SamplerConfig {
    SamplerConfig::manual()
        .resolution(Duration::from_secs(1))
        .window(Duration::from_secs(3))
        .history(Duration::from_secs(60))
}

#[tokio::test]
async fn saturation_is_typed_and_the_snapshot_serialises() {
    let db = DbFile::new("saturation");
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::new("write", db.url())
                .size(1)
                .max_connections(2)
                .acquire_timeout(Duration::from_millis(100)),
        )
        .sampler(manual())
        .build()
        .await
        .unwrap();
    let write = set.sqlite("write").unwrap();
    let mut conn = write.acquire().await.unwrap();
    assert_eq!(conn.class(), "write");
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut *conn)
        .await
        .unwrap();

    let error = write.acquire().await.unwrap_err();
    assert!(matches!(&error, PoolError::Timeout { class, .. } if class == "write"));
    drop(conn);
    eventually("connection back", || set.snapshot().classes[0].in_use == 0).await;
    set.sample_now().await;

    let json = serde_json::to_value(set.snapshot()).unwrap();
    let class = &json["classes"][0];
    assert_eq!(class["class"], "write");
    assert_eq!(class["backend"], "sqlite");
    assert_eq!(class["stats"]["acquires"], 1);
    assert_eq!(class["stats"]["timeouts"], 1);
    assert_eq!(class["stats"]["waits"], 1);
    assert_eq!(class["stats"]["opened"], 1);
    assert_eq!(
        class["stats"]["acquire_wait"]["buckets"]
            .as_array()
            .unwrap()
            .len(),
        WAIT_BUCKETS_SECONDS.len()
    );
    assert_eq!(class["history"]["samples"], 1);
    assert_eq!(class["advice"]["action"], "grow");
    assert_eq!(class["advice"]["reason"], "waits");
    assert_eq!(json["sampler"]["window_samples"], 3);
    assert_eq!(json["connection_budget"], serde_json::Value::Null);
    set.close().await;
}

#[tokio::test]
async fn applied_shrink_closes_idle_connections_above_the_limit() {
    let db = DbFile::new("shrink");
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::new("read", db.url())
                .size(4)
                .min_connections(1)
                .acquire_timeout(Duration::from_millis(100)),
        )
        .sampler(manual())
        .apply_advice(true)
        .build()
        .await
        .unwrap();
    let read = set.sqlite("read").unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(read.acquire().await.unwrap());
    }
    held.truncate(1);
    eventually("three connections idle", || {
        set.snapshot().classes[0].idle == 3
    })
    .await;
    // Four in use at the first sample (at max already: keep), then one for a full window.
    let first = set.sample_now().await;
    assert_eq!(first[0].advice.action, Action::Keep);
    let mut last = Vec::new();
    for _ in 0..3 {
        last = set.sample_now().await;
    }
    // One in use at 60 % -> 2.
    assert_eq!(last[0].advice.action, Action::Shrink);
    assert_eq!(last[0].applied, Some(2));
    assert_eq!(read.limit(), 2);
    eventually("idle connections trimmed", || {
        set.snapshot().classes[0].size <= 2
    })
    .await;

    held.push(read.acquire().await.unwrap());
    assert!(matches!(
        read.acquire().await,
        Err(PoolError::Timeout { .. })
    ));
    drop(held);
    set.close().await;
}

#[tokio::test]
async fn the_background_sampler_fills_the_history() {
    let db = DbFile::new("background");
    let set = PoolSet::builder()
        .sql(SqliteClassConfig::new("read", db.url()).size(2))
        .sampler(
            SamplerConfig::default()
                .resolution(Duration::from_millis(20))
                .window(Duration::from_millis(60))
                .history(Duration::from_millis(100)),
        )
        .build()
        .await
        .unwrap();
    let capacity = set.snapshot().sampler.history_capacity;
    assert_eq!(capacity, 5);
    eventually("the history is full", || {
        set.history("read").unwrap().len() == 5
    })
    .await;
    let snapshot = set.snapshot();
    assert!(snapshot.classes[0].advice.is_some());
    assert!(snapshot.sampler.background);
    set.close().await;
}

#[tokio::test]
async fn health_fails_when_the_database_cannot_be_opened() {
    let missing = std::env::temp_dir()
        .join(unique("mcp-pool-missing-dir"))
        .join("db.sqlite");
    let url = format!("sqlite://{}?mode=rw", missing.display());
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::new("audit", url.clone())
                .acquire_timeout(Duration::from_millis(300))
                .health_timeout(Duration::from_millis(500)),
        )
        .sampler(manual())
        .connect_lazily(true)
        .build()
        .await
        .unwrap();
    let report = set.health().await;
    assert!(!report.healthy);
    assert_eq!(report.classes[0].backend, Backend::Sqlite);
    assert!(report.classes[0].error.is_some());
    let error = set.sqlite("audit").unwrap().acquire().await.unwrap_err();
    assert_eq!(error.class(), "audit");
    assert_eq!(set.snapshot().classes[0].stats.errors, 1);

    let eager = PoolSet::builder()
        .sql(SqliteClassConfig::new("audit", url))
        .sampler(manual())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(eager, ConfigError::Connect { ref class, .. } if class == "audit"));
}

#[tokio::test]
async fn invalid_configuration_is_refused_before_connecting() {
    let url = "sqlite::memory:";
    let build = |builder: mcp_pool::PoolSetBuilder| async move {
        builder
            .sampler(manual())
            .connect_lazily(true)
            .build()
            .await
            .unwrap_err()
    };
    let twice = build(
        PoolSet::builder()
            .sql(SqliteClassConfig::new("read", url))
            .sql(SqliteClassConfig::new("read", url)),
    )
    .await;
    assert!(matches!(twice, ConfigError::DuplicateClass { .. }));
    let bad_name = build(PoolSet::builder().sql(SqliteClassConfig::new("Read Only", url))).await;
    assert!(matches!(bad_name, ConfigError::InvalidName { .. }));
    let zero = build(PoolSet::builder().sql(SqliteClassConfig::new("read", url).size(0))).await;
    assert!(matches!(zero, ConfigError::InvalidLimits { .. }));
    let nested = build(
        PoolSet::builder().sql(
            SqliteClassConfig::new("read", url)
                .size(4)
                .min_connections(5),
        ),
    )
    .await;
    assert_eq!(
        nested.to_string(),
        "pool class `read`: min_connections 5 is above size 4"
    );
    let url_error =
        build(PoolSet::builder().sql(SqliteClassConfig::new("read", "sqlite://x?mode=bogus")))
            .await;
    assert!(matches!(url_error, ConfigError::InvalidUrl { .. }));
    let sampler = PoolSet::builder()
        .sampler(
            SamplerConfig::manual()
                .window(Duration::from_secs(1))
                .resolution(Duration::from_secs(2)),
        )
        .build()
        .await
        .unwrap_err();
    assert!(matches!(sampler, ConfigError::Sampler(_)));
    let advice = PoolSet::builder()
        .advice(AdviceConfig::default().grow_above(0.2))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(advice, ConfigError::Advice(_)));
}
