//! The authenticated caller: [`Principal`] and how it was authenticated ([`AuthMethod`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a [`Principal`] proved who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// A JSON Web Token verified against the keys of `issuer`.
    Jwt {
        /// The `iss` claim of the verified token.
        issuer: String,
    },
    /// An API key; `key_id` is the public part of the key, never the secret.
    ApiKey {
        /// Public identifier of the key (the middle part of `<prefix>_<key id>_<secret>`).
        key_id: String,
    },
    /// A principal created in-process (development, tests, internal calls).
    Local,
}

/// Who is calling: the result of a successful authentication.
///
/// Cheap to clone (one `Arc`), serializable, and it never holds the credential it was built
/// from: its `Debug` output is safe to log.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "PrincipalData", into = "PrincipalData")]
pub struct Principal {
    inner: Arc<PrincipalData>,
}

/// The serialized form of a [`Principal`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PrincipalData {
    subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default)]
    roles: BTreeSet<String>,
    #[serde(default)]
    scopes: BTreeSet<String>,
    method: AuthMethod,
    /// Expiry as seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    /// Issue time as seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<u64>,
    /// Token identifier (`jti`), when the credential had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl From<PrincipalData> for Principal {
    fn from(data: PrincipalData) -> Self {
        Self {
            inner: Arc::new(data),
        }
    }
}

impl From<Principal> for PrincipalData {
    fn from(principal: Principal) -> Self {
        Arc::unwrap_or_clone(principal.inner)
    }
}

fn to_unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last second of the year 9999: later times are clamped to it, so that a huge `exp`
/// (from a token or a deserialized principal) never overflows a `SystemTime`.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// `secs` after the Unix epoch, clamped to [`MAX_UNIX_SECS`]; never panics.
pub(crate) fn from_unix(secs: u64) -> SystemTime {
    let secs = secs.min(MAX_UNIX_SECS);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

impl Principal {
    /// Starts building a principal for `subject`.
    pub fn builder(subject: impl Into<String>, method: AuthMethod) -> PrincipalBuilder {
        PrincipalBuilder {
            data: PrincipalData {
                subject: subject.into(),
                tenant: None,
                roles: BTreeSet::new(),
                scopes: BTreeSet::new(),
                method,
                expires_at: None,
                issued_at: None,
                token_id: None,
                claims: serde_json::Map::new(),
            },
        }
    }

    /// The stable identifier of the caller (`sub`, `oid`, or the API key's owner).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The tenant the caller belongs to, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.inner.tenant.as_deref()
    }

    /// Roles granted to the caller, sorted and without duplicates.
    pub fn roles(&self) -> &BTreeSet<String> {
        &self.inner.roles
    }

    /// OAuth scopes granted to the caller, sorted and without duplicates.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.inner.scopes
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.contains(role)
    }

    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.contains(scope)
    }

    /// How the caller authenticated.
    pub fn method(&self) -> &AuthMethod {
        &self.inner.method
    }

    /// When the credential stops being valid, if it expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at.map(from_unix)
    }

    /// When the credential was issued, if known.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.inner.issued_at.map(from_unix)
    }

    /// The token identifier (`jti`), if the credential carried one.
    pub fn token_id(&self) -> Option<&str> {
        self.inner.token_id.as_deref()
    }

    /// The verified claims of the credential (for a JWT, its payload).
    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.inner.claims
    }

    /// Whether the credential has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.inner.expires_at.is_some_and(|exp| to_unix(now) >= exp)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claims are left out: they can be large, and a careless issuer may put
        // personal data in them. Their names are enough to debug a mapping.
        f.debug_struct("Principal")
            .field("subject", &self.inner.subject)
            .field("tenant", &self.inner.tenant)
            .field("roles", &self.inner.roles)
            .field("scopes", &self.inner.scopes)
            .field("method", &self.inner.method)
            .field("expires_at", &self.inner.expires_at)
            .field("token_id", &self.inner.token_id)
            .field("claim_names", &self.inner.claims.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Principal`]; see [`Principal::builder`].
#[derive(Debug)]
pub struct PrincipalBuilder {
    data: PrincipalData,
}

impl PrincipalBuilder {
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.data.tenant = Some(tenant.into());
        self
    }

    /// Sets the tenant if `tenant` is `Some`.
    pub fn maybe_tenant(mut self, tenant: Option<String>) -> Self {
        self.data.tenant = tenant;
        self
    }

    /// Adds roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.data.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.data.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.data.expires_at = Some(to_unix(at));
        self
    }

    /// Sets the issue time.
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.data.issued_at = Some(to_unix(at));
        self
    }

    /// Sets the token identifier (`jti`).
    pub fn token_id(mut self, jti: impl Into<String>) -> Self {
        self.data.token_id = Some(jti.into());
        self
    }

    /// Sets the raw verified claims.
    pub fn claims(mut self, claims: serde_json::Map<String, serde_json::Value>) -> Self {
        self.data.claims = claims;
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal::from(self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("email".into(), "alice@example.com".into());
        Principal::builder(
            "alice",
            AuthMethod::Jwt {
                issuer: "https://issuer.example".into(),
            },
        )
        .tenant("acme")
        .roles(["user", "admin", "user"])
        .scopes(["mcp:tools"])
        .expires_at(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        .token_id("jti-1")
        .claims(claims)
        .build()
    }

    #[test]
    fn accessors_and_dedup() {
        let p = sample();
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.tenant(), Some("acme"));
        assert_eq!(p.roles().len(), 2);
        assert!(p.has_role("admin"));
        assert!(p.has_scope("mcp:tools"));
        assert!(!p.has_scope("other"));
        assert!(!p.is_expired_at(UNIX_EPOCH + Duration::from_secs(1_999_999_999)));
        assert!(p.is_expired_at(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
    }

    #[test]
    fn serde_round_trip() {
        let p = sample();
        let json = serde_json::to_string(&p).unwrap();
        let back: Principal = serde_json::from_str(&json).unwrap();
        assert_eq!(p, back);
        assert!(json.contains("\"kind\":\"jwt\""));
    }

    #[test]
    fn huge_times_do_not_overflow() {
        let json = r#"{"subject":"s","method":{"kind":"local"},"expires_at":18446744073709551615,"issued_at":18446744073709551615}"#;
        let p: Principal = serde_json::from_str(json).unwrap();
        let year_9999 = UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECS);
        assert_eq!(p.expires_at(), Some(year_9999));
        assert_eq!(p.issued_at(), Some(year_9999));
        assert!(!p.is_expired_at(year_9999 - Duration::from_secs(1)));
    }

    #[test]
    fn debug_hides_claim_values() {
        let text = format!("{:?}", sample());
        assert!(text.contains("alice"));
        assert!(text.contains("email"));
        assert!(!text.contains("alice@example.com"));
    }
}
