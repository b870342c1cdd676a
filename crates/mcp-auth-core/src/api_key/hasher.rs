//! HMAC-SHA256 of API keys under a server-side pepper, compared in constant time.

use std::fmt;

use aws_lc_rs::hmac::{self, HMAC_SHA256};
use subtle::ConstantTimeEq;

use super::ApiKeyError;
use crate::credential::Secret;

/// Length of a stored API-key hash in bytes.
pub const HASH_LEN: usize = 32;

/// Hashes API keys for storage: `HMAC-SHA256(pepper, key_id "_" secret)`.
///
/// The pepper lives in server configuration, not in the database, so a stolen table of
/// hashes cannot be checked against guesses. The key id is part of the message, so a hash
/// copied from one row to another does not verify there. API-key secrets carry 256 bits of
/// entropy, which is why a fast keyed hash is enough (a password hash such as argon2 would
/// cost milliseconds per request for nothing).
#[derive(Clone)]
pub struct ApiKeyHasher {
    /// The pepper as an HMAC key, its pads already hashed: a hash starts from them. aws-lc-rs
    /// rather than the `hmac` and `sha2` crates: its SHA-256 is assembly (SHA-NI, AVX2 or
    /// AVX), where `sha2` runs portable code on CPUs without SHA-NI.
    key: Box<hmac::Key>,
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyHasher").finish_non_exhaustive()
    }
}

impl ApiKeyHasher {
    /// Shortest accepted pepper, in bytes.
    pub const MIN_PEPPER_LEN: usize = 32;

    /// A hasher with `pepper`, which must be at least 32 bytes (use 32 random bytes, for
    /// example 43 base64url characters).
    pub fn new(pepper: &Secret) -> Result<Self, ApiKeyError> {
        if pepper.len() < Self::MIN_PEPPER_LEN {
            return Err(ApiKeyError::InvalidConfig(
                "API-key pepper must be at least 32 bytes",
            ));
        }
        let key = hmac::Key::new(HMAC_SHA256, pepper.expose().as_bytes());
        Ok(Self { key: Box::new(key) })
    }

    /// The stored hash of the key with `key_id` and `secret`.
    pub fn hash(&self, key_id: &str, secret: &str) -> [u8; HASH_LEN] {
        let mut mac = hmac::Context::with_key(&self.key);
        mac.update(key_id.as_bytes());
        mac.update(b"_");
        mac.update(secret.as_bytes());
        let mut hash = [0; HASH_LEN];
        hash.copy_from_slice(mac.sign().as_ref());
        hash
    }

    /// Whether `key_id` and `secret` hash to `stored`, compared in constant time.
    pub fn verify(&self, key_id: &str, secret: &str, stored: &[u8]) -> bool {
        let computed = self.hash(key_id, secret);
        // `ct_eq` on slices of different lengths is false without looking at the content.
        bool::from(computed.as_slice().ct_eq(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(byte: char) -> Secret {
        Secret::new(byte.to_string().repeat(32))
    }

    #[test]
    fn short_pepper_is_refused() {
        assert!(ApiKeyHasher::new(&Secret::new("x".repeat(31))).is_err());
        assert!(ApiKeyHasher::new(&pepper('x')).is_ok());
    }

    #[test]
    fn hash_depends_on_pepper_id_and_secret() {
        let a = ApiKeyHasher::new(&pepper('a')).unwrap();
        let b = ApiKeyHasher::new(&pepper('b')).unwrap();
        let h = a.hash("0123456789abcdef", "secret");
        assert!(a.verify("0123456789abcdef", "secret", &h));
        assert!(!a.verify("0123456789abcdef", "secreT", &h));
        assert!(!a.verify("0123456789abcdee", "secret", &h));
        assert!(!b.verify("0123456789abcdef", "secret", &h));
        assert!(!a.verify("0123456789abcdef", "secret", &h[..31]));
        assert_ne!(h, a.hash("0123456789abcdef_secret", ""));
    }

    /// HMAC-SHA256 by its definition (RFC 2104), over a message of several blocks, with the
    /// independent `sha2` crate.
    #[test]
    fn matches_a_plain_hmac() {
        use sha2::{Digest, Sha256};
        let p = pepper('k');
        let hasher = ApiKeyHasher::new(&p).unwrap();
        let (id, secret) = ("0123456789abcdef", "s".repeat(200));
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(p.expose().as_bytes());
        let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<_>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(format!("{id}_{secret}"))
            .finalize();
        let expected: [u8; 32] = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into();
        assert_eq!(hasher.hash(id, &secret), expected);
    }

    #[test]
    fn debug_hides_the_pepper() {
        let hasher = ApiKeyHasher::new(&pepper('z')).unwrap();
        assert!(!format!("{hasher:?}").contains("zzzz"));
    }
}
