//! [`RedisRefreshTokenStore`]: refresh-token families in Redis, shared by every replica of
//! a local issuer (feature `redis`).

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;

use super::IssueRequest;
use super::store::{Exchange, RefreshFamily, RefreshTokenHash, RefreshTokenStore};
use crate::error::BoxError;

/// Default key prefix.
const DEFAULT_PREFIX: &str = "mcp-auth:refresh:";
/// Default most tokens remembered per family (as in the memory store).
const DEFAULT_MAX_TOKENS_PER_FAMILY: usize = 32;

/// Starts a family. KEYS: family, first token, family token list.
/// ARGV: grant (JSON), created (ms), family end (ms), token expiry (ms), family id, token.
const START_LUA: &str = r"
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'grant', ARGV[1], 'created', ARGV[2], 'exp', ARGV[3],
  'revoked', '0', 'active', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local exp = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]))
redis.call('HSET', KEYS[2], 'fam', ARGV[5], 'exp', string.format('%d', exp), 'used', '0')
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('PEXPIREAT', KEYS[3], ARGV[3])
return 1
";

/// Exchanges a token, atomically, with the semantics of the memory store.
/// KEYS: the presented token. ARGV: prefix, presented, next, next expiry (ms), now (ms),
/// grace (ms), most tokens per family.
/// Returns {'unknown'}, {'expired'}, {'revoked', id}, {'reused', id} or
/// {'rotated', id, grant, created, family end, expiry}.
const EXCHANGE_LUA: &str = r"
local t = redis.call('HMGET', KEYS[1], 'fam', 'exp', 'used')
if not t[1] then return {'unknown'} end
local fid = t[1]
local fk = ARGV[1] .. 'fam:' .. fid
local f = redis.call('HMGET', fk, 'revoked', 'exp', 'prev', 'prev_at', 'grant', 'created', 'active')
if not f[2] then
  redis.call('DEL', KEYS[1])
  return {'unknown'}
end
if f[1] == '1' then return {'revoked', fid} end
local now = tonumber(ARGV[5])
local used = t[3] == '1'
local retry = used and tonumber(ARGV[6]) > 0 and f[3] == ARGV[2] and f[4] ~= false
  and now < tonumber(f[4]) + tonumber(ARGV[6])
if used and not retry then
  redis.call('HSET', fk, 'revoked', '1')
  return {'reused', fid}
end
local fexp = tonumber(f[2])
if tonumber(t[2]) <= now or fexp <= now then return {'expired'} end
local exp = math.min(tonumber(ARGV[4]), fexp)
local superseded = ARGV[2]
if retry then
  superseded = f[7]
else
  redis.call('HSET', fk, 'prev', ARGV[2], 'prev_at', ARGV[5])
end
if superseded then
  local sk = ARGV[1] .. 'tok:' .. superseded
  if redis.call('EXISTS', sk) == 1 then redis.call('HSET', sk, 'used', '1') end
end
redis.call('HSET', fk, 'active', ARGV[3])
local nk = ARGV[1] .. 'tok:' .. ARGV[3]
redis.call('HSET', nk, 'fam', fid, 'exp', string.format('%d', exp), 'used', '0')
redis.call('PEXPIREAT', nk, string.format('%d', fexp))
local lk = ARGV[1] .. 'famtok:' .. fid
redis.call('RPUSH', lk, ARGV[3])
redis.call('PEXPIREAT', lk, string.format('%d', fexp))
while redis.call('LLEN', lk) > tonumber(ARGV[7]) do
  local old = redis.call('LPOP', lk)
  redis.call('DEL', ARGV[1] .. 'tok:' .. old)
end
return {'rotated', fid, f[5], f[6], f[2], string.format('%d', exp)}
";

/// Revokes the family of a token. KEYS: the token. ARGV: prefix. Returns 1 if found.
const REVOKE_LUA: &str = r"
local fid = redis.call('HGET', KEYS[1], 'fam')
if not fid then return 0 end
local fk = ARGV[1] .. 'fam:' .. fid
if redis.call('EXISTS', fk) == 0 then return 0 end
redis.call('HSET', fk, 'revoked', '1')
return 1
";

static START: LazyLock<Script> = LazyLock::new(|| Script::new(START_LUA));
static EXCHANGE: LazyLock<Script> = LazyLock::new(|| Script::new(EXCHANGE_LUA));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE_LUA));

/// Refresh-token families in Redis, so every replica of an issuer (all signing with the
/// same key) rotates and detects reuse on the same state.
///
/// Keys: `<prefix>fam:<family id>` (a hash: grant, times, revoked flag, active and
/// previous token), `<prefix>tok:<SHA-256 of a token, hex>` (family, expiry, used flag) and
/// `<prefix>famtok:<family id>` (the family's remembered tokens, oldest first, at most 32
/// by default). Every key expires with its family (`PEXPIREAT`), so Redis drops finished
/// logins by itself. Each operation is one Lua script, atomic on the server: two replicas
/// exchanging one token at once cannot both succeed. Scripts compute key names, so the
/// store needs a single Redis (or its primary), not Redis Cluster. Redis 6.2 or newer.
#[derive(Clone)]
pub struct RedisRefreshTokenStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    max_tokens_per_family: usize,
}

