//! May they do it: role-based access control for MCP tools, resources and prompts.
//!
//! `mcp-rbac` answers one question — may this subject perform this MCP action on this
//! resource, in this tenant, with these arguments? — from a policy of roles and rules, and
//! explains every answer. It is standalone: it needs none of the other `mcp-auth` crates.
//!
//! * **Actions** are MCP methods (`tools/call`, `resources/read`, `prompts/get`, ...; see
//!   [`MCP_ACTIONS`]) and administrative actions `admin:<area>.<verb>`
//!   (`admin:audit.read`, `admin:keys.write`, `admin:policy.reload`).
//! * **Resources** are tool names, resource URIs and prompt names, matched by [`Pattern`]s:
//!   exact, prefix (`weather.*`, `fs/read_*`), one segment (`*`) and any segments (`**`).
//! * **Roles** hold allow and deny rules and inherit from other roles (a DAG). Deny always
//!   wins; anything not allowed is denied, so an empty policy denies everything.
//! * **Tenants**: a subject holds roles in its home tenant or in named tenants, and never acts
//!   in another tenant unless a rule is marked `cross_tenant`. Tool arguments can be bound to
//!   the caller (`tenant = "$tenant"`) or to a pattern (`path = "reports/**"`).
//! * **Scopes**: an allow rule can require OAuth scopes; a denial names the missing one so the
//!   `403` challenge can ask for it.
//!
//! Policies come from TOML or JSON ([`Policy::from_file`]) or from a [`PolicyBuilder`]; every
//! error is reported with its file, line and key path. The compiled [`Policy`] decides without
//! scanning its rules and without allocating. [`PolicyHandle`] swaps in a new policy atomically
//! (explicitly or by watching the file) and keeps the last good one when a reload fails.
//! [`DEFAULT_POLICY_TOML`] holds the predefined roles: `admin`, `developer`, `readonly`,
//! `operator`, `ml-engineer`, `ci-bot`, `guest`, `user` and `server_owner`.
//!
//! # Example
//!
//! ```
//! use mcp_rbac::{BasicSubject, Policy, Reason, Request};
//!
//! let policy = Policy::from_toml_str(
//!     r#"
//!     [roles.analyst]
//!     inherits = ["readonly"]
//!     allow = [
//!       { action = "tools/call", resource = "reports.*", scopes = ["reports:run"],
//!         args = { path = "reports/**" } },
//!     ]
//!
//!     [roles.readonly]
//!     allow = [{ action = ["tools/list", "resources/read"] }]
//!
//!     [[bindings]]
//!     action = "tools/call"
//!     resource = "tenant_data"
//!     args = { tenant = "$tenant" }
//!     "#,
//!     "policy.toml",
//! )?;
//!
//! let alice = BasicSubject::new("alice").tenant("acme").role("analyst").scope("reports:run");
//! let args = serde_json::json!({ "path": "reports/2026/q1.csv" });
//! let call = Request::new("tools/call", "reports.export").arguments(args.as_object().unwrap());
//! let decision = policy.decide(&alice, &call);
//! assert!(decision.is_allowed(), "{decision}");
//!
//! // A path outside `reports/` is refused, and the decision says why.
//! let args = serde_json::json!({ "path": "secrets/keys.txt" });
//! let call = Request::new("tools/call", "reports.export").arguments(args.as_object().unwrap());
//! assert!(matches!(policy.decide(&alice, &call).reason(), Reason::ArgumentViolation { .. }));
//!
//! // Inherited permission; another tenant is out of bounds.
//! assert!(policy.decide(&alice, &Request::new("resources/read", "file:///a")).is_allowed());
//! let foreign = Request::new("resources/read", "file:///a").tenant("globex");
//! assert!(!policy.decide(&alice, &foreign).is_allowed());
//! # Ok::<(), mcp_rbac::LoadError>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `auth-core` | no | [`Subject`] for `mcp_auth_core::Principal` (its roles are home-tenant grants) |
//! | `tower` | no | `RbacLayer`, a tower layer that enforces decisions on `http` requests |
//! | `full` | no | all of the above |
//!
//! # MSRV
//!
//! Rust 1.94.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod compile;
mod decision;
mod error;
mod fxhash;
#[cfg(feature = "tower")]
mod layer;
mod model;
mod pattern;
mod reload;
mod source;
mod subject;

pub use compile::{MCP_ACTIONS, Policy, RuleInfo, RuleKind, is_known_action};
pub use decision::{ArgumentProblem, Decision, Effect, ListKind, Reason, Request};
pub use error::{Diagnostic, LoadError, Location};
#[cfg(feature = "tower")]
pub use layer::{McpCall, RbacFuture, RbacLayer, RbacService};
pub use model::{Assignment, Binding, PolicyBuilder, Role, Rule};
pub use pattern::{Pattern, PatternError};
pub use reload::{PolicyHandle, ReloadEvent, Watcher};
pub use subject::{BasicSubject, RoleGrant, Subject};

/// The predefined roles, as TOML: `admin`, `developer`, `readonly`, `operator`,
/// `ml-engineer`, `ci-bot`, `guest`, `user` and `server_owner`.
///
/// Load it with [`Policy::default_roles`]; extend it with [`PolicyBuilder::extend_toml`].
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policies/default.toml");
