//! [`ApiKeyManager`] (issue, verify, rotate, revoke, batched last-used) and
//! [`ApiKeyAuthenticator`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use foldhash::fast::RandomState;

use super::{
    ApiKeyError, ApiKeyFilter, ApiKeyFormat, ApiKeyHasher, ApiKeyRecord, ApiKeyStore, ApiKeyUpdate,
};
use crate::authenticator::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::credential::{Credential, CredentialKind, Secret};
use crate::error::AuthError;
use crate::principal::{AuthMethod, Principal};

/// How many distinct keys may wait for a last-used flush; further uses are not recorded
/// until the next flush (last-used is advisory, memory is not).
const DEFAULT_MAX_PENDING: usize = 100_000;

/// How many keys' principals are kept for reuse; past that an arbitrary one makes room.
const MAX_PRINCIPALS: usize = 10_000;

/// How often issuing retries after a key-id collision (64 random bits: practically never).
const ISSUE_ATTEMPTS: usize = 3;

/// What a new key grants; see [`ApiKeyManager::issue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    owner: String,
    tenant: Option<String>,
    roles: BTreeSet<String>,
    scopes: BTreeSet<String>,
    name: String,
    expires_at: Option<SystemTime>,
    ttl: Option<Duration>,
}

impl NewApiKey {
    /// A key that authenticates as `owner`, with no roles or scopes and no expiry.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            tenant: None,
            roles: BTreeSet::new(),
            scopes: BTreeSet::new(),
            name: String::new(),
            expires_at: None,
            ttl: None,
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets a human label.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the key expire at `at`.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self.ttl = None;
        self
    }

    /// Makes the key expire `ttl` after it is issued.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self.expires_at = None;
        self
    }
}

/// A freshly issued key: the plaintext is shown here once and never stored.
#[derive(Clone, Debug)]
pub struct IssuedApiKey {
    /// The full key `<prefix>_<key id>_<secret>`, to hand to the caller.
    pub key: Secret,
    /// The stored record (without the secret).
    pub record: ApiKeyRecord,
}

/// Builds an [`ApiKeyManager`]; see [`ApiKeyManager::builder`].
pub struct ApiKeyManagerBuilder {
    store: Arc<dyn ApiKeyStore>,
    pepper: Secret,
    prefix: Option<String>,
    clock: Arc<dyn Clock>,
    max_pending: usize,
}

impl fmt::Debug for ApiKeyManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyManagerBuilder")
            .field("prefix", &self.prefix)
            .field("clock", &self.clock)
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl ApiKeyManagerBuilder {
    /// Sets the key prefix (1 to 16 characters of `[a-z0-9]`; default `mcpk`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how many distinct keys may wait for a last-used flush (default 100 000).
    pub fn max_pending_last_used(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Builds the manager; fails if the pepper is shorter than 32 bytes or the prefix is
    /// invalid.
    pub fn build(self) -> Result<ApiKeyManager, ApiKeyError> {
        let format = match &self.prefix {
            Some(prefix) => ApiKeyFormat::new(prefix)?,
            None => ApiKeyFormat::default(),
        };
        let hasher = ApiKeyHasher::new(&self.pepper)?;
        Ok(ApiKeyManager {
            inner: Arc::new(Inner {
                store: self.store,
                hasher,
                format,
                clock: self.clock,
                pending: Mutex::new(HashMap::default()),
                max_pending: self.max_pending,
                principals: Mutex::new(HashMap::default()),
            }),
        })
    }
}

/// Issues, verifies, rotates and revokes API keys on top of an [`ApiKeyStore`].
///
/// Cheap to clone. Verification costs one store lookup, one HMAC-SHA256 and a constant-time
/// comparison; the time of last use is kept in memory and written to the store in batches
/// by [`flush_last_used`](Self::flush_last_used), which
/// [`spawn_last_used_flusher`](Self::spawn_last_used_flusher) calls periodically.
#[derive(Clone)]
pub struct ApiKeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ApiKeyStore>,
    hasher: ApiKeyHasher,
    format: ApiKeyFormat,
    clock: Arc<dyn Clock>,
    /// Last successful use per key id since the last flush.
    pending: Mutex<HashMap<Box<str>, SystemTime, RandomState>>,
    max_pending: usize,
    /// The principal last built for each key id, with the record it was built from: reused
    /// while the store returns a record with the same fields (see [`same_principal`]), so a
    /// request does not rebuild every string and set. At most [`MAX_PRINCIPALS`] entries.
    principals: Mutex<PrincipalMemo>,
}

