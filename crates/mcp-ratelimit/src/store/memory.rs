//! The in-process store: sharded hash tables, idle keys evicted, a hard cap on keys.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hashbrown::HashTable;

use super::{Charge, RateLimitStore, StoreError, StoreOutcome};
use crate::algorithm::{Algorithm, Gcra, Window, WindowState};
use crate::clock::{Timestamp, duration_micros};

/// Sizing of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStoreConfig {
    /// Number of independently locked shards (rounded up to a power of two, at least 1).
    pub shards: usize,
    /// Hard cap on keys across all shards. When a shard is full, idle keys are swept and
    /// then the keys closest to expiry are evicted (those forget the least).
    pub max_keys: usize,
    /// A shard sweeps idle keys after this many writes.
    pub sweep_every: u32,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            max_keys: 1_000_000,
            sweep_every: 4_096,
        }
    }
}

/// Counters of a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Keys currently held.
    pub keys: usize,
    /// Idle keys removed by sweeps.
    pub expired: u64,
    /// Live keys evicted because a shard hit its cap.
    pub evicted: u64,
}

/// What a key holds in the general table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GCRA (of a key too long for the compact table): the TAT is `expires`.
    Gcra,
    /// Sliding window: `counts` is `prev << 32 | cur`, and the current window starts at
    /// `expires - 2 x window`.
    Window,
    /// A windowed counter: `counts` is the count.
    Counter,
    /// A flag that holds until `expires`.
    Flag,
}

/// The state of one key in the general table, without its name.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    /// Microseconds; the entry means nothing from this time on.
    expires: u64,
    counts: u64,
}

fn window_entry(w: Window, s: &WindowState) -> Entry {
    let narrow = |v: u64| u64::from(u32::try_from(v).unwrap_or(u32::MAX));
    Entry {
        kind: Kind::Window,
        expires: w.expires_at(s),
        counts: (narrow(s.prev) << 32) | narrow(s.cur),
    }
}

fn window_state(w: Window, e: &Entry) -> Option<WindowState> {
    (e.kind == Kind::Window).then(|| WindowState {
        start: e.expires.saturating_sub(2 * w.window),
        prev: e.counts >> 32,
        cur: e.counts & u64::from(u32::MAX),
    })
}

/// Keys up to this many bytes are stored inline as [`Words`], so a lookup compares them in
/// the slot's own cache line instead of following a pointer to the heap. Limiter keys such
/// as `tenant:v:acme`, `ip:v:203.0.113.7` or `tool:v:search_docs` fit.
const SHORT: usize = 23;

/// A short key: its bytes as little-endian words, zero-padded, with its length in the
/// last byte. Equal words are equal keys.
type Words = [u64; 3];

/// The [`Words`] of a key of at most [`SHORT`] bytes. Every byte is read with a few
/// possibly overlapping loads: a byte-wise copy through a stack buffer would become a
/// `memcpy` call whose stores stall the loads that read them back.
fn words(key: &[u8]) -> Words {
    let n = key.len();
    let read8 = |at: usize| {
        key.get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |c| u64::from_le_bytes(*c))
    };
    let read4 = |at: usize| {
        key.get(at..)
            .and_then(<[u8]>::first_chunk::<4>)
            .map_or(0, |c| u64::from(u32::from_le_bytes(*c)))
    };
    let read2 = |at: usize| {
        key.get(at..)
            .and_then(<[u8]>::first_chunk::<2>)
            .map_or(0, |c| u64::from(u16::from_le_bytes(*c)))
    };
    let rem = n % 8;
    // The bytes after the last whole word, in the low bytes of one word. Overlapping
    // reads OR the same bytes into the same places.
    let tail = match (rem, n) {
        (0, _) => 0,
        (_, 8..) => read8(n - 8) >> (8 * (8 - rem)),
        (4.., _) => read4(0) | (read4(n - 4) << (8 * (n - 4))),
        (2.., _) => read2(0) | (read2(n - 2) << (8 * (n - 2))),
        _ => key.first().map_or(0, |&b| u64::from(b)),
    };
    let full = n / 8;
    let mut w: Words = [0; 3];
    for (i, d) in w.iter_mut().enumerate() {
        *d = match i.cmp(&full) {
            std::cmp::Ordering::Less => read8(8 * i),
            std::cmp::Ordering::Equal => tail,
            std::cmp::Ordering::Greater => 0,
        };
    }
    w[2] |= (n as u64) << 56;
    w
}

