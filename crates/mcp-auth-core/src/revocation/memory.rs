//! [`MemoryRevocationStore`]: revocations in process memory, bounded in time and count.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use foldhash::fast::RandomState;

use super::{DEFAULT_RETENTION_MARGIN, RevocationStore, retention_end, subject_revokes};
use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::principal::Principal;

/// Default hard cap on entries (revoked token ids plus revoked subjects).
const DEFAULT_CAPACITY: usize = 1_000_000;

/// A subject revocation: tokens issued before `issued_before` are revoked until `until`.
#[derive(Clone, Copy, Debug)]
struct SubjectEntry {
    issued_before: SystemTime,
    until: SystemTime,
}

/// Both maps hash with seeded foldhash: a lookup per request with SipHash cost more than
/// the rest of the check, and the seed keeps the buckets unpredictable.
#[derive(Default)]
struct Entries {
    /// Revoked `jti` -> when the entry may be dropped.
    tokens: HashMap<Box<str>, SystemTime, RandomState>,
    /// Revoked subjects.
    subjects: HashMap<Box<str>, SubjectEntry, RandomState>,
}

impl Entries {
    fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    fn purge(&mut self, now: SystemTime) -> usize {
        let before = self.len();
        self.tokens.retain(|_, until| *until > now);
        self.subjects.retain(|_, entry| entry.until > now);
        before - self.len()
    }
}

/// Revocations held in memory, for a single process (use the Redis store to share them
/// between replicas).
///
/// Bounded: an entry is dropped once its expiry (plus a retention margin, default 2 min)
/// has passed, and the store holds at most `capacity` entries (default 1 000 000). When it
/// is full even after dropping expired entries, a new revocation fails with
/// [`AuthError::Unavailable`] instead of evicting an older one: evicting would silently
/// make a revoked token valid again. Updating an existing entry always succeeds.
///
/// `is_revoked` takes a read lock and does at most two hash lookups; it reads the clock only
/// when one of them finds an entry, and it answers through
/// [`is_revoked_now`](RevocationStore::is_revoked_now) without a boxed future.
pub struct MemoryRevocationStore {
    entries: RwLock<Entries>,
    clock: Arc<dyn Clock>,
    capacity: usize,
    margin: Duration,
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.entries.read().map(|e| e.len()).unwrap_or_default();
        f.debug_struct("MemoryRevocationStore")
            .field("entries", &len)
            .field("capacity", &self.capacity)
            .field("margin", &self.margin)
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::new()
    }
}

fn poisoned() -> AuthError {
    AuthError::unavailable("revocation store lock poisoned", None)
}

impl MemoryRevocationStore {
    /// An empty store on the system clock with the default capacity and margin.
    pub fn new() -> Self {
        Self {
            entries: RwLock::new(Entries::default()),
            clock: Arc::new(SystemClock),
            capacity: DEFAULT_CAPACITY,
            margin: DEFAULT_RETENTION_MARGIN,
        }
    }

    /// Uses `clock` for expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Holds at most `capacity` entries.
    pub fn with_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity.get();
        self
    }

    /// Keeps entries for `margin` past the expiry they were given.
    pub fn with_retention_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Number of entries held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or_default()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries and returns how many were dropped.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        self.entries
            .write()
            .map(|mut e| e.purge(now))
            .unwrap_or_default()
    }

    /// Whether `principal` is revoked: the check behind `is_revoked` and `is_revoked_now`.
    fn check(&self, principal: &Principal) -> Result<bool, AuthError> {
        let entries = self.entries.read().map_err(|_| poisoned())?;
        let token_until = principal
            .token_id()
            .and_then(|jti| entries.tokens.get(jti).copied());
        let subject = entries.subjects.get(principal.subject()).copied();
        drop(entries);
        if token_until.is_none() && subject.is_none() {
            return Ok(false);
        }
        let now = self.clock.now();
        Ok(token_until.is_some_and(|until| until > now)
            || subject.is_some_and(|entry| {
                entry.until > now && subject_revokes(entry.issued_before, principal)
            }))
    }

    /// Makes room for one more entry: purges expired ones when full, fails if still full.
    fn make_room(&self, entries: &mut Entries, now: SystemTime) -> Result<(), AuthError> {
        if entries.len() >= self.capacity {
            entries.purge(now);
        }
        if entries.len() >= self.capacity {
            tracing::warn!(capacity = self.capacity, "revocation store is full");
            return Err(AuthError::unavailable("revocation store is full", None));
        }
        Ok(())
    }
}

#[async_trait]
impl RevocationStore for MemoryRevocationStore {
    async fn revoke_token(&self, jti: &str, expires_at: SystemTime) -> Result<(), AuthError> {
        let now = self.clock.now();
        let Some(until) = retention_end(expires_at, self.margin, now) else {
            return Ok(());
        };
        let mut entries = self.entries.write().map_err(|_| poisoned())?;
        if let Some(current) = entries.tokens.get_mut(jti) {
            *current = (*current).max(until);
            return Ok(());
        }
        self.make_room(&mut entries, now)?;
        entries.tokens.insert(jti.into(), until);
        Ok(())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        ttl_until: SystemTime,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let Some(until) = retention_end(ttl_until, self.margin, now) else {
            return Ok(());
        };
        let mut entries = self.entries.write().map_err(|_| poisoned())?;
        if let Some(current) = entries.subjects.get_mut(subject) {
            current.issued_before = current.issued_before.max(issued_before);
            current.until = current.until.max(until);
            return Ok(());
        }
        self.make_room(&mut entries, now)?;
        entries.subjects.insert(
            subject.into(),
            SubjectEntry {
                issued_before,
                until,
            },
        );
        Ok(())
    }

