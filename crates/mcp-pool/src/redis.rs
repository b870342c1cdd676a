//! Redis classes: one multiplexed `ConnectionManager` per class behind an in-flight limit.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OwnedSemaphorePermit;

use crate::class::{Backend, BoxFuture, ClassOps, Gauges, Settings, check_limits, check_name};
use crate::error::{ConfigError, PoolError};
use crate::limiter::Limiter;
use crate::set::{Opened, PendingClass, Plan};
use crate::stats::ClassStats;

/// The settings of one Redis class. Redis multiplexes commands over one connection, so a
/// class is one `ConnectionManager` (reconnecting on its own) and its size is the number of
/// handles out at once, not a number of sockets. Redis classes never count against the
/// database connection budget.
///
/// The URL (which may hold a password) is never printed.
#[derive(Clone)]
pub struct RedisClassConfig {
    name: String,
    url: String,
    size: u32,
    min: u32,
    max: Option<u32>,
    acquire_timeout: Duration,
    connection_timeout: Duration,
    response_timeout: Option<Duration>,
    retries: usize,
    health_timeout: Duration,
}

impl fmt::Debug for RedisClassConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClassConfig")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retries", &self.retries)
            .field("health_timeout", &self.health_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisClassConfig {
    /// A class `name` on the Redis server at `url` (`redis://` or `rediss://`): 64 handles
    /// at once, 5 s acquire and connection timeouts, 2 reconnection retries per attempt.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            size: 64,
            min: 1,
            max: None,
            acquire_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
            response_timeout: None,
            retries: 2,
            health_timeout: Duration::from_secs(2),
        }
    }

    /// Handles out at once at start (default 64).
    pub fn size(mut self, size: u32) -> Self {
        self.size = size;
        self
    }

    /// The lowest limit the advice goes to (default 1).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min = min;
        self
    }

    /// The highest limit the advice goes to (default: `size`).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max = Some(max);
        self
    }

    /// How long an acquire waits for a free handle before [`PoolError::Timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Time limit of each connection attempt (default 5 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Time limit of each command's answer (default: none).
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// Reconnection retries per attempt (default 2).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Time limit of the class's health check (default 2 s).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    fn max(&self) -> u32 {
        self.max.unwrap_or(self.size)
    }

    async fn open(self, apply: bool, lazy: bool) -> Result<RedisClass, ConfigError> {
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| ConfigError::InvalidUrl {
                class: self.name.clone(),
                source: Box::new(e),
            })?;
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(self.retries)
            .set_response_timeout(self.response_timeout);
        // The manager retries with jitter from 100 ms up; keep a whole attempt short.
        config = config.set_max_delay(Duration::from_secs(1));
        let stats = Arc::new(ClassStats::default());
        let manager = if lazy {
            ConnectionManager::new_lazy_with_config(client, config)
        } else {
            ConnectionManager::new_with_config(client, config).await
        }
        .map_err(|e| ConfigError::Connect {
            class: self.name.clone(),
            source: Box::new(e),
        })?;
        if !lazy {
            stats.opened();
        }
        Ok(RedisClass(Arc::new(RedisInner {
            name: self.name,
            manager,
            stats,
            limiter: Limiter::new(self.size),
            disconnected: AtomicBool::new(lazy),
            settings: Settings {
                min: self.min,
                max: self.max.unwrap_or(self.size),
                budgeted: false,
                acquire_timeout: self.acquire_timeout,
                idle_timeout: None,
                health_timeout: self.health_timeout,
                resizable: apply,
            },
        })))
    }
}

impl PendingClass for RedisClassConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan(&self) -> Result<Plan, ConfigError> {
        check_name(&self.name)?;
        check_limits(&self.name, self.size, self.min, self.max())?;
        Ok(Plan {
            size: self.size,
            min: self.min,
            budgeted: false,
        })
    }

    fn open(self: Box<Self>, apply: bool, lazy: bool) -> BoxFuture<'static, Opened> {
        Box::pin(async move {
            let class = (*self).open(apply, lazy).await?;
            Ok(Arc::new(class) as Arc<dyn ClassOps>)
        })
    }
}

struct RedisInner {
    name: String,
    manager: ConnectionManager,
    stats: Arc<ClassStats>,
    limiter: Limiter,
    /// Set when a command saw the connection drop (or before the first lazy connect);
    /// the next success counts as a connection opened.
    disconnected: AtomicBool,
    settings: Settings,
}

impl RedisInner {
    /// Counts a command's outcome: errors (including error replies, which arrive as
    /// values), and drops and reconnects of the connection.
    fn observe<T>(&self, result: &RedisResult<T>, refused: impl Fn(&T) -> bool) {
        match result {
            Ok(value) => {
                if refused(value) {
                    self.stats.error();
                }
                if self.disconnected.load(Ordering::Relaxed)
                    && self.disconnected.swap(false, Ordering::Relaxed)
                {
                    self.stats.opened();
                }
            }
            Err(error) => {
                self.stats.error();
                let dropped = error.is_io_error() || error.is_connection_dropped();
                if dropped && !self.disconnected.swap(true, Ordering::Relaxed) {
                    self.stats.closed();
                }
            }
        }
    }
}