/// Key id -> the record a principal was built from, and that principal.
type PrincipalMemo = HashMap<Box<str>, (Arc<ApiKeyRecord>, Principal), RandomState>;

impl fmt::Debug for ApiKeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyManager")
            .field("prefix", &self.inner.format.prefix())
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: ApiKeyError) -> AuthError {
    AuthError::unavailable("API-key store", Some(Box::new(error)))
}

impl ApiKeyManager {
    /// Starts building a manager over `store`, hashing with `pepper` (at least 32 bytes,
    /// kept in server configuration, never in the store).
    pub fn builder(store: Arc<dyn ApiKeyStore>, pepper: Secret) -> ApiKeyManagerBuilder {
        ApiKeyManagerBuilder {
            store,
            pepper,
            prefix: None,
            clock: Arc::new(SystemClock),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    /// The key format (prefix) of this manager.
    pub fn format(&self) -> &ApiKeyFormat {
        &self.inner.format
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.inner.store
    }

    /// Issues a new key. The returned plaintext is the only copy: show it once.
    pub async fn issue(&self, new: NewApiKey) -> Result<IssuedApiKey, ApiKeyError> {
        let now = self.inner.clock.now();
        let expires_at = new
            .expires_at
            .or_else(|| new.ttl.and_then(|ttl| now.checked_add(ttl)));
        let template = ApiKeyRecord {
            key_id: String::new(),
            hash: [0; super::HASH_LEN],
            owner: new.owner,
            tenant: new.tenant,
            roles: new.roles,
            scopes: new.scopes,
            name: new.name,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
            rotated_from: None,
            replaced_by: None,
        };
        self.insert_fresh(template).await
    }

    /// Generates a key id and secret for `template` and stores it, retrying on a key-id
    /// collision.
    async fn insert_fresh(&self, mut record: ApiKeyRecord) -> Result<IssuedApiKey, ApiKeyError> {
        for _ in 0..ISSUE_ATTEMPTS {
            let (key_id, secret, key) = self.inner.format.generate();
            record.hash = self.inner.hasher.hash(&key_id, secret.expose());
            record.key_id = key_id;
            match self.inner.store.insert(&record).await {
                Ok(()) => {
                    tracing::debug!(key_id = %record.key_id, owner = %record.owner, "API key issued");
                    return Ok(IssuedApiKey { key, record });
                }
                Err(ApiKeyError::AlreadyExists) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(ApiKeyError::AlreadyExists)
    }

    /// Verifies a presented key and returns the principal it authenticates.
    ///
    /// Malformed, unknown, mismatching and expired keys fail with
    /// [`AuthError::InvalidApiKey`], revoked keys with [`AuthError::Revoked`], a failing
    /// store with [`AuthError::Unavailable`]. The secret is checked before the key's state,
    /// so a caller without the secret learns nothing about the key.
    pub async fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        let inner = &*self.inner;
        let Some(parsed) = inner.format.parse(key) else {
            tracing::debug!("API key rejected: malformed");
            return Err(AuthError::InvalidApiKey);
        };
        let key_id = parsed.key_id();
        // Through the `dyn` store itself: the `Arc` forwarding impl would box a second future.
        let store: &dyn ApiKeyStore = &*inner.store;
        let record = store.get_shared(key_id).await.map_err(unavailable)?;
        let Some(record) = record else {
            // Hash anyway, so an unknown key id takes about as long as a wrong secret.
            std::hint::black_box(inner.hasher.hash(key_id, parsed.secret()));
            tracing::debug!(key_id, "API key rejected: unknown key id");
            return Err(AuthError::InvalidApiKey);
        };
        if !inner.hasher.verify(key_id, parsed.secret(), &record.hash) {
            tracing::debug!(key_id, "API key rejected: secret does not match");
            return Err(AuthError::InvalidApiKey);
        }
        if record.revoked_at.is_some() {
            tracing::debug!(key_id, "API key rejected: revoked");
            return Err(AuthError::Revoked);
        }
        let now = inner.clock.now();
        if record.is_expired_at(now) {
            tracing::debug!(key_id, "API key rejected: expired");
            return Err(AuthError::InvalidApiKey);
        }
        self.record_use(key_id, now);
        Ok(self.principal(record))
    }

    /// The principal of `record`: the one built before for the same fields, or a new one.
    fn principal(&self, record: Arc<ApiKeyRecord>) -> Principal {
        let Ok(mut memo) = self.inner.principals.lock() else {
            return principal_of(&record);
        };
        if let Some((seen, principal)) = memo.get_mut(record.key_id.as_str()) {
            if !same_principal(seen, &record) {
                *principal = principal_of(&record);
                *seen = record;
            }
            return principal.clone();
        }
        let principal = principal_of(&record);
        // Evict one entry rather than clear them all: dropping thousands of principals at
        // once would stall this request.
        if memo.len() >= MAX_PRINCIPALS
            && let Some(victim) = memo.keys().next().cloned()
        {
            memo.remove(&victim);
        }
        memo.insert(record.key_id.as_str().into(), (record, principal.clone()));
        principal
    }

    /// Rotates a key: issues a new key with the same owner, tenant, roles, scopes, name and
    /// lifetime, and lets the old key work only until now + `grace`.
    ///
    /// Fails with [`ApiKeyError::NotFound`] for an unknown key, [`ApiKeyError::Inactive`]
    /// for a revoked or expired one, and [`ApiKeyError::AlreadyRotated`] if the key already
    /// has a successor (the new key is then revoked again).
    pub async fn rotate(&self, key_id: &str, grace: Duration) -> Result<IssuedApiKey, ApiKeyError> {
        let inner = &*self.inner;
        let old = inner
            .store
            .get(key_id)
            .await?
            .ok_or(ApiKeyError::NotFound)?;
        let now = inner.clock.now();
        if !old.is_active_at(now) {
            return Err(ApiKeyError::Inactive);
        }
        if old.replaced_by.is_some() {
            return Err(ApiKeyError::AlreadyRotated);
        }
        let lifetime = old
            .expires_at
            .and_then(|at| at.duration_since(old.created_at).ok());
        let successor = ApiKeyRecord {
            key_id: String::new(),
            hash: [0; super::HASH_LEN],
            owner: old.owner.clone(),
            tenant: old.tenant.clone(),
            roles: old.roles.clone(),
            scopes: old.scopes.clone(),
            name: old.name.clone(),
            created_at: now,
            expires_at: lifetime.and_then(|l| now.checked_add(l)),
            last_used_at: None,
            revoked_at: None,
            rotated_from: Some(old.key_id.clone()),
            replaced_by: None,
        };
        let issued = self.insert_fresh(successor).await?;
        let grace_end = now.checked_add(grace).unwrap_or(now);
        let update = ApiKeyUpdate::expire(grace_end).replaced_by(issued.record.key_id.clone());
        let after = match inner.store.update(key_id, &update).await {
            Ok(after) => after,
            Err(error) => {
                self.revoke_quietly(&issued.record.key_id).await;
                return Err(error);
            }
        };
        let won = after
            .as_ref()
            .and_then(|r| r.replaced_by.as_deref())
            .is_some_and(|successor| successor == issued.record.key_id);
        if !won {
            self.revoke_quietly(&issued.record.key_id).await;
            return Err(if after.is_none() {
                ApiKeyError::NotFound
            } else {
                ApiKeyError::AlreadyRotated
            });
        }
        tracing::debug!(old = key_id, new = %issued.record.key_id, ?grace, "API key rotated");
        Ok(issued)
    }

    /// Revokes a successor that lost a rotation race, logging (not returning) a failure:
    /// the caller already reports the more important error.
    async fn revoke_quietly(&self, key_id: &str) {
        if let Err(error) = self.revoke(key_id).await {
            tracing::warn!(key_id, %error, "could not revoke an unused rotation successor");
        }
    }

    /// Revokes a key: it fails from the next request on. Revoking twice keeps the first time.
    pub async fn revoke(&self, key_id: &str) -> Result<ApiKeyRecord, ApiKeyError> {
        let now = self.inner.clock.now();
        let record = self
            .inner
            .store
            .update(key_id, &ApiKeyUpdate::revoke(now))
            .await?
            .ok_or(ApiKeyError::NotFound)?;
        tracing::debug!(key_id, "API key revoked");
        Ok(record)
    }

    /// The stored record of a key.
    pub async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        self.inner.store.get(key_id).await
    }

    /// Keys matching `filter`.
    pub async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        self.inner.store.list(filter).await
    }

    /// Notes a successful use in memory, for the next flush.
    fn record_use(&self, key_id: &str, now: SystemTime) {
        let Ok(mut pending) = self.inner.pending.lock() else {
            return;
        };
        if let Some(at) = pending.get_mut(key_id) {
            if *at < now {
                *at = now;
            }
        } else if pending.len() < self.inner.max_pending {
            pending.insert(key_id.into(), now);
        }
    }

    /// How many keys have a last use waiting to be flushed.
    pub fn pending_last_used(&self) -> usize {
        self.inner
            .pending
            .lock()
            .map(|p| p.len())
            .unwrap_or_default()
    }

    /// Writes the collected last-use times to the store in one batch and returns how many
    /// keys were written. On failure the times are kept for the next flush.
    pub async fn flush_last_used(&self) -> Result<usize, ApiKeyError> {
        let batch: Vec<(String, SystemTime)> = {
            let mut pending = self
                .inner
                .pending
                .lock()
                .map_err(|_| ApiKeyError::store("last-used buffer lock poisoned", None))?;
            std::mem::take(&mut *pending)
                .into_iter()
                .map(|(id, at)| (String::from(id), at))
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match self.inner.store.touch_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(error) => {
                if let Ok(mut pending) = self.inner.pending.lock() {
                    for (id, at) in batch {
                        if pending.len() >= self.inner.max_pending {
                            break;
                        }
                        let slot = pending.entry(id.into_boxed_str()).or_insert(at);
                        if *slot < at {
                            *slot = at;
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// Starts a tokio task that flushes last-use times every `every` (at least one second).
    ///
    /// The task stops when the returned guard is dropped or when every clone of the manager
    /// is gone; [`LastUsedFlusher::shutdown`] stops it and flushes one last time.
    pub fn spawn_last_used_flusher(&self, every: Duration) -> LastUsedFlusher {
        let every = every.max(Duration::from_secs(1));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; skip it so the first flush is after `every`.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let manager = ApiKeyManager { inner };
                if let Err(error) = manager.flush_last_used().await {
                    tracing::warn!(%error, "could not flush API-key last-used times");
                }
            }
        });
        LastUsedFlusher {
            manager: self.clone(),
            task,
        }
    }
}

/// Guard of the background last-used flush task; see
/// [`ApiKeyManager::spawn_last_used_flusher`]. Dropping it stops the task.
#[derive(Debug)]
pub struct LastUsedFlusher {
    manager: ApiKeyManager,
    task: tokio::task::JoinHandle<()>,
}

impl LastUsedFlusher {
    /// Stops the task and flushes what is still pending.
    pub async fn shutdown(self) -> Result<usize, ApiKeyError> {
        self.task.abort();
        self.manager.flush_last_used().await
    }
}

impl Drop for LastUsedFlusher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The principal a key authenticates as. [`same_principal`] must compare every field read
/// here.
fn principal_of(record: &ApiKeyRecord) -> Principal {
    let mut builder = Principal::builder(
        record.owner.as_str(),
        AuthMethod::ApiKey {
            key_id: record.key_id.clone(),
        },
    )
    .maybe_tenant(record.tenant.clone())
    .roles(record.roles.iter().cloned())
    .scopes(record.scopes.iter().cloned())
    .issued_at(record.created_at);
    if let Some(at) = record.expires_at {
        builder = builder.expires_at(at);
    }
    builder.build()
}

/// Whether [`principal_of`] gives the same principal for `a` and `b`: the same shared record
/// (a shared record never changes), or equal in every field it reads.
fn same_principal(a: &Arc<ApiKeyRecord>, b: &Arc<ApiKeyRecord>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.key_id == b.key_id
            && a.owner == b.owner
            && a.tenant == b.tenant
            && a.roles == b.roles
            && a.scopes == b.scopes
            && a.created_at == b.created_at
            && a.expires_at == b.expires_at)
}

/// An [`Authenticator`] for [`CredentialKind::ApiKey`] credentials, backed by an
/// [`ApiKeyManager`].
#[derive(Clone, Debug)]
pub struct ApiKeyAuthenticator {
    manager: ApiKeyManager,
}

impl ApiKeyAuthenticator {
    /// An authenticator that verifies keys with `manager`.
    pub fn new(manager: ApiKeyManager) -> Self {
        Self { manager }
    }

    /// The manager behind this authenticator.
    pub fn manager(&self) -> &ApiKeyManager {
        &self.manager
    }
}

#[async_trait]
impl Authenticator for ApiKeyAuthenticator {
    fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::ApiKey
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        match credential {
            Credential::ApiKey(key) => self.manager.verify(key.expose()).await,
            _ => Err(AuthError::NotAccepted),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::api_key::MemoryApiKeyStore;
    use crate::clock::TestClock;

    /// A memory store whose `touch_last_used` can be made to fail, to check that a failed
    /// flush keeps the pending times.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryApiKeyStore,
        fail_touch: AtomicBool,
    }

    #[async_trait]
    impl ApiKeyStore for FlakyStore {
        async fn insert(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyError> {
            self.inner.insert(record).await
        }
        async fn get(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
            self.inner.get(key_id).await
        }
        async fn update(
            &self,
            key_id: &str,
            update: &ApiKeyUpdate,
        ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
            self.inner.update(key_id, update).await
        }
        async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
            self.inner.list(filter).await
        }
        async fn touch_last_used(&self, uses: &[(String, SystemTime)]) -> Result<(), ApiKeyError> {
            if self.fail_touch.load(Ordering::SeqCst) {
                return Err(ApiKeyError::store("touch failed", None));
            }
            self.inner.touch_last_used(uses).await
        }
    }

    const PEPPER: &str = "unit-test-pepper-0123456789abcdefghij";

    fn manager(store: Arc<dyn ApiKeyStore>, clock: Arc<TestClock>) -> ApiKeyManager {
        ApiKeyManager::builder(store, Secret::new(PEPPER))
            .clock(clock)
            .build()
            .unwrap()
    }

    #[test]
    fn builder_rejects_bad_configuration() {
        let store: Arc<dyn ApiKeyStore> = Arc::new(MemoryApiKeyStore::new());
        assert!(matches!(
            ApiKeyManager::builder(store.clone(), Secret::new("short")).build(),
            Err(ApiKeyError::InvalidConfig(_))
        ));
        assert!(matches!(
            ApiKeyManager::builder(store, Secret::new(PEPPER))
                .prefix("Bad_Prefix")
                .build(),
            Err(ApiKeyError::InvalidConfig(_))
        ));
    }

    #[tokio::test]
    async fn custom_prefix_and_debug_redaction() {
        let store = Arc::new(MemoryApiKeyStore::new());
        let keys = ApiKeyManager::builder(store, Secret::new(PEPPER))
            .prefix("acme")
            .build()
            .unwrap();
        let issued = keys.issue(NewApiKey::new("u")).await.unwrap();
        assert!(issued.key.expose().starts_with("acme_"));
        keys.verify(issued.key.expose()).await.unwrap();
        let default_prefixed = issued.key.expose().replacen("acme_", "mcpk_", 1);
        assert!(matches!(
            keys.verify(&default_prefixed).await,
            Err(AuthError::InvalidApiKey)
        ));
        for text in [
            format!("{issued:?}"),
            format!("{keys:?}"),
            format!(
                "{:?}",
                ApiKeyManager::builder(Arc::new(MemoryApiKeyStore::new()), Secret::new(PEPPER))
            ),
            format!("{:?}", ApiKeyAuthenticator::new(keys.clone())),
        ] {
            assert!(!text.contains(issued.key.expose()), "{text}");
            assert!(!text.contains(PEPPER), "{text}");
        }
    }

    #[tokio::test]
    async fn failed_flush_keeps_times_and_pending_is_bounded() {
        let store = Arc::new(FlakyStore::default());
        let clock = TestClock::at(1_700_000_000);
        let keys = ApiKeyManager::builder(store.clone(), Secret::new(PEPPER))
            .clock(clock.clone())
            .max_pending_last_used(2)
            .build()
            .unwrap();
        let mut issued = Vec::new();
        for i in 0..3 {
            issued.push(keys.issue(NewApiKey::new(format!("u{i}"))).await.unwrap());
        }
        for key in &issued {
            keys.verify(key.key.expose()).await.unwrap();
        }
        // The third distinct key did not fit.
        assert_eq!(keys.pending_last_used(), 2);

        store.fail_touch.store(true, Ordering::SeqCst);
        assert!(keys.flush_last_used().await.is_err());
        assert_eq!(keys.pending_last_used(), 2);

        store.fail_touch.store(false, Ordering::SeqCst);
        assert_eq!(keys.flush_last_used().await.unwrap(), 2);
        let now = clock.now();
        let touched = store
            .inner
            .list(&ApiKeyFilter::all())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.last_used_at == Some(now))
            .count();
        assert_eq!(touched, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn background_flusher_writes_periodically_and_on_shutdown() {
        let store = Arc::new(MemoryApiKeyStore::new());
        let clock = TestClock::at(1_700_000_000);
        let keys = manager(store.clone(), clock.clone());
        let issued = keys.issue(NewApiKey::new("u")).await.unwrap();
        let id = issued.record.key_id.clone();
        let flusher = keys.spawn_last_used_flusher(Duration::from_secs(10));

        keys.verify(issued.key.expose()).await.unwrap();
        let first_use = clock.now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(store.get(&id).await.unwrap().unwrap().last_used_at, None);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            store.get(&id).await.unwrap().unwrap().last_used_at,
            Some(first_use)
        );

        clock.advance(Duration::from_secs(60));
        keys.verify(issued.key.expose()).await.unwrap();
        assert_eq!(flusher.shutdown().await.unwrap(), 1);
        assert_eq!(
            store.get(&id).await.unwrap().unwrap().last_used_at,
            Some(clock.now())
        );
    }

    #[tokio::test]
    async fn store_failure_is_unavailable() {
        #[derive(Debug)]
        struct Down;
        #[async_trait]
        impl ApiKeyStore for Down {
            async fn insert(&self, _: &ApiKeyRecord) -> Result<(), ApiKeyError> {
                Err(ApiKeyError::store("down", None))
            }
            async fn get(&self, _: &str) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
                Err(ApiKeyError::store("down", None))
            }
            async fn update(
                &self,
                _: &str,
                _: &ApiKeyUpdate,
            ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
                Err(ApiKeyError::store("down", None))
            }
            async fn list(&self, _: &ApiKeyFilter) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
                Err(ApiKeyError::store("down", None))
            }
            async fn touch_last_used(&self, _: &[(String, SystemTime)]) -> Result<(), ApiKeyError> {
                Err(ApiKeyError::store("down", None))
            }
        }
        let keys = manager(Arc::new(Down), TestClock::at(1_700_000_000));
        let (_, _, key) = keys.format().generate();
        let error = keys.verify(key.expose()).await.unwrap_err();
        assert!(matches!(error, AuthError::Unavailable { .. }));
        // A malformed key is refused before the store is asked.
        assert!(matches!(
            keys.verify("mcpk_bad").await,
            Err(AuthError::InvalidApiKey)
        ));
    }
}
