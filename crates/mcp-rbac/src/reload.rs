//! Hot reload: [`PolicyHandle`] swaps compiled policies atomically; [`Watcher`] polls a file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::compile::Policy;
use crate::error::LoadError;

/// A shared, swappable policy. Cloning the handle shares the policy.
///
/// Readers take a snapshot with [`load`](Self::load) (a read lock held only long enough to
/// clone an `Arc`) and decide against it; a reload never blocks a decision in progress and a
/// decision never sees half a policy. A policy that fails to load is rejected and the last
/// good one keeps serving.
///
/// ```
/// use mcp_rbac::{BasicSubject, Policy, PolicyHandle, Request};
///
/// let handle = PolicyHandle::new(Policy::deny_all());
/// let bob = BasicSubject::new("bob").role("viewer");
/// let call = Request::new("tools/call", "weather.get");
/// assert!(!handle.load().decide(&bob, &call).is_allowed());
///
/// handle.replace(Policy::from_toml_str(r#"roles.viewer.allow = ["weather.*"]"#, "v2.toml")?);
/// assert!(handle.load().decide(&bob, &call).is_allowed());
/// assert_eq!(handle.generation(), 1);
/// # Ok::<(), mcp_rbac::LoadError>(())
/// ```
#[derive(Clone)]
pub struct PolicyHandle {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<Policy>>,
    generation: AtomicU64,
}

impl fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("generation", &self.generation())
            .field("policy", &self.load())
            .finish()
    }
}

impl PolicyHandle {
    /// A handle serving `policy` (generation 0).
    pub fn new(policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(policy)),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The policy in force now.
    pub fn load(&self) -> Arc<Policy> {
        // A writer only ever stores a complete `Arc`, so a poisoned lock still holds a
        // consistent value.
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times the policy was replaced.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Puts `policy` in force; returns the one it replaces.
    pub fn replace(&self, policy: Policy) -> Arc<Policy> {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *current, Arc::new(policy));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Loads `path` and puts it in force; on error the current policy stays and the error
    /// is returned. Returns the new generation.
    pub fn reload_from_file(&self, path: impl AsRef<Path>) -> Result<u64, LoadError> {
        let policy = Policy::from_file(path)?;
        self.replace(policy);
        Ok(self.generation())
    }

    /// Starts a background thread that checks `path` every `interval` and reloads it when its
    /// modification time or size changes. `on_event` hears about every reload and every
    /// rejected policy. The thread stops when the returned [`Watcher`] is dropped.
    pub fn watch<F>(
        &self,
        path: impl Into<PathBuf>,
        interval: Duration,
        on_event: F,
    ) -> std::io::Result<Watcher>
    where
        F: Fn(&ReloadEvent) + Send + 'static,
    {
        let path = path.into();
        let handle = self.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let mut seen = fingerprint(&path);
        let thread = std::thread::Builder::new()
            .name("mcp-rbac-watch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let now = fingerprint(&path);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    let event = match handle.reload_from_file(&path) {
                        Ok(generation) => ReloadEvent::Reloaded { generation },
                        Err(error) => ReloadEvent::Rejected { error },
                    };
                    on_event(&event);
                }
            })?;
        Ok(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// What the file watcher did.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReloadEvent {
    /// The new policy is in force.
    Reloaded {
        /// The handle's generation after the swap.
        generation: u64,
    },
    /// The new policy was rejected; the previous one keeps serving.
    Rejected {
        /// Why.
        error: LoadError,
    },
}

/// Stops the watch thread of [`PolicyHandle::watch`] when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then exits.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread has nothing to report; a panic in the callback already printed.
            let _ = thread.join();
        }
    }
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
