//! Criterion benches: `audit/record` (enqueue on the hot path), `audit/sqlite_throughput` and
//! `audit/postgres_throughput` (sustained events per second through the batching writer).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs,
    reason = "benchmark harness: failures should stop the run loudly"
)]

use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mcp_audit::{
    AuditEvent, AuditLogger, AuditSink, AuditStore, Category, Decision, OverflowPolicy, SinkError,
};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Events per measured iteration of the throughput benches.
const EVENTS_PER_ITER: usize = 20_000;

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(Category::ToolCall)
        .subject(format!("user-{}", i % 100))
        .tenant(format!("tenant-{}", i % 10))
        .auth_method("jwt")
        .method("tools/call")
        .tool("search")
        .decision(Decision::Allow, "role user")
        .request_id(format!("req-{i}"))
        .client_ip("10.1.2.3".parse().unwrap())
        .user_agent("bench/1.0")
}

#[derive(Debug)]
struct NullSink;

#[async_trait::async_trait]
impl AuditSink for NullSink {
    fn name(&self) -> &str {
        "null"
    }

    async fn write_batch(&self, _events: &[AuditEvent]) -> Result<(), SinkError> {
        Ok(())
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "mcp-audit-bench-{tag}-{}",
        uuid::Uuid::now_v7().simple()
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Time of `try_record` alone: the queue always has room (a fresh logger per 65 536 calls,
/// events built outside the timed loop); the writer drains concurrently.
fn bench_record(c: &mut Criterion) {
    let rt = runtime();
    let dir = temp_dir("record");
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(65_536);
                left -= n;
                let logger = rt.block_on(async {
                    AuditLogger::builder(&dir)
                        .sink(NullSink)
                        .queue_capacity(65_536)
                        .overflow(OverflowPolicy::Drop)
                        .build()
                        .unwrap()
                });
                let events: Vec<_> = (0..n).map(event).collect();
                let _guard = rt.enter();
                let start = Instant::now();
                for e in events {
                    let _ = std::hint::black_box(logger.try_record(e));
                }
                total += start.elapsed();
                rt.block_on(logger.shutdown()).unwrap();
                assert_eq!(
                    logger.stats().dropped,
                    0,
                    "the queue must not overflow while measuring"
                );
            }
            total
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// Records `EVENTS_PER_ITER` events and flushes: enqueue, redaction, hash chain, batching and
/// the database inserts are all inside the measurement.
fn throughput(c: &mut Criterion, id: &str, rt: &tokio::runtime::Runtime, store: AuditStore) {
    let dir = temp_dir(id);
    let logger = rt.block_on(async {
        AuditLogger::builder(&dir)
            .sink(store)
            .queue_capacity(2 * EVENTS_PER_ITER)
            .batch_size(1_000)
            .build()
            .unwrap()
    });
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(EVENTS_PER_ITER as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(id, |b| {
        b.iter_batched(
            || (0..EVENTS_PER_ITER).map(event).collect::<Vec<_>>(),
            |events| {
                rt.block_on(async {
                    for e in events {
                        logger.try_record(e).unwrap();
                    }
                    let report = logger.flush().await.unwrap();
                    assert_eq!(report.spool_pending, 0);
                });
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    let stats = logger.stats();
    eprintln!(
        "{id}: {} events in {} batches, mean write {:?}, max write {:?}, write errors {}",
        stats.events_written,
        stats.batches,
        stats.total_write_latency / u32::try_from(stats.writes_timed.max(1)).unwrap_or(u32::MAX),
        stats.max_write_latency,
        stats.write_errors
    );
    rt.block_on(logger.shutdown()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn bench_sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = temp_dir("sqlite-db");
    std::fs::create_dir_all(&dir).unwrap();
    let store = rt.block_on(async {
        let store = AuditStore::connect_sqlite(dir.join("audit.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    });
    throughput(c, "sqlite_throughput", &rt, store);
    let _ = std::fs::remove_dir_all(dir);
}

fn bench_postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("MCP_TEST_POSTGRES_URL") else {
        eprintln!("skipping audit/postgres_throughput: MCP_TEST_POSTGRES_URL is not set");
        return;
    };
    let rt = runtime();
    let schema = format!("audit_bench_{}", uuid::Uuid::now_v7().simple());
    let (admin, store) = rt.block_on(async {
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            // Three batches in flight (`AuditSink::max_in_flight`: the pool's size but one).
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap();
        let store = AuditStore::postgres(pool);
        store.migrate().await.unwrap();
        (admin, store)
    });
    throughput(c, "postgres_throughput", &rt, store);
    rt.block_on(async {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    });
}

criterion_group!(benches, bench_record, bench_sqlite, bench_postgres);
criterion_main!(benches);