impl fmt::Debug for RedisRefreshTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRefreshTokenStore")
            .field("prefix", &self.prefix)
            .field("max_tokens_per_family", &self.max_tokens_per_family)
            .finish_non_exhaustive()
    }
}

fn to_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_millis(text: &str) -> Result<SystemTime, BoxError> {
    let ms: u64 = text.parse()?;
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

fn redis_error(error: ::redis::RedisError) -> BoxError {
    Box::new(error)
}

impl RedisRefreshTokenStore {
    /// A store on a connection manager, with the prefix `mcp-auth:refresh:`.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.into(),
            max_tokens_per_family: DEFAULT_MAX_TOKENS_PER_FAMILY,
        }
    }

    /// Connects to `url` (`redis://` or `rediss://`) with a reconnecting connection manager.
    pub async fn connect(url: &str) -> Result<Self, BoxError> {
        let client = ::redis::Client::open(url).map_err(redis_error)?;
        let conn = ConnectionManager::new(client).await.map_err(redis_error)?;
        Ok(Self::new(conn))
    }

    /// Prefixes every key with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// Remembers at most `max` tokens per family (at least one); older used tokens are
    /// forgotten, so their reuse is refused as unknown instead of revoking the family.
    pub fn with_max_tokens_per_family(mut self, max: usize) -> Self {
        self.max_tokens_per_family = max.max(1);
        self
    }

    fn family_key(&self, id: &str) -> String {
        format!("{}fam:{id}", self.prefix)
    }

    fn token_key(&self, hash: &RefreshTokenHash) -> String {
        format!("{}tok:{}", self.prefix, hex::encode(hash.as_bytes()))
    }

    fn list_key(&self, id: &str) -> String {
        format!("{}famtok:{id}", self.prefix)
    }
}

#[async_trait]
impl RefreshTokenStore for RedisRefreshTokenStore {
    async fn start_family(
        &self,
        family: RefreshFamily,
        first: RefreshTokenHash,
        expires_at: SystemTime,
        _now: SystemTime,
    ) -> Result<(), BoxError> {
        let grant = serde_json::to_string(&family.grant)?;
        let mut conn = self.conn.clone();
        START
            .key(self.family_key(&family.id))
            .key(self.token_key(&first))
            .key(self.list_key(&family.id))
            .arg(grant)
            .arg(to_millis(family.created_at))
            .arg(to_millis(family.expires_at))
            .arg(to_millis(expires_at))
            .arg(&family.id)
            .arg(hex::encode(first.as_bytes()))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(redis_error)
    }

    async fn exchange(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Exchange, BoxError> {
        self.exchange_with_grace(presented, next, next_expires_at, now, Duration::ZERO)
            .await
    }

    async fn exchange_with_grace(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
        grace: Duration,
    ) -> Result<Exchange, BoxError> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = EXCHANGE
            .key(self.token_key(&presented))
            .arg(&*self.prefix)
            .arg(hex::encode(presented.as_bytes()))
            .arg(hex::encode(next.as_bytes()))
            .arg(to_millis(next_expires_at))
            .arg(to_millis(now))
            .arg(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX))
            .arg(self.max_tokens_per_family)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match reply.as_slice() {
            [kind] if kind == "unknown" => Ok(Exchange::Unknown),
            [kind] if kind == "expired" => Ok(Exchange::Expired),
            [kind, id] if kind == "revoked" => Ok(Exchange::Revoked {
                family_id: id.clone(),
            }),
            [kind, id] if kind == "reused" => Ok(Exchange::Reused {
                family_id: id.clone(),
            }),
            [kind, id, grant, created, ends, expires] if kind == "rotated" => {
                let grant: IssueRequest = serde_json::from_str(grant)?;
                Ok(Exchange::Rotated {
                    family: RefreshFamily {
                        id: id.clone(),
                        grant,
                        created_at: from_millis(created)?,
                        expires_at: from_millis(ends)?,
                    },
                    expires_at: from_millis(expires)?,
                })
            }
            _ => Err("unexpected reply from the refresh-token script".into()),
        }
    }

    async fn revoke_family_of(
        &self,
        token: RefreshTokenHash,
        _now: SystemTime,
    ) -> Result<bool, BoxError> {
        let mut conn = self.conn.clone();
        REVOKE
            .key(self.token_key(&token))
            .arg(&*self.prefix)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|found| found == 1)
            .map_err(redis_error)
    }
}
