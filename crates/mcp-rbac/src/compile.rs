//! The compiled [`Policy`]: validation, inheritance flattening, lookup indexes and decisions.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::decision::{ArgumentProblem, Decision, ListKind, Reason, Request};
use crate::error::{Diagnostic, LoadError, Location};
use crate::fxhash::FxHashMap;
use crate::model::{BUILDER_SOURCE, PolicyDoc, Rule};
use crate::pattern::{Pattern, PatternKind};
use crate::source::{index_path, key_path};
use crate::subject::Subject;

/// The MCP methods a rule may name (besides `admin:<area>.<verb>` actions).
pub const MCP_ACTIONS: &[&str] = &[
    "tools/call",
    "tools/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "logging/setLevel",
];

/// Whether `action` is an MCP method of [`MCP_ACTIONS`] or an `admin:<area>.<verb>` action.
pub fn is_known_action(action: &str) -> bool {
    if MCP_ACTIONS.contains(&action) {
        return true;
    }
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    action
        .strip_prefix("admin:")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(area, verb)| word(area) && word(verb))
}

/// What kind of statement a [`RuleInfo`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// An allow rule of a role.
    Allow,
    /// A deny rule of a role.
    Deny,
    /// A policy-wide argument binding.
    Binding,
}

/// How an argument is constrained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ArgConstraint {
    /// Equal to the tenant the call acts in.
    Tenant,
    /// Equal to the caller's subject id.
    Subject,
    /// Matches a pattern, and holds no `..` path segment.
    Pattern(Pattern),
}

/// A compiled rule or binding, with where it came from; decisions point at one.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    role: Box<str>,
    kind: RuleKind,
    index: usize,
    actions: Box<[Pattern]>,
    resources: Box<[Pattern]>,
    scopes: Box<[Box<str>]>,
    args: Box<[(Box<str>, ArgConstraint)]>,
    cross_tenant: bool,
    description: Option<Box<str>>,
    location: Location,
    /// How the rule is named in decisions (its `Display`), made once when it is compiled:
    /// an audited decision names its rule on every request.
    label: Box<str>,
}

impl RuleInfo {
    /// The role that defines the rule (empty for a binding).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Allow, deny or binding.
    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// The rule's position in its role's `allow` or `deny` list, or in `bindings`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Where the rule is written.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The rule's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The scopes the rule requires.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// Whether the rule applies across tenants.
    pub fn is_cross_tenant(&self) -> bool {
        self.cross_tenant
    }

    /// Whether the rule's action and resource patterns cover `action` on `resource`
    /// (conditions such as scopes and arguments aside).
    pub fn covers(&self, action: &str, resource: &str) -> bool {
        self.actions.iter().any(|p| p.matches(action))
            && self.resources.iter().any(|p| p.matches(resource))
    }
}

impl fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The text [`RuleInfo`] displays.
fn rule_label(
    kind: RuleKind,
    index: usize,
    role: &str,
    location: &Location,
    description: Option<&str>,
) -> Box<str> {
    use fmt::Write as _;
    let mut label = String::new();
    // Writing into a String cannot fail.
    let _ = match kind {
        RuleKind::Binding => write!(label, "binding {index} at {location}"),
        RuleKind::Allow | RuleKind::Deny => {
            let kind = if kind == RuleKind::Allow {
                "allow"
            } else {
                "deny"
            };
            write!(label, "{kind} rule {index} of role `{role}` at {location}")
        }
    };
    if let Some(d) = description {
        let _ = write!(label, " ({d})");
    }
    label.into()
}

type RuleId = u32;

/// Subject id -> (tenant, role id) grants made by the policy itself.
type Assignments = FxHashMap<Box<str>, Vec<(Option<Box<str>>, u32)>>;

/// An action pattern as an index entry holds it: exact actions are interned to numbers so
/// that checking one is an integer comparison, without touching the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActionKey {
    /// The interned id of an exact action.
    Exact(u32),
    /// The position of a wildcard action pattern in [`Actions::patterns`].
    Pattern(u32),
}

/// The policy's distinct action patterns.
#[derive(Clone, Debug, Default)]
struct Actions {
    ids: FxHashMap<Box<str>, u32>,
    patterns: Vec<Pattern>,
}

impl Actions {
    fn key(&mut self, pattern: &Pattern) -> ActionKey {
        if pattern.is_exact() {
            let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
            ActionKey::Exact(*self.ids.entry(pattern.as_str().into()).or_insert(next))
        } else {
            let at = match self.patterns.iter().position(|p| p == pattern) {
                Some(at) => at,
                None => {
                    self.patterns.push(pattern.clone());
                    self.patterns.len() - 1
                }
            };
            ActionKey::Pattern(u32::try_from(at).unwrap_or(u32::MAX))
        }
    }

    fn query<'a>(&'a self, action: &'a str) -> ActionQuery<'a> {
        ActionQuery {
            id: self.ids.get(action).copied(),
            action,
            patterns: &self.patterns,
        }
    }
}

/// The request's action, resolved once per decision.
struct ActionQuery<'a> {
    id: Option<u32>,
    action: &'a str,
    patterns: &'a [Pattern],
}