/// A short key hashes as its words (a few multiplies, inlined) rather than its bytes.
fn hash_words(hasher: &foldhash::fast::RandomState, words: &Words) -> u64 {
    let mut h = hasher.build_hasher();
    for w in words {
        h.write_u64(*w);
    }
    h.finish()
}

/// GCRA state of a short key: 32 bytes, so two share a cache line and none straddles one.
/// This is the rate limiter's hot path; everything else lives in [`Slot`]s.
#[derive(Debug)]
struct TatSlot {
    /// The theoretical arrival time; the slot means nothing from this time on.
    tat: u64,
    key: Words,
}

/// A key in the general table, with the kind of state held under it (packed here because
/// the enum tag leaves room for it).
#[derive(Debug)]
enum SlotKey {
    Short { kind: Kind, words: Words },
    Long { kind: Kind, text: Box<[u8]> },
}

impl SlotKey {
    fn kind(&self) -> Kind {
        match self {
            Self::Short { kind, .. } | Self::Long { kind, .. } => *kind,
        }
    }

    fn set_kind(&mut self, to: Kind) {
        match self {
            Self::Short { kind, .. } | Self::Long { kind, .. } => *kind = to,
        }
    }

    /// The key's hash, the same as its [`Lookup`]'s.
    fn hash(&self, hasher: &foldhash::fast::RandomState) -> u64 {
        match self {
            Self::Short { words, .. } => hash_words(hasher, words),
            Self::Long { text, .. } => hasher.hash_one(&**text),
        }
    }
}

/// One key and its state in the general table (48 bytes).
#[derive(Debug)]
struct Slot {
    expires: u64,
    counts: u64,
    key: SlotKey,
}

impl Slot {
    fn entry(&self) -> Entry {
        Entry {
            kind: self.key.kind(),
            expires: self.expires,
            counts: self.counts,
        }
    }

    fn set(&mut self, e: Entry) {
        self.expires = e.expires;
        self.counts = e.counts;
        self.key.set_kind(e.kind);
    }
}

/// A key being looked up: hashed once (the hash picks the shard and probes its table)
/// and, when short, already in the stored form, so a match is three word comparisons.
struct Lookup<'k> {
    hash: u64,
    probe: Probe<'k>,
}

enum Probe<'k> {
    Short(Words),
    Long(&'k [u8]),
}

impl Lookup<'_> {
    fn matches(&self, slot: &Slot) -> bool {
        match (&self.probe, &slot.key) {
            (Probe::Short(words), SlotKey::Short { words: w, .. }) => words == w,
            (Probe::Long(key), SlotKey::Long { text, .. }) => *key == &**text,
            _ => false,
        }
    }

    fn slot(&self, e: Entry) -> Slot {
        let key = match self.probe {
            Probe::Short(words) => SlotKey::Short {
                kind: e.kind,
                words,
            },
            Probe::Long(key) => SlotKey::Long {
                kind: e.kind,
                text: key.into(),
            },
        };
        Slot {
            expires: e.expires,
            counts: e.counts,
            key,
        }
    }
}

/// The tables of one shard. A short key's GCRA state lives in `gcra`, all other state
/// in `other`; the limiter never keeps two kinds of state under one key, and if a
/// caller does, each kind simply keeps its own.
#[derive(Debug)]
struct ShardMap {
    gcra: HashTable<TatSlot>,
    other: HashTable<Slot>,
    writes: u32,
}

impl ShardMap {
    fn len(&self) -> usize {
        self.gcra.len() + self.other.len()
    }
}

/// One independently locked part of the store, aligned to its own cache lines so two
/// threads working on neighbouring shards never contend for one line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<ShardMap>);

