//! SQL classes: a sqlx pool per class (PostgreSQL or SQLite) with statistics and a limit.

use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{Connection, Database, Pool};
use tokio::sync::OwnedSemaphorePermit;

use crate::class::{
    Backend, BoxFuture, ClassOps, Gauges, Settings, StandardClass, check_limits, check_name,
};
use crate::error::{ConfigError, PoolError};
use crate::limiter::{Limiter, Permit, Returned};
use crate::set::{Opened, PendingClass, Plan};
use crate::stats::ClassStats;

mod private {
    use super::BoxFuture;

    /// Seals [`SqlBackend`](super::SqlBackend) and carries the health query.
    pub trait Sealed: sqlx::Database {
        /// Runs `SELECT 1` on a connection.
        fn select_one(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>>;
    }
}

/// A sqlx database that a [`PoolSet`](crate::PoolSet) can hold classes of:
/// `sqlx::Postgres` (feature `postgres`) and `sqlx::Sqlite` (feature `sqlite`).
pub trait SqlBackend: private::Sealed {
    /// The backend's tag.
    const BACKEND: Backend;
}

#[cfg(feature = "postgres")]
impl private::Sealed for sqlx::Postgres {
    fn select_one(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { sqlx::query("SELECT 1").execute(conn).await.map(drop) })
    }
}

#[cfg(feature = "postgres")]
impl SqlBackend for sqlx::Postgres {
    const BACKEND: Backend = Backend::Postgres;
}

#[cfg(feature = "sqlite")]
impl private::Sealed for sqlx::Sqlite {
    fn select_one(conn: &mut Self::Connection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { sqlx::query("SELECT 1").execute(conn).await.map(drop) })
    }
}

#[cfg(feature = "sqlite")]
impl SqlBackend for sqlx::Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
}

type ConnectOptionsOf<DB> = <<DB as Database>::Connection as Connection>::Options;

/// Where a class connects: a URL parsed at build time, or ready-made sqlx options.
enum Connect<DB: Database> {
    Url(String),
    Options(ConnectOptionsOf<DB>),
}

/// The settings of one SQL class. `size` is the class's limit at start; `min_connections` and
/// `max_connections` bound the sizing advice (and the applied limit).
///
/// The URL and connect options are never printed (`Debug` leaves them out).
pub struct SqlClassConfig<DB: SqlBackend> {
    name: String,
    connect: Connect<DB>,
    size: u32,
    min: u32,
    max: Option<u32>,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    health_timeout: Duration,
    test_before_acquire: bool,
    budgeted: bool,
}

/// A PostgreSQL class's settings.
#[cfg(feature = "postgres")]
pub type PgClassConfig = SqlClassConfig<sqlx::Postgres>;
/// A SQLite class's settings.
#[cfg(feature = "sqlite")]
pub type SqliteClassConfig = SqlClassConfig<sqlx::Sqlite>;
/// A PostgreSQL class.
#[cfg(feature = "postgres")]
pub type PgClass = SqlClass<sqlx::Postgres>;
/// A SQLite class.
#[cfg(feature = "sqlite")]
pub type SqliteClass = SqlClass<sqlx::Sqlite>;

impl<DB: SqlBackend> fmt::Debug for SqlClassConfig<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlClassConfig")
            .field("name", &self.name)
            .field("backend", &DB::BACKEND)
            .field("size", &self.size)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("health_timeout", &self.health_timeout)
            .field("test_before_acquire", &self.test_before_acquire)
            .field("budgeted", &self.budgeted)
            .finish_non_exhaustive()
    }
}

impl<DB: SqlBackend> SqlClassConfig<DB> {
    fn with_connect(name: impl Into<String>, connect: Connect<DB>) -> Self {
        Self {
            name: name.into(),
            connect,
            size: 10,
            min: 0,
            max: None,
            acquire_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            health_timeout: Duration::from_secs(2),
            test_before_acquire: true,
            budgeted: true,
        }
    }