impl ActionQuery<'_> {
    #[inline]
    fn matches(&self, key: ActionKey) -> bool {
        match key {
            ActionKey::Exact(id) => self.id == Some(id),
            ActionKey::Pattern(at) => self
                .patterns
                .get(at as usize)
                .is_some_and(|p| p.matches(self.action)),
        }
    }
}

/// One (action pattern, resource pattern) pair of a rule, as stored in an [`Index`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The role that defines the rule (`u32::MAX` for bindings).
    role: u32,
    rule: RuleId,
    action: ActionKey,
    deny: bool,
    /// For prefix entries: whether the rest of the resource may contain `/`.
    deep: bool,
}

/// A bucket of entries whose resource pattern matched; `shallow` says whether the rest of
/// the resource after a prefix holds no `/` (always true for non-prefix buckets).
type BucketFn<'f> = dyn FnMut(&[Entry], bool) -> bool + 'f;

/// Every rule of the policy, found by resource: exact resources are one hash lookup, prefix
/// patterns one lookup per distinct prefix length, and general wildcards are grouped by
/// pattern and found by their literal tail (one lookup per distinct tail length) before the
/// pattern itself is tested. Buckets are sorted by role, so
/// the roles a subject holds are found by binary search; rules are stored once, however
/// many roles inherit them.
#[derive(Clone, Debug, Default)]
struct Index {
    any: Vec<Entry>,
    exact: FxHashMap<Box<str>, Vec<Entry>>,
    prefix: FxHashMap<Box<str>, Vec<Entry>>,
    /// The distinct prefix lengths in `prefix`, ascending.
    prefix_lens: Vec<usize>,
    /// Wildcard patterns by the literal text after their last wildcard.
    tails: FxHashMap<Box<str>, Vec<(Pattern, Vec<Entry>)>>,
    /// The distinct tail lengths in `tails`, ascending (0 for patterns ending in `*`).
    tail_lens: Vec<usize>,
}

impl Index {
    fn insert(&mut self, role: u32, rule: RuleId, info: &RuleInfo, actions: &mut Actions) {
        let deny = info.kind == RuleKind::Deny;
        for action in &info.actions {
            let action = actions.key(action);
            for pattern in &info.resources {
                let mut entry = Entry {
                    role,
                    rule,
                    action,
                    deny,
                    deep: false,
                };
                match pattern.kind() {
                    PatternKind::Any => self.any.push(entry),
                    PatternKind::Exact => self
                        .exact
                        .entry(pattern.as_str().into())
                        .or_default()
                        .push(entry),
                    PatternKind::Prefix { prefix, deep } => {
                        if let Err(at) = self.prefix_lens.binary_search(&prefix.len()) {
                            self.prefix_lens.insert(at, prefix.len());
                        }
                        entry.deep = *deep;
                        self.prefix.entry(prefix.clone()).or_default().push(entry);
                    }
                    PatternKind::Glob(_) => {
                        let tail = pattern.glob_tail().unwrap_or_default();
                        if let Err(at) = self.tail_lens.binary_search(&tail.len()) {
                            self.tail_lens.insert(at, tail.len());
                        }
                        let globs = self.tails.entry(tail.into()).or_default();
                        match globs.iter_mut().find(|(p, _)| p == pattern) {
                            Some((_, entries)) => entries.push(entry),
                            None => globs.push((pattern.clone(), vec![entry])),
                        }
                    }
                }
            }
        }
    }

    /// Sorts every bucket by role (stable: rules keep their order within a role).
    fn finish(&mut self) {
        let buckets = std::iter::once(&mut self.any)
            .chain(self.exact.values_mut())
            .chain(self.prefix.values_mut())
            .chain(self.tails.values_mut().flatten().map(|(_, e)| e));
        for bucket in buckets {
            bucket.sort_by_key(|e| e.role);
            bucket.shrink_to_fit();
        }
    }

    fn is_empty(&self) -> bool {
        self.any.is_empty()
            && self.exact.is_empty()
            && self.prefix.is_empty()
            && self.tails.is_empty()
    }

    /// Calls `f` with every bucket whose pattern matches `resource` until it returns true;
    /// returns whether it did.
    #[inline]
    fn buckets(&self, resource: &str, f: &mut BucketFn<'_>) -> bool {
        if !self.any.is_empty() && f(&self.any, true) {
            return true;
        }
        if let Some(bucket) = self.exact.get(resource)
            && f(bucket, true)
        {
            return true;
        }
        for &len in &self.prefix_lens {
            if len > resource.len() {
                break;
            }
            let (Some(head), Some(rest)) = (resource.get(..len), resource.get(len..)) else {
                continue;
            };
            if let Some(bucket) = self.prefix.get(head)
                && f(bucket, !rest.contains('/'))
            {
                return true;
            }
        }
        for &len in &self.tail_lens {
            let Some(tail) = resource
                .len()
                .checked_sub(len)
                .and_then(|start| resource.get(start..))
            else {
                if len > resource.len() {
                    break;
                }
                continue;
            };
            if let Some(globs) = self.tails.get(tail)
                && globs
                    .iter()
                    .any(|(pattern, bucket)| pattern.matches(resource) && f(bucket, true))
            {
                return true;
            }
        }
        false
    }
}

