//! Sizing advice: a pure function from each class's recent usage to a recommended limit.
//!
//! Each class gets a wish from its own usage (grow when the 95th percentile of the peak
//! connections in use exceeds `grow_above` of the limit, or when acquires had to wait; shrink
//! when it stayed under `shrink_below` for a whole window; otherwise keep), clamped to its
//! `[min, max]`. The wishes of the classes that count against the database's connection
//! budget are then fitted into it: shrinks are always granted, growth shares the headroom
//! max-min fairly (every grower gets the same amount until its wish is met).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Thresholds of the sizing advice, as fractions of a class's limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AdviceConfig {
    /// Grow when the 95th-percentile utilisation is above this (default 0.8).
    pub grow_above: f64,
    /// Shrink when the 95th-percentile utilisation stayed below this for a full window
    /// (default 0.3).
    pub shrink_below: f64,
    /// The utilisation a resized class should land at (default 0.6).
    pub target: f64,
    /// The least a growing class grows, as a fraction of its limit (default 0.25, at least
    /// one connection).
    pub grow_step: f64,
}

impl Default for AdviceConfig {
    fn default() -> Self {
        Self {
            grow_above: 0.8,
            shrink_below: 0.3,
            target: 0.6,
            grow_step: 0.25,
        }
    }
}

impl AdviceConfig {
    /// Sets the utilisation above which a class grows.
    pub fn grow_above(mut self, fraction: f64) -> Self {
        self.grow_above = fraction;
        self
    }

    /// Sets the utilisation below which a class shrinks after a full window.
    pub fn shrink_below(mut self, fraction: f64) -> Self {
        self.shrink_below = fraction;
        self
    }

    /// Sets the utilisation a resized class should land at.
    pub fn target(mut self, fraction: f64) -> Self {
        self.target = fraction;
        self
    }

    /// Sets the least a growing class grows, as a fraction of its limit.
    pub fn grow_step(mut self, fraction: f64) -> Self {
        self.grow_step = fraction;
        self
    }

    /// Checks `0 < shrink_below < target < grow_above <= 1` and `0 < grow_step <= 10`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ordered = 0.0 < self.shrink_below
            && self.shrink_below < self.target
            && self.target < self.grow_above
            && self.grow_above <= 1.0;
        if !ordered {
            return Err(ConfigError::Advice(
                "need 0 < shrink_below < target < grow_above <= 1".into(),
            ));
        }
        if !(self.grow_step > 0.0 && self.grow_step <= 10.0) {
            return Err(ConfigError::Advice("need 0 < grow_step <= 10".into()));
        }
        Ok(())
    }
}

/// One class's recent usage, the input of [`advise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClassUsage {
    /// The class's limit now.
    pub current: u32,
    /// The lowest limit allowed (treated as at least 1).
    pub min: u32,
    /// The highest limit allowed.
    pub max: u32,
    /// Whether the class counts against the database's connection budget.
    pub budgeted: bool,
    /// Samples in the window (since the last change of the limit, at most a window).
    pub samples: u32,
    /// 95th percentile of the peak connections in use per sample.
    pub p95_in_use: u32,
    /// Acquires that had to wait in the window.
    pub waits: u64,
    /// Acquires that timed out in the window.
    pub timeouts: u64,
}

impl ClassUsage {
    /// Usage of a class with limit `current` within `[min, max]` and no samples yet.
    pub fn new(current: u32, min: u32, max: u32) -> Self {
        Self {
            current,
            min,
            max,
            budgeted: true,
            samples: 0,
            p95_in_use: 0,
            waits: 0,
            timeouts: 0,
        }
    }

    /// Sets whether the class counts against the budget.
    pub fn budgeted(mut self, budgeted: bool) -> Self {
        self.budgeted = budgeted;
        self
    }