    /// A class `name` on the database at `url` (parsed when the set is built), with sqlx's
    /// defaults: 10 connections, 30 s acquire timeout, 10 min idle timeout, 30 min lifetime.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::with_connect(name, Connect::Url(url.into()))
    }

    /// A class `name` connecting with ready-made sqlx options (to set a search path, TLS
    /// files, an application name, ...).
    pub fn with_options(name: impl Into<String>, options: ConnectOptionsOf<DB>) -> Self {
        Self::with_connect(name, Connect::Options(options))
    }

    /// One of the seeds' classes with its size and acquire timeout.
    pub fn standard(class: StandardClass, url: impl Into<String>) -> Self {
        Self::new(class.name(), url)
            .size(class.size())
            .acquire_timeout(class.acquire_timeout())
    }

    /// The four standard classes on `primary`; `read` and `analytics` on `replica` when given.
    pub fn standard_set(primary: &str, replica: Option<&str>) -> Vec<Self> {
        StandardClass::ALL
            .iter()
            .map(|&class| {
                let url = match replica {
                    Some(replica) if class.reads_only() => replica,
                    _ => primary,
                };
                Self::standard(class, url)
            })
            .collect()
    }

    /// The class's limit at start (default 10).
    pub fn size(mut self, size: u32) -> Self {
        self.size = size;
        self
    }

    /// Connections kept open, and the lowest limit the advice goes to (default 0; the
    /// advice never goes below 1).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min = min;
        self
    }

    /// The highest limit the advice goes to (default: `size`). With applied advice the
    /// sqlx pool is opened this large and a semaphore holds the class to its limit.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max = Some(max);
        self
    }

    /// How long an acquire waits before [`PoolError::Timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Idle connections older than this are closed (`None`: never).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// Connections older than this are closed when returned (`None`: never).
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = lifetime.into();
        self
    }

    /// Time limit of the class's health check (default 2 s).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Whether sqlx pings an idle connection before handing it out (default true).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }

    /// Whether the class counts against the set's connection budget (default true; turn
    /// off for a class on another server, such as a read replica with its own limit).
    pub fn budgeted(mut self, budgeted: bool) -> Self {
        self.budgeted = budgeted;
        self
    }

    fn max(&self) -> u32 {
        self.max.unwrap_or(self.size)
    }

    async fn open(self, apply: bool, lazy: bool) -> Result<SqlClass<DB>, ConfigError> {
        let name = self.name.clone();
        let max = self.max();
        let options = match self.connect {
            Connect::Options(options) => options,
            Connect::Url(url) => {
                url.parse::<ConnectOptionsOf<DB>>()
                    .map_err(|e| ConfigError::InvalidUrl {
                        class: name.clone(),
                        source: Box::new(e),
                    })?
            }
        };
        let stats = Arc::new(ClassStats::default());
        let counter = Arc::clone(&stats);
        // Applied advice: the pool may grow to `max`, the semaphore holds it to the limit.
        let pool_max = if apply { max } else { self.size };
        let pool_options = PoolOptions::<DB>::new()
            .max_connections(pool_max)
            .min_connections(self.min)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .test_before_acquire(self.test_before_acquire)
            .after_connect(move |_conn, _meta| {
                counter.opened();
                Box::pin(std::future::ready(Ok(())))
            });
        let pool = if lazy {
            pool_options.connect_lazy_with(options)
        } else {
            pool_options
                .connect_with(options)
                .await
                .map_err(|e| ConfigError::Connect {
                    class: name.clone(),
                    source: Box::new(e),
                })?
        };
        Ok(SqlClass(Arc::new(SqlInner {
            name,
            pool,
            stats,
            limiter: apply.then(|| Limiter::new(self.size)),
            pool_max,
            settings: Settings {
                min: self.min,
                max,
                budgeted: self.budgeted,
                acquire_timeout: self.acquire_timeout,
                idle_timeout: self.idle_timeout,
                health_timeout: self.health_timeout,
                resizable: apply,
            },
        })))
    }
}

impl<DB: SqlBackend> PendingClass for SqlClassConfig<DB> {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan(&self) -> Result<Plan, ConfigError> {
        check_name(&self.name)?;
        check_limits(&self.name, self.size, self.min, self.max())?;
        Ok(Plan {
            size: self.size,
            min: self.min,
            budgeted: self.budgeted,
        })
    }

    fn open(self: Box<Self>, apply: bool, lazy: bool) -> BoxFuture<'static, Opened> {
        Box::pin(async move {
            let class = (*self).open(apply, lazy).await?;
            Ok(Arc::new(class) as Arc<dyn ClassOps>)
        })
    }
}

struct SqlInner<DB: Database> {
    name: String,
    pool: Pool<DB>,
    stats: Arc<ClassStats>,
    /// Present when advice is applied: holds the class to its current limit.
    limiter: Option<Limiter>,
    pool_max: u32,
    settings: Settings,
}

