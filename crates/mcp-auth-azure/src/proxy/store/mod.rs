//! Where the proxy keeps its state: registered clients ([`ClientStore`]) and short-lived
//! records such as sign-ins in progress, authorization codes, consents and the encrypted
//! Entra tokens of each login ([`StateStore`]); in memory, in Redis (feature `redis`) or,
//! for clients, in SQLite / PostgreSQL (features `sqlite`, `postgres`).

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::{MemoryClientStore, MemoryStateStore};
#[cfg(feature = "redis")]
pub use redis::{RedisClientStore, RedisStateStore};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlClientStore;

use super::error::ProxyError;

/// How a client authenticates at the token and revocation endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAuthMethod {
    /// A public client: no secret, PKCE only (what MCP clients use).
    None,
    /// A secret in HTTP Basic authentication.
    ClientSecretBasic,
    /// A secret in the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// A client known to the proxy: registered through `/register` or described by a Client
/// ID Metadata Document.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegisteredClient {
    /// The client id: random for a registered client, the document URL otherwise.
    pub client_id: String,
    /// The human-readable name, shown on the consent page.
    pub client_name: Option<String>,
    /// The redirect URIs it may use.
    pub redirect_uris: Vec<String>,
    /// `authorization_code`, and `refresh_token` if it may refresh.
    pub grant_types: Vec<String>,
    /// How it authenticates.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// The scopes it registered for, if it named any (space-delimited).
    pub scope: Option<String>,
    /// Hex SHA-256 of its secret, for confidential clients.
    pub client_secret_sha256: Option<String>,
    /// When it was registered (Unix seconds).
    pub issued_at: u64,
    /// When its registration ends (Unix seconds); `None` never.
    pub expires_at: Option<u64>,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("scope", &self.scope)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl RegisteredClient {
    /// A public client (`none` authentication) with `redirect_uris`, allowed the
    /// authorization-code and refresh-token grants, registered at `now`.
    pub fn public(
        client_id: impl Into<String>,
        redirect_uris: Vec<String>,
        now: SystemTime,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_name: None,
            redirect_uris,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            token_endpoint_auth_method: ClientAuthMethod::None,
            scope: None,
            client_secret_sha256: None,
            issued_at: unix_secs(now),
            expires_at: None,
        }
    }

    /// Whether the registration has ended at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|end| end <= unix_secs(now))
    }

    /// Whether it may use `grant_type`.
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// How long a store must keep it from `now`, or `None` for ever.
    #[cfg(feature = "redis")]
    pub(crate) fn ttl_from(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|end| Duration::from_secs(end.saturating_sub(unix_secs(now)).max(1)))
    }
}

pub(crate) fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where registered clients live.
///
/// Small on purpose: registration inserts, every authorization and token request reads.
/// Ids are random, so `insert` never replaces a live client by accident; implementations
/// may refuse a duplicate id.
#[async_trait]
pub trait ClientStore: Send + Sync + fmt::Debug {
    /// Stores a newly registered client.
    async fn insert(&self, client: &RegisteredClient, now: SystemTime) -> Result<(), ProxyError>;

    /// The client with `client_id`, unless unknown or expired at `now`.
    async fn get(
        &self,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Option<RegisteredClient>, ProxyError>;

    /// Removes a client. Returns whether it was there.
    async fn delete(&self, client_id: &str) -> Result<bool, ProxyError>;
}

/// Short-lived proxy state: opaque values under string keys, each with a time to live.
///
/// `take` must be atomic (two concurrent takes of one key: one gets the value, the other
/// `None`): authorization codes and sign-in states are single-use through it.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), ProxyError>;

    /// The value under `key`, unless missing or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError>;

    /// Removes and returns the value under `key`, atomically.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError>;

    /// Removes the value under `key`. Returns whether it was there.
    async fn delete(&self, key: &str) -> Result<bool, ProxyError>;
}
