//! PostgreSQL classes on the real server at `MCP_TEST_POSTGRES_URL`, one schema and one
//! application name per test: saturation, cancellation, advice under synthetic load, health
//! against a dead port, lookups.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod common;

use std::str::FromStr;
use std::time::Duration;

use common::{dead_port, eventually, postgres_url, unique, with_cleanup};
use mcp_pool::{
    Action, Backend, Bound, ConfigError, LookupError, PgClassConfig, PoolError, PoolSet, Reason,
    SamplerConfig,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

/// A schema and an application name of its own for one test.
struct Pg {
    admin: PgPool,
    schema: String,
    app: String,
    options: PgConnectOptions,
}

async fn pg(tag: &str) -> Option<Pg> {
    let url = postgres_url()?;
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let schema = unique(&format!("pool_{tag}"));
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let app = unique("mcp-pool");
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .application_name(&app)
        .options([("search_path", schema.as_str())]);
    Some(Pg {
        admin,
        schema,
        app,
        options,
    })
}

impl Pg {
    fn class(&self, name: &str) -> PgClassConfig {
        PgClassConfig::with_options(name, self.options.clone())
    }

    async fn cleanup(self) {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&self.app)
        .execute(&self.admin)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        self.admin.close().await;
    }
}

fn manual() -> SamplerConfig {
    // Three samples make a window; samples are taken by the test, not by a clock.
    SamplerConfig::manual()
        .resolution(Duration::from_secs(1))
        .window(Duration::from_secs(3))
        .history(Duration::from_secs(60))
}

fn class_snapshot(set: &PoolSet, class: &str) -> mcp_pool::ClassSnapshot {
    set.snapshot()
        .classes
        .into_iter()
        .find(|c| c.class == class)
        .unwrap()
}