/// One SQL class: a sqlx pool with statistics, a name in errors, and (with applied advice) a
/// limit that the sampler moves within `[min, max]`. Cheap to clone.
pub struct SqlClass<DB: Database>(Arc<SqlInner<DB>>);

impl<DB: Database> Clone for SqlClass<DB> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<DB: Database> fmt::Debug for SqlClass<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlClass")
            .field("name", &self.0.name)
            .field("size", &self.0.pool.size())
            .field("limit", &self.limit())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> SqlClass<DB> {
    /// The class name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current limit on connections handed out at once.
    pub fn limit(&self) -> u32 {
        self.0
            .limiter
            .as_ref()
            .map_or(self.0.pool_max, Limiter::limit)
    }

    /// The sqlx pool under the class, for APIs that only take a pool (such as sqlx's
    /// `Migrator::run`). Use [`SqlClass::acquire`] where possible (mcp-audit's `AuditStore`
    /// and mcp-auth-core's `SqlApiKeyStore` take a class with their `pool` feature):
    /// connections taken from the pool directly count in the size, idle, in-use, opened and
    /// closed figures, but not in acquires, waits and timeouts, and they bypass the applied
    /// limit.
    pub fn pool(&self) -> &Pool<DB> {
        &self.0.pool
    }

    /// A connection of this class, or [`PoolError::Timeout`] naming the class and the wait
    /// after its acquire timeout.
    pub async fn acquire(&self) -> Result<PooledConnection<DB>, PoolError> {
        let inner = &self.0;
        let start = Instant::now();
        let (permit, contended) = match &inner.limiter {
            None => {
                // No idle connection and no room to open one: this acquire waits.
                let contended = inner.pool.num_idle() == 0 && inner.pool.size() >= inner.pool_max;
                (None, contended)
            }
            Some(limiter) => match limiter.try_acquire() {
                Some(permit) => (Some(permit), false),
                None => {
                    let waited =
                        tokio::time::timeout(inner.settings.acquire_timeout, limiter.acquire())
                            .await;
                    match waited {
                        Ok(Ok(permit)) => (Some(permit), true),
                        Ok(Err(_closed)) => return Err(self.closed()),
                        Err(_elapsed) => return Err(self.timed_out(start)),
                    }
                }
            },
        };
        let acquired = if contended && permit.is_some() {
            // Part of the timeout went on the permit; sqlx's own timer would allow the whole.
            let remaining = inner
                .settings
                .acquire_timeout
                .saturating_sub(start.elapsed());
            tokio::time::timeout(remaining, inner.pool.acquire())
                .await
                .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        } else {
            // sqlx times the acquire out after the same `acquire_timeout`.
            inner.pool.acquire().await
        };
        match acquired {
            Ok(conn) => {
                inner.stats.acquired(start.elapsed(), contended);
                Ok(PooledConnection {
                    conn,
                    permit: permit.and_then(Permit::into_inner),
                    class: Arc::clone(inner),
                })
            }
            // An unused permit goes back through the limiter when dropped here.
            Err(sqlx::Error::PoolTimedOut) => Err(self.timed_out(start)),
            Err(sqlx::Error::PoolClosed) => Err(self.closed()),
            Err(error) => {
                inner.stats.error();
                Err(PoolError::Backend {
                    class: inner.name.clone(),
                    source: Box::new(error),
                })
            }
        }
    }

    fn timed_out(&self, start: Instant) -> PoolError {
        let waited = start.elapsed();
        self.0.stats.timed_out(waited);
        PoolError::Timeout {
            class: self.0.name.clone(),
            waited,
        }
    }

    fn closed(&self) -> PoolError {
        PoolError::Closed {
            class: self.0.name.clone(),
        }
    }
}

impl<DB: SqlBackend> ClassOps for SqlClass<DB> {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn backend(&self) -> Backend {
        DB::BACKEND
    }

    fn stats(&self) -> &ClassStats {
        &self.0.stats
    }

