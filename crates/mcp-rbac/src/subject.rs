//! Who asks: the [`Subject`] trait the caller implements, and [`BasicSubject`], an owned one.

use std::collections::BTreeSet;

/// One role held by a subject, either everywhere in its home tenant or in one named tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoleGrant<'a> {
    /// The role's name in the policy.
    pub role: &'a str,
    /// `None`: the role applies in the subject's home tenant (or, for a subject without a
    /// tenant, to calls that name no tenant). `Some(t)`: the role applies to calls in tenant
    /// `t` only, which lets a subject be `admin` in one tenant and `user` in another.
    pub tenant: Option<&'a str>,
}

impl<'a> RoleGrant<'a> {
    /// A grant in the subject's home tenant.
    pub fn home(role: &'a str) -> Self {
        Self { role, tenant: None }
    }

    /// A grant that applies in `tenant` only.
    pub fn in_tenant(role: &'a str, tenant: &'a str) -> Self {
        Self {
            role,
            tenant: Some(tenant),
        }
    }
}

/// The caller of an authorization check, as the policy sees it.
///
/// Implement it for your own principal type; with the `auth-core` feature it is implemented
/// for `mcp_auth_core::Principal` (its roles become home-tenant grants). Every method is
/// called on the hot path, so none should allocate.
pub trait Subject {
    /// Stable identifier of the caller; used to look up the policy's own role assignments.
    fn subject_id(&self) -> &str;

    /// The tenant the caller belongs to, if any.
    fn home_tenant(&self) -> Option<&str>;

    /// The roles the caller holds.
    fn role_grants(&self) -> impl Iterator<Item = RoleGrant<'_>>;

    /// Whether the caller was granted the OAuth scope `scope`.
    fn has_scope(&self, scope: &str) -> bool;
}

impl<T: Subject + ?Sized> Subject for &T {
    fn subject_id(&self) -> &str {
        (**self).subject_id()
    }

    fn home_tenant(&self) -> Option<&str> {
        (**self).home_tenant()
    }

    fn role_grants(&self) -> impl Iterator<Item = RoleGrant<'_>> {
        (**self).role_grants()
    }

    fn has_scope(&self, scope: &str) -> bool {
        (**self).has_scope(scope)
    }
}

/// An owned [`Subject`] for services that have no principal type of their own, and for tests.
///
/// ```
/// use mcp_rbac::{BasicSubject, Subject};
///
/// let alice = BasicSubject::new("alice")
///     .tenant("acme")
///     .role("developer")
///     .role_in("admin", "sandbox")
///     .scope("tools:call");
/// assert_eq!(alice.home_tenant(), Some("acme"));
/// assert_eq!(alice.role_grants().count(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BasicSubject {
    id: String,
    tenant: Option<String>,
    grants: Vec<(String, Option<String>)>,
    scopes: BTreeSet<String>,
}

impl BasicSubject {
    /// A subject with no tenant, roles or scopes.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Sets the home tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Grants `role` in the home tenant.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.grants.push((role.into(), None));
        self
    }

    /// Grants `role` in `tenant` only.
    #[must_use]
    pub fn role_in(mut self, role: impl Into<String>, tenant: impl Into<String>) -> Self {
        self.grants.push((role.into(), Some(tenant.into())));
        self
    }

    /// Adds an OAuth scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.insert(scope.into());
        self
    }
}

impl Subject for BasicSubject {
    fn subject_id(&self) -> &str {
        &self.id
    }

    fn home_tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    fn role_grants(&self) -> impl Iterator<Item = RoleGrant<'_>> {
        self.grants.iter().map(|(role, tenant)| RoleGrant {
            role,
            tenant: tenant.as_deref(),
        })
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

#[cfg(feature = "auth-core")]
impl Subject for mcp_auth_core::Principal {
    fn subject_id(&self) -> &str {
        self.subject()
    }

    fn home_tenant(&self) -> Option<&str> {
        self.tenant()
    }

    fn role_grants(&self) -> impl Iterator<Item = RoleGrant<'_>> {
        self.roles().iter().map(|role| RoleGrant::home(role))
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.scopes().contains(scope)
    }
}
