//! Property: no key ever admits more than burst + rate x elapsed in any window, for GCRA
//! and the sliding window, whatever the arrival pattern and costs.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions stop loudly and say why they skip"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use mcp_ratelimit::{Algorithm, Charge, MemoryStore, Quota, Timestamp};
use proptest::prelude::*;

/// Admitted `(time µs, cost)` pairs for one key.
fn run(quota: &Quota, algorithm: Algorithm, events: &[(u64, u32)]) -> Vec<(u64, u64)> {
    let store = MemoryStore::new();
    let mut t = 1_700_000_000_000_000_u64;
    let mut admitted = Vec::new();
    for &(dt, cost) in events {
        t += dt;
        let c = Charge::new("k", quota, algorithm, cost, Timestamp::from_micros(t));
        if store.charge_now(&c).allowed {
            admitted.push((t, u64::from(cost)));
        }
    }
    admitted
}

/// Checks every window whose ends are admitted arrivals (the worst windows).
fn check_bound(admitted: &[(u64, u64)], burst: u64, count: u64, period_us: u64) {
    for i in 0..admitted.len() {
        let mut sum = 0_u64;
        for j in i..admitted.len() {
            sum += admitted[j].1;
            let elapsed = admitted[j].0 - admitted[i].0;
            // sum <= burst + count * elapsed / period, in exact integers.
            let lhs = i128::from(sum - sum.min(burst)) * i128::from(period_us);
            let rhs = i128::from(count) * i128::from(elapsed);
            assert!(
                sum <= burst || lhs <= rhs,
                "admitted {sum} in {elapsed} us; bound {burst} + {count}/{period_us} us"
            );
        }
    }
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (1_u32..40, 1_u64..3_000, 1_u32..60).prop_map(|(count, period_ms, burst)| {
        Quota::with_burst(
            NonZeroU32::new(count).unwrap(),
            Duration::from_millis(period_ms),
            NonZeroU32::new(burst).unwrap(),
        )
        .unwrap()
    })
}

fn events_strategy() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0_u64), 0_u64..2_000, 0_u64..400_000, 0_u64..5_000_000],
            1_u32..6,
        ),
        1..250,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn gcra_never_exceeds_burst_plus_rate(quota in quota_strategy(), events in events_strategy()) {
        let admitted = run(&quota, Algorithm::Gcra, &events);
        check_bound(
            &admitted,
            u64::from(quota.burst().get()),
            u64::from(quota.count().get()),
            quota.period().as_micros() as u64,
        );
    }

    #[test]
    fn sliding_window_never_exceeds_limit_plus_rate(quota in quota_strategy(), events in events_strategy()) {
        let quota = Quota::new(quota.count(), quota.period()).unwrap();
        let admitted = run(&quota, Algorithm::SlidingWindow, &events);
        let count = u64::from(quota.count().get());
        check_bound(&admitted, count, count, quota.period().as_micros() as u64);
    }

    /// The bound is tight enough to mean something: a burst at one instant gets exactly
    /// the burst.
    #[test]
    fn a_burst_at_one_instant_gets_exactly_the_burst(quota in quota_strategy()) {
        let events = vec![(0, 1); 200];
        let gcra = run(&quota, Algorithm::Gcra, &events);
        prop_assert_eq!(gcra.len() as u64, u64::from(quota.burst().get()).min(200));
        let w = Quota::new(quota.count(), quota.period()).unwrap();
        let window = run(&w, Algorithm::SlidingWindow, &events);
        prop_assert_eq!(window.len() as u64, u64::from(quota.count().get()).min(200));
    }
}
