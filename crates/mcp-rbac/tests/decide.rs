//! Integration tests of decisions: patterns, deny-wins, inheritance, tenants, bindings, scopes.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions stop loudly on broken fixtures"
)]

use mcp_rbac::{
    ArgumentProblem, Assignment, BasicSubject, Binding, Effect, ListKind, Policy, PolicyBuilder,
    Reason, Request, Role, Rule, RuleKind,
};
use serde_json::{Map, Value, json};

fn policy(text: &str) -> Policy {
    Policy::from_toml_str(text, "test.toml").unwrap()
}

fn args(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        unreachable!("arguments are always written as JSON objects here")
    };
    map
}

fn allowed(policy: &Policy, who: &BasicSubject, action: &str, resource: &str) -> bool {
    policy
        .decide(who, &Request::new(action, resource))
        .is_allowed()
}

#[test]
fn empty_policy_denies_everything() {
    let policy = Policy::deny_all();
    let root = BasicSubject::new("root").role("admin");
    let d = policy.decide(&root, &Request::new("tools/call", "anything"));
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.reason(), Reason::NoMatchingRule);
    let empty = policy_from_builder(PolicyBuilder::new());
    assert!(!allowed(&empty, &root, "tools/list", ""));
}

fn policy_from_builder(b: PolicyBuilder) -> Policy {
    b.build().unwrap()
}

#[test]
fn patterns_exact_prefix_and_wildcards() {
    let p = policy(
        r#"
        [roles.r]
        allow = [
          { action = "tools/call", resource = ["weather.get", "fs/read_*", "git.**"] },
          { action = "resources/read", resource = ["file:///reports/**", "file:///*/summary.csv"] },
          { action = "prompts/*" },
          { action = "admin:audit.*" },
        ]
        "#,
    );
    let s = BasicSubject::new("s").role("r");
    assert!(allowed(&p, &s, "tools/call", "weather.get"));
    assert!(!allowed(&p, &s, "tools/call", "weather.set"));
    assert!(allowed(&p, &s, "tools/call", "fs/read_file"));
    assert!(!allowed(&p, &s, "tools/call", "fs/read_dir/nested"));
    assert!(!allowed(&p, &s, "tools/call", "fs/write_file"));
    assert!(allowed(&p, &s, "tools/call", "git.remote/push"));
    assert!(allowed(
        &p,
        &s,
        "resources/read",
        "file:///reports/2026/q1.csv"
    ));
    assert!(allowed(&p, &s, "resources/read", "file:///q1/summary.csv"));
    assert!(!allowed(
        &p,
        &s,
        "resources/read",
        "file:///q1/x/summary.csv"
    ));
    assert!(allowed(&p, &s, "prompts/get", "greeting"));
    assert!(allowed(&p, &s, "prompts/list", ""));
    assert!(allowed(&p, &s, "admin:audit.read", ""));
    assert!(!allowed(&p, &s, "admin:keys.write", ""));
    assert!(!allowed(&p, &s, "tools/list", ""));
}

#[test]
fn deny_wins_over_allow_in_the_same_and_other_roles() {
    let p = policy(
        r#"
        [roles.a]
        allow = [{ action = "tools/call" }]
        deny = [{ action = "tools/call", resource = "danger.*" }]
        [roles.b]
        allow = [{ action = "tools/call", resource = "danger.ok" }]
        [roles.c]
        deny = [{ action = "*", resource = "danger.ok" }]
        "#,
    );
    let ab = BasicSubject::new("x").role("b").role("a");
    let d = p.decide(&ab, &Request::new("tools/call", "danger.ok"));
    match d.reason() {
        Reason::DeniedByRule { role, rule } => {
            assert_eq!(role, "a");
            assert_eq!(rule.kind(), RuleKind::Deny);
            assert_eq!(rule.location().line(), 4);
        }
        other => panic!("{other:?}"),
    }
    let bc = BasicSubject::new("y").role("b").role("c");
    assert!(!allowed(&p, &bc, "tools/call", "danger.ok"));
    assert!(allowed(
        &p,
        &BasicSubject::new("z").role("b"),
        "tools/call",
        "danger.ok"
    ));
}

#[test]
fn inheritance_and_custom_roles_over_the_defaults() {
    let p = PolicyBuilder::new()
        .extend_toml(mcp_rbac::DEFAULT_POLICY_TOML, "default.toml")
        .unwrap()
        .role(
            Role::new("reporter")
                .inherits("readonly")
                .allow(Rule::new("tools/call").resource("reports.*")),
        )
        .build()
        .unwrap();
    let r = BasicSubject::new("r").role("reporter");
    assert!(allowed(&p, &r, "tools/call", "reports.run"));
    // From readonly, and through it from guest.
    assert!(allowed(&p, &r, "tools/call", "monitoring.cpu"));
    assert!(allowed(&p, &r, "tools/list", ""));
    assert!(!allowed(&p, &r, "tools/call", "fs/write_file"));
    let d = p.decide(&r, &Request::new("tools/list", ""));
    let rule = d.rule().unwrap();
    assert_eq!(rule.role(), "guest");
    assert!(rule.location().source().ends_with("default.toml"));
}

