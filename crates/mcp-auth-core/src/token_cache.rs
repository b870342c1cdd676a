//! The validated-token cache: SHA-256 of a token -> the `Principal` it proved, bounded in size
//! and in time by the token's own `exp`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use foldhash::fast::RandomState;
use moka::Expiry;

use crate::clock::Clock;
use crate::principal::{Principal, from_unix};

/// Default number of cached tokens.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// Default upper bound on how long a token stays cached (5 minutes), so that a key removed
/// from a JWKS stops admitting its tokens soon even if they expire much later.
pub const DEFAULT_TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);

/// The cache key: SHA-256 of the token. The token itself is never stored.
pub type TokenHash = [u8; 32];

/// A [`TokenHash`] as the map key. Its `Hash` gives the map's hasher only the first eight
/// bytes: a digest's bytes are already uniform, so hashing all 32 (after a length prefix)
/// would only cost time on every hit. Equality compares all 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(TokenHash);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, g, h]));
    }
}

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// The time from which the entry must not be served (exp + leeway), compared with the
    /// clock as it is, without a conversion to seconds on every hit.
    valid_until: SystemTime,
    ttl: Duration,
}

struct EntryExpiry;

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
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
    /// Hashed with seeded foldhash rather than SipHash: the keys are already SHA-256 digests,
    /// and an entry exists only for a token whose signature verified, so nobody can crowd a
    /// bucket.
    cache: moka::sync::Cache<Key, Entry, RandomState>,
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
            .build_with_hasher(RandomState::default());
        Some(Self {
            cache,
            clock,
            leeway: leeway.as_secs(),
            max_ttl,
        })
    }

    /// The cache key of `token`: its SHA-256.
    ///
    /// aws-lc's SHA-256 (already linked for the signatures) picks SHA-NI, AVX2 or SSSE3 code
    /// by CPU, where `sha2` has only SHA-NI and portable code; with SHA-NI it is as fast or
    /// slightly faster. On a cache hit this hash is most of the cost.
    pub fn hash(token: &str) -> TokenHash {
        let mut key = [0; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        key
    }

    fn now_secs(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The cached principal for `key`, unless its token has expired by the clock.
    pub fn get(&self, key: &TokenHash) -> Option<Principal> {
        let entry = self.cache.get(&Key(*key))?;
        if self.clock.now() >= entry.valid_until {
            self.cache.invalidate(&Key(*key));
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
            Key(key),
            Entry {
                principal,
                valid_until: from_unix(valid_until),
                ttl,
            },
        );
    }

    /// Removes `key`.
    pub fn invalidate(&self, key: &TokenHash) {
        self.cache.invalidate(&Key(*key));
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
    use sha2::Digest;

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
    fn key_is_the_sha256_of_the_token() {
        assert_eq!(
            hex::encode(TokenCache::hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Multi-block input, against the independent `sha2` implementation.
        let long = "eyJ0eXAiOiJKV1QifQ.".repeat(50);
        let expected: [u8; 32] = sha2::Sha256::digest(long.as_bytes()).into();
        assert_eq!(TokenCache::hash(&long), expected);
    }

    #[test]
    fn keys_sharing_their_first_bytes_stay_apart() {
        let clock = TestClock::at(NOW);
        let cache = TokenCache::new(10, Duration::from_secs(300), Duration::ZERO, clock).unwrap();
        let a = [7; 32];
        let mut b = a;
        b[31] = 8;
        cache.insert(a, principal(NOW + 100));
        assert!(cache.get(&b).is_none());
        cache.insert(
            b,
            Principal::builder("bob", AuthMethod::Local)
                .expires_at(UNIX_EPOCH + Duration::from_secs(NOW + 100))
                .build(),
        );
        assert_eq!(cache.get(&a).unwrap().subject(), "alice");
        assert_eq!(cache.get(&b).unwrap().subject(), "bob");
        cache.invalidate(&a);
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
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
