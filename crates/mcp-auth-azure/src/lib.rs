//! # mcp-auth-azure: Azure AD / Entra ID for MCP servers
//!
//! Entra ID access-token validation and claim mapping to [`mcp_auth_core::Principal`]:
//!
//! * [`EntraConfig`]: one tenant, or `organizations` / `common` with a tenant allowlist
//!   (accepting every tenant takes an explicitly dangerous option), or `consumers`; the
//!   API's client id (audiences `api://{client_id}` and `{client_id}`, plus any custom
//!   Application ID URI); the [`Cloud`] (public, US Government, China, or custom).
//! * [`EntraIssuerPolicy`]: v1 (`https://sts.windows.net/{tid}/`) and v2
//!   (`https://login.microsoftonline.com/{tid}/v2.0`) issuers; `iss` must be the issuer of
//!   the token's own `tid`, and that `tid` must be allowed. A token an attacker mints in
//!   their own tenant for a multi-tenant app is refused.
//! * [`EntraAuthenticator`]: an [`Authenticator`](mcp_auth_core::Authenticator) for
//!   [`AuthChain`](mcp_auth_core::AuthChain), on mcp-auth-core's JWT verifier and JWKS
//!   cache (keys from the tenant's discovery document). `oid` becomes the subject (`sub`
//!   is per application), `tid` the tenant, `roles` the roles, `scp` the scopes, and
//!   `groups` roles through a group-to-role table; group overage goes to a
//!   [`GroupResolver`] (with the `graph` feature, `GraphGroupResolver` asks Microsoft
//!   Graph), and app-only tokens are recognised
//!   ([`principal_kind`]) and can be refused.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_azure::{EntraAuthenticator, EntraConfig, TokenKind, principal_kind};
//! use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
//! use mcp_auth_core::jwt::KeySet;
//! use mcp_auth_core::{AuthChain, AuthError, Authenticator, Credential, Secret, TokenRejection};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tenant = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";
//! let client_id = "3f1c2d3e-0000-4000-8000-000000000001";
//! let config = EntraConfig::new("organizations", client_id)
//!     .allowed_tenants([tenant])
//!     .map_group("5b2d1c0a-1111-4222-8333-444455556666", ["admin"]);
//!
//! // A stand-in for Entra, minting a v2 token of `tenant`. In production the keys come
//! // from the tenant's discovery document; here they are given.
//! let entra = LocalIssuer::builder(format!("https://login.microsoftonline.com/{tenant}/v2.0"), client_id)
//!     .build()?;
//! let keys = Arc::new(KeySet::from_jwk_set(&entra.jwks(), 16));
//! let chain = AuthChain::new().with(EntraAuthenticator::builder(config).keys(keys).build()?);
//!
//! let token = entra.issue(
//!     &IssueRequest::new("pairwise-sub")
//!         .tenant(tenant)
//!         .roles(["Tools.Read"])
//!         .claim("oid", "0b8f3a4e-5c6d-4e7f-8a9b-0c1d2e3f4a5b")
//!         .claim("scp", "mcp.tools mcp.resources")
//!         .claim("groups", vec!["5b2d1c0a-1111-4222-8333-444455556666"])
//!         .claim("ver", "2.0"),
//! )?;
//! let user = chain.authenticate(&Credential::Bearer(token.token)).await?;
//! assert_eq!(user.subject(), "0b8f3a4e-5c6d-4e7f-8a9b-0c1d2e3f4a5b"); // oid, not sub
//! assert_eq!(user.tenant(), Some(tenant));
//! assert!(user.has_role("Tools.Read") && user.has_role("admin"));
//! assert!(user.has_scope("mcp.resources"));
//! assert_eq!(principal_kind(&user), TokenKind::Delegated);
//!
//! // The same issuer for another tenant: not on the allowlist.
//! let other = "72f988bf-86f1-41af-91ab-2d7cd011db47";
//! let foreign = LocalIssuer::builder(format!("https://login.microsoftonline.com/{other}/v2.0"), client_id)
//!     .key(entra.signing_key().clone())
//!     .build()?
//!     .issue(&IssueRequest::new("s").tenant(other).claim("oid", "o").claim("scp", "mcp.tools"))?;
//! let err = chain.authenticate(&Credential::Bearer(foreign.token)).await.unwrap_err();
//! assert!(matches!(err, AuthError::InvalidToken(TokenRejection::TenantNotAllowed)));
//! assert_eq!(err.status(), 401);
//! # Ok(())
//! # }
//! ```
//!
//! The deployment guide (`docs/azure/entra-deployment.md`) walks through the app
//! registration in Entra and the gateway configuration.
//!
//! ## Feature flags
//!
//! Token validation needs no feature.
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `graph` | no | `GraphGroupResolver`: group overage resolved through Microsoft Graph |
//! | `proxy` | no | the OAuth proxy for MCP clients (the `proxy` module) |
//! | `redis` | no | the proxy's stores on Redis |
//! | `sqlite` | no | the proxy's client store on SQLite |
//! | `postgres` | no | the proxy's client store on PostgreSQL |
//!
//! ## MSRV
//!
//! Rust 1.94.

mod authenticator;
mod cloud;
mod config;
#[cfg(feature = "graph")]
mod graph;
mod groups;
mod issuer;

pub use authenticator::{
    EntraAuthenticator, EntraAuthenticatorBuilder, TokenKind, client_app_id, principal_kind,
    token_kind, token_version,
};
pub use cloud::{Cloud, CustomCloud, PUBLIC_AUTHORITY, STS_WINDOWS_NET};
pub use config::{
    DEFAULT_GROUP_CACHE_TTL_SECS, EntraConfig, EntraConfigError, MSA_TENANT_ID, TenantMode,
    TokenVersion,
};
#[cfg(feature = "graph")]
pub use graph::{GraphGroupResolver, GraphGroupResolverBuilder};
pub use groups::{GroupResolver, has_group_overage};
pub use issuer::{EntraIssuerPolicy, issuer_matches};

#[cfg(feature = "proxy")]
pub mod proxy;