struct Inner {
    shards: Box<[Shard]>,
    /// Seeded per store, so key hashes cannot be predicted from outside (HashDoS).
    hasher: foldhash::fast::RandomState,
    mask: usize,
    cap_per_shard: usize,
    sweep_every: u32,
    expired: AtomicU64,
    evicted: AtomicU64,
}

impl Inner {
    fn lookup<'k>(&self, key: &'k str) -> Lookup<'k> {
        let key = key.as_bytes();
        if key.len() <= SHORT {
            let words = words(key);
            Lookup {
                hash: hash_words(&self.hasher, &words),
                probe: Probe::Short(words),
            }
        } else {
            Lookup {
                hash: self.hasher.hash_one(key),
                probe: Probe::Long(key),
            }
        }
    }

    fn shard(&self, key: &Lookup<'_>) -> MutexGuard<'_, ShardMap> {
        // The tables probe with the low bits (bucket) and the top seven (tag) of the same
        // hash, so the shard comes from bits in between.
        let idx = usize::try_from(key.hash >> 32).unwrap_or(0) & self.mask;
        let shard = self.shards.get(idx).unwrap_or(&self.shards[0]);
        // A panic while holding a shard lock leaves only counters behind, which are
        // always consistent on their own, so a poisoned lock is safe to keep using.
        shard.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The in-memory store. Clones share state.
///
/// ```
/// use mcp_ratelimit::{Algorithm, Charge, MemoryStore, Quota, Timestamp};
///
/// let store = MemoryStore::new();
/// let q: Quota = "2/s".parse().unwrap();
/// let now = Timestamp::from_micros(1_000_000);
/// let c = Charge::new("user:alice", &q, Algorithm::Gcra, 1, now);
/// assert!(store.charge_now(&c).allowed);
/// assert!(store.charge_now(&c).allowed);
/// assert!(!store.charge_now(&c).allowed);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("cap_per_shard", &self.inner.cap_per_shard)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default sizing.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(MemoryStoreConfig::default())
    }

    /// A store with the given sizing.
    #[must_use]
    pub fn with_config(config: MemoryStoreConfig) -> Self {
        let shards = config.shards.clamp(1, 1 << 16).next_power_of_two();
        let cap_per_shard = config.max_keys.div_ceil(shards).max(1);
        let shard_vec = (0..shards)
            .map(|_| {
                Shard(Mutex::new(ShardMap {
                    gcra: HashTable::new(),
                    other: HashTable::new(),
                    writes: 0,
                }))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards: shard_vec,
                hasher: foldhash::fast::RandomState::default(),
                mask: shards - 1,
                cap_per_shard,
                sweep_every: config.sweep_every.max(1),
                expired: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> MemoryStoreStats {
        let keys = self
            .inner
            .shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum();
        MemoryStoreStats {
            keys,
            expired: self.inner.expired.load(Ordering::Relaxed),
            evicted: self.inner.evicted.load(Ordering::Relaxed),
        }
    }

    /// Removes every key idle at `now` from every shard.
    pub fn sweep(&self, now: Timestamp) {
        for s in &self.inner.shards {
            let mut shard = s.0.lock().unwrap_or_else(PoisonError::into_inner);
            self.sweep_shard(&mut shard, now.as_micros());
        }
    }

    fn sweep_shard(&self, shard: &mut ShardMap, now: u64) {
        let before = shard.len();
        shard.gcra.retain(|s| s.tat > now);
        shard.other.retain(|s| s.expires > now);
        shard.writes = 0;
        let gone = (before - shard.len()) as u64;
        self.inner.expired.fetch_add(gone, Ordering::Relaxed);
    }

    /// Counts a write and sweeps the shard when one is due.
    fn count_write(&self, shard: &mut ShardMap, now: u64) {
        shard.writes = shard.writes.saturating_add(1);
        if shard.writes >= self.inner.sweep_every {
            self.sweep_shard(shard, now);
        }
    }

    /// Makes room for one new key within the shard's cap.
    fn make_room(&self, shard: &mut ShardMap, now: u64) {
        if shard.len() < self.inner.cap_per_shard {
            return;
        }
        self.sweep_shard(shard, now);
        while shard.len() >= self.inner.cap_per_shard {
            // Evict the sampled key nearest to expiry: it forgets the least state.
            let gcra = shard
                .gcra
                .iter_buckets()
                .take(16)
                .filter_map(|i| shard.gcra.get_bucket(i).map(|s| (s.tat, i)))
                .min();
            let other = shard
                .other
                .iter_buckets()
                .take(16)
                .filter_map(|i| shard.other.get_bucket(i).map(|s| (s.expires, i)))
                .min();
            let removed = match (gcra, other) {
                (Some((g, i)), o) if o.is_none_or(|(e, _)| g <= e) => shard
                    .gcra
                    .get_bucket_entry(i)
                    .map(|e| {
                        e.remove();
                    })
                    .is_ok(),
                (_, Some((_, i))) => shard
                    .other
                    .get_bucket_entry(i)
                    .map(|e| {
                        e.remove();
                    })
                    .is_ok(),
                _ => false,
            };
            if !removed {
                break;
            }
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores `entry` under `key` in the general table, keeping the shard within its cap.
    fn put(&self, shard: &mut ShardMap, key: &Lookup<'_>, entry: Entry, now: u64) {
        self.count_write(shard, now);
        if let Some(slot) = shard.other.find_mut(key.hash, |s| key.matches(s)) {
            slot.set(entry);
            return;
        }
        self.make_room(shard, now);
        let inner = &self.inner;
        shard
            .other
            .insert_unique(key.hash, key.slot(entry), |s| s.key.hash(&inner.hasher));
    }

    /// Takes a charge synchronously: the fast path behind [`RateLimitStore::charge`].
    #[must_use]
    pub fn charge_now(&self, c: &Charge<'_>) -> StoreOutcome {
        let now = c.now.as_micros();
        let cost = u64::from(c.cost);
        let key = self.inner.lookup(c.key);
        let mut shard = self.inner.shard(&key);
        if let (Algorithm::Gcra, Probe::Short(words)) = (c.algorithm, &key.probe) {
            let gcra = Gcra::of(c.quota);
            // One probe for a known key: decide and update in place.
            if let Some(slot) = shard.gcra.find_mut(key.hash, |s| s.key == *words) {
                let (out, tat) = gcra.charge((slot.tat > now).then_some(slot.tat), now, cost);
                if let Some(tat) = tat {
                    slot.tat = tat;
                }
                return out.into();
            }
            let (out, tat) = gcra.charge(None, now, cost);
            if let Some(tat) = tat {
                self.count_write(&mut shard, now);
                self.make_room(&mut shard, now);
                let inner = &self.inner;
                let slot = TatSlot { tat, key: *words };
                shard
                    .gcra
                    .insert_unique(key.hash, slot, |s| hash_words(&inner.hasher, &s.key));
            }
            return out.into();
        }
        if let Some(slot) = shard.other.find_mut(key.hash, |s| key.matches(s)) {
            let live = (slot.expires > now).then(|| slot.entry());
            let (out, entry) = decide(c, now, cost, live);
            if let Some(entry) = entry {
                slot.set(entry);
            }
            return out;
        }
        let (out, entry) = decide(c, now, cost, None);
        if let Some(entry) = entry {
            self.put(&mut shard, &key, entry, now);
        }
        out
    }

    /// Gives back an allowed charge synchronously.
    pub fn refund_now(&self, c: &Charge<'_>, now: Timestamp) {
        let now = now.as_micros();
        let cost = u64::from(c.cost);
        let key = self.inner.lookup(c.key);
        let mut shard = self.inner.shard(&key);
        if let (Algorithm::Gcra, Probe::Short(words)) = (c.algorithm, &key.probe) {
            let Ok(mut found) = shard.gcra.find_entry(key.hash, |s| s.key == *words) else {
                return;
            };
            match Gcra::of(c.quota).refund(found.get().tat, now, cost) {
                Some(t) => found.get_mut().tat = t,
                None => {
                    found.remove();
                }
            }
            return;
        }
        let Ok(mut found) = shard.other.find_entry(key.hash, |s| key.matches(s)) else {
            return;
        };
        let slot = found.get_mut();
        match (c.algorithm, slot.key.kind()) {
            (Algorithm::Gcra, Kind::Gcra) => {
                match Gcra::of(c.quota).refund(slot.expires, now, cost) {
                    Some(t) => slot.expires = t,
                    None => {
                        found.remove();
                    }
                }
            }
            (Algorithm::SlidingWindow, Kind::Window) => {
                let w = Window::of(c.quota);
                let Some(s) = window_state(w, &slot.entry()) else {
                    return;
                };
                let s = w.refund(w.roll(Some(s), now), c.now.as_micros(), cost);
                slot.set(window_entry(w, &s));
            }
            _ => {}
        }
    }

    /// Increments a windowed counter synchronously.
    pub fn incr_counter_now(&self, key: &str, window: Duration, now: Timestamp) -> u64 {
        let now = now.as_micros();
        let key = self.inner.lookup(key);
        let mut shard = self.inner.shard(&key);
        let live = shard
            .other
            .find(key.hash, |s| key.matches(s))
            .filter(|s| s.expires > now && s.key.kind() == Kind::Counter);
        let entry = match live {
            Some(s) => Entry {
                kind: Kind::Counter,
                expires: s.expires,
                counts: s.counts.saturating_add(1),
            },
            None => Entry {
                kind: Kind::Counter,
                expires: now.saturating_add(duration_micros(window)),
                counts: 1,
            },
        };
        self.put(&mut shard, &key, entry, now);
        entry.counts
    }

    /// Sets a flag synchronously.
    pub fn set_flag_now(&self, key: &str, until: Timestamp, now: Timestamp) {
        let key = self.inner.lookup(key);
        let mut shard = self.inner.shard(&key);
        if until <= now {
            if let Ok(found) = shard.other.find_entry(key.hash, |s| key.matches(s)) {
                found.remove();
            }
            return;
        }
        let entry = Entry {
            kind: Kind::Flag,
            expires: until.as_micros(),
            counts: 0,
        };
        self.put(&mut shard, &key, entry, now.as_micros());
    }

    /// Reads a flag synchronously.
    #[must_use]
    pub fn get_flag_now(&self, key: &str, now: Timestamp) -> Option<Timestamp> {
        let key = self.inner.lookup(key);
        let shard = self.inner.shard(&key);
        shard
            .other
            .find(key.hash, |s| key.matches(s))
            .filter(|s| s.key.kind() == Kind::Flag && s.expires > now.as_micros())
            .map(|s| Timestamp::from_micros(s.expires))
    }

    /// Removes a key (whatever state it holds) synchronously.
    pub fn delete_now(&self, key: &str) {
        let key = self.inner.lookup(key);
        let mut shard = self.inner.shard(&key);
        if let Probe::Short(words) = &key.probe
            && let Ok(found) = shard.gcra.find_entry(key.hash, |s| s.key == *words)
        {
            found.remove();
        }
        if let Ok(found) = shard.other.find_entry(key.hash, |s| key.matches(s)) {
            found.remove();
        }
    }
}

/// One charge against the live state of its key: the outcome and the entry to store.
#[inline(always)]
fn decide(
    c: &Charge<'_>,
    now: u64,
    cost: u64,
    live: Option<Entry>,
) -> (StoreOutcome, Option<Entry>) {
    match c.algorithm {
        Algorithm::Gcra => {
            let tat = live.filter(|e| e.kind == Kind::Gcra).map(|e| e.expires);
            let (out, new_tat) = Gcra::of(c.quota).charge(tat, now, cost);
            let entry = new_tat.map(|t| Entry {
                kind: Kind::Gcra,
                expires: t,
                counts: 0,
            });
            (out.into(), entry)
        }
        Algorithm::SlidingWindow => {
            let w = Window::of(c.quota);
            let prev = live.as_ref().and_then(|e| window_state(w, e));
            let (out, s) = w.charge(prev, now, cost);
            let entry = out.allowed.then(|| window_entry(w, &s));
            (out.into(), entry)
        }
    }
}

impl RateLimitStore for MemoryStore {
    fn charge(
        &self,
        charge: &Charge<'_>,
    ) -> impl Future<Output = Result<StoreOutcome, StoreError>> + Send {
        std::future::ready(Ok(self.charge_now(charge)))
    }

    fn refund(
        &self,
        charge: &Charge<'_>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.refund_now(charge, now);
        std::future::ready(Ok(()))
    }

    fn incr_counter(
        &self,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        std::future::ready(Ok(self.incr_counter_now(key, window, now)))
    }

    fn set_flag(
        &self,
        key: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.set_flag_now(key, until, now);
        std::future::ready(Ok(()))
    }

    fn get_flag(
        &self,
        key: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        std::future::ready(Ok(self.get_flag_now(key, now)))
    }

    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.delete_now(key);
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;

    const T0: u64 = 1_700_000_000_000_000;

    #[test]
    fn idle_keys_are_swept() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            shards: 4,
            max_keys: 1_000,
            sweep_every: 1_000_000,
        });
        let q: Quota = "10/s".parse().unwrap();
        for i in 0..100 {
            let k = format!("k{i}");
            let c = Charge::new(&k, &q, Algorithm::Gcra, 1, Timestamp::from_micros(T0));
            assert!(store.charge_now(&c).allowed);
        }
        assert_eq!(store.stats().keys, 100);
        // One emission interval later every key is back to full and means nothing.
        store.sweep(Timestamp::from_micros(T0 + 100_000));
        let stats = store.stats();
        assert_eq!((stats.keys, stats.expired), (0, 100));
    }

    #[test]
    fn hard_cap_holds_and_evicts() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            shards: 2,
            max_keys: 50,
            sweep_every: 1_000_000,
        });
        let q: Quota = "1/h".parse().unwrap();
        for i in 0..500 {
            let k = format!("k{i}");
            let c = Charge::new(&k, &q, Algorithm::Gcra, 1, Timestamp::from_micros(T0 + i));
            assert!(store.charge_now(&c).allowed);
            assert!(store.stats().keys <= 50);
        }
        let stats = store.stats();
        assert_eq!(stats.keys + stats.evicted as usize, 500);
        assert!(stats.evicted >= 450);
    }

    #[test]
    fn counters_and_flags_expire() {
        let store = MemoryStore::new();
        let t = |us| Timestamp::from_micros(T0 + us);
        let w = Duration::from_secs(1);
        assert_eq!(store.incr_counter_now("c", w, t(0)), 1);
        assert_eq!(store.incr_counter_now("c", w, t(999_999)), 2);
        assert_eq!(
            store.incr_counter_now("c", w, t(1_000_000)),
            1,
            "window restarted"
        );
        store.set_flag_now("f", t(10), t(0));
        assert_eq!(store.get_flag_now("f", t(9)), Some(t(10)));
        assert_eq!(store.get_flag_now("f", t(10)), None);
        store.set_flag_now("f", t(10), t(0));
        store.delete_now("f");
        assert_eq!(store.get_flag_now("f", t(0)), None);
    }

    #[test]
    fn slots_stay_compact() {
        assert_eq!(size_of::<TatSlot>(), 32);
        assert_eq!(size_of::<Slot>(), 48);
    }

    #[test]
    fn words_are_the_bytes_and_the_length() {
        for n in 0..=SHORT {
            let key: Vec<u8> = (1..=n as u8).collect();
            let w = words(&key);
            let mut bytes = [0_u8; 24];
            for (i, word) in w.iter().enumerate() {
                bytes[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
            }
            assert_eq!(&bytes[..n], &key[..], "length {n}");
            assert!(
                bytes[n..23].iter().all(|&b| b == 0),
                "padding at length {n}"
            );
            assert_eq!(usize::from(bytes[23]), n);
        }
    }

    #[test]
    fn the_cap_holds_across_gcra_and_other_state() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            shards: 1,
            max_keys: 40,
            sweep_every: 1_000_000,
        });
        let q: Quota = "1/h".parse().unwrap();
        let long = "a key long enough to live in the general table";
        for i in 0..300_u64 {
            let now = Timestamp::from_micros(T0 + i);
            let k = format!("k{i}");
            match i % 3 {
                0 => {
                    let c = Charge::new(&k, &q, Algorithm::Gcra, 1, now);
                    assert!(store.charge_now(&c).allowed);
                }
                1 => {
                    let k = format!("{long}{i}");
                    let c = Charge::new(&k, &q, Algorithm::Gcra, 1, now);
                    assert!(store.charge_now(&c).allowed);
                }
                _ => {
                    assert_eq!(store.incr_counter_now(&k, Duration::from_secs(60), now), 1);
                }
            }
            assert!(store.stats().keys <= 40);
        }
        let stats = store.stats();
        assert_eq!(stats.keys + stats.evicted as usize, 300);
    }

    #[test]
    fn short_and_long_keys_are_distinct_and_exact() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            shards: 1,
            max_keys: 1_000,
            sweep_every: 1_000_000,
        });
        let q: Quota = "1/h".parse().unwrap();
        let now = Timestamp::from_micros(T0);
        // Lengths around the inline limit, prefixes of each other, and a trailing zero
        // byte (which looks like the padding of a shorter inline key).
        let mut keys: Vec<String> = (0..=SHORT + 3).map(|n| "k".repeat(n)).collect();
        keys.push(format!("{}\0", "k".repeat(SHORT - 1)));
        keys.push(format!("{}\0", "k".repeat(SHORT)));
        keys.push("x".repeat(200));
        for k in &keys {
            let c = Charge::new(k, &q, Algorithm::Gcra, 1, now);
            assert!(store.charge_now(&c).allowed, "first charge of {k:?}");
        }
        assert_eq!(store.stats().keys, keys.len());
        for k in &keys {
            let c = Charge::new(k, &q, Algorithm::Gcra, 1, now);
            assert!(!store.charge_now(&c).allowed, "second charge of {k:?}");
        }
        for k in &keys {
            store.delete_now(k);
        }
        assert_eq!(store.stats().keys, 0);
    }

    #[test]
    fn a_key_changing_kind_starts_fresh() {
        let store = MemoryStore::new();
        let q: Quota = "1/h".parse().unwrap();
        let t = |us| Timestamp::from_micros(T0 + us);
        for key in ["short", "a key long enough to live on the heap, not inline"] {
            assert_eq!(
                store.incr_counter_now(key, Duration::from_secs(60), t(0)),
                1
            );
            let c = Charge::new(key, &q, Algorithm::Gcra, 1, t(1));
            assert!(store.charge_now(&c).allowed, "a counter is no GCRA state");
            assert!(!store.charge_now(&c).allowed);
            assert_eq!(store.get_flag_now(key, t(2)), None, "GCRA state is no flag");
            store.set_flag_now(key, t(100), t(2));
            assert_eq!(store.get_flag_now(key, t(3)), Some(t(100)));
            assert_eq!(
                store.incr_counter_now(key, Duration::from_secs(60), t(4)),
                1
            );
            store.set_flag_now(key, t(4), t(5));
            assert_eq!(store.get_flag_now(key, t(5)), None, "past flags delete");
        }
    }

    #[test]
    fn a_denied_charge_changes_nothing() {
        let store = MemoryStore::new();
        let q: Quota = "2/s".parse().unwrap();
        let now = Timestamp::from_micros(T0);
        for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
            let key = format!("{algorithm:?}");
            let big = Charge::new(&key, &q, algorithm, 3, now);
            assert!(!store.charge_now(&big).allowed);
            let one = Charge::new(&key, &q, algorithm, 2, now);
            assert!(store.charge_now(&one).allowed, "{algorithm:?}");
            store.refund_now(&one, now);
            assert!(
                store.charge_now(&one).allowed,
                "refund restored {algorithm:?}"
            );
        }
    }
}
