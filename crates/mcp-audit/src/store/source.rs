//! Where an [`AuditStore`](super::AuditStore) takes its connections: [`ConnectionSource`],
//! implemented for sqlx pools and (feature `pool`) for mcp-pool classes.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// A source of connections for an [`AuditStore`](super::AuditStore): a sqlx [`Pool`] or,
/// with the `pool` feature, an `mcp_pool::SqlClass` (so that the class's acquire counts,
/// waits, timeouts and applied limit cover the store's work).
///
/// Implement it to put something else in front of the connections. A connection goes back
/// to its source when dropped; the store holds one only for a statement, a transaction or
/// a `COPY`.
pub trait ConnectionSource<DB: Database>: fmt::Debug + Send + Sync + 'static {
    /// A connection on loan, given back when dropped.
    type Connection: DerefMut<Target = DB::Connection> + Send + 'static;

    /// A connection, or the error that kept one from coming (a timeout, a closed source, a
    /// failed connect).
    fn acquire(&self) -> impl Future<Output = Result<Self::Connection, sqlx::Error>> + Send;

    /// How many connections the source hands out at most at once (it bounds
    /// [`AuditStore::write_connections`](super::AuditStore::write_connections)).
    fn max_connections(&self) -> u32;
}

impl<DB: Database> ConnectionSource<DB> for Pool<DB> {
    type Connection = PoolConnection<DB>;

    fn acquire(&self) -> impl Future<Output = Result<Self::Connection, sqlx::Error>> + Send {
        Pool::acquire(self)
    }

    fn max_connections(&self) -> u32 {
        self.options().get_max_connections()
    }
}

/// An mcp-pool class: every connection of the store goes through the class's `acquire`.
#[cfg(all(feature = "pool", any(feature = "postgres", feature = "sqlite")))]
impl<DB: mcp_pool::SqlBackend> ConnectionSource<DB> for mcp_pool::SqlClass<DB> {
    type Connection = mcp_pool::PooledConnection<DB>;

    async fn acquire(&self) -> Result<Self::Connection, sqlx::Error> {
        Ok(mcp_pool::SqlClass::acquire(self).await?)
    }

    fn max_connections(&self) -> u32 {
        self.limit()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type BoxConnection<DB> = Box<dyn DerefMut<Target = <DB as Database>::Connection> + Send>;

/// [`ConnectionSource`] behind a trait object.
pub(crate) trait DynSource<DB: Database>: fmt::Debug + Send + Sync {
    fn acquire(&self) -> BoxFuture<'_, Result<BoxConnection<DB>, sqlx::Error>>;
    #[cfg(feature = "postgres")]
    fn max_connections(&self) -> u32;
}

impl<DB: Database, S: ConnectionSource<DB>> DynSource<DB> for S {
    fn acquire(&self) -> BoxFuture<'_, Result<BoxConnection<DB>, sqlx::Error>> {
        Box::pin(async move {
            let conn = ConnectionSource::acquire(self).await?;
            Ok(Box::new(conn) as BoxConnection<DB>)
        })
    }

    #[cfg(feature = "postgres")]
    fn max_connections(&self) -> u32 {
        ConnectionSource::max_connections(self)
    }
}

/// The store's source: a plain pool called directly (nothing boxed per acquire), anything
/// else through a trait object.
#[derive(Debug)]
pub(crate) enum Source<DB: Database> {
    Pool(Pool<DB>),
    Dyn(Arc<dyn DynSource<DB>>),
}

impl<DB: Database> Clone for Source<DB> {
    fn clone(&self) -> Self {
        match self {
            Self::Pool(pool) => Self::Pool(pool.clone()),
            Self::Dyn(source) => Self::Dyn(Arc::clone(source)),
        }
    }
}

impl<DB: Database> Source<DB> {
    pub(crate) fn new<S: ConnectionSource<DB>>(source: S) -> Self {
        match (&source as &dyn Any).downcast_ref::<Pool<DB>>() {
            Some(pool) => Self::Pool(pool.clone()),
            None => Self::Dyn(Arc::new(source)),
        }
    }

    /// Runs `migrator` on one connection of the source.
    ///
    /// This is `Migrator::run` after it took its connection. `run` itself, given a connection
    /// reference, makes a future that cannot be proven `Send` (its `Acquire` bound is
    /// higher-ranked, rust-lang/rust#64552) and callers could no longer spawn the store's
    /// migration; sqlx keeps `run_direct` public, out of its docs, for this case.
    pub(crate) async fn migrate(&self, migrator: &Migrator) -> Result<(), MigrateError>
    where
        DB::Connection: Migrate,
    {
        let mut conn = self.acquire().await?;
        migrator.run_direct(None, &mut *conn, false).await
    }

    pub(crate) async fn acquire(&self) -> Result<Connection<DB>, sqlx::Error> {
        Ok(match self {
            Self::Pool(pool) => Connection::Pool(pool.acquire().await?),
            Self::Dyn(source) => Connection::Dyn(source.acquire().await?),
        })
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn max_connections(&self) -> u32 {
        match self {
            Self::Pool(pool) => pool.options().get_max_connections(),
            Self::Dyn(source) => source.max_connections(),
        }
    }
}

/// A connection of a [`Source`]; dereferences to the driver's connection.
pub(crate) enum Connection<DB: Database> {
    Pool(PoolConnection<DB>),
    Dyn(BoxConnection<DB>),
}

impl<DB: Database> Deref for Connection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Pool(conn) => conn,
            Self::Dyn(conn) => conn,
        }
    }
}

impl<DB: Database> DerefMut for Connection<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Pool(conn) => conn,
            Self::Dyn(conn) => conn,
        }
    }
}
