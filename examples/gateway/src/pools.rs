//! The gateway's SQL connections: the audit store (sink, queries, analytics) and the API-key
//! store draw them from the operation classes of one mcp-pool [`PoolSet`] (`[pools]`):
//! `write` (audit inserts and migrations), `read` (audit queries), `analytics` (audit
//! exports and analytics; both on the read replica when one is set) on the audit
//! database, and `auth` on the API-key database. The command line opens the same databases
//! with the same connection options, through plain pools.
//!
//! The stores take the classes themselves as their connection source (the `pool` features
//! of mcp-audit and mcp-auth-core): every connection goes through the class's `acquire`,
//! so acquires, waits, the acquire-wait histogram and timeouts count the stores' work, and
//! an applied limit holds them. Only a PostgreSQL API-key store in a schema of its own
//! migrates on a connection of its own, opened with the class's connect options.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mcp_audit::AuditStore;
use mcp_auth_core::api_key::ApiKeyStore;
use mcp_pool::{
    PgClass, PgClassConfig, PoolSet, SamplerConfig, SqlBackend, SqlClassConfig, SqliteClass,
    SqliteClassConfig,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::config::{
    ApiKeyStoreKind, ApiKeysConfig, AuditSinkKind, ClassSettings, Config, PoolClass, PoolsConfig,
};

/// Where a store's database is, as sqlx connect options.
#[derive(Clone)]
pub(crate) enum Database {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// A connection source of either backend: a plain sqlx pool (the command line's) or a
/// class of the pool set (the serving gateway's).
pub(crate) enum SqlPool<L = sqlx::SqlitePool, P = sqlx::PgPool> {
    Sqlite(L),
    Postgres(P),
}

impl Database {
    /// The SQLite file at `path` (created with its directory if missing): WAL journal,
    /// `synchronous = NORMAL`, a 5 s busy timeout and temporary files
    /// in memory. `key` names the setting in errors.
    pub(crate) fn sqlite(path: &Path, key: &str) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{key}: cannot create {}", parent.display()))?;
        }
        Ok(Self::Sqlite(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .pragma("temp_store", "memory"),
        ))
    }

    /// The PostgreSQL database at `url` (`?options=-c%20search_path%3D<schema>` picks a
    /// schema). The error never repeats the URL, which may hold a password.
    pub(crate) fn postgres(url: &str, key: &str) -> anyhow::Result<Self> {
        url.parse::<PgConnectOptions>()
            .map(Self::Postgres)
            .map_err(|_| anyhow::anyhow!("{key}: not a valid PostgreSQL URL"))
    }

    /// A plain pool on the database (at most `max` connections), connected.
    pub(crate) async fn connect(&self, max: u32, key: &str) -> anyhow::Result<SqlPool> {
        Ok(match self {
            Self::Sqlite(options) => SqlPool::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(max)
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("{key}: cannot open the SQLite database"))?,
            ),
            Self::Postgres(options) => SqlPool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(max)
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("{key}: cannot connect to PostgreSQL"))?,
            ),
        })
    }
}

/// The audit database of `[audit]`, when its sink is SQL.
pub(crate) fn audit_database(config: &Config) -> anyhow::Result<Option<Database>> {
    let audit = &config.audit;
    Ok(match audit.sink {
        AuditSinkKind::Sqlite => {
            let path = audit.path.as_ref().context("audit.path is required")?;
            Some(Database::sqlite(path, "audit.path")?)
        }
        AuditSinkKind::Postgres => {
            let url = audit.url.as_ref().context("audit.url is required")?;
            Some(Database::postgres(url, "audit.url")?)
        }
        _ => None,
    })
}

/// The API-key database of `[auth.api_keys]`, when its store is SQL.
pub(crate) fn api_key_database(keys: &ApiKeysConfig) -> anyhow::Result<Option<Database>> {
    Ok(match keys.store {
        ApiKeyStoreKind::Sqlite => {
            let path = keys
                .path
                .as_ref()
                .context("auth.api_keys.path is required")?;
            Some(Database::sqlite(path, "auth.api_keys.path")?)
        }
        ApiKeyStoreKind::Postgres => {
            let url = keys.url.as_ref().context("auth.api_keys.url is required")?;
            Some(Database::postgres(url, "auth.api_keys.url")?)
        }
        ApiKeyStoreKind::Memory => None,
    })
}

impl<L, P> SqlPool<L, P>
where
    L: mcp_audit::ConnectionSource<sqlx::Sqlite>,
    P: mcp_audit::ConnectionSource<sqlx::Postgres>,
{
    /// The audit store on this source.
    pub(crate) fn audit_store(self) -> AuditStore {
        match self {
            Self::Sqlite(pool) => AuditStore::sqlite(pool),
            Self::Postgres(pool) => AuditStore::postgres(pool),
        }
    }
}

/// The audit store of each class that reads or writes the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct AuditStores {
    /// The sink (class `write`), migrated.
    pub(crate) write: AuditStore,
    /// Audit queries (class `read`).
    pub(crate) read: AuditStore,
    /// Exports and analytics (class `analytics`).
    pub(crate) analytics: AuditStore,
}