/// Calls `f(entry, grant)` for every entry of `bucket` that matches the action and belongs
/// to a role in the closure (the role and its ancestors) of one of `grants`, until `f`
/// returns true.
#[inline]
fn scan(
    roles: &[CompiledRole],
    bucket: &[Entry],
    shallow: bool,
    grants: &[Grant],
    action: &ActionQuery<'_>,
    f: &mut impl FnMut(&Entry, &Grant) -> bool,
) -> bool {
    let mut visit =
        |e: &Entry, g: &Grant| (e.deep || shallow) && action.matches(e.action) && f(e, g);
    for grant in grants {
        let Some(closure) = roles.get(grant.role as usize).map(|r| &*r.closure) else {
            continue;
        };
        if bucket.len() <= closure.len() {
            for e in bucket {
                if closure.binary_search(&e.role).is_ok() && visit(e, grant) {
                    return true;
                }
            }
        } else {
            for &role in closure {
                let start = bucket.partition_point(|e| e.role < role);
                let same = bucket.get(start..).unwrap_or(&[]);
                for e in same.iter().take_while(|e| e.role == role) {
                    if visit(e, grant) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

#[derive(Clone, Debug)]
struct CompiledRole {
    name: Box<str>,
    description: Option<Box<str>>,
    parents: Vec<Box<str>>,
    /// This role's id and those of all its ancestors, sorted.
    closure: Box<[u32]>,
}

/// A validated, compiled policy: ask it with [`decide`](Self::decide) and
/// [`filter`](Self::filter).
///
/// Inheritance is flattened and every role's rules are indexed by action and resource
/// (hash lookups for exact names, a hash per distinct prefix length for prefix patterns), so
/// a decision does not scan the rules; it is synchronous and does not allocate.
///
/// ```
/// use mcp_rbac::{BasicSubject, Policy, Request};
///
/// let policy = Policy::from_toml_str(
///     r#"
///     [roles.viewer]
///     allow = [{ action = "tools/call", resource = "weather.*" }]
///     deny = [{ action = "tools/call", resource = "weather.admin" }]
///     "#,
///     "inline.toml",
/// )?;
/// let bob = BasicSubject::new("bob").role("viewer");
/// let ok = policy.decide(&bob, &Request::new("tools/call", "weather.forecast"));
/// assert!(ok.is_allowed());
/// let no = policy.decide(&bob, &Request::new("tools/call", "weather.admin"));
/// assert!(!no.is_allowed());
/// assert_eq!(no.rule().unwrap().location().line(), 4);
/// # Ok::<(), mcp_rbac::LoadError>(())
/// ```
#[derive(Clone)]
pub struct Policy {
    source: Arc<str>,
    rules: Vec<RuleInfo>,
    roles: Vec<CompiledRole>,
    role_ids: FxHashMap<Box<str>, u32>,
    /// Subject id -> (tenant, role id) grants made by the policy itself.
    assignments: Assignments,
    index: Index,
    bindings: Index,
    actions: Actions,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("source", &self.source)
            .field("roles", &self.roles.len())
            .field("rules", &self.rules.len())
            .field("assignments", &self.assignments.len())
            .finish_non_exhaustive()
    }
}

/// One applicable grant while deciding.
#[derive(Clone, Copy, Debug)]
struct Grant {
    role: u32,
    /// Whether the grant applies in the tenant the call acts in (otherwise only
    /// cross-tenant rules of the role can allow).
    in_tenant: bool,
}

impl Policy {
    /// Parses and compiles a TOML policy; `source` names it in locations.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, LoadError> {
        Self::compile(crate::source::parse_toml(text, source)?)
    }

    /// Parses and compiles a JSON policy (the same schema as TOML; `permissions` lists of
    /// tool-name patterns, as in permissions.json files, are accepted).
    pub fn from_json_str(text: &str, source: &str) -> Result<Self, LoadError> {
        Self::compile(crate::source::parse_json(text, source)?)
    }

    /// Reads a `.toml` or `.json` policy file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text, &name),
            Some("json") => Self::from_json_str(&text, &name),
            _ => Err(LoadError::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }

    /// The predefined roles shipped with the crate ([`DEFAULT_POLICY_TOML`](crate::DEFAULT_POLICY_TOML)).
    pub fn default_roles() -> Result<Self, LoadError> {
        Self::from_toml_str(crate::DEFAULT_POLICY_TOML, "mcp-rbac/policies/default.toml")
    }

    /// A policy without roles: it denies everything.
    pub fn deny_all() -> Self {
        Self {
            source: BUILDER_SOURCE.into(),
            rules: Vec::new(),
            roles: Vec::new(),
            role_ids: FxHashMap::default(),
            assignments: FxHashMap::default(),
            index: Index::default(),
            bindings: Index::default(),
            actions: Actions::default(),
        }
    }

    /// The name of the policy's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the roles, in definition order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(|r| &*r.name)
    }

    /// A role's description and direct parents, if the role exists.
    pub fn role(&self, name: &str) -> Option<(Option<&str>, Vec<&str>)> {
        let role = self.roles.get(*self.role_ids.get(name)? as usize)?;
        Some((
            role.description.as_deref(),
            role.parents.iter().map(|p| &**p).collect(),
        ))
    }

    /// Every compiled rule and binding.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    pub(crate) fn compile(doc: PolicyDoc) -> Result<Self, LoadError> {
        Compiler::new(doc).run()
    }

    /// Decides whether `subject` may make `request`.
    ///
    /// Deny rules of every applicable role win over any allow; without a matching allow the
    /// answer is deny. A role applies when the subject holds it in the tenant the call acts
    /// in (the request's tenant, else the subject's home tenant); a role held in the home
    /// tenant allows a call in another tenant only through a rule marked `cross_tenant`.
    pub fn decide<S: Subject + ?Sized>(&self, subject: &S, request: &Request<'_>) -> Decision<'_> {
        self.decide_inner(subject, request, true)
    }

    /// Keeps the items of an upstream list (`tools/list`, `resources/list`,
    /// `prompts/list`) that `subject` may use, in order. `name` gives an item's tool name,
    /// URI or prompt name. Argument bindings are not checked (there are no arguments yet);
    /// scopes and tenants are.
    ///
    /// ```
    /// use mcp_rbac::{BasicSubject, ListKind, Policy};
    ///
    /// let policy = Policy::from_toml_str(
    ///     r#"roles.dev.allow = ["fs/read_*", "git.*"]"#,
    ///     "inline.toml",
    /// )?;
    /// let dev = BasicSubject::new("dev").role("dev");
    /// let tools = vec!["fs/read_file", "fs/write_file", "git.log"];
    /// let visible = policy.filter(&dev, ListKind::Tools, None, tools, |t| t);
    /// assert_eq!(visible, ["fs/read_file", "git.log"]);
    /// # Ok::<(), mcp_rbac::LoadError>(())
    /// ```
    pub fn filter<S, T, F>(
        &self,
        subject: &S,
        kind: ListKind,
        tenant: Option<&str>,
        mut items: Vec<T>,
        name: F,
    ) -> Vec<T>
    where
        S: Subject + ?Sized,
        F: Fn(&T) -> &str,
    {
        items.retain(|item| {
            let request = Request::new(kind.action(), name(item)).maybe_tenant(tenant);
            self.decide_inner(subject, &request, false).is_allowed()
        });
        items
    }

    fn grants<'s, S: Subject + ?Sized>(
        &'s self,
        subject: &'s S,
        acting: Option<&'s str>,
        cross: bool,
    ) -> impl Iterator<Item = Grant> + 's {
        let from_subject = subject
            .role_grants()
            .filter_map(move |g| Some((self.role_ids.get(g.role).copied()?, g.tenant)));
        let from_policy = (!self.assignments.is_empty())
            .then(|| self.assignments.get(subject.subject_id()))
            .flatten()
            .into_iter()
            .flatten()
            .map(|(tenant, role)| (*role, tenant.as_deref()));
        from_subject
            .chain(from_policy)
            .filter_map(move |(role, tenant)| match tenant {
                None => Some(Grant {
                    role,
                    in_tenant: !cross,
                }),
                Some(t) if Some(t) == acting => Some(Grant {
                    role,
                    in_tenant: true,
                }),
                Some(_) => None,
            })
    }

    fn decide_inner<S: Subject + ?Sized>(
        &self,
        subject: &S,
        request: &Request<'_>,
        check_args: bool,
    ) -> Decision<'_> {
        let home = subject.home_tenant();
        let acting = request.tenant.or(home);
        let cross = match (request.tenant, home) {
            (Some(target), Some(home)) => target != home,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let action = self.actions.query(request.action);
        let mut allowed: Option<Reason<'_>> = None;
        let mut failure = Reason::NoMatchingRule;
        // Grants are handled in chunks held on the stack, so that deciding never allocates;
        // a subject rarely has more than one chunk.
        const CHUNK: usize = 8;
        let mut grants = self.grants(subject, acting, cross);
        let mut chunk = [Grant {
            role: 0,
            in_tenant: false,
        }; CHUNK];
        loop {
            let mut len = 0;
            for (slot, grant) in chunk.iter_mut().zip(grants.by_ref()) {
                *slot = grant;
                len += 1;
            }
            let Some(held) = chunk.get(..len).filter(|held| !held.is_empty()) else {
                break;
            };
            // A deny ends the decision at once (deny wins); the first allow whose
            // conditions hold is kept, and the search goes on for denies.
            let mut deny = None;
            self.index
                .buckets(request.resource, &mut |bucket, shallow| {
                    scan(
                        &self.roles,
                        bucket,
                        shallow,
                        held,
                        &action,
                        &mut |entry, grant| {
                            let (Some(rule), Some(role)) = (
                                self.rules.get(entry.rule as usize),
                                self.roles.get(grant.role as usize),
                            ) else {
                                return false;
                            };
                            if entry.deny {
                                deny = Some((&*role.name, rule));
                                return true;
                            }
                            if allowed.is_none() {
                                let outcome = self.check_allow(
                                    subject, request, acting, &role.name, rule, grant, check_args,
                                );
                                if let Reason::Allowed { .. } = outcome {
                                    allowed = Some(outcome);
                                } else if outcome.rank() > failure.rank() {
                                    failure = outcome;
                                }
                            }
                            false
                        },
                    )
                });
            if let Some((role, rule)) = deny {
                return Decision::new(Reason::DeniedByRule { role, rule });
            }
            if len < CHUNK {
                break;
            }
        }
        let Some(allowed) = allowed else {
            return Decision::new(failure);
        };
        if check_args && !self.bindings.is_empty() {
            let mut violation = None;
            self.bindings
                .buckets(request.resource, &mut |bucket, shallow| {
                    bucket.iter().any(|e| {
                        (e.deep || shallow)
                            && action.matches(e.action)
                            && self.rules.get(e.rule as usize).is_some_and(|rule| {
                                violation = check_args_of(rule, subject, request, acting);
                                violation.is_some()
                            })
                    })
                });
            if let Some(v) = violation {
                return Decision::new(v);
            }
        }
        Decision::new(allowed)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "private helper of decide_inner; bundling the arguments would only add a struct"
    )]
    fn check_allow<'p, S: Subject + ?Sized>(
        &'p self,
        subject: &S,
        request: &Request<'_>,
        acting: Option<&str>,
        role: &'p str,
        rule: &'p RuleInfo,
        grant: &Grant,
        check_args: bool,
    ) -> Reason<'p> {
        if !grant.in_tenant && !rule.cross_tenant {
            return Reason::CrossTenant { role, rule };
        }
        if let Some(scope) = rule.scopes.iter().find(|s| !subject.has_scope(s)) {
            return Reason::MissingScope { role, rule, scope };
        }
        if check_args && let Some(v) = check_args_of(rule, subject, request, acting) {
            return v;
        }
        Reason::Allowed { role, rule }
    }
}

