//! Tests on the real Redis at `MCP_TEST_REDIS_URL`: replicas sharing one budget, the
//! memory and Redis stores deciding identically, TTLs, lockout and blocking on Redis, and
//! the failure policy when Redis is unreachable and when it comes back.
#![cfg(feature = "redis")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions stop loudly and say why they skip"
)]

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use mcp_ratelimit::{
    Algorithm, BlockConfig, Charge, DecisionSource, FailurePolicy, FakeClock, IpBlocker,
    LockoutConfig, LoginLockout, MemoryStore, Quota, RateLimitStore, RateLimiter, RedisStore,
    RedisStoreConfig, RequestKeys, Rule, Scope, Timestamp,
};
use redis::AsyncCommands;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const T0: u64 = 1_700_000_000_000_000;

fn redis_url() -> Option<String> {
    match std::env::var("MCP_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "MCP_TEST_REDIS_URL is unset but MCP_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: MCP_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// A key prefix no other test (or test run) uses, removed again by `cleanup`.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("mcp-rl-test:{test}:{}:{nanos}", std::process::id())
}

fn store(url: &str, prefix: &str) -> RedisStore {
    let config = RedisStoreConfig {
        prefix: prefix.to_owned(),
        ..RedisStoreConfig::default()
    };
    RedisStore::open(url, &config).unwrap()
}

async fn cleanup(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    if !keys.is_empty() {
        let _: usize = conn.del(keys).await.unwrap();
    }
}

fn q(s: &str) -> Quota {
    s.parse().unwrap()
}

fn limiter(store: RedisStore, clock: &FakeClock, policy: FailurePolicy) -> RateLimiter<RedisStore> {
    RateLimiter::builder()
        .rule(Rule::gcra("user", Scope::User, q("10/min")).unwrap())
        .rule(Rule::sliding_window("tenant", Scope::Tenant, q("25/min")).unwrap())
        .failure_policy(policy)
        .retry_store_after(Duration::from_secs(1))
        .clock(clock.clone())
        .build(store)
        .unwrap()
}

#[tokio::test]
async fn two_replicas_share_one_budget_exactly() {
    let Some(url) = redis_url() else { return };
    let p = prefix("replicas");
    let clock = FakeClock::new(Timestamp::from_micros(T0));
    // Two limiters with their own connections: two gateway replicas.
    let a = limiter(store(&url, &p), &clock, FailurePolicy::FailClosed);
    let b = limiter(store(&url, &p), &clock, FailurePolicy::FailClosed);
    let alice = RequestKeys::new().user("alice").tenant("acme");
    let mut allowed = [0, 0];
    for i in 0..40 {
        let (who, l) = if i % 2 == 0 { (0, &a) } else { (1, &b) };
        let d = l.check(&alice).await;
        assert_eq!(d.source(), DecisionSource::Store);
        if d.is_allowed() {
            allowed[who] += 1;
        }
    }
    assert_eq!(
        allowed,
        [5, 5],
        "the user's 10 split over both replicas, no more"
    );
    // The tenant window (25) is shared too: 10 used by alice, 15 left for anyone.
    let mut tenant_allowed = 0;
    for i in 0..40 {
        let l = if i % 3 == 0 { &a } else { &b };
        if l.check(&RequestKeys::new().user(format!("u{i}")).tenant("acme"))
            .await
            .is_allowed()
        {
            tenant_allowed += 1;
        }
    }
    assert_eq!(tenant_allowed, 15);
    // One GCRA interval (6 s) later exactly one more request passes, on either replica.
    clock.advance(Duration::from_secs(6));
    assert!(
        b.check(&RequestKeys::new().user("alice"))
            .await
            .is_allowed()
    );
    assert!(
        !a.check(&RequestKeys::new().user("alice"))
            .await
            .is_allowed()
    );
    cleanup(&url, &p).await;
}

/// A small deterministic generator, so the comparison is reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test]
async fn memory_and_redis_decide_identically() {
    let Some(url) = redis_url() else { return };
    let p = prefix("equivalence");
    let redis = store(&url, &p);
    let memory = MemoryStore::new();
    let quotas = [q("7/s burst 12"), q("3/250ms"), q("20/min")];
    let mut rng = Lcg(42);
    let mut now = T0;
    for step in 0..600 {
        now += [0, 1, 997, 50_000, 400_000][rng.next(5) as usize];
        let quota = &quotas[rng.next(3) as usize];
        let algorithm = if rng.next(2) == 0 {
            Algorithm::Gcra
        } else {
            Algorithm::SlidingWindow
        };
        let quota = if algorithm == Algorithm::SlidingWindow {
            Quota::new(quota.count(), quota.period()).unwrap()
        } else {
            *quota
        };
        let key = format!("k{}:{algorithm:?}:{quota}", rng.next(3));
        let cost = 1 + rng.next(4) as u32;
        let c = Charge::new(&key, &quota, algorithm, cost, Timestamp::from_micros(now));
        let m = memory.charge(&c).await.unwrap();
        let r = redis.charge(&c).await.unwrap();
        assert_eq!(m, r, "step {step}: {key} cost {cost} at {now}");
        if m.allowed && rng.next(4) == 0 {
            memory
                .refund(&c, Timestamp::from_micros(now))
                .await
                .unwrap();
            redis.refund(&c, Timestamp::from_micros(now)).await.unwrap();
        }
    }
    cleanup(&url, &p).await;
}

#[tokio::test]
async fn keys_have_ttls_and_hash_tags() {
    let Some(url) = redis_url() else { return };
    let p = prefix("ttl");
    let s = store(&url, &p);
    let quota = q("10/min");
    let now = Timestamp::from_micros(T0);
    for (algorithm, key) in [(Algorithm::Gcra, "g"), (Algorithm::SlidingWindow, "w")] {
        assert!(
            s.charge(&Charge::new(key, &quota, algorithm, 1, now))
                .await
                .unwrap()
                .allowed
        );
    }
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let g: i64 = conn.pttl(format!("{p}:{{g}}")).await.unwrap();
    // GCRA: one interval (6 s) of state plus the 1 s slack.
    assert!(g > 6_000 && g <= 7_000, "gcra pttl {g}");
    let w: i64 = conn.pttl(format!("{p}:{{w}}")).await.unwrap();
    assert!(w > 1_000 && w <= 121_000, "window pttl {w}");
    assert_eq!(s.redis_key("user:v:a"), format!("{p}:{{user:v:a}}"));
    let bad = RedisStoreConfig {
        prefix: "a{b}".into(),
        ..RedisStoreConfig::default()
    };
    assert!(RedisStore::open(&url, &bad).is_err());
    cleanup(&url, &p).await;
}

#[tokio::test]
async fn lockout_and_blocking_work_on_redis() {
    let Some(url) = redis_url() else { return };
    let p = prefix("lockout");
    let clock = FakeClock::new(Timestamp::from_micros(T0));
    let ip: IpAddr = "203.0.113.10".parse().unwrap();
    // Two replicas' lockouts count failures together.
    let l1 = LoginLockout::with_clock(store(&url, &p), LockoutConfig::default(), clock.clone());
    let l2 = LoginLockout::with_clock(store(&url, &p), LockoutConfig::default(), clock.clone());
    for i in 0..4 {
        let l = if i % 2 == 0 { &l1 } else { &l2 };
        assert!(!l.record_failure(ip, "alice").await.unwrap().is_locked());
    }
    l2.record_success(ip, "alice").await.unwrap();
    for _ in 0..4 {
        assert!(!l1.record_failure(ip, "alice").await.unwrap().is_locked());
    }
    assert!(l2.record_failure(ip, "alice").await.unwrap().is_locked());
    assert!(l1.check(ip, "alice").await.unwrap().is_locked());
    clock.advance(Duration::from_secs(15 * 60));
    assert!(!l1.check(ip, "alice").await.unwrap().is_locked());

    let config = BlockConfig {
        reject_threshold: NonZeroU32::new(3).unwrap(),
        ..BlockConfig::default()
    };
    let b = IpBlocker::with_clock(store(&url, &p), config, clock.clone());
    for _ in 0..2 {
        assert!(!b.record_rejection(ip).await.unwrap());
    }
    assert!(b.record_rejection(ip).await.unwrap());
    assert_eq!(
        b.blocked_for(ip).await.unwrap(),
        Some(Duration::from_secs(15 * 60))
    );
    b.unblock(ip).await.unwrap();
    assert_eq!(b.blocked_for(ip).await.unwrap(), None);
    cleanup(&url, &p).await;
}

/// A port on 127.0.0.1 with nothing listening.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn unreachable_redis_applies_each_policy() {
    let Some(_) = redis_url() else { return };
    let port = closed_port().await;
    let url = format!("redis://127.0.0.1:{port}");
    let clock = FakeClock::new(Timestamp::from_micros(T0));
    let keys = RequestKeys::new().user("alice");

    let open = limiter(store(&url, "x"), &clock, FailurePolicy::FailOpen);
    for _ in 0..20 {
        let d = open.check(&keys).await;
        assert!(d.is_allowed());
        assert_eq!(d.source(), DecisionSource::FailOpen);
    }
    let s = open.stats();
    assert_eq!(
        (s.switched_to_policy, s.fail_open_decisions, s.store_errors),
        (1, 20, 1)
    );

    let closed = limiter(store(&url, "x"), &clock, FailurePolicy::FailClosed);
    let d = closed.check(&keys).await;
    assert!(!d.is_allowed());
    assert_eq!(d.source(), DecisionSource::FailClosed);
    assert!(d.retry_after().is_some());

    let local = limiter(store(&url, "x"), &clock, FailurePolicy::default());
    let allowed = {
        let mut n = 0;
        for _ in 0..20 {
            let d = local.check(&keys).await;
            assert_eq!(d.source(), DecisionSource::Fallback);
            n += usize::from(d.is_allowed());
        }
        n
    };
    assert_eq!(allowed, 10, "the local fallback enforces the same rules");
    assert!(local.is_degraded());
    // The store is retried only after `retry_store_after`; until then no new errors.
    assert_eq!(local.stats().store_errors, 1);
    clock.advance(Duration::from_secs(2));
    local.check(&keys).await;
    let s = local.stats();
    assert_eq!(
        (s.store_errors, s.switched_to_policy),
        (2, 1),
        "one switch, counted once"
    );
}

