//! Errors: building a pool set, acquiring from a class, looking a class up.

use std::time::Duration;

use crate::class::Backend;

/// A boxed error from sqlx or redis.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Building a [`PoolSet`](crate::PoolSet) failed. No URL or password is ever part of the
/// message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A class name is empty, longer than 64 bytes or has characters other than
    /// `a-z`, `0-9`, `_` and `-`.
    #[error("invalid pool class name `{name}`: {reason}")]
    InvalidName {
        /// The name (truncated to 64 bytes).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two classes have the same name.
    #[error("pool class `{class}` is configured twice")]
    DuplicateClass {
        /// The name.
        class: String,
    },
    /// A class's sizes are inconsistent (they need `1 <= size`, `min <= size <= max`).
    #[error("pool class `{class}`: {reason}")]
    InvalidLimits {
        /// The class.
        class: String,
        /// What is wrong.
        reason: String,
    },
    /// The budgeted classes' sizes (or minimums) add up to more than the connection budget.
    #[error("pool classes need {required} connections but the connection budget is {budget}")]
    OverBudget {
        /// The configured budget.
        budget: u32,
        /// What the classes need.
        required: u64,
    },
    /// The sampler settings are invalid.
    #[error("invalid sampler settings: {0}")]
    Sampler(String),
    /// The advice thresholds are invalid.
    #[error("invalid advice thresholds: {0}")]
    Advice(String),
    /// A class's URL could not be parsed (the URL itself is not repeated here).
    #[error("pool class `{class}`: invalid connection URL: {source}")]
    InvalidUrl {
        /// The class.
        class: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Opening a class's first connection failed.
    #[error("pool class `{class}`: could not connect: {source}")]
    Connect {
        /// The class.
        class: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

/// Acquiring a connection from a class failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection became free within the class's acquire timeout.
    #[error("pool class `{class}` timed out after {waited:?} waiting for a connection")]
    Timeout {
        /// The class.
        class: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The pool set was closed.
    #[error("pool class `{class}` is closed")]
    Closed {
        /// The class.
        class: String,
    },
    /// The database or Redis refused or failed while a connection was opened.
    #[error("pool class `{class}`: {source}")]
    Backend {
        /// The class.
        class: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl PoolError {
    /// The class the error is about.
    pub fn class(&self) -> &str {
        match self {
            Self::Timeout { class, .. } | Self::Closed { class } | Self::Backend { class, .. } => {
                class
            }
        }
    }

    /// How long the caller waited, for a timeout.
    pub fn waited(&self) -> Option<Duration> {
        match self {
            Self::Timeout { waited, .. } => Some(*waited),
            _ => None,
        }
    }
}

/// A class was asked for that the set does not have (under that backend).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No class has this name.
    #[error("no pool class `{class}`")]
    Unknown {
        /// The name asked for.
        class: String,
    },
    /// The class exists on another backend.
    #[error("pool class `{class}` is a {actual} class, not {expected}")]
    WrongBackend {
        /// The name asked for.
        class: String,
        /// The backend asked for.
        expected: Backend,
        /// The class's backend.
        actual: Backend,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_names_the_class_and_the_wait() {
        let e = PoolError::Timeout {
            class: "analytics".into(),
            waited: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "pool class `analytics` timed out after 1.5s waiting for a connection"
        );
        assert_eq!(e.class(), "analytics");
        assert_eq!(e.waited(), Some(Duration::from_millis(1500)));
    }
}