/// The first argument of `request` that violates a constraint of `rule`, if any.
fn check_args_of<'p, S: Subject + ?Sized>(
    rule: &'p RuleInfo,
    subject: &S,
    request: &Request<'_>,
    acting: Option<&str>,
) -> Option<Reason<'p>> {
    rule.args.iter().find_map(|(name, constraint)| {
        let problem = match request.arguments.and_then(|args| args.get(&**name)) {
            None => Some(ArgumentProblem::Missing),
            Some(Value::String(value)) => {
                let ok = match constraint {
                    ArgConstraint::Tenant => acting == Some(value.as_str()),
                    ArgConstraint::Subject => subject.subject_id() == value,
                    ArgConstraint::Pattern(p) => safe_path(value) && p.matches(value),
                };
                (!ok).then_some(ArgumentProblem::Mismatch)
            }
            Some(_) => Some(ArgumentProblem::NotAString),
        };
        problem.map(|problem| Reason::ArgumentViolation {
            rule,
            argument: name,
            problem,
        })
    })
}

/// Rejects values that could escape a pattern through path tricks: `.` or `..` segments,
/// backslashes and NUL.
fn safe_path(value: &str) -> bool {
    !value.contains(['\\', '\0']) && !value.split('/').any(|seg| seg == ".." || seg == ".")
}

