//! Committed key material (PEM fixtures), sample principals and sample claim sets.
//!
//! The PEM files in `crates/mcp-auth-testkit/fixtures/` were generated once with
//! `openssl genpkey` (RSA 2048, EC P-256, EC P-384, Ed25519; PKCS#8 private keys, SPKI
//! public keys). Index arguments are 0-based: `rsa_pem(0)` is `rsa-1.pem`.

use mcp_auth_core::{AuthMethod, Principal};
use serde_json::{Value, json};

/// Number of RSA 2048 fixture keys.
pub const RSA_KEYS: usize = 5;
/// Number of EC P-256 fixture keys.
pub const EC_P256_KEYS: usize = 3;
/// Number of Ed25519 fixture keys.
pub const ED25519_KEYS: usize = 3;

pub(crate) const RSA_NAMES: [&str; RSA_KEYS] = ["rsa-1", "rsa-2", "rsa-3", "rsa-4", "rsa-5"];
pub(crate) const EC_P256_NAMES: [&str; EC_P256_KEYS] = ["ec-p256-1", "ec-p256-2", "ec-p256-3"];
pub(crate) const ED25519_NAMES: [&str; ED25519_KEYS] = ["ed25519-1", "ed25519-2", "ed25519-3"];

macro_rules! pem_pair {
    ($name:literal) => {
        (
            include_str!(concat!("../fixtures/", $name, ".pem")),
            include_str!(concat!("../fixtures/", $name, ".pub.pem")),
        )
    };
}

const RSA: [(&str, &str); RSA_KEYS] = [
    pem_pair!("rsa-1"),
    pem_pair!("rsa-2"),
    pem_pair!("rsa-3"),
    pem_pair!("rsa-4"),
    pem_pair!("rsa-5"),
];
const EC_P256: [(&str, &str); EC_P256_KEYS] = [
    pem_pair!("ec-p256-1"),
    pem_pair!("ec-p256-2"),
    pem_pair!("ec-p256-3"),
];
const EC_P384: (&str, &str) = pem_pair!("ec-p384-1");
const ED25519: [(&str, &str); ED25519_KEYS] = [
    pem_pair!("ed25519-1"),
    pem_pair!("ed25519-2"),
    pem_pair!("ed25519-3"),
];

/// `(private PKCS#8 PEM, public SPKI PEM)` of RSA key `index`. Panics if out of range.
pub fn rsa_pem(index: usize) -> (&'static str, &'static str) {
    RSA[index]
}

/// Private PEM of RSA key `index`. Panics if out of range.
pub fn rsa_private_pem(index: usize) -> &'static str {
    RSA[index].0
}

/// Public PEM of RSA key `index`. Panics if out of range.
pub fn rsa_public_pem(index: usize) -> &'static str {
    RSA[index].1
}

/// `(private, public)` PEM of EC P-256 key `index`. Panics if out of range.
pub fn ec_p256_pem(index: usize) -> (&'static str, &'static str) {
    EC_P256[index]
}

/// `(private, public)` PEM of the EC P-384 key.
pub fn ec_p384_pem() -> (&'static str, &'static str) {
    EC_P384
}

/// `(private, public)` PEM of Ed25519 key `index`. Panics if out of range.
pub fn ed25519_pem(index: usize) -> (&'static str, &'static str) {
    ED25519[index]
}

/// A local principal: `alice`, tenant `acme`, role `admin`, scopes `mcp:tools mcp:resources`.
pub fn alice() -> Principal {
    Principal::builder("alice", AuthMethod::Local)
        .tenant("acme")
        .roles(["admin"])
        .scopes(["mcp:tools", "mcp:resources"])
        .build()
}

/// A local principal: `bob`, tenant `globex`, role `viewer`, scope `mcp:resources`.
pub fn bob() -> Principal {
    Principal::builder("bob", AuthMethod::Local)
        .tenant("globex")
        .roles(["viewer"])
        .scopes(["mcp:resources"])
        .build()
}

/// Claims shaped like an Entra ID (Azure AD) v2 access token: `oid`, `tid`, `roles`, `scp`,
/// `groups`. Merge them into [`TestIssuer::mint`](crate::TestIssuer::mint); `iss`/`aud`
/// stay the issuer's defaults.
pub fn entra_claims() -> Value {
    json!({
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
        "roles": ["Tools.Invoke"],
        "scp": "mcp.tools mcp.resources",
        "groups": ["6f2a7f1d-0000-0000-0000-000000000001"],
        "ver": "2.0",
    })
}

/// Claims shaped like a Keycloak access token: nested `realm_access.roles`, space-delimited
/// `scope`, `preferred_username`.
pub fn keycloak_claims() -> Value {
    json!({
        "sub": "f1b2c3d4-0000-0000-0000-00000000beef",
        "preferred_username": "carol",
        "realm_access": {"roles": ["editor", "offline_access"]},
        "resource_access": {"mcp": {"roles": ["tool-runner"]}},
        "scope": "openid mcp:tools",
        "azp": "mcp-client",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_have_the_expected_kinds() {
        for i in 0..RSA_KEYS {
            assert!(rsa_private_pem(i).starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(rsa_public_pem(i).starts_with("-----BEGIN PUBLIC KEY-----"));
        }
        assert!(ec_p384_pem().0.contains("PRIVATE KEY"));
        assert!(ed25519_pem(2).1.contains("PUBLIC KEY"));
    }

    #[test]
    fn sample_principals() {
        assert!(alice().has_scope("mcp:tools"));
        assert_eq!(bob().tenant(), Some("globex"));
        assert_eq!(keycloak_claims()["realm_access"]["roles"][0], "editor");
        assert_eq!(entra_claims()["ver"], "2.0");
    }
}
