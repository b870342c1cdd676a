//! JSON-RPC fast paths: the one parse of a client's message, and the request and answer of
//! an HTTP upstream.
//!
//! rmcp's `ClientJsonRpcMessage` reads a message through several layers of serde buffering:
//! the message kind is an untagged enum whose variants flatten the request, `ClientRequest`
//! is an untagged union tried variant by variant, and each request's `params` flatten once
//! more around `_meta`. That is correct for every message and is kept for all of them but
//! one: `tools/call`, nearly the whole of a gateway's traffic, is read straight into its
//! types (envelope fields borrowed, `params` as one `CallToolRequestParams`), which yields
//! the same request rmcp builds, `_meta` moved into the request's extensions as rmcp does.
//! Anything the fast path does not fully understand goes the general way, so both accept
//! and refuse exactly the same messages (property-tested below).
//!
//! Towards an HTTP upstream the same holds: rmcp serializes a request's `params` through a
//! `serde_json::Value` (to merge `_meta`), and reads an answer as the untagged `ServerResult`.
//! [`encode_request`] writes a `tools/call` directly, and [`parse_answer`] reads the result of
//! a `tools/call` as a `CallToolResult`; everything else takes rmcp's way.

use std::borrow::Cow;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientJsonRpcMessage, ClientRequest,
    JsonRpcRequest, JsonRpcVersion2_0, MetaObject, RequestId, RequestMetaObject, ServerResult,
};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The top-level members of a message, read without buffering.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: Option<RequestId>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    /// Whether the member is there at all (`null` included), as rmcp tells message kinds.
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Parses one client message: the fast path for `tools/call`, rmcp's general one otherwise.
pub(crate) fn parse(bytes: &[u8]) -> serde_json::Result<ClientJsonRpcMessage> {
    match tools_call(bytes) {
        Some(request) => Ok(ClientJsonRpcMessage::Request(request)),
        None => serde_json::from_slice(bytes),
    }
}

/// A well-formed `tools/call` request, or `None` for anything else (which includes every
/// malformed message: the general parse then reports why).
fn tools_call(bytes: &[u8]) -> Option<JsonRpcRequest<ClientRequest>> {
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).ok()?;
    if envelope.method.as_deref() != Some("tools/call") || envelope.result || envelope.error {
        return None;
    }
    let id = envelope.id?;
    let mut params: CallToolRequestParams = serde_json::from_str(envelope.params?.get()).ok()?;
    // As rmcp reads it: `_meta` goes to the extensions, not into the parameters.
    let meta = params.meta.take();
    let mut request = CallToolRequest::new(params);
    if let Some(meta) = meta {
        request.extensions.insert(meta);
    }
    Some(JsonRpcRequest::new(
        id,
        ClientRequest::CallToolRequest(request),
    ))
}

/// The result a request is answered with, as far as the fast answer parse cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A `tools/call`: a `CallToolResult`.
    ToolResult,
    /// Anything: rmcp's `ServerResult`.
    Any,
}

/// A request as the upstream reads it.
#[derive(Serialize)]
struct Outgoing<'a, P> {
    jsonrpc: JsonRpcVersion2_0,
    id: &'a RequestId,
    method: &'static str,
    params: &'a P,
}

/// A result as the client reads it: what rmcp's `JsonRpcResponse` writes (members in the same
/// order), from borrowed parts, so the result is not moved into a message to be written.
#[derive(Serialize)]
pub(crate) struct Reply<'a> {
    jsonrpc: JsonRpcVersion2_0,
    id: &'a RequestId,
    result: &'a ServerResult,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(id: &'a RequestId, result: &'a ServerResult) -> Self {
        Self {
            jsonrpc: JsonRpcVersion2_0,
            id,
            result,
        }
    }
}

/// `request` with JSON-RPC id `id` as the body of a POST, and what its answer will be.
pub(crate) fn encode_request(
    id: &RequestId,
    request: ClientRequest,
) -> serde_json::Result<(Vec<u8>, Expect)> {
    match request {
        // A legacy `MetaObject` extension is merged by rmcp's serializer; leave it that way.
        ClientRequest::CallToolRequest(mut call)
            if call.extensions.get::<MetaObject>().is_none() =>
        {
            // As rmcp writes it: the extensions' `_meta` over the parameters' own.
            if let Some(RequestMetaObject(MetaObject(extra))) =
                call.extensions.remove::<RequestMetaObject>()
            {
                match &mut call.params.meta {
                    Some(meta) => meta.0.0.extend(extra),
                    None => call.params.meta = Some(RequestMetaObject(MetaObject(extra))),
                }
            }
            let body = serde_json::to_vec(&Outgoing {
                jsonrpc: JsonRpcVersion2_0,
                id,
                method: "tools/call",
                params: &call.params,
            })?;
            Ok((body, Expect::ToolResult))
        }
        request => {
            let message = ClientJsonRpcMessage::Request(JsonRpcRequest::new(id.clone(), request));
            Ok((serde_json::to_vec(&message)?, Expect::Any))
        }
    }
}

