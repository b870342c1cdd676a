//! sqlx building blocks of the SQL stores (the API-key store here, the OAuth client store of
//! mcp-auth-azure): where a store takes its connections ([`ConnectionSource`]), a migrator
//! of one shipped migration with a tracking table of its own ([`single_migration`]), and
//! migrations into a PostgreSQL schema of the store's own ([`check_schema_name`],
//! `migrate_in_schema`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, SqlSafeStr};

/// The options a connection of `DB` is opened with.
pub type ConnectOptions<DB> = <<DB as Database>::Connection as sqlx::Connection>::Options;

/// A source of connections for a SQL store: a sqlx [`Pool`] or, with the `pool` feature, an
/// `mcp_pool::SqlClass` (so that the class's acquire counts, waits, timeouts and applied
/// limit cover the store's work).
///
/// Implement it to put something else in front of the connections. A connection goes back
/// to its source when dropped; a store holds one only for a statement or a transaction.
pub trait ConnectionSource<DB: Database>: fmt::Debug + Send + Sync + 'static {
    /// A connection on loan, given back when dropped.
    type Connection: DerefMut<Target = DB::Connection> + Send + 'static;

    /// A connection, or the error that kept one from coming (a timeout, a closed source, a
    /// failed connect).
    fn acquire(&self) -> impl Future<Output = Result<Self::Connection, sqlx::Error>> + Send;

    /// The options the source opens connections with. A migration into a schema of the
    /// store's own opens a connection of its own from them ([`migrate_in_schema`]), so that
    /// no pooled connection's `search_path` changes.
    fn connect_options(&self) -> Arc<ConnectOptions<DB>>;
}

impl<DB: Database> ConnectionSource<DB> for Pool<DB> {
    type Connection = PoolConnection<DB>;

    fn acquire(&self) -> impl Future<Output = Result<Self::Connection, sqlx::Error>> + Send {
        Pool::acquire(self)
    }

    fn connect_options(&self) -> Arc<ConnectOptions<DB>> {
        Pool::connect_options(self)
    }
}

/// An mcp-pool class: every connection of the store goes through the class's `acquire`.
#[cfg(feature = "pool")]
impl<DB: mcp_pool::SqlBackend> ConnectionSource<DB> for mcp_pool::SqlClass<DB> {
    type Connection = mcp_pool::PooledConnection<DB>;

    async fn acquire(&self) -> Result<Self::Connection, sqlx::Error> {
        Ok(mcp_pool::SqlClass::acquire(self).await?)
    }

    fn connect_options(&self) -> Arc<ConnectOptions<DB>> {
        self.pool().connect_options()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type BoxConnection<DB> = Box<dyn DerefMut<Target = <DB as Database>::Connection> + Send>;

/// [`ConnectionSource`] behind a trait object.
pub(crate) trait DynSource<DB: Database>: fmt::Debug + Send + Sync {
    fn acquire(&self) -> BoxFuture<'_, Result<BoxConnection<DB>, sqlx::Error>>;
    #[cfg(feature = "postgres")]
    fn connect_options(&self) -> Arc<ConnectOptions<DB>>;
}

impl<DB: Database, S: ConnectionSource<DB>> DynSource<DB> for S {
    fn acquire(&self) -> BoxFuture<'_, Result<BoxConnection<DB>, sqlx::Error>> {
        Box::pin(async move {
            let conn = ConnectionSource::acquire(self).await?;
            Ok(Box::new(conn) as BoxConnection<DB>)
        })
    }

    #[cfg(feature = "postgres")]
    fn connect_options(&self) -> Arc<ConnectOptions<DB>> {
        ConnectionSource::connect_options(self)
    }
}

/// A store's source: a plain pool called directly (nothing boxed per acquire), anything
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
    pub(crate) fn connect_options(&self) -> Arc<ConnectOptions<DB>> {
        match self {
            Self::Pool(pool) => pool.connect_options(),
            Self::Dyn(source) => source.connect_options(),
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

/// A migrator of one migration, `sql` (version 1, `description`), that records what ran in
/// `table` instead of sqlx's `_sqlx_migrations`, so that an application's own sqlx
/// migrations and each store's never clash.
pub fn single_migration(
    description: &'static str,
    sql: &'static str,
    table: &'static str,
) -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        description.into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )]);
    migrator.dangerous_set_table_name(table);
    migrator
}

/// Longest accepted PostgreSQL schema name (PostgreSQL truncates identifiers at 63 bytes).
const MAX_SCHEMA_LEN: usize = 63;

/// Checks a schema name for a store's tables: 1 to 63 lowercase letters, digits and `_`,
/// not starting with a digit, so that it needs no escaping when quoted into SQL. The error
/// is the rule, for a configuration error.
///
/// ```
/// use mcp_auth_core::sql::check_schema_name;
///
/// assert!(check_schema_name("tenant_a1").is_ok());
/// assert!(check_schema_name("a\"; DROP TABLE x; --").is_err());
/// ```
pub fn check_schema_name(schema: &str) -> Result<(), &'static str> {
    let valid = !schema.is_empty()
        && schema.len() <= MAX_SCHEMA_LEN
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err("schema must be 1 to 63 characters of [a-z0-9_], not starting with a digit")
    }
}

/// Runs `migrator` with its tables (and its tracking table) in `schema`, creating the schema
/// if needed. It uses a connection of its own, opened from `options` with `search_path` set
/// to the schema and closed afterwards, so no pooled connection is touched. Idempotent and
/// safe from several replicas at once: the schema is created under the migrator's advisory
/// lock, so concurrent first runs do not collide on it. A name that [`check_schema_name`]
/// refuses is an error before anything runs.
#[cfg(feature = "postgres")]
pub async fn migrate_in_schema(
    options: &sqlx::postgres::PgConnectOptions,
    schema: &str,
    mut migrator: Migrator,
) -> Result<(), MigrateError> {
    use sqlx::Connection as _;
    check_schema_name(schema).map_err(|rule| sqlx::Error::InvalidArgument(rule.to_owned()))?;
    // Quoted, as in the stores' statements: a valid name may still be a keyword (`user`).
    migrator.create_schema(format!("\"{schema}\""));
    let options = options.clone().options([("search_path", schema)]);
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    // `run_direct`: see `Source::migrate`.
    let result = migrator.run_direct(None, &mut conn, false).await;
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["tenant_a1", "_x", &"a".repeat(63)] {
            assert_eq!(check_schema_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Abc",
            "a\"b",
            "a;drop",
            "a-b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_single_migration_is_version_1() {
        let migrator = single_migration("things", "CREATE TABLE t (x INT)", "_my_migrations");
        let migrations: Vec<_> = migrator.iter().collect();
        assert_eq!(migrations.len(), 1);
        assert_eq!(migrations[0].version, 1);
        assert_eq!(migrations[0].description, "things");
    }
}
