//! Criterion benches: `ratelimit/memory_gcra`, `ratelimit/memory_contended`,
//! `ratelimit/governor_keyed` (the governor crate on the same workload) and
//! `ratelimit/redis_gcra` (real Redis at `MCP_TEST_REDIS_URL`, pipelined on one connection).
//!
//! `memory_gcra` and `governor_keyed` do the same work per iteration: the same 10k keys in
//! the same order, the same quota (1000/s, burst 1000), and one read of the same TSC clock
//! (quanta; governor reads it inside `check_key`). The store also computes the remaining
//! quota and reset time, which governor's `check_key` does not.

#![expect(
    clippy::expect_used,
    reason = "a bench stops loudly when its setup fails"
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_ratelimit::{Algorithm, Charge, Clock, MemoryStore, Quota, SystemClock};

const KEYS: usize = 10_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:v:client-{i:05}")).collect()
}

fn quota() -> Quota {
    "1000/s".parse().expect("valid quota")
}

fn memory(c: &mut Criterion) {
    let keys = keys();
    let q = quota();
    let clock = SystemClock::new();
    let store = MemoryStore::new();
    let mut group = c.benchmark_group("ratelimit");

    let mut i = 0;
    group.bench_function("memory_gcra", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let charge = Charge::new(&keys[i], &q, Algorithm::Gcra, 1, clock.now());
            black_box(store.charge_now(&charge).allowed)
        });
    });

    group.bench_function("memory_contended", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2_u64 {
                    let (store, keys, q, clock) = (&store, &keys, &q, &clock);
                    s.spawn(move || {
                        let mut i = usize::try_from(t).unwrap_or(0) * 7;
                        for _ in 0..iters.div_ceil(2) {
                            i = (i + 1) % KEYS;
                            let charge = Charge::new(&keys[i], q, Algorithm::Gcra, 1, clock.now());
                            black_box(store.charge_now(&charge).allowed);
                        }
                    });
                }
            });
            start.elapsed()
        });
    });

    let governor = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1000).expect("non-zero"),
    ));
    let mut i = 0;
    group.bench_function("governor_keyed", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(governor.check_key(&keys[i]).is_ok())
        });
    });
    group.finish();
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use std::time::Duration;

    use mcp_ratelimit::{RedisStore, RedisStoreConfig};

    let Ok(url) = std::env::var("MCP_TEST_REDIS_URL") else {
        #[expect(clippy::print_stderr, reason = "a skipped bench says why")]
        {
            eprintln!("ratelimit/redis_gcra skipped: MCP_TEST_REDIS_URL is not set");
        }
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = RedisStoreConfig {
        prefix: format!("mcp-rl-bench-{}", std::process::id()),
        ..RedisStoreConfig::default()
    };
    let store = rt
        .block_on(async { RedisStore::open(&url, &config) })
        .expect("redis store");
    let keys = keys();
    let q = quota();
    let clock = SystemClock::new();
    const IN_FLIGHT: u64 = 128;
    let mut group = c.benchmark_group("ratelimit");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("redis_gcra", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut done = 0;
                while done < iters {
                    let n = IN_FLIGHT.min(iters - done);
                    let now = clock.now();
                    let charges: Vec<Charge<'_>> = (0..n)
                        .map(|j| {
                            let k = &keys[usize::try_from(done + j).unwrap_or(0) % KEYS];
                            Charge::new(k, &q, Algorithm::Gcra, 1, now)
                        })
                        .collect();
                    for out in store.charge_batch(&charges).await.expect("redis answered") {
                        black_box(out.allowed);
                    }
                    done += n;
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    #[expect(clippy::print_stderr, reason = "a skipped bench says why")]
    {
        eprintln!("ratelimit/redis_gcra skipped: build with --features redis");
    }
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