/// The members of a server message that tell whether it answers a request.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: Option<RequestId>,
    #[serde(default, deserialize_with = "present")]
    method: bool,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<ErrorData>,
}

/// What an upstream message says to request `id`: `None` when it is not the answer to it
/// (a notification, the upstream's own request, another id, or not JSON-RPC at all).
pub(crate) fn parse_answer(
    bytes: &[u8],
    id: &RequestId,
    expect: Expect,
) -> Option<Result<ServerResult, ErrorData>> {
    let answer: Answer<'_> = serde_json::from_slice(bytes).ok()?;
    if answer.method || answer.id.as_ref() != Some(id) {
        return None;
    }
    match (answer.result, answer.error) {
        (Some(result), None) => {
            let result = result.get();
            let typed = match expect {
                Expect::ToolResult => serde_json::from_str::<CallToolResult>(result)
                    .ok()
                    .map(ServerResult::CallToolResult),
                Expect::Any => None,
            };
            match typed {
                Some(typed) => Some(Ok(typed)),
                None => serde_json::from_str::<ServerResult>(result).ok().map(Ok),
            }
        }
        (None, Some(error)) => Some(Err(error)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rmcp::model::{GetExtensions as _, ServerJsonRpcMessage};
    use serde_json::{Value, json};

    use super::*;

    /// What a parse yields, comparable: the message as JSON, `_meta` from the extensions, and
    /// whether a tool call's parameters kept a `_meta` of their own.
    fn seen(
        parsed: serde_json::Result<ClientJsonRpcMessage>,
    ) -> Option<(Value, Option<Value>, bool)> {
        let mut message = parsed.ok()?;
        let (meta, own_meta) = match &mut message {
            ClientJsonRpcMessage::Request(r) => (
                r.request
                    .extensions_mut()
                    .get::<RequestMetaObject>()
                    .map(|m| serde_json::to_value(m).unwrap()),
                matches!(&r.request, ClientRequest::CallToolRequest(c) if c.params.meta.is_some()),
            ),
            _ => (None, false),
        };
        Some((serde_json::to_value(&message).unwrap(), meta, own_meta))
    }

    fn assert_same(bytes: &[u8]) {
        let general = seen(serde_json::from_slice::<ClientJsonRpcMessage>(bytes));
        let fast = seen(parse(bytes));
        assert_eq!(fast, general, "{}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn tools_call_takes_the_fast_path_and_others_do_not() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
        assert!(tools_call(call).is_some());
        assert_same(call);
        for other in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"result":{}}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"a"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"error":null}"#,
            br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#,
            br#"[]"#,
            b"",
        ] {
            assert!(tools_call(other).is_none(), "{}", String::from_utf8_lossy(other));
            assert_same(other);
        }
    }

    #[test]
    fn meta_moves_to_the_extensions_as_rmcp_does() {
        let call = br#"{"params":{"_meta":{"progressToken":3,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},"name":"echo","arguments":{"text":"hi"}},"method":"tools/call","id":"a","jsonrpc":"2.0"}"#;
        let Some(JsonRpcRequest { request, .. }) = tools_call(call) else {
            panic!("not parsed")
        };
        let ClientRequest::CallToolRequest(request) = &request else {
            panic!("not a tool call")
        };
        assert!(request.params.meta.is_none());
        assert!(request.extensions.get::<RequestMetaObject>().is_some());
        assert_same(call);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1f600} ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        /// `tools/call`-like messages: valid ones, and ones with a member missing, of the
        /// wrong type or extra, in any member order.
        fn message()(
            id in prop_oneof![
                any::<i64>().prop_map(Value::from),
                "[a-z0-9-]{0,12}".prop_map(Value::from),
                Just(Value::Null),
                json_value(),
            ],
            method in prop_oneof![4 => Just("tools/call".to_owned()), 1 => "[a-z/]{1,12}"],
            name in prop_oneof![8 => "[a-z.]{1,10}".prop_map(Value::from), 1 => json_value()],
            arguments in prop::option::of(json_value()),
            meta in prop::option::of(json_value()),
            extra in prop::option::of((
                prop_oneof![Just("result".to_owned()), Just("error".to_owned()), "[a-zA-Z_]{1,8}"],
                json_value(),
            )),
            jsonrpc in prop_oneof![8 => Just(json!("2.0")), 1 => json_value()],
            drop in 0usize..8,
            reverse in any::<bool>(),
        ) -> Vec<u8> {
            let mut params = serde_json::Map::new();
            params.insert("name".into(), name);
            if let Some(arguments) = arguments {
                params.insert("arguments".into(), arguments);
            }
            if let Some(meta) = meta {
                params.insert("_meta".into(), meta);
            }
            let mut members = vec![
                ("jsonrpc".to_owned(), jsonrpc),
                ("id".to_owned(), id),
                ("method".to_owned(), Value::from(method)),
                ("params".to_owned(), Value::Object(params)),
            ];
            if let Some((key, value)) = extra {
                members.push((key, value));
            }
            if drop < members.len() {
                members.remove(drop);
            }
            if reverse {
                members.reverse();
            }
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                .collect();
            format!("{{{}}}", body.join(",")).into_bytes()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_fast_path_agrees_with_rmcp(bytes in message()) {
            let general = seen(serde_json::from_slice::<ClientJsonRpcMessage>(&bytes));
            let fast = seen(parse(&bytes));
            prop_assert_eq!(fast, general, "{}", String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn requests_are_written_as_rmcp_writes_them(bytes in message(), id in any::<i64>()) {
            if let Ok(ClientJsonRpcMessage::Request(request)) = parse(&bytes) {
                let id = RequestId::Number(id);
                let general = serde_json::to_value(ClientJsonRpcMessage::Request(
                    JsonRpcRequest::new(id.clone(), request.request.clone()),
                ))
                .unwrap();
                let (body, _) = encode_request(&id, request.request).unwrap();
                prop_assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), general);
            }
        }
    }

    /// rmcp's reading of an upstream message as the answer to `id`, comparable.
    fn rmcp_answer(bytes: &[u8], id: &RequestId) -> Option<Result<Value, Value>> {
        match serde_json::from_slice::<ServerJsonRpcMessage>(bytes).ok()? {
            ServerJsonRpcMessage::Response(r) if &r.id == id => {
                Some(Ok(serde_json::to_value(r.result).unwrap()))
            }
            ServerJsonRpcMessage::Error(e) if e.id.as_ref() == Some(id) => {
                Some(Err(serde_json::to_value(e.error).unwrap()))
            }
            _ => None,
        }
    }

    #[test]
    fn answers_are_read_as_rmcp_reads_them() {
        let id = RequestId::Number(5);
        let bodies = [
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi"}]}}),
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"no"}],"isError":true}}),
            json!({"jsonrpc":"2.0","id":5,"result":{"content":[],"structuredContent":{"a":[1,2]},"_meta":{"k":"v"}}}),
            json!({"jsonrpc":"2.0","id":5,"result":{"structuredContent":null}}),
            json!({"jsonrpc":"2.0","id":5,"result":{"task":{"taskId":"t1","status":"working","createdAt":"2025-11-25T10:00:00Z","lastUpdatedAt":"2025-11-25T10:00:00Z","ttl":null}}}),
            json!({"jsonrpc":"2.0","id":5,"result":{}}),
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"unknown tool"}}),
            json!({"jsonrpc":"2.0","id":6,"result":{"content":[]}}),
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}),
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}),
            json!({"jsonrpc":"2.0","id":5,"method":"roots/list"}),
            json!({"jsonrpc":"1.0","id":5,"result":{"content":[]}}),
            json!({"id":5,"result":{"content":[]}}),
            json!([1]),
        ];
        for body in bodies {
            let bytes = serde_json::to_vec(&body).unwrap();
            let general = rmcp_answer(&bytes, &id);
            for expect in [Expect::ToolResult, Expect::Any] {
                let fast = parse_answer(&bytes, &id, expect).map(|answer| {
                    answer
                        .map(|r| serde_json::to_value(r).unwrap())
                        .map_err(|e| serde_json::to_value(e).unwrap())
                });
                assert_eq!(fast, general, "{body} ({expect:?})");
            }
        }
    }

    #[test]
    fn replies_are_written_byte_for_byte_as_rmcp_writes_them() {
        let results = [
            json!({"content":[{"type":"text","text":"hi \"there\"\n"}],"isError":true}),
            json!({"content":[],"structuredContent":{"b":[1,2],"a":null},"_meta":{"k":"v"}}),
            json!({"tools":[{"name":"echo","inputSchema":{"type":"object"}}],"nextCursor":"c"}),
            json!({}),
        ];
        let ids = [
            RequestId::Number(-3),
            RequestId::String("req \u{e9}\"1\"".into()),
        ];
        for result in results {
            let result: ServerResult = serde_json::from_value(result).unwrap();
            for id in &ids {
                let rmcp =
                    serde_json::to_vec(&ServerJsonRpcMessage::response(result.clone(), id.clone()))
                        .unwrap();
                let ours = serde_json::to_vec(&Reply::new(id, &result)).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(rmcp).unwrap()
                );
            }
        }
    }
}
