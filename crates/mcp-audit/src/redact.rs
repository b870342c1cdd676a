//! Redaction of secrets and tool arguments, and truncation of free text, before storage.

use serde_json::{Map, Value};

use crate::event::AuditEvent;

/// The text that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// The character that replaces NUL (`\0`) in every string of an event (U+FFFD, the Unicode
/// replacement character): PostgreSQL text cannot hold NUL, and one such event would
/// otherwise fail every batch it is written in.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The key patterns redacted by default (matched case-insensitively as substrings of
/// object keys, ignoring `-` and `_`).
pub const DEFAULT_KEY_PATTERNS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "cookie",
    "session",
    "signature",
];

/// What happens to tool arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ArgumentsPolicy {
    /// Arguments are never stored (the default: they may hold personal data).
    #[default]
    Omit,
    /// Arguments are stored after redaction by key pattern and truncation.
    Redacted,
}

/// Removes secrets and bounds sizes before an event is stored.
///
/// Applied by the [`AuditLogger`](crate::AuditLogger) to every event before it reaches a
/// sink or the spill file:
///
/// * tool arguments are dropped, or (with [`ArgumentsPolicy::Redacted`]) every object value
///   whose key matches a pattern is replaced by `"[REDACTED]"`, and the result is replaced
///   by a truncated preview when its JSON is longer than the limit;
/// * string values that look like credentials (`Bearer ...`, `Basic ...`, JWTs) are redacted
///   wherever they appear in the arguments and in `reason`;
/// * free-text fields are truncated (at a character boundary) to a size limit;
/// * every NUL character (`\0`), in text fields and in argument keys and values, is replaced
///   by [`NUL_REPLACEMENT`], so that every sink can store the event and every sink stores
///   (and hashes) the same text.
///
/// ```
/// use mcp_audit::{ArgumentsPolicy, AuditEvent, Category, Redactor};
/// use serde_json::json;
///
/// let redactor = Redactor::new().arguments(ArgumentsPolicy::Redacted);
/// let mut event = AuditEvent::new(Category::ToolCall)
///     .arguments(json!({"query": "rust", "api_token": "abc", "auth": {"Password": "x"}}));
/// redactor.redact(&mut event);
/// assert_eq!(
///     event.action.arguments,
///     Some(json!({"query": "rust", "api_token": "[REDACTED]", "auth": {"Password": "[REDACTED]"}}))
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Vec<String>,
    arguments: ArgumentsPolicy,
    max_argument_bytes: usize,
    max_text_bytes: usize,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a string value itself looks like a credential.
fn looks_like_credential(s: &str) -> bool {
    let t = s.trim_start();
    let scheme = |name: &str| {
        t.get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
    };
    if scheme("bearer ") || scheme("basic ") {
        return true;
    }
    // A JWT: three base64url segments, the header starting with `{"` encoded (`eyJ`).
    let mut parts = t.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(_), None) => {
            h.starts_with("eyJ")
                && p.len() > 2
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
        }
        _ => false,
    }
}

