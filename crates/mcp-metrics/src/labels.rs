//! Bounded label values: a configured or learned set of tenants, tools or pools, with `other`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The label value every value outside the allowed or learned set is folded into.
pub const OTHER: &str = "other";

/// The longest label value kept as is; longer values are folded into [`OTHER`].
pub const MAX_LABEL_VALUE_LEN: usize = 64;

/// Which values one label (tenant, tool, pool) may take.
///
/// The label has at most `allowed.len() + learn_up_to` distinct values plus [`OTHER`]:
/// values in `allowed` are always kept, the first `learn_up_to` other distinct values seen
/// are learned, and every later new value is reported as [`OTHER`]. A value is also folded
/// into [`OTHER`] when it is empty, longer than [`MAX_LABEL_VALUE_LEN`] bytes, or contains a
/// character outside `[A-Za-z0-9_.:@/+-]` (so a stray token, URL or e-mail-like free text is not
/// exported as a series). Whatever the limit, a label takes at most 2^32 - 3 values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelLimit {
    allowed: Vec<String>,
    learn_up_to: usize,
}

impl LabelLimit {
    /// Only these values; everything else is [`OTHER`].
    pub fn fixed<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed: values.into_iter().map(Into::into).collect(),
            learn_up_to: 0,
        }
    }

    /// The first `max` distinct values seen are kept, then everything new is [`OTHER`].
    pub fn learned(max: usize) -> Self {
        Self {
            allowed: Vec::new(),
            learn_up_to: max,
        }
    }

    /// Adds room for `max` learned values on top of the allowed ones.
    #[must_use]
    pub fn and_learn(mut self, max: usize) -> Self {
        self.learn_up_to = max;
        self
    }

    /// The largest number of distinct values, [`OTHER`] not counted.
    pub fn cap(&self) -> usize {
        self.allowed.len().saturating_add(self.learn_up_to)
    }
}

/// A value is exported only if it is short and made of "identifier" characters.
fn is_exportable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LABEL_VALUE_LEN
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'+' | b'-')
        })
}

/// One value a bounded label can take, with a dense id and the data cached for it (metric
/// handles, sketches). Never removed once created, so its id and data stay valid.
#[derive(Debug)]
pub(crate) struct LabelValue<T> {
    id: u32,
    /// The value's hash in its [`BoundedLabels`] (compared before the string).
    hash: u64,
    value: Arc<str>,
    data: T,
}

impl<T> LabelValue<T> {
    fn new(id: usize, hash: u64, value: &str) -> Self
    where
        T: Default,
    {
        Self {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            hash,
            value: Arc::from(value),
            data: T::default(),
        }
    }

    /// The dense id: 0 for the empty value, 1 for [`OTHER`], then allowed and learned values in
    /// the order they were configured or first seen.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The exported label value.
    pub(crate) fn value(&self) -> &Arc<str> {
        &self.value
    }

    /// What is cached for this value.
    pub(crate) fn data(&self) -> &T {
        &self.data
    }
}

/// The hash of one string's bytes: a single hasher round, where `Hash for str` takes two
/// (the bytes, then a terminator that only matters when several values are hashed together).
pub(crate) fn hash_str(hasher: &impl BuildHasher, s: &str) -> u64 {
    let mut state = hasher.build_hasher();
    state.write(s.as_bytes());
    state.finish()
}

/// `a == b`, without a call into the C library for the short strings label values usually
/// are: up to 16 bytes are compared as two (possibly overlapping) words.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> Option<[u8; N]> {
        s.get(at..at + N)?.try_into().ok()
    }
    fn words<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        let last = a.len() - N;
        match (
            word::<N>(a, 0),
            word::<N>(b, 0),
            word::<N>(a, last),
            word::<N>(b, last),
        ) {
            (Some(a0), Some(b0), Some(a1), Some(b1)) => a0 == b0 && a1 == b1,
            _ => a == b,
        }
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0 => true,
        // The first, middle and last bytes are all the bytes.
        n @ 1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..=7 => words::<4>(a, b),
        8..=16 => words::<8>(a, b),
        _ => a == b,
    }
}

