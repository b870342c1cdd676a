//! The question and the answer: [`Request`], [`Decision`], [`Effect`] and [`Reason`].

use std::fmt;

use serde_json::{Map, Value};

use crate::compile::RuleInfo;

/// What a subject wants to do: an action on a resource, maybe in a tenant, with arguments.
///
/// Borrowed throughout so that building one costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub(crate) action: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) arguments: Option<&'a Map<String, Value>>,
}

impl<'a> Request<'a> {
    /// `action` (`tools/call`, `resources/read`, `admin:keys.write`, ...) on `resource` (a tool
    /// name, resource URI or prompt name; empty for list actions).
    pub fn new(action: &'a str, resource: &'a str) -> Self {
        Self {
            action,
            resource,
            tenant: None,
            arguments: None,
        }
    }

    /// The tenant the call acts in, when it is not the caller's own.
    #[must_use]
    pub fn tenant(mut self, tenant: &'a str) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The tenant the call acts in, if any.
    #[must_use]
    pub fn maybe_tenant(mut self, tenant: Option<&'a str>) -> Self {
        self.tenant = tenant;
        self
    }

    /// The tool arguments, checked against argument bindings.
    #[must_use]
    pub fn arguments(mut self, arguments: &'a Map<String, Value>) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// The action.
    pub fn action(&self) -> &'a str {
        self.action
    }

    /// The resource.
    pub fn resource(&self) -> &'a str {
        self.resource
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request must be refused.
    Deny,
}

/// What was wrong with a tool argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArgumentProblem {
    /// The argument is absent.
    Missing,
    /// The argument is not a string.
    NotAString,
    /// The argument's value does not satisfy the constraint.
    Mismatch,
}

/// Why a decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reason<'p> {
    /// An allow rule matched and no deny rule did.
    Allowed {
        /// The role held by the subject through which the rule applies.
        role: &'p str,
        /// The rule.
        rule: &'p RuleInfo,
    },
    /// A deny rule matched (deny always wins).
    DeniedByRule {
        /// The role held by the subject through which the rule applies.
        role: &'p str,
        /// The rule.
        rule: &'p RuleInfo,
    },
    /// No allow rule covers the request (the default).
    NoMatchingRule,
    /// An allow rule matched but requires a scope the subject lacks.
    MissingScope {
        /// The role held by the subject.
        role: &'p str,
        /// The rule.
        rule: &'p RuleInfo,
        /// The first missing scope.
        scope: &'p str,
    },
    /// A tool argument violates a binding, either a rule's or a policy-wide one.
    ArgumentViolation {
        /// The rule or binding holding the constraint.
        rule: &'p RuleInfo,
        /// The argument's name.
        argument: &'p str,
        /// What is wrong with it.
        problem: ArgumentProblem,
    },
    /// An allow rule matched, but only through a role that does not apply in the tenant the
    /// call acts in, and the rule is not cross-tenant.
    CrossTenant {
        /// The role held by the subject (in another tenant).
        role: &'p str,
        /// The rule.
        rule: &'p RuleInfo,
    },
}

impl Reason<'_> {
    /// Orders the failures an allow rule can meet: the most useful explanation wins.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Self::MissingScope { .. } => 4,
            Self::ArgumentViolation { .. } => 3,
            Self::CrossTenant { .. } => 2,
            Self::NoMatchingRule => 1,
            Self::Allowed { .. } | Self::DeniedByRule { .. } => 0,
        }
    }
}

/// The answer to a [`Request`]: allow or deny, and why.
///
/// Borrows from the policy that made it; it is `Copy` and never allocates. Its `Display`
/// explains the outcome for logs and audit records (never send it to the client: it names
/// rules and roles).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision<'p> {
    reason: Reason<'p>,
}

impl<'p> Decision<'p> {
    pub(crate) fn new(reason: Reason<'p>) -> Self {
        Self { reason }
    }

    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        match self.reason {
            Reason::Allowed { .. } => Effect::Allow,
            _ => Effect::Deny,
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect() == Effect::Allow
    }

    /// Why.
    pub fn reason(&self) -> Reason<'p> {
        self.reason
    }

    /// The rule that decided, if one did.
    pub fn rule(&self) -> Option<&'p RuleInfo> {
        match self.reason {
            Reason::Allowed { rule, .. }
            | Reason::DeniedByRule { rule, .. }
            | Reason::MissingScope { rule, .. }
            | Reason::ArgumentViolation { rule, .. }
            | Reason::CrossTenant { rule, .. } => Some(rule),
            Reason::NoMatchingRule => None,
        }
    }

    /// The scope whose absence caused the denial, for an `insufficient_scope` challenge.
    pub fn missing_scope(&self) -> Option<&'p str> {
        match self.reason {
            Reason::MissingScope { scope, .. } => Some(scope),
            _ => None,
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            // The allowed case is formatted for every audited call: no format machinery.
            Reason::Allowed { role, rule } => {
                f.write_str("allowed via role `")?;
                f.write_str(role)?;
                f.write_str("` by ")?;
                fmt::Display::fmt(rule, f)
            }
            Reason::DeniedByRule { role, rule } => {
                write!(f, "denied via role `{role}` by {rule}")
            }
            Reason::NoMatchingRule => f.write_str("denied: no rule allows it"),
            Reason::MissingScope { role, rule, scope } => write!(
                f,
                "denied: scope `{scope}` is missing for {rule} (via role `{role}`)"
            ),
            Reason::ArgumentViolation {
                rule,
                argument,
                problem,
            } => {
                let what = match problem {
                    ArgumentProblem::Missing => "is missing",
                    ArgumentProblem::NotAString => "is not a string",
                    ArgumentProblem::Mismatch => "does not satisfy its binding",
                };
                write!(f, "denied: argument `{argument}` {what} ({rule})")
            }
            Reason::CrossTenant { role, rule } => write!(
                f,
                "denied: role `{role}` does not apply in the requested tenant and {rule} is not cross-tenant"
            ),
        }
    }
}

/// Which kind of list [`Policy::filter`](crate::Policy::filter) filters; an item is kept when
/// the subject may use it with the matching call action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Tools, checked against `tools/call`.
    Tools,
    /// Resources, checked against `resources/read`.
    Resources,
    /// Prompts, checked against `prompts/get`.
    Prompts,
}

impl ListKind {
    /// The action an item of this list is checked against.
    pub fn action(self) -> &'static str {
        match self {
            Self::Tools => "tools/call",
            Self::Resources => "resources/read",
            Self::Prompts => "prompts/get",
        }
    }
}
