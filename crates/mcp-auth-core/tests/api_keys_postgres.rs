//! API-key behaviour on the real PostgreSQL at `MCP_TEST_POSTGRES_URL`, one schema per test.

#![allow(
    clippy::unwrap_used,
    reason = "integration test: a failure should stop the test loudly"
)]
#![cfg(feature = "postgres")]

mod support;

use std::future::Future;
use std::sync::Arc;

use mcp_auth_core::api_key::{ApiKeyStore, NewApiKey, SqlApiKeyStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

/// A pool and a fresh schema name, or `None` when PostgreSQL is not configured.
async fn pool() -> Option<(PgPool, String)> {
    let url = support::services::service_url("MCP_TEST_POSTGRES_URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    Some((pool, support::services::unique_name("mcp_test_keys")))
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// Runs `test` on a store in its own schema, and drops the schema even if the test panics.
async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn ApiKeyStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((pool, schema)) = pool().await else {
        return;
    };
    let store = SqlApiKeyStore::postgres_in_schema(pool.clone(), &schema).unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let outcome = tokio::spawn(test(Arc::new(store))).await;
    drop_schema(&pool, &schema).await;
    pool.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

crate::api_key_suite!(with_store);

#[tokio::test]
async fn schema_holds_the_table_and_concurrent_migrations_agree() {
    let Some((pool, schema)) = pool().await else {
        return;
    };
    let stores: Vec<SqlApiKeyStore> = (0..3)
        .map(|_| SqlApiKeyStore::postgres_in_schema(pool.clone(), &schema).unwrap())
        .collect();
    let (a, b, c) = tokio::join!(
        stores[0].migrate(),
        stores[1].migrate(),
        stores[2].migrate()
    );
    let results = [a, b, c];
    let outcome = tokio::spawn({
        let pool = pool.clone();
        let schema = schema.clone();
        let store = stores[0].clone();
        async move {
            for result in results {
                result.unwrap();
            }
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = $1 ORDER BY table_name",
            )
            .bind(&schema)
            .fetch_all(&pool)
            .await
            .unwrap();
            let names: Vec<&str> = tables.iter().map(|(n,)| n.as_str()).collect();
            assert_eq!(names, ["_mcp_auth_api_keys_migrations", "mcp_api_keys"]);

            // The plaintext key is nowhere in the table.
            let keys = mcp_auth_core::api_key::ApiKeyManager::builder(
                Arc::new(store),
                mcp_auth_core::Secret::new("postgres-test-pepper-0123456789abcdef"),
            )
            .build()
            .unwrap();
            let issued = keys.issue(NewApiKey::new("zoe")).await.unwrap();
            let secret = issued.key.expose().rsplit('_').next().unwrap().to_owned();
            let dump: (String,) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT string_agg(t::text, ',') FROM \"{schema}\".mcp_api_keys t"
            )))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(dump.0.contains(&issued.record.key_id));
            assert!(!dump.0.contains(&secret));
        }
    })
    .await;
    drop_schema(&pool, &schema).await;
    pool.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn unreachable_database_is_unavailable() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let store = Arc::new(SqlApiKeyStore::postgres(pool));
    let keys = mcp_auth_core::api_key::ApiKeyManager::builder(
        store,
        mcp_auth_core::Secret::new("postgres-test-pepper-0123456789abcdef"),
    )
    .build()
    .unwrap();
    let key = format!("mcpk_0123456789abcdef_{}", "a".repeat(43));
    let error = keys.verify(&key).await.unwrap_err();
    assert!(
        matches!(error, mcp_auth_core::AuthError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
}
