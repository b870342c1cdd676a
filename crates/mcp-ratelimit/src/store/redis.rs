//! The Redis store: Lua scripts (EVALSHA, reloaded automatically), a ConnectionManager,
//! TTLs on every key and hash tags so it runs on Redis Cluster.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Charge, RateLimitStore, StoreError, StoreOutcome};
use crate::algorithm::{Algorithm, Gcra, Window};
use crate::clock::{Timestamp, duration_micros};

/// Extra lifetime given to every key beyond what its state needs, in milliseconds, so a
/// small skew between the limiter's clock and the Redis server's never drops live state.
const TTL_SLACK_MS: u64 = 1_000;

/// GCRA: `KEYS[1]` holds the theoretical arrival time. Mirrors `algorithm::Gcra::charge`.
const GCRA_CHARGE: &str = r"
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local span = burst * t
if cost > burst then
  return {0, math.floor((now + span - tat) / t), tat - now, tat - now + span}
end
local new_tat = tat + cost * t
if new_tat > now + span then
  return {0, math.floor((now + span - tat) / t), tat - now, new_tat - span - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  string.format('%.0f', math.ceil((new_tat - now) / 1000) + slack))
return {1, math.floor((now + span - new_tat) / t), new_tat - now, 0}
";

/// GCRA refund. Mirrors `algorithm::Gcra::refund`.
const GCRA_REFUND: &str = r"
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local slack = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then return 0 end
local back = tat - cost * t
if back > now then
  redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX',
    string.format('%.0f', math.ceil((back - now) / 1000) + slack))
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Shared prelude of the window scripts: rolls the hash in `KEYS[1]` to the window of
/// `now`. Mirrors `algorithm::Window::roll`.
const WINDOW_ROLL: &str = r"
local now = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local slack = tonumber(ARGV[5])
local st = redis.call('HMGET', KEYS[1], 's', 'p', 'c')
local start = now - (now % w)
local s = tonumber(st[1])
local p = tonumber(st[2]) or 0
local c = tonumber(st[3]) or 0
if s == start then
elseif s ~= nil and s + w == start then
  p = c
  c = 0
else
  p = 0
  c = 0
end
local function save()
  redis.call('HSET', KEYS[1], 's', string.format('%.0f', start), 'p', string.format('%.0f', p),
    'c', string.format('%.0f', c))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((start + 2 * w - now) / 1000) + slack))
end
";

/// Sliding-window charge (ARGV: now, window, limit, cost, slack). Mirrors
/// `algorithm::Window::charge`.
const WINDOW_CHARGE_BODY: &str = r"
local limit = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local elapsed = now - start
local used = math.ceil(p * (w - elapsed) / w) + c
if used + cost <= limit then
  c = c + cost
  save()
  return {1, limit - used - cost, (w - elapsed) + w, 0}
end
local retry
if cost > limit then
  retry = 2 * w - elapsed
elseif c + cost <= limit then
  retry = (w - math.floor((limit - cost - c) * w / p)) - elapsed
else
  retry = (w - elapsed) + (w - math.floor((limit - cost) * w / c))
end
local reset
if c > 0 then reset = (w - elapsed) + w else reset = w - elapsed end
local remaining = limit - used
if remaining < 0 then remaining = 0 end
return {0, remaining, reset, retry}
";

/// Sliding-window refund (ARGV: now, window, charged_at, cost, slack). Mirrors
/// `algorithm::Window::refund`.
const WINDOW_REFUND_BODY: &str = r"
if s == nil then return 0 end
local charged = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local charged_start = charged - (charged % w)
if charged_start == start then
  c = math.max(0, c - cost)
elseif charged_start + w == start then
  p = math.max(0, p - cost)
end
save()
return 1
";

/// Windowed counter (ARGV: now, window, slack). Mirrors `MemoryStore::incr_counter_now`.
const COUNTER_INCR: &str = r"
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local slack = tonumber(ARGV[3])
local st = redis.call('HMGET', KEYS[1], 'n', 'e')
local n = tonumber(st[1])
local e = tonumber(st[2])
if n == nil or e == nil or e <= now then
  n = 1
  e = now + win
else
  n = n + 1
end
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n), 'e', string.format('%.0f', e))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((e - now) / 1000) + slack))
return n
";

