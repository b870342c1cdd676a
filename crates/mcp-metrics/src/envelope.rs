//! The MCP request context an outer layer hands over ([`McpRequestInfo`]), the fallback
//! JSON-RPC body parser, and the bounded MCP method label.

use std::borrow::Cow;

use serde::Deserialize;

use crate::traceparent::TraceParent;

/// What is known about one MCP request: put it in the request's `http::Extensions` from the
/// layer that already parsed the JSON-RPC envelope (and authenticated the caller), and the
/// metrics layer uses it instead of parsing the body again.
///
/// `subject` is used for log and trace context and, hashed, for counting concurrent users; it
/// is never a metric label. `tenant` and `tool` become labels only through the configured
/// bounded sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpRequestInfo {
    /// JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// `params.name` of a `tools/call` (or `prompts/get`) request.
    pub tool: Option<String>,
    /// Tenant of the authenticated caller.
    pub tenant: Option<String>,
    /// MCP session id (`Mcp-Session-Id`).
    pub session: Option<String>,
    /// Authenticated subject (user or client id).
    pub subject: Option<String>,
    /// `params._meta.traceparent`, if the client sent a valid one.
    pub traceparent: Option<TraceParent>,
}

impl McpRequestInfo {
    /// Info for `method` with nothing else known.
    pub fn new(method: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            ..Self::default()
        }
    }

    /// Sets the tool name.
    #[must_use]
    pub fn with_tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the MCP session id.
    #[must_use]
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Sets the authenticated subject.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the trace parent taken from `params._meta.traceparent`.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Parses the method, tool and `_meta.traceparent` out of a JSON-RPC request body.
    ///
    /// Returns `None` for anything that is not a JSON-RPC object with a string `method`. A
    /// batch (a JSON array) is reported as method `batch`. An invalid `traceparent` is ignored.
    pub fn from_json_rpc(body: &[u8]) -> Option<Self> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first == b'[' {
            return Some(Self::new("batch"));
        }
        let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
        let method = envelope.method?;
        let params = envelope.params.unwrap_or_default();
        let tool = match method.as_ref() {
            "tools/call" | "prompts/get" => params.name.map(Cow::into_owned),
            _ => None,
        };
        let traceparent = params
            .meta
            .and_then(|m| m.traceparent)
            .and_then(|tp| TraceParent::parse(&tp).ok());
        Some(Self {
            method: method.into_owned(),
            tool,
            tenant: None,
            session: None,
            subject: None,
            traceparent,
        })
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize, Default)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    traceparent: Option<Cow<'a, str>>,
}

/// The MCP methods that get their own label value; any other method is `other`.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "batch",
];

/// The `method` label of a request that carried no MCP envelope (plain HTTP, SSE GET, ...).
pub const HTTP_METHOD_LABEL: &str = "http";

/// The bounded `method` label of a request: one of [`KNOWN_METHODS`], [`OTHER`] or
/// [`HTTP_METHOD_LABEL`], kept as a small index so per-method metric handles sit in an array.
///
/// [`OTHER`]: crate::labels::OTHER
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MethodLabel(u8);

// Every method label index fits the `u8`.
const _: () = assert!(KNOWN_METHODS.len() + 2 <= u8::MAX as usize);

impl MethodLabel {
    /// How many method labels there are: the known methods, `other` and `http`.
    pub(crate) const COUNT: usize = KNOWN_METHODS.len() + 2;
    const OTHER: Self = Self(KNOWN_METHODS.len() as u8);
    /// `tools/call`.
    pub(crate) const TOOLS_CALL: Self = Self(3);
    const HTTP: Self = Self(KNOWN_METHODS.len() as u8 + 1);

    /// The label of an MCP method, or of a request without an envelope (`None`).
    #[inline(always)]
    pub(crate) fn of(method: Option<&str>) -> Self {
        let Some(m) = method else {
            return Self::HTTP;
        };
        KNOWN_METHODS
            .iter()
            .position(|k| *k == m)
            .and_then(|i| u8::try_from(i).ok())
            .map_or(Self::OTHER, Self)
    }

    /// The index, below [`Self::COUNT`].
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match KNOWN_METHODS.get(self.index()) {
            Some(m) => m,
            None if self == Self::HTTP => HTTP_METHOD_LABEL,
            None => crate::labels::OTHER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tool_call_with_meta() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"},"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","progressToken":1}}}"#;
        let info = McpRequestInfo::from_json_rpc(body).unwrap();
        assert_eq!(info.method, "tools/call");
        assert_eq!(info.tool.as_deref(), Some("search"));
        assert_eq!(
            info.traceparent.map(|t| t.trace_id_hex()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn escaped_strings_and_other_methods() {
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools\/list","params":{"name":"ignored"}}"#;
        let info = McpRequestInfo::from_json_rpc(body).unwrap();
        assert_eq!(info.method, "tools/list");
        assert_eq!(info.tool, None);
    }

    #[test]
    fn bad_input_is_none_and_bad_traceparent_is_ignored() {
        assert_eq!(McpRequestInfo::from_json_rpc(b""), None);
        assert_eq!(McpRequestInfo::from_json_rpc(b"not json"), None);
        assert_eq!(McpRequestInfo::from_json_rpc(br#"{"id":1}"#), None);
        assert_eq!(McpRequestInfo::from_json_rpc(br#"{"method":5}"#), None);
        assert_eq!(
            McpRequestInfo::from_json_rpc(b" [{}]")
                .map(|i| i.method)
                .as_deref(),
            Some("batch")
        );
        let info = McpRequestInfo::from_json_rpc(
            br#"{"method":"ping","params":{"_meta":{"traceparent":"garbage"}}}"#,
        )
        .unwrap();
        assert_eq!(info.traceparent, None);
    }

    #[test]
    fn method_labels_are_bounded() {
        let label = |m| MethodLabel::of(m).as_str();
        assert_eq!(MethodLabel::TOOLS_CALL.as_str(), "tools/call");
        assert_eq!(label(Some("tools/call")), "tools/call");
        assert_eq!(label(Some("made/up")), "other");
        assert_eq!(label(None), "http");
        let mut seen = std::collections::HashSet::new();
        for m in KNOWN_METHODS
            .iter()
            .map(|m| Some(*m))
            .chain([Some("x"), None])
        {
            let l = MethodLabel::of(m);
            assert!(l.index() < MethodLabel::COUNT);
            assert!(seen.insert(l.index()), "{m:?}");
        }
        assert_eq!(seen.len(), MethodLabel::COUNT);
        assert!(u8::try_from(MethodLabel::COUNT).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = McpRequestInfo::from_json_rpc(&body);
        }
    }
}
