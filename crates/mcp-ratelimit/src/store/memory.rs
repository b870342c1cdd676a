//! The in-process store: sharded hash maps, idle keys evicted, a hard cap on keys.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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

#[derive(Debug, Clone, Copy)]
enum State {
    Gcra(u64),
    /// Window counts; the window's start is `expires - 2 x window`, which keeps an entry
    /// at 24 bytes (small entries keep large key sets in cache).
    Window {
        prev: u32,
        cur: u32,
    },
    Counter(u64),
    Flag(u64),
}

fn window_entry(w: Window, s: &WindowState) -> Entry {
    let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Entry {
        state: State::Window {
            prev: narrow(s.prev),
            cur: narrow(s.cur),
        },
        expires: w.expires_at(s),
    }
}

fn window_state(w: Window, e: &Entry) -> Option<WindowState> {
    match e.state {
        State::Window { prev, cur } => Some(WindowState {
            start: e.expires.saturating_sub(2 * w.window),
            prev: u64::from(prev),
            cur: u64::from(cur),
        }),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// Microseconds; the entry means nothing from this time on.
    expires: u64,
}

#[derive(Debug)]
struct Shard {
    map: HashMap<Box<str>, Entry, foldhash::fast::RandomState>,
    writes: u32,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Per-store random seed of the shard hash.
    seed: u64,
    shift: u32,
    cap_per_shard: usize,
    sweep_every: u32,
    expired: AtomicU64,
    evicted: AtomicU64,
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
        let hasher = foldhash::fast::RandomState::default();
        let seed = hasher.hash_one(0x5eed_u64);
        let cap_per_shard = config.max_keys.div_ceil(shards).max(1);
        let shard_vec = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::with_hasher(hasher.clone()),
                    writes: 0,
                })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards: shard_vec,
                seed,
                shift: 64 - shards.trailing_zeros(),
                cap_per_shard,
                sweep_every: config.sweep_every.max(1),
                expired: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let idx = if self.inner.shift >= 64 {
            0
        } else {
            let h = shard_hash(self.inner.seed, key.as_bytes());
            usize::try_from(h >> self.inner.shift).unwrap_or(0)
        };
        let shard = self.inner.shards.get(idx).unwrap_or(&self.inner.shards[0]);
        // A panic while holding a shard lock leaves only counters behind, which are
        // always consistent on their own, so a poisoned lock is safe to keep using.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> MemoryStoreStats {
        let keys = self
            .inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
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
            let mut shard = s.lock().unwrap_or_else(PoisonError::into_inner);
            self.sweep_shard(&mut shard, now.as_micros());
        }
    }

    fn sweep_shard(&self, shard: &mut Shard, now: u64) {
        let before = shard.map.len();
        shard.map.retain(|_, e| e.expires > now);
        shard.writes = 0;
        let gone = (before - shard.map.len()) as u64;
        self.inner.expired.fetch_add(gone, Ordering::Relaxed);
    }

    /// Stores `entry` under `key`, keeping the shard within its cap.
    fn put(&self, shard: &mut Shard, key: &str, entry: Entry, now: u64) {
        shard.writes = shard.writes.saturating_add(1);
        if shard.writes >= self.inner.sweep_every {
            self.sweep_shard(shard, now);
        }
        if let Some(e) = shard.map.get_mut(key) {
            *e = entry;
            return;
        }
        if shard.map.len() >= self.inner.cap_per_shard {
            self.sweep_shard(shard, now);
            while shard.map.len() >= self.inner.cap_per_shard {
                // Evict the sampled key nearest to expiry: it forgets the least state.
                let victim = shard
                    .map
                    .iter()
                    .take(16)
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                let Some(victim) = victim else { break };
                shard.map.remove(&victim);
                self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        shard.map.insert(key.into(), entry);
    }

    /// Takes a charge synchronously: the fast path behind [`RateLimitStore::charge`].
    #[must_use]
    pub fn charge_now(&self, c: &Charge<'_>) -> StoreOutcome {
        let now = c.now.as_micros();
        let cost = u64::from(c.cost);
        let mut shard = self.shard(c.key);
        // One lookup for a known key: decide and update in place.
        if let Some(e) = shard.map.get_mut(c.key) {
            let live = (e.expires > now).then_some(*e);
            let (out, entry) = decide(c, now, cost, live);
            if let Some(entry) = entry {
                *e = entry;
            }
            return out;
        }
        let (out, entry) = decide(c, now, cost, None);
        if let Some(entry) = entry {
            self.put(&mut shard, c.key, entry, now);
        }
        out
    }

    /// Gives back an allowed charge synchronously.
    pub fn refund_now(&self, c: &Charge<'_>, now: Timestamp) {
        let now = now.as_micros();
        let cost = u64::from(c.cost);
        let mut shard = self.shard(c.key);
        let Some(entry) = shard.map.get_mut(c.key) else {
            return;
        };
        match (c.algorithm, entry.state) {
            (Algorithm::Gcra, State::Gcra(tat)) => match Gcra::of(c.quota).refund(tat, now, cost) {
                Some(t) => {
                    *entry = Entry {
                        state: State::Gcra(t),
                        expires: t,
                    };
                }
                None => {
                    shard.map.remove(c.key);
                }
            },
            (Algorithm::SlidingWindow, State::Window { .. }) => {
                let w = Window::of(c.quota);
                let Some(s) = window_state(w, entry) else {
                    return;
                };
                let s = w.refund(w.roll(Some(s), now), c.now.as_micros(), cost);
                *entry = window_entry(w, &s);
            }
            _ => {}
        }
    }

    /// Increments a windowed counter synchronously.
    pub fn incr_counter_now(&self, key: &str, window: Duration, now: Timestamp) -> u64 {
        let now = now.as_micros();
        let mut shard = self.shard(key);
        let live = shard.map.get(key).filter(|e| e.expires > now).copied();
        let entry = match live {
            Some(Entry {
                state: State::Counter(n),
                expires,
            }) => Entry {
                state: State::Counter(n.saturating_add(1)),
                expires,
            },
            _ => Entry {
                state: State::Counter(1),
                expires: now.saturating_add(duration_micros(window)),
            },
        };
        self.put(&mut shard, key, entry, now);
        match entry.state {
            State::Counter(n) => n,
            _ => 1,
        }
    }

    /// Sets a flag synchronously.
    pub fn set_flag_now(&self, key: &str, until: Timestamp, now: Timestamp) {
        let mut shard = self.shard(key);
        if until <= now {
            shard.map.remove(key);
            return;
        }
        let entry = Entry {
            state: State::Flag(until.as_micros()),
            expires: until.as_micros(),
        };
        self.put(&mut shard, key, entry, now.as_micros());
    }

    /// Reads a flag synchronously.
    #[must_use]
    pub fn get_flag_now(&self, key: &str, now: Timestamp) -> Option<Timestamp> {
        let shard = self.shard(key);
        match shard.map.get(key) {
            Some(Entry {
                state: State::Flag(until),
                expires,
            }) if *expires > now.as_micros() => Some(Timestamp::from_micros(*until)),
            _ => None,
        }
    }

    /// Removes a key synchronously.
    pub fn delete_now(&self, key: &str) {
        self.shard(key).map.remove(key);
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
            let tat = match live {
                Some(Entry {
                    state: State::Gcra(t),
                    ..
                }) => Some(t),
                _ => None,
            };
            let (out, new_tat) = Gcra::of(c.quota).charge(tat, now, cost);
            let entry = new_tat.map(|t| Entry {
                state: State::Gcra(t),
                expires: t,
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

/// A fast multiply-rotate hash that only picks the shard. Shard choice needs no flooding
/// resistance: each shard's map hashes keys with foldhash and a random per-store seed
/// (HashDoS-resistant), so a crafted key set can at worst crowd one shard's lock, never
/// degrade a map.
fn shard_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let word = |b: &[u8]| -> u64 {
        let mut w = 0_u64;
        for (i, &x) in b.iter().enumerate().take(8) {
            w |= u64::from(x) << (8 * i);
        }
        w
    };
    let mut h = seed ^ (bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ word(c)).wrapping_mul(K);
    }
    h = (h.rotate_left(5) ^ word(chunks.remainder())).wrapping_mul(K);
    h ^ (h >> 29)
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