struct Scripts {
    gcra_charge: Script,
    gcra_refund: Script,
    window_charge: Script,
    window_refund: Script,
    counter_incr: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            gcra_charge: Script::new(GCRA_CHARGE),
            gcra_refund: Script::new(GCRA_REFUND),
            window_charge: Script::new(&format!("{WINDOW_ROLL}{WINDOW_CHARGE_BODY}")),
            window_refund: Script::new(&format!("{WINDOW_ROLL}{WINDOW_REFUND_BODY}")),
            counter_incr: Script::new(COUNTER_INCR),
        }
    }
}

/// Connection settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// Prepended to every key (`<prefix>:{<key>}`); must not contain `{` or `}`.
    pub prefix: String,
    /// Timeout of one connection attempt.
    pub connection_timeout: Duration,
    /// Timeout of one command; a slow Redis counts as a failed one.
    pub response_timeout: Duration,
    /// Reconnection attempts per failure before commands fail.
    pub reconnect_retries: usize,
    /// Smallest delay between reconnection attempts.
    pub reconnect_min_delay: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            prefix: "mcp-rl".to_owned(),
            connection_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            reconnect_retries: 1,
            reconnect_min_delay: Duration::from_millis(20),
        }
    }
}

/// Why a [`RedisStore`] could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The URL or connection settings were rejected by the Redis client.
    #[error("invalid Redis connection settings")]
    Client(#[source] redis::RedisError),
    /// The prefix contained `{` or `}`, which would break the Cluster hash tags.
    #[error("the key prefix must not contain `{{` or `}}`")]
    InvalidPrefix,
    /// Not called inside a Tokio runtime (the connection manager needs one).
    #[error("RedisStore must be created inside a Tokio runtime")]
    NoRuntime,
}

/// Rate-limit state in Redis. Clones share one multiplexed connection.
///
/// Every key is `<prefix>:{<limiter key>}`: the braces are a Cluster hash tag, so all keys
/// one operation touches live in one slot while different limiter keys spread over the
/// cluster. Every key carries a TTL just beyond the time its state matters, so Redis
/// memory stays bounded by the keys active recently.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection manager's Debug shows connection info; keep it out of logs.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

fn outcome(v: &[i64]) -> Result<StoreOutcome, StoreError> {
    let [allowed, remaining, reset, retry] = v else {
        return Err(StoreError::UnexpectedReply(format!(
            "expected 4 integers, got {}",
            v.len()
        )));
    };
    let micros = |x: i64| Duration::from_micros(u64::try_from(x).unwrap_or(0));
    Ok(StoreOutcome {
        allowed: *allowed == 1,
        remaining: u64::try_from(*remaining).unwrap_or(0),
        reset_after: micros(*reset),
        retry_after: micros(*retry),
    })
}

impl RedisStore {
    /// A store on `url` (`redis://host:port/db`). The connection is made lazily, so this
    /// succeeds while Redis is down; commands then fail and the limiter's failure policy
    /// applies until Redis is back.
    ///
    /// # Errors
    /// See [`RedisConfigError`].
    pub fn open(url: &str, config: &RedisStoreConfig) -> Result<Self, RedisConfigError> {
        let client = redis::Client::open(url).map_err(RedisConfigError::Client)?;
        Self::with_client(client, config)
    }

