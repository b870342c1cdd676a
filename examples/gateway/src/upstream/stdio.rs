//! The rmcp client of a stdio upstream (a child process): started lazily, shared by all
//! requests, restarted with exponential backoff when its transport closes; and that backoff,
//! shared with the HTTP client.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{Peer, ServiceExt as _};
use tokio::time::Instant;

use super::UpstreamError;
use crate::config::{ReconnectSection, UpstreamConfig};

/// Variables a stdio upstream inherits from the gateway's environment (the gateway's own
/// secrets stay with it).
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "TMPDIR",
];

type Connection = RunningService<RoleClient, ()>;

/// The exponential backoff after `failures` consecutive failed connects.
pub(crate) fn backoff(failures: u32, reconnect: &ReconnectSection) -> Duration {
    let initial = Duration::from_millis(reconnect.initial_backoff_ms);
    let max = Duration::from_secs(reconnect.max_backoff_secs);
    let doublings = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

/// Consecutive failed connects and when the next attempt may be made.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
    /// No new attempt before this instant.
    retry_at: Option<Instant>,
}

impl Backoff {
    /// Refuses an attempt while the backoff lasts.
    pub(crate) fn check(&self) -> Result<(), UpstreamError> {
        let now = Instant::now();
        match self.retry_at {
            Some(retry_at) if now < retry_at => Err(UpstreamError::Unavailable(format!(
                "reconnecting in {} ms",
                (retry_at - now).as_millis()
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// Counts a failed attempt; the wait before the next one.
    pub(crate) fn failed(&mut self, reconnect: &ReconnectSection) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = backoff(self.failures, reconnect);
        self.retry_at = Some(Instant::now() + wait);
        wait
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// The connection behind the connect lock.
struct Link {
    running: Option<Connection>,
    backoff: Backoff,
}

/// A shared rmcp client of one stdio upstream.
pub(crate) struct StdioClient {
    name: String,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    timeout: Duration,
    reconnect: ReconnectSection,
    /// The live peer, read on every request without waiting.
    peer: RwLock<Option<Peer<RoleClient>>>,
    /// Only one task connects at a time; the others wait for its result.
    link: tokio::sync::Mutex<Link>,
}

impl std::fmt::Debug for StdioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioClient")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StdioClient {
    /// A client of the stdio upstream `config`; nothing is started yet.
    pub(crate) fn new(config: &UpstreamConfig) -> Self {
        Self {
            name: config.name.clone(),
            command: config.command.clone().unwrap_or_default(),
            args: config.args.clone(),
            env: config.env.clone(),
            timeout: config.timeout(),
            reconnect: config.reconnect.clone(),
            peer: RwLock::new(None),
            link: tokio::sync::Mutex::new(Link {
                running: None,
                backoff: Backoff::default(),
            }),
        }
    }

    /// The current peer, connecting (once, for all waiting callers) when there is none or
    /// its transport has closed. While a reconnect waits out its backoff, callers fail at
    /// once.
    pub(crate) async fn peer(&self) -> Result<Peer<RoleClient>, UpstreamError> {
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        let mut link = self.link.lock().await;
        if let Some(peer) = self.live_peer() {
            return Ok(peer);
        }
        link.backoff.check()?;
        if let Some(mut old) = link.running.take() {
            // The old transport is closed already; closing it ends its task and process.
            let _ = old.close_with_timeout(Duration::from_secs(1)).await;
        }
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(running)) => {
                let peer = running.peer().clone();
                tracing::info!(upstream = %self.name, "connected to upstream");
                *self.peer.write().unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
                link.running = Some(running);
                link.backoff.succeeded();
                Ok(peer)
            }
            result => {
                let wait = link.backoff.failed(&self.reconnect);
                let error = match result {
                    Ok(Err(error)) => error,
                    _ => UpstreamError::Timeout,
                };
                tracing::warn!(
                    upstream = %self.name,
                    %error,
                    failures = link.backoff.failures(),
                    retry_in_ms = wait.as_millis(),
                    "cannot connect to upstream"
                );
                Err(error)
            }
        }
    }

    async fn connect(&self) -> Result<Connection, UpstreamError> {
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.args(&self.args).env_clear().kill_on_drop(true);
        for var in INHERITED_ENV {
            if let Some(value) = std::env::var_os(var) {
                cmd.env(var, value);
            }
        }
        cmd.envs(&self.env);
        // The child's diagnostics go to the gateway's stderr.
        let (transport, _) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                UpstreamError::Unavailable(format!("cannot start `{}`: {e}", self.command))
            })?;
        ().serve(transport)
            .await
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))
    }

    fn live_peer(&self) -> Option<Peer<RoleClient>> {
        self.peer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|p| !p.is_transport_closed())
            .cloned()
    }

    /// Closes the connection and ends the upstream's process.
    pub(crate) async fn close(&self) {
        *self.peer.write().unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(mut running) = self.link.lock().await.running.take() {
            let _ = running.close_with_timeout(Duration::from_secs(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let reconnect = ReconnectSection {
            initial_backoff_ms: 250,
            max_backoff_secs: 2,
        };
        let waits: Vec<u128> = (1..=6)
            .map(|n| backoff(n, &reconnect).as_millis())
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX, &reconnect), Duration::from_secs(2));
    }
}
