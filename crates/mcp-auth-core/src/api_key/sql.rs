//! [`SqlApiKeyStore`]: API keys in SQLite (feature `sqlite`) or PostgreSQL (feature
//! `postgres`) through sqlx, with embedded migrations.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Row};

use super::{ApiKeyError, ApiKeyFilter, ApiKeyRecord, ApiKeyStore, ApiKeyUpdate, HASH_LEN};
use crate::sql::{ConnectionSource, Source, single_migration};

/// The table that records which of this crate's migrations ran, kept apart from
/// `_sqlx_migrations` so an application's own sqlx migrations do not clash with ours.
pub(crate) const MIGRATIONS_TABLE: &str = "_mcp_auth_api_keys_migrations";

const TABLE: &str = "mcp_api_keys";

const COLUMNS: &str = "key_id, hash, owner, tenant, roles, scopes, name, created_at, \
                       expires_at, last_used_at, revoked_at, rotated_from, replaced_by";

/// API keys in an SQL database.
///
/// Build it with [`SqlApiKeyStore::sqlite`] or [`SqlApiKeyStore::postgres`] (optionally in
/// a schema of its own with [`SqlApiKeyStore::postgres_in_schema`]) on a sqlx pool or another
/// [`ConnectionSource`] (an mcp-pool class with the `pool` feature), then call
/// [`migrate`](Self::migrate) once at start-up. Times are stored as Unix epoch milliseconds.
/// The migrations are also shipped as plain SQL under `migrations/sqlite` and
/// `migrations/postgres` for operators who run their own migration tool.
#[derive(Clone)]
pub struct SqlApiKeyStore {
    backend: Backend,
    schema: Option<Arc<str>>,
    queries: Arc<Queries>,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(Source<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Source<sqlx::Postgres>),
}

/// The statements, with the (possibly schema-qualified) table name filled in.
struct Queries {
    insert: Arc<str>,
    get: Arc<str>,
    update: Arc<str>,
    list: Arc<str>,
    touch: Arc<str>,
}

impl Queries {
    fn new(table: &str) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {table} ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )
            .into(),
            get: format!("SELECT {COLUMNS} FROM {table} WHERE key_id = $1").into(),
            update: format!(
                "UPDATE {table} SET \
                 revoked_at = COALESCE(revoked_at, $2), \
                 expires_at = CASE WHEN $3 IS NULL THEN expires_at \
                                   WHEN expires_at IS NULL OR expires_at > $3 THEN $3 \
                                   ELSE expires_at END, \
                 replaced_by = COALESCE(replaced_by, $4) \
                 WHERE key_id = $1 RETURNING {COLUMNS}"
            )
            .into(),
            list: format!(
                "SELECT {COLUMNS} FROM {table} \
                 WHERE ($1 IS NULL OR owner = $1) AND ($2 IS NULL OR tenant = $2) \
                 ORDER BY created_at, key_id LIMIT $3"
            )
            .into(),
            touch: format!(
                "UPDATE {table} SET last_used_at = $2 \
                 WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"
            )
            .into(),
        }
    }
}

impl fmt::Debug for SqlApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("SqlApiKeyStore")
            .field("backend", &backend)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Runs `$body` with `$pool` bound to the connection source of whichever backend is in use.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Backend::Postgres($pool) => $body,
        }
    };
}

fn db_error(what: &'static str) -> impl Fn(sqlx::Error) -> ApiKeyError + Copy {
    move |error| ApiKeyError::store(what, Some(Box::new(error)))
}

fn sql(text: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(text))
}

fn migrator(sql: &'static str) -> Migrator {
    single_migration("api keys", sql, MIGRATIONS_TABLE)
}

impl SqlApiKeyStore {
    /// A store on an SQLite pool (or another [`ConnectionSource`]).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: impl ConnectionSource<sqlx::Sqlite>) -> Self {
        Self {
            backend: Backend::Sqlite(Source::new(pool)),
            schema: None,
            queries: Arc::new(Queries::new(TABLE)),
        }
    }

    /// A store on a PostgreSQL pool (or another [`ConnectionSource`]), using the table in
    /// the connections' `search_path`.
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: impl ConnectionSource<sqlx::Postgres>) -> Self {
        Self {
            backend: Backend::Postgres(Source::new(pool)),
            schema: None,
            queries: Arc::new(Queries::new(TABLE)),
        }
    }

    /// A store on a PostgreSQL pool (or another [`ConnectionSource`]) with its table in
    /// `schema` (lowercase letters, digits and `_`, not starting with a digit, at most 63
    /// characters: [`check_schema_name`](crate::sql::check_schema_name)).
    /// [`migrate`](Self::migrate) creates the schema if needed.
    #[cfg(feature = "postgres")]
    pub fn postgres_in_schema(
        pool: impl ConnectionSource<sqlx::Postgres>,
        schema: &str,
    ) -> Result<Self, ApiKeyError> {
        crate::sql::check_schema_name(schema).map_err(ApiKeyError::InvalidConfig)?;
        Ok(Self {
            backend: Backend::Postgres(Source::new(pool)),
            schema: Some(schema.into()),
            queries: Arc::new(Queries::new(&format!("\"{schema}\".{TABLE}"))),
        })
    }

    /// Creates or upgrades the table. Idempotent, safe to run from several replicas at once
    /// (PostgreSQL migrations take an advisory lock).
    pub async fn migrate(&self) -> Result<(), ApiKeyError> {
        let migrate_failed =
            |error| ApiKeyError::store("API-key migration failed", Some(Box::new(error)));
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => pool
                .migrate(&migrator(include_str!(
                    "../../migrations/sqlite/0001_api_keys.sql"
                )))
                .await
                .map_err(migrate_failed),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let migrator =
                    migrator(include_str!("../../migrations/postgres/0001_api_keys.sql"));
                let result = match &self.schema {
                    Some(schema) => {
                        crate::sql::migrate_in_schema(&pool.connect_options(), schema, migrator)
                            .await
                    }
                    None => pool.migrate(&migrator).await,
                };
                result.map_err(migrate_failed)
            }
        }
    }
}

