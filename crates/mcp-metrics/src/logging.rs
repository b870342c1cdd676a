//! Log set-up on tracing-subscriber: JSON or human-readable lines, an env filter, and the
//! request context of the `mcp.request` span on every line logged inside a request.

use std::fmt::{self, Write as _};

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields, MakeWriter};
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
            .fmt_fields(JsonSpanFields)
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

/// Span fields as a JSON object, written straight into the span's string and extended in place
/// when a field is recorded later.
///
/// tracing-subscriber's own `JsonFields` collects the fields into a map of JSON values and
/// serialises it, and re-parses and re-serialises the whole object for every later `record`:
/// for the `mcp.request` span that was several times the cost of the rest of the request. The
/// output is the same JSON object (keys in recording order instead of sorted; a field recorded
/// twice appears twice, and JSON readers keep the last).
#[derive(Debug, Clone, Copy, Default)]
struct JsonSpanFields;

impl<'w> FormatFields<'w> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        // The writer is usually the span's empty string: writing the object piece by piece
        // would grow it several times, so build it once and copy it in.
        let mut object = String::with_capacity(256);
        object.push('{');
        let mut visitor = JsonFieldVisitor::new(&mut object, true);
        fields.record(&mut visitor);
        visitor.result?;
        object.push('}');
        writer.write_str(&object)
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if !current.fields.ends_with('}') {
            // Nothing formatted yet (or not by this formatter): start a new object.
            current.fields.clear();
            return self.format_fields(current.as_writer(), fields);
        }
        current.fields.pop();
        let empty = current.fields == "{";
        let mut visitor = JsonFieldVisitor::new(&mut current.fields, empty);
        fields.record(&mut visitor);
        let result = visitor.result;
        current.fields.push('}');
        result
    }
}

/// Writes `"name":value` pairs, comma-separated, the way tracing-subscriber's JSON visitor
/// renders each kind of value.
struct JsonFieldVisitor<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> JsonFieldVisitor<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    /// Writes the separator and the key, then the value with `value`.
    fn field(&mut self, name: &str, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            write_json_str(self.out, name)?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: fmt::Write> Visit for JsonFieldVisitor<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field.name(), |out| {
            if value.is_finite() {
                write!(out, "{value:?}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field.name(), |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field.name(), |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field.name(), |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field.name(), |out| write_json_str(out, value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.field(field.name(), |out| {
            out.write_char('[')?;
            for (i, b) in value.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{b}")?;
            }
            out.write_char(']')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Log-crate metadata that the event formatter has already handled.
        if field.name().starts_with("log.") {
            return;
        }
        self.field(field.name(), |out| {
            out.write_char('"')?;
            write!(JsonEscape(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Writes `s` as a JSON string literal.
fn write_json_str<W: fmt::Write>(out: &mut W, s: &str) -> fmt::Result {
    out.write_char('"')?;
    JsonEscape(&mut *out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string literal.
struct JsonEscape<'a, W: fmt::Write>(&'a mut W);

/// The bytes that cannot appear as they are inside a JSON string.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl<W: fmt::Write> fmt::Write for JsonEscape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut clean = 0;
        for (i, b) in s.bytes().enumerate() {
            if !NEEDS_ESCAPE[usize::from(b)] {
                continue;
            }
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[clean..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            clean = i + 1;
        }
        self.0.write_str(&s[clean..])
    }
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

    /// Collects what a layer writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `span` object of the one line logged inside a span with every kind of field, some
    /// recorded after the span was created.
    fn logged_span<L>(layer: impl FnOnce(Captured) -> L) -> serde_json::Value
    where
        L: Layer<tracing_subscriber::Registry> + Send + Sync,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "s",
                text = "quote \" back \\ nl \n tab \t ctl \u{1} del \u{7f} é",
                neg = -3i64,
                unsigned = 7u64,
                float = 1.5f64,
                whole = 2.0f64,
                nan = f64::NAN,
                yes = true,
                list = ?vec!["a\"b", "c"],
                shown = %"x\"y",
                bytes = &b"ab"[..],
                later = tracing::field::Empty,
                later_text = tracing::field::Empty,
                r#type = "keyword",
            );
            span.record("later", 42u64);
            span.record("later_text", "after \"quotes\"");
            span.in_scope(|| tracing::info!("inside"));
            let empty = tracing::info_span!("empty", late = tracing::field::Empty);
            empty.record("late", false);
            empty.in_scope(|| tracing::info!("inside empty"));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        serde_json::json!([lines[0]["span"], lines[1]["span"], lines[0]["spans"]])
    }

    #[test]
    fn json_span_fields_match_tracing_subscribers_json_fields() {
        let config = LogConfig::json().use_rust_log(false);
        let ours = logged_span(|out| fmt_layer(&config, move || out.clone()));
        let reference = logged_span(|out| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || out.clone())
        });
        assert_eq!(ours, reference);
        assert_eq!(
            ours[0]["text"],
            "quote \" back \\ nl \n tab \t ctl \u{1} del \u{7f} é"
        );
        assert_eq!(ours[0]["later"], 42);
        assert_eq!(ours[0]["later_text"], "after \"quotes\"");
        assert_eq!(ours[0]["type"], "keyword");
        assert_eq!(ours[1]["late"], false);
    }

    #[test]
    fn escaping_writes_valid_json_strings() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\u{0}\u{1f}\r\n\tz").unwrap();
        assert_eq!(out, r#""a\"b\\c\u0000\u001f\r\n\tz""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\u{0}\u{1f}\r\n\tz");
    }
}