/// Turns a [`PolicyDoc`] into a [`Policy`], collecting every error.
struct Compiler {
    doc: PolicyDoc,
    source: Arc<str>,
    diagnostics: Vec<Diagnostic>,
    rules: Vec<RuleInfo>,
}

impl Compiler {
    fn new(doc: PolicyDoc) -> Self {
        let source = doc.source.clone().unwrap_or_else(|| BUILDER_SOURCE.into());
        Self {
            doc,
            source,
            diagnostics: Vec::new(),
            rules: Vec::new(),
        }
    }

    fn locate(&self, given: Option<&Location>, path: &str) -> Location {
        given
            .cloned()
            .unwrap_or_else(|| Location::new(self.source.clone(), 0, 0, path))
    }

    fn error(&mut self, location: Location, message: String) {
        self.diagnostics.push(Diagnostic { location, message });
    }

    /// Validates and compiles one rule; returns its id.
    fn rule(
        &mut self,
        role: &str,
        kind: RuleKind,
        index: usize,
        rule: &Rule,
        path: &str,
    ) -> Option<RuleId> {
        let location = self.locate(rule.location.as_ref(), path);
        let mut ok = true;
        let mut actions = Vec::new();
        for action in &rule.actions {
            match Pattern::parse(action) {
                Ok(p) => {
                    let known = if p.is_exact() {
                        is_known_action(action)
                    } else {
                        action.starts_with("admin:")
                            || matches!(p.kind(), PatternKind::Any)
                            || MCP_ACTIONS.iter().any(|a| p.matches(a))
                    };
                    if known {
                        actions.push(p);
                    } else {
                        ok = false;
                        self.error(
                            location.clone(),
                            format!("unknown action `{action}` (expected an MCP method such as `tools/call`, or `admin:<area>.<verb>`)"),
                        );
                    }
                }
                Err(e) => {
                    ok = false;
                    self.error(
                        location.clone(),
                        format!("bad action pattern `{action}`: {e}"),
                    );
                }
            }
        }
        let mut resources = Vec::new();
        if rule.resources.is_empty() {
            resources.push(Pattern::parse("*").ok()?);
        }
        for resource in &rule.resources {
            match Pattern::parse(resource) {
                Ok(p) => resources.push(p),
                Err(e) => {
                    ok = false;
                    self.error(
                        location.clone(),
                        format!("bad resource pattern `{resource}`: {e}"),
                    );
                }
            }
        }
        let mut args = Vec::new();
        for (name, constraint) in &rule.args {
            let parsed = match constraint.as_str() {
                "$tenant" => Ok(ArgConstraint::Tenant),
                "$subject" => Ok(ArgConstraint::Subject),
                other if other.starts_with('$') => Err(format!(
                    "unknown variable `{other}` for argument `{name}` (expected `$tenant` or `$subject`)"
                )),
                other => Pattern::parse(other)
                    .map(ArgConstraint::Pattern)
                    .map_err(|e| format!("bad pattern for argument `{name}`: {e}")),
            };
            match parsed {
                Ok(c) => args.push((name.as_str().into(), c)),
                Err(message) => {
                    ok = false;
                    self.error(location.clone(), message);
                }
            }
        }
        if kind == RuleKind::Deny
            && (!rule.scopes.is_empty() || !rule.args.is_empty() || rule.cross_tenant)
        {
            ok = false;
            self.error(
                location.clone(),
                "a deny rule always applies: `scopes`, `args` and `cross_tenant` are for allow rules".into(),
            );
        }
        if kind == RuleKind::Binding {
            if rule.args.is_empty() {
                ok = false;
                self.error(location.clone(), "a binding needs `args`".into());
            }
            if !rule.scopes.is_empty() || rule.cross_tenant {
                ok = false;
                self.error(
                    location.clone(),
                    "a binding holds only `action`, `resource`, `args` and `description`".into(),
                );
            }
        }
        if rule
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.contains([' ', '"']))
        {
            ok = false;
            self.error(
                location.clone(),
                "a scope must be a non-empty token without spaces or quotes".into(),
            );
        }
        if !ok {
            return None;
        }
        let id = RuleId::try_from(self.rules.len()).ok()?;
        let description = rule.description.as_deref();
        self.rules.push(RuleInfo {
            label: rule_label(kind, index, role, &location, description),
            role: role.into(),
            kind,
            index,
            actions: actions.into(),
            resources: resources.into(),
            scopes: rule.scopes.iter().map(|s| s.as_str().into()).collect(),
            args: args.into(),
            cross_tenant: rule.cross_tenant,
            description: description.map(Into::into),
            location,
        });
        Some(id)
    }

    fn run(mut self) -> Result<Policy, LoadError> {
        let doc = std::mem::take(&mut self.doc);
        // Role names and ids.
        let mut role_ids: FxHashMap<Box<str>, u32> = FxHashMap::default();
        for (i, role) in doc.roles.iter().enumerate() {
            let path = key_path("roles", &role.name);
            let location = self.locate(role.location.as_ref(), &path);
            if role.name.is_empty() || role.name.contains(char::is_whitespace) {
                self.error(
                    location,
                    format!(
                        "role name `{}` must be non-empty and without spaces",
                        role.name
                    ),
                );
            } else if role_ids.contains_key(role.name.as_str()) {
                self.error(location, format!("role `{}` is defined twice", role.name));
            } else {
                role_ids.insert(
                    role.name.as_str().into(),
                    u32::try_from(i).unwrap_or(u32::MAX),
                );
            }
        }
        // Parents must exist.
        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); doc.roles.len()];
        for (i, role) in doc.roles.iter().enumerate() {
            for (j, (parent, at)) in role.inherits.iter().enumerate() {
                let path = index_path(&key_path(&key_path("roles", &role.name), "inherits"), j);
                match role_ids.get(parent.as_str()) {
                    Some(&p) => {
                        if let Some(list) = parents.get_mut(i) {
                            list.push(p as usize);
                        }
                    }
                    None => {
                        let location = self.locate(at.as_ref(), &path);
                        self.error(
                            location,
                            format!("role `{}` inherits unknown role `{parent}`", role.name),
                        );
                    }
                }
            }
        }
        // Cycles.
        let order = self.topological(&doc, &parents);
        // Rules.
        let mut own: Vec<(Vec<RuleId>, Vec<RuleId>)> = Vec::with_capacity(doc.roles.len());
        for role in &doc.roles {
            let base = key_path("roles", &role.name);
            let mut lists = (Vec::new(), Vec::new());
            for (kind, rules, list, field) in [
                (RuleKind::Allow, &role.allow, &mut lists.0, "allow"),
                (RuleKind::Deny, &role.deny, &mut lists.1, "deny"),
            ] {
                for (i, rule) in rules.iter().enumerate() {
                    let path = index_path(&key_path(&base, field), i);
                    if let Some(id) = self.rule(&role.name, kind, i, rule, &path) {
                        list.push(id);
                    }
                }
            }
            own.push(lists);
        }
        let mut actions = Actions::default();
        let mut bindings = Index::default();
        for (i, binding) in doc.bindings.iter().enumerate() {
            let path = index_path("bindings", i);
            if let Some(id) = self.rule("", RuleKind::Binding, i, &binding.rule, &path)
                && let Some(info) = self.rules.get(id as usize)
            {
                bindings.insert(u32::MAX, id, info, &mut actions);
            }
        }
        // Assignments.
        let mut assignments: Assignments = FxHashMap::default();
        for (i, a) in doc.assignments.iter().enumerate() {
            let path = index_path("assignments", i);
            let location = self.locate(a.location.as_ref(), &path);
            if a.subject.is_empty() {
                self.error(
                    location.clone(),
                    "an assignment needs a non-empty `subject`".into(),
                );
            }
            for (j, (role, at)) in a.roles.iter().enumerate() {
                match role_ids.get(role.as_str()) {
                    Some(&id) => assignments
                        .entry(a.subject.as_str().into())
                        .or_default()
                        .push((a.tenant.as_deref().map(Into::into), id)),
                    None => {
                        let location =
                            self.locate(at.as_ref(), &index_path(&key_path(&path, "roles"), j));
                        self.error(
                            location,
                            format!("assignment for `{}` names unknown role `{role}`", a.subject),
                        );
                    }
                }
            }
        }
        if !self.diagnostics.is_empty() {
            self.diagnostics
                .sort_by_key(|d| (d.location.line(), d.location.column()));
            return Err(LoadError::Invalid(self.diagnostics));
        }
        // Each role's closure: itself and every ancestor (parents come first in `order`).
        let mut closures: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); doc.roles.len()];
        for &i in &order {
            let mut set = BTreeSet::from([u32::try_from(i).unwrap_or(u32::MAX)]);
            for &p in parents.get(i).into_iter().flatten() {
                if let Some(parent) = closures.get(p) {
                    set.extend(parent.iter().copied());
                }
            }
            if let Some(slot) = closures.get_mut(i) {
                *slot = set;
            }
        }
        // Every rule once, under the role that defines it.
        let mut index = Index::default();
        for (i, (allow, deny)) in own.iter().enumerate() {
            let role = u32::try_from(i).unwrap_or(u32::MAX);
            for &id in allow.iter().chain(deny) {
                if let Some(info) = self.rules.get(id as usize) {
                    index.insert(role, id, info, &mut actions);
                }
            }
        }
        index.finish();
        bindings.finish();
        let roles = doc
            .roles
            .iter()
            .zip(closures)
            .map(|(role, closure)| CompiledRole {
                name: role.name.as_str().into(),
                description: role.description.as_deref().map(Into::into),
                parents: role
                    .inherits
                    .iter()
                    .map(|(p, _)| p.as_str().into())
                    .collect(),
                closure: closure.into_iter().collect(),
            })
            .collect();
        Ok(Policy {
            source: self.source,
            rules: self.rules,
            roles,
            role_ids,
            assignments,
            index,
            bindings,
            actions,
        })
    }

    /// Orders roles parents-first; reports every role on a cycle.
    fn topological(&mut self, doc: &PolicyDoc, parents: &[Vec<usize>]) -> Vec<usize> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let n = parents.len();
        let mut marks = vec![Mark::New; n];
        let mut order = Vec::with_capacity(n);
        let mut reported = HashSet::new();
        for start in 0..n {
            if marks.get(start) != Some(&Mark::New) {
                continue;
            }
            // Iterative depth-first search: (role, next parent to visit).
            let mut stack = vec![(start, 0usize)];
            if let Some(m) = marks.get_mut(start) {
                *m = Mark::Active;
            }
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let child = parents.get(node).and_then(|p| p.get(*next)).copied();
                *next += 1;
                match child {
                    Some(c) => match marks.get(c).copied() {
                        Some(Mark::New) => {
                            if let Some(m) = marks.get_mut(c) {
                                *m = Mark::Active;
                            }
                            stack.push((c, 0));
                        }
                        Some(Mark::Active) => {
                            let from = stack.iter().position(|&(r, _)| r == c).unwrap_or(0);
                            let cycle: Vec<usize> = stack
                                .get(from..)
                                .unwrap_or(&[])
                                .iter()
                                .map(|&(r, _)| r)
                                .collect();
                            let names: Vec<&str> = cycle
                                .iter()
                                .chain(std::iter::once(&c))
                                .filter_map(|&r| doc.roles.get(r).map(|role| role.name.as_str()))
                                .collect();
                            for &r in &cycle {
                                if reported.insert(r)
                                    && let Some(role) = doc.roles.get(r)
                                {
                                    let location = self.locate(
                                        role.location.as_ref(),
                                        &key_path("roles", &role.name),
                                    );
                                    self.error(
                                        location,
                                        format!(
                                            "role `{}` is in an inheritance cycle: {}",
                                            role.name,
                                            names.join(" -> ")
                                        ),
                                    );
                                }
                            }
                        }
                        _ => {}
                    },
                    None => {
                        if let Some(m) = marks.get_mut(node) {
                            *m = Mark::Done;
                        }
                        order.push(node);
                        stack.pop();
                    }
                }
            }
        }
        order
    }
}

