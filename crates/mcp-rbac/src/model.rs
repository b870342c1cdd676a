//! The uncompiled policy: [`Role`], [`Rule`], [`Binding`], [`Assignment`] and [`PolicyBuilder`].

use std::sync::Arc;

use crate::compile::Policy;
use crate::error::{LoadError, Location};

/// Source name used for policies assembled with [`PolicyBuilder`].
pub(crate) const BUILDER_SOURCE: &str = "<builder>";

/// A permission: which actions on which resources, under which conditions.
///
/// An allow rule may require OAuth scopes, constrain tool arguments and opt in to
/// cross-tenant use; a deny rule is unconditional and always wins.
///
/// ```
/// use mcp_rbac::Rule;
///
/// let rule = Rule::new("tools/call")
///     .resource("fs/read_*")
///     .scope("files:read")
///     .arg("path", "reports/**");
/// assert_eq!(rule.actions(), ["tools/call"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub(crate) actions: Vec<String>,
    pub(crate) resources: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) args: Vec<(String, String)>,
    pub(crate) cross_tenant: bool,
    pub(crate) description: Option<String>,
    pub(crate) location: Option<Location>,
}

impl Rule {
    /// A rule for the action pattern `action` (such as `tools/call`, `resources/*` or
    /// `admin:audit.*`) on every resource.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            actions: vec![action.into()],
            ..Self::default()
        }
    }

    /// Adds another action pattern.
    #[must_use]
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.actions.push(action.into());
        self
    }

    /// Restricts the rule to resources matching `pattern` (tool name, resource URI or prompt
    /// name); call it several times for several patterns. Without it the rule covers every
    /// resource.
    #[must_use]
    pub fn resource(mut self, pattern: impl Into<String>) -> Self {
        self.resources.push(pattern.into());
        self
    }

    /// Requires the caller to hold the OAuth scope `scope` (allow rules only).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Constrains the tool argument `name` (allow rules only): `$tenant` (equal to the tenant
    /// the call acts in), `$subject` (equal to the caller's id), or a pattern the argument's
    /// string value must match.
    #[must_use]
    pub fn arg(mut self, name: impl Into<String>, constraint: impl Into<String>) -> Self {
        self.args.push((name.into(), constraint.into()));
        self
    }

    /// Lets a caller whose role was granted in its home tenant use this rule in any tenant
    /// (allow rules only). Without it a principal never acts outside its tenant.
    #[must_use]
    pub fn cross_tenant(mut self) -> Self {
        self.cross_tenant = true;
        self
    }

    /// A human description, shown when the rule explains a decision.
    #[must_use]
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// The action patterns.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }
}

/// A named set of allow and deny rules, inheriting from other roles.
///
/// ```
/// use mcp_rbac::{Role, Rule};
///
/// let role = Role::new("reporter")
///     .inherits("readonly")
///     .allow(Rule::new("tools/call").resource("reports.*"))
///     .deny(Rule::new("tools/call").resource("reports.delete"));
/// assert_eq!(role.name(), "reporter");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) inherits: Vec<(String, Option<Location>)>,
    pub(crate) allow: Vec<Rule>,
    pub(crate) deny: Vec<Rule>,
    pub(crate) location: Option<Location>,
}

impl Role {
    /// An empty role.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a parent role: this role gets every allow and deny of the parent.
    #[must_use]
    pub fn inherits(mut self, parent: impl Into<String>) -> Self {
        self.inherits.push((parent.into(), None));
        self
    }

    /// Adds an allow rule.
    #[must_use]
    pub fn allow(mut self, rule: Rule) -> Self {
        self.allow.push(rule);
        self
    }

    /// Adds a deny rule.
    #[must_use]
    pub fn deny(mut self, rule: Rule) -> Self {
        self.deny.push(rule);
        self
    }

    /// A human description.
    #[must_use]
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Roles the policy itself grants to a subject, optionally in one tenant only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    pub(crate) subject: String,
    pub(crate) tenant: Option<String>,
    pub(crate) roles: Vec<(String, Option<Location>)>,
    pub(crate) location: Option<Location>,
}

impl Assignment {
    /// Grants roles to the subject with id `subject` in its home tenant.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            ..Self::default()
        }
    }

    /// Makes the grant apply in `tenant` only.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a role.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push((role.into(), None));
        self
    }
}

/// A policy-wide argument binding: every matching call must satisfy it, whoever makes it.
///
/// ```
/// use mcp_rbac::Binding;
///
/// // The `tenant` argument of `tenant_data` must name the tenant the call acts in.
/// let binding = Binding::new("tools/call").resource("tenant_data").arg("tenant", "$tenant");
/// # let _ = binding;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    pub(crate) rule: Rule,
}

impl Binding {
    /// A binding for calls whose action matches `action`.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            rule: Rule::new(action),
        }
    }

    /// Restricts the binding to resources matching `pattern`.
    #[must_use]
    pub fn resource(mut self, pattern: impl Into<String>) -> Self {
        self.rule = self.rule.resource(pattern);
        self
    }

    /// Adds an argument constraint (same forms as [`Rule::arg`]).
    #[must_use]
    pub fn arg(mut self, name: impl Into<String>, constraint: impl Into<String>) -> Self {
        self.rule = self.rule.arg(name, constraint);
        self
    }

    /// A human description.
    #[must_use]
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.rule = self.rule.describe(text);
        self
    }
}

/// The parts of a policy before compilation, from a file or a [`PolicyBuilder`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PolicyDoc {
    pub(crate) source: Option<Arc<str>>,
    pub(crate) roles: Vec<Role>,
    pub(crate) assignments: Vec<Assignment>,
    pub(crate) bindings: Vec<Binding>,
}

/// Assembles a policy in code; [`build`](Self::build) validates and compiles it.
///
/// ```
/// use mcp_rbac::{BasicSubject, PolicyBuilder, Request, Role, Rule};
///
/// let policy = PolicyBuilder::new()
///     .role(Role::new("viewer").allow(Rule::new("tools/call").resource("weather.*")))
///     .build()
///     .unwrap();
/// let bob = BasicSubject::new("bob").role("viewer");
/// assert!(policy.decide(&bob, &Request::new("tools/call", "weather.get")).is_allowed());
/// assert!(!policy.decide(&bob, &Request::new("tools/call", "fs/write")).is_allowed());
/// ```
#[derive(Clone, Debug, Default)]
pub struct PolicyBuilder {
    doc: PolicyDoc,
}

impl PolicyBuilder {
    /// An empty policy (which denies everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a role.
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.doc.roles.push(role);
        self
    }

    /// Adds a policy-side role assignment.
    #[must_use]
    pub fn assignment(mut self, assignment: Assignment) -> Self {
        self.doc.assignments.push(assignment);
        self
    }

    /// Adds a policy-wide argument binding.
    #[must_use]
    pub fn binding(mut self, binding: Binding) -> Self {
        self.doc.bindings.push(binding);
        self
    }

    /// Adds every role, assignment and binding of `policy_toml` (for example the
    /// [default policy](crate::DEFAULT_POLICY_TOML)) so that code can extend it.
    pub fn extend_toml(mut self, policy_toml: &str, source: &str) -> Result<Self, LoadError> {
        let doc = crate::source::parse_toml(policy_toml, source)?;
        self.doc.roles.extend(doc.roles);
        self.doc.assignments.extend(doc.assignments);
        self.doc.bindings.extend(doc.bindings);
        Ok(self)
    }

    /// Validates and compiles the policy; every problem is reported at once.
    pub fn build(self) -> Result<Policy, LoadError> {
        Policy::compile(self.doc)
    }
}
