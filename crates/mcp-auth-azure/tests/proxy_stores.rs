//! The proxy's stores behave alike: clients in memory, Redis, SQLite and PostgreSQL;
//! state records in memory and Redis. The services are the real ones named by
//! `MCP_TEST_REDIS_URL` and `MCP_TEST_POSTGRES_URL`; each test uses its own key prefix or
//! schema and removes it.
#![cfg(feature = "proxy")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

mod proxy_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcp_auth_azure::proxy::{
    ClientStore, MemoryClientStore, MemoryStateStore, ProxyError, RegisteredClient, StateStore,
};
use mcp_auth_testkit::FakeClock;

fn client(id: &str, now: SystemTime, expires_in: Option<u64>) -> RegisteredClient {
    let mut client = RegisteredClient::public(id, vec!["http://127.0.0.1/cb".into()], now);
    client.client_name = Some("suite".into());
    client.expires_at = expires_in.map(|s| client.issued_at + s);
    client
}

/// The behaviour every client store shares.
async fn client_store_suite(store: Arc<dyn ClientStore>) {
    let now = SystemTime::now();
    let forever = client("c-forever", now, None);
    let short = client("c-short", now, Some(60));
    store.insert(&forever, now).await.unwrap();
    store.insert(&short, now).await.unwrap();
    assert_eq!(
        store.get("c-forever", now).await.unwrap(),
        Some(forever.clone())
    );
    assert_eq!(
        store.get("c-short", now).await.unwrap(),
        Some(short.clone())
    );
    assert_eq!(store.get("c-unknown", now).await.unwrap(), None);
    // Expired registrations are invisible, whatever the backend still holds.
    let later = now + Duration::from_secs(61);
    assert_eq!(store.get("c-short", later).await.unwrap(), None);
    assert_eq!(store.get("c-forever", later).await.unwrap(), Some(forever));
    assert!(store.delete("c-forever").await.unwrap());
    assert!(!store.delete("c-forever").await.unwrap());
    assert_eq!(store.get("c-forever", now).await.unwrap(), None);
}

/// The behaviour every state store shares; `expire` makes the store's time pass `by`.
async fn state_store_suite<F, Fut>(store: Arc<dyn StateStore>, expire: F)
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let minute = Duration::from_secs(60);
    store.put("a", b"one", minute).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put("a", b"two", minute).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"two"[..]));
    // take is single-use, also under concurrency.
    store.put("code", b"x", minute).await.unwrap();
    let takes = futures_join((0..8).map(|_| {
        let store = Arc::clone(&store);
        async move { store.take("code").await.unwrap() }
    }))
    .await;
    assert_eq!(takes.iter().filter(|t| t.is_some()).count(), 1);
    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap());
    assert_eq!(store.get("a").await.unwrap(), None);

    store
        .put("short", b"y", Duration::from_millis(50))
        .await
        .unwrap();
    expire(Duration::from_secs(1)).await;
    assert_eq!(store.get("short").await.unwrap(), None);
    assert_eq!(store.take("short").await.unwrap(), None);
}

async fn futures_join<I, Fut>(futures: I) -> Vec<Fut::Output>
where
    I: IntoIterator<Item = Fut>,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn memory_client_store() {
    client_store_suite(Arc::new(MemoryClientStore::new())).await;
}

#[tokio::test]
async fn memory_client_store_is_bounded() {
    let store = MemoryClientStore::with_capacity(2);
    let now = SystemTime::now();
    store
        .insert(&client("a", now, Some(10)), now)
        .await
        .unwrap();
    store.insert(&client("b", now, None), now).await.unwrap();
    let full = store
        .insert(&client("c", now, None), now)
        .await
        .unwrap_err();
    assert!(matches!(full, ProxyError::Full(_)));
    // Expired clients make room.
    let later = now + Duration::from_secs(11);
    store
        .insert(&client("c", later, None), later)
        .await
        .unwrap();
    assert_eq!(store.len(), 2);
}

