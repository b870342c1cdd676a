//! Criterion benches: `rbac/decide_small`, `rbac/decide_large`, `rbac/filter_tools_100` and
//! `rbac/compile_large`.
#![allow(
    clippy::unwrap_used,
    reason = "a bench whose fixture does not build should stop loudly"
)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mcp_rbac::{BasicSubject, ListKind, PolicyBuilder, Request, Role, Rule};

/// A synthetic policy of `roles` roles with `rules_per_role` rules each, in three levels of
/// inheritance (1% base roles, 9% middle roles each inheriting a base role, 90% leaf roles
/// each inheriting a middle role). Rules mix exact tool names (60%), prefixes (25%),
/// resource URI trees (5%), one-segment wildcards (5%) and deny rules (5%).
fn synthetic(roles: usize, rules_per_role: usize) -> PolicyBuilder {
    let base = (roles / 100).max(1);
    let middle = (roles / 10).max(2);
    let mut builder = PolicyBuilder::new();
    for r in 0..roles {
        let mut role = Role::new(format!("role{r}"));
        if r >= middle {
            role = role.inherits(format!("role{}", base + (r % (middle - base).max(1))));
        } else if r >= base {
            role = role.inherits(format!("role{}", r % base));
        }
        for k in 0..rules_per_role {
            let n = r * rules_per_role + k;
            role = match n % 20 {
                0..=11 => role.allow(Rule::new("tools/call").resource(format!("svc{r}.op{k}"))),
                12..=16 => {
                    role.allow(Rule::new("tools/call").resource(format!("area{}.*", n % 97)))
                }
                17 => role.allow(
                    Rule::new("resources/read").resource(format!("file:///data/t{}/**", n % 89)),
                ),
                18 => role.allow(Rule::new("tools/call").resource(format!("*.report{}", n % 13))),
                _ => role.deny(Rule::new("tools/call").resource(format!("svc{r}.danger{k}"))),
            };
        }
        builder = builder.role(role);
    }
    builder
}

/// The requests a decision bench cycles through: allowed by an own exact rule, by an
/// inherited prefix, by a wildcard, by a URI tree, denied by a rule, and denied by default.
fn requests(leaf: usize, rules_per_role: usize) -> Vec<(String, String)> {
    let n = leaf * rules_per_role;
    vec![
        ("tools/call".into(), format!("svc{leaf}.op0")),
        ("tools/call".into(), format!("area{}.run", (n + 12) % 97)),
        ("tools/call".into(), "billing.report5".into()),
        (
            "resources/read".into(),
            "file:///data/t3/2026/q1.csv".into(),
        ),
        ("tools/call".into(), format!("svc{leaf}.danger19")),
        ("tools/call".into(), "nobody.has.this".into()),
    ]
}

fn bench_decide(c: &mut Criterion, id: &str, roles: usize, rules_per_role: usize) {
    let policy = synthetic(roles, rules_per_role).build().unwrap();
    let leaf = roles - 1;
    let subject = BasicSubject::new("bench")
        .tenant("t")
        .role(format!("role{leaf}"))
        .role(format!("role{}", leaf - 1));
    let requests = requests(leaf, rules_per_role);
    let mut i = 0;
    c.bench_function(id, |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            let (action, resource) = &requests[i];
            black_box(policy.decide(
                &subject,
                &Request::new(black_box(action), black_box(resource)),
            ))
            .is_allowed()
        })
    });
}

fn benches(c: &mut Criterion) {
    bench_decide(c, "rbac/decide_small", 10, 5);
    bench_decide(c, "rbac/decide_large", 1_000, 10);

    let policy = synthetic(1_000, 10).build().unwrap();
    let subject = BasicSubject::new("bench").role("role999").role("role998");
    let tools: Vec<String> = (0..100)
        .map(|i| match i % 4 {
            0 => format!("svc999.op{}", i % 10),
            1 => format!("area{}.x", i % 97),
            2 => format!("x.report{}", i % 13),
            _ => format!("other{i}.tool"),
        })
        .collect();
    c.bench_function("rbac/filter_tools_100", |b| {
        b.iter_batched(
            || tools.clone(),
            |tools| policy.filter(&subject, ListKind::Tools, None, tools, |t| t),
            BatchSize::SmallInput,
        )
    });

    let builder = synthetic(1_000, 10);
    c.bench_function("rbac/compile_large", |b| {
        b.iter_batched(
            || builder.clone(),
            |b| b.build().unwrap(),
            BatchSize::LargeInput,
        )
    });
}

fn check(_: &mut Criterion) {
    // The synthetic policies have the sizes the bench IDs promise.
    let small = synthetic(10, 5).build().unwrap();
    let large = synthetic(1_000, 10).build().unwrap();
    assert_eq!((small.role_names().count(), small.rules().len()), (10, 50));
    assert_eq!(
        (large.role_names().count(), large.rules().len()),
        (1_000, 10_000)
    );
}

criterion_group!(rbac, check, benches);
criterion_main!(rbac);
