//! Fair-share simulation: three tenants with weights 1:2:5 saturate one global limit.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions stop loudly and say why they skip"
)]

use std::num::NonZeroU32;
use std::time::Duration;

use mcp_ratelimit::{FairShare, FairShareConfig, FakeClock, Timestamp, jain_index};

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

#[test]
fn saturated_tenants_get_throughput_in_proportion_to_weight() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    // L = 800 per 10 s window: shares 100, 200 and 500; bursts 150, 300 and 750.
    let config = FairShareConfig::new(n(800), Duration::from_secs(10))
        .weight("small", n(1))
        .weight("medium", n(2))
        .weight("large", n(5));
    let fair = FairShare::with_clock(config, clock.clone()).unwrap();
    let tenants = ["small", "medium", "large"];
    let weights = [1.0, 2.0, 5.0];
    let mut admitted = [0_u64; 3];
    // Every tenant offers 1000 requests/s (3000/s against a limit of 80/s) for 300 s,
    // each arrival order rotated so no tenant is always first. The first 60 s warm up.
    let steps = 300_000_u64;
    for step in 0..steps {
        clock.advance(Duration::from_millis(1));
        for k in 0..3 {
            let i = (k + step as usize) % 3;
            let d = fair.check(tenants[i], 1);
            if d.allowed && step >= 60_000 {
                admitted[i] += 1;
            }
        }
    }
    let total: u64 = admitted.iter().sum();
    // Saturated: the global limit (80/s) over 240 s, within the window approximation.
    assert!((19_000..=19_300).contains(&total), "total {total}");
    for i in 0..3 {
        let expected = total as f64 * weights[i] / 8.0;
        let got = admitted[i] as f64;
        assert!(
            (got - expected).abs() / expected <= 0.05,
            "{}: {got} vs {expected:.0} ({admitted:?})",
            tenants[i]
        );
    }
    let weighted: Vec<f64> = (0..3).map(|i| admitted[i] as f64 / weights[i]).collect();
    let index = jain_index(&weighted);
    assert!(index >= 0.99, "Jain's index {index}");
    assert!(
        fair.fairness_index() >= 0.99,
        "live index {}",
        fair.fairness_index()
    );
    let usage = fair.usage();
    assert_eq!(usage[0].tenant, "large");
    assert_eq!(usage[0].share, 500.0);
    assert_eq!(usage[0].burst_limit, 750.0);
    assert!(usage.iter().all(|u| u.rejected > 0));
}

#[test]
fn idle_shares_are_lent_up_to_the_burst() {
    let clock = FakeClock::new(Timestamp::from_micros(1_700_000_000_000_000));
    let config = FairShareConfig::new(n(800), Duration::from_secs(10))
        .weight("small", n(1))
        .weight("medium", n(2))
        .weight("large", n(5));
    let fair = FairShare::with_clock(config, clock.clone()).unwrap();
    let mut admitted = [0_u64; 2];
    // Only small and large compete; medium's 200 is lent out, each tenant capped at
    // share x 1.5.
    for step in 0..100_000_u64 {
        clock.advance(Duration::from_millis(1));
        for (i, t) in ["small", "large"].iter().enumerate() {
            if fair.check(t, 1).allowed && step >= 20_000 {
                admitted[i] += 1;
            }
        }
    }
    let per_window = |x: u64| x as f64 / 8.0;
    // small bursts to its 150 limit, large takes the remaining 650 of the 800.
    assert!(
        (per_window(admitted[0]) - 150.0).abs() <= 5.0,
        "{admitted:?}"
    );
    assert!(
        (per_window(admitted[1]) - 650.0).abs() <= 10.0,
        "{admitted:?}"
    );
}
