//! [`RedisRevocationStore`]: revocations in Redis, shared by every replica.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script};
use async_trait::async_trait;

use super::{DEFAULT_RETENTION_MARGIN, RevocationStore, retention_end, subject_revokes};
use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::principal::Principal;

/// Default key prefix.
const DEFAULT_PREFIX: &str = "mcp-auth:revoked:";

/// Stores a revocation entry, keeping the larger value and the later expiry of an existing
/// entry, so a delayed or repeated call never weakens a revocation. Token entries hold `1`;
/// subject entries the issued-before cut-off.
/// KEYS[1]: entry key; ARGV[1]: value (an integer); ARGV[2]: keep until (ms, Unix).
const REVOKE_LUA: &str = r"
local value = ARGV[1]
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) and tonumber(current) > tonumber(value) then
  value = current
end
local keep_until = ARGV[2]
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  local t = redis.call('TIME')
  local current_until = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + pttl
  if current_until > tonumber(keep_until) then
    keep_until = string.format('%d', current_until)
  end
end
redis.call('SET', KEYS[1], value, 'PXAT', keep_until)
return 1
";

static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE_LUA));

/// Revocations in Redis: a revocation written by one replica is seen by every replica on
/// its next check, since nothing is cached locally.
///
/// Keys are `<prefix>jti:<jti>` (value `1`) and `<prefix>sub:<subject>` (value: the
/// issued-before cut-off in Unix milliseconds), each with an absolute expiry (`PXAT`) at the
/// given expiry plus a retention margin (default 2 min), so Redis drops them by itself.
/// [`is_revoked`](RevocationStore::is_revoked) costs one round trip (`MGET` of both keys).
/// Redis errors map to [`AuthError::Unavailable`]. Needs Redis 6.2 or newer.
#[derive(Clone)]
pub struct RedisRevocationStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    clock: Arc<dyn Clock>,
    margin: Duration,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("prefix", &self.prefix)
            .field("margin", &self.margin)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: ::redis::RedisError) -> AuthError {
    AuthError::unavailable("Redis revocation store", Some(Box::new(error)))
}

fn to_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RedisRevocationStore {
    /// A store on an existing connection manager, with the default prefix
    /// `mcp-auth:revoked:`.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.into(),
            clock: Arc::new(SystemClock),
            margin: DEFAULT_RETENTION_MARGIN,
        }
    }

    /// Connects to `url` (`redis://` or `rediss://`) with a reconnecting connection manager.
    pub async fn connect(url: &str) -> Result<Self, AuthError> {
        let client = ::redis::Client::open(url).map_err(unavailable)?;
        let conn = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(Self::new(conn))
    }

    /// Prefixes every key with `prefix` (for example `myapp:revoked:`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// Uses `clock` to compute expiries.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps entries for `margin` past the expiry they were given.
    pub fn with_retention_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The Redis key of a revoked token id.
    pub fn token_key(&self, jti: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 4 + jti.len());
        key.push_str(&self.prefix);
        key.push_str("jti:");
        key.push_str(jti);
        key
    }

    /// The Redis key of a revoked subject.
    pub fn subject_key(&self, subject: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 4 + subject.len());
        key.push_str(&self.prefix);
        key.push_str("sub:");
        key.push_str(subject);
        key
    }

    /// Writes (or strengthens) the entry `key` with `value`, kept until `at` plus the margin.
    async fn revoke(&self, key: String, value: u64, at: SystemTime) -> Result<(), AuthError> {
        let Some(until) = retention_end(at, self.margin, self.clock.now()) else {
            return Ok(());
        };
        let mut conn = self.conn.clone();
        REVOKE
            .key(key)
            .arg(value)
            .arg(to_millis(until))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

#[async_trait]
impl RevocationStore for RedisRevocationStore {
    async fn revoke_token(&self, jti: &str, expires_at: SystemTime) -> Result<(), AuthError> {
        self.revoke(self.token_key(jti), 1, expires_at).await
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        ttl_until: SystemTime,
    ) -> Result<(), AuthError> {
        self.revoke(
            self.subject_key(subject),
            to_millis(issued_before),
            ttl_until,
        )
        .await
    }

    async fn is_revoked(&self, principal: &Principal) -> Result<bool, AuthError> {
        let mut conn = self.conn.clone();
        let subject_key = self.subject_key(principal.subject());
        let (token_hit, subject_value) = match principal.token_id() {
            Some(jti) => {
                let (token, subject): (Option<String>, Option<String>) = conn
                    .mget(&[self.token_key(jti), subject_key])
                    .await
                    .map_err(unavailable)?;
                (token.is_some(), subject)
            }
            None => {
                let subject: Option<String> = conn.get(subject_key).await.map_err(unavailable)?;
                (false, subject)
            }
        };
        if token_hit {
            return Ok(true);
        }
        let Some(value) = subject_value else {
            return Ok(false);
        };
        match value.parse::<u64>() {
            Ok(ms) => Ok(subject_revokes(
                UNIX_EPOCH + Duration::from_millis(ms),
                principal,
            )),
            Err(_) => {
                // Fail closed: an unreadable entry still means someone revoked this subject.
                tracing::warn!(
                    subject = principal.subject(),
                    "unreadable subject revocation entry"
                );
                Ok(true)
            }
        }
    }
}
