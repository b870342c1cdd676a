//! The validated-token cache: SHA-256 of a token -> the `Principal` it proved, bounded in size
//! and in time by the token's own `exp`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use foldhash::fast::RandomState;

use crate::clock::Clock;
use crate::principal::{Principal, from_unix};

/// Default number of cached tokens.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// Default upper bound on how long a token stays cached (5 minutes), so that a key removed
/// from a JWKS stops admitting its tokens soon even if they expire much later.
pub const DEFAULT_TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);

/// The most shards a cache is split into (fewer when the capacity is smaller).
const MAX_SHARDS: usize = 16;

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

impl Key {
    /// The shard of this key among `count` (a power of two): from the last byte, which the
    /// map's hash does not use.
    fn shard(&self, count: usize) -> usize {
        usize::from(self.0[31]) & (count - 1)
    }
}

struct Entry {
    principal: Principal,
    /// The time from which the entry must not be served, by the cache's clock: the token's
    /// `exp` plus the leeway, or the insertion time plus the cache's `max_ttl` if sooner.
    until: SystemTime,
}

type Shard = HashMap<Key, Entry, RandomState>;

/// A bounded cache of verified tokens.
///
/// A hit skips signature and claim checks, but never the revocation check, which the
/// [`JwtAuthenticator`](crate::jwt::JwtAuthenticator) runs on every request.
///
/// The entries are spread over up to 16 shards by key, each a hash map behind a read-write
/// lock: a hit is one read lock, one lookup, one clock reading and one reference-count
/// increment. A full shard first drops its expired entries and then, if it is still full,
/// the entry that expires first. Only tokens whose signature verified are ever inserted, so
/// filling the cache takes valid tokens. Clones share the same entries.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// Hashed with seeded foldhash rather than SipHash: the keys are already SHA-256 digests,
    /// and an entry exists only for a token whose signature verified, so nobody can crowd a
    /// bucket.
    shards: Box<[RwLock<Shard>]>,
    /// Entries per shard; the shards together hold at most the configured capacity.
    per_shard: usize,
    clock: Arc<dyn Clock>,
    leeway: u64,
    max_ttl: Duration,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entry_count())
            .field("max_ttl", &self.inner.max_ttl)
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
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        // The largest power of two up to both the capacity and MAX_SHARDS.
        let count = if capacity >= MAX_SHARDS {
            MAX_SHARDS
        } else {
            1 << capacity.ilog2()
        };
        let shards = (0..count)
            .map(|_| RwLock::new(Shard::with_hasher(RandomState::default())))
            .collect();
        Some(Self {
            inner: Arc::new(Inner {
                shards,
                per_shard: capacity / count,
                clock,
                leeway: leeway.as_secs(),
                max_ttl,
            }),
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

    fn shard(&self, key: &Key) -> &RwLock<Shard> {
        &self.inner.shards[key.shard(self.inner.shards.len())]
    }

    /// The cached principal for `key`, unless its token has expired by the clock (an
    /// expired entry is removed).
    pub fn get(&self, key: &TokenHash) -> Option<Principal> {
        let key = Key(*key);
        let shard = self.shard(&key);
        let now = self.inner.clock.now();
        {
            let entries = shard.read().unwrap_or_else(PoisonError::into_inner);
            let entry = entries.get(&key)?;
            if now < entry.until {
                return Some(entry.principal.clone());
            }
        }
        let mut entries = shard.write().unwrap_or_else(PoisonError::into_inner);
        if entries.get(&key).is_some_and(|e| now >= e.until) {
            entries.remove(&key);
        }
        None
    }

    /// Caches `principal` (which must carry an expiry) under `key`.
    pub fn insert(&self, key: TokenHash, principal: Principal) {
        let Some(exp) = principal.expires_at() else {
            return;
        };
        let exp = exp.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let now = self.inner.clock.now();
        let valid_until = from_unix(exp.saturating_add(self.inner.leeway));
        if now >= valid_until {
            return;
        }
        let until = now
            .checked_add(self.inner.max_ttl)
            .map_or(valid_until, |t| t.min(valid_until));
        let key = Key(key);
        let mut entries = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.inner.per_shard && !entries.contains_key(&key) {
            make_room(&mut entries, now);
        }
        entries.insert(key, Entry { principal, until });
    }

    /// Removes `key`.
    pub fn invalidate(&self, key: &TokenHash) {
        let key = Key(*key);
        self.shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for shard in &self.inner.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// The number of entries, counting expired ones not yet removed.
    pub fn entry_count(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len() as u64)
            .sum()
    }
}

/// Frees one place in a full shard: drops the entries expired at `now` and, if none had,
/// the one that expires first.
#[cold]
fn make_room(entries: &mut Shard, now: SystemTime) {
    let before = entries.len();
    entries.retain(|_, e| now < e.until);
    if entries.len() < before {
        return;
    }
    let first = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k);
    if let Some(key) = first {
        entries.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
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
        assert!(TokenCache::new(5, Duration::ZERO, Duration::ZERO, clock.clone()).is_none());
        for capacity in [1, 5, 16, 100] {
            let cache = TokenCache::new(
                capacity,
                Duration::from_secs(300),
                Duration::ZERO,
                clock.clone(),
            )
            .unwrap();
            for i in 0..500 {
                cache.insert(TokenCache::hash(&format!("t{i}")), principal(NOW + 100));
            }
            assert!(cache.entry_count() <= capacity, "capacity {capacity}");
            assert!(cache.entry_count() > 0);
            cache.clear();
            assert_eq!(cache.entry_count(), 0);
        }
    }

    #[test]
    fn max_ttl_bounds_an_entry_by_the_clock() {
        let clock = TestClock::at(NOW);
        let cache =
            TokenCache::new(10, Duration::from_secs(300), Duration::ZERO, clock.clone()).unwrap();
        let key = TokenCache::hash("long-lived");
        cache.insert(key, principal(NOW + 86_400));
        clock.set(NOW + 299);
        assert!(cache.get(&key).is_some());
        clock.set(NOW + 300);
        assert!(cache.get(&key).is_none());
        assert_eq!(cache.entry_count(), 0, "the expired entry is removed");
    }

    /// A key in shard 0 whatever the shard count (its last byte is 0), told apart by `n`.
    fn shard0_key(n: u8) -> TokenHash {
        let mut key = [0; 32];
        key[0] = n;
        key
    }

    #[test]
    fn a_full_shard_drops_expired_entries_then_the_one_expiring_first() {
        let clock = TestClock::at(NOW);
        // 16 shards of 3 entries.
        let cache =
            TokenCache::new(48, Duration::from_secs(1000), Duration::ZERO, clock.clone()).unwrap();
        cache.insert(shard0_key(1), principal(NOW + 100));
        cache.insert(shard0_key(2), principal(NOW + 50));
        cache.insert(shard0_key(3), principal(NOW + 200));
        // Full: the entry expiring first (2) makes room.
        cache.insert(shard0_key(4), principal(NOW + 300));
        assert!(cache.get(&shard0_key(2)).is_none());
        for n in [1, 3, 4] {
            assert!(cache.get(&shard0_key(n)).is_some(), "{n}");
        }
        // Replacing a present key evicts nothing.
        cache.insert(shard0_key(4), principal(NOW + 400));
        for n in [1, 3, 4] {
            assert!(cache.get(&shard0_key(n)).is_some(), "{n}");
        }
        // Once 1 has expired, it alone goes, although 3 expires before 5 would.
        clock.set(NOW + 150);
        cache.insert(shard0_key(5), principal(NOW + 900));
        assert!(cache.get(&shard0_key(1)).is_none());
        for n in [3, 4, 5] {
            assert!(cache.get(&shard0_key(n)).is_some(), "{n}");
        }
        assert_eq!(cache.entry_count(), 3);
    }

    #[test]
    fn clones_share_entries_across_threads() {
        let clock = TestClock::at(NOW);
        let cache = TokenCache::new(64, Duration::from_secs(300), Duration::ZERO, clock).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let cache = cache.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        let key = TokenCache::hash(&format!("{t}-{i}"));
                        cache.insert(key, principal(NOW + 100));
                        let _ = cache.get(&key);
                    }
                });
            }
        });
        assert!(cache.entry_count() <= 64);
        let key = TokenCache::hash("shared");
        cache.clone().insert(key, principal(NOW + 100));
        assert!(cache.get(&key).is_some());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { key: u8, exp_in: u64 },
        Get(u8),
        Advance(u64),
        Invalidate(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, 1u64..120).prop_map(|(key, exp_in)| Op::Insert { key, exp_in }),
            (0u8..12).prop_map(Op::Get),
            (0u64..40).prop_map(Op::Advance),
            (0u8..12).prop_map(Op::Invalidate),
        ]
    }

    /// Keys spread over shards: the last byte varies with `n`, and the first byte too.
    fn spread_key(n: u8) -> TokenHash {
        let mut key = [n; 32];
        key[31] = n.wrapping_mul(7);
        key
    }

    proptest! {
        /// Whatever the sequence of calls, the cache holds at most its capacity, serves only
        /// the principal last inserted under a key, and never serves it from the moment its
        /// `exp` plus leeway, or its insertion plus `max_ttl`, has passed.
        #[test]
        fn never_serves_stale_or_foreign_entries(
            capacity in 1u64..24,
            leeway in 0u64..5,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let max_ttl = 60;
            let clock = TestClock::at(NOW);
            let cache = TokenCache::new(
                capacity,
                Duration::from_secs(max_ttl),
                Duration::from_secs(leeway),
                clock.clone(),
            )
            .unwrap();
            let mut now = NOW;
            // Key -> (subject, exp, inserted at) of the last insertion.
            let mut last: HashMap<u8, (String, u64, u64)> = HashMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert { key, exp_in } => {
                        let subject = format!("user-{i}");
                        let p = Principal::builder(subject.as_str(), AuthMethod::Local)
                            .expires_at(UNIX_EPOCH + Duration::from_secs(now + exp_in))
                            .build();
                        cache.insert(spread_key(key), p);
                        last.insert(key, (subject.clone(), now + exp_in, now));
                        let got = cache.get(&spread_key(key));
                        prop_assert_eq!(got.map(|p| p.subject().to_owned()), Some(subject));
                    }
                    Op::Get(key) => {
                        if let Some(p) = cache.get(&spread_key(key)) {
                            let (subject, exp, at) = last.get(&key).cloned().unwrap();
                            prop_assert_eq!(p.subject(), subject.as_str());
                            prop_assert!(now < exp + leeway);
                            prop_assert!(now < at + max_ttl);
                        }
                    }
                    Op::Advance(by) => {
                        now += by;
                        clock.set(now);
                    }
                    Op::Invalidate(key) => {
                        cache.invalidate(&spread_key(key));
                        prop_assert!(cache.get(&spread_key(key)).is_none());
                    }
                }
                prop_assert!(cache.entry_count() <= capacity);
            }
        }
    }
}
