//! # mcp-auth-core: who is calling
//!
//! Turns the credentials an MCP client presents into a [`Principal`]: JWTs verified against
//! static keys, JWKS URLs or OIDC discovery; API keys; a revocation list; RFC 9728
//! protected-resource metadata and RFC 6750 challenges; a tower layer and an axum extractor.
//!
//! ```
//! use mcp_auth_core::{AuthMethod, Principal};
//!
//! let alice = Principal::builder("alice", AuthMethod::Local)
//!     .tenant("acme")
//!     .roles(["user"])
//!     .scopes(["mcp:tools"])
//!     .build();
//! assert!(alice.has_scope("mcp:tools"));
//! assert_eq!(alice.tenant(), Some("acme"));
//! ```
//!
//! ## Feature flags
//!
//! | feature | default | what |
//! | --- | --- | --- |
//! | `jwks` | yes | fetch keys from JWKS URLs and OIDC / RFC 8414 discovery (reqwest, rustls) |
//! | `redis` | no | revocation store on Redis |
//! | `sqlite` | no | API-key store on SQLite (sqlx) |
//! | `postgres` | no | API-key store on PostgreSQL (sqlx) |
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
