//! Bounded label values: a configured or learned set of tenants, tools or pools, with `other`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

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
/// exported as a series).
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
    value: Arc<str>,
    data: T,
}

impl<T> LabelValue<T> {
    fn new(id: usize, value: &str) -> Self
    where
        T: Default,
    {
        Self {
            id: u32::try_from(id).unwrap_or(u32::MAX),
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

type ValueMap<T> = HashMap<Arc<str>, Arc<LabelValue<T>>, foldhash::fast::RandomState>;

/// The runtime side of a [`LabelLimit`]: maps a raw value to the label value to export, and
/// keeps per-value data `T` (so hot paths find their metric handles without hashing label sets).
#[derive(Debug)]
pub(crate) struct BoundedLabels<T = ()> {
    allowed: ValueMap<T>,
    learned: RwLock<ValueMap<T>>,
    learned_len: AtomicUsize,
    learn_up_to: usize,
    other: Arc<LabelValue<T>>,
    empty: Arc<LabelValue<T>>,
}

impl<T: Default> BoundedLabels<T> {
    pub(crate) fn new(limit: &LabelLimit) -> Self {
        let mut allowed = ValueMap::default();
        for v in &limit.allowed {
            if is_exportable(v) && v.as_str() != OTHER && !allowed.contains_key(v.as_str()) {
                let value = Arc::new(LabelValue::new(allowed.len() + 2, v));
                allowed.insert(Arc::clone(&value.value), value);
            }
        }
        Self {
            allowed,
            learned: RwLock::new(HashMap::with_capacity_and_hasher(
                limit.learn_up_to.min(1024),
                foldhash::fast::RandomState::default(),
            )),
            learned_len: AtomicUsize::new(0),
            learn_up_to: limit.learn_up_to,
            empty: Arc::new(LabelValue::new(0, "")),
            other: Arc::new(LabelValue::new(1, OTHER)),
        }
    }

    /// The label value for `raw`: itself when allowed or learned, [`OTHER`] otherwise.
    pub(crate) fn resolve(&self, raw: &str) -> Arc<LabelValue<T>> {
        if let Some(v) = self.allowed.get(raw) {
            return Arc::clone(v);
        }
        if self.learn_up_to == 0 {
            return Arc::clone(&self.other);
        }
        // A poisoned lock only means another thread panicked while holding it; the set itself
        // is always in a consistent state, so keep using it.
        {
            let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = learned.get(raw) {
                // Only exportable values are ever learned.
                return Arc::clone(v);
            }
        }
        if self.learned_len.load(Ordering::Relaxed) >= self.learn_up_to
            || !is_exportable(raw)
            || raw == OTHER
        {
            return Arc::clone(&self.other);
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = learned.get(raw) {
            return Arc::clone(v);
        }
        if learned.len() >= self.learn_up_to {
            return Arc::clone(&self.other);
        }
        let value = Arc::new(LabelValue::new(self.allowed.len() + learned.len() + 2, raw));
        learned.insert(Arc::clone(&value.value), Arc::clone(&value));
        self.learned_len.store(learned.len(), Ordering::Relaxed);
        value
    }

    /// Like [`Self::resolve`], but an absent value is the empty label value.
    pub(crate) fn resolve_opt(&self, raw: Option<&str>) -> Arc<LabelValue<T>> {
        match raw {
            Some(v) => self.resolve(v),
            None => Arc::clone(&self.empty),
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
        self.allowed.len() + self.learned_len.load(Ordering::Relaxed)
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
        assert_eq!(labels.resolve("x").id(), 5);
        assert_eq!(labels.len(), 4);
    }

    proptest! {
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