/// Introspection for tests.
#[cfg(test)]
impl Policy {
    pub(crate) fn flattened_rule_count(&self, role: &str) -> usize {
        let Some(role) = self
            .role_ids
            .get(role)
            .and_then(|&id| self.roles.get(id as usize))
        else {
            return 0;
        };
        self.rules
            .iter()
            .filter(|rule| {
                self.role_ids
                    .get(rule.role())
                    .is_some_and(|id| role.closure.contains(id))
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PolicyBuilder, Role};

    fn compile_err(text: &str) -> Vec<Diagnostic> {
        Policy::from_toml_str(text, "p.toml")
            .unwrap_err()
            .diagnostics()
            .to_vec()
    }

    #[test]
    fn known_actions() {
        assert!(is_known_action("tools/call"));
        assert!(is_known_action("admin:audit.read"));
        assert!(is_known_action("admin:policy.reload"));
        assert!(!is_known_action("admin:audit"));
        assert!(!is_known_action("admin:.read"));
        assert!(!is_known_action("tools/cal"));
    }

    #[test]
    fn inheritance_is_flattened_without_duplicates() {
        let policy = Policy::from_toml_str(
            r#"
            [roles.base]
            allow = ["a.*"]
            [roles.left]
            inherits = ["base"]
            allow = ["l.*"]
            [roles.right]
            inherits = ["base"]
            allow = ["r.*"]
            [roles.diamond]
            inherits = ["left", "right"]
            deny = ["l.secret"]
            "#,
            "p.toml",
        )
        .unwrap();
        assert_eq!(policy.flattened_rule_count("base"), 1);
        assert_eq!(policy.flattened_rule_count("left"), 2);
        assert_eq!(policy.flattened_rule_count("diamond"), 4);
        let (_, parents) = policy.role("diamond").unwrap();
        assert_eq!(parents, ["left", "right"]);
    }

    #[test]
    fn unknown_parent_names_role_and_line() {
        let errors =
            compile_err("[roles.a]\nallow = [\"x\"]\n\n[roles.b]\ninherits = [\"a\", \"ghost\"]\n");
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert!(
            e.message.contains("`b`") && e.message.contains("`ghost`"),
            "{e}"
        );
        assert_eq!(e.location.line(), 5, "{e}");
        assert_eq!(e.location.source(), "p.toml");
    }

    #[test]
    fn cycles_name_every_role_on_them_with_lines() {
        let errors = compile_err(
            "[roles.a]\ninherits = [\"b\"]\n[roles.b]\ninherits = [\"c\"]\n[roles.c]\ninherits = [\"a\"]\n[roles.ok]\ninherits = [\"a\"]\n",
        );
        let mut found: Vec<(String, u32)> = errors
            .iter()
            .map(|e| {
                assert!(e.message.contains("cycle"), "{e}");
                let name = e.message.split('`').nth(1).unwrap().to_owned();
                (name, e.location.line())
            })
            .collect();
        found.sort();
        assert_eq!(found, [("a".into(), 1), ("b".into(), 3), ("c".into(), 5)]);
    }

    #[test]
    fn self_inheritance_is_a_cycle() {
        let errors = compile_err("[roles.a]\ninherits = [\"a\"]\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("a -> a"), "{}", errors[0]);
    }

    #[test]
    fn every_rule_error_is_reported() {
        let errors = compile_err(
            r#"
[roles.a]
allow = [
  { action = "tools/cal" },
  { action = "tools/call", resource = "x/***" },
  { action = "tools/call", args = { tenant = "$tenat" } },
]
deny = [
  { action = "tools/call", scopes = ["s"] },
]
[[assignments]]
subject = "alice"
roles = ["nobody"]
[[bindings]]
action = "tools/call"
"#,
        );
        let lines: Vec<u32> = errors.iter().map(|e| e.location.line()).collect();
        assert_eq!(lines, [4, 5, 6, 9, 13, 14], "{errors:?}");
    }

    #[test]
    fn builder_errors_have_paths() {
        let err = PolicyBuilder::new()
            .role(Role::new("a").inherits("missing"))
            .role(Role::new("a"))
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("<builder> (roles.a.inherits[0])"), "{text}");
        assert!(text.contains("defined twice"), "{text}");
    }

    #[test]
    fn default_roles_load() {
        let policy = Policy::default_roles().unwrap();
        let names: BTreeSet<&str> = policy.role_names().collect();
        for role in [
            "admin",
            "developer",
            "readonly",
            "operator",
            "ml-engineer",
            "ci-bot",
            "guest",
            "user",
            "server_owner",
        ] {
            assert!(names.contains(role), "missing {role}");
            assert!(
                policy.role(role).unwrap().0.is_some(),
                "{role} has no description"
            );
        }
    }
}
