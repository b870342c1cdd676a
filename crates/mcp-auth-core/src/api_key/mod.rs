//! API keys: format `<prefix>_<key id>_<secret>`, peppered HMAC-SHA256 storage, rotation
//! with a grace period, revocation, batched last-use times, and the stores.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_auth_core::api_key::{ApiKeyManager, MemoryApiKeyStore, NewApiKey};
//! use mcp_auth_core::{AuthMethod, Secret};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let pepper = Secret::new("a server-side pepper of at least 32 bytes!");
//! let keys = ApiKeyManager::builder(Arc::new(MemoryApiKeyStore::new()), pepper).build()?;
//!
//! let issued = keys.issue(NewApiKey::new("ci-bot").roles(["deployer"])).await?;
//! let principal = keys.verify(issued.key.expose()).await.unwrap();
//! assert_eq!(principal.subject(), "ci-bot");
//! assert!(matches!(principal.method(), AuthMethod::ApiKey { key_id } if *key_id == issued.record.key_id));
//!
//! keys.revoke(&issued.record.key_id).await?;
//! assert!(keys.verify(issued.key.expose()).await.is_err());
//! # Ok::<_, mcp_auth_core::api_key::ApiKeyError>(())
//! # }).unwrap();
//! ```

mod format;
mod hasher;
mod manager;
mod memory;
mod record;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;

pub use format::{ApiKeyFormat, KEY_ID_LEN, MAX_PREFIX_LEN, ParsedApiKey, SECRET_LEN};
pub use hasher::{ApiKeyHasher, HASH_LEN};
pub use manager::{
    ApiKeyAuthenticator, ApiKeyManager, ApiKeyManagerBuilder, IssuedApiKey, LastUsedFlusher,
    NewApiKey,
};
pub use memory::MemoryApiKeyStore;
pub use record::ApiKeyRecord;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlApiKeyStore;
pub use store::{ApiKeyFilter, ApiKeyStore, ApiKeyUpdate};

use crate::error::BoxError;

/// Why an API-key management operation or a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The configuration is invalid (short pepper, bad prefix, bad schema name).
    #[error("invalid API-key configuration: {0}")]
    InvalidConfig(&'static str),
    /// No key has this id.
    #[error("API key not found")]
    NotFound,
    /// A key with this id already exists.
    #[error("API key id already exists")]
    AlreadyExists,
    /// The key is revoked or expired, so it cannot be rotated.
    #[error("API key is revoked or expired")]
    Inactive,
    /// The key was already rotated; rotate its successor instead.
    #[error("API key was already rotated")]
    AlreadyRotated,
    /// The store failed (database unreachable, bad data).
    #[error("API-key store failed: {message}")]
    Store {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl ApiKeyError {
    /// Builds [`ApiKeyError::Store`] from a message and an optional source.
    pub fn store(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Store {
            message: message.into(),
            source,
        }
    }
}
