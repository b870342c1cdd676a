//! HMAC-SHA256 of API keys under a server-side pepper, compared in constant time.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
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
    /// HMAC with the pepper already absorbed: cloning it skips re-deriving the pads.
    mac: Hmac<Sha256>,
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
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper.expose().as_bytes())
            .map_err(|_| ApiKeyError::InvalidConfig("API-key pepper is not a valid HMAC key"))?;
        Ok(Self { mac })
    }

    /// The stored hash of the key with `key_id` and `secret`.
    pub fn hash(&self, key_id: &str, secret: &str) -> [u8; HASH_LEN] {
        let mut mac = self.mac.clone();
        mac.update(key_id.as_bytes());
        mac.update(b"_");
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
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

    #[test]
    fn matches_a_plain_hmac() {
        let p = pepper('k');
        let hasher = ApiKeyHasher::new(&p).unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(p.expose().as_bytes()).unwrap();
        mac.update(b"id_sec");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(hasher.hash("id", "sec"), expected);
    }

    #[test]
    fn debug_hides_the_pepper() {
        let hasher = ApiKeyHasher::new(&pepper('z')).unwrap();
        assert!(!format!("{hasher:?}").contains("zzzz"));
    }
}