#[test]
fn predefined_roles_behave_as_documented() {
    let p = Policy::default_roles().unwrap();
    let who = |role: &str| BasicSubject::new(role).role(role);
    assert!(allowed(&p, &who("admin"), "admin:keys.write", ""));
    assert!(allowed(&p, &who("admin"), "tools/call", "system.shutdown"));
    assert!(allowed(&p, &who("developer"), "tools/call", "git.commit"));
    assert!(!allowed(
        &p,
        &who("developer"),
        "tools/call",
        "system.shutdown"
    ));
    assert!(allowed(
        &p,
        &who("readonly"),
        "tools/call",
        "monitoring.cpu"
    ));
    assert!(!allowed(&p, &who("readonly"), "tools/call", "deploy.run"));
    assert!(allowed(&p, &who("operator"), "tools/call", "deploy.run"));
    assert!(allowed(&p, &who("operator"), "logging/setLevel", ""));
    assert!(allowed(
        &p,
        &who("ml-engineer"),
        "tools/call",
        "neural.train"
    ));
    assert!(allowed(
        &p,
        &who("ml-engineer"),
        "resources/read",
        "memory://agents/1"
    ));
    assert!(allowed(&p, &who("ci-bot"), "tools/call", "build.run"));
    assert!(!allowed(&p, &who("ci-bot"), "tools/call", "build.delete"));
    assert!(!allowed(&p, &who("ci-bot"), "admin:audit.read", ""));
    assert!(allowed(&p, &who("guest"), "tools/list", ""));
    assert!(!allowed(&p, &who("guest"), "tools/call", "status.get"));
    assert!(allowed(&p, &who("user"), "tools/call", "weather.get"));
    assert!(!allowed(&p, &who("user"), "tools/call", "system.reboot"));
    assert!(!allowed(&p, &who("user"), "admin:keys.write", ""));
    assert!(allowed(&p, &who("server_owner"), "admin:policy.reload", ""));
    assert!(!allowed(
        &p,
        &who("server_owner"),
        "admin:tenants.write",
        ""
    ));
    assert!(!allowed(&p, &BasicSubject::new("nobody"), "tools/list", ""));
    assert!(!allowed(
        &p,
        &BasicSubject::new("x").role("no-such-role"),
        "tools/list",
        ""
    ));
}

const TENANTS: &str = r#"
[roles.admin]
allow = [{ action = "*" }]
[roles.user]
allow = [{ action = "tools/call", resource = "weather.*" }]
[roles.support]
allow = [
  { action = "tools/call", resource = "tickets.*", cross_tenant = true },
  { action = "tools/call", resource = "billing.*" },
]
"#;

#[test]
fn per_tenant_role_assignments() {
    let p = policy(TENANTS);
    // Admin in tenant A, user in tenant B, home tenant A.
    let s = BasicSubject::new("s")
        .tenant("A")
        .role_in("admin", "A")
        .role_in("user", "B");
    let call =
        |t: &str, tool: &'static str| p.decide(&s, &Request::new("tools/call", tool).tenant(t));
    assert!(call("A", "fs/delete").is_allowed());
    assert!(call("B", "weather.get").is_allowed());
    assert!(!call("B", "fs/delete").is_allowed());
    assert!(!call("C", "weather.get").is_allowed());
    // Without a tenant on the request the call acts in the home tenant.
    assert!(
        p.decide(&s, &Request::new("tools/call", "fs/delete"))
            .is_allowed()
    );
}

