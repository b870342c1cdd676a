//! [`SqlClientStore`]: registered OAuth clients in SQLite (feature `sqlite`) or PostgreSQL
//! (feature `postgres`) through sqlx, with embedded migrations.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use mcp_auth_core::sql::single_migration;
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Row};

use super::{ClientStore, RegisteredClient, unix_secs};
#[cfg(feature = "postgres")]
use crate::proxy::error::ConfigError;
use crate::proxy::error::ProxyError;

/// The table that records which of this store's migrations ran, apart from
/// `_sqlx_migrations` so an application's own sqlx migrations do not clash with ours.
const MIGRATIONS_TABLE: &str = "_mcp_auth_azure_clients_migrations";

const TABLE: &str = "mcp_oauth_clients";

/// Registered clients in an SQL database.
///
/// Build it with [`SqlClientStore::sqlite`] or [`SqlClientStore::postgres`] (optionally in
/// a schema of its own with [`SqlClientStore::postgres_in_schema`]), then call
/// [`migrate`](Self::migrate) once at start-up. Expired registrations are invisible to
/// [`get`](ClientStore::get); [`purge_expired`](Self::purge_expired) deletes them. The
/// migrations also ship as plain SQL under `migrations/sqlite` and `migrations/postgres`.
#[derive(Clone)]
pub struct SqlClientStore {
    backend: Backend,
    schema: Option<Arc<str>>,
    queries: Arc<Queries>,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

struct Queries {
    insert: Arc<str>,
    get: Arc<str>,
    delete: Arc<str>,
    purge: Arc<str>,
}

impl Queries {
    fn new(table: &str) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {table} (client_id, client, issued_at, expires_at) \
                 VALUES ($1, $2, $3, $4)"
            )
            .into(),
            get: format!(
                "SELECT client FROM {table} \
                 WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)"
            )
            .into(),
            delete: format!("DELETE FROM {table} WHERE client_id = $1").into(),
            purge: format!("DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .into(),
        }
    }
}

impl fmt::Debug for SqlClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        };
        f.debug_struct("SqlClientStore")
            .field("backend", &backend)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend is in use.
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

fn db_error(what: &'static str) -> impl Fn(sqlx::Error) -> ProxyError + Copy {
    move |error| ProxyError::store(what, error)
}

fn sql(text: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(text))
}

fn migrator(sql: &'static str) -> Migrator {
    single_migration("oauth clients", sql, MIGRATIONS_TABLE)
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqlClientStore {
    /// A store on an SQLite pool.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        Self {
            backend: Backend::Sqlite(pool),
            schema: None,
            queries: Arc::new(Queries::new(TABLE)),
        }
    }

    /// A store on a PostgreSQL pool, using the table in the connections' `search_path`.
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self {
            backend: Backend::Postgres(pool),
            schema: None,
            queries: Arc::new(Queries::new(TABLE)),
        }
    }

    /// A store on a PostgreSQL pool with its table in `schema` (lowercase letters, digits
    /// and `_`, not starting with a digit, at most 63 characters:
    /// [`check_schema_name`](mcp_auth_core::sql::check_schema_name)).
    /// [`migrate`](Self::migrate) creates the schema if needed.
    #[cfg(feature = "postgres")]
    pub fn postgres_in_schema(pool: sqlx::PgPool, schema: &str) -> Result<Self, ConfigError> {
        mcp_auth_core::sql::check_schema_name(schema).map_err(ConfigError::new)?;
        Ok(Self {
            backend: Backend::Postgres(pool),
            schema: Some(schema.into()),
            queries: Arc::new(Queries::new(&format!("\"{schema}\".{TABLE}"))),
        })
    }

    /// Creates or upgrades the table. Idempotent, safe to run from several replicas at once
    /// (PostgreSQL migrations take an advisory lock).
    pub async fn migrate(&self) -> Result<(), ProxyError> {
        let migrate_failed = |error| ProxyError::store("OAuth client migration failed", error);
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => migrator(include_str!(
                "../../../migrations/sqlite/0001_oauth_clients.sql"
            ))
            .run(pool)
            .await
            .map_err(migrate_failed),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let migrator = migrator(include_str!(
                    "../../../migrations/postgres/0001_oauth_clients.sql"
                ));
                match &self.schema {
                    Some(schema) => mcp_auth_core::sql::migrate_in_schema(
                        &pool.connect_options(),
                        schema,
                        migrator,
                    )
                    .await
                    .map_err(migrate_failed),
                    None => migrator.run(pool).await.map_err(migrate_failed),
                }
            }
        }
    }

    /// Deletes registrations that ended at or before `now`; returns how many went.
    pub async fn purge_expired(&self, now: SystemTime) -> Result<u64, ProxyError> {
        let now = secs(unix_secs(now));
        with_pool!(self, pool => {
            sqlx::query(sql(&self.queries.purge))
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
                .map_err(db_error("cannot purge OAuth clients"))
        })
    }
}

#[async_trait]
impl ClientStore for SqlClientStore {
    async fn insert(&self, client: &RegisteredClient, _now: SystemTime) -> Result<(), ProxyError> {
        let json =
            serde_json::to_string(client).map_err(|e| ProxyError::store("client encode", e))?;
        with_pool!(self, pool => {
            sqlx::query(sql(&self.queries.insert))
                .bind(&client.client_id)
                .bind(&json)
                .bind(secs(client.issued_at))
                .bind(client.expires_at.map(secs))
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("cannot insert OAuth client"))
        })
    }

    async fn get(
        &self,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Option<RegisteredClient>, ProxyError> {
        let now = secs(unix_secs(now));
        let json: Option<String> = with_pool!(self, pool => {
            let row = sqlx::query(sql(&self.queries.get))
                .bind(client_id)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(db_error("cannot read OAuth client"))?;
            row.map(|row| row.try_get::<String, _>("client"))
                .transpose()
                .map_err(db_error("cannot read OAuth client"))?
        });
        json.map(|json| {
            serde_json::from_str(&json).map_err(|e| ProxyError::store("client decode", e))
        })
        .transpose()
    }

    async fn delete(&self, client_id: &str) -> Result<bool, ProxyError> {
        with_pool!(self, pool => {
            sqlx::query(sql(&self.queries.delete))
                .bind(client_id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected() > 0)
                .map_err(db_error("cannot delete OAuth client"))
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn schema_names_are_checked() {
        use super::SqlClientStore;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://localhost/unused")
            .unwrap();
        assert!(SqlClientStore::postgres_in_schema(pool.clone(), "tenant_a1").is_ok());
        let refused = SqlClientStore::postgres_in_schema(pool, "a\";drop").unwrap_err();
        assert!(refused.to_string().contains("[a-z0-9_]"), "{refused}");
    }
}