/// The most slots of the lock-free table (1 MiB of slots); values beyond half of it go to a map.
const MAX_TABLE_SLOTS: usize = 1 << 16;

/// Ids are `u32`: the empty value, [`OTHER`] and at most this many allowed and learned values.
const MAX_VALUES: usize = u32::MAX as usize - 2;

/// Values beyond the table are kept by id in chunks of this many, allocated as they fill.
const OVERFLOW_CHUNK: usize = 1 << 16;

/// Write-once cells of label values, indexed by id.
type Cells<T> = Box<[OnceLock<Arc<LabelValue<T>>>]>;

/// The runtime side of a [`LabelLimit`]: maps a raw value to the label value to export, and
/// keeps per-value data `T` (so hot paths find their metric handles without hashing label sets).
///
/// Values live in an open-addressing table of write-once slots, at most half full: a lookup
/// hashes the raw value once and reads slots without taking a lock. Values are only ever
/// added (under `learn`), so an empty slot ends a probe. Only when the label may take more
/// values than fit the table are the rest found through `overflow`, a map behind a lock.
///
/// Every value is also kept by its id, so that a request can carry ids and read its values
/// back when it is recorded ([`Self::by_id`]): lookups hand out references, and nothing that
/// every request shares (such as a reference count) is written to find a value.
#[derive(Debug)]
pub(crate) struct BoundedLabels<T = ()> {
    table: Box<[OnceLock<Arc<LabelValue<T>>>]>,
    /// The values in the table, by id from 2 on (ids are given in the order values are added,
    /// and the table is filled first).
    table_by_id: Cells<T>,
    /// The values beyond the table, by id, in chunks of [`OVERFLOW_CHUNK`].
    overflow_by_id: Box<[OnceLock<Cells<T>>]>,
    /// The ids of the values beyond the table, by value.
    overflow: RwLock<HashMap<Arc<str>, u32, foldhash::fast::RandomState>>,
    has_overflow: AtomicBool,
    hasher: foldhash::fast::RandomState,
    /// Serialises learning; holds how many values the set has.
    learn: Mutex<usize>,
    allowed_len: usize,
    learned_len: AtomicUsize,
    learn_up_to: usize,
    other: LabelValue<T>,
    empty: LabelValue<T>,
}

