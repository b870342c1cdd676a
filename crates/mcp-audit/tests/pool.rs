//! The SQL store on mcp-pool classes (feature `pool`), on SQLite and on the real PostgreSQL
//! (`MCP_TEST_POSTGRES_URL`): every operation of the store is an acquire of the class, the
//! connections come back, and a class that has none free fails the store with its typed
//! timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions fail loudly too"
)]
#![cfg(all(feature = "pool", feature = "sqlite", feature = "postgres"))]

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{TempDir, postgres_url};
use mcp_audit::chain::{ChainHead, VerifyOptions};
use mcp_audit::{
    AuditEvent, AuditFilter, AuditStore, Category, Decision, PageRequest, Retention, Scope,
    StoreError, Timestamp,
};
use mcp_pool::{
    ClassSnapshot, PgClassConfig, PoolError, PoolSet, SamplerConfig, SqlBackend, SqliteClassConfig,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AssertSqlSafe, PgPool};

fn class(set: &PoolSet, name: &str) -> ClassSnapshot {
    set.snapshot()
        .classes
        .into_iter()
        .find(|c| c.class == name)
        .unwrap_or_else(|| panic!("no class {name}"))
}

fn acquires(set: &PoolSet, name: &str) -> u64 {
    class(set, name).stats.acquires
}

fn events(stream: &str, n: usize) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis(stream);
    (0..n)
        .map(|i| {
            let mut e = AuditEvent::new(Category::ToolCall)
                .subject(format!("user-{i}"))
                .tenant("acme")
                .tool("search")
                .decision(Decision::Allow, "role user");
            head.link(&mut e);
            e
        })
        .collect()
}

