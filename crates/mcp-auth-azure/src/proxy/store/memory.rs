//! [`MemoryClientStore`] and [`MemoryStateStore`]: the proxy's state in process memory,
//! bounded in count and time, for one replica.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mcp_auth_core::{Clock, SystemClock};

use super::{ClientStore, RegisteredClient, StateStore};
use crate::proxy::error::ProxyError;

/// Default most clients held in memory.
const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default most state records held in memory.
const DEFAULT_MAX_RECORDS: usize = 100_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registered clients in memory. Holds at most `capacity` live clients (default 10 000);
/// when full, expired ones are dropped and then new registrations are refused, so an
/// anonymous registration flood cannot grow memory without bound or push out real clients.
#[derive(Default)]
pub struct MemoryClientStore {
    clients: Mutex<HashMap<String, RegisteredClient>>,
    capacity: Option<usize>,
}

impl fmt::Debug for MemoryClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryClientStore")
            .field("clients", &lock(&self.clients).len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl MemoryClientStore {
    /// An empty store with the default capacity.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `capacity` clients (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            clients: Mutex::default(),
            capacity: Some(capacity.max(1)),
        }
    }

    fn capacity(&self) -> usize {
        self.capacity.unwrap_or(DEFAULT_MAX_CLIENTS)
    }

    /// Number of clients held, expired or not.
    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    /// Whether no client is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ClientStore for MemoryClientStore {
    async fn insert(&self, client: &RegisteredClient, now: SystemTime) -> Result<(), ProxyError> {
        let mut clients = lock(&self.clients);
        if clients.len() >= self.capacity() {
            clients.retain(|_, c| !c.is_expired_at(now));
        }
        if clients.len() >= self.capacity() {
            return Err(ProxyError::Full("client store"));
        }
        clients.insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn get(
        &self,
        client_id: &str,
        now: SystemTime,
    ) -> Result<Option<RegisteredClient>, ProxyError> {
        Ok(lock(&self.clients)
            .get(client_id)
            .filter(|c| !c.is_expired_at(now))
            .cloned())
    }

    async fn delete(&self, client_id: &str) -> Result<bool, ProxyError> {
        Ok(lock(&self.clients).remove(client_id).is_some())
    }
}

/// State records in memory, expiring by the injected clock. Holds at most `capacity`
/// records (default 100 000): when full, expired records are dropped, and then new ones are
/// refused (a sign-in fails with 503) rather than evicting live logins.
pub struct MemoryStateStore {
    records: Mutex<HashMap<String, (Vec<u8>, SystemTime)>>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStateStore")
            .field("records", &lock(&self.records).len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStateStore {
    /// An empty store on the system clock with the default capacity.
    pub fn new() -> Self {
        Self {
            records: Mutex::default(),
            capacity: DEFAULT_MAX_RECORDS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Holds at most `capacity` records (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Judges expiry with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Number of records held, expired or not.
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), ProxyError> {
        let now = self.clock.now();
        let until = now.checked_add(ttl).unwrap_or(now);
        let mut records = lock(&self.records);
        if records.len() >= self.capacity && !records.contains_key(key) {
            records.retain(|_, (_, until)| *until > now);
            if records.len() >= self.capacity {
                return Err(ProxyError::Full("state store"));
            }
        }
        records.insert(key.to_owned(), (value.to_vec(), until));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError> {
        let now = self.clock.now();
        Ok(lock(&self.records)
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, ProxyError> {
        let now = self.clock.now();
        Ok(lock(&self.records)
            .remove(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value))
    }

    async fn delete(&self, key: &str) -> Result<bool, ProxyError> {
        Ok(lock(&self.records).remove(key).is_some())
    }
}
