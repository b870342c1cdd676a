//! Claim mapping: which token claims give the subject, tenant, roles and scopes of a `Principal`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use crate::error::TokenRejection;

/// A path to a claim: a top-level name, or nested object keys (`realm_access.roles`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    segments: Vec<String>,
}

impl ClaimPath {
    /// A dotted path: `realm_access.roles` is the `roles` key inside the `realm_access` object.
    pub fn dotted(path: &str) -> Self {
        Self {
            segments: path.split('.').map(str::to_owned).collect(),
        }
    }

    /// A single claim name taken literally, dots included (for URL-named claims such as
    /// `https://example.com/roles`).
    pub fn exact(name: &str) -> Self {
        Self {
            segments: vec![name.to_owned()],
        }
    }

    /// The value at this path, if every step exists.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        let mut value = claims.get(first)?;
        for segment in rest {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }
}

impl From<&str> for ClaimPath {
    fn from(path: &str) -> Self {
        Self::dotted(path)
    }
}

/// What a claim mapping extracted from a token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappedClaims {
    /// The subject.
    pub subject: String,
    /// The tenant, if a tenant claim was present.
    pub tenant: Option<String>,
    /// Roles from the role claims and the group-to-role table.
    pub roles: BTreeSet<String>,
    /// Scopes from the scope claims.
    pub scopes: BTreeSet<String>,
}

/// Which claims give the subject, tenant, roles and scopes.
///
/// The defaults fit most issuers: subject from `sub`, tenant from `tid`, roles from `roles`,
/// scopes from `scope` (space-delimited) and `scp` (string or array). Entra ID wants
/// `oid` before `sub`; Keycloak puts roles at `realm_access.roles`.
///
/// ```
/// use mcp_auth_core::claims::ClaimMapping;
///
/// let mapping = ClaimMapping::new()
///     .subject_claims(["oid", "sub"])
///     .role_claims(["roles", "realm_access.roles"])
///     .group_claim("groups")
///     .map_group("g-admins", ["admin"]);
/// let claims = serde_json::json!({
///     "sub": "s-1", "oid": "o-1", "tid": "t-1",
///     "realm_access": {"roles": ["reader"]},
///     "groups": ["g-admins", "g-other"],
///     "scp": "mcp:tools mcp:resources",
/// });
/// let mapped = mapping.map(claims.as_object().unwrap()).unwrap();
/// assert_eq!(mapped.subject, "o-1");
/// assert_eq!(mapped.tenant.as_deref(), Some("t-1"));
/// assert!(mapped.roles.contains("admin") && mapped.roles.contains("reader"));
/// assert!(mapped.scopes.contains("mcp:resources"));
/// ```
#[derive(Clone, Debug)]
pub struct ClaimMapping {
    subject: Vec<ClaimPath>,
    tenant: Vec<ClaimPath>,
    roles: Vec<ClaimPath>,
    groups: Vec<ClaimPath>,
    group_roles: HashMap<String, Vec<String>>,
    scopes: Vec<ClaimPath>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: vec![ClaimPath::exact("sub")],
            tenant: vec![ClaimPath::exact("tid")],
            roles: vec![ClaimPath::exact("roles")],
            groups: Vec::new(),
            group_roles: HashMap::new(),
            scopes: vec![ClaimPath::exact("scope"), ClaimPath::exact("scp")],
        }
    }
}

fn paths<I, P>(paths: I) -> Vec<ClaimPath>
where
    I: IntoIterator<Item = P>,
    P: Into<ClaimPath>,
{
    paths.into_iter().map(Into::into).collect()
}

