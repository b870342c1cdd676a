//! Revocation on the real Redis at `MCP_TEST_REDIS_URL`, one key prefix per test.

#![allow(
    clippy::unwrap_used,
    reason = "integration test: a failure should stop the test loudly"
)]
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
use mcp_auth_core::revocation::RedisRevocationStore;
use mcp_auth_core::token_cache::TokenCache;
use mcp_auth_core::{AuthError, AuthMethod, Clock, Principal, RevocationStore};
use mcp_auth_testkit::FakeClock;
use redis::AsyncCommands;

/// Two independent stores ("replicas", each with its own connection) on one prefix, plus
/// a raw connection for checks and clean-up.
async fn replicas() -> Option<(
    RedisRevocationStore,
    RedisRevocationStore,
    redis::aio::ConnectionManager,
    String,
)> {
    let url = support::services::service_url("MCP_TEST_REDIS_URL")?;
    let prefix = format!("{}:", support::services::unique_name("mcp-test-revoked"));
    let a = RedisRevocationStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let b = RedisRevocationStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let raw = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    Some((a, b, raw, prefix))
}

/// Deletes every key under `prefix` (bounded: a test writes only a handful).
async fn clean_up(raw: &mut redis::aio::ConnectionManager, prefix: &str) {
    let keys: Vec<String> = raw.keys(format!("{prefix}*")).await.unwrap();
    assert!(keys.len() < 100, "unexpected number of test keys");
    if !keys.is_empty() {
        let _: () = raw.del(keys).await.unwrap();
    }
}

fn token(subject: &str, jti: &str, issued_at: SystemTime) -> Principal {
    Principal::builder(subject, AuthMethod::Local)
        .token_id(jti)
        .issued_at(issued_at)
        .build()
}

async fn run<F, Fut>(test: F)
where
    F: FnOnce(
        RedisRevocationStore,
        RedisRevocationStore,
        redis::aio::ConnectionManager,
        String,
    ) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((a, b, mut raw, prefix)) = replicas().await else {
        return;
    };
    let outcome = tokio::spawn(test(a, b, raw.clone(), prefix.clone())).await;
    clean_up(&mut raw, &prefix).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn replicas_see_token_revocation_at_once_with_ttl() {
    run(|a, b, mut raw, prefix| async move {
        let now = SystemTime::now();
        let alice = token("alice", "jti-1", now - Duration::from_secs(10));
        assert!(!a.is_revoked(&alice).await.unwrap());
        assert!(!b.is_revoked(&alice).await.unwrap());

        let exp = now + Duration::from_secs(600);
        a.revoke_token("jti-1", exp).await.unwrap();
        assert!(b.is_revoked(&alice).await.unwrap());
        assert!(a.is_revoked(&alice).await.unwrap());
        assert!(!b.is_revoked(&token("alice", "jti-2", now)).await.unwrap());

        // The key lives until exp plus the default 120 s margin, and no longer.
        let pttl: i64 = raw.pttl(format!("{prefix}jti:jti-1")).await.unwrap();
        assert!(pttl > 600_000 && pttl <= 720_000, "{pttl}");
        assert_eq!(a.token_key("jti-1"), format!("{prefix}jti:jti-1"));
        // A later call with an earlier expiry (a replay, a caller's mistake) never shortens it.
        b.revoke_token("jti-1", now + Duration::from_secs(5))
            .await
            .unwrap();
        let pttl: i64 = raw.pttl(format!("{prefix}jti:jti-1")).await.unwrap();
        assert!(pttl > 600_000 && pttl <= 720_000, "{pttl}");
        assert!(a.is_revoked(&alice).await.unwrap());

        // A token already past expiry and margin writes nothing.
        b.revoke_token("jti-old", now - Duration::from_secs(3600))
            .await
            .unwrap();
        let exists: bool = raw.exists(format!("{prefix}jti:jti-old")).await.unwrap();
        assert!(!exists);
    })
    .await;
}