    /// Sets the window: `samples` samples with the given 95th percentile of connections in
    /// use, waits and timeouts.
    pub fn window(mut self, samples: u32, p95_in_use: u32, waits: u64, timeouts: u64) -> Self {
        self.samples = samples;
        self.p95_in_use = p95_in_use;
        self.waits = waits;
        self.timeouts = timeouts;
        self
    }
}

/// What the advice says to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Raise the limit to `target`.
    Grow,
    /// Lower the limit to `target`.
    Shrink,
    /// Leave the limit as it is.
    Keep,
}

/// Why the class wants what it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// No samples yet.
    NoSamples,
    /// Acquires waited or timed out in the window.
    Waits,
    /// The 95th-percentile utilisation was above `grow_above`.
    HighUtilisation,
    /// The 95th-percentile utilisation stayed below `shrink_below` for a full window.
    LowUtilisation,
    /// Utilisation is low but the window is not full yet.
    NotSustained,
    /// Utilisation is between the thresholds.
    Steady,
}

/// What held the target back from the wish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The class's minimum.
    Min,
    /// The class's maximum.
    Max,
    /// The database's connection budget.
    Budget,
}

/// The recommendation for one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Advice {
    /// Grow, shrink or keep (`target` compared with `current`).
    pub action: Action,
    /// The limit now.
    pub current: u32,
    /// What the class's usage asks for, before bounds and budget.
    pub wanted: u32,
    /// The recommended limit: within `[min, max]`, and within the budget together with the
    /// other budgeted classes.
    pub target: u32,
    /// Why.
    pub reason: Reason,
    /// What cut `wanted` down (or up) to `target`, if anything.
    pub bounded_by: Option<Bound>,
}

/// Recommends a limit for every class (same order as `classes`).
///
/// `window_samples` is the number of samples in a full window (a shrink needs that many);
/// `budget` caps the sum of the targets of the budgeted classes. Guarantees, for any input:
/// every target is within `[max(min, 1), max]` (when `min <= max`); the budgeted targets sum
/// to at most `budget` whenever the budgeted minimums fit in it; a class's target never
/// falls when its own load (percentile, waits or timeouts) rises.
pub fn advise(
    classes: &[ClassUsage],
    budget: Option<u32>,
    window_samples: u32,
    config: &AdviceConfig,
) -> Vec<Advice> {
    let wishes: Vec<(u32, Reason)> = classes
        .iter()
        .map(|c| wish(c, window_samples, config))
        .collect();
    let mut targets: Vec<u32> = classes
        .iter()
        .zip(&wishes)
        .map(|(c, (wanted, _))| clamp(*wanted, c))
        .collect();
    if let Some(budget) = budget {
        fit_budget(classes, &mut targets, budget);
    }
    classes
        .iter()
        .zip(wishes)
        .zip(targets)
        .map(|((c, (wanted, reason)), target)| Advice {
            action: match target.cmp(&c.current) {
                std::cmp::Ordering::Greater => Action::Grow,
                std::cmp::Ordering::Less => Action::Shrink,
                std::cmp::Ordering::Equal => Action::Keep,
            },
            current: c.current,
            wanted,
            target,
            reason,
            bounded_by: bounded_by(c, wanted, target),
        })
        .collect()
}

fn floor(c: &ClassUsage) -> u32 {
    c.min.max(1)
}

fn clamp(wanted: u32, c: &ClassUsage) -> u32 {
    wanted.min(c.max).max(floor(c))
}

/// Limit that puts `in_use` at the target utilisation.
fn sized_for(in_use: u32, config: &AdviceConfig) -> u32 {
    let needed = (f64::from(in_use) / config.target).ceil();
    // `as` saturates; the value is finite and non-negative.
    (needed as u32).max(1)
}

