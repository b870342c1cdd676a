//! What every class offers the set: names, backends, gauges, limits, health.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use crate::error::ConfigError;
use crate::stats::ClassStats;

/// A boxed future, as the object-safe class interface returns them.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine behind a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// PostgreSQL through sqlx.
    Postgres,
    /// SQLite through sqlx.
    Sqlite,
    /// Redis through a `ConnectionManager`.
    Redis,
}

impl Backend {
    /// The lowercase name (`postgres`, `sqlite`, `redis`), as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation classes of the seeds, with their pool sizes and acquire timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandardClass {
    /// `read`: 20 connections, 15 s acquire timeout; a candidate for a read replica.
    Read,
    /// `write`: 15 connections, 30 s.
    Write,
    /// `analytics`: 10 connections, 60 s; a candidate for a read replica.
    Analytics,
    /// `auth`: 25 connections, 10 s.
    Auth,
}

impl StandardClass {
    /// All four, in this order.
    pub const ALL: [Self; 4] = [Self::Read, Self::Write, Self::Analytics, Self::Auth];

    /// The class name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Analytics => "analytics",
            Self::Auth => "auth",
        }
    }

    /// The default size.
    pub fn size(self) -> u32 {
        match self {
            Self::Read => 20,
            Self::Write => 15,
            Self::Analytics => 10,
            Self::Auth => 25,
        }
    }

    /// The default acquire timeout.
    pub fn acquire_timeout(self) -> Duration {
        Duration::from_secs(match self {
            Self::Read => 15,
            Self::Write => 30,
            Self::Analytics => 60,
            Self::Auth => 10,
        })
    }

    /// Whether the class only reads and may use a read replica.
    pub fn reads_only(self) -> bool {
        matches!(self, Self::Read | Self::Analytics)
    }
}

/// Checks a class name: 1 to 64 bytes of `a-z`, `0-9`, `_`, `-` (safe as a metric label).
pub(crate) fn check_name(name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 64 {
        Some("longer than 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Some("only a-z, 0-9, `_` and `-` are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ConfigError::InvalidName {
            name: name.chars().take(64).collect(),
            reason,
        }),
    }
}

/// Checks `1 <= size`, `min <= size <= max`.
pub(crate) fn check_limits(name: &str, size: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    let reason = if size == 0 {
        Some(String::from("size must be at least 1"))
    } else if min > size {
        Some(format!("min_connections {min} is above size {size}"))
    } else if size > max {
        Some(format!("size {size} is above max_connections {max}"))
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ConfigError::InvalidLimits {
            class: name.to_owned(),
            reason,
        }),
    }
}

/// Point-in-time counts of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gauges {
    /// Connections open (SQL) or in-flight slots (Redis).
    pub(crate) size: u32,
    /// Open and not handed out.
    pub(crate) idle: u32,
    /// Handed out.
    pub(crate) in_use: u32,
    /// The current limit.
    pub(crate) limit: u32,
    /// Connections open, where the backend can tell (for the derived close count).
    pub(crate) open: Option<u32>,
}

/// Fixed settings of a class, for snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) budgeted: bool,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) health_timeout: Duration,
    pub(crate) resizable: bool,
}

/// The object-safe face of a class that the set works with.
pub(crate) trait ClassOps: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn backend(&self) -> Backend;
    fn stats(&self) -> &ClassStats;
    fn gauges(&self) -> Gauges;
    fn settings(&self) -> Settings;
    /// Changes the limit (only for resizable classes; a no-op otherwise).
    fn set_limit(&self, limit: u32);
    /// Closes idle connections above the limit (after a shrink).
    fn trim(&self) -> BoxFuture<'_, ()>;
    /// Opens (or reuses) a connection and runs `SELECT 1` / `PING` within `timeout`.
    fn check(&self, timeout: Duration) -> BoxFuture<'_, Result<(), String>>;
    fn close(&self) -> BoxFuture<'_, ()>;
    fn as_any(&self) -> &dyn Any;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_label_safe() {
        for good in ["read", "auth_2", "read-replica", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Read", "re ad", "x\"y", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_must_nest() {
        assert!(check_limits("c", 5, 1, 10).is_ok());
        assert!(check_limits("c", 0, 0, 10).is_err());
        assert!(check_limits("c", 5, 6, 10).is_err());
        let err = check_limits("c", 11, 1, 10).unwrap_err().to_string();
        assert_eq!(err, "pool class `c`: size 11 is above max_connections 10");
    }

    #[test]
    fn standard_classes_follow_the_seeds() {
        let sizes: Vec<u32> = StandardClass::ALL.iter().map(|c| c.size()).collect();
        assert_eq!(sizes, vec![20, 15, 10, 25]);
        assert_eq!(
            StandardClass::Auth.acquire_timeout(),
            Duration::from_secs(10)
        );
        assert!(StandardClass::Analytics.reads_only());
        assert!(!StandardClass::Write.reads_only());
    }
}
