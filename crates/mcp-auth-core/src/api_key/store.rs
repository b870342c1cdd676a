//! The [`ApiKeyStore`] trait and the update and filter types it takes.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{ApiKeyError, ApiKeyRecord};

/// Persistent storage of [`ApiKeyRecord`]s.
///
/// Small on purpose: the hot path needs only [`get`](Self::get) (through
/// [`get_shared`](Self::get_shared), whose default calls it); everything else is key
/// management. Updates are monotonic (a key can only become revoked, expire earlier, or gain
/// a successor), so concurrent updates from several replicas commute.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key. Fails with [`ApiKeyError::AlreadyExists`] if the key id is taken.
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyError>;

    /// The key with `key_id`, if any.
    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError>;

    /// The key with `key_id` as a shared record, if any: what verification reads on every
    /// request. The default wraps [`get`](Self::get); a store that keeps its records in memory
    /// hands out its own copy instead of cloning every string of the record.
    async fn get_shared(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, ApiKeyError> {
        Ok(self.get(key_id).await?.map(Arc::new))
    }

    /// Applies `update` to the key with `key_id` atomically and returns the key as it is
    /// afterwards, or `None` if there is no such key. See [`ApiKeyUpdate`] for the rules.
    async fn update(
        &self,
        key_id: &str,
        update: &ApiKeyUpdate,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError>;

    /// Keys matching `filter`, oldest first (ties broken by key id).
    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError>;

    /// Records a batch of last uses. A time older than the stored one is ignored; unknown key
    /// ids are skipped.
    async fn touch_last_used(&self, uses: &[(String, SystemTime)]) -> Result<(), ApiKeyError>;
}

#[async_trait]
impl<S: ApiKeyStore + ?Sized> ApiKeyStore for Arc<S> {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyError> {
        (**self).insert(record).await
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        (**self).get(key_id).await
    }

    async fn get_shared(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, ApiKeyError> {
        (**self).get_shared(key_id).await
    }

    async fn update(
        &self,
        key_id: &str,
        update: &ApiKeyUpdate,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        (**self).update(key_id, update).await
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        (**self).list(filter).await
    }

    async fn touch_last_used(&self, uses: &[(String, SystemTime)]) -> Result<(), ApiKeyError> {
        (**self).touch_last_used(uses).await
    }
}

/// A monotonic change to a stored key. Fields left `None` are not touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyUpdate {
    /// Revokes the key at this time, unless it is already revoked (the first time is kept).
    pub revoked_at: Option<SystemTime>,
    /// Makes the key expire at this time, unless it already expires earlier.
    pub expires_at: Option<SystemTime>,
    /// Records the successor of a rotation, unless the key already has one (the first
    /// rotation wins).
    pub replaced_by: Option<String>,
}

impl ApiKeyUpdate {
    /// An update that revokes the key at `at`.
    pub fn revoke(at: SystemTime) -> Self {
        Self {
            revoked_at: Some(at),
            ..Self::default()
        }
    }

    /// An update that makes the key expire at `at` (or earlier, if it already does).
    pub fn expire(at: SystemTime) -> Self {
        Self {
            expires_at: Some(at),
            ..Self::default()
        }
    }

    /// Also records `key_id` as the successor of the key.
    pub fn replaced_by(mut self, key_id: impl Into<String>) -> Self {
        self.replaced_by = Some(key_id.into());
        self
    }

    /// Applies the update to `record` in memory, with the same rules as a store.
    pub fn apply_to(&self, record: &mut ApiKeyRecord) {
        if record.revoked_at.is_none() {
            record.revoked_at = self.revoked_at;
        }
        if let Some(at) = self.expires_at {
            record.expires_at = Some(record.expires_at.map_or(at, |current| current.min(at)));
        }
        if record.replaced_by.is_none() {
            record.replaced_by.clone_from(&self.replaced_by);
        }
    }
}

/// Which keys [`ApiKeyStore::list`] returns: all conditions must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyFilter {
    /// Only keys of this owner.
    pub owner: Option<String>,
    /// Only keys of this tenant.
    pub tenant: Option<String>,
    /// At most this many keys.
    pub limit: u32,
}

impl Default for ApiKeyFilter {
    fn default() -> Self {
        Self {
            owner: None,
            tenant: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl ApiKeyFilter {
    /// The default and the largest accepted `limit`.
    pub const DEFAULT_LIMIT: u32 = 1000;

    /// All keys (up to the default limit).
    pub fn all() -> Self {
        Self::default()
    }

    /// Keys of `owner`.
    pub fn owner(owner: impl Into<String>) -> Self {
        Self {
            owner: Some(owner.into()),
            ..Self::default()
        }
    }

    /// Keys of `tenant`.
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Self {
            tenant: Some(tenant.into()),
            ..Self::default()
        }
    }

    /// Also restricts to keys of `tenant`.
    pub fn in_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Returns at most `limit` keys (capped at [`Self::DEFAULT_LIMIT`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit.min(Self::DEFAULT_LIMIT);
        self
    }

    /// The limit a store applies: `limit`, capped at [`Self::DEFAULT_LIMIT`].
    pub fn effective_limit(&self) -> u32 {
        self.limit.min(Self::DEFAULT_LIMIT)
    }

    /// Whether `record` matches the owner and tenant conditions.
    pub fn matches(&self, record: &ApiKeyRecord) -> bool {
        self.owner.as_ref().is_none_or(|o| *o == record.owner)
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| record.tenant.as_ref() == Some(t))
    }
}
