//! The SQL store on SQLite and on the real PostgreSQL (`MCP_TEST_POSTGRES_URL`): round trip,
//! queries, pagination, retention, export, chain verification, and outages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions fail loudly too"
)]
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use common::{TempDir, postgres_url};
use mcp_audit::chain::{ChainHead, TamperKind, VerifyOptions};
use mcp_audit::{
    ArgumentsPolicy, AuditEvent, AuditFilter, AuditLogger, AuditStore, Category, Decision,
    ExportFormat, NUL_REPLACEMENT, Order, OutcomeStatus, PageRequest, Redactor, Retention, Scope,
    Severity, StoreError, Timestamp,
};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

// ---------------------------------------------------------------------------------------------
// Harness

async fn sqlite_store(dir: &TempDir) -> AuditStore {
    let store = AuditStore::connect_sqlite(dir.path("audit.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // Migrations are idempotent.
    store.migrate().await.unwrap();
    store
}

/// Runs `body` with a store in a fresh schema of the test database, then drops the schema
/// (also when `body` panics).
async fn with_pg<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(PgCtx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = postgres_url() else { return };
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = format!("audit_{tag}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let app_name = format!("mcp-audit-{}", uuid::Uuid::now_v7().simple());
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .application_name(&app_name)
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options.clone())
        .await
        .unwrap();
    let store = AuditStore::postgres(pool.clone());
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let ctx = PgCtx {
        store,
        pool: pool.clone(),
        admin: admin.clone(),
        app_name,
        options,
    };
    let result = tokio::spawn(body(ctx)).await;
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

struct PgCtx {
    store: AuditStore,
    pool: PgPool,
    admin: PgPool,
    app_name: String,
    options: PgConnectOptions,
}

fn full_event(i: usize) -> AuditEvent {
    AuditEvent::new(Category::ToolCall)
        .severity(Severity::Notice)
        .subject(format!("user-{i}"))
        .tenant("acme")
        .auth_method("jwt")
        .api_key_id("key-1")
        .method("tools/call")
        .tool("search")
        .arguments(json!({"query": "rust, \"sql\"", "limit": 10, "ratio": 0.25, "nested": {"b": [1, null, true], "a": "é"}}))
        .decision(Decision::Allow, "role user, line\nbreak")
        .outcome(OutcomeStatus::Error, Some(-32_603), Some(Duration::from_micros(1_234)))
        .request_id("req-1")
        .trace_id("0af7651916cd43dd8448eb211c80319c")
        .session_id("sess-1")
        .client_ip("2001:db8::1".parse().unwrap())
        .user_agent("=cmd|' /C calc'!A0")
}

fn chained(stream: &str, events: Vec<AuditEvent>) -> Vec<AuditEvent> {
    let mut head = ChainHead::genesis(stream);
    events
        .into_iter()
        .map(|mut e| {
            head.link(&mut e);
            e
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shared test bodies

async fn round_trip_of_every_field(store: &AuditStore) {
    let mut minimal = AuditEvent::new(Category::System);
    minimal.severity = Severity::Critical;
    let events = chained("rt", vec![full_event(1), minimal]);
    assert_eq!(store.insert(&events).await.unwrap(), 2);
    // Idempotent by id: a replay inserts nothing.
    assert_eq!(store.insert(&events).await.unwrap(), 0);
    let page = store
        .query(
            &Scope::All,
            &AuditFilter::new(),
            &PageRequest::first(10).order(Order::OldestFirst),
        )
        .await
        .unwrap();
    let mut want = events.clone();
    want.sort_by_key(|e| (e.time, e.id));
    assert_eq!(page.events, want);
    assert_eq!(page.next, None);
    assert!(
        store
            .verify_chain("rt", VerifyOptions::from_genesis("rt"))
            .await
            .unwrap()
            .is_intact()
    );
}

/// A replayed batch that overlaps stored events inserts only the new ones, in one call, and
/// the store keeps every field of both.
async fn overlapping_replay_inserts_only_new_events(store: &AuditStore) {
    let events = chained("replay", (0..6).map(full_event).collect());
    assert_eq!(store.insert(&events[..2]).await.unwrap(), 2);
    assert_eq!(store.insert(&events[1..4]).await.unwrap(), 2);
    assert_eq!(store.insert(&events).await.unwrap(), 2);
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        6
    );
    let page = store
        .query(
            &Scope::All,
            &AuditFilter::new(),
            &PageRequest::first(10).order(Order::OldestFirst),
        )
        .await
        .unwrap();
    let mut want = events.clone();
    want.sort_by_key(|e| (e.time, e.id));
    assert_eq!(page.events, want);
}

/// Batches larger than one statement (SQLite: 1 000 rows) or split over parallel copies
/// (PostgreSQL) are still idempotent: in the second insert one part overlaps stored events and
/// the other does not.
async fn large_batches_are_split_and_idempotent(store: &AuditStore) {
    let events = chained("large", (0..2_345).map(full_event).collect());
    assert_eq!(store.insert(&events[..600]).await.unwrap(), 600);
    assert_eq!(store.insert(&events).await.unwrap(), 1_745);
    assert_eq!(store.insert(&events).await.unwrap(), 0);
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        2_345
    );
    let report = store
        .verify_chain("large", VerifyOptions::from_genesis("large"))
        .await
        .unwrap();
    assert!(report.is_intact());
    assert_eq!(report.checked, 2_345);
}

/// 40 events over 4 tenants, 2 subjects, 2 categories, 2 decisions, 2 tools, one per second.
fn dataset() -> Vec<AuditEvent> {
    let base: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
    (0..40)
        .map(|i| {
            let e = AuditEvent::new(if i % 2 == 0 {
                Category::ToolCall
            } else {
                Category::Authorization
            })
            .time(base.saturating_add(Duration::from_secs(i as u64)))
            .tenant(format!("t{}", i % 4))
            .subject(if i % 3 == 0 { "alice" } else { "bob" })
            .tool(if i % 5 == 0 { "delete" } else { "search" });
            if i % 4 == 1 {
                e.decision(Decision::Deny, "no")
            } else {
                e.decision(Decision::Allow, "yes")
            }
        })
        .collect()
}

async fn queries_and_scoping(store: &AuditStore) {
    let data = dataset();
    store.insert(&data).await.unwrap();
    let all = |f: AuditFilter| {
        let data = data.clone();
        move || data.iter().filter(|e| f_matches(&f, e)).count() as u64
    };
    let base = data[0].time;
    let filters = [
        AuditFilter::new(),
        AuditFilter::new().tenant("t1"),
        AuditFilter::new().subject("alice"),
        AuditFilter::new().category(Category::Authorization),
        AuditFilter::new().decision(Decision::Deny),
        AuditFilter::new().tool("delete"),
        AuditFilter::new().time_range(
            base.saturating_add(Duration::from_secs(10)),
            base.saturating_add(Duration::from_secs(20)),
        ),
        AuditFilter::new()
            .tenant("t2")
            .subject("bob")
            .tool("search"),
    ];
    for f in filters {
        let want = all(f.clone())();
        assert!(want > 0, "{f:?}");
        assert_eq!(store.count(&Scope::All, &f).await.unwrap(), want, "{f:?}");
        let page = store
            .query(&Scope::All, &f, &PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(page.events.len() as u64, want);
        assert!(page.events.iter().all(|e| f_matches(&f, e)));
    }
    // A tenant admin sees only its tenant, even when asking for another one.
    let scope = Scope::Tenant("t3".into());
    let page = store
        .query(&scope, &AuditFilter::new(), &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 10);
    assert!(
        page.events
            .iter()
            .all(|e| e.actor.tenant.as_deref() == Some("t3"))
    );
    assert_eq!(
        store
            .count(&scope, &AuditFilter::new().tenant("t1"))
            .await
            .unwrap(),
        0
    );
}

fn f_matches(f: &AuditFilter, e: &AuditEvent) -> bool {
    f.tenant
        .as_ref()
        .is_none_or(|t| e.actor.tenant.as_ref() == Some(t))
        && f.subject
            .as_ref()
            .is_none_or(|s| e.actor.subject.as_ref() == Some(s))
        && f.category.is_none_or(|c| e.category == c)
        && f.decision.is_none_or(|d| e.decision == Some(d))
        && f.target_kind
            .is_none_or(|k| e.action.target_kind == Some(k))
        && f.target
            .as_ref()
            .is_none_or(|t| e.action.target.as_ref() == Some(t))
        && f.from.is_none_or(|t| e.time >= t)
        && f.until.is_none_or(|t| e.time < t)
}

async fn keyset_pagination(store: &AuditStore) {
    let mut data = dataset();
    // Ties on time are broken by id.
    let same = data[5].time;
    for e in &mut data[6..9] {
        e.time = same;
    }
    store.insert(&data).await.unwrap();
    for order in [Order::NewestFirst, Order::OldestFirst] {
        let mut seen = Vec::new();
        let mut page = PageRequest::first(7).order(order);
        for _ in 0..20 {
            let result = store
                .query(&Scope::All, &AuditFilter::new(), &page)
                .await
                .unwrap();
            assert!(result.events.len() <= 7);
            seen.extend(result.events.iter().map(|e| (e.time, e.id)));
            match result.next {
                Some(next) => page = page.after(next),
                None => break,
            }
        }
        let mut want: Vec<_> = data.iter().map(|e| (e.time, e.id)).collect();
        want.sort();
        if order == Order::NewestFirst {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}");
    }
    let bad = PageRequest::first(5).after("not-a-cursor");
    assert!(matches!(
        store.query(&Scope::All, &AuditFilter::new(), &bad).await,
        Err(StoreError::InvalidCursor)
    ));
}

async fn retention_purge(store: &AuditStore) {
    let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let day = Duration::from_secs(86_400);
    let events: Vec<_> = (0..25)
        .map(|i| {
            AuditEvent::new(Category::System)
                .time(now.saturating_sub(day * if i < 17 { 91 + i } else { 89 }))
        })
        .collect();
    store.insert(&events).await.unwrap();
    let deleted = store
        .purge(Retention::default().batch_size(4), now)
        .await
        .unwrap();
    assert_eq!(deleted, 17);
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        8
    );
    assert_eq!(
        store
            .purge(Retention::default().max_age(day * 365), now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge(Retention::default().max_age(day * 10), now)
            .await
            .unwrap(),
        8
    );
}

async fn export_jsonl_and_csv(store: &AuditStore) {
    let mut data = chained("ex", (0..1_203).map(full_event).collect());
    store.insert(&data).await.unwrap();
    let mut out = Vec::new();
    let n = store
        .export(
            &Scope::All,
            &AuditFilter::new(),
            ExportFormat::JsonLines,
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(n, 1_203);
    let text = String::from_utf8(out).unwrap();
    let back: Vec<AuditEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    data.sort_by_key(|e| (e.time, e.id));
    assert_eq!(back, data);

    let mut out = Vec::new();
    let scope = Scope::Tenant("nobody".into());
    assert_eq!(
        store
            .export(&scope, &AuditFilter::new(), ExportFormat::Csv, &mut out)
            .await
            .unwrap(),
        0
    );
    let mut out = Vec::new();
    store
        .export(
            &Scope::All,
            &AuditFilter::new().subject("user-7"),
            ExportFormat::Csv,
            &mut out,
        )
        .await
        .unwrap();
    let csv = String::from_utf8(out).unwrap();
    let mut lines = csv.split("\r\n");
    assert!(lines.next().unwrap().starts_with("id,time,category,"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(
            &data
                .iter()
                .find(|e| e.actor.subject.as_deref() == Some("user-7"))
                .unwrap()
                .id
                .to_string()
        )
    );
    assert!(row.contains(",tool_call,notice,user-7,acme,jwt,key-1,tools/call,tool,search,"));
    assert!(
        row.contains("\"'=cmd|' /C calc'!A0\""),
        "formula guarded: {row}"
    );
    assert!(row.contains("\"role user, line\nbreak\""));
}

async fn chain_tampering_is_detected(store: &AuditStore, exec: impl AsyncExec) {
    for (stream, tamper) in [("mod", "modify"), ("del", "delete"), ("ins", "insert")] {
        let events = chained(stream, (0..12).map(full_event).collect());
        store.insert(&events).await.unwrap();
        let opts = || VerifyOptions::from_genesis(stream);
        assert!(
            store
                .verify_chain(stream, opts())
                .await
                .unwrap()
                .is_intact()
        );
        let victim = events[5].id;
        let (kind, seq, id) = match tamper {
            "modify" => {
                exec.run(format!(
                    "UPDATE audit_events SET subject = 'mallory' WHERE id = '{victim}'"
                ))
                .await;
                (TamperKind::Modified, 6, Some(victim))
            }
            "delete" => {
                exec.run(format!("DELETE FROM audit_events WHERE id = '{victim}'"))
                    .await;
                (TamperKind::Deleted, 6, None)
            }
            _ => {
                // A forged event, correctly hashed and linked after event 5, sharing seq 6.
                let mut head = ChainHead {
                    stream: stream.to_owned(),
                    seq: 5,
                    hash: events[4].chain.as_ref().unwrap().hash.clone(),
                };
                let mut forged = AuditEvent::new(Category::Admin).subject("mallory");
                head.link(&mut forged);
                store.insert(&[forged.clone()]).await.unwrap();
                (TamperKind::Inserted, 6, Some(forged.id))
            }
        };
        let report = store.verify_chain(stream, opts()).await.unwrap();
        let t = report.tamper.expect("tampering detected");
        assert_eq!((t.kind, t.seq, t.id), (kind, seq, id), "{tamper}");
    }
}

/// Runs raw SQL against the store's database (to play the attacker).
trait AsyncExec {
    fn run(&self, sql: String) -> impl Future<Output = ()>;
}

struct SqliteExec(sqlx::SqlitePool);
impl AsyncExec for SqliteExec {
    async fn run(&self, sql: String) {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .unwrap();
    }
}

struct PgExec(PgPool);
impl AsyncExec for PgExec {
    async fn run(&self, sql: String) {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .unwrap();
    }
}

async fn logger_into_store_then_shutdown(store: AuditStore, spool: &std::path::Path) {
    let logger = AuditLogger::builder(spool)
        .sink(store.clone())
        .stream("gw-1")
        .redactor(Redactor::new().arguments(ArgumentsPolicy::Redacted))
        .max_batch_delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..1_500)
        .map(|i| full_event(i).arguments(json!({"client_secret": "s3cr3t", "i": i})))
        .collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    // Recorded just before shutdown: all of them must be stored.
    logger.shutdown().await.unwrap();
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        1_500
    );
    let mut out = Vec::new();
    store
        .export(
            &Scope::All,
            &AuditFilter::new(),
            ExportFormat::JsonLines,
            &mut out,
        )
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("s3cr3t"));
    let ids: HashSet<_> = text
        .lines()
        .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap().id)
        .collect();
    assert_eq!(ids, recorded.iter().map(|e| e.id).collect());
    let report = store
        .verify_chain("gw-1", VerifyOptions::from_genesis("gw-1"))
        .await
        .unwrap();
    assert!(report.is_intact());
    let head = store.chain_head("gw-1").await.unwrap();
    assert_eq!(head.seq, 1_500);
    assert_eq!(report.head.unwrap(), head);
}

/// Events with NUL in every text field and in their arguments go through the logger: all are
/// stored (with U+FFFD for NUL, the same text the chain hashed), nothing stays spooled, and
/// the chain verifies.
async fn nul_bytes_through_logger(store: AuditStore, spool: &std::path::Path) {
    let logger = AuditLogger::builder(spool)
        .sink(store.clone())
        .stream("nul")
        .redactor(Redactor::new().arguments(ArgumentsPolicy::Redacted))
        .build()
        .unwrap();
    let mut recorded = Vec::new();
    for i in 0..20 {
        // Clean events around poisoned ones, in the same batches.
        let e = if i % 2 == 0 {
            full_event(i)
        } else {
            AuditEvent::new(Category::SecurityViolation)
                .subject(format!("user\0{i}"))
                .tenant("ac\0me")
                .auth_method("jwt\0")
                .api_key_id("key\0")
                .method("tools/call\0")
                .tool("sea\0rch")
                .arguments(json!({"q\0": "a\0b", "list": ["\0", {"k\0": "\0\0"}]}))
                .decision(Decision::Deny, "bad\0input")
                .request_id("req\0")
                .trace_id("\0")
                .session_id("sess\0")
                .user_agent("curl/8\0")
        };
        recorded.push(e.id);
        logger.record(e).await.unwrap();
    }
    let report = logger.shutdown().await.unwrap();
    assert_eq!(report.spool_pending, 0, "nothing left in the spool");
    assert_eq!(logger.stats().write_errors, 0, "no failed write");
    assert_eq!(
        store.count(&Scope::All, &AuditFilter::new()).await.unwrap(),
        20
    );
    let mut out = Vec::new();
    store
        .export(
            &Scope::All,
            &AuditFilter::new(),
            ExportFormat::JsonLines,
            &mut out,
        )
        .await
        .unwrap();
    let stored: Vec<AuditEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        stored.iter().map(|e| e.id).collect::<HashSet<_>>(),
        recorded.iter().copied().collect::<HashSet<_>>()
    );
    let r = NUL_REPLACEMENT;
    let poisoned: Vec<_> = stored
        .iter()
        .filter(|e| e.category == Category::SecurityViolation)
        .collect();
    assert_eq!(poisoned.len(), 10);
    for e in poisoned {
        assert_eq!(e.actor.tenant, Some(format!("ac{r}me")));
        assert_eq!(e.actor.api_key_id, Some(format!("key{r}")));
        assert_eq!(e.action.target, Some(format!("sea{r}rch")));
        assert_eq!(e.reason, Some(format!("bad{r}input")));
        assert_eq!(e.trace_id, Some(r.to_string()));
        assert_eq!(e.user_agent, Some(format!("curl/8{r}")));
        let args = e.action.arguments.as_ref().unwrap();
        assert_eq!(args[format!("q{r}").as_str()], format!("a{r}b"));
        assert_eq!(args["list"][1][format!("k{r}").as_str()], format!("{r}{r}"));
        assert!(!serde_json::to_string(e).unwrap().contains("\\u0000"));
    }
    let verified = store
        .verify_chain("nul", VerifyOptions::from_genesis("nul"))
        .await
        .unwrap();
    assert!(verified.is_intact(), "{verified:?}");
    assert_eq!(store.chain_head("nul").await.unwrap().seq, 20);
}

// ---------------------------------------------------------------------------------------------
// SQLite

macro_rules! sqlite_test {
    ($name:ident, |$store:ident, $dir:ident| $body:expr) => {
        #[tokio::test]
        async fn $name() {
            let $dir = TempDir::new(concat!("sqlite-", stringify!($name)));
            let $store = sqlite_store(&$dir).await;
            $body;
        }
    };
}

sqlite_test!(sqlite_round_trip_of_every_field, |store, _dir| {
    round_trip_of_every_field(&store).await
});
sqlite_test!(
    sqlite_overlapping_replay_inserts_only_new_events,
    |store, _dir| { overlapping_replay_inserts_only_new_events(&store).await }
);
sqlite_test!(
    sqlite_large_batches_are_split_and_idempotent,
    |store, _dir| { large_batches_are_split_and_idempotent(&store).await }
);
sqlite_test!(sqlite_queries_and_scoping, |store, _dir| {
    queries_and_scoping(&store).await
});
sqlite_test!(sqlite_keyset_pagination, |store, _dir| keyset_pagination(
    &store
)
.await);
sqlite_test!(sqlite_retention_purge, |store, _dir| retention_purge(
    &store
)
.await);
sqlite_test!(sqlite_export_jsonl_and_csv, |store, _dir| {
    export_jsonl_and_csv(&store).await
});
sqlite_test!(sqlite_nul_bytes_through_logger, |store, dir| {
    nul_bytes_through_logger(store, &dir.path("spool")).await
});
sqlite_test!(sqlite_logger_into_store_then_shutdown, |store, dir| {
    logger_into_store_then_shutdown(store, &dir.path("spool")).await
});

#[tokio::test]
async fn sqlite_chain_tampering_is_detected() {
    let dir = TempDir::new("sqlite-chain");
    let store = sqlite_store(&dir).await;
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path("audit.db").display()))
        .await
        .unwrap();
    chain_tampering_is_detected(&store, SqliteExec(raw)).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn pg_round_trip_of_every_field() {
    with_pg("rt", |ctx| async move {
        round_trip_of_every_field(&ctx.store).await
    })
    .await;
}

#[tokio::test]
async fn pg_overlapping_replay_inserts_only_new_events() {
    with_pg("replay", |ctx| async move {
        overlapping_replay_inserts_only_new_events(&ctx.store).await
    })
    .await;
}

#[tokio::test]
async fn pg_large_batches_are_split_and_idempotent() {
    with_pg("large", |ctx| async move {
        large_batches_are_split_and_idempotent(&ctx.store.clone().write_connections(2)).await
    })
    .await;
}

#[tokio::test]
async fn pg_queries_and_scoping() {
    with_pg(
        "q",
        |ctx| async move { queries_and_scoping(&ctx.store).await },
    )
    .await;
}

#[tokio::test]
async fn pg_keyset_pagination() {
    with_pg(
        "page",
        |ctx| async move { keyset_pagination(&ctx.store).await },
    )
    .await;
}

#[tokio::test]
async fn pg_retention_purge() {
    with_pg(
        "ret",
        |ctx| async move { retention_purge(&ctx.store).await },
    )
    .await;
}

#[tokio::test]
async fn pg_export_jsonl_and_csv() {
    with_pg("exp", |ctx| async move {
        export_jsonl_and_csv(&ctx.store).await
    })
    .await;
}

#[tokio::test]
async fn pg_chain_tampering_is_detected() {
    with_pg("chain", |ctx| async move {
        chain_tampering_is_detected(&ctx.store, PgExec(ctx.pool.clone())).await
    })
    .await;
}

#[tokio::test]
async fn pg_logger_into_store_then_shutdown() {
    with_pg("shut", |ctx| async move {
        let dir = TempDir::new("pg-shutdown");
        logger_into_store_then_shutdown(ctx.store, &dir.path("spool")).await;
    })
    .await;
}

#[tokio::test]
async fn pg_nul_bytes_through_logger() {
    with_pg("nul", |ctx| async move {
        let dir = TempDir::new("pg-nul");
        nul_bytes_through_logger(ctx.store, &dir.path("spool")).await;
    })
    .await;
}

async fn assert_stored_exactly_once(pool: &PgPool, recorded: &[uuid::Uuid]) {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(count as usize, recorded.len(), "row count");
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM audit_events")
        .fetch_all(pool)
        .await
        .unwrap();
    let stored: HashSet<uuid::Uuid> = ids.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(stored.len(), ids.len(), "no duplicate ids");
    assert_eq!(
        stored,
        recorded.iter().copied().collect::<HashSet<_>>(),
        "same ids"
    );
}

/// Waits (bounded) until the logger's spools are empty.
async fn drain(logger: &AuditLogger) {
    for _ in 0..300 {
        if logger.flush().await.unwrap().spool_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("spool not drained: {:?}", logger.stats());
}

#[tokio::test]
async fn pg_outage_connections_killed_while_events_keep_coming() {
    with_pg("kill", |ctx| async move {
        let dir = TempDir::new("pg-kill");
        let logger = AuditLogger::builder(dir.path("spool"))
            .sink(ctx.store.clone())
            .batch_size(50)
            .max_batch_delay(Duration::from_millis(5))
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .build()
            .unwrap();
        let producer = {
            let logger = logger.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..4_000 {
                    let e = full_event(i);
                    ids.push(e.id);
                    logger.try_record(e).unwrap();
                    if i % 40 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                ids
            })
        };
        let mut killed = 0i64;
        while !producer.is_finished() {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1) AS t",
            )
            .bind(&ctx.app_name)
            .fetch_one(&ctx.admin)
            .await
            .unwrap();
            killed += n;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let ids = producer.await.unwrap();
        assert!(killed > 0, "no writer connection was killed");
        drain(&logger).await;
        logger.shutdown().await.unwrap();
        assert_stored_exactly_once(&ctx.pool, &ids).await;
        assert!(
            ctx.store
                .verify_chain("default", VerifyOptions::from_genesis("default"))
                .await
                .unwrap()
                .is_intact()
        );
    })
    .await;
}

