//! Criterion benches on the PostgreSQL at `MCP_TEST_POSTGRES_URL`: `pool/acquire_release`
//! (a class of a `PoolSet`: statistics, wait histogram, peak tracking), against
//! `pool/raw_sqlx_acquire_release` (a plain sqlx pool with the same options on the same
//! database), and `pool/acquire_release_applied` (the class behind its resizable limit).

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    missing_docs,
    reason = "benchmark harness: failures should stop the run loudly"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_pool::{PgClassConfig, PoolSet, SamplerConfig};
use sqlx::postgres::PgPoolOptions;

/// Connections in every pool; all open before measuring.
const CONNECTIONS: u32 = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn pool_set(url: &str, apply: bool) -> PoolSet {
    PoolSet::builder()
        .sql(
            PgClassConfig::new("bench", url)
                .size(CONNECTIONS)
                .min_connections(CONNECTIONS),
        )
        .sampler(SamplerConfig::manual())
        .apply_advice(apply)
        .build()
        .await
        .unwrap()
}

fn bench_acquire_release(c: &mut Criterion) {
    let Ok(url) = std::env::var("MCP_TEST_POSTGRES_URL") else {
        eprintln!("skipping pool benches: MCP_TEST_POSTGRES_URL is not set");
        return;
    };
    let rt = runtime();
    let (set, applied, raw) = rt.block_on(async {
        let set = pool_set(&url, false).await;
        let applied = pool_set(&url, true).await;
        let raw = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .min_connections(CONNECTIONS)
            .connect(&url)
            .await
            .unwrap();
        (set, applied, raw)
    });
    let class = set.postgres("bench").unwrap().clone();
    let applied_class = applied.postgres("bench").unwrap().clone();

    let mut group = c.benchmark_group("pool");
    group.bench_function("acquire_release", |b| {
        b.to_async(&rt).iter(|| async {
            drop(class.acquire().await.unwrap());
        });
    });
    group.bench_function("raw_sqlx_acquire_release", |b| {
        b.to_async(&rt).iter(|| async {
            drop(raw.acquire().await.unwrap());
        });
    });
    group.bench_function("acquire_release_applied", |b| {
        b.to_async(&rt).iter(|| async {
            drop(applied_class.acquire().await.unwrap());
        });
    });
    group.finish();

    rt.block_on(async {
        set.close().await;
        applied.close().await;
        raw.close().await;
    });
}

criterion_group!(benches, bench_acquire_release);
criterion_main!(benches);
