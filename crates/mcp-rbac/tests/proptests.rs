//! Property tests: the compiled matcher agrees with a naive reference, deny wins, default
//! deny, monotonicity of allow and deny rules, and inheritance as the union of parents.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions stop loudly on broken fixtures"
)]

use mcp_rbac::{BasicSubject, Pattern, Policy, PolicyBuilder, Request, Role, Rule};
use proptest::prelude::*;

/// Reference matcher: plain recursion over the pattern, no classification, no automaton.
fn naive(pattern: &str, text: &str) -> bool {
    if pattern == "*" || pattern == "**" {
        return true;
    }
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| go(rest, &t[i..])),
            [b'*', rest @ ..] => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(rest, &t[i..])),
            [c, rest @ ..] => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Resource names over a tiny alphabet, so that random patterns often match.
fn resource() -> impl Strategy<Value = String> {
    "[ab./]{0,8}"
}

/// Patterns over the same alphabet plus wildcards (never `***`).
fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof!["a", "b", "\\.", "/", "\\*", "\\*\\*"], 1..6)
        .prop_map(|parts| parts.concat())
        .prop_filter("no triple star", |p| !p.contains("***"))
}

const ACTIONS: &[&str] = &[
    "tools/call",
    "resources/read",
    "prompts/get",
    "admin:keys.write",
];

fn action_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tools/call".to_owned()),
        Just("resources/read".to_owned()),
        Just("resources/*".to_owned()),
        Just("admin:*".to_owned()),
        Just("*".to_owned()),
    ]
}

#[derive(Clone, Debug)]
struct RuleSpec {
    action: String,
    resource: String,
    deny: bool,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (action_pattern(), pattern(), prop::bool::weighted(0.3)).prop_map(|(action, resource, deny)| {
        RuleSpec {
            action,
            resource,
            deny,
        }
    })
}

fn role_of(name: &str, rules: &[RuleSpec]) -> Role {
    rules.iter().fold(Role::new(name), |role, r| {
        let rule = Rule::new(&r.action).resource(&r.resource);
        if r.deny {
            role.deny(rule)
        } else {
            role.allow(rule)
        }
    })
}

fn single_role(rules: &[RuleSpec]) -> Policy {
    PolicyBuilder::new()
        .role(role_of("r", rules))
        .build()
        .unwrap()
}

/// Reference decision: deny if any deny rule covers the request, else allow if any allow does.
fn naive_decide(rules: &[RuleSpec], action: &str, resource: &str) -> bool {
    let covers = |r: &RuleSpec| naive(&r.action, action) && naive(&r.resource, resource);
    !rules.iter().any(|r| r.deny && covers(r)) && rules.iter().any(|r| !r.deny && covers(r))
}

fn queries() -> impl Strategy<Value = Vec<(usize, String)>> {
    prop::collection::vec((0..ACTIONS.len(), resource()), 1..12)
}

fn may(policy: &Policy, subject: &BasicSubject, action: &str, resource: &str) -> bool {
    policy
        .decide(subject, &Request::new(action, resource))
        .is_allowed()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pattern_agrees_with_reference(p in pattern(), t in resource()) {
        prop_assert_eq!(Pattern::parse(&p).unwrap().matches(&t), naive(&p, &t), "pattern {} text {}", p, t);
    }

    #[test]
    fn compiled_policy_agrees_with_reference(rules in prop::collection::vec(rule_spec(), 0..10), qs in queries()) {
        let policy = single_role(&rules);
        let s = BasicSubject::new("s").role("r");
        for (a, res) in &qs {
            let action = ACTIONS[*a];
            prop_assert_eq!(may(&policy, &s, action, res), naive_decide(&rules, action, res), "{} {}", action, res);
        }
    }

    #[test]
    fn deny_wins(rules in prop::collection::vec(rule_spec(), 0..8), qs in queries()) {
        let s = BasicSubject::new("s").role("r");
        for (a, res) in &qs {
            let action = ACTIONS[*a];
            // Add an allow and a deny that both cover the request exactly.
            let mut with_both = rules.clone();
            let exact = if res.is_empty() { "*".to_owned() } else { res.clone() };
            with_both.push(RuleSpec { action: action.to_owned(), resource: exact, deny: false });
            with_both.push(RuleSpec { action: "*".to_owned(), resource: "**".to_owned(), deny: true });
            let policy = single_role(&with_both);
            prop_assert!(!may(&policy, &s, action, res));
        }
    }

    #[test]
    fn default_deny(rules in prop::collection::vec(rule_spec().prop_map(|r| RuleSpec { deny: true, ..r }), 0..8), qs in queries()) {
        // Only deny rules, or no roles at all for the subject: nothing is allowed.
        let policy = single_role(&rules);
        let holder = BasicSubject::new("s").role("r");
        let stranger = BasicSubject::new("t").role("other");
        let full = single_role(&[RuleSpec { action: "*".into(), resource: "*".into(), deny: false }]);
        for (a, res) in &qs {
            prop_assert!(!may(&policy, &holder, ACTIONS[*a], res));
            prop_assert!(!may(&full, &stranger, ACTIONS[*a], res));
            prop_assert!(!may(&Policy::deny_all(), &holder, ACTIONS[*a], res));
        }
    }

    #[test]
    fn adding_an_allow_never_removes_an_allow(rules in prop::collection::vec(rule_spec(), 0..8), extra in rule_spec(), qs in queries()) {
        let before = single_role(&rules);
        let mut more = rules.clone();
        more.push(RuleSpec { deny: false, ..extra });
        let after = single_role(&more);
        let s = BasicSubject::new("s").role("r");
        for (a, res) in &qs {
            if may(&before, &s, ACTIONS[*a], res) {
                prop_assert!(may(&after, &s, ACTIONS[*a], res));
            }
        }
    }

    #[test]
    fn adding_a_deny_never_adds_an_allow(rules in prop::collection::vec(rule_spec(), 0..8), extra in rule_spec(), qs in queries()) {
        let before = single_role(&rules);
        let mut more = rules.clone();
        more.push(RuleSpec { deny: true, ..extra });
        let after = single_role(&more);
        let s = BasicSubject::new("s").role("r");
        for (a, res) in &qs {
            if may(&after, &s, ACTIONS[*a], res) {
                prop_assert!(may(&before, &s, ACTIONS[*a], res));
            }
        }
    }

    #[test]
    fn inheritance_is_the_union_of_parents(
        left in prop::collection::vec(rule_spec().prop_map(|r| RuleSpec { deny: false, ..r }), 0..6),
        right in prop::collection::vec(rule_spec().prop_map(|r| RuleSpec { deny: false, ..r }), 0..6),
        qs in queries(),
    ) {
        let policy = PolicyBuilder::new()
            .role(role_of("left", &left))
            .role(role_of("right", &right))
            .role(Role::new("child").inherits("left").inherits("right"))
            .build()
            .unwrap();
        let child = BasicSubject::new("c").role("child");
        let l = BasicSubject::new("l").role("left");
        let r = BasicSubject::new("r").role("right");
        for (a, res) in &qs {
            let action = ACTIONS[*a];
            prop_assert_eq!(
                may(&policy, &child, action, res),
                may(&policy, &l, action, res) || may(&policy, &r, action, res)
            );
        }
    }
}
