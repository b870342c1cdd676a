//! The audit event model and its versioned JSON schema.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::Timestamp;

/// The version of the JSON schema written by this crate (the `schema` field of every event).
pub const SCHEMA_VERSION: u16 = 1;

/// One audited fact: who did what, what was decided, and how it ended.
///
/// # JSON schema, version 1
///
/// Every event serializes to one JSON object. Absent optional fields are omitted; readers
/// must ignore unknown fields (later minor versions may add fields; a change of meaning
/// increments `schema`).
///
/// | field | type | meaning |
/// | --- | --- | --- |
/// | `schema` | integer | schema version, currently `1` |
/// | `id` | string | UUIDv7 of the event; unique, time-ordered |
/// | `time` | string | RFC 3339 UTC with microseconds, e.g. `2026-03-01T12:34:56.789012Z` |
/// | `category` | string | `authentication`, `authorization`, `tool_call`, `admin`, `rate_limit`, `security_violation`, `system` |
/// | `severity` | string | `debug`, `info`, `notice`, `warning`, `error`, `critical` |
/// | `actor.subject` | string? | the authenticated subject (user or client id) |
/// | `actor.tenant` | string? | the tenant of the subject |
/// | `actor.auth_method` | string? | how the subject authenticated (`jwt`, `api_key`, ...) |
/// | `actor.api_key_id` | string? | the public id of the API key used (never the key itself) |
/// | `action.method` | string? | the MCP (JSON-RPC) method, e.g. `tools/call` |
/// | `action.target_kind` | string? | `tool`, `resource` or `prompt` |
/// | `action.target` | string? | the tool name, resource URI or prompt name |
/// | `action.arguments` | any? | tool arguments after redaction and truncation (omitted unless enabled) |
/// | `decision` | string? | `allow` or `deny` |
/// | `reason` | string? | why the decision was taken |
/// | `outcome.status` | string | `success`, `failure` or `error` |
/// | `outcome.code` | integer? | HTTP status or JSON-RPC error code |
/// | `outcome.latency_us` | integer? | time taken, in microseconds |
/// | `request_id`, `trace_id`, `session_id` | string? | correlation ids |
/// | `client_ip` | string? | the client address |
/// | `user_agent` | string? | the client's `User-Agent` |
/// | `chain.stream` | string | name of the hash chain the event belongs to |
/// | `chain.seq` | integer | position in the chain, from 1 |
/// | `chain.prev_hash` | string | hex SHA-256 of the previous event (64 zeros for the first) |
/// | `chain.hash` | string | hex SHA-256 of this event's canonical form (see [`crate::chain`]) |
///
/// `chain` is set by the [`AuditLogger`](crate::AuditLogger) when it writes the event.
///
/// ```
/// use mcp_audit::{AuditEvent, Category, Decision};
///
/// let event = AuditEvent::new(Category::ToolCall)
///     .subject("alice")
///     .tenant("acme")
///     .method("tools/call")
///     .tool("search")
///     .decision(Decision::Allow, "role user may call search");
/// let json = serde_json::to_value(&event).unwrap();
/// assert_eq!(json["schema"], 1);
/// assert_eq!(json["actor"]["tenant"], "acme");
/// assert_eq!(json["action"]["target_kind"], "tool");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Schema version ([`SCHEMA_VERSION`] for events built by this crate).
    pub schema: u16,
    /// Unique, time-ordered id (UUIDv7).
    pub id: Uuid,
    /// When it happened.
    pub time: Timestamp,
    /// What kind of event this is.
    pub category: Category,
    /// How important it is.
    pub severity: Severity,
    /// Who acted.
    #[serde(default, skip_serializing_if = "Actor::is_empty")]
    pub actor: Actor,
    /// What they tried to do.
    #[serde(default, skip_serializing_if = "Action::is_empty")]
    pub action: Action,
    /// What was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The request id (e.g. `x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The distributed trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The MCP session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The hash-chain link, set when the logger writes the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Actor {
    /// The authenticated subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The subject's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// How the subject authenticated (`jwt`, `api_key`, `oauth`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// The public id of the API key used, never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

impl Actor {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What was attempted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Action {
    /// The MCP method (`tools/call`, `resources/read`, `initialize`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// What kind of object the target names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<TargetKind>,
    /// The tool name, resource URI or prompt name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Tool arguments, redacted and truncated before they are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
}

impl Action {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcome {
    /// Success, failure or error.
    pub status: OutcomeStatus,
    /// HTTP status or JSON-RPC error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Time taken, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

/// The link of an event in its hash chain (see [`crate::chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChainLink {
    /// The chain's name (one per logger; replicas use distinct names).
    pub stream: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Hex SHA-256 of the previous event.
    pub prev_hash: String,
    /// Hex SHA-256 of this event's canonical form.
    pub hash: String,
}

impl ChainLink {
    /// A link with the given fields (used by stores that read events back).
    pub fn new(stream: String, seq: u64, prev_hash: String, hash: String) -> Self {
        Self {
            stream,
            seq,
            prev_hash,
            hash,
        }
    }
}

/// Declares a string-valued enum with `as_str`, `Display` and `FromStr`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $s:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name used in JSON and in SQL columns.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownVariant { kind: stringify!($name) }),
                }
            }
        }
    };
}

/// A string did not name a variant of one of the event enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} value")]
pub struct UnknownVariant {
    kind: &'static str,
}

string_enum! {
    /// What kind of event this is.
    Category {
        /// Credentials checked (login, token validation, API key use).
        Authentication = "authentication",
        /// A permission decision.
        Authorization = "authorization",
        /// A tool was called.
        ToolCall = "tool_call",
        /// An administrative change (keys, roles, configuration).
        Admin = "admin",
        /// A rate limit was applied.
        RateLimit = "rate_limit",
        /// Something hostile or malformed was seen.
        SecurityViolation = "security_violation",
        /// The system itself (start, stop, configuration reload).
        System = "system",
    }
}