#[tokio::test]
async fn subject_revocation_honours_issued_before() {
    run(|a, b, mut raw, prefix| async move {
        let now = SystemTime::now();
        let cutoff = now - Duration::from_secs(60);
        b.revoke_subject("bob", cutoff, now + Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            a.is_revoked(&token("bob", "old", cutoff - Duration::from_secs(5)))
                .await
                .unwrap()
        );
        assert!(
            !a.is_revoked(&token("bob", "new", cutoff + Duration::from_secs(5)))
                .await
                .unwrap()
        );
        assert!(
            !a.is_revoked(&token("carol", "old", cutoff - Duration::from_secs(5)))
                .await
                .unwrap()
        );
        // Without a jti or an issue time the subject entry still applies.
        let bare = Principal::builder("bob", AuthMethod::Local).build();
        assert!(a.is_revoked(&bare).await.unwrap());

        // An older cut-off or an earlier expiry never weakens the entry.
        a.revoke_subject(
            "bob",
            cutoff - Duration::from_secs(600),
            now + Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(
            b.is_revoked(&token("bob", "x", cutoff - Duration::from_secs(5)))
                .await
                .unwrap()
        );
        let pttl: i64 = raw.pttl(format!("{prefix}sub:bob")).await.unwrap();
        assert!(pttl > 3_600_000, "{pttl}");

        // A later cut-off moves it forward.
        a.revoke_subject(
            "bob",
            now + Duration::from_secs(5),
            now + Duration::from_secs(3600),
        )
        .await
        .unwrap();
        assert!(
            b.is_revoked(&token("bob", "new", cutoff + Duration::from_secs(5)))
                .await
                .unwrap()
        );
    })
    .await;
}

#[tokio::test]
async fn injected_clock_decides_what_is_already_expired() {
    run(|a, _b, mut raw, prefix| async move {
        // The store's clock is a year ahead: a token expiring in a day is already dead.
        let clock = FakeClock::at(SystemTime::now() + Duration::from_secs(365 * 24 * 3600));
        let a = a
            .with_clock(Arc::new(clock.clone()))
            .with_retention_margin(Duration::ZERO);
        a.revoke_token("t", SystemTime::now() + Duration::from_secs(86_400))
            .await
            .unwrap();
        let exists: bool = raw.exists(format!("{prefix}jti:t")).await.unwrap();
        assert!(!exists);
        a.revoke_token("t", clock.now() + Duration::from_secs(60))
            .await
            .unwrap();
        let exists: bool = raw.exists(format!("{prefix}jti:t")).await.unwrap();
        assert!(exists);
    })
    .await;
}

/// A JWT verifier as one replica runs it: its own validated-token cache, the shared Redis.
fn replica(issuer: &LocalIssuer, store: RedisRevocationStore) -> JwtAuthenticator {
    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .algorithms([issuer.algorithm()])
        .build()
        .unwrap();
    let keys = Arc::new(KeySet::from_jwk_set(&issuer.jwks(), 8));
    JwtAuthenticator::builder(validator, keys)
        .revocation(Arc::new(store))
        .build()
}

#[tokio::test]
async fn a_revocation_on_one_replica_stops_the_next_request_on_another() {
    run(|a, b, _raw, _prefix| async move {
        let issuer = LocalIssuer::builder("https://auth.example", "mcp")
            .build()
            .unwrap();
        let replica_b = replica(&issuer, b);
        let token = issuer.issue(&IssueRequest::new("alice")).unwrap();
        let other = issuer.issue(&IssueRequest::new("bob")).unwrap();

        // Replica B has verified both tokens and holds them in its validated-token cache.
        for t in [&token, &other] {
            replica_b.verify(t.token.expose()).await.unwrap();
            let hash = TokenCache::hash(t.token.expose());
            assert!(replica_b.token_cache().unwrap().get(&hash).is_some());
        }

        // Replica A revokes alice's token; B's very next request with it is refused.
        a.revoke_token(&token.jti, token.expires_at).await.unwrap();
        assert!(matches!(
            replica_b.verify(token.token.expose()).await,
            Err(AuthError::Revoked)
        ));
        replica_b.verify(other.token.expose()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_is_unavailable() {
    let error = RedisRevocationStore::connect("redis://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::Unavailable { .. }), "{error:?}");
}