impl<T: Default> BoundedLabels<T> {
    pub(crate) fn new(limit: &LabelLimit) -> Self {
        let values = limit
            .allowed
            .len()
            .saturating_add(limit.learn_up_to)
            .min(MAX_VALUES);
        let slots = values
            .saturating_mul(2)
            .clamp(8, MAX_TABLE_SLOTS)
            .next_power_of_two();
        let in_table = values.min(slots / 2);
        let hasher = foldhash::fast::RandomState::default();
        let mut labels = Self {
            table: (0..slots).map(|_| OnceLock::new()).collect(),
            table_by_id: (0..in_table).map(|_| OnceLock::new()).collect(),
            overflow_by_id: (0..(values - in_table).div_ceil(OVERFLOW_CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            overflow: RwLock::new(HashMap::with_hasher(hasher.clone())),
            has_overflow: AtomicBool::new(false),
            learn: Mutex::new(0),
            allowed_len: 0,
            learned_len: AtomicUsize::new(0),
            learn_up_to: 0,
            empty: LabelValue::new(0, hash_str(&hasher, ""), ""),
            other: LabelValue::new(1, hash_str(&hasher, OTHER), OTHER),
            hasher,
        };
        for v in &limit.allowed {
            if labels.allowed_len < values
                && is_exportable(v)
                && v.as_str() != OTHER
                && labels.find(v).is_none()
            {
                labels.add(labels.allowed_len, v);
                labels.allowed_len += 1;
            }
        }
        labels.learn_up_to = limit.learn_up_to.min(values - labels.allowed_len);
        *labels.learn.get_mut().unwrap_or_else(|e| e.into_inner()) = labels.allowed_len;
        labels
    }

    /// The label value for `raw`: itself when allowed or learned, [`OTHER`] otherwise.
    #[inline(always)]
    pub(crate) fn resolve(&self, raw: &str) -> &LabelValue<T> {
        match self.find(raw) {
            Some(v) => v,
            None => self.resolve_new(raw),
        }
    }

    /// [`Self::resolve`] of a value not (yet) in the set: learns it if there is room.
    #[cold]
    fn resolve_new(&self, raw: &str) -> &LabelValue<T> {
        if self.learned_len.load(Ordering::Relaxed) >= self.learn_up_to
            || !is_exportable(raw)
            || raw == OTHER
        {
            return &self.other;
        }
        // Only exportable values are ever learned.
        let mut added = self.learn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.find(raw) {
            return v;
        }
        let learned = self.learned_len.load(Ordering::Relaxed);
        if learned >= self.learn_up_to {
            return &self.other;
        }
        let value = self.add(*added, raw);
        *added += 1;
        self.learned_len.store(learned + 1, Ordering::Relaxed);
        value
    }

    /// Looks `raw` up among the allowed and learned values, without taking a lock unless the
    /// label has overflowed its table.
    #[inline(always)]
    fn find(&self, raw: &str) -> Option<&LabelValue<T>> {
        let hash = hash_str(&self.hasher, raw);
        let mask = self.table.len() - 1;
        let mut i = hash as usize & mask;
        for _ in 0..self.table.len() {
            // An empty slot ends the probe: values are never removed.
            let Some(v) = self.table.get(i).and_then(OnceLock::get) else {
                break;
            };
            if v.hash == hash && same_bytes(v.value.as_bytes(), raw.as_bytes()) {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
        if !self.has_overflow.load(Ordering::Acquire) {
            return None;
        }
        self.find_in_overflow(raw)
    }

    #[cold]
    fn find_in_overflow(&self, raw: &str) -> Option<&LabelValue<T>> {
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is always in a consistent state, so keep using it.
        let id = *self
            .overflow
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(raw)?;
        Some(self.by_id(id))
    }

    /// Adds `raw` as the `index`-th value (id `index + 2`); the caller holds `learn`, or builds
    /// the set, and checked that `raw` is not there yet and that there is room.
    fn add(&self, index: usize, raw: &str) -> &LabelValue<T> {
        let hash = hash_str(&self.hasher, raw);
        let id = index + 2;
        let value = Arc::new(LabelValue::new(id, hash, raw));
        // Readable by id before the value can be found (and its id handed out). Each cell is
        // set once: `index` only grows.
        if let Some(cell) = self.table_by_id.get(index) {
            cell.get_or_init(|| Arc::clone(&value));
            let mask = self.table.len() - 1;
            let mut i = hash as usize & mask;
            // The table is at most half full, so a free slot is found.
            for _ in 0..self.table.len() {
                if let Some(slot) = self.table.get(i)
                    && slot.set(Arc::clone(&value)).is_ok()
                {
                    break;
                }
                i = (i + 1) & mask;
            }
            return cell.get().map_or(&self.other, |v| v);
        }
        let beyond = index - self.table_by_id.len();
        let Some(chunk) = self.overflow_by_id.get(beyond / OVERFLOW_CHUNK) else {
            return &self.other;
        };
        let chunk = chunk.get_or_init(|| (0..OVERFLOW_CHUNK).map(|_| OnceLock::new()).collect());
        let Some(cell) = chunk.get(beyond % OVERFLOW_CHUNK) else {
            return &self.other;
        };
        cell.get_or_init(|| Arc::clone(&value));
        let mut overflow = self.overflow.write().unwrap_or_else(|e| e.into_inner());
        overflow.insert(Arc::clone(&value.value), value.id);
        self.has_overflow.store(true, Ordering::Release);
        cell.get().map_or(&self.other, |v| v)
    }

    /// Like [`Self::resolve`], but an absent value is the empty label value.
    #[inline(always)]
    pub(crate) fn resolve_opt(&self, raw: Option<&str>) -> &LabelValue<T> {
        match raw {
            Some(v) => self.resolve(v),
            None => &self.empty,
        }
    }

    /// The exported label value for `raw` (see [`Self::resolve_opt`]).
    pub(crate) fn value_opt(&self, raw: Option<&str>) -> Arc<str> {
        Arc::clone(self.resolve_opt(raw).value())
    }
}

impl<T> BoundedLabels<T> {
    /// How many distinct values (other than [`OTHER`] and empty) this label can currently take.
    pub(crate) fn len(&self) -> usize {
        self.allowed_len + self.learned_len.load(Ordering::Relaxed)
    }

    /// The value with `id`, as handed out by [`LabelValue::id`] (an id not handed out reads as
    /// [`OTHER`]).
    #[inline(always)]
    pub(crate) fn by_id(&self, id: u32) -> &LabelValue<T> {
        let index = (id as usize).wrapping_sub(2);
        match self.table_by_id.get(index).and_then(OnceLock::get) {
            Some(value) => value,
            None => self.by_id_beyond_table(id),
        }
    }

    #[cold]
    fn by_id_beyond_table(&self, id: u32) -> &LabelValue<T> {
        if id == 0 {
            return &self.empty;
        }
        let beyond = (id as usize)
            .wrapping_sub(2)
            .wrapping_sub(self.table_by_id.len());
        self.overflow_by_id
            .get(beyond / OVERFLOW_CHUNK)
            .and_then(OnceLock::get)
            .and_then(|chunk| chunk.get(beyond % OVERFLOW_CHUNK))
            .and_then(OnceLock::get)
            .map_or(&self.other, |v| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    impl BoundedLabels {
        fn value(&self, raw: &str) -> Arc<str> {
            Arc::clone(self.resolve(raw).value())
        }
    }

    #[test]
    fn fixed_values_pass_and_others_fold() {
        let labels = BoundedLabels::new(&LabelLimit::fixed(["acme", "globex"]));
        assert_eq!(&*labels.value("acme"), "acme");
        assert_eq!(&*labels.value("initech"), OTHER);
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn learned_values_stop_at_the_cap() {
        let labels = BoundedLabels::new(&LabelLimit::learned(2));
        assert_eq!(&*labels.value("a"), "a");
        assert_eq!(&*labels.value("b"), "b");
        assert_eq!(&*labels.value("c"), OTHER);
        assert_eq!(&*labels.value("a"), "a");
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn fixed_plus_learned() {
        let labels = BoundedLabels::new(&LabelLimit::fixed(["acme"]).and_learn(1));
        assert_eq!(&*labels.value("x"), "x");
        assert_eq!(&*labels.value("acme"), "acme");
        assert_eq!(&*labels.value("y"), OTHER);
        assert_eq!(LabelLimit::fixed(["acme"]).and_learn(1).cap(), 2);
    }

    #[test]
    fn unexportable_values_fold_without_using_a_slot() {
        let labels = BoundedLabels::new(&LabelLimit::learned(1));
        for bad in [
            "",
            "has space",
            "quote\"",
            "line\nbreak",
            &"x".repeat(65),
            OTHER,
        ] {
            assert_eq!(&*labels.value(bad), OTHER, "{bad:?}");
        }
        assert_eq!(&*labels.value("ok"), "ok");
        assert_eq!(&*labels.value_opt(None), "");
    }

    #[test]
    fn ids_are_dense_and_unique() {
        let labels =
            BoundedLabels::<()>::new(&LabelLimit::fixed(["acme", "acme", "b"]).and_learn(2));
        let ids: Vec<u32> = [
            None,
            Some("zzz-over"),
            Some("acme"),
            Some("b"),
            Some("x"),
            Some("y"),
        ]
        .iter()
        .map(|v| labels.resolve_opt(*v).id())
        .collect();
        // `zzz-over` is learned first (id 4), so `y` overflows into `other` (id 1).
        assert_eq!(ids, [0, 4, 2, 3, 5, 1]);
        // Each id reads back its value; an id never handed out reads as `other`.
        for (id, value) in [(0, ""), (1, OTHER), (2, "acme"), (3, "b"), (4, "zzz-over")] {
            assert_eq!(&**labels.by_id(id).value(), value);
        }
        assert_eq!(&**labels.by_id(6).value(), OTHER);
        assert_eq!(&**labels.by_id(u32::MAX).value(), OTHER);
        assert_eq!(labels.resolve("x").id(), 5);
        assert_eq!(labels.len(), 4);
    }

    #[test]
    fn values_beyond_the_lock_free_table_are_kept_in_the_overflow_map() {
        let n = MAX_TABLE_SLOTS / 2 + 1_000;
        let labels = BoundedLabels::<()>::new(&LabelLimit::learned(n));
        let ids: Vec<u32> = (0..n)
            .map(|i| labels.resolve(&format!("v{i}")).id())
            .collect();
        assert_eq!(ids, (2..n as u32 + 2).collect::<Vec<_>>());
        assert!(labels.has_overflow.load(Ordering::Relaxed));
        assert_eq!(&*labels.value("one-too-many"), OTHER);
        // Values from the table and from the overflow map are found again, by value and by id.
        for i in [0, n / 2, n - 1] {
            let id = i as u32 + 2;
            assert_eq!(labels.resolve(&format!("v{i}")).id(), id);
            assert_eq!(&**labels.by_id(id).value(), format!("v{i}"));
        }
        assert_eq!(labels.len(), n);
    }

    #[test]
    fn threads_learning_at_once_agree_on_ids() {
        let labels = BoundedLabels::<()>::new(&LabelLimit::learned(50));
        let seen: Vec<Vec<(String, u32)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let labels = &labels;
                    s.spawn(move || {
                        (0..80)
                            .map(|i| {
                                let v = format!("v{}", (i * 7 + t * 13) % 80);
                                let id = labels.resolve(&v).id();
                                (v, id)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids = HashMap::new();
        for (v, id) in seen.into_iter().flatten() {
            assert_eq!(*ids.entry(v).or_insert(id), id, "one value, one id");
        }
        let learned: HashSet<u32> = ids.values().copied().filter(|id| *id != 1).collect();
        assert_eq!(learned.len(), 50);
        assert_eq!(labels.len(), 50);
    }

    proptest! {
        #[test]
        fn same_bytes_is_equality(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            prop_assert_eq!(same_bytes(&a, &b), a == b);
            prop_assert!(same_bytes(&a, &a));
            let mut c = a.clone();
            for i in 0..c.len() {
                c[i] ^= 1;
                prop_assert!(!same_bytes(&a, &c), "differs at {}", i);
                c[i] ^= 1;
            }
        }

        #[test]
        fn any_number_of_distinct_values_yields_at_most_cap_plus_one(
            cap in 0usize..20,
            values in proptest::collection::vec(".{0,12}", 0..200),
        ) {
            let labels = BoundedLabels::new(&LabelLimit::learned(cap));
            let seen: HashSet<String> = values.iter().map(|v| labels.value(v).to_string()).collect();
            prop_assert!(seen.len() <= cap + 1, "{} values for cap {}", seen.len(), cap);
            prop_assert!(labels.len() <= cap);
        }
    }
}
