//! [`RedisClientStore`] and [`RedisStateStore`]: the proxy's state in Redis, shared by
//! every replica, each record expiring by itself (`PX`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redis::AsyncCommands;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::{ClientStore, RegisteredClient, StateStore};
use crate::proxy::error::ProxyError;

/// Default key prefix.
const DEFAULT_PREFIX: &str = "mcp-auth:oauth-proxy:";

fn failed(what: &'static str) -> impl Fn(::redis::RedisError) -> ProxyError {
    move |error| ProxyError::store(what, error)
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

async fn connect(url: &str) -> Result<ConnectionManager, ProxyError> {
    let client = ::redis::Client::open(url).map_err(failed("Redis URL invalid"))?;
    ConnectionManager::new(client)
        .await
        .map_err(failed("Redis connection failed"))
}

/// Registered clients in Redis under `<prefix>client:<client_id>` as JSON, expiring with the
/// registration.
#[derive(Clone)]
pub struct RedisClientStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClientStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisClientStore {
    /// A store on a connection manager, with the prefix `mcp-auth:oauth-proxy:`.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.into(),
        }
    }

    /// Connects to `url` (`redis://` or `rediss://`).
    pub async fn connect(url: &str) -> Result<Self, ProxyError> {
        Ok(Self::new(connect(url).await?))
    }

    /// Prefixes every key with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    fn key(&self, client_id: &str) -> String {
        format!("{}client:{client_id}", self.prefix)
    }
}

#[async_trait]
impl ClientStore for RedisClientStore {
    async fn insert(&self, client: &RegisteredClient, now: SystemTime) -> Result<(), ProxyError> {
        let json = serde_json::to_vec(client).map_err(|e| ProxyError::store("client encode", e))?;
        let mut conn = self.conn.clone();
        let key = self.key(&client.client_id);
        match client.ttl_from(now) {
            Some(ttl) => conn
                .pset_ex::<_, _, ()>(key, json, ttl_millis(ttl))
                .await
                .map_err(failed("Redis client insert failed")),
            None => conn
                .set::<_, _, ()>(key, json)
                .await
                .map_err(failed("Redis client insert failed")),
        }
    }

    async fn get(
        &self,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Option<RegisteredClient>, ProxyError> {
        let mut conn = self.conn.clone();
        let json: Option<Vec<u8>> = conn
            .get(self.key(client_id))
            .await
            .map_err(failed("Redis client read failed"))?;
        let Some(json) = json else {
            return Ok(None);
        };
        let client: RegisteredClient =
            serde_json::from_slice(&json).map_err(|e| ProxyError::store("client decode", e))?;
        Ok((!client.is_expired_at(now)).then_some(client))
    }

    async fn delete(&self, client_id: &str) -> Result<bool, ProxyError> {
        let mut conn = self.conn.clone();
        let removed: u64 = conn
            .del(self.key(client_id))
            .await
            .map_err(failed("Redis client delete failed"))?;
        Ok(removed > 0)
    }
}

/// State records in Redis under `<prefix>state:<key>`, with `PX` expiry; `take` is `GETDEL`
/// (Redis 6.2 or newer).
#[derive(Clone)]
pub struct RedisStateStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStateStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStateStore {
    /// A store on a connection manager, with the prefix `mcp-auth:oauth-proxy:`.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.into(),
        }
    }

    /// Connects to `url` (`redis://` or `rediss://`).
    pub async fn connect(url: &str) -> Result<Self, ProxyError> {
        Ok(Self::new(connect(url).await?))
    }

    /// Prefixes every key with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}state:{key}", self.prefix)
    }
}

#[async_trait]
impl StateStore for RedisStateStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), ProxyError> {
        let mut conn = self.conn.clone();
        conn.pset_ex::<_, _, ()>(self.key(key), value, ttl_millis(ttl))
            .await
            .map_err(failed("Redis state write failed"))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError> {
        let mut conn = self.conn.clone();
        conn.get(self.key(key))
            .await
            .map_err(failed("Redis state read failed"))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError> {
        let mut conn = self.conn.clone();
        conn.get_del(self.key(key))
            .await
            .map_err(failed("Redis state take failed"))
    }

    async fn delete(&self, key: &str) -> Result<bool, ProxyError> {
        let mut conn = self.conn.clone();
        let removed: u64 = conn
            .del(self.key(key))
            .await
            .map_err(failed("Redis state delete failed"))?;
        Ok(removed > 0)
    }
}
