//! The stored form of an API key: [`ApiKeyRecord`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use super::hasher::HASH_LEN;

/// One API key as stored: everything but the secret, which is kept only as a keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public identifier, the middle part of `<prefix>_<key id>_<secret>`.
    pub key_id: String,
    /// `HMAC-SHA256(pepper, key_id "_" secret)`.
    pub hash: [u8; HASH_LEN],
    /// The subject the key authenticates as.
    pub owner: String,
    /// The tenant of the owner, if any.
    pub tenant: Option<String>,
    /// Roles granted to callers presenting the key.
    pub roles: BTreeSet<String>,
    /// Scopes granted to callers presenting the key.
    pub scopes: BTreeSet<String>,
    /// A human label ("CI deploy key").
    pub name: String,
    /// When the key was issued.
    pub created_at: SystemTime,
    /// When the key stops working, if it expires (also set to the end of the grace period
    /// when the key is rotated).
    pub expires_at: Option<SystemTime>,
    /// Last successful use, as of the last batch flush.
    pub last_used_at: Option<SystemTime>,
    /// When the key was revoked; a revoked key fails at once.
    pub revoked_at: Option<SystemTime>,
    /// The key this one replaced in a rotation.
    pub rotated_from: Option<String>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<String>,
}

impl ApiKeyRecord {
    /// Whether the key is neither revoked nor expired at `now`.
    pub fn is_active_at(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && !self.is_expired_at(now)
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is left out: it is not the key, but nothing gains from printing it.
        f.debug_struct("ApiKeyRecord")
            .field("key_id", &self.key_id)
            .field("owner", &self.owner)
            .field("tenant", &self.tenant)
            .field("roles", &self.roles)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .field("rotated_from", &self.rotated_from)
            .field("replaced_by", &self.replaced_by)
            .finish_non_exhaustive()
    }
}
