//! The API-key store on mcp-pool classes (feature `pool`): the whole store suite on a SQLite
//! class and on a PostgreSQL class (the real server at `MCP_TEST_POSTGRES_URL`, a schema per
//! test), every store operation counted as an acquire of the class, and a saturated class
//! failing the store with its typed timeout.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]
#![cfg(all(feature = "pool", feature = "sqlite", feature = "postgres"))]

mod support;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mcp_auth_core::Secret;
use mcp_auth_core::api_key::{ApiKeyError, ApiKeyManager, ApiKeyStore, NewApiKey, SqlApiKeyStore};
use mcp_pool::{
    ClassSnapshot, PgClassConfig, PoolError, PoolSet, SamplerConfig, SqliteClassConfig,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, PgPool};

fn auth_class(set: &PoolSet) -> ClassSnapshot {
    set.snapshot()
        .classes
        .into_iter()
        .find(|c| c.class == "auth")
        .unwrap()
}

/// Waits until no connection of the class is out (sqlx takes a returned connection back in
/// a task of its own), and fails if one stays out.
async fn all_returned(set: &PoolSet) {
    for _ in 0..500 {
        if auth_class(set).in_use == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a connection stayed out: {:?}", auth_class(set));
}

/// After a store test: the class counted the store's work and has every connection back.
async fn check_the_class(set: &PoolSet) {
    all_returned(set).await;
    let stats = auth_class(set).stats;
    assert!(stats.acquires > 1, "{stats:?}");
    assert_eq!((stats.timeouts, stats.errors), (0, 0), "{stats:?}");
    assert_eq!(stats.acquire_wait.count, stats.acquires, "{stats:?}");
}

/// A SQLite file's options and a guard that removes it.
struct SqliteFile(std::path::PathBuf);

impl SqliteFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!(
            "{}.sqlite",
            support::services::unique_name("mcp_auth_api_keys_pool")
        )))
    }

    fn options(&self) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(&self.0)
            .create_if_missing(true)
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

mod sqlite {
    use super::*;

    async fn with_store<F, Fut>(test: F)
    where
        F: FnOnce(Arc<dyn ApiKeyStore>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let file = SqliteFile::new();
        let set = PoolSet::builder()
            .sql(SqliteClassConfig::with_options("auth", file.options()).size(4))
            .sampler(SamplerConfig::manual())
            .build()
            .await
            .unwrap();
        let store = SqlApiKeyStore::sqlite(set.sqlite("auth").unwrap().clone());
        store.migrate().await.unwrap();
        assert_eq!(auth_class(&set).stats.acquires, 1, "the migration");
        test(Arc::new(store)).await;
        check_the_class(&set).await;
        set.close().await;
    }

    crate::api_key_suite!(with_store);
}

mod postgres {
    use super::*;

    /// A pool set with class `auth` (2 connections, `acquire_timeout`) on the test database,
    /// and the test's schema name.
    async fn set(acquire_timeout: Duration) -> Option<(PoolSet, PgPool, String)> {
        let url = support::services::service_url("MCP_TEST_POSTGRES_URL")?;
        let set = PoolSet::builder()
            .sql(
                PgClassConfig::with_options("auth", PgConnectOptions::from_str(&url).unwrap())
                    .size(2)
                    .acquire_timeout(acquire_timeout),
            )
            .sampler(SamplerConfig::manual())
            .build()
            .await
            .unwrap();
        let admin = PgPool::connect(&url).await.unwrap();
        Some((
            set,
            admin,
            support::services::unique_name("mcp_test_keys_pool"),
        ))
    }

    async fn drop_schema(admin: &PgPool, schema: &str) {
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(admin)
        .await
        .unwrap();
    }

    async fn with_store<F, Fut>(test: F)
    where
        F: FnOnce(Arc<dyn ApiKeyStore>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some((set, admin, schema)) = set(Duration::from_secs(10)).await else {
            return;
        };
        let class = set.postgres("auth").unwrap().clone();
        let store = SqlApiKeyStore::postgres_in_schema(class, &schema).unwrap();
        // The schema's migration runs on a connection of its own (from the class's connect
        // options), not on one of the class.
        store.migrate().await.unwrap();
        assert_eq!(auth_class(&set).stats.acquires, 0);
        let outcome = tokio::spawn(test(Arc::new(store))).await;
        if outcome.is_ok() {
            check_the_class(&set).await;
        }
        set.close().await;
        drop_schema(&admin, &schema).await;
        if let Err(error) = outcome {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    crate::api_key_suite!(with_store);

    /// The schema holds the table and the migrations table, made through a class's connect
    /// options; a class with every connection out fails the store with its typed timeout.
    #[tokio::test]
    async fn schema_migration_and_a_saturated_class() {
        // The class opens its first connection within the acquire timeout, so it is not too
        // short for a loaded machine.
        let Some((set, admin, schema)) = set(Duration::from_secs(1)).await else {
            return;
        };
        let class = set.postgres("auth").unwrap().clone();
        let store = SqlApiKeyStore::postgres_in_schema(class.clone(), &schema).unwrap();
        store.migrate().await.unwrap();
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 ORDER BY table_name",
        )
        .bind(&schema)
        .fetch_all(&admin)
        .await
        .unwrap();
        let names: Vec<&str> = tables.iter().map(|(n,)| n.as_str()).collect();

        let keys = ApiKeyManager::builder(
            Arc::new(store.clone()),
            Secret::new("pool-test-pepper-0123456789abcdef-0123"),
        )
        .build()
        .unwrap();
        let issued = keys.issue(NewApiKey::new("zoe")).await;
        let held = [
            class.acquire().await.unwrap(),
            class.acquire().await.unwrap(),
        ];
        let refused = store.get("any").await;
        drop(held);
        let stats = auth_class(&set).stats;
        set.close().await;
        drop_schema(&admin, &schema).await;

        assert_eq!(names, ["_mcp_auth_api_keys_migrations", "mcp_api_keys"]);
        assert!(issued.is_ok(), "{issued:?}");
        let Err(ApiKeyError::Store {
            source: Some(source),
            ..
        }) = &refused
        else {
            panic!("not a store error: {refused:?}");
        };
        let io = source
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| match e {
                sqlx::Error::Io(io) => Some(io),
                _ => None,
            })
            .unwrap_or_else(|| panic!("not an I/O error: {source:?}"));
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        let typed = io.get_ref().and_then(|e| e.downcast_ref::<PoolError>());
        assert_eq!(typed.map(PoolError::class), Some("auth"), "{source}");
        assert_eq!(stats.timeouts, 1, "{stats:?}");
    }
}