/// A TCP proxy to Redis that can be stopped (closing every connection) and started again
/// on the same port.
struct Proxy {
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(port: u16, upstream: String) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut tasks = JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<TcpStream>();
        tasks.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                if tx.send(socket).is_err() {
                    break;
                }
            }
        });
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Some(mut client) = rx.recv().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            conns.shutdown().await;
        });
        Self { tasks }
    }

    async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

fn upstream_addr(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap();
    host_port.rsplit('@').next().unwrap().to_owned()
}

#[tokio::test]
async fn redis_coming_back_is_used_again() {
    let Some(url) = redis_url() else { return };
    let p = prefix("comeback");
    let port = closed_port().await;
    let clock = FakeClock::new(Timestamp::from_micros(T0));
    let via_proxy = limiter(
        store(&format!("redis://127.0.0.1:{port}"), &p),
        &clock,
        FailurePolicy::FallbackLocal,
    );
    let direct = limiter(store(&url, &p), &clock, FailurePolicy::FailClosed);
    let alice = RequestKeys::new().user("alice");

    // Down: the local fallback decides.
    let d = via_proxy.check(&alice).await;
    assert_eq!(d.source(), DecisionSource::Fallback);
    assert!(via_proxy.is_degraded());

    // Back: after `retry_store_after` the limiter probes Redis and uses it again. The
    // connection manager reconnects in the background, so probe a bounded number of times.
    let proxy = Proxy::start(port, upstream_addr(&url)).await;
    let mut source = DecisionSource::Fallback;
    for _ in 0..50 {
        clock.advance(Duration::from_millis(1_100));
        source = via_proxy
            .check(&RequestKeys::new().user("probe"))
            .await
            .source();
        if source == DecisionSource::Store {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source, DecisionSource::Store, "Redis was used again");
    assert!(!via_proxy.is_degraded());
    assert_eq!(via_proxy.stats().switched_to_store, 1);

    // Both limiters now share Redis: 10 for alice in total, split across them.
    let mut allowed = 0;
    for i in 0..30 {
        let l = if i % 2 == 0 { &via_proxy } else { &direct };
        let d = l.check(&alice).await;
        assert_eq!(d.source(), DecisionSource::Store);
        allowed += usize::from(d.is_allowed());
    }
    assert_eq!(allowed, 10);

    // Down again: the policy applies again and the switch is counted.
    proxy.stop().await;
    let mut source = DecisionSource::Store;
    for _ in 0..50 {
        clock.advance(Duration::from_millis(1_100));
        source = via_proxy.check(&alice).await.source();
        if source == DecisionSource::Fallback {
            break;
        }
    }
    assert_eq!(source, DecisionSource::Fallback);
    assert_eq!(via_proxy.stats().switched_to_policy, 2);
    cleanup(&url, &p).await;
}