    fn gauges(&self) -> Gauges {
        let size = self.0.pool.size();
        let idle = u32::try_from(self.0.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        Gauges {
            size,
            idle,
            in_use: size - idle,
            limit: self.limit(),
            open: Some(size),
        }
    }

    fn settings(&self) -> Settings {
        self.0.settings
    }

    fn set_limit(&self, limit: u32) {
        if let Some(limiter) = &self.0.limiter {
            limiter.set_limit(limit);
        }
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let limit = self.limit();
            let excess = self.0.pool.size().saturating_sub(limit);
            for _ in 0..excess {
                if self.0.pool.size() <= limit {
                    break;
                }
                let Some(conn) = self.0.pool.try_acquire() else {
                    break;
                };
                // The connection is closed either way; a failed goodbye changes nothing.
                let _ = conn.close().await;
            }
        })
    }

    fn check(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let probe = async {
                let mut conn = self.0.pool.acquire().await?;
                DB::select_one(&mut conn).await
            };
            match tokio::time::timeout(timeout, probe).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_elapsed) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(limiter) = &self.0.limiter {
                limiter.close();
            }
            self.0.pool.close().await;
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// For stores whose API speaks sqlx errors: a timeout becomes an [`std::io::ErrorKind::TimedOut`]
/// I/O error that keeps the [`PoolError`] (class and wait) as its inner error, a closed class
/// [`sqlx::Error::PoolClosed`], and a driver failure the driver's own error.
impl From<PoolError> for sqlx::Error {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Closed { .. } => Self::PoolClosed,
            PoolError::Backend { class, source } => match source.downcast::<sqlx::Error>() {
                Ok(driver) => *driver,
                Err(source) => {
                    Self::Io(std::io::Error::other(PoolError::Backend { class, source }))
                }
            },
            timeout @ PoolError::Timeout { .. } => {
                Self::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, timeout))
            }
        }
    }
}

/// A connection of a class. Dereferences to the driver's connection (`&mut *conn` is an
/// sqlx executor); returned to the pool on drop.
pub struct PooledConnection<DB: Database> {
    conn: PoolConnection<DB>,
    permit: Option<OwnedSemaphorePermit>,
    class: Arc<SqlInner<DB>>,
}

impl<DB: Database> PooledConnection<DB> {
    /// The class the connection came from.
    pub fn class(&self) -> &str {
        &self.class.name
    }
}

impl<DB: Database> fmt::Debug for PooledConnection<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("class", &self.class.name)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Deref for PooledConnection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: Database> DerefMut for PooledConnection<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl<DB: Database> AsMut<DB::Connection> for PooledConnection<DB> {
    fn as_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> Drop for PooledConnection<DB> {
    fn drop(&mut self) {
        self.class.stats.released();
        if let (Some(permit), Some(limiter)) = (self.permit.take(), &self.class.limiter)
            && limiter.release(permit) == Returned::Retired
        {
            // The limit was lowered below the connections out: this one goes away so the
            // pool shrinks with the limit.
            self.conn.close_on_drop();
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_url() {
        let config = PgClassConfig::new("read", "postgres://app:secret-pw@db.internal/prod");
        let text = format!("{config:?}");
        assert!(!text.contains("secret-pw"), "{text}");
        assert!(!text.contains("db.internal"), "{text}");
        assert!(text.contains("\"read\""), "{text}");
    }

    #[test]
    fn pool_errors_become_sqlx_errors_that_keep_the_class() {
        let timeout = sqlx::Error::from(PoolError::Timeout {
            class: "write".into(),
            waited: Duration::from_millis(250),
        });
        let sqlx::Error::Io(io) = &timeout else {
            panic!("{timeout:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<PoolError>());
        assert_eq!(
            inner.and_then(PoolError::waited),
            Some(Duration::from_millis(250))
        );
        assert!(
            timeout.to_string().contains("pool class `write` timed out"),
            "{timeout}"
        );

        let closed = sqlx::Error::from(PoolError::Closed {
            class: "read".into(),
        });
        assert!(matches!(closed, sqlx::Error::PoolClosed), "{closed:?}");

        // The driver's own error comes back as it was.
        let driver = sqlx::Error::from(PoolError::Backend {
            class: "auth".into(),
            source: Box::new(sqlx::Error::RowNotFound),
        });
        assert!(matches!(driver, sqlx::Error::RowNotFound), "{driver:?}");
        let other = sqlx::Error::from(PoolError::Backend {
            class: "auth".into(),
            source: "refused".into(),
        });
        assert!(
            other.to_string().contains("pool class `auth`: refused"),
            "{other}"
        );
    }

    #[test]
    fn standard_set_puts_reads_on_the_replica() {
        let set =
            PgClassConfig::standard_set("postgres://primary/db", Some("postgres://replica/db"));
        let on_replica: Vec<&str> = set
            .iter()
            .filter(|c| matches!(&c.connect, Connect::Url(url) if url.contains("replica")))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(on_replica, vec!["read", "analytics"]);
        assert_eq!(set[3].size, 25);
        assert_eq!(set[2].acquire_timeout, Duration::from_secs(60));
    }
}