/// The class's own wish, from its usage alone.
fn wish(c: &ClassUsage, window_samples: u32, config: &AdviceConfig) -> (u32, Reason) {
    if c.samples == 0 {
        return (c.current, Reason::NoSamples);
    }
    let current = f64::from(c.current.max(1));
    let p95 = f64::from(c.p95_in_use);
    if c.waits > 0 || c.timeouts > 0 || p95 > config.grow_above * current {
        let step = ((current * config.grow_step).ceil() as u32).max(1);
        let wanted = c
            .current
            .saturating_add(step)
            .max(sized_for(c.p95_in_use, config));
        let reason = if c.waits > 0 || c.timeouts > 0 {
            Reason::Waits
        } else {
            Reason::HighUtilisation
        };
        return (wanted, reason);
    }
    if p95 < config.shrink_below * current {
        if c.samples >= window_samples.max(1) {
            // Below the target utilisation's half, so strictly below `current`.
            return (sized_for(c.p95_in_use, config), Reason::LowUtilisation);
        }
        return (c.current, Reason::NotSustained);
    }
    (c.current, Reason::Steady)
}

/// Fits the budgeted targets into `budget`: shrinks stay, the others first fall back to their
/// current limit (lowered evenly towards their floors if even that does not fit), then the
/// headroom goes to the growers, max-min fairly, leftovers in class order.
fn fit_budget(classes: &[ClassUsage], targets: &mut [u32], budget: u32) {
    let budgeted: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i].budgeted)
        .collect();
    let total = |t: &[u32]| -> u64 { budgeted.iter().map(|&i| u64::from(t[i])).sum() };
    if total(targets) <= u64::from(budget) {
        return;
    }
    // Base: shrinks as wished, everyone else at the current limit (within the bounds).
    let mut base: Vec<u32> = targets.to_vec();
    for &i in &budgeted {
        base[i] = clamp(targets[i].min(classes[i].current), &classes[i]);
    }
    if total(&base) > u64::from(budget) {
        // Even the current limits do not fit (the budget was lowered): cap everyone at the
        // highest common level that fits, never below a floor.
        let level = highest_level(budget, |level| {
            budgeted
                .iter()
                .map(|&i| u64::from(base[i].min(level).max(floor(&classes[i]))))
                .sum()
        });
        for &i in &budgeted {
            base[i] = base[i].min(level).max(floor(&classes[i]));
        }
        for &i in &budgeted {
            targets[i] = base[i];
        }
        return;
    }
    let headroom = u64::from(budget) - total(&base);
    let extra: Vec<(usize, u32)> = budgeted
        .iter()
        .map(|&i| (i, targets[i].saturating_sub(base[i])))
        .collect();
    let level = highest_level(u32::try_from(headroom).unwrap_or(u32::MAX), |level| {
        extra.iter().map(|&(_, e)| u64::from(e.min(level))).sum()
    });
    let mut left = headroom
        - extra
            .iter()
            .map(|&(_, e)| u64::from(e.min(level)))
            .sum::<u64>();
    for &(i, e) in &extra {
        let mut grant = e.min(level);
        if e > level && left > 0 {
            grant += 1;
            left -= 1;
        }
        targets[i] = base[i] + grant;
    }
}

