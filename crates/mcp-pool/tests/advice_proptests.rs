//! Properties of the pure sizing rule `advise`: bounds, budget, monotone reactions.

use mcp_pool::{Action, AdviceConfig, ClassUsage, advise};
use proptest::prelude::*;

fn usage() -> impl Strategy<Value = ClassUsage> {
    (1_u32..200)
        .prop_flat_map(|current| {
            (
                Just(current),
                0..=current,
                current..=current + 200,
                any::<bool>(),
                0_u32..40,
                0..=current + 5,
                0_u64..3,
                0_u64..2,
            )
        })
        .prop_map(
            |(current, min, max, budgeted, samples, p95, waits, timeouts)| {
                ClassUsage::new(current, min, max)
                    .budgeted(budgeted)
                    .window(samples, p95, waits, timeouts)
            },
        )
}

/// Classes and a budget that holds at least their floors.
fn scenario() -> impl Strategy<Value = (Vec<ClassUsage>, Option<u32>, u32)> {
    (
        prop::collection::vec(usage(), 1..6),
        prop::option::of(0_u32..600),
        1_u32..20,
    )
        .prop_map(|(classes, extra, window)| {
            let floors: u32 = classes
                .iter()
                .filter(|c| c.budgeted)
                .map(|c| c.min.max(1))
                .sum();
            (classes, extra.map(|e| floors + e), window)
        })
}

fn budgeted_sum(classes: &[ClassUsage], targets: &[u32]) -> u64 {
    classes
        .iter()
        .zip(targets)
        .filter(|(c, _)| c.budgeted)
        .map(|(_, t)| u64::from(*t))
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn targets_stay_within_bounds_and_budget((classes, budget, window) in scenario()) {
        let advice = advise(&classes, budget, window, &AdviceConfig::default());
        prop_assert_eq!(advice.len(), classes.len());
        let targets: Vec<u32> = advice.iter().map(|a| a.target).collect();
        for (c, a) in classes.iter().zip(&advice) {
            prop_assert!(a.target >= c.min.max(1), "{:?} -> {:?}", c, a);
            prop_assert!(a.target <= c.max, "{:?} -> {:?}", c, a);
            prop_assert_eq!(a.current, c.current);
            let expected = match a.target.cmp(&c.current) {
                std::cmp::Ordering::Greater => Action::Grow,
                std::cmp::Ordering::Less => Action::Shrink,
                std::cmp::Ordering::Equal => Action::Keep,
            };
            prop_assert_eq!(a.action, expected);
        }
        if let Some(budget) = budget {
            prop_assert!(budgeted_sum(&classes, &targets) <= u64::from(budget));
        }
    }

    #[test]
    fn more_load_never_lowers_a_target(
        (classes, budget, window) in scenario(),
        pick in any::<prop::sample::Index>(),
        more_p95 in 0_u32..50,
        more_waits in 0_u64..3,
        more_timeouts in 0_u64..2,
    ) {
        let config = AdviceConfig::default();
        let i = pick.index(classes.len());
        let before = advise(&classes, budget, window, &config)[i].target;
        let mut busier = classes.clone();
        let c = busier[i];
        busier[i] = c.window(
            c.samples,
            c.p95_in_use + more_p95,
            c.waits + more_waits,
            c.timeouts + more_timeouts,
        );
        let after = advise(&busier, budget, window, &config)[i].target;
        prop_assert!(after >= before, "{:?}: {} -> {}", busier[i], before, after);
    }

    #[test]
    fn shrinking_needs_a_full_window_and_no_waits((classes, _budget, window) in scenario()) {
        let advice = advise(&classes, None, window, &AdviceConfig::default());
        for (c, a) in classes.iter().zip(&advice) {
            if a.action == Action::Shrink && c.current <= c.max && c.current >= c.min.max(1) {
                prop_assert!(c.samples >= window, "{:?} -> {:?}", c, a);
                prop_assert_eq!(c.waits + c.timeouts, 0);
            }
        }
    }

    #[test]
    fn waits_always_ask_for_more((classes, _budget, window) in scenario()) {
        let advice = advise(&classes, None, window, &AdviceConfig::default());
        for (c, a) in classes.iter().zip(&advice) {
            if c.samples > 0 && c.waits + c.timeouts > 0 {
                prop_assert!(a.wanted > c.current, "{:?} -> {:?}", c, a);
                prop_assert!(a.target >= c.current.min(c.max), "{:?} -> {:?}", c, a);
            }
        }
    }

    #[test]
    fn without_samples_nothing_moves((classes, budget, window) in scenario()) {
        let idle: Vec<ClassUsage> = classes.iter().map(|c| c.window(0, 0, 0, 0)).collect();
        let sum_current: u64 = idle.iter().filter(|c| c.budgeted).map(|c| u64::from(c.current)).sum();
        prop_assume!(budget.is_none_or(|b| sum_current <= u64::from(b)));
        for (c, a) in idle.iter().zip(advise(&idle, budget, window, &AdviceConfig::default())) {
            prop_assert_eq!(a.target, c.current);
        }
    }
}