/// One Redis class. Cheap to clone.
#[derive(Clone)]
pub struct RedisClass(Arc<RedisInner>);

impl fmt::Debug for RedisClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClass")
            .field("name", &self.0.name)
            .field("limit", &self.0.limiter.limit())
            .finish_non_exhaustive()
    }
}

impl RedisClass {
    /// The class name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current limit on handles out at once.
    pub fn limit(&self) -> u32 {
        self.0.limiter.limit()
    }

    /// A handle for commands, or [`PoolError::Timeout`] when the class is at its limit for
    /// longer than its acquire timeout.
    pub async fn acquire(&self) -> Result<RedisConnection, PoolError> {
        let inner = &self.0;
        let start = Instant::now();
        let (permit, contended) = match inner.limiter.try_acquire() {
            Some(permit) => (permit, false),
            None => {
                match tokio::time::timeout(inner.settings.acquire_timeout, inner.limiter.acquire())
                    .await
                {
                    Ok(Ok(permit)) => (permit, true),
                    Ok(Err(_closed)) => {
                        return Err(PoolError::Closed {
                            class: inner.name.clone(),
                        });
                    }
                    Err(_elapsed) => {
                        let waited = start.elapsed();
                        inner.stats.timed_out(waited);
                        return Err(PoolError::Timeout {
                            class: inner.name.clone(),
                            waited,
                        });
                    }
                }
            }
        };
        inner.stats.acquired(start.elapsed(), contended);
        Ok(RedisConnection {
            manager: inner.manager.clone(),
            permit: permit.into_inner(),
            class: Arc::clone(inner),
        })
    }
}

impl ClassOps for RedisClass {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn backend(&self) -> Backend {
        Backend::Redis
    }

    fn stats(&self) -> &ClassStats {
        &self.0.stats
    }

    fn gauges(&self) -> Gauges {
        let limit = self.0.limiter.limit();
        let in_use = self.0.stats.in_flight();
        Gauges {
            size: limit,
            idle: limit.saturating_sub(in_use),
            in_use,
            limit,
            open: None,
        }
    }

    fn settings(&self) -> Settings {
        self.0.settings
    }

    fn set_limit(&self, limit: u32) {
        if self.0.settings.resizable {
            self.0.limiter.set_limit(limit);
        }
    }

    fn trim(&self) -> BoxFuture<'_, ()> {
        // Nothing to close: the limit is on handles, the connection is shared.
        Box::pin(std::future::ready(()))
    }

    fn check(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut manager = self.0.manager.clone();
            let ping = async {
                let result = redis::cmd("PING").query_async::<String>(&mut manager).await;
                self.0.observe(&result, |_| false);
                result
            };
            match tokio::time::timeout(timeout, ping).await {
                Ok(Ok(pong)) if pong == "PONG" => Ok(()),
                Ok(Ok(other)) => Err(format!("unexpected PING answer `{other}`")),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_elapsed) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.0.limiter.close();
        Box::pin(std::future::ready(()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn is_error_reply(value: &Value) -> bool {
    matches!(value, Value::ServerError(_))
}

/// A handle of a Redis class: use it with `redis::AsyncCommands` or `query_async`. Errors
/// and reconnects are counted; the handle's slot is freed on drop.
pub struct RedisConnection {
    manager: ConnectionManager,
    permit: Option<OwnedSemaphorePermit>,
    class: Arc<RedisInner>,
}

impl RedisConnection {
    /// The class the handle came from.
    pub fn class(&self) -> &str {
        &self.class.name
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("class", &self.class.name)
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.manager.req_packed_command(cmd).await;
            self.class.observe(&result, is_error_reply);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .manager
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.class
                .observe(&result, |values| values.iter().any(is_error_reply));
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
}

impl Drop for RedisConnection {
    fn drop(&mut self) {
        self.class.stats.released();
        if let Some(permit) = self.permit.take() {
            // A retired permit has nothing to close: the connection is shared.
            self.class.limiter.release(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_url() {
        let config = RedisClassConfig::new("cache", "redis://:secret-pw@cache.internal:6379");
        let text = format!("{config:?}");
        assert!(!text.contains("secret-pw"), "{text}");
        assert!(!text.contains("cache.internal"), "{text}");
    }

    #[test]
    fn error_replies_are_recognised() {
        let refused = redis::parse_redis_value(b"-WRONGTYPE not a string\r\n").unwrap();
        assert!(is_error_reply(&refused));
        assert!(!is_error_reply(&Value::Okay));
        assert!(!is_error_reply(&Value::Nil));
    }
}
