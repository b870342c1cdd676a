//! The SQL audit store (SQLite and PostgreSQL): sink, migrations, query, export, retention.

mod columns;
mod export;
#[cfg(feature = "postgres")]
mod pg_copy;
mod query;
mod source;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::chain::{ChainHead, Verifier, VerifyOptions, VerifyReport};
use crate::error::{SinkError, StoreError};
use crate::event::AuditEvent;
use crate::sink::AuditSink;
use crate::time::Timestamp;
use columns::{Row, decode_row};
use query::{Arg, Dialect, Sql};
use source::Source;

pub use export::ExportFormat;
pub use query::{AuditFilter, Order, Page, PageRequest, Scope};
pub use source::ConnectionSource;

/// The table that records which of this crate's migrations ran (kept apart from the
/// application's own `_sqlx_migrations`).
pub const MIGRATIONS_TABLE: &str = "_mcp_audit_migrations";

/// The default retention: 90 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Rows per multi-row `INSERT` on SQLite (27 columns each, under SQLite's 32 766 variables).
#[cfg(feature = "sqlite")]
const SQLITE_ROWS_PER_INSERT: usize = 1_000;

/// Rows per `COPY` (or `INSERT ... SELECT FROM UNNEST(...)`) on PostgreSQL: above the
/// logger's default batch limit, so that a batch grown under a backlog goes in one `COPY`,
/// one round trip and one commit (about 6 MB of `COPY` data at most). In
/// `audit/postgres_throughput`, 20 000 against 5 000 gave 106k, 109k and 115k events/s
/// against 90k, 86k and 98k (interleaved runs, batches grown to 8 000).
#[cfg(feature = "postgres")]
const PG_ROWS_PER_INSERT: usize = 20_000;

/// The most batches written at once to PostgreSQL ([`AuditSink::max_in_flight`]).
#[cfg(feature = "postgres")]
const PG_MAX_IN_FLIGHT: usize = 8;

/// The smallest part a PostgreSQL insert is split into for parallel copies
/// ([`AuditStore::write_connections`]).
#[cfg(feature = "postgres")]
const PG_MIN_ROWS_PER_PART: usize = 250;

#[derive(Debug, Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(Source<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Source<sqlx::Postgres>),
}

/// Audit events in a SQL database: a sink for the logger and the query side.
///
/// Events live in one table, `audit_events`, with one column per event field (so that they
/// can be read with plain SQL), created by migrations shipped in the crate
/// ([`migrate`](Self::migrate)). The primary key is `(ts_us, id)`: the event's time in
/// microseconds and its UUIDv7 id, so that one index serves both the uniqueness check and the
/// time-ordered queries (keyset pagination, retention). A replayed event carries the same id
/// and time (both are stored exactly), so inserts are idempotent by event id: SQLite uses
/// multi-row inserts with `ON CONFLICT (ts_us, id) DO NOTHING`; PostgreSQL binary `COPY`,
/// falling back to an `INSERT ... ON CONFLICT DO NOTHING` for a chunk that holds an event
/// already stored. On PostgreSQL the table lives in the connection's `search_path` schema.
#[derive(Debug, Clone)]
pub struct AuditStore {
    backend: Backend,
    name: String,
    write_connections: usize,
}

/// The settings of a retention purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Events older than this are deleted (default 90 days).
    pub max_age: Duration,
    /// Rows deleted per statement (default 5 000), so that no single statement holds locks
    /// for long.
    pub batch_size: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_RETENTION,
            batch_size: 5_000,
        }
    }
}

impl Retention {
    /// Keeps events for `max_age`.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Deletes `batch_size` rows per statement.
    pub fn batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }
}

