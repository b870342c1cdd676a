//! Refresh-token families on the real Redis at `MCP_TEST_REDIS_URL`, one key prefix per
//! test: rotation, reuse detection, the grace window, expiry, revocation, the per-family
//! bound, concurrent exchanges, and a `LocalIssuer` on two "replicas" sharing one store.

#![allow(
    clippy::unwrap_used,
    reason = "integration test: a failure should stop the test loudly"
)]
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_auth_core::issuer::{
    Exchange, IssueRequest, IssuerError, LocalIssuer, RedisRefreshTokenStore, RefreshFamily,
    RefreshTokenHash, RefreshTokenStore,
};
use mcp_auth_testkit::FakeClock;
use redis::AsyncCommands;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000 + secs)
}

fn h(token: &str) -> RefreshTokenHash {
    RefreshTokenHash::of(token)
}

fn family(id: &str, ends: u64) -> RefreshFamily {
    RefreshFamily {
        id: id.into(),
        grant: IssueRequest::new("alice")
            .tenant("acme")
            .scopes(["mcp:tools"]),
        created_at: at(0),
        expires_at: at(ends),
    }
}

/// A store on a fresh prefix, a raw connection and the prefix; `None` without Redis.
async fn store() -> Option<(
    RedisRefreshTokenStore,
    redis::aio::ConnectionManager,
    String,
)> {
    let url = support::services::service_url("MCP_TEST_REDIS_URL")?;
    let prefix = format!("{}:", support::services::unique_name("mcp-test-refresh"));
    let store = RedisRefreshTokenStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let raw = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    Some((store, raw, prefix))
}