#[test]
fn cross_tenant_attempts_are_denied_without_an_explicit_permission() {
    let p = policy(TENANTS);
    let alice = BasicSubject::new("alice").tenant("A").role("admin");
    let own = p.decide(&alice, &Request::new("tools/call", "fs/delete").tenant("A"));
    assert!(own.is_allowed());
    let foreign = p.decide(&alice, &Request::new("tools/call", "fs/delete").tenant("B"));
    assert!(
        matches!(foreign.reason(), Reason::CrossTenant { role: "admin", .. }),
        "{foreign}"
    );
    // A subject without a tenant cannot act in one.
    let drifter = BasicSubject::new("d").role("admin");
    assert!(
        !p.decide(&drifter, &Request::new("tools/list", "").tenant("A"))
            .is_allowed()
    );
    assert!(
        p.decide(&drifter, &Request::new("tools/list", ""))
            .is_allowed()
    );
    // Only the rule marked cross_tenant reaches other tenants.
    let agent = BasicSubject::new("agent").tenant("A").role("support");
    assert!(
        p.decide(
            &agent,
            &Request::new("tools/call", "tickets.read").tenant("B")
        )
        .is_allowed()
    );
    assert!(
        !p.decide(
            &agent,
            &Request::new("tools/call", "billing.refund").tenant("B")
        )
        .is_allowed()
    );
    assert!(
        p.decide(
            &agent,
            &Request::new("tools/call", "billing.refund").tenant("A")
        )
        .is_allowed()
    );
}

#[test]
fn policy_side_assignments_apply_per_tenant() {
    let p = PolicyBuilder::new()
        .extend_toml(TENANTS, "tenants.toml")
        .unwrap()
        .assignment(Assignment::new("carol").tenant("B").role("admin"))
        .build()
        .unwrap();
    let carol = BasicSubject::new("carol").tenant("A");
    assert!(
        p.decide(&carol, &Request::new("tools/call", "x").tenant("B"))
            .is_allowed()
    );
    assert!(
        !p.decide(&carol, &Request::new("tools/call", "x").tenant("A"))
            .is_allowed()
    );
    assert!(
        !p.decide(&carol, &Request::new("tools/call", "x"))
            .is_allowed()
    );
}

const BINDINGS: &str = r#"
[roles.analyst]
allow = [
  { action = "tools/call", resource = "tenant_data" },
  { action = "tools/call", resource = "fs/read", args = { path = "reports/**" } },
  { action = "tools/call", resource = "profile.get", args = { user = "$subject" } },
]

[[bindings]]
action = "tools/call"
resource = "tenant_data"
args = { tenant = "$tenant" }
description = "tenant_data only serves the caller's tenant"
"#;