/// The store's operations on `set`'s classes `write` (inserts, migrations, purge) and `read`
/// (queries): each one an acquire of its class, none left out afterwards.
async fn every_operation_is_an_acquire(set: &PoolSet, write: &AuditStore, read: &AuditStore) {
    write.migrate().await.unwrap();
    assert_eq!(acquires(set, "write"), 1, "the migration");
    let batch = events("pool", 700);
    assert_eq!(write.insert(&batch).await.unwrap(), 700);
    let after_insert = acquires(set, "write");
    assert!(after_insert >= 2, "the insert: {after_insert}");
    // A replay is idempotent through the class too.
    assert_eq!(write.insert(&batch).await.unwrap(), 0);
    assert!(acquires(set, "write") > after_insert);

    assert_eq!(acquires(set, "read"), 0);
    let page = read
        .query(&Scope::All, &AuditFilter::new(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 10);
    assert_eq!(acquires(set, "read"), 1, "one query");
    assert_eq!(
        read.count(&Scope::Tenant("acme".into()), &AuditFilter::new())
            .await
            .unwrap(),
        700
    );
    assert_eq!(acquires(set, "read"), 2, "one count");
    let report = read
        .verify_chain("pool", VerifyOptions::from_genesis("pool"))
        .await
        .unwrap();
    assert!(report.is_intact());
    assert_eq!(acquires(set, "read"), 3, "one page of the chain");

    let before_purge = acquires(set, "write");
    let far_future = Timestamp::now().saturating_add(Duration::from_secs(3_600));
    let purged = write
        .purge(Retention::default().max_age(Duration::ZERO), far_future)
        .await
        .unwrap();
    assert_eq!(purged, 700);
    assert_eq!(acquires(set, "write"), before_purge + 1, "one delete batch");

    for name in ["write", "read"] {
        all_returned(set, name).await;
        let c = class(set, name);
        assert_eq!((c.stats.timeouts, c.stats.errors), (0, 0), "{name}");
        // The acquire-wait histogram holds every acquire.
        assert_eq!(c.stats.acquire_wait.count, c.stats.acquires, "{name}");
    }
}

/// Waits until no connection of class `name` is out (sqlx takes a returned connection back
/// in a task of its own, after a ping), and fails if one stays out.
async fn all_returned(set: &PoolSet, name: &str) {
    for _ in 0..500 {
        if class(set, name).in_use == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name}: a connection stayed out: {:?}", class(set, name));
}

/// With every connection the class `write` allows out, the store's insert times out with
/// the class's typed error inside the sqlx error, and the class counts the timeout.
async fn a_saturated_class_times_the_store_out<DB: SqlBackend>(set: &PoolSet, store: &AuditStore) {
    let write = set.sql::<DB>("write").unwrap();
    let mut held = Vec::new();
    for _ in 0..write.limit() {
        held.push(write.acquire().await.unwrap());
    }
    let timeouts = class(set, "write").stats.timeouts;
    let error = store.insert(&events("held", 1)).await.unwrap_err();
    drop(held);
    let sqlx::Error::Io(io) = &error else {
        panic!("not a timeout: {error:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let typed = io.get_ref().and_then(|e| e.downcast_ref::<PoolError>());
    assert_eq!(typed.map(PoolError::class), Some("write"), "{error}");
    let stats = class(set, "write").stats;
    assert_eq!(stats.timeouts, timeouts + 1);
    assert!(stats.waits >= stats.timeouts);
    // The connections are free again: the same insert goes through.
    assert_eq!(store.insert(&events("held", 1)).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_store_on_classes() {
    let dir = TempDir::new("pool-sqlite");
    let options = SqliteConnectOptions::new()
        .filename(dir.path("audit.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let set = PoolSet::builder()
        .sql(SqliteClassConfig::with_options("write", options.clone()).size(1))
        .sql(SqliteClassConfig::with_options("read", options).size(2))
        .sampler(SamplerConfig::manual())
        .build()
        .await
        .unwrap();
    let write = AuditStore::sqlite(set.sqlite("write").unwrap().clone());
    let read = AuditStore::sqlite(set.sqlite("read").unwrap().clone());
    every_operation_is_an_acquire(&set, &write, &read).await;
    set.close().await;
}

#[tokio::test]
async fn sqlite_store_times_out_on_a_saturated_class() {
    let dir = TempDir::new("pool-sqlite-timeout");
    let options = SqliteConnectOptions::new()
        .filename(dir.path("audit.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::with_options("write", options)
                .size(1)
                .acquire_timeout(Duration::from_millis(500)),
        )
        .sampler(SamplerConfig::manual())
        .build()
        .await
        .unwrap();
    let store = AuditStore::sqlite(set.sqlite("write").unwrap().clone());
    store.migrate().await.unwrap();
    a_saturated_class_times_the_store_out::<sqlx::Sqlite>(&set, &store).await;
    set.close().await;
}

/// Runs `body` with a pool set whose classes `write` (4 connections, applied advice) and
/// `read` are in a fresh schema of the test database, then drops the schema.
async fn with_pg_set<F, Fut>(tag: &str, acquire_timeout: Duration, body: F)
where
    F: FnOnce(PoolSet) -> Fut,
    Fut: Future<Output = PoolSet> + Send + 'static,
{
    let Some(url) = postgres_url() else { return };
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_pool_{tag}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let set = PoolSet::builder()
        .sql(
            PgClassConfig::with_options("write", options.clone())
                .size(2)
                .max_connections(4)
                .acquire_timeout(acquire_timeout),
        )
        .sql(PgClassConfig::with_options("read", options).size(2))
        .sampler(SamplerConfig::manual())
        .apply_advice(true)
        .build()
        .await
        .unwrap();
    let result = tokio::spawn(body(set)).await;
    if let Ok(set) = &result {
        set.close().await;
    }
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn pg_store_on_classes() {
    with_pg_set("ops", Duration::from_secs(5), |set| async move {
        // Two parallel copies per insert, each on a connection of the class.
        let write =
            AuditStore::postgres(set.postgres("write").unwrap().clone()).write_connections(2);
        let read = AuditStore::postgres(set.postgres("read").unwrap().clone());
        every_operation_is_an_acquire(&set, &write, &read).await;
        set
    })
    .await;
}

#[tokio::test]
async fn pg_store_keeps_to_the_applied_limit() {
    with_pg_set("limit", Duration::from_secs(2), |set| async move {
        // The class's limit (2 of at most 4) bounds the parallel copies, not the pool's 4.
        let store =
            AuditStore::postgres(set.postgres("write").unwrap().clone()).write_connections(8);
        store.migrate().await.unwrap();
        assert_eq!(store.insert(&events("limit", 2_000)).await.unwrap(), 2_000);
        let stats = class(&set, "write").stats;
        assert_eq!(
            (stats.waits, stats.timeouts),
            (0, 0),
            "never more parts at once than the limit"
        );
        a_saturated_class_times_the_store_out::<sqlx::Postgres>(&set, &store).await;
        set
    })
    .await;
}

#[tokio::test]
async fn store_errors_keep_the_class_of_a_timeout() {
    // The query side reports a timeout through `StoreError::Database`.
    let dir = TempDir::new("pool-sqlite-query-timeout");
    let options = SqliteConnectOptions::new()
        .filename(dir.path("audit.db"))
        .create_if_missing(true);
    let set = PoolSet::builder()
        .sql(
            SqliteClassConfig::with_options("read", options)
                .size(1)
                .acquire_timeout(Duration::from_millis(500)),
        )
        .sampler(SamplerConfig::manual())
        .build()
        .await
        .unwrap();
    let class = set.sqlite("read").unwrap().clone();
    let store = AuditStore::sqlite(class.clone());
    store.migrate().await.unwrap();
    let held = class.acquire().await.unwrap();
    let error = store
        .count(&Scope::All, &AuditFilter::new())
        .await
        .unwrap_err();
    drop(held);
    let StoreError::Database(sqlx::Error::Io(io)) = &error else {
        panic!("{error:?}");
    };
    let typed = io.get_ref().and_then(|e| e.downcast_ref::<PoolError>());
    assert_eq!(typed.map(PoolError::class), Some("read"));
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        0
    );
    set.close().await;
}
