//! [`TokenCipher`]: AES-256-GCM (aws-lc-rs) for the Entra tokens the proxy keeps, with key
//! rotation (one key encrypts, every configured key decrypts).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_auth_core::Secret;
use sha2::{Digest, Sha256};

use super::error::{ConfigError, ProxyError};

/// Format version of a sealed record.
const VERSION: u8 = 1;
/// Length of the key identifier in a sealed record.
const KEY_ID_LEN: usize = 4;
/// Length of an AES-256 key.
const KEY_LEN: usize = 32;

struct Key {
    id: [u8; KEY_ID_LEN],
    key: RandomizedNonceKey,
}

/// Seals and opens byte strings with AES-256-GCM under a random 96-bit nonce.
///
/// A sealed record is `version | key id | nonce | ciphertext | tag`, base64url-encoded. The
/// key id (the first bytes of the key's SHA-256) picks the key that opens it, so records
/// sealed under an older key stay readable while that key is configured. The associated
/// data binds a record to where it is stored: a record moved to another key fails to open.
pub(crate) struct TokenCipher {
    keys: Vec<Key>,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCipher")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn decode_key(secret: &Secret) -> Result<[u8; KEY_LEN], ConfigError> {
    let text = secret.expose().trim();
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(text))
        .map_err(|_| ConfigError::new("a token encryption key is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| ConfigError::new("a token encryption key is not 32 bytes"))
}

impl TokenCipher {
    /// A cipher over `keys` (base64 of 32 bytes each); the first one seals.
    pub(crate) fn new(keys: &[Secret]) -> Result<Self, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::new("no token encryption key"));
        }
        let mut out: Vec<Key> = Vec::with_capacity(keys.len());
        for secret in keys {
            let bytes = decode_key(secret)?;
            let digest = Sha256::digest(bytes);
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&digest[..KEY_ID_LEN]);
            if out.iter().any(|k| k.id == id) {
                return Err(ConfigError::new("a token encryption key is listed twice"));
            }
            let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| ConfigError::new("a token encryption key was refused"))?;
            out.push(Key { id, key });
        }
        Ok(Self { keys: out })
    }

    /// Seals `plaintext`, bound to `context` (the record's storage key).
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, ProxyError> {
        let key = self.keys.first().ok_or(ProxyError::Crypto)?;
        let mut in_out = plaintext.to_vec();
        let nonce = key
            .key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| ProxyError::Crypto)?;
        let mut record = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + in_out.len());
        record.push(VERSION);
        record.extend_from_slice(&key.id);
        record.extend_from_slice(nonce.as_ref());
        record.extend_from_slice(&in_out);
        Ok(URL_SAFE_NO_PAD.encode(record))
    }

    /// Opens a record sealed for `context`.
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, ProxyError> {
        let record = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| ProxyError::Crypto)?;
        let header = 1 + KEY_ID_LEN + NONCE_LEN;
        if record.len() < header || record.first() != Some(&VERSION) {
            return Err(ProxyError::Crypto);
        }
        let (id, rest) = record[1..].split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(ProxyError::Crypto)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ProxyError::Crypto)?;
        let mut in_out = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| ProxyError::Crypto)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(URL_SAFE_NO_PAD.encode([byte; 32]))
    }

    #[test]
    fn seal_and_open_round_trip_with_rotation() {
        let old = TokenCipher::new(&[key(1)]).unwrap();
        let sealed = old.seal("session:a", b"entra tokens").unwrap();
        assert!(!sealed.contains("entra"));
        assert_ne!(sealed, old.seal("session:a", b"entra tokens").unwrap());

        let rotated = TokenCipher::new(&[key(2), key(1)]).unwrap();
        assert_eq!(rotated.open("session:a", &sealed).unwrap(), b"entra tokens");
        let new = rotated.seal("session:a", b"x").unwrap();
        // A cipher without the new key cannot open what it sealed.
        assert!(old.open("session:a", &new).is_err());
    }

    #[test]
    fn tampering_and_wrong_context_fail() {
        let cipher = TokenCipher::new(&[key(7)]).unwrap();
        let sealed = cipher.seal("session:a", b"secret").unwrap();
        assert!(cipher.open("session:b", &sealed).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            cipher
                .open("session:a", &URL_SAFE_NO_PAD.encode(&bytes))
                .is_err()
        );
        for junk in ["", "!!", "AQ", &URL_SAFE_NO_PAD.encode([9u8; 40])] {
            assert!(cipher.open("session:a", junk).is_err());
        }
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(TokenCipher::new(&[]).is_err());
        assert!(TokenCipher::new(&[Secret::from("short")]).is_err());
        assert!(TokenCipher::new(&[key(1), key(1)]).is_err());
        let standard = Secret::new(STANDARD.encode([3u8; 32]));
        assert!(TokenCipher::new(&[standard]).is_ok());
        assert!(!format!("{:?}", TokenCipher::new(&[key(1)]).unwrap()).contains("AQEB"));
    }
}