/// A TCP forwarder in front of PostgreSQL that can be stopped (closed port, live connections
/// cut) and started again on the same port.
struct Proxy {
    port: u16,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let mut proxy = Self {
            port: 0,
            target,
            task: None,
        };
        proxy.listen().await;
        proxy
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and cuts every proxied connection (the JoinSet is dropped with the task).
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn pg_outage_listener_stopped_while_events_keep_coming() {
    with_pg("proxy", |ctx| async move {
        let host = ctx.options.get_host().to_owned();
        let target: std::net::SocketAddr = format!("{host}:{}", ctx.options.get_port())
            .parse()
            .unwrap();
        let mut proxy = Proxy::start(target).await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(500))
            .connect_with(ctx.options.clone().host("127.0.0.1").port(proxy.port))
            .await
            .unwrap();
        let store = AuditStore::postgres(pool);
        let dir = TempDir::new("pg-proxy");
        let logger = AuditLogger::builder(dir.path("spool"))
            .sink(store.clone())
            .batch_size(100)
            .max_batch_delay(Duration::from_millis(5))
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
            .build()
            .unwrap();
        let mut ids = Vec::new();
        let mut record = |n: usize| {
            for i in 0..n {
                let e = full_event(i);
                ids.push(e.id);
                logger.try_record(e).unwrap();
            }
        };
        record(1_000);
        assert_eq!(logger.flush().await.unwrap().spool_pending, 0);

        proxy.stop().await;
        for _ in 0..5 {
            record(200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = logger.flush().await.unwrap();
        assert!(
            report.spool_pending > 0,
            "events spooled while the database is unreachable"
        );
        assert!(logger.stats().write_errors > 0);

        proxy.listen().await;
        record(1_000);
        drain(&logger).await;
        let stats = logger.shutdown().await.map(|_| logger.stats()).unwrap();
        assert!(stats.replayed > 0);
        assert_eq!(stats.lost, 0);
        assert_stored_exactly_once(&ctx.pool, &ids).await;
        // Replayed in order: the chain in the table is complete and intact.
        let report = store
            .verify_chain("default", VerifyOptions::from_genesis("default"))
            .await
            .unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.head.unwrap().seq, 3_000);
        proxy.stop().await;
    })
    .await;
}
