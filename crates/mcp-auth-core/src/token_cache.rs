//! The validated-token cache: SHA-256 of a token -> the `Principal` it proved, bounded in size
//! and in time by the token's own `exp`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::principal::Principal;

/// Default number of cached tokens.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// Default upper bound on how long a token stays cached (5 minutes), so that a key removed
/// from a JWKS stops admitting its tokens soon even if they expire much later.
pub const DEFAULT_TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);

/// The cache key: SHA-256 of the token. The token itself is never stored.
pub type TokenHash = [u8; 32];

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// Seconds since the Unix epoch after which the entry must not be served (exp + leeway).
    valid_until: u64,
    ttl: Duration,
}

struct EntryExpiry;

impl Expiry<TokenHash, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A bounded cache of verified tokens.
///
/// A hit skips signature and claim checks, but never the revocation check, which the
/// [`JwtAuthenticator`](crate::jwt::JwtAuthenticator) runs on every request.
#[derive(Clone)]
pub struct TokenCache {
    cache: moka::sync::Cache<TokenHash, Entry>,
    clock: Arc<dyn Clock>,
    leeway: u64,
    max_ttl: Duration,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.entry_count())
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens, each kept at most `max_ttl` and never past its
    /// `exp` plus `leeway` as seen by `clock`. `None` when `capacity` is 0 (caching disabled).
    pub fn new(
        capacity: u64,
        max_ttl: Duration,
        leeway: Duration,
        clock: Arc<dyn Clock>,
    ) -> Option<Self> {
        if capacity == 0 || max_ttl.is_zero() {
            return None;
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(EntryExpiry)
            .build();
        Some(Self {
            cache,
            clock,
            leeway: leeway.as_secs(),
            max_ttl,
        })
    }

    /// The cache key of `token`.
    pub fn hash(token: &str) -> TokenHash {
        Sha256::digest(token.as_bytes()).into()
    }

    fn now_secs(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The cached principal for `key`, unless its token has expired by the clock.
    pub fn get(&self, key: &TokenHash) -> Option<Principal> {
        let entry = self.cache.get(key)?;
        if self.now_secs() >= entry.valid_until {
            self.cache.invalidate(key);
            return None;
        }
        Some(entry.principal)
    }

    /// Caches `principal` (which must carry an expiry) under `key`.
    pub fn insert(&self, key: TokenHash, principal: Principal) {
        let Some(exp) = principal.expires_at() else {
            return;
        };
        let exp = exp.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let valid_until = exp.saturating_add(self.leeway);
        let remaining = valid_until.saturating_sub(self.now_secs());
        if remaining == 0 {
            return;
        }
        let ttl = Duration::from_secs(remaining).min(self.max_ttl);
        self.cache.insert(
            key,
            Entry {
                principal,
                valid_until,
                ttl,
            },
        );
    }

    /// Removes `key`.
    pub fn invalidate(&self, key: &TokenHash) {
        self.cache.invalidate(key);
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Approximate number of entries.
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::principal::AuthMethod;

    const NOW: u64 = 1_800_000_000;

    fn principal(exp: u64) -> Principal {
        Principal::builder("alice", AuthMethod::Local)
            .expires_at(UNIX_EPOCH + Duration::from_secs(exp))
            .build()
    }

    #[test]
    fn bounded_by_exp_by_the_clock() {
        let clock = TestClock::at(NOW);
        let cache = TokenCache::new(
            10,
            Duration::from_secs(300),
            Duration::from_secs(5),
            clock.clone(),
        )
        .unwrap();
        let key = TokenCache::hash("token-a");
        assert_ne!(key, TokenCache::hash("token-b"));
        cache.insert(key, principal(NOW + 100));
        assert_eq!(cache.get(&key).unwrap().subject(), "alice");
        clock.set(NOW + 104);
        assert!(cache.get(&key).is_some());
        clock.set(NOW + 105);
        assert!(cache.get(&key).is_none());
        // Already expired or without expiry: not cached.
        cache.insert(key, principal(NOW));
        assert!(cache.get(&key).is_none());
        cache.insert(key, Principal::builder("x", AuthMethod::Local).build());
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn bounded_capacity_and_disabled() {
        let clock = TestClock::at(NOW);
        assert!(
            TokenCache::new(0, Duration::from_secs(300), Duration::ZERO, clock.clone()).is_none()
        );
        let cache = TokenCache::new(5, Duration::from_secs(300), Duration::ZERO, clock).unwrap();
        for i in 0..50 {
            cache.insert(TokenCache::hash(&format!("t{i}")), principal(NOW + 100));
        }
        assert!(cache.entry_count() <= 5);
    }
}