fn migration(sql: &'static str) -> Migration {
    Migration::new(
        1,
        "create audit_events".into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

fn migrator(sql: &'static str) -> Migrator {
    let mut m = Migrator::with_migrations(vec![migration(sql)]);
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// Binds `args` to a query of either backend.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) | Arg::Id(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

impl AuditStore {
    /// A store on a SQLite pool (or another [`ConnectionSource`], such as an mcp-pool class
    /// with the `pool` feature). Use WAL mode and a file database for anything but tests.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: impl ConnectionSource<sqlx::Sqlite>) -> Self {
        Self {
            backend: Backend::Sqlite(Source::new(pool)),
            name: "sqlite".to_owned(),
            write_connections: 1,
        }
    }

    /// Opens (creating if needed) a SQLite database file in WAL mode with
    /// `synchronous = NORMAL`, a 32 MiB page cache per connection and temporary files
    /// (including the statement journal of the multi-row inserts) in memory.
    ///
    /// Durability: in WAL mode `synchronous = NORMAL` never corrupts the database, but a
    /// power loss or OS crash (not a process crash) can lose the transactions committed since
    /// the last checkpoint; the logger has already let go of those events. Where that matters,
    /// open the pool yourself with `synchronous = FULL` (every commit is fsynced, at a cost
    /// in throughput) and pass it to [`sqlite`](Self::sqlite).
    #[cfg(feature = "sqlite")]
    pub async fn connect_sqlite(path: impl AsRef<std::path::Path>) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self::sqlite(pool))
    }

    /// A store on a PostgreSQL pool (or another [`ConnectionSource`], such as an mcp-pool
    /// class with the `pool` feature).
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: impl ConnectionSource<sqlx::Postgres>) -> Self {
        Self {
            backend: Backend::Postgres(Source::new(pool)),
            name: "postgres".to_owned(),
            write_connections: 1,
        }
    }

    /// PostgreSQL: how many pool connections one large insert may use at once (default 1,
    /// at most the pool's size). A batch of at least 500 rows (twice 250) is
    /// split into that many parts, copied in parallel, each in its own transaction; the
    /// insert succeeds only when every part did. After a partial failure the logger replays
    /// the whole batch and the parts already stored are skipped by id. SQLite ignores this
    /// (it has one writer).
    ///
    /// The logger already keeps two batches in flight to the store
    /// ([`AuditSink::max_in_flight`]), each on its own connection, and one transaction per
    /// batch commits less often than one per part: in `audit/postgres_throughput` (batches of
    /// 1 000, a pool of 2) 1 connection per insert gave 48k and 59k events/s where 2 gave 41k
    /// and 48k (interleaved runs). More helps for large inserts made outside the logger.
    pub fn write_connections(mut self, connections: usize) -> Self {
        self.write_connections = connections.max(1);
        self
    }

    /// Renames the store as a sink (the name picks its spool file in the logger).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Applies the migrations shipped with this crate (idempotent; tracked in
    /// [`MIGRATIONS_TABLE`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                pool.migrate(&migrator(include_str!(
                    "../../migrations/sqlite/0001_create_audit_events.sql"
                )))
                .await?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                pool.migrate(&migrator(include_str!(
                    "../../migrations/postgres/0001_create_audit_events.sql"
                )))
                .await?
            }
        }
        Ok(())
    }

    /// Inserts events, ignoring those whose id is already stored. Returns how many rows were
    /// new.
    pub async fn insert(&self, events: &[AuditEvent]) -> Result<u64, sqlx::Error> {
        let mut inserted = 0;
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for chunk in events.chunks(SQLITE_ROWS_PER_INSERT) {
                    let sql = sqlite_insert_sql(chunk.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for e in chunk {
                        let r = Row::from_event(e);
                        q = q
                            .bind(r.id)
                            .bind(r.ts_us)
                            .bind(r.schema_version)
                            .bind(r.category)
                            .bind(r.severity)
                            .bind(r.subject)
                            .bind(r.tenant)
                            .bind(r.auth_method)
                            .bind(r.api_key_id)
                            .bind(r.method)
                            .bind(r.target_kind)
                            .bind(r.target)
                            .bind(r.arguments)
                            .bind(r.decision)
                            .bind(r.reason)
                            .bind(r.outcome_status)
                            .bind(r.outcome_code)
                            .bind(r.latency_us)
                            .bind(r.request_id)
                            .bind(r.trace_id)
                            .bind(r.session_id)
                            .bind(r.client_ip)
                            .bind(r.user_agent)
                            .bind(r.chain_stream)
                            .bind(r.chain_seq)
                            .bind(r.prev_hash)
                            .bind(r.hash);
                    }
                    inserted += q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let parts = self
                    .write_connections
                    .min(pool.max_connections() as usize)
                    .max(1);
                for chunk in events.chunks(PG_ROWS_PER_INSERT * parts) {
                    inserted += pg_insert_parallel(pool, chunk, parts).await?;
                }
            }
        }
        Ok(inserted)
    }

    async fn fetch_rows(&self, sql: Sql) -> Result<Vec<Row>, StoreError> {
        let rows = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                let q = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args);
                q.fetch_all(&mut *pool.acquire().await?)
                    .await?
                    .iter()
                    .map(|r| decode_row!(r))
                    .collect::<Result<Vec<_>, _>>()?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let q = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args);
                q.fetch_all(&mut *pool.acquire().await?)
                    .await?
                    .iter()
                    .map(|r| decode_row!(r))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    async fn execute(&self, sql: Sql) -> Result<u64, StoreError> {
        let affected = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args)
                    .execute(&mut *pool.acquire().await?)
                    .await?
                    .rows_affected()
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args)
                    .execute(&mut *pool.acquire().await?)
                    .await?
                    .rows_affected()
            }
        };
        Ok(affected)
    }

    fn dialect(&self) -> Dialect {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// One page of events matching `filter` within `scope`, with keyset pagination on
    /// `(time, id)`: pass [`Page::next`] back in [`PageRequest::after`].
    ///
    /// Unlike `OFFSET`, a keyset page costs the same at any depth and does not skip or repeat
    /// events when new ones arrive between pages.
    pub async fn query(
        &self,
        scope: &Scope,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let sql = query::page_query(self.dialect(), scope, filter, page)?;
        let mut rows = self.fetch_rows(sql).await?;
        let limit = page.limit.clamp(1, query::MAX_LIMIT) as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let events = rows
            .into_iter()
            .map(Row::into_event)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match events.last() {
            Some(last) if more => Some(query::encode_cursor(last.time.unix_micros(), &last.id)),
            _ => None,
        };
        Ok(Page { events, next })
    }

    /// Counts the events matching `filter` within `scope`.
    pub async fn count(&self, scope: &Scope, filter: &AuditFilter) -> Result<u64, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT COUNT(*) FROM audit_events WHERE 1=1",
        );
        query::push_filters(&mut sql, scope, filter);
        let (text, args) = (sql.text, sql.args);
        let n: i64 = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                bind_args!(sqlx::query_scalar(sqlx::AssertSqlSafe(text)), args)
                    .fetch_one(&mut *pool.acquire().await?)
                    .await?
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                bind_args!(sqlx::query_scalar(sqlx::AssertSqlSafe(text)), args)
                    .fetch_one(&mut *pool.acquire().await?)
                    .await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes events older than `retention.max_age` (relative to `now`), `batch_size` rows
    /// per statement, until none are left. Returns how many were deleted.
    ///
    /// Purging removes the beginning of hash chains; verify what is left with
    /// [`VerifyOptions::default`] (no anchor) or from a checkpoint.
    pub async fn purge(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError> {
        let cutoff = now.saturating_sub(retention.max_age);
        let batch = i64::from(retention.batch_size.max(1));
        let mut total = 0;
        // Bounded: each round deletes a full batch or ends the loop.
        for _ in 0..u32::MAX {
            let mut sql = Sql::new(self.dialect(), "");
            let c = sql.arg(Arg::Int(cutoff.unix_micros()));
            let l = sql.arg(Arg::Int(batch));
            // Rows are picked by their physical address (`ctid`, `rowid`): one index range
            // scan for the batch and a direct fetch per row, however many old rows are left.
            let row = match self.dialect() {
                Dialect::Sqlite => "rowid",
                Dialect::Postgres => "ctid",
            };
            sql.push(&format!(
                "DELETE FROM audit_events WHERE {row} IN \
                 (SELECT {row} FROM audit_events WHERE ts_us < {c} ORDER BY ts_us LIMIT {l})"
            ));
            let deleted = self.execute(sql).await?;
            total += deleted;
            if deleted < batch as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// The last link of chain `stream` in the store, to continue the chain after a restart
    /// ([`AuditLoggerBuilder::chain_head`](crate::AuditLoggerBuilder::chain_head)).
    pub async fn chain_head(&self, stream: &str) -> Result<ChainHead, StoreError> {
        let sql = query::chain_head_query(self.dialect(), stream);
        let row = self.fetch_rows(sql).await?.into_iter().next();
        Ok(
            match row.map(Row::into_event).transpose()?.and_then(|e| e.chain) {
                Some(link) => ChainHead {
                    stream: stream.to_owned(),
                    seq: link.seq,
                    hash: link.hash,
                },
                None => ChainHead::genesis(stream),
            },
        )
    }

    /// Verifies chain `stream` as stored, reading it in pages of 1 000 events in `seq` order.
    pub async fn verify_chain(
        &self,
        stream: &str,
        options: VerifyOptions,
    ) -> Result<VerifyReport, StoreError> {
        let mut verifier = Verifier::new(options);
        let mut after: Option<(i64, String)> = None;
        // Bounded by the number of stored events: every round moves the keyset forward.
        loop {
            let sql = query::chain_page_query(self.dialect(), stream, after.as_ref());
            let rows = self.fetch_rows(sql).await?;
            let done = rows.len() < query::CHAIN_PAGE;
            for row in rows {
                let (seq, id) = (row.chain_seq.unwrap_or(0), row.id.clone());
                after = Some((seq, id));
                if !verifier.push(row.into_event()?) {
                    return Ok(verifier.finish());
                }
            }
            if done {
                return Ok(verifier.finish());
            }
        }
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_insert_sql(rows: usize) -> String {
    let n = columns::COLUMNS.len();
    let mut sql = format!(
        "INSERT INTO audit_events ({}) VALUES ",
        columns::COLUMNS.join(", ")
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..n {
            if c > 0 {
                sql.push(',');
            }
            // Anonymous `?` (see `Sql::arg`): binding numbered parameters is quadratic.
            sql.push('?');
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (ts_us, id) DO NOTHING");
    sql
}

/// Inserts `events` in up to `parts` parallel parts, each through [`pg_insert`] on its own
/// pool connection. Every part is awaited; the first error is returned after all finished.
#[cfg(feature = "postgres")]
async fn pg_insert_parallel(
    pool: &Source<sqlx::Postgres>,
    events: &[AuditEvent],
    parts: usize,
) -> Result<u64, sqlx::Error> {
    let size = events
        .len()
        .div_ceil(parts.max(1))
        .max(PG_MIN_ROWS_PER_PART);
    if size >= events.len() {
        return pg_insert(pool, events).await;
    }
    let mut copies = tokio::task::JoinSet::new();
    for (i, part) in events.chunks(size).enumerate() {
        let data = pg_copy::encode(part)?;
        let pool = pool.clone();
        copies.spawn(async move { (i, pg_copy_in(&pool, data).await) });
    }
    let mut inserted = 0;
    let mut duplicates = Vec::new();
    let mut first_error = None;
    while let Some(joined) = copies.join_next().await {
        match joined {
            Ok((_, Ok(n))) => inserted += n,
            Ok((i, Err(sqlx::Error::Database(e)))) if e.is_unique_violation() => {
                duplicates.push(i);
            }
            Ok((_, Err(e))) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(sqlx::Error::Io(std::io::Error::other(e)));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    duplicates.sort_unstable();
    for i in duplicates {
        if let Some(part) = events.chunks(size).nth(i) {
            inserted += pg_insert_unnest(pool, part).await?;
        }
    }
    Ok(inserted)
}

/// Streams binary `COPY` data into `audit_events` on one pool connection.
#[cfg(feature = "postgres")]
async fn pg_copy_in(pool: &Source<sqlx::Postgres>, data: Vec<u8>) -> Result<u64, sqlx::Error> {
    let statement = format!(
        "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
        columns::COLUMNS.join(", ")
    );
    let mut conn = pool.acquire().await?;
    let mut copy = conn.copy_in_raw(&statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

/// One binary `COPY` per chunk, the fastest way into PostgreSQL. `COPY` has no
/// `ON CONFLICT`: when a row is already there (a batch replayed after a write whose success
/// was not seen), the whole `COPY` fails with a unique violation and inserts nothing, and the
/// chunk goes through the idempotent [`pg_insert_unnest`] instead.
#[cfg(feature = "postgres")]
async fn pg_insert(
    pool: &Source<sqlx::Postgres>,
    events: &[AuditEvent],
) -> Result<u64, sqlx::Error> {
    match pg_copy_in(pool, pg_copy::encode(events)?).await {
        Ok(n) => Ok(n),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            pg_insert_unnest(pool, events).await
        }
        Err(e) => Err(e),
    }
}

/// One `INSERT ... SELECT FROM UNNEST(arrays)` per chunk: a single prepared statement
/// whatever the batch size, and one array per column.
#[cfg(feature = "postgres")]
async fn pg_insert_unnest(
    pool: &Source<sqlx::Postgres>,
    events: &[AuditEvent],
) -> Result<u64, sqlx::Error> {
    const SQL: &str = "INSERT INTO audit_events (id, ts_us, schema_version, category, severity, subject, tenant, \
        auth_method, api_key_id, method, target_kind, target, arguments, decision, reason, outcome_status, \
        outcome_code, latency_us, request_id, trace_id, session_id, client_ip, user_agent, chain_stream, \
        chain_seq, prev_hash, hash) \
        SELECT * FROM UNNEST($1::text[]::uuid[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], \
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
        $15::text[], $16::text[], $17::int8[], $18::int8[], $19::text[], $20::text[], $21::text[], $22::text[], \
        $23::text[], $24::text[], $25::int8[], $26::text[], $27::text[]) \
        ON CONFLICT (ts_us, id) DO NOTHING";
    let n = events.len();
    macro_rules! cols {
        ($($name:ident: $ty:ty),* $(,)?) => {{
            $(let mut $name: Vec<$ty> = Vec::with_capacity(n);)*
            for e in events {
                let r = Row::from_event(e);
                $($name.push(r.$name);)*
            }
            sqlx::query(SQL)$(.bind($name))*
        }};
    }
    let q = cols!(
        id: String,
        ts_us: i64,
        schema_version: i64,
        category: String,
        severity: String,
        subject: Option<String>,
        tenant: Option<String>,
        auth_method: Option<String>,
        api_key_id: Option<String>,
        method: Option<String>,
        target_kind: Option<String>,
        target: Option<String>,
        arguments: Option<String>,
        decision: Option<String>,
        reason: Option<String>,
        outcome_status: Option<String>,
        outcome_code: Option<i64>,
        latency_us: Option<i64>,
        request_id: Option<String>,
        trace_id: Option<String>,
        session_id: Option<String>,
        client_ip: Option<String>,
        user_agent: Option<String>,
        chain_stream: Option<String>,
        chain_seq: Option<i64>,
        prev_hash: Option<String>,
        hash: Option<String>,
    );
    Ok(q.execute(&mut *pool.acquire().await?)
        .await?
        .rows_affected())
}

#[async_trait]
impl AuditSink for AuditStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        self.insert(events).await?;
        Ok(())
    }

    /// PostgreSQL: as many batches at once as the pool has connections but one (kept for
    /// queries), at least two and at most eight, so that commits (the WAL
    /// flush) and round trips overlap the next batches' copies; inserts are idempotent and
    /// queries order by time and chain position, so the order in which batches land does not
    /// matter. SQLite (one writer): 1.
    fn max_in_flight(&self) -> usize {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => 1,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => pg_in_flight(pool.max_connections()),
        }
    }
}

/// Batches written at once to a PostgreSQL pool of `connections`.
#[cfg(feature = "postgres")]
fn pg_in_flight(connections: u32) -> usize {
    usize::try_from(connections)
        .unwrap_or(usize::MAX)
        .saturating_sub(1)
        .clamp(2, PG_MAX_IN_FLIGHT)
}

/// The queries on PostgreSQL use the indexes they were written for: each is explained with
/// sequential scans disabled, on a table with enough rows and statistics for the choice to
/// be the planner's, and the plan must name the expected index. A query whose condition no
/// longer matches its index's expression falls back to scanning the primary key and fails.
#[cfg(all(test, feature = "postgres"))]
mod in_flight_tests {
    use super::{PG_MAX_IN_FLIGHT, pg_in_flight};

    #[test]
    fn writes_in_flight_follow_the_pool_and_leave_a_connection_for_queries() {
        assert_eq!(pg_in_flight(0), 2);
        assert_eq!(pg_in_flight(1), 2);
        assert_eq!(pg_in_flight(2), 2);
        assert_eq!(pg_in_flight(4), 3);
        assert_eq!(pg_in_flight(9), 8);
        assert_eq!(pg_in_flight(u32::MAX), PG_MAX_IN_FLIGHT);
    }
}

#[cfg(all(test, feature = "postgres"))]
mod plan_tests {
    #![allow(
        clippy::unwrap_used,
        clippy::print_stderr,
        reason = "test code: failures should stop loudly"
    )]

    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    use super::*;
    use crate::event::Category;

    fn postgres_url() -> Option<String> {
        match std::env::var("MCP_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "MCP_TEST_POSTGRES_URL is not set but MCP_TEST_REQUIRE_SERVICES=1"
                );
                eprintln!("skipping: MCP_TEST_POSTGRES_URL is not set");
                None
            }
        }
    }

    async fn plan(pool: &sqlx::PgPool, sql: Sql) -> String {
        let text = format!("EXPLAIN {}", sql.text);
        let rows: Vec<String> = bind_args!(sqlx::query_scalar(sqlx::AssertSqlSafe(text)), sql.args)
            .fetch_all(pool)
            .await
            .unwrap();
        rows.join("\n")
    }

    #[tokio::test]
    async fn queries_use_their_indexes() {
        let Some(url) = postgres_url() else { return };
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        let schema = format!("audit_plan_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str()), ("enable_seqscan", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let store = AuditStore::postgres(pool.clone());
        store.migrate().await.unwrap();
        let mut head = ChainHead::genesis("plan");
        let events: Vec<_> = (0..5_000)
            .map(|i| {
                let mut e = AuditEvent::new(Category::ToolCall)
                    .tenant(format!("tenant-{}", i % 20))
                    .subject(format!("user-{}", i % 200))
                    .tool("search");
                head.link(&mut e);
                e
            })
            .collect();
        store.insert(&events).await.unwrap();
        sqlx::query("ANALYZE audit_events")
            .execute(&pool)
            .await
            .unwrap();

        let d = Dialect::Postgres;
        let page = |scope: &Scope, filter: &AuditFilter, after: Option<&AuditEvent>| {
            let mut request = PageRequest::first(50);
            if let Some(e) = after {
                request = request.after(query::encode_cursor(e.time.unix_micros(), &e.id));
            }
            query::page_query(d, scope, filter, &request).unwrap()
        };
        let middle = &events[2_500];
        let cases = [
            (
                page(&Scope::Tenant("tenant-3".into()), &AuditFilter::new(), None),
                "audit_events_tenant_ts",
            ),
            (
                page(
                    &Scope::Tenant("tenant-3".into()),
                    &AuditFilter::new(),
                    Some(middle),
                ),
                "audit_events_tenant_ts",
            ),
            (
                page(&Scope::All, &AuditFilter::new().subject("user-7"), None),
                "audit_events_subject_ts",
            ),
            (
                page(&Scope::All, &AuditFilter::new(), Some(middle)),
                "audit_events_pkey",
            ),
        ];
        let chain = [
            (query::chain_head_query(d, "plan"), "audit_events_chain"),
            (
                query::chain_page_query(d, "plan", None),
                "audit_events_chain",
            ),
            (
                query::chain_page_query(d, "plan", Some(&(2_500, middle.id.to_string()))),
                "audit_events_chain",
            ),
        ];
        let mut failures = Vec::new();
        for (sql, index) in cases.into_iter().chain(chain) {
            let text = sql.text.clone();
            let plan = plan(&pool, sql).await;
            if !plan.contains(index) {
                failures.push(format!("{text}\nwants {index}, plan:\n{plan}"));
            }
        }
        pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}
