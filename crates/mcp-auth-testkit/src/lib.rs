//! # mcp-auth-testkit: shared test helpers for the mcp-auth workspace
//!
//! Unpublished. Other crates use it in their tests:
//!
//! * [`TestIssuer`]: a local OIDC issuer served over real HTTP on 127.0.0.1 (discovery
//!   documents, JWKS, key rotation and retirement, outages, fetch counters) that mints
//!   tokens with arbitrary claims and headers.
//! * [`entra::EntraIssuer`]: an Entra-ID-shaped authority over real HTTP on 127.0.0.1 (per-tenant
//!   v1/v2 discovery, auto-consenting `/authorize`, `/token` with PKCE, refresh, client
//!   credentials and on-behalf-of) and a builder for Entra-shaped tokens.
//! * [`tokens`]: raw token builders for the bad-token classes (unsigned, HS256 keyed with a
//!   public key, tampered payload, foreign key under a known `kid`, malformed).
//! * [`TestKey`] and [`fixtures`]: committed RSA, EC P-256/P-384 and Ed25519 key pairs,
//!   sample principals and claim sets.
//! * [`FakeClock`]: a settable [`mcp_auth_core::Clock`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use mcp_auth_testkit::{TestIssuer, TestKey, tokens};
//! use serde_json::json;
//!
//! let issuer = TestIssuer::start().await;
//! let good = issuer.mint(json!({"sub": "alice"}));
//! let foreign = tokens::sign_with(
//!     &TestKey::rsa(4),
//!     json!({"kid": issuer.current_kid()}),
//!     issuer.claims(json!({})),
//! );
//! assert_ne!(good, foreign);
//! # }
//! ```
//!
//! ## MSRV
//!
//! Rust 1.94.
#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "a test kit: a broken fixture or a failed bind must stop the test loudly"
)]

mod clock;
pub mod entra;
pub mod fixtures;
mod issuer;
mod keys;
pub mod tokens;

pub use clock::FakeClock;
pub use issuer::{TestIssuer, TestIssuerConfig};
pub use keys::TestKey;