    async fn is_revoked(&self, principal: &Principal) -> Result<bool, AuthError> {
        self.check(principal)
    }

    fn is_revoked_now(&self, principal: &Principal) -> Option<Result<bool, AuthError>> {
        Some(self.check(principal))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::clock::TestClock;
    use crate::principal::AuthMethod;

    fn secs(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn token(subject: &str, jti: &str, iat: u64) -> Principal {
        Principal::builder(subject, AuthMethod::Local)
            .token_id(jti)
            .issued_at(secs(iat))
            .build()
    }

    fn store(clock: &Arc<TestClock>) -> MemoryRevocationStore {
        MemoryRevocationStore::new()
            .with_clock(clock.clone())
            .with_retention_margin(Duration::ZERO)
    }

    #[tokio::test]
    async fn revoked_token_until_expiry() {
        let clock = TestClock::at(1_000);
        let store = store(&clock);
        let p = token("alice", "t1", 900);
        assert!(!store.is_revoked(&p).await.unwrap());
        store.revoke_token("t1", secs(1_100)).await.unwrap();
        assert!(store.is_revoked(&p).await.unwrap());
        assert!(!store.is_revoked(&token("alice", "t2", 900)).await.unwrap());
        // The answer without waiting is the same.
        assert!(store.is_revoked_now(&p).unwrap().unwrap());
        assert!(
            !store
                .is_revoked_now(&token("alice", "t2", 900))
                .unwrap()
                .unwrap()
        );
        clock.advance(Duration::from_secs(100));
        assert!(!store.is_revoked(&p).await.unwrap());
        assert_eq!(store.purge_expired(), 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn retention_margin_covers_leeway() {
        let clock = TestClock::at(1_000);
        let store = MemoryRevocationStore::new()
            .with_clock(clock.clone())
            .with_retention_margin(Duration::from_secs(60));
        store.revoke_token("t1", secs(1_010)).await.unwrap();
        clock.advance(Duration::from_secs(30));
        assert!(store.is_revoked(&token("a", "t1", 900)).await.unwrap());
        clock.advance(Duration::from_secs(40));
        assert!(!store.is_revoked(&token("a", "t1", 900)).await.unwrap());
        // Already past expiry and margin: not stored at all.
        store.revoke_token("old", secs(100)).await.unwrap();
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn subject_revocation_honours_issued_before() {
        let clock = TestClock::at(1_000);
        let store = store(&clock);
        store
            .revoke_subject("alice", secs(1_000), secs(5_000))
            .await
            .unwrap();
        assert!(store.is_revoked(&token("alice", "a", 999)).await.unwrap());
        assert!(!store.is_revoked(&token("alice", "b", 1_001)).await.unwrap());
        assert!(!store.is_revoked(&token("bob", "c", 999)).await.unwrap());
        let no_iat = Principal::builder("alice", AuthMethod::Local).build();
        assert!(store.is_revoked(&no_iat).await.unwrap());
        // A later revocation moves the cut-off forward, never back.
        store
            .revoke_subject("alice", secs(2_000), secs(5_000))
            .await
            .unwrap();
        assert!(store.is_revoked(&token("alice", "b", 1_001)).await.unwrap());
        store
            .revoke_subject("alice", secs(500), secs(5_000))
            .await
            .unwrap();
        assert!(store.is_revoked(&token("alice", "b", 1_001)).await.unwrap());
        clock.advance(Duration::from_secs(4_000));
        assert!(!store.is_revoked(&token("alice", "a", 999)).await.unwrap());
    }

    #[tokio::test]
    async fn full_store_refuses_instead_of_evicting() {
        let clock = TestClock::at(1_000);
        let store = store(&clock).with_capacity(NonZeroUsize::new(2).unwrap());
        store.revoke_token("t1", secs(1_010)).await.unwrap();
        store.revoke_token("t2", secs(2_000)).await.unwrap();
        assert!(matches!(
            store.revoke_token("t3", secs(2_000)).await,
            Err(AuthError::Unavailable { .. })
        ));
        // Updating an existing entry needs no room.
        store.revoke_token("t2", secs(3_000)).await.unwrap();
        assert!(store.is_revoked(&token("a", "t1", 0)).await.unwrap());
        assert!(store.is_revoked(&token("a", "t2", 0)).await.unwrap());
        // Once t1 expires, it is purged to make room.
        clock.advance(Duration::from_secs(10));
        store
            .revoke_subject("bob", secs(1_010), secs(2_000))
            .await
            .unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.is_revoked(&token("bob", "x", 1_000)).await.unwrap());
    }
}
