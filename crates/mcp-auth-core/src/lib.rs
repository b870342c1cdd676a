//! # mcp-auth-core: who is calling
//!
//! Turns the credentials an MCP client presents into a [`Principal`]: JWTs verified against
//! static keys, JWKS URLs or OIDC discovery ([`jwt`], [`jwks`]); API keys hashed with a
//! server-side pepper ([`api_key`]); a revocation list ([`revocation`]); RFC 9728
//! protected-resource metadata and RFC 6750 challenges ([`resource`], [`BearerChallenge`]);
//! a tower layer and an axum extractor ([`layer`]); a local token issuer for development
//! and tests ([`issuer`]); background refresh of tokens the server holds ([`refresh`]).
//!
//! The request path: a [`CredentialExtractor`] takes the credential from the request
//! (`Authorization: Bearer` or the API-key header; never the query string), an
//! [`Authenticator`] (usually an [`AuthChain`] of a [`jwt::JwtAuthenticator`] and an
//! [`ApiKeyAuthenticator`]) turns it into a [`Principal`] or an [`AuthError`], and the
//! error knows its HTTP status and challenge.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_core::issuer::{IssueRequest, LocalIssuer};
//! use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
//! use mcp_auth_core::{AuthChain, Authenticator, Credential, Secret};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A development issuer; in production the keys come from a JWKS URL or discovery.
//! let issuer = LocalIssuer::builder("https://auth.example", "https://mcp.example/mcp").build()?;
//! let validator = JwtValidator::builder()
//!     .issuer("https://auth.example")
//!     .audience("https://mcp.example/mcp")
//!     .algorithms([issuer.algorithm()])
//!     .build()?;
//! let keys = Arc::new(KeySet::from_jwk_set(&issuer.jwks(), 16));
//! let chain = AuthChain::new().with(JwtAuthenticator::builder(validator, keys).build());
//!
//! let token = issuer.issue(&IssueRequest::new("alice").tenant("acme").scopes(["mcp:tools"]))?;
//! let alice = chain
//!     .authenticate(&Credential::Bearer(Secret::new(token.token.expose())))
//!     .await?;
//! assert_eq!(alice.subject(), "alice");
//! assert_eq!(alice.tenant(), Some("acme"));
//! assert!(alice.has_scope("mcp:tools"));
//!
//! // A bad token is a 401 with `error="invalid_token"`; the detail stays in the logs.
//! let err = chain
//!     .authenticate(&Credential::Bearer(Secret::new("not.a.token")))
//!     .await
//!     .unwrap_err();
//! assert_eq!(err.status(), 401);
//! assert_eq!(err.public_body(), r#"{"error":"invalid_token"}"#);
//! # Ok(())
//! # }
//! ```
//!
//! ## Feature flags
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `jwks` | yes | fetch keys from JWKS URLs and OIDC / RFC 8414 discovery (reqwest, rustls) |
//! | `redis` | no | revocation store and refresh-token store on Redis |
//! | `sqlite` | no | API-key store on SQLite (sqlx); the [`sql`] helpers of the SQL stores |
//! | `postgres` | no | API-key store on PostgreSQL (sqlx); the [`sql`] helpers of the SQL stores |
//! | `pool` | no | `sql::ConnectionSource` for `mcp_pool::SqlClass`: the API-key store's connections through an mcp-pool class |
//! | `axum` | no | axum extractor for [`Principal`], `IntoResponse` for [`AuthRejection`], the metadata router |
//! | `full` | no | all of the above |
//!
//! ## MSRV
//!
//! Rust 1.94.

pub mod api_key;
mod authenticator;
mod challenge;
pub mod claims;
mod clock;
mod credential;
mod error;
pub mod issuer;
#[cfg(feature = "jwks")]
pub mod jwks;
pub mod jwt;
pub mod layer;
mod principal;
pub mod refresh;
mod rejection;
pub mod resource;
pub mod revocation;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;
pub mod token_cache;

pub use api_key::{ApiKeyAuthenticator, ApiKeyManager, ApiKeyStore, MemoryApiKeyStore};
pub use authenticator::{AuthChain, Authenticator};
pub use challenge::BearerChallenge;
pub use clock::{Clock, SystemClock};
pub use credential::{Credential, CredentialExtractor, CredentialKind, Secret};
pub use error::{AuthError, BoxError, TokenRejection};
pub use issuer::{IssueRequest, LocalIssuer};
pub use layer::{AuthLayer, AuthService, OnAuthFailure};
pub use principal::{AuthMethod, Principal, PrincipalBuilder};
pub use rejection::{AuthRejection, ChallengeConfig};
pub use resource::ProtectedResourceMetadata;
pub use revocation::MemoryRevocationStore;
pub use revocation::RevocationStore;

/// The default API-key prefix: keys look like `mcpk_<key id>_<secret>`.
pub const DEFAULT_API_KEY_PREFIX: &str = "mcpk";