/// Strings in a claim: a string is split on whitespace, an array contributes its string
/// elements; other JSON types contribute nothing.
fn strings(value: &Value) -> impl Iterator<Item = &str> {
    let (single, many) = match value {
        Value::String(s) => (Some(s.as_str()), None),
        Value::Array(items) => (None, Some(items.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    single
        .into_iter()
        .flat_map(str::split_whitespace)
        .chain(many.into_iter().flatten())
        .filter(|s| !s.is_empty())
}

impl ClaimMapping {
    /// The default mapping (see the type docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims tried in order for the subject; the first present, non-empty string wins.
    pub fn subject_claims<I, P>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<ClaimPath>,
    {
        self.subject = paths(claims);
        self
    }

    /// Claims tried in order for the tenant; none means principals carry no tenant.
    pub fn tenant_claims<I, P>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<ClaimPath>,
    {
        self.tenant = paths(claims);
        self
    }

    /// Claims whose values are roles (all of them are read and merged).
    pub fn role_claims<I, P>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<ClaimPath>,
    {
        self.roles = paths(claims);
        self
    }

    /// Adds a claim whose values are group ids, turned into roles by [`ClaimMapping::map_group`].
    pub fn group_claim(mut self, claim: impl Into<ClaimPath>) -> Self {
        self.groups.push(claim.into());
        self
    }

    /// Members of `group` get `roles`. Groups without an entry give no role.
    pub fn map_group<I, S>(mut self, group: impl Into<String>, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.group_roles
            .entry(group.into())
            .or_default()
            .extend(roles.into_iter().map(Into::into));
        self
    }

    /// Claims whose values are scopes: space-delimited strings (`scope`) or arrays (`scp`).
    pub fn scope_claims<I, P>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<ClaimPath>,
    {
        self.scopes = paths(claims);
        self
    }

    /// Extracts subject, tenant, roles and scopes from verified claims.
    ///
    /// Fails with [`TokenRejection::MissingClaim`]`("sub")` when no subject claim holds a
    /// non-empty string.
    pub fn map(&self, claims: &Map<String, Value>) -> Result<MappedClaims, TokenRejection> {
        let first_string = |paths: &[ClaimPath]| {
            paths.iter().find_map(|p| {
                p.lookup(claims)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            })
        };
        let subject = first_string(&self.subject).ok_or(TokenRejection::MissingClaim("sub"))?;
        let tenant = first_string(&self.tenant);

        let mut roles = BTreeSet::new();
        for path in &self.roles {
            if let Some(value) = path.lookup(claims) {
                roles.extend(strings(value).map(str::to_owned));
            }
        }
        for path in &self.groups {
            if let Some(value) = path.lookup(claims) {
                for group in strings(value) {
                    if let Some(mapped) = self.group_roles.get(group) {
                        roles.extend(mapped.iter().cloned());
                    }
                }
            }
        }

        let mut scopes = BTreeSet::new();
        for path in &self.scopes {
            if let Some(value) = path.lookup(claims) {
                scopes.extend(strings(value).map(str::to_owned));
            }
        }

        Ok(MappedClaims {
            subject,
            tenant,
            roles,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[expect(
        clippy::needless_pass_by_value,
        reason = "test helper called with json! literals"
    )]
    fn map(mapping: &ClaimMapping, claims: Value) -> Result<MappedClaims, TokenRejection> {
        mapping.map(claims.as_object().unwrap())
    }

    #[test]
    fn defaults() {
        let m = map(
            &ClaimMapping::new(),
            json!({"sub": "alice", "tid": "acme", "roles": ["a", "b"], "scope": "x  y", "scp": ["z"]}),
        )
        .unwrap();
        assert_eq!(m.subject, "alice");
        assert_eq!(m.tenant.as_deref(), Some("acme"));
        assert_eq!(m.roles.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.scopes.iter().collect::<Vec<_>>(), ["x", "y", "z"]);
    }

    #[test]
    fn missing_subject() {
        let err = map(&ClaimMapping::new(), json!({"oid": "x"})).unwrap_err();
        assert_eq!(err, TokenRejection::MissingClaim("sub"));
        let err = map(&ClaimMapping::new(), json!({"sub": ""})).unwrap_err();
        assert_eq!(err, TokenRejection::MissingClaim("sub"));
        let err = map(&ClaimMapping::new(), json!({"sub": 42})).unwrap_err();
        assert_eq!(err, TokenRejection::MissingClaim("sub"));
    }

    #[test]
    fn first_subject_wins_and_nested_paths() {
        let mapping = ClaimMapping::new()
            .subject_claims(["oid", "sub"])
            .role_claims(["realm_access.roles"])
            .tenant_claims(Vec::<ClaimPath>::new());
        let m = map(
            &mapping,
            json!({"sub": "s", "oid": "o", "tid": "t", "realm_access": {"roles": ["kc"]}, "roles": ["ignored"]}),
        )
        .unwrap();
        assert_eq!(m.subject, "o");
        assert_eq!(m.tenant, None);
        assert_eq!(m.roles.iter().collect::<Vec<_>>(), ["kc"]);
        let m = map(&mapping, json!({"sub": "s"})).unwrap();
        assert_eq!(m.subject, "s");
        assert!(m.roles.is_empty());
    }

    #[test]
    fn exact_path_keeps_dots() {
        let mapping =
            ClaimMapping::new().role_claims([ClaimPath::exact("https://x.example/roles")]);
        let m = map(
            &mapping,
            json!({"sub": "s", "https://x.example/roles": ["r"]}),
        )
        .unwrap();
        assert_eq!(m.roles.iter().collect::<Vec<_>>(), ["r"]);
    }

    #[test]
    fn groups_map_to_roles() {
        let mapping = ClaimMapping::new()
            .group_claim("groups")
            .map_group("g1", ["admin", "user"])
            .map_group("g2", ["user"]);
        let m = map(
            &mapping,
            json!({"sub": "s", "groups": ["g1", "g2", "unknown", 7], "roles": "direct"}),
        )
        .unwrap();
        assert_eq!(
            m.roles.iter().collect::<Vec<_>>(),
            ["admin", "direct", "user"]
        );
    }

    #[test]
    fn wrong_types_are_ignored() {
        let m = map(
            &ClaimMapping::new(),
            json!({"sub": "s", "tid": 5, "roles": {"a": 1}, "scope": 3, "scp": [1, "ok"]}),
        )
        .unwrap();
        assert_eq!(m.tenant, None);
        assert!(m.roles.is_empty());
        assert_eq!(m.scopes.iter().collect::<Vec<_>>(), ["ok"]);
    }
}