#[test]
fn argument_bound_to_the_callers_tenant() {
    let p = policy(BINDINGS);
    let s = BasicSubject::new("ann").tenant("acme").role("analyst");
    let same = args(json!({ "tenant": "acme" }));
    let other = args(json!({ "tenant": "globex" }));
    let number = args(json!({ "tenant": 7 }));
    let none = Map::new();
    let d = |a| p.decide(&s, &Request::new("tools/call", "tenant_data").arguments(a));
    assert!(d(&same).is_allowed());
    let denied = d(&other);
    match denied.reason() {
        Reason::ArgumentViolation {
            rule,
            argument,
            problem,
        } => {
            assert_eq!((argument, problem), ("tenant", ArgumentProblem::Mismatch));
            assert_eq!(rule.kind(), RuleKind::Binding);
            assert_eq!(
                rule.description(),
                Some("tenant_data only serves the caller's tenant")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(denied.to_string().contains("`tenant`"), "{denied}");
    assert!(matches!(
        d(&number).reason(),
        Reason::ArgumentViolation {
            problem: ArgumentProblem::NotAString,
            ..
        }
    ));
    assert!(matches!(
        d(&none).reason(),
        Reason::ArgumentViolation {
            problem: ArgumentProblem::Missing,
            ..
        }
    ));
    // The binding applies whoever calls, even an admin role from another policy part.
    let p2 = PolicyBuilder::new()
        .role(Role::new("root").allow(Rule::new("*")))
        .binding(
            Binding::new("tools/call")
                .resource("tenant_data")
                .arg("tenant", "$tenant"),
        )
        .build()
        .unwrap();
    let root = BasicSubject::new("root").tenant("acme").role("root");
    assert!(
        !p2.decide(
            &root,
            &Request::new("tools/call", "tenant_data").arguments(&other)
        )
        .is_allowed()
    );
    assert!(
        p2.decide(
            &root,
            &Request::new("tools/call", "tenant_data").arguments(&same)
        )
        .is_allowed()
    );
}

#[test]
fn argument_patterns_and_subject_binding() {
    let p = policy(BINDINGS);
    let s = BasicSubject::new("ann").tenant("acme").role("analyst");
    let read = |path: &str| {
        let a = args(json!({ "path": path }));
        p.decide(&s, &Request::new("tools/call", "fs/read").arguments(&a))
            .is_allowed()
    };
    assert!(read("reports/2026/q1.csv"));
    assert!(!read("secrets/key.pem"));
    assert!(!read("reports/../secrets/key.pem"));
    assert!(!read("reports/./x"));
    assert!(!read("reports\\..\\x"));
    let profile = |user: &str| {
        let a = args(json!({ "user": user }));
        p.decide(&s, &Request::new("tools/call", "profile.get").arguments(&a))
            .is_allowed()
    };
    assert!(profile("ann"));
    assert!(!profile("bob"));
}

#[test]
fn scopes_are_required_and_named_in_the_denial() {
    let p = policy(
        r#"
        [roles.writer]
        allow = [{ action = "tools/call", resource = "docs.write", scopes = ["docs:read", "docs:write"] }]
        "#,
    );
    let partial = BasicSubject::new("w").role("writer").scope("docs:read");
    let d = p.decide(&partial, &Request::new("tools/call", "docs.write"));
    assert!(!d.is_allowed());
    assert_eq!(d.missing_scope(), Some("docs:write"));
    let full = partial.clone().scope("docs:write");
    assert!(
        p.decide(&full, &Request::new("tools/call", "docs.write"))
            .is_allowed()
    );
}

#[test]
fn decisions_explain_themselves() {
    let p = policy(
        "[roles.viewer]\nallow = [\n  { action = \"tools/call\", resource = \"weather.*\", description = \"weather is public\" },\n]\n",
    );
    let s = BasicSubject::new("v").role("viewer");
    let d = p.decide(&s, &Request::new("tools/call", "weather.get"));
    let text = d.to_string();
    assert!(text.contains("role `viewer`"), "{text}");
    assert!(text.contains("test.toml:3:3"), "{text}");
    assert!(text.contains("weather is public"), "{text}");
    let rule = d.rule().unwrap();
    assert_eq!(
        (rule.role(), rule.index(), rule.kind()),
        ("viewer", 0, RuleKind::Allow)
    );
    assert!(rule.covers("tools/call", "weather.x"));
    let no = p.decide(&s, &Request::new("tools/call", "fs/rm"));
    assert_eq!(no.to_string(), "denied: no rule allows it");
}

#[test]
fn filter_keeps_only_allowed_items_in_order() {
    let p = Policy::default_roles().unwrap();
    let dev = BasicSubject::new("d").role("developer");
    let tools = vec![
        "git.log",
        "system.shutdown",
        "fs/read_file",
        "fs/write_file",
        "status.get",
    ];
    let kept = p.filter(&dev, ListKind::Tools, None, tools, |t| t);
    assert_eq!(kept, ["git.log", "fs/read_file", "status.get"]);

    #[derive(Debug, PartialEq)]
    struct Resource {
        uri: String,
    }
    let ml = BasicSubject::new("m").tenant("A").role("ml-engineer");
    let resources = vec![
        Resource {
            uri: "memory://a".into(),
        },
        Resource {
            uri: "file:///etc/passwd".into(),
        },
    ];
    let kept = p.filter(&ml, ListKind::Resources, Some("B"), resources, |r| &r.uri);
    assert!(kept.is_empty(), "another tenant sees nothing");
    let guest = BasicSubject::new("g").role("guest");
    let prompts = vec!["summarise".to_owned()];
    assert!(
        p.filter(&guest, ListKind::Prompts, None, prompts, |p| p)
            .is_empty()
    );
}

#[test]
fn filter_ignores_argument_bindings_but_not_scopes() {
    let p = policy(
        r#"
        [roles.r]
        allow = [
          { action = "tools/call", resource = "fs/read", args = { path = "reports/**" } },
          { action = "tools/call", resource = "docs.write", scopes = ["docs:write"] },
        ]
        "#,
    );
    let s = BasicSubject::new("s").role("r");
    let kept = p.filter(
        &s,
        ListKind::Tools,
        None,
        vec!["fs/read", "docs.write"],
        |t| t,
    );
    assert_eq!(kept, ["fs/read"]);
}

#[test]
fn many_roles_are_all_considered() {
    // More roles than one stack chunk of grants: a deny in the last role still wins, and an
    // allow in the last role still allows.
    let mut builder = PolicyBuilder::new();
    for i in 0..20 {
        builder = builder.role(
            Role::new(format!("r{i}")).allow(Rule::new("tools/call").resource(format!("t{i}"))),
        );
    }
    let policy = builder
        .role(
            Role::new("last")
                .allow(Rule::new("tools/call").resource("late"))
                .deny(Rule::new("tools/call").resource("t0")),
        )
        .build()
        .unwrap();
    let many = (0..20).fold(BasicSubject::new("m"), |s, i| s.role(format!("r{i}")));
    assert!(allowed(&policy, &many, "tools/call", "t0"));
    assert!(allowed(&policy, &many, "tools/call", "t19"));
    let with_last = many.role("last");
    assert!(!allowed(&policy, &with_last, "tools/call", "t0"));
    assert!(allowed(&policy, &with_last, "tools/call", "late"));
}
