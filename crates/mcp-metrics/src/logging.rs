//! Log set-up on tracing-subscriber: JSON or human-readable lines, an env filter, and the
//! request context of the `mcp.request` span on every line logged inside a request.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event, with the span context in front.
    #[default]
    Human,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields at the top
    /// level, `span` (the current span's fields) and `spans` (every span in scope).
    Json,
}

/// Configuration of [`init`] and [`fmt_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// `EnvFilter` directives used when `RUST_LOG` is unset (default `info`).
    pub filter: String,
    /// Whether a non-empty `RUST_LOG` overrides `filter` (default true).
    pub use_rust_log: bool,
    /// ANSI colours in the human format (default false: logs usually go to a collector).
    pub ansi: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".to_owned(),
            use_rust_log: true,
            ansi: false,
        }
    }
}

impl LogConfig {
    /// JSON lines.
    pub fn json() -> Self {
        Self {
            format: LogFormat::Json,
            ..Self::default()
        }
    }

    /// Human-readable lines.
    pub fn human() -> Self {
        Self::default()
    }

    /// Sets the filter directives (e.g. `info,mcp_metrics=debug`).
    #[must_use]
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = directives.into();
        self
    }

    /// Whether `RUST_LOG` overrides the filter.
    #[must_use]
    pub fn use_rust_log(mut self, on: bool) -> Self {
        self.use_rust_log = on;
        self
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The filter directives (from the config or `RUST_LOG`) do not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// The `EnvFilter` of `config` (`RUST_LOG` first when allowed and set).
pub fn env_filter(config: &LogConfig) -> Result<EnvFilter, LoggingError> {
    let from_env = config
        .use_rust_log
        .then(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
        .flatten()
        .filter(|v| !v.trim().is_empty());
    let directives = from_env.as_deref().unwrap_or(&config.filter);
    Ok(EnvFilter::try_new(directives)?)
}

/// The formatting layer of `config`, writing to `writer` (for example `std::io::stdout`).
pub fn fmt_layer<S, W>(config: &LogConfig, writer: W) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match config.format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(config.ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

/// A complete subscriber (filter and formatting) writing to `writer`; for tests and for
/// programs that install it themselves.
pub fn subscriber<W>(
    config: &LogConfig,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> + use<W>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    Ok(tracing_subscriber::registry()
        .with(env_filter(config)?)
        .with(fmt_layer(config, writer)))
}

/// Installs the global subscriber: `config`'s filter and format, written to stdout.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    subscriber(config, std::io::stdout)?
        .try_init()
        .map_err(LoggingError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_errors() {
        let config = LogConfig::json().filter("info,[{bad").use_rust_log(false);
        assert!(matches!(env_filter(&config), Err(LoggingError::Filter(_))));
        assert!(env_filter(&LogConfig::human().filter("debug").use_rust_log(false)).is_ok());
    }
}
