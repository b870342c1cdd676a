//! API-key behaviour on SQLite, in a temporary database file.

#![allow(
    clippy::unwrap_used,
    reason = "integration test: a failure should stop the test loudly"
)]
#![cfg(feature = "sqlite")]

mod support;

use std::future::Future;
use std::sync::Arc;

use mcp_auth_core::api_key::{ApiKeyStore, SqlApiKeyStore};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn ApiKeyStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let path = std::env::temp_dir().join(format!(
        "{}.sqlite",
        support::services::unique_name("mcp_auth_api_keys")
    ));
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let store = SqlApiKeyStore::sqlite(pool.clone());
    store.migrate().await.unwrap();
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    test(Arc::new(store)).await;
    pool.close().await;
    let _ = std::fs::remove_file(&path);
}

crate::api_key_suite!(with_store);

#[tokio::test]
async fn in_memory_database_works_with_one_connection() {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = SqlApiKeyStore::sqlite(pool);
    store.migrate().await.unwrap();
    support::api_key_suite::rotation_grace(Arc::new(store)).await;
}
