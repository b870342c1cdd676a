//! Redis classes on the real server at `MCP_TEST_REDIS_URL`, one key prefix per test:
//! saturation, command errors, applied growth outside the database budget, health against a
//! dead port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::time::Duration;

use common::{dead_port, eventually, redis_url, unique, with_cleanup};
use mcp_pool::{Action, Backend, PoolError, PoolSet, RedisClassConfig, SamplerConfig};
use redis::AsyncCommands;

fn manual() -> SamplerConfig {
    SamplerConfig::manual()
        .resolution(Duration::from_secs(1))
        .window(Duration::from_secs(3))
        .history(Duration::from_secs(60))
}

/// Deletes every key under `prefix`.
async fn cleanup(url: String, prefix: String) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    if !keys.is_empty() {
        let _: usize = conn.del(keys).await.unwrap();
    }
}

#[tokio::test]
async fn saturation_errors_and_commands_are_counted() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("mcp-pool-test");
    let config = RedisClassConfig::new("cache", url.as_str())
        .size(2)
        .acquire_timeout(Duration::from_millis(200));
    let p = prefix.clone();
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .redis(config)
                .sampler(manual())
                .build()
                .await
                .unwrap();
            let cache = set.redis("cache").unwrap().clone();
            let mut a = cache.acquire().await.unwrap();
            let b = cache.acquire().await.unwrap();
            assert_eq!(a.class(), "cache");

            let error = cache.acquire().await.unwrap_err();
            match &error {
                PoolError::Timeout { class, waited } => {
                    assert_eq!(class, "cache");
                    assert!(*waited >= Duration::from_millis(150), "{waited:?}");
                }
                other => panic!("expected a timeout, got {other:?}"),
            }

            let key = format!("{p}:greeting");
            let _: () = a.set(&key, "hello").await.unwrap();
            let value: String = a.get(&key).await.unwrap();
            assert_eq!(value, "hello");
            // A command the server refuses is an error of the class.
            let refused: redis::RedisResult<i64> = a.incr(&key, 1).await;
            assert!(refused.is_err());

            let waiter = {
                let cache = cache.clone();
                tokio::spawn(async move { cache.acquire().await.map(drop) })
            };
            tokio::task::yield_now().await;
            drop(b);
            waiter.await.unwrap().unwrap();
            drop(a);

            let snap = set.snapshot().classes.remove(0);
            assert_eq!(snap.backend, Backend::Redis);
            assert_eq!((snap.in_use, snap.idle, snap.limit), (0, 2, 2));
            assert_eq!(snap.stats.acquires, 3);
            assert_eq!(snap.stats.waits, 2);
            assert_eq!(snap.stats.timeouts, 1);
            assert_eq!(snap.stats.errors, 1);
            assert_eq!((snap.stats.opened, snap.stats.closed), (1, 0));
            assert!(!snap.budgeted);
            set.close().await;
            assert!(matches!(
                cache.acquire().await,
                Err(PoolError::Closed { .. })
            ));
        },
        cleanup(url.clone(), prefix),
    )
    .await;
}

#[tokio::test]
async fn applied_advice_grows_redis_classes_outside_the_budget() {
    let Some(url) = redis_url() else { return };
    let config = RedisClassConfig::new("sessions", url.as_str())
        .size(4)
        .max_connections(16)
        .acquire_timeout(Duration::from_millis(200));
    let set = PoolSet::builder()
        .redis(config)
        .connection_budget(0)
        .sampler(manual())
        .apply_advice(true)
        .build()
        .await
        .unwrap();
    let sessions = set.redis("sessions").unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(sessions.acquire().await.unwrap());
    }
    let advice = set.sample_now().await;
    assert_eq!(advice[0].advice.action, Action::Grow);
    assert_eq!(advice[0].applied, Some(7));
    assert_eq!(sessions.limit(), 7);
    for _ in 0..3 {
        held.push(sessions.acquire().await.unwrap());
    }
    assert_eq!(set.snapshot().classes[0].in_use, 7);
    drop(held);
    assert_eq!(set.snapshot().budget_used, 0);
    set.close().await;
}

#[tokio::test]
async fn health_fails_for_an_unreachable_server() {
    let Some(url) = redis_url() else { return };
    let dead = format!("redis://:secret-pw@127.0.0.1:{}", dead_port());
    let set = PoolSet::builder()
        .redis(RedisClassConfig::new("cache", url.as_str()))
        .redis(
            RedisClassConfig::new("locks", dead.as_str())
                .connection_timeout(Duration::from_millis(200))
                .retries(0)
                .health_timeout(Duration::from_millis(500)),
        )
        .sampler(manual())
        .connect_lazily(true)
        .build()
        .await
        .unwrap();
    let report = set.health().await;
    assert!(!report.healthy);
    assert!(report.classes[0].healthy, "{report:?}");
    let locks = &report.classes[1];
    assert_eq!(locks.class, "locks");
    assert!(!locks.healthy);
    assert!(!locks.error.as_deref().unwrap().contains("secret-pw"));

    // The reachable class counted its first connection when PING succeeded.
    eventually("first connection counted", || {
        set.snapshot().classes[0].stats.opened == 1
    })
    .await;

    let eager = PoolSet::builder()
        .redis(
            RedisClassConfig::new("locks", dead.as_str())
                .connection_timeout(Duration::from_millis(200))
                .retries(0),
        )
        .sampler(manual())
        .build()
        .await
        .unwrap_err();
    assert!(!eager.to_string().contains("secret-pw"), "{eager}");
    set.close().await;
}