/// What [`open`] opened.
#[derive(Default)]
pub(crate) struct SqlStores {
    /// The classes; `None` when no store is SQL.
    pub(crate) pools: Option<PoolSet>,
    /// The audit stores, when the audit sink is SQL.
    pub(crate) audit: Option<AuditStores>,
    /// The API-key store, when `[auth.api_keys]` names a SQL one (migrated).
    pub(crate) api_keys: Option<Arc<dyn ApiKeyStore>>,
}

/// `config`'s settings applied to a class.
fn sized<DB: SqlBackend>(class: SqlClassConfig<DB>, s: ClassSettings) -> SqlClassConfig<DB> {
    class
        .size(s.size)
        .min_connections(s.min)
        .max_connections(s.max)
        .acquire_timeout(Duration::from_secs(s.acquire_timeout_secs))
        .idle_timeout(s.idle_timeout_secs.map(Duration::from_secs))
}

/// `class` on `database`; SQLite files and replicas (`budgeted = false`) are outside the
/// connection budget.
fn class_on(
    builder: mcp_pool::PoolSetBuilder,
    pools: &PoolsConfig,
    class: PoolClass,
    database: &Database,
    budgeted: bool,
) -> mcp_pool::PoolSetBuilder {
    let settings = pools.class(class);
    match database {
        Database::Sqlite(options) => {
            // The audit writer's multi-row inserts want a large page cache (32 MiB per
            // connection); readers keep SQLite's default.
            let options = match class {
                PoolClass::Write => options.clone().pragma("cache_size", "-32768"),
                _ => options.clone(),
            };
            builder.sql(
                sized(
                    SqliteClassConfig::with_options(class.name(), options),
                    settings,
                )
                .budgeted(false),
            )
        }
        Database::Postgres(options) => builder.sql(
            sized(
                PgClassConfig::with_options(class.name(), options.clone()),
                settings,
            )
            .budgeted(budgeted),
        ),
    }
}

/// `class` (of `database`'s backend) as a stores' connection source.
fn pool_of(
    set: &PoolSet,
    class: PoolClass,
    database: &Database,
) -> anyhow::Result<SqlPool<SqliteClass, PgClass>> {
    let name = class.name();
    Ok(match database {
        Database::Sqlite(_) => SqlPool::Sqlite(set.sqlite(name)?.clone()),
        Database::Postgres(_) => SqlPool::Postgres(set.postgres(name)?.clone()),
    })
}

/// Opens the classes the configured SQL stores need and the stores on them: the audit
/// store of each audit class (the sink's migrated) and the API-key store (migrated).
pub(crate) async fn open(config: &Config) -> anyhow::Result<SqlStores> {
    // Audit off: nothing is recorded, the admin audit endpoints answer 404.
    let audit = match config.audit.enabled {
        true => audit_database(config)?,
        false => None,
    };
    let keys = match &config.auth.api_keys {
        Some(section) => api_key_database(section)?,
        None => None,
    };
    if audit.is_none() && keys.is_none() {
        return Ok(SqlStores::default());
    }
    let pools = &config.pools;
    let replica = pools
        .replica_url
        .as_deref()
        .map(|url| Database::postgres(url, "pools.replica_url"))
        .transpose()?;
    let s = &pools.sampler;
    let mut builder = PoolSet::builder()
        .sampler(
            SamplerConfig::default()
                .resolution(Duration::from_secs(s.resolution_secs))
                .window(Duration::from_secs(s.window_secs))
                .history(Duration::from_secs(s.history_secs)),
        )
        .apply_advice(pools.apply_advice)
        .connect_lazily(pools.connect_lazily);
    if let Some(budget) = pools.connection_budget {
        builder = builder.connection_budget(budget);
    }
    if let Some(database) = &audit {
        for class in [PoolClass::Write, PoolClass::Read, PoolClass::Analytics] {
            builder = match &replica {
                Some(replica) if class.reads_only() => {
                    class_on(builder, pools, class, replica, false)
                }
                _ => class_on(builder, pools, class, database, true),
            };
        }
    }
    if let Some(database) = &keys {
        builder = class_on(builder, pools, PoolClass::Auth, database, true);
    }
    let set = builder.build().await.context("pools")?;
    let audit = match &audit {
        Some(database) => {
            let write = pool_of(&set, PoolClass::Write, database)?.audit_store();
            write.migrate().await.context("audit")?;
            // The read classes are on the replica's backend, which is PostgreSQL like the
            // primary's when set.
            let reads = replica.as_ref().unwrap_or(database);
            Some(AuditStores {
                write,
                read: pool_of(&set, PoolClass::Read, reads)?.audit_store(),
                analytics: pool_of(&set, PoolClass::Analytics, reads)?.audit_store(),
            })
        }
        None => None,
    };
    let api_keys = match (&keys, &config.auth.api_keys) {
        (Some(database), Some(section)) => {
            let pool = pool_of(&set, PoolClass::Auth, database)?;
            Some(crate::api_keys::sql_store(section, pool).await?)
        }
        _ => None,
    };
    Ok(SqlStores {
        pools: Some(set),
        audit,
        api_keys,
    })
}