fn to_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn set_to_json(set: &BTreeSet<String>) -> Result<String, ApiKeyError> {
    serde_json::to_string(set)
        .map_err(|e| ApiKeyError::store("cannot encode roles or scopes", Some(Box::new(e))))
}

fn set_from_json(text: &str) -> Result<BTreeSet<String>, ApiKeyError> {
    serde_json::from_str(text).map_err(|e| {
        ApiKeyError::store(
            "stored roles or scopes are not a JSON array",
            Some(Box::new(e)),
        )
    })
}

fn record_from_row<R>(row: &R) -> Result<ApiKeyRecord, ApiKeyError>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad = db_error("cannot read an API-key row");
    let hash: Vec<u8> = row.try_get("hash").map_err(&bad)?;
    let hash: [u8; HASH_LEN] = hash
        .try_into()
        .map_err(|_| ApiKeyError::store("stored API-key hash has the wrong length", None))?;
    let roles: String = row.try_get("roles").map_err(&bad)?;
    let scopes: String = row.try_get("scopes").map_err(&bad)?;
    let time = |column: &'static str| -> Result<Option<SystemTime>, ApiKeyError> {
        let ms: Option<i64> = row.try_get(column).map_err(&bad)?;
        Ok(ms.map(from_millis))
    };
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id").map_err(&bad)?,
        hash,
        owner: row.try_get("owner").map_err(&bad)?,
        tenant: row.try_get("tenant").map_err(&bad)?,
        roles: set_from_json(&roles)?,
        scopes: set_from_json(&scopes)?,
        name: row.try_get("name").map_err(&bad)?,
        created_at: from_millis(row.try_get("created_at").map_err(&bad)?),
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
        rotated_from: row.try_get("rotated_from").map_err(&bad)?,
        replaced_by: row.try_get("replaced_by").map_err(&bad)?,
    })
}

#[async_trait]
impl ApiKeyStore for SqlApiKeyStore {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyError> {
        let roles = set_to_json(&record.roles)?;
        let scopes = set_to_json(&record.scopes)?;
        let result = with_pool!(self, pool => async {
            let mut conn = pool.acquire().await?;
            sqlx::query(sql(&self.queries.insert))
                .bind(&record.key_id)
                .bind(record.hash.as_slice())
                .bind(&record.owner)
                .bind(record.tenant.as_deref())
                .bind(&roles)
                .bind(&scopes)
                .bind(&record.name)
                .bind(to_millis(record.created_at))
                .bind(record.expires_at.map(to_millis))
                .bind(record.last_used_at.map(to_millis))
                .bind(record.revoked_at.map(to_millis))
                .bind(record.rotated_from.as_deref())
                .bind(record.replaced_by.as_deref())
                .execute(&mut *conn)
                .await
                .map(drop)
        }
        .await);
        result.map_err(|error| {
            let duplicate = error
                .as_database_error()
                .is_some_and(|e| e.is_unique_violation());
            if duplicate {
                ApiKeyError::AlreadyExists
            } else {
                ApiKeyError::store("cannot insert API key", Some(Box::new(error)))
            }
        })
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        let failed = db_error("cannot read API key");
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(failed)?;
            let row = sqlx::query(sql(&self.queries.get))
                .bind(key_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(failed)?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    async fn update(
        &self,
        key_id: &str,
        update: &ApiKeyUpdate,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        let failed = db_error("cannot update API key");
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(failed)?;
            let row = sqlx::query(sql(&self.queries.update))
                .bind(key_id)
                .bind(update.revoked_at.map(to_millis))
                .bind(update.expires_at.map(to_millis))
                .bind(update.replaced_by.as_deref())
                .fetch_optional(&mut *conn)
                .await
                .map_err(failed)?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        let failed = db_error("cannot list API keys");
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(failed)?;
            let rows = sqlx::query(sql(&self.queries.list))
                .bind(filter.owner.as_deref())
                .bind(filter.tenant.as_deref())
                .bind(i64::from(filter.effective_limit()))
                .fetch_all(&mut *conn)
                .await
                .map_err(failed)?;
            rows.iter().map(record_from_row).collect()
        })
    }

    async fn touch_last_used(&self, uses: &[(String, SystemTime)]) -> Result<(), ApiKeyError> {
        if uses.is_empty() {
            return Ok(());
        }
        let failed = db_error("cannot record API-key last use");
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(&failed)?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(&failed)?;
            for (key_id, at) in uses {
                sqlx::query(sql(&self.queries.touch))
                    .bind(key_id)
                    .bind(to_millis(*at))
                    .execute(&mut *tx)
                    .await
                    .map_err(&failed)?;
            }
            tx.commit().await.map_err(&failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_700_000_000_123, -5_000] {
            assert_eq!(to_millis(from_millis(ms)), ms);
        }
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn schema_names_are_checked() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://localhost/unused")
            .unwrap();
        assert!(SqlApiKeyStore::postgres_in_schema(pool.clone(), "tenant_a1").is_ok());
        assert!(matches!(
            SqlApiKeyStore::postgres_in_schema(pool, "a\";drop"),
            Err(ApiKeyError::InvalidConfig(_))
        ));
    }
}