/// Runs `test` and deletes the prefix's keys afterwards, even if it panicked.
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(RedisRefreshTokenStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, mut raw, prefix)) = store().await else {
        return;
    };
    let outcome = tokio::spawn(test(store)).await;
    let keys: Vec<String> = raw.keys(format!("{prefix}*")).await.unwrap();
    assert!(keys.len() < 200, "unexpected number of test keys");
    if !keys.is_empty() {
        let _: () = raw.del(keys).await.unwrap();
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn exchange(
    store: &RedisRefreshTokenStore,
    presented: &str,
    next: &str,
    now: u64,
    grace: u64,
) -> Exchange {
    store
        .exchange_with_grace(
            h(presented),
            h(next),
            at(900),
            at(now),
            Duration::from_secs(grace),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_then_reuse_revokes_the_family() {
    with_store(|store| async move {
        store
            .start_family(family("f", 1000), h("a"), at(100), at(0))
            .await
            .unwrap();
        match exchange(&store, "a", "b", 10, 0).await {
            Exchange::Rotated { family, expires_at } => {
                assert_eq!(family.id, "f");
                assert_eq!(family.grant.tenant.as_deref(), Some("acme"));
                assert_eq!(family.expires_at, at(1000));
                assert_eq!(expires_at, at(900));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            exchange(&store, "a", "c", 11, 0).await,
            Exchange::Reused {
                family_id: "f".into()
            }
        );
        assert_eq!(
            exchange(&store, "b", "d", 12, 0).await,
            Exchange::Revoked {
                family_id: "f".into()
            }
        );
        assert_eq!(exchange(&store, "zz", "e", 12, 0).await, Exchange::Unknown);
    })
    .await;
}

#[tokio::test]
async fn grace_window_retries_the_previous_token_only() {
    with_store(|store| async move {
        store
            .start_family(family("f", 1000), h("a"), at(900), at(0))
            .await
            .unwrap();
        assert!(matches!(
            exchange(&store, "a", "b", 10, 30).await,
            Exchange::Rotated { .. }
        ));
        assert!(matches!(
            exchange(&store, "a", "c", 20, 30).await,
            Exchange::Rotated { .. }
        ));
        // "b" was superseded by the retry.
        assert!(matches!(
            exchange(&store, "b", "d", 21, 30).await,
            Exchange::Reused { .. }
        ));

        store
            .start_family(family("g", 1000), h("p"), at(900), at(0))
            .await
            .unwrap();
        assert!(matches!(
            exchange(&store, "p", "q", 10, 30).await,
            Exchange::Rotated { .. }
        ));
        // The window closes 30 s after the exchange.
        assert!(matches!(
            exchange(&store, "p", "r", 40, 30).await,
            Exchange::Reused { .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn expiry_revocation_and_the_token_bound() {
    with_store(|store| async move {
        store
            .start_family(family("f", 150), h("a"), at(100), at(0))
            .await
            .unwrap();
        match exchange(&store, "a", "b", 50, 0).await {
            // The new token is capped at the family's end.
            Exchange::Rotated { expires_at, .. } => assert_eq!(expires_at, at(150)),
            other => panic!("{other:?}"),
        }
        assert_eq!(exchange(&store, "b", "c", 150, 0).await, Exchange::Expired);

        store
            .start_family(family("g", 1000), h("x"), at(900), at(0))
            .await
            .unwrap();
        assert!(store.revoke_family_of(h("x"), at(1)).await.unwrap());
        assert!(!store.revoke_family_of(h("nope"), at(1)).await.unwrap());
        assert!(matches!(
            exchange(&store, "x", "y", 2, 0).await,
            Exchange::Revoked { .. }
        ));

        let store = store.with_max_tokens_per_family(3);
        store
            .start_family(family("k", 1000), h("k0"), at(900), at(0))
            .await
            .unwrap();
        let mut current = "k0".to_owned();
        for n in 1..=5 {
            let next = format!("k{n}");
            assert!(matches!(
                exchange(&store, &current, &next, 10, 0).await,
                Exchange::Rotated { .. }
            ));
            current = next;
        }
        // A forgotten used token is unknown; a remembered one is a reuse.
        assert_eq!(exchange(&store, "k0", "z", 11, 0).await, Exchange::Unknown);
        assert!(matches!(
            exchange(&store, "k4", "z", 12, 0).await,
            Exchange::Reused { .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn concurrent_exchanges_let_exactly_one_through() {
    with_store(|store| async move {
        store
            .start_family(family("f", 1000), h("a"), at(900), at(0))
            .await
            .unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { exchange(&store, "a", &format!("n{i}"), 10, 0).await })
            })
            .collect();
        let mut rotated = 0;
        for handle in handles {
            if matches!(handle.await.unwrap(), Exchange::Rotated { .. }) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1);
    })
    .await;
}

#[tokio::test]
async fn two_issuer_replicas_share_the_families() {
    with_store(|store| async move {
        let clock = Arc::new(FakeClock::at_system_now());
        let shared: Arc<dyn RefreshTokenStore> = Arc::new(store);
        let a = LocalIssuer::builder("https://auth.example", "mcp")
            .clock(clock.clone())
            .refresh_store(Arc::clone(&shared))
            .build()
            .unwrap();
        let b = LocalIssuer::builder("https://auth.example", "mcp")
            .key(a.signing_key().clone())
            .clock(clock.clone())
            .refresh_store(shared)
            .build()
            .unwrap();
        let login = a
            .issue_with_refresh(&IssueRequest::new("alice").scopes(["mcp:tools"]))
            .await
            .unwrap();
        let next = b.refresh(&login.refresh_token).await.unwrap();
        assert_eq!(next.family_id, login.family_id);
        assert_eq!(next.grant.subject, "alice");
        // The token replica b used up is a reuse on replica a.
        assert!(matches!(
            a.refresh(&login.refresh_token).await.unwrap_err(),
            IssuerError::RefreshTokenReused
        ));
        assert!(matches!(
            b.refresh(&next.refresh_token).await.unwrap_err(),
            IssuerError::RefreshFamilyRevoked
        ));
    })
    .await;
}