/// Replaces every NUL in `s` with [`NUL_REPLACEMENT`].
pub(crate) fn replace_nul(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// Replaces every NUL in the strings and object keys of `value` with [`NUL_REPLACEMENT`].
///
/// Two keys of one object that differ only by NUL versus U+FFFD end up equal; the later one
/// is kept.
fn replace_nul_in_json(value: &mut Value) {
    match value {
        Value::String(s) => replace_nul(s),
        Value::Array(items) => items.iter_mut().for_each(replace_nul_in_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(mut k, v)| {
                        replace_nul(&mut k);
                        (k, v)
                    })
                    .collect();
            }
            map.values_mut().for_each(replace_nul_in_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate_str(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

impl Redactor {
    /// The default redactor: [`DEFAULT_KEY_PATTERNS`], arguments omitted, 4 KiB of argument
    /// JSON, 1 KiB per text field.
    pub fn new() -> Self {
        Self {
            patterns: DEFAULT_KEY_PATTERNS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            arguments: ArgumentsPolicy::Omit,
            max_argument_bytes: 4096,
            max_text_bytes: 1024,
        }
    }

    /// Replaces the key patterns (case-insensitive substrings; `-` and `_` are ignored).
    pub fn key_patterns<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.patterns = patterns
            .into_iter()
            .map(|p| normalize_key(p.as_ref()))
            .collect();
        self
    }

    /// Adds one key pattern to the current list.
    pub fn add_key_pattern(mut self, pattern: &str) -> Self {
        self.patterns.push(normalize_key(pattern));
        self
    }

    /// Sets what happens to tool arguments.
    pub fn arguments(mut self, policy: ArgumentsPolicy) -> Self {
        self.arguments = policy;
        self
    }

    /// Sets the maximum size of the stored argument JSON.
    pub fn max_argument_bytes(mut self, bytes: usize) -> Self {
        self.max_argument_bytes = bytes;
        self
    }

    /// Sets the maximum size of each free-text field (subject, reason, user agent, ...).
    pub fn max_text_bytes(mut self, bytes: usize) -> Self {
        self.max_text_bytes = bytes.max(16);
        self
    }

    fn key_matches(&self, key: &str) -> bool {
        let key = normalize_key(key);
        self.patterns.iter().any(|p| key.contains(p.as_str()))
    }

    fn redact_value(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.redact_map(map),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::String(s) if looks_like_credential(s) => *s = REDACTED.to_owned(),
            _ => {}
        }
    }

    fn redact_map(&self, map: &mut Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            if self.key_matches(key) {
                *value = Value::String(REDACTED.to_owned());
            } else {
                self.redact_value(value);
            }
        }
    }

    /// Applies the redaction rules to `event` in place.
    pub fn redact(&self, event: &mut AuditEvent) {
        match self.arguments {
            ArgumentsPolicy::Omit => event.action.arguments = None,
            ArgumentsPolicy::Redacted => {
                if let Some(args) = event.action.arguments.as_mut() {
                    replace_nul_in_json(args);
                    self.redact_value(args);
                    let text = args.to_string();
                    if text.len() > self.max_argument_bytes {
                        let bytes = text.len();
                        let mut preview = text;
                        truncate_str(&mut preview, self.max_argument_bytes);
                        *args = serde_json::json!({
                            "$truncated": true,
                            "bytes": bytes,
                            "preview": preview,
                        });
                    }
                }
            }
        }
        if let Some(reason) = event.reason.as_mut()
            && looks_like_credential(reason)
        {
            *reason = REDACTED.to_owned();
        }
        let max = self.max_text_bytes;
        let actor = &mut event.actor;
        let action = &mut event.action;
        for field in [
            &mut actor.subject,
            &mut actor.tenant,
            &mut actor.auth_method,
            &mut actor.api_key_id,
            &mut action.method,
            &mut action.target,
            &mut event.reason,
            &mut event.request_id,
            &mut event.trace_id,
            &mut event.session_id,
            &mut event.user_agent,
        ]
        .into_iter()
        .flatten()
        {
            // Before truncation: the replacement is longer than NUL.
            replace_nul(field);
            truncate_str(field, max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Category;
    use serde_json::json;

    #[test]
    fn arguments_are_omitted_by_default() {
        let mut e = AuditEvent::new(Category::ToolCall).arguments(json!({"q": 1}));
        Redactor::new().redact(&mut e);
        assert_eq!(e.action.arguments, None);
    }

    #[test]
    fn nested_keys_arrays_and_token_shaped_values_are_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        let mut e = AuditEvent::new(Category::ToolCall)
            .arguments(json!({
                "list": [{"Client-Secret": "s"}, "Bearer abc", jwt, "plain"],
                "API_KEY": "k",
                "x-auth-token": "t",
                "count": 3
            }))
            .decision(crate::Decision::Deny, format!("bearer {jwt}"));
        Redactor::new()
            .arguments(ArgumentsPolicy::Redacted)
            .redact(&mut e);
        assert_eq!(
            e.action.arguments.unwrap(),
            json!({
                "list": [{"Client-Secret": REDACTED}, REDACTED, REDACTED, "plain"],
                "API_KEY": REDACTED,
                "x-auth-token": REDACTED,
                "count": 3
            })
        );
        assert_eq!(e.reason.as_deref(), Some(REDACTED));
    }

    #[test]
    fn custom_patterns_replace_the_defaults() {
        let mut e =
            AuditEvent::new(Category::ToolCall).arguments(json!({"password": "p", "ssn": "1"}));
        Redactor::new()
            .key_patterns(["SSN"])
            .arguments(ArgumentsPolicy::Redacted)
            .redact(&mut e);
        assert_eq!(
            e.action.arguments.unwrap(),
            json!({"password": "p", "ssn": REDACTED})
        );
    }

    #[test]
    fn nul_is_replaced_in_every_text_field_and_in_arguments() {
        let mut e = AuditEvent::new(Category::ToolCall)
            .subject("al\0ice")
            .tenant("\0")
            .auth_method("jwt\0")
            .api_key_id("k\0\0-1")
            .method("tools/\0call")
            .tool("se\0arch")
            .arguments(json!({
                "q\0": "a\0b",
                "list": ["\0", {"in\0ner": ["x\0"]}, 1, null, true],
                "plain": "no nul"
            }))
            .decision(crate::Decision::Deny, "because\0")
            .request_id("r\0")
            .trace_id("t\0")
            .session_id("s\0")
            .user_agent("ua\0/1");
        let redactor = Redactor::new().arguments(ArgumentsPolicy::Redacted);
        redactor.redact(&mut e);
        let r = NUL_REPLACEMENT;
        assert_eq!(e.actor.subject, Some(format!("al{r}ice")));
        assert_eq!(e.actor.tenant, Some(r.to_string()));
        assert_eq!(e.actor.auth_method, Some(format!("jwt{r}")));
        assert_eq!(e.actor.api_key_id, Some(format!("k{r}{r}-1")));
        assert_eq!(e.action.method, Some(format!("tools/{r}call")));
        assert_eq!(e.action.target, Some(format!("se{r}arch")));
        assert_eq!(e.reason, Some(format!("because{r}")));
        assert_eq!(e.request_id, Some(format!("r{r}")));
        assert_eq!(e.trace_id, Some(format!("t{r}")));
        assert_eq!(e.session_id, Some(format!("s{r}")));
        assert_eq!(e.user_agent, Some(format!("ua{r}/1")));
        let mut expected = Map::new();
        expected.insert(format!("q{r}"), json!(format!("a{r}b")));
        let mut inner = Map::new();
        inner.insert(format!("in{r}ner"), json!([format!("x{r}")]));
        expected.insert(
            "list".to_owned(),
            json!([r.to_string(), inner, 1, null, true]),
        );
        expected.insert("plain".to_owned(), json!("no nul"));
        assert_eq!(e.action.arguments, Some(Value::Object(expected)));
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains('\0') && !text.contains("\\u0000"), "{text}");
        // Idempotent: the overflow path redacts an event twice.
        let once = e.clone();
        redactor.redact(&mut e);
        assert_eq!(e, once);
    }

    #[test]
    fn nul_replacement_happens_before_truncation() {
        let mut e = AuditEvent::new(Category::ToolCall).user_agent("\0".repeat(2000));
        Redactor::new().max_text_bytes(100).redact(&mut e);
        let ua = e.user_agent.unwrap();
        assert!(ua.len() <= 100);
        assert_eq!(ua.chars().count(), 100 / NUL_REPLACEMENT.len_utf8());
        assert!(ua.chars().all(|c| c == NUL_REPLACEMENT));
    }

    #[test]
    fn large_arguments_and_text_are_truncated() {
        let mut e = AuditEvent::new(Category::ToolCall)
            .arguments(json!({"blob": "é".repeat(5000)}))
            .user_agent("ü".repeat(2000));
        Redactor::new()
            .arguments(ArgumentsPolicy::Redacted)
            .max_argument_bytes(100)
            .redact(&mut e);
        let args = e.action.arguments.unwrap();
        assert_eq!(args["$truncated"], true);
        assert!(args["preview"].as_str().unwrap().len() <= 100);
        assert!(args["bytes"].as_u64().unwrap() > 10_000);
        assert!(e.user_agent.unwrap().len() <= 1024);
    }
}
