//! Helpers shared by the integration tests: temporary directories, test sinks, PostgreSQL schemas.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use mcp_audit::{AuditEvent, AuditSink, SinkError};
use tokio::sync::Semaphore;

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mcp-audit-{tag}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sink that keeps batches in memory, can be made to fail, and can be held shut.
#[derive(Debug)]
pub(crate) struct MemorySink {
    name: String,
    pub(crate) batches: Mutex<Vec<Vec<AuditEvent>>>,
    pub(crate) failing: AtomicBool,
    gate: Semaphore,
    /// What `max_in_flight` answers.
    in_flight: usize,
    /// Writes running now, and the most seen at once.
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl MemorySink {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            batches: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
            in_flight: 1,
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        }
    }

    /// Lets the logger have `n` writes in flight to this sink.
    pub(crate) fn allowing_in_flight(mut self, n: usize) -> Self {
        self.in_flight = n;
        self
    }

    /// Writes running now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The most writes that ran at once.
    pub(crate) fn most_running(&self) -> usize {
        self.most_running.load(Ordering::SeqCst)
    }

    /// A sink whose writes wait until [`MemorySink::open_gate`] is called.
    pub(crate) fn gated(name: &str) -> Self {
        Self {
            gate: Semaphore::new(0),
            ..Self::new(name)
        }
    }

    pub(crate) fn open_gate(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    pub(crate) fn events(&self) -> Vec<AuditEvent> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl AuditSink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let result = self.write(events).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight
    }
}

impl MemorySink {
    async fn write(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        let _permit = self.gate.acquire().await.map_err(SinkError::other)?;
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::other("sink is down"));
        }
        self.batches.lock().unwrap().push(events.to_vec());
        Ok(())
    }
}

/// The PostgreSQL URL, or `None` (with a message) when the tests should skip.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("MCP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "MCP_TEST_POSTGRES_URL is not set but MCP_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: MCP_TEST_POSTGRES_URL is not set");
            None
        }
    }
}