/// The highest `level` in `0..=cap` with `sum(level) <= cap` for a sum that grows with the
/// level (binary search; `sum(0)` is assumed to fit).
fn highest_level(cap: u32, sum: impl Fn(u32) -> u64) -> u32 {
    let (mut lo, mut hi) = (0_u32, cap);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if sum(mid) <= u64::from(cap) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

fn bounded_by(c: &ClassUsage, wanted: u32, target: u32) -> Option<Bound> {
    if target == wanted {
        return None;
    }
    if wanted > c.max && target == c.max {
        Some(Bound::Max)
    } else if wanted < floor(c) && target == floor(c) {
        Some(Bound::Min)
    } else {
        Some(Bound::Budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdviceConfig {
        AdviceConfig::default()
    }

    fn one(c: ClassUsage) -> Advice {
        advise(&[c], None, 10, &cfg())[0]
    }

    #[test]
    fn grows_on_high_utilisation_and_on_waits() {
        let high = one(ClassUsage::new(10, 1, 40).window(10, 9, 0, 0));
        assert_eq!(high.action, Action::Grow);
        assert_eq!(high.reason, Reason::HighUtilisation);
        // 9 in use at 60 % -> 15; the 25 % step (13) is smaller.
        assert_eq!(high.target, 15);

        let waits = one(ClassUsage::new(10, 1, 40).window(3, 2, 1, 0));
        assert_eq!(
            (waits.action, waits.reason, waits.target),
            (Action::Grow, Reason::Waits, 13)
        );
    }

    #[test]
    fn shrinks_only_after_a_full_window() {
        let early = one(ClassUsage::new(20, 2, 40).window(9, 3, 0, 0));
        assert_eq!(
            (early.action, early.reason),
            (Action::Keep, Reason::NotSustained)
        );
        let full = one(ClassUsage::new(20, 2, 40).window(10, 3, 0, 0));
        assert_eq!(
            (full.action, full.reason, full.target),
            (Action::Shrink, Reason::LowUtilisation, 5)
        );
        let idle = one(ClassUsage::new(20, 2, 40).window(10, 0, 0, 0));
        assert_eq!((idle.target, idle.bounded_by), (2, Some(Bound::Min)));
    }

    #[test]
    fn keeps_between_the_thresholds_and_without_samples() {
        assert_eq!(
            one(ClassUsage::new(10, 1, 40).window(10, 5, 0, 0)).reason,
            Reason::Steady
        );
        let none = one(ClassUsage::new(10, 1, 40));
        assert_eq!(
            (none.action, none.reason),
            (Action::Keep, Reason::NoSamples)
        );
    }

    #[test]
    fn growth_stops_at_max() {
        let a = one(ClassUsage::new(10, 1, 11).window(10, 10, 5, 0));
        // 10 in use at 60 % -> 17, more than the 25 % step (13).
        assert_eq!(
            (a.target, a.wanted, a.bounded_by),
            (11, 17, Some(Bound::Max))
        );
    }

    #[test]
    fn budget_headroom_is_shared_and_shrinks_make_room() {
        let classes = [
            ClassUsage::new(10, 1, 100).window(10, 10, 3, 0), // wants 17
            ClassUsage::new(10, 1, 100).window(10, 10, 3, 0), // wants 17
            ClassUsage::new(10, 1, 100).window(10, 0, 0, 0),  // shrinks to 1
        ];
        let advice = advise(&classes, Some(31), 10, &cfg());
        let targets: Vec<u32> = advice.iter().map(|a| a.target).collect();
        // 31 - 1 = 30 for the two growers: 15 each.
        assert_eq!(targets, vec![15, 15, 1]);
        assert_eq!(advice[0].bounded_by, Some(Bound::Budget));
    }

    #[test]
    fn unbudgeted_classes_ignore_the_budget() {
        let classes = [
            ClassUsage::new(10, 1, 100).window(10, 10, 3, 0),
            ClassUsage::new(64, 1, 512)
                .window(10, 64, 3, 0)
                .budgeted(false),
        ];
        let advice = advise(&classes, Some(10), 10, &cfg());
        assert_eq!(advice[0].target, 10);
        assert_eq!(advice[1].target, 107);
    }

    #[test]
    fn a_lowered_budget_caps_current_limits() {
        let classes = [
            ClassUsage::new(20, 2, 40).window(10, 10, 0, 0),
            ClassUsage::new(4, 2, 40).window(10, 2, 0, 0),
        ];
        let advice = advise(&classes, Some(12), 10, &cfg());
        let total: u32 = advice.iter().map(|a| a.target).sum();
        assert!(total <= 12, "{advice:?}");
        assert_eq!(advice[1].target, 4);
    }

    #[test]
    fn validate_rejects_unordered_thresholds() {
        let mut c = cfg();
        c.shrink_below = 0.9;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.grow_step = 0.0;
        assert!(c.validate().is_err());
        assert!(cfg().validate().is_ok());
    }
}
