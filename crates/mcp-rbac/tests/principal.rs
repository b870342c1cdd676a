//! The `auth-core` feature: `mcp_auth_core::Principal` is a `Subject`.
#![cfg(feature = "auth-core")]

use mcp_auth_core::{AuthMethod, Principal};
use mcp_rbac::{Policy, Request, Subject};

#[test]
fn principal_roles_are_home_tenant_grants() {
    let policy = Policy::default_roles().unwrap();
    let principal = Principal::builder("alice", AuthMethod::Local)
        .tenant("acme")
        .roles(["developer"])
        .scopes(["tools:call"])
        .build();
    assert_eq!(principal.subject_id(), "alice");
    assert_eq!(principal.home_tenant(), Some("acme"));
    assert!(Subject::has_scope(&principal, "tools:call"));
    assert!(
        policy
            .decide(&principal, &Request::new("tools/call", "git.log"))
            .is_allowed()
    );
    let foreign = Request::new("tools/call", "git.log").tenant("globex");
    assert!(!policy.decide(&principal, &foreign).is_allowed());
}