    /// A store on an existing client.
    ///
    /// # Errors
    /// See [`RedisConfigError`].
    pub fn with_client(
        client: redis::Client,
        config: &RedisStoreConfig,
    ) -> Result<Self, RedisConfigError> {
        if config.prefix.contains(['{', '}']) {
            return Err(RedisConfigError::InvalidPrefix);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisConfigError::NoRuntime);
        }
        let cm = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_retries)
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, cm)
            .map_err(RedisConfigError::Client)?;
        Ok(Self {
            conn,
            prefix: config.prefix.as_str().into(),
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// The full Redis key of a limiter key.
    #[must_use]
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:{{{}}}", self.prefix, key)
    }

    /// Takes many charges in one round trip: a pipeline of EVALSHA calls (the scripts
    /// are loaded and the pipeline resent once if Redis has lost them). Each charge is
    /// atomic on its own; outcomes come back in order.
    ///
    /// # Errors
    /// When Redis fails or answers something unexpected.
    pub async fn charge_batch(
        &self,
        charges: &[Charge<'_>],
    ) -> Result<Vec<StoreOutcome>, StoreError> {
        let mut pipe = redis::pipe();
        for c in charges {
            let mut cmd = redis::cmd("EVALSHA");
            let now = c.now.as_micros();
            match c.algorithm {
                Algorithm::Gcra => {
                    let g = Gcra::of(c.quota);
                    cmd.arg(self.scripts.gcra_charge.get_hash())
                        .arg(1)
                        .arg(self.redis_key(c.key))
                        .arg(now)
                        .arg(g.interval)
                        .arg(g.burst);
                }
                Algorithm::SlidingWindow => {
                    let w = Window::of(c.quota);
                    cmd.arg(self.scripts.window_charge.get_hash())
                        .arg(1)
                        .arg(self.redis_key(c.key))
                        .arg(now)
                        .arg(w.window)
                        .arg(w.limit);
                }
            }
            cmd.arg(c.cost).arg(TTL_SLACK_MS);
            pipe.add_command(cmd);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<i64>> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.scripts
                    .gcra_charge
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                self.scripts
                    .window_charge
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            }
            Err(e) => return Err(unavailable(e)),
        };
        replies.iter().map(|r| outcome(r)).collect()
    }

    /// The connection, for callers that want to share it.
    #[must_use]
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn ttl_ms(until: Timestamp, now: Timestamp) -> u64 {
    duration_micros(until.saturating_since(now)).div_ceil(1_000) + TTL_SLACK_MS
}

impl RateLimitStore for RedisStore {
    async fn charge(&self, c: &Charge<'_>) -> Result<StoreOutcome, StoreError> {
        let key = self.redis_key(c.key);
        let mut conn = self.conn.clone();
        let now = c.now.as_micros();
        let reply: Vec<i64> = match c.algorithm {
            Algorithm::Gcra => {
                let g = Gcra::of(c.quota);
                let mut inv = self.scripts.gcra_charge.key(key);
                inv.arg(now)
                    .arg(g.interval)
                    .arg(g.burst)
                    .arg(c.cost)
                    .arg(TTL_SLACK_MS);
                inv.invoke_async(&mut conn).await
            }
            Algorithm::SlidingWindow => {
                let w = Window::of(c.quota);
                let mut inv = self.scripts.window_charge.key(key);
                inv.arg(now)
                    .arg(w.window)
                    .arg(w.limit)
                    .arg(c.cost)
                    .arg(TTL_SLACK_MS);
                inv.invoke_async(&mut conn).await
            }
        }
        .map_err(unavailable)?;
        outcome(&reply)
    }

    async fn refund(&self, c: &Charge<'_>, now: Timestamp) -> Result<(), StoreError> {
        let key = self.redis_key(c.key);
        let mut conn = self.conn.clone();
        let _: i64 = match c.algorithm {
            Algorithm::Gcra => {
                let g = Gcra::of(c.quota);
                let mut inv = self.scripts.gcra_refund.key(key);
                inv.arg(now.as_micros())
                    .arg(g.interval)
                    .arg(c.cost)
                    .arg(TTL_SLACK_MS);
                inv.invoke_async(&mut conn).await
            }
            Algorithm::SlidingWindow => {
                let w = Window::of(c.quota);
                let mut inv = self.scripts.window_refund.key(key);
                inv.arg(now.as_micros())
                    .arg(w.window)
                    .arg(c.now.as_micros())
                    .arg(c.cost)
                    .arg(TTL_SLACK_MS);
                inv.invoke_async(&mut conn).await
            }
        }
        .map_err(unavailable)?;
        Ok(())
    }

    async fn incr_counter(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.counter_incr.key(self.redis_key(key));
        inv.arg(now.as_micros())
            .arg(duration_micros(window))
            .arg(TTL_SLACK_MS);
        inv.invoke_async(&mut conn).await.map_err(unavailable)
    }

    async fn set_flag(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.redis_key(key);
        if until <= now {
            let _: i64 = conn.del(key).await.map_err(unavailable)?;
            return Ok(());
        }
        let opts =
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms(until, now)));
        let _: () = conn
            .set_options(key, until.as_micros(), opts)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_flag(&self, key: &str, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = conn.get(self.redis_key(key)).await.map_err(unavailable)?;
        Ok(v.map(Timestamp::from_micros).filter(|until| *until > now))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.redis_key(key)).await.map_err(unavailable)?;
        Ok(())
    }
}