#[tokio::test]
async fn saturation_counts_waits_and_timeouts_with_typed_errors() {
    let Some(pg) = pg("saturation").await else {
        return;
    };
    let config = pg
        .class("write")
        .size(2)
        .acquire_timeout(Duration::from_millis(300));
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(config)
                .sampler(manual())
                .build()
                .await
                .unwrap();
            let write = set.postgres("write").unwrap().clone();
            let a = write.acquire().await.unwrap();
            let b = write.acquire().await.unwrap();
            assert_eq!(class_snapshot(&set, "write").in_use, 2);

            let error = write.acquire().await.unwrap_err();
            match &error {
                PoolError::Timeout { class, waited } => {
                    assert_eq!(class, "write");
                    assert!(*waited >= Duration::from_millis(250), "{waited:?}");
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            assert!(
                error
                    .to_string()
                    .starts_with("pool class `write` timed out after "),
                "{error}"
            );

            // A waiter that gets a connection once one is returned is counted as a wait.
            let waiter = {
                let write = write.clone();
                tokio::spawn(async move {
                    let mut conn = write.acquire().await.unwrap();
                    sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
                })
            };
            tokio::task::yield_now().await;
            drop(a);
            waiter.await.unwrap();
            drop(b);

            eventually("both connections back", || {
                class_snapshot(&set, "write").in_use == 0
            })
            .await;
            let snap = class_snapshot(&set, "write");
            assert_eq!(snap.stats.acquires, 3);
            assert_eq!(snap.stats.timeouts, 1);
            assert_eq!(snap.stats.waits, 2);
            assert_eq!(snap.stats.errors, 0);
            // Three acquires and one timeout in the histogram.
            assert_eq!(snap.stats.acquire_wait.count, 4);
            assert_eq!(snap.stats.opened, 2);
            assert_eq!(snap.size, 2);
            let reuse = snap.stats.reuse_ratio.unwrap();
            assert!((reuse - 1.0 / 3.0).abs() < 1e-9, "{reuse}");
            set.close().await;
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn applied_limit_saturates_below_the_pool_maximum() {
    let Some(pg) = pg("applied_saturation").await else {
        return;
    };
    let config = pg
        .class("read")
        .size(2)
        .max_connections(6)
        .acquire_timeout(Duration::from_millis(200));
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(config)
                .sampler(manual())
                .apply_advice(true)
                .build()
                .await
                .unwrap();
            let read = set.postgres("read").unwrap();
            let held = [read.acquire().await.unwrap(), read.acquire().await.unwrap()];
            // The sqlx pool could open four more; the class's limit says no.
            let error = read.acquire().await.unwrap_err();
            assert_eq!(error.class(), "read");
            assert!(error.waited().is_some());
            let snap = class_snapshot(&set, "read");
            assert_eq!((snap.limit, snap.max, snap.size), (2, 6, 2));
            assert_eq!((snap.stats.waits, snap.stats.timeouts), (1, 1));
            drop(held);
            set.close().await;
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn a_query_cancelled_midway_leaks_no_connection() {
    let Some(pg) = pg("cancel").await else { return };
    let config = pg
        .class("analytics")
        .size(3)
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(20));
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(config)
                .sampler(manual())
                .apply_advice(true)
                .build()
                .await
                .unwrap();
            let class = set.postgres("analytics").unwrap().clone();

            // Dropped by a timeout in the middle of a query.
            let timed_out = tokio::time::timeout(Duration::from_millis(100), async {
                let mut conn = class.acquire().await.unwrap();
                sqlx::query("SELECT pg_sleep(2)")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            })
            .await;
            assert!(timed_out.is_err());

            // Aborted in the middle of a query, once the query is known to run.
            let (started_tx, started_rx) = tokio::sync::oneshot::channel();
            let task = {
                let class = class.clone();
                tokio::spawn(async move {
                    let mut conn = class.acquire().await.unwrap();
                    started_tx.send(()).unwrap();
                    sqlx::query("SELECT pg_sleep(2)")
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                })
            };
            started_rx.await.unwrap();
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());

            eventually("cancelled connections returned or closed", || {
                class_snapshot(&set, "analytics").in_use == 0
            })
            .await;

            // The class still serves its full limit at once.
            let mut conns = Vec::new();
            for _ in 0..3 {
                conns.push(class.acquire().await.unwrap());
            }
            for conn in &mut conns {
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(one, 1);
            }
            let snap = class_snapshot(&set, "analytics");
            assert_eq!((snap.in_use, snap.limit), (3, 3));
            assert!(snap.size <= 3);
            drop(conns);
            eventually("connections back", || {
                class_snapshot(&set, "analytics").in_use == 0
            })
            .await;
            assert_eq!(class_snapshot(&set, "analytics").stats.timeouts, 0);
            set.close().await;
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn advice_grows_under_load_shrinks_when_idle_and_keeps_the_budget() {
    let Some(pg) = pg("advice").await else { return };
    let read = pg
        .class("read")
        .size(4)
        .min_connections(1)
        .max_connections(10)
        .acquire_timeout(Duration::from_millis(200));
    let write = pg
        .class("write")
        .size(4)
        .min_connections(1)
        .max_connections(10);
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(read)
                .sql(write)
                .connection_budget(12)
                .sampler(manual())
                .apply_advice(true)
                .build()
                .await
                .unwrap();
            let budget_kept = |set: &PoolSet| {
                let s = set.snapshot();
                assert!(s.budget_used <= 12, "{s:?}");
            };
            let read = set.postgres("read").unwrap().clone();

            // Load: all four read connections busy during a sample.
            let mut held = Vec::new();
            for _ in 0..4 {
                held.push(read.acquire().await.unwrap());
            }
            let advice = set.sample_now().await;
            assert_eq!(advice[0].class, "read");
            assert_eq!(advice[0].advice.action, Action::Grow);
            assert_eq!(advice[0].advice.reason, Reason::HighUtilisation);
            // 4 in use at 60 % -> 7; write keeps 4 (idle, but not for a full window yet).
            assert_eq!(advice[0].applied, Some(7));
            assert_eq!(advice[1].advice.reason, Reason::NotSustained);
            assert_eq!(read.limit(), 7);
            budget_kept(&set);

            // The grown limit is usable at once.
            for _ in 0..3 {
                held.push(read.acquire().await.unwrap());
            }
            drop(held);
            eventually("read connections back", || {
                class_snapshot(&set, "read").in_use == 0
            })
            .await;

            // All seven were busy: read wants twelve (ten at most), but the budget leaves room
            // for one more.
            let advice = set.sample_now().await;
            assert_eq!(advice[0].advice.wanted, 12);
            assert_eq!(advice[0].advice.bounded_by, Some(Bound::Budget));
            assert_eq!(advice[0].applied, Some(8));
            budget_kept(&set);

            // Idle for a full window: write (unchanged since start) shrinks first, read once
            // a full window has passed since its last change; idle connections above the new
            // limit are closed.
            let mut rounds = Vec::new();
            for _ in 0..3 {
                rounds.push(set.sample_now().await);
                budget_kept(&set);
            }
            assert_eq!(rounds[0][1].applied, Some(1));
            assert_eq!(rounds[0][0].advice.reason, Reason::NotSustained);
            assert_eq!(rounds[2][0].advice.action, Action::Shrink);
            assert_eq!(rounds[2][0].advice.reason, Reason::LowUtilisation);
            assert_eq!(rounds[2][0].applied, Some(1));
            assert_eq!(read.limit(), 1);
            eventually("idle connections above the limit closed", || {
                class_snapshot(&set, "read").size <= 1
            })
            .await;

            // Waits: one connection held, the next acquire times out; the class grows.
            let held = read.acquire().await.unwrap();
            assert!(matches!(
                read.acquire().await,
                Err(PoolError::Timeout { .. })
            ));
            let advice = set.sample_now().await;
            assert_eq!(advice[0].advice.reason, Reason::Waits);
            assert_eq!(advice[0].applied, Some(2));
            drop(held);
            budget_kept(&set);

            // The history keeps every sample with its limit at the time.
            let history = set.history("read").unwrap();
            let limits: Vec<u32> = history.iter().map(|s| s.limit).collect();
            assert_eq!(limits, vec![4, 7, 8, 8, 8, 1]);
            assert_eq!(history[5].timeouts, 1);
            set.close().await;
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn advice_only_mode_recommends_without_changing_limits() {
    let Some(pg) = pg("advice_only").await else {
        return;
    };
    let config = pg.class("auth").size(2).max_connections(8);
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(config)
                .sampler(manual())
                .build()
                .await
                .unwrap();
            let auth = set.postgres("auth").unwrap();
            let held = [auth.acquire().await.unwrap(), auth.acquire().await.unwrap()];
            let advice = set.sample_now().await;
            assert_eq!(advice[0].advice.action, Action::Grow);
            assert_eq!(advice[0].advice.target, 4);
            assert_eq!(advice[0].applied, None);
            assert_eq!(auth.limit(), 2);
            let snap = class_snapshot(&set, "auth");
            assert_eq!(snap.advice.map(|a| a.target), Some(4));
            assert!(!snap.resizable);
            assert_eq!(snap.window.max_in_use, 2);
            drop(held);
            set.close().await;
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn health_fails_for_an_unreachable_server_and_passes_for_the_real_one() {
    let Some(pg) = pg("health").await else { return };
    let up = pg.class("read");
    let dead_url = format!(
        "postgres://postgres:secret-pw@127.0.0.1:{}/test",
        dead_port()
    );
    let down = PgClassConfig::new("replica", &dead_url)
        .acquire_timeout(Duration::from_millis(300))
        .health_timeout(Duration::from_millis(300));
    with_cleanup(
        async move {
            let set = PoolSet::builder()
                .sql(up)
                .sql(down)
                .sampler(manual())
                .connect_lazily(true)
                .build()
                .await
                .unwrap();
            let report = set.health().await;
            assert!(!report.healthy);
            assert_eq!(report.classes.len(), 2);
            assert!(report.classes[0].healthy, "{report:?}");
            assert_eq!(report.classes[0].backend, Backend::Postgres);
            let down = &report.classes[1];
            assert_eq!(down.class, "replica");
            assert!(!down.healthy);
            let error = down.error.as_deref().unwrap();
            assert!(!error.contains("secret-pw"), "{error}");
            assert!(set.health_of("read").await.unwrap().healthy);

            // An acquire on the dead class fails with the class's name, not a hang.
            let error = set
                .postgres("replica")
                .unwrap()
                .acquire()
                .await
                .unwrap_err();
            assert_eq!(error.class(), "replica");
            set.close().await;

            // Built eagerly, the dead class fails the build and the error hides the URL.
            let error = PoolSet::builder()
                .sql(
                    PgClassConfig::new("replica", &dead_url)
                        .acquire_timeout(Duration::from_millis(300)),
                )
                .sampler(manual())
                .build()
                .await
                .unwrap_err();
            assert!(matches!(error, ConfigError::Connect { .. }), "{error:?}");
            assert!(!error.to_string().contains("secret-pw"), "{error}");
        },
        pg.cleanup(),
    )
    .await;
}

#[tokio::test]
async fn standard_classes_fit_the_budget_and_lookups_are_typed() {
    let Some(url) = postgres_url() else { return };
    let set = PoolSet::builder()
        .sql_classes(PgClassConfig::standard_set(&url, Some(&url)))
        .connection_budget(70)
        .sampler(manual())
        .connect_lazily(true)
        .build()
        .await
        .unwrap();
    let names: Vec<&str> = set.class_names().collect();
    assert_eq!(names, vec!["read", "write", "analytics", "auth"]);
    assert_eq!(set.snapshot().budget_used, 70);
    assert!(matches!(
        set.postgres("reporting"),
        Err(LookupError::Unknown { .. })
    ));
    #[cfg(feature = "sqlite")]
    assert_eq!(
        set.sqlite("read").unwrap_err(),
        LookupError::WrongBackend {
            class: "read".into(),
            expected: Backend::Sqlite,
            actual: Backend::Postgres,
        }
    );
    set.close().await;

    let over = PoolSet::builder()
        .sql_classes(PgClassConfig::standard_set(&url, None))
        .connection_budget(69)
        .sampler(manual())
        .connect_lazily(true)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        over.to_string(),
        "pool classes need 70 connections but the connection budget is 69"
    );
}
