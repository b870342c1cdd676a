//! `[pools]`: the operation classes the gateway's SQL stores draw their connections from
//! (mcp-pool), their sizes and timeouts, the read replica, the sampler and the advice.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// One operation class of the gateway and what uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolClass {
    /// Audit queries of the admin API (`/api/v1/admin/audit`); the read replica when set.
    Read,
    /// The audit sink's inserts and the audit migrations.
    Write,
    /// Audit exports and the analytics endpoints (`user-activity`, `tenant-analytics`); the
    /// read replica when set.
    Analytics,
    /// The API-key store (key verification, management, last-use times).
    Auth,
}

impl PoolClass {
    /// Every class, in the order the pool set holds them.
    pub const ALL: [Self; 4] = [Self::Write, Self::Read, Self::Analytics, Self::Auth];

    /// The class name (mcp-pool's and the metrics' `class` label).
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Analytics => "analytics",
            Self::Auth => "auth",
        }
    }

    /// What the gateway uses the class for.
    pub fn used_for(self) -> &'static str {
        match self {
            Self::Read => "audit queries",
            Self::Write => "audit sink (inserts, migrations)",
            Self::Analytics => "audit export and analytics",
            Self::Auth => "API keys",
        }
    }

    /// Whether the class only reads, so that it may use the read replica.
    pub fn reads_only(self) -> bool {
        matches!(self, Self::Read | Self::Analytics)
    }

    /// `(size, acquire timeout in seconds)` when the configuration names none.
    fn defaults(self) -> (u32, u64) {
        match self {
            Self::Read => (4, 15),
            // The PostgreSQL audit store copies a large batch over two connections.
            Self::Write => (2, 30),
            Self::Analytics => (2, 60),
            Self::Auth => (8, 10),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Read => "pools.read",
            Self::Write => "pools.write",
            Self::Analytics => "pools.analytics",
            Self::Auth => "pools.auth",
        }
    }
}

/// `[pools]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PoolsConfig {
    /// The most connections the PostgreSQL classes on the primary may hold together
    /// (the server's `max_connections` minus what other clients need); checked at start
    /// and never exceeded by the advice. Default: no budget.
    pub connection_budget: Option<u32>,
    /// A PostgreSQL read replica of the audit database for the `read` and `analytics`
    /// classes (default: they use `audit.url`). Outside the budget.
    pub replica_url: Option<String>,
    /// Let the sampler move each class's limit within `[min_connections, max_connections]`
    /// (default false: the advice is only reported).
    pub apply_advice: bool,
    /// Open connections on first use instead of one per class at start (default false: a
    /// wrong URL stops the start).
    pub connect_lazily: bool,
    /// How usage is sampled for the advice.
    pub sampler: SamplerSection,
    /// The `read` class.
    pub read: PoolClassConfig,
    /// The `write` class.
    pub write: PoolClassConfig,
    /// The `analytics` class.
    pub analytics: PoolClassConfig,
    /// The `auth` class.
    pub auth: PoolClassConfig,
}

/// `[pools.sampler]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SamplerSection {
    /// Seconds between samples (default 10).
    pub resolution_secs: u64,
    /// The window the advice looks at, in seconds (default 300).
    pub window_secs: u64,
    /// How far back the history reaches, in seconds (default 86400; at most 86 400
    /// samples are kept).
    pub history_secs: u64,
}

impl Default for SamplerSection {
    fn default() -> Self {
        Self {
            resolution_secs: 10,
            window_secs: 300,
            history_secs: 86_400,
        }
    }
}

/// `[pools.<class>]`: every key is optional; the class's defaults fill the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PoolClassConfig {
    /// Connections at start (the limit; default read 4, write 2, analytics 2, auth 8).
    pub size: Option<u32>,
    /// Connections kept open, and the lowest limit the advice goes to (default 0).
    pub min_connections: Option<u32>,
    /// The highest limit the advice goes to (default `size`).
    pub max_connections: Option<u32>,
    /// How long an acquire waits, in seconds (default read 15, write 30, analytics 60,
    /// auth 10).
    pub acquire_timeout_secs: Option<u64>,
    /// Idle connections are closed after this many seconds; 0 never (default 600).
    pub idle_timeout_secs: Option<u64>,
}

/// A class's settings with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassSettings {
    /// Connections at start.
    pub size: u32,
    /// Connections kept open.
    pub min: u32,
    /// The highest limit.
    pub max: u32,
    /// Acquire timeout, in seconds.
    pub acquire_timeout_secs: u64,
    /// Idle timeout, in seconds; `None` never.
    pub idle_timeout_secs: Option<u64>,
}

impl PoolsConfig {
    fn section(&self, class: PoolClass) -> &PoolClassConfig {
        match class {
            PoolClass::Read => &self.read,
            PoolClass::Write => &self.write,
            PoolClass::Analytics => &self.analytics,
            PoolClass::Auth => &self.auth,
        }
    }

    /// The settings of `class`, defaults filled in.
    pub fn class(&self, class: PoolClass) -> ClassSettings {
        let section = self.section(class);
        let (size, timeout) = class.defaults();
        let size = section.size.unwrap_or(size);
        ClassSettings {
            size,
            min: section.min_connections.unwrap_or(0),
            max: section.max_connections.unwrap_or(size),
            acquire_timeout_secs: section.acquire_timeout_secs.unwrap_or(timeout),
            idle_timeout_secs: match section.idle_timeout_secs.unwrap_or(600) {
                0 => None,
                secs => Some(secs),
            },
        }
    }

    /// The checks beyond the schema: sizes, bounds, timeouts, the sampler; the replica
    /// needs a PostgreSQL audit sink (`audit_on_postgres`).
    pub(crate) fn validate(&self, audit_on_postgres: bool) -> Result<(), ConfigError> {
        for class in PoolClass::ALL {
            let s = self.class(class);
            if s.size == 0 {
                return Err(invalid(class.key(), "size must be positive"));
            }
            if !(s.min <= s.size && s.size <= s.max) {
                return Err(invalid(
                    class.key(),
                    format!(
                        "need min_connections <= size <= max_connections (have {} <= {} <= {})",
                        s.min, s.size, s.max
                    ),
                ));
            }
            if s.acquire_timeout_secs == 0 {
                return Err(invalid(
                    class.key(),
                    "acquire_timeout_secs must be positive",
                ));
            }
        }
        if self.connection_budget == Some(0) {
            return Err(invalid("pools.connection_budget", "must be positive"));
        }
        if let Some(url) = &self.replica_url {
            if !audit_on_postgres {
                return Err(invalid(
                    "pools.replica_url",
                    "a read replica serves the PostgreSQL audit sink only (audit.sink = \"postgres\")",
                ));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "pools.replica_url",
                    "not a postgres:// URL (its value is not shown: it may hold a password)",
                ));
            }
        }
        let s = &self.sampler;
        if s.resolution_secs == 0 {
            return Err(invalid("pools.sampler.resolution_secs", "must be positive"));
        }
        if !(s.resolution_secs <= s.window_secs && s.window_secs <= s.history_secs) {
            return Err(invalid(
                "pools.sampler",
                "need resolution_secs <= window_secs <= history_secs",
            ));
        }
        Ok(())
    }
}
