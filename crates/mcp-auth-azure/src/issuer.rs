//! [`EntraIssuerPolicy`]: the `iss` / `tid` check of Entra ID tokens, for single- and
//! multi-tenant configurations.

use std::collections::HashSet;

use mcp_auth_core::TokenRejection;
use mcp_auth_core::jwt::IssuerPolicy;
use serde_json::{Map, Value};

use crate::cloud::Cloud;
use crate::config::{
    EntraConfig, EntraConfigError, MSA_TENANT_ID, TenantMode, TokenVersion, is_guid,
};

/// Which tenants' tokens are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tenants {
    /// Exactly this tenant.
    One(String),
    /// Any tenant on the list.
    AllowList(HashSet<String>),
    /// Every tenant (`allow_any_tenant_dangerously`); personal accounts only if `common`.
    Any {
        /// Whether the MSA tenant is refused (`organizations`).
        exclude_personal: bool,
    },
}

/// Whether `iss` is exactly `{base}/{tid}{suffix}`: the v2 issuer of `tid` with suffix
/// `/v2.0`, the v1 issuer with suffix `/`.
///
/// Compared without building the expected string. An empty `tid` never matches, and since
/// the comparison is exact, no `tid` value can make the issuer of another tenant match.
///
/// ```
/// use mcp_auth_azure::issuer_matches;
///
/// let base = "https://login.microsoftonline.com";
/// assert!(issuer_matches("https://login.microsoftonline.com/t1/v2.0", base, "t1", "/v2.0"));
/// assert!(!issuer_matches("https://login.microsoftonline.com/t1/v2.0", base, "t2", "/v2.0"));
/// assert!(!issuer_matches("https://login.microsoftonline.com/t1/v2.0/", base, "t1", "/v2.0"));
/// ```
pub fn issuer_matches(iss: &str, base: &str, tid: &str, suffix: &str) -> bool {
    tenant_in(iss, base, suffix) == Some(tid) && !tid.is_empty()
}

/// The tenant part of `iss` if it has the shape `{base}/{tenant}{suffix}`.
fn tenant_in<'a>(iss: &'a str, base: &str, suffix: &str) -> Option<&'a str> {
    iss.strip_prefix(base)?
        .strip_prefix('/')?
        .strip_suffix(suffix)
}

/// The issuer check of Entra ID tokens, for [`JwtValidator`](mcp_auth_core::jwt::JwtValidator)'s
/// [`issuer_policy`](mcp_auth_core::jwt::JwtValidatorBuilder::issuer_policy).
///
/// A token passes when its `tid` is a tenant id (GUID), its `iss` is exactly the v1 or v2
/// issuer (as accepted) of that same `tid` in the configured cloud, and the `tid` is
/// allowed: the configured tenant (single tenant), on the allowlist (multi-tenant), the MSA
/// tenant (`consumers`), or anything with `allow_any_tenant_dangerously` (except personal
/// accounts under `organizations`). A `tid` that does not fit its `iss` is
/// [`TokenRejection::WrongIssuer`]; a well-formed token of a tenant that is not allowed is
/// [`TokenRejection::TenantNotAllowed`]. Unlike implementations that only check that `iss`
/// *looks* like an Entra issuer, a token minted in an attacker's own tenant for a
/// multi-tenant app is refused.
///
/// ```
/// use mcp_auth_azure::{EntraConfig, EntraIssuerPolicy};
/// use mcp_auth_core::TokenRejection;
/// use mcp_auth_core::jwt::IssuerPolicy;
///
/// let allowed = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";
/// let other = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// let config = EntraConfig::new("organizations", "3f1c2d3e-0000-4000-8000-000000000001")
///     .allowed_tenants([allowed]);
/// let policy = EntraIssuerPolicy::from_config(&config)?;
/// let claims = |tid: &str| serde_json::json!({ "tid": tid }).as_object().unwrap().clone();
/// let v2 = |tid: &str| format!("https://login.microsoftonline.com/{tid}/v2.0");
///
/// assert!(policy.check(&v2(allowed), &claims(allowed)).is_ok());
/// assert!(policy.check(&format!("https://sts.windows.net/{allowed}/"), &claims(allowed)).is_ok());
/// // The issuer of another tenant than the token's own `tid`.
/// assert_eq!(policy.check(&v2(other), &claims(allowed)), Err(TokenRejection::WrongIssuer));
/// // A consistent token of a tenant that is not on the list.
/// assert_eq!(policy.check(&v2(other), &claims(other)), Err(TokenRejection::TenantNotAllowed));
/// # Ok::<(), mcp_auth_azure::EntraConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct EntraIssuerPolicy {
    cloud: Cloud,
    v1: bool,
    v2: bool,
    tenants: Tenants,
}

impl EntraIssuerPolicy {
    /// The policy of a configuration (which is validated first).
    pub fn from_config(config: &EntraConfig) -> Result<Self, EntraConfigError> {
        config.validate()?;
        let tenants = match config.tenant_mode()? {
            TenantMode::Single(id) => Tenants::One(id),
            TenantMode::Consumers => Tenants::One(MSA_TENANT_ID.to_owned()),
            mode if config.allow_any_tenant_dangerously => Tenants::Any {
                exclude_personal: mode == TenantMode::Organizations,
            },
            _ => Tenants::AllowList(
                config
                    .allowed_tenants
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
            ),
        };
        Ok(Self {
            cloud: config.cloud.clone(),
            v1: config.token_versions.contains(&TokenVersion::V1),
            v2: config.token_versions.contains(&TokenVersion::V2),
            tenants,
        })
    }

    /// Whether `iss` is an accepted (v1 or v2) issuer of tenant `tid` in this cloud.
    pub fn issuer_fits_tenant(&self, iss: &str, tid: &str) -> bool {
        (self.v2 && issuer_matches(iss, self.cloud.v2_issuer_base(), tid, "/v2.0"))
            || (self.v1 && issuer_matches(iss, self.cloud.v1_issuer_base(), tid, "/"))
    }

    /// Whether tokens of tenant `tid` are accepted (given a fitting issuer).
    pub fn tenant_allowed(&self, tid: &str) -> bool {
        match &self.tenants {
            Tenants::One(id) => id == tid,
            Tenants::AllowList(list) => list.contains(tid),
            Tenants::Any { exclude_personal } => !(*exclude_personal && tid == MSA_TENANT_ID),
        }
    }

    /// Whether `iss` has the shape of an issuer this policy could accept, whatever the
    /// tenant: a cheap, unverified routing hint (for example to pick the Entra verifier
    /// for a bearer token among several), never an authentication decision.
    pub fn is_entra_issuer(&self, iss: &str) -> bool {
        let guid_in = |base: &str, suffix: &str| tenant_in(iss, base, suffix).is_some_and(is_guid);
        (self.v2 && guid_in(self.cloud.v2_issuer_base(), "/v2.0"))
            || (self.v1 && guid_in(self.cloud.v1_issuer_base(), "/"))
    }
}

impl IssuerPolicy for EntraIssuerPolicy {
    fn check(&self, issuer: &str, claims: &Map<String, Value>) -> Result<(), TokenRejection> {
        let tid = match claims.get("tid") {
            Some(Value::String(tid)) if is_guid(tid) => tid.as_str(),
            _ => return Err(TokenRejection::MissingClaim("tid")),
        };
        if !self.issuer_fits_tenant(issuer, tid) {
            return Err(TokenRejection::WrongIssuer);
        }
        if !self.tenant_allowed(tid) {
            return Err(TokenRejection::TenantNotAllowed);
        }
        Ok(())
    }
}