#[tokio::test]
async fn memory_state_store() {
    let clock = Arc::new(FakeClock::at_system_now());
    let store = Arc::new(MemoryStateStore::new().with_clock(clock.clone()));
    state_store_suite(store, |by| {
        clock.advance(by);
        async {}
    })
    .await;
    let bounded = MemoryStateStore::new().with_capacity(1);
    bounded
        .put("a", b"1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        bounded
            .put("b", b"1", Duration::from_secs(60))
            .await
            .is_err()
    );
    bounded
        .put("a", b"2", Duration::from_secs(60))
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
mod redis_stores {
    use mcp_auth_azure::proxy::store::{RedisClientStore, RedisStateStore};

    use super::proxy_support::services::{service_url, unique_name};
    use super::*;

    async fn clean(url: &str, prefix: &str) {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn redis_client_store() {
        let Some(url) = service_url("MCP_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("{}:", unique_name("mcp_test_proxy_clients"));
        let store = RedisClientStore::connect(&url)
            .await
            .unwrap()
            .with_prefix(prefix.clone());
        let outcome = tokio::spawn(client_store_suite(Arc::new(store))).await;
        clean(&url, &prefix).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    #[tokio::test]
    async fn redis_state_store() {
        let Some(url) = service_url("MCP_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("{}:", unique_name("mcp_test_proxy_state"));
        let store = RedisStateStore::connect(&url)
            .await
            .unwrap()
            .with_prefix(prefix.clone());
        let outcome = tokio::spawn(state_store_suite(Arc::new(store), |by| {
            tokio::time::sleep(by)
        }))
        .await;
        clean(&url, &prefix).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    /// The stores of one proxy replica on the Redis at `url`, keys under `prefix`.
    async fn replica_stores(
        url: &str,
        prefix: &str,
    ) -> (
        RedisClientStore,
        RedisStateStore,
        mcp_auth_core::issuer::RedisRefreshTokenStore,
    ) {
        (
            RedisClientStore::connect(url)
                .await
                .unwrap()
                .with_prefix(prefix),
            RedisStateStore::connect(url)
                .await
                .unwrap()
                .with_prefix(prefix),
            mcp_auth_core::issuer::RedisRefreshTokenStore::connect(url)
                .await
                .unwrap()
                .with_prefix(format!("{prefix}refresh:")),
        )
    }

    /// Two proxy replicas (one signing key, one issuer URL, separate processes' worth of
    /// state objects) share a login through Redis: clients, sign-in state, Entra tokens and
    /// refresh-token families.
    #[tokio::test]
    async fn two_replicas_share_a_login_through_redis() {
        use mcp_auth_azure::proxy::{OAuthProxy, SigningKeyConfig};
        use mcp_auth_core::Secret;
        use proxy_support::{AuthRequest, Harness, Options, login};

        let Some(url) = service_url("MCP_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("{}:", unique_name("mcp_test_proxy_replicas"));
        let (clients, state, refresh) = replica_stores(&url, &prefix).await;
        let harness = Harness::start_with(
            Options::default()
                .configure(|c| {
                    let key = mcp_auth_testkit::TestKey::ec_p256(1);
                    c.signing_key = Some(SigningKeyConfig::new(
                        "ES256",
                        Secret::from(key.private_pem()),
                    ));
                })
                .stores(Arc::new(clients), Arc::new(state))
                .builder(move |b| b.refresh_store(Arc::new(refresh))),
        )
        .await;
        let (url_b, prefix_b) = (url.clone(), prefix.clone());
        let outcome = tokio::spawn(async move {
            let client_id = harness.register("http://127.0.0.1:7777/cb").await;
            let request =
                AuthRequest::new(&client_id, "http://127.0.0.1:7777/cb", &harness.resource);
            let tokens = login(&harness, &request).await;

            // Replica B: same configuration, its own store objects on the same Redis.
            let (clients, state, refresh) = replica_stores(&url_b, &prefix_b).await;
            let b = OAuthProxy::builder(harness.config.clone())
                .client_store(Arc::new(clients))
                .state_store(Arc::new(state))
                .refresh_store(Arc::new(refresh))
                .build()
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let b_base = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(async move {
                axum::serve(listener, b.router()).await.unwrap();
            });
            let refresh_at = |base: String, token: String| {
                let client_id = client_id.clone();
                async move {
                    let response = reqwest::Client::new()
                        .post(format!("{base}/token"))
                        .form(&[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", token.as_str()),
                            ("client_id", client_id.as_str()),
                        ])
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    (status, response.json::<serde_json::Value>().await.unwrap())
                }
            };
            let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
            let (status, next) = refresh_at(b_base.clone(), rt1.clone()).await;
            assert_eq!(status, 200, "{next}");
            // A's authenticator accepts what B issued.
            harness
                .proxy
                .authenticator()
                .verify(next["access_token"].as_str().unwrap())
                .await
                .unwrap();
            // The token B used up comes back at A inside the grace window: a retry, which
            // supersedes what B issued. B's token is then a reuse, and the family dies on
            // both replicas.
            let (status, retried) = refresh_at(harness.base.clone(), rt1).await;
            assert_eq!(status, 200, "{retried}");
            let rt2 = next["refresh_token"].as_str().unwrap().to_owned();
            let (status, _) = refresh_at(b_base, rt2).await;
            assert_eq!(status, 400);
            let rt3 = retried["refresh_token"].as_str().unwrap().to_owned();
            let (status, _) = refresh_at(harness.base.clone(), rt3).await;
            assert_eq!(status, 400);
            server.abort();
        })
        .await;
        clean(&url, &prefix).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_store_error() {
        let store = RedisStateStore::connect("redis://127.0.0.1:1").await;
        assert!(matches!(store, Err(ProxyError::Store { .. })));
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_client_store() {
    use mcp_auth_azure::proxy::store::SqlClientStore;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = SqlClientStore::sqlite(pool);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    client_store_suite(Arc::new(store.clone())).await;
    let now = SystemTime::now();
    store
        .insert(&client("old", now, Some(1)), now)
        .await
        .unwrap();
    assert_eq!(
        store
            .purge_expired(now + Duration::from_secs(2))
            .await
            .unwrap(),
        1
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_client_store() {
    use mcp_auth_azure::proxy::store::SqlClientStore;
    use proxy_support::services::{service_url, unique_name};
    use sqlx::AssertSqlSafe;

    let Some(url) = service_url("MCP_TEST_POSTGRES_URL") else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let schema = unique_name("mcp_test_proxy_clients");
    let store = SqlClientStore::postgres_in_schema(pool.clone(), &schema).unwrap();
    // Two replicas migrating at once agree (PostgreSQL's advisory lock).
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    let migrated = a.and(b);
    let outcome = tokio::spawn(async move {
        migrated.unwrap();
        client_store_suite(Arc::new(store.clone())).await;
        let now = SystemTime::now();
        store
            .insert(&client("old", now, Some(1)), now)
            .await
            .unwrap();
        assert_eq!(
            store
                .purge_expired(now + Duration::from_secs(2))
                .await
                .unwrap(),
            1
        );
    })
    .await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