string_enum! {
    /// How important an event is (syslog-like levels).
    Severity {
        /// Diagnostic detail.
        Debug = "debug",
        /// Normal operation.
        Info = "info",
        /// Normal but significant.
        Notice = "notice",
        /// Something that deserves a look.
        Warning = "warning",
        /// A failure.
        Error = "error",
        /// A failure that needs immediate attention.
        Critical = "critical",
    }
}

string_enum! {
    /// What was decided.
    Decision {
        /// The request was allowed.
        Allow = "allow",
        /// The request was denied.
        Deny = "deny",
    }
}

string_enum! {
    /// The kind of object an action targets.
    TargetKind {
        /// An MCP tool.
        Tool = "tool",
        /// An MCP resource.
        Resource = "resource",
        /// An MCP prompt.
        Prompt = "prompt",
    }
}

string_enum! {
    /// How an action ended.
    OutcomeStatus {
        /// It did what was asked.
        Success = "success",
        /// It was refused or failed for a reason the caller caused.
        Failure = "failure",
        /// It failed on the server side.
        Error = "error",
    }
}

impl AuditEvent {
    /// A new event of `category`, with a fresh UUIDv7, the current time and the category's
    /// default severity (`warning` for security violations, `info` otherwise).
    pub fn new(category: Category) -> Self {
        let severity = match category {
            Category::SecurityViolation => Severity::Warning,
            _ => Severity::Info,
        };
        Self {
            schema: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            time: Timestamp::now(),
            category,
            severity,
            actor: Actor::default(),
            action: Action::default(),
            decision: None,
            reason: None,
            outcome: None,
            request_id: None,
            trace_id: None,
            session_id: None,
            client_ip: None,
            user_agent: None,
            chain: None,
        }
    }

    /// Sets the time (the default is the time of [`AuditEvent::new`]).
    pub fn time(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the authenticated subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.actor.subject = Some(subject.into());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.actor.tenant = Some(tenant.into());
        self
    }

    /// Sets the authentication method.
    pub fn auth_method(mut self, method: impl Into<String>) -> Self {
        self.actor.auth_method = Some(method.into());
        self
    }

    /// Sets the public id of the API key used (never pass the key itself).
    pub fn api_key_id(mut self, id: impl Into<String>) -> Self {
        self.actor.api_key_id = Some(id.into());
        self
    }

    /// Sets the MCP method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.action.method = Some(method.into());
        self
    }

    /// Targets a tool.
    pub fn tool(self, name: impl Into<String>) -> Self {
        self.target(TargetKind::Tool, name)
    }

    /// Targets a resource.
    pub fn resource(self, uri: impl Into<String>) -> Self {
        self.target(TargetKind::Resource, uri)
    }

    /// Targets a prompt.
    pub fn prompt(self, name: impl Into<String>) -> Self {
        self.target(TargetKind::Prompt, name)
    }

    /// Sets the target kind and name.
    pub fn target(mut self, kind: TargetKind, name: impl Into<String>) -> Self {
        self.action.target_kind = Some(kind);
        self.action.target = Some(name.into());
        self
    }

    /// Sets the tool arguments. They are redacted (and dropped unless the logger's
    /// [`Redactor`](crate::Redactor) keeps arguments) before anything is stored.
    pub fn arguments(mut self, arguments: serde_json::Value) -> Self {
        self.action.arguments = Some(arguments);
        self
    }

    /// Sets the decision and its reason.
    pub fn decision(mut self, decision: Decision, reason: impl Into<String>) -> Self {
        self.decision = Some(decision);
        self.reason = Some(reason.into());
        self
    }

    /// Sets the outcome.
    pub fn outcome(
        mut self,
        status: OutcomeStatus,
        code: Option<i64>,
        latency: Option<Duration>,
    ) -> Self {
        self.outcome = Some(Outcome {
            status,
            code,
            latency_us: latency.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        });
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the trace id.
    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = Some(id.into());
        self
    }

    /// Sets the MCP session id.
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = Some(id.into());
        self
    }

    /// Sets the client address.
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the user agent.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_names_follow_the_documented_schema() {
        let event = AuditEvent::new(Category::SecurityViolation)
            .subject("s")
            .tenant("t")
            .auth_method("jwt")
            .api_key_id("k1")
            .method("tools/call")
            .prompt("p")
            .arguments(serde_json::json!({"a": 1}))
            .decision(Decision::Deny, "r")
            .outcome(
                OutcomeStatus::Failure,
                Some(403),
                Some(Duration::from_micros(7)),
            )
            .request_id("req")
            .trace_id("tr")
            .session_id("se")
            .client_ip("10.0.0.1".parse().unwrap())
            .user_agent("ua");
        let v = serde_json::to_value(&event).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "action",
                "actor",
                "category",
                "client_ip",
                "decision",
                "id",
                "outcome",
                "reason",
                "request_id",
                "schema",
                "session_id",
                "severity",
                "time",
                "trace_id",
                "user_agent"
            ]
        );
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["category"], "security_violation");
        assert_eq!(v["actor"]["api_key_id"], "k1");
        assert_eq!(v["action"]["target_kind"], "prompt");
        assert_eq!(
            v["outcome"],
            serde_json::json!({"status": "failure", "code": 403, "latency_us": 7})
        );
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.id.get_version_num(), 7);
    }

    #[test]
    fn enums_round_trip_through_strings() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), *c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), *s);
        }
        assert!("nope".parse::<Decision>().is_err());
    }
}
