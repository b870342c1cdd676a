//! Bounded label values: a configured or learned set of tenants, tools or pools, with `other`.

use std::collections::HashSet;
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

/// The runtime side of a [`LabelLimit`]: maps a raw value to the label value to export.
#[derive(Debug)]
pub(crate) struct BoundedLabels {
    allowed: HashSet<Arc<str>>,
    learned: RwLock<HashSet<Arc<str>>>,
    learned_len: AtomicUsize,
    learn_up_to: usize,
    other: Arc<str>,
    empty: Arc<str>,
}

impl BoundedLabels {
    pub(crate) fn new(limit: &LabelLimit) -> Self {
        let allowed = limit
            .allowed
            .iter()
            .filter(|v| is_exportable(v) && v.as_str() != OTHER)
            .map(|v| Arc::<str>::from(v.as_str()))
            .collect();
        Self {
            allowed,
            learned: RwLock::new(HashSet::with_capacity(limit.learn_up_to.min(1024))),
            learned_len: AtomicUsize::new(0),
            learn_up_to: limit.learn_up_to,
            other: Arc::from(OTHER),
            empty: Arc::from(""),
        }
    }

    /// The label value for `raw`: itself when allowed or learned, [`OTHER`] otherwise.
    pub(crate) fn resolve(&self, raw: &str) -> Arc<str> {
        if let Some(v) = self.allowed.get(raw) {
            return Arc::clone(v);
        }
        if self.learn_up_to == 0 || !is_exportable(raw) || raw == OTHER {
            return Arc::clone(&self.other);
        }
        // A poisoned lock only means another thread panicked while holding it; the set itself
        // is always in a consistent state, so keep using it.
        {
            let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = learned.get(raw) {
                return Arc::clone(v);
            }
        }
        if self.learned_len.load(Ordering::Relaxed) >= self.learn_up_to {
            return Arc::clone(&self.other);
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = learned.get(raw) {
            return Arc::clone(v);
        }
        if learned.len() >= self.learn_up_to {
            return Arc::clone(&self.other);
        }
        let value: Arc<str> = Arc::from(raw);
        learned.insert(Arc::clone(&value));
        self.learned_len.store(learned.len(), Ordering::Relaxed);
        value
    }

    /// Like [`Self::resolve`], but an absent value is the empty label value.
    pub(crate) fn resolve_opt(&self, raw: Option<&str>) -> Arc<str> {
        match raw {
            Some(v) => self.resolve(v),
            None => Arc::clone(&self.empty),
        }
    }

    /// How many distinct values (other than [`OTHER`] and empty) this label can currently take.
    pub(crate) fn len(&self) -> usize {
        self.allowed.len() + self.learned_len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_values_pass_and_others_fold() {
        let labels = BoundedLabels::new(&LabelLimit::fixed(["acme", "globex"]));
        assert_eq!(&*labels.resolve("acme"), "acme");
        assert_eq!(&*labels.resolve("initech"), OTHER);
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn learned_values_stop_at_the_cap() {
        let labels = BoundedLabels::new(&LabelLimit::learned(2));
        assert_eq!(&*labels.resolve("a"), "a");
        assert_eq!(&*labels.resolve("b"), "b");
        assert_eq!(&*labels.resolve("c"), OTHER);
        assert_eq!(&*labels.resolve("a"), "a");
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn fixed_plus_learned() {
        let labels = BoundedLabels::new(&LabelLimit::fixed(["acme"]).and_learn(1));
        assert_eq!(&*labels.resolve("x"), "x");
        assert_eq!(&*labels.resolve("acme"), "acme");
        assert_eq!(&*labels.resolve("y"), OTHER);
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
            assert_eq!(&*labels.resolve(bad), OTHER, "{bad:?}");
        }
        assert_eq!(&*labels.resolve("ok"), "ok");
        assert_eq!(&*labels.resolve_opt(None), "");
    }

    proptest! {
        #[test]
        fn any_number_of_distinct_values_yields_at_most_cap_plus_one(
            cap in 0usize..20,
            values in proptest::collection::vec(".{0,12}", 0..200),
        ) {
            let labels = BoundedLabels::new(&LabelLimit::learned(cap));
            let seen: HashSet<String> = values.iter().map(|v| labels.resolve(v).to_string()).collect();
            prop_assert!(seen.len() <= cap + 1, "{} values for cap {}", seen.len(), cap);
            prop_assert!(labels.len() <= cap);
        }
    }
}
