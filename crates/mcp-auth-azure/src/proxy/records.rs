//! The records the proxy keeps in its [`StateStore`](super::store::StateStore), their keys,
//! and the random values that name them.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_auth_core::IssueRequest;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::entra::UpstreamChallenge;
use super::error::ProxyError;
use super::store::StateStore;

/// A random, URL-safe value of 256 bits (codes, states, CSRF tokens, ids).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256: how secrets appear in store keys and records.
pub(crate) fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// An authorization request the proxy has accepted and not finished yet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingAuthorization {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) scopes: Vec<String>,
    /// SHA-256 of the CSRF token of the consent page, once one was shown.
    pub(crate) csrf_sha256: Option<String>,
}

/// A sign-in sent to Entra: the authorization request and the proxy's PKCE and nonce.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UpstreamPending {
    pub(crate) authorization: PendingAuthorization,
    pub(crate) challenge: UpstreamChallenge,
    /// The browser whose consent is remembered once the sign-in succeeds. Consent is
    /// recorded only then, so nobody can fill the store with consents without signing in.
    pub(crate) remember_consent_for: Option<String>,
}

/// An authorization code the proxy issued to a client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IssuedCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) grant: IssueRequest,
    pub(crate) sid: String,
}

/// The Entra side of one login: its tokens, sealed, and whose they are.
#[derive(Serialize, Deserialize)]
pub(crate) struct UpstreamSession {
    pub(crate) subject: String,
    pub(crate) client_id: String,
    /// When the login ends at the latest (Unix seconds): the end of its refresh family.
    pub(crate) ends_at: u64,
    pub(crate) sealed_tokens: String,
}

impl fmt::Debug for UpstreamSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSession")
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("ends_at", &self.ends_at)
            .finish_non_exhaustive()
    }
}

/// Store keys, one function per record kind.
pub(crate) mod key {
    use super::sha256_hex;

    pub(crate) fn consent_transaction(id: &str) -> String {
        format!("txn:{id}")
    }
    pub(crate) fn upstream(state: &str) -> String {
        format!("upstream:{}", sha256_hex(state))
    }
    pub(crate) fn code(code: &str) -> String {
        format!("code:{}", sha256_hex(code))
    }
    pub(crate) fn used_code(code: &str) -> String {
        format!("code-used:{}", sha256_hex(code))
    }
    pub(crate) fn consent(browser: &str, client_id: &str) -> String {
        format!("consent:{}:{}", sha256_hex(browser), sha256_hex(client_id))
    }
    pub(crate) fn session(sid: &str) -> String {
        format!("session:{sid}")
    }
}

/// Typed access to a [`StateStore`] through JSON.
pub(crate) async fn put<T: Serialize>(
    store: &dyn StateStore,
    key: &str,
    value: &T,
    ttl: Duration,
) -> Result<(), ProxyError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ProxyError::store("record encode", e))?;
    store.put(key, &bytes, ttl).await
}

fn decode<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Result<Option<T>, ProxyError> {
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(|e| ProxyError::store("record decode", e)))
        .transpose()
}

/// Reads a typed record.
pub(crate) async fn get<T: DeserializeOwned>(
    store: &dyn StateStore,
    key: &str,
) -> Result<Option<T>, ProxyError> {
    decode(store.get(key).await?)
}

/// Takes (reads and removes) a typed record.
pub(crate) async fn take<T: DeserializeOwned>(
    store: &dyn StateStore,
    key: &str,
) -> Result<Option<T>, ProxyError> {
    decode(store.take(key).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
    }

    #[test]
    fn keys_hide_the_secrets_they_are_made_of() {
        let code = random_token();
        assert!(!key::code(&code).contains(&code));
        assert!(!key::upstream(&code).contains(&code));
        assert!(!key::consent(&code, "c").contains(&code));
        assert_ne!(key::code(&code), key::used_code(&code));
    }
}
