//! [`MemoryApiKeyStore`]: API keys in process memory, for tests, development and single nodes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use foldhash::fast::RandomState;

use super::{ApiKeyError, ApiKeyFilter, ApiKeyRecord, ApiKeyStore, ApiKeyUpdate};

/// API keys held in memory. Keys are lost when the process ends.
///
/// Records are shared: [`get_shared`](ApiKeyStore::get_shared) hands out the stored record
/// without copying it, and a change stores a new record rather than editing one that a
/// reader may still hold.
#[derive(Default)]
pub struct MemoryApiKeyStore {
    /// Seeded foldhash: SipHash of the key id was a tenth of a verification's cost.
    keys: RwLock<HashMap<String, Arc<ApiKeyRecord>, RandomState>>,
}

impl fmt::Debug for MemoryApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.keys.read().map(|keys| keys.len()).unwrap_or_default();
        f.debug_struct("MemoryApiKeyStore")
            .field("keys", &len)
            .finish()
    }
}

impl MemoryApiKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> ApiKeyError {
    ApiKeyError::store("in-memory API-key store lock poisoned", None)
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeyStore {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyError> {
        let mut keys = self.keys.write().map_err(|_| poisoned())?;
        match keys.entry(record.key_id.clone()) {
            Entry::Occupied(_) => Err(ApiKeyError::AlreadyExists),
            Entry::Vacant(slot) => {
                slot.insert(Arc::new(record.clone()));
                Ok(())
            }
        }
    }

    async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        Ok(keys.get(key_id).map(|record| ApiKeyRecord::clone(record)))
    }

    async fn get_shared(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, ApiKeyError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        Ok(keys.get(key_id).cloned())
    }

    async fn update(
        &self,
        key_id: &str,
        update: &ApiKeyUpdate,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        let mut keys = self.keys.write().map_err(|_| poisoned())?;
        Ok(keys.get_mut(key_id).map(|shared| {
            let mut record = ApiKeyRecord::clone(shared);
            update.apply_to(&mut record);
            *shared = Arc::new(record.clone());
            record
        }))
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        let mut found: Vec<ApiKeyRecord> = keys
            .values()
            .filter(|r| filter.matches(r))
            .map(|r| ApiKeyRecord::clone(r))
            .collect();
        found.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.key_id.cmp(&b.key_id))
        });
        found.truncate(usize::try_from(filter.effective_limit()).unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn touch_last_used(&self, uses: &[(String, SystemTime)]) -> Result<(), ApiKeyError> {
        let mut keys = self.keys.write().map_err(|_| poisoned())?;
        for (key_id, at) in uses {
            if let Some(shared) = keys.get_mut(key_id)
                && shared.last_used_at.is_none_or(|current| current < *at)
            {
                let mut record = ApiKeyRecord::clone(shared);
                record.last_used_at = Some(*at);
                *shared = Arc::new(record);
            }
        }
        Ok(())
    }
}
