//! The in-process upstream: the demo tools answer the gateway's already-parsed request by a
//! direct call of their rmcp `ServerHandler`, with no transport, no serialization and no
//! task hand-off.

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, ClientRequest, GetExtensions as _, Implementation, InitializeRequestParams,
    ProtocolVersion, RequestId, RequestMetaObject, ServerPeerInfo, ServerResult,
};
use rmcp::service::{RequestContext, RoleServer, RunningService, Service as _, serve_directly};
use rmcp::{ErrorData, ServerHandler};

use crate::demo::{DemoTools, UpstreamCounters};

/// The demo tools, served in the gateway's process.
pub(crate) struct InProcess {
    /// Holds the server side of an idle in-memory stream open; it exists only because rmcp
    /// builds a handler's `Peer` (part of every request context) together with a service.
    running: RunningService<RoleServer, DemoTools>,
    _client_end: tokio::io::DuplexStream,
    info: Arc<ServerPeerInfo>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("server", &self.info.server_info)
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// The demo tools, ready to be called.
    pub(crate) fn start() -> Self {
        let tools = DemoTools::new(Arc::new(UpstreamCounters::default()));
        let info = Arc::new(ServerPeerInfo::from(ServerHandler::get_info(&tools)));
        // The handler sees the gateway as a client that negotiated the newest protocol
        // version with the `initialize` handshake, as the gateway's own clients do.
        let client = InitializeRequestParams::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-gateway", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
        let (client_end, server_end) = tokio::io::duplex(64);
        let running = serve_directly(tools, server_end, Some(client));
        Self {
            running,
            _client_end: client_end,
            info,
        }
    }

    /// What the tools say about themselves.
    pub(crate) fn info(&self) -> Arc<ServerPeerInfo> {
        Arc::clone(&self.info)
    }

    /// Answers `request` (JSON-RPC id `id`) by calling the handler.
    pub(crate) async fn call(
        &self,
        id: RequestId,
        request: Box<ClientRequest>,
    ) -> Result<Box<ServerResult>, ErrorData> {
        let mut request = *request;
        let mut context = RequestContext::new(id, self.running.peer().clone());
        // As rmcp's serve loop does: the request's `_meta` and extensions move to the context.
        let extensions = request.extensions_mut();
        context.meta = extensions.remove::<RequestMetaObject>().unwrap_or_default();
        context.extensions = std::mem::take(extensions);
        self.running
            .service()
            .handle_request(request, context)
            .await
            .map(Box::new)
    }

    /// Stops the idle service.
    pub(crate) fn close(&self) {
        self.running.cancellation_token().cancel();
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolRequestParams, NumberOrString, PingRequest, Request};

    use super::*;

    #[tokio::test]
    async fn tools_answer_a_direct_call() {
        let upstream = InProcess::start();
        assert!(upstream.info().capabilities.tools.is_some());
        let mut args = rmcp::model::JsonObject::new();
        args.insert("text".into(), "hi".into());
        let request = Box::new(ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("echo").with_arguments(args),
        )));
        let result = upstream
            .call(RequestId::from(NumberOrString::Number(1)), request)
            .await
            .unwrap();
        let ServerResult::CallToolResult(result) = *result else {
            panic!("{result:?}")
        };
        assert_eq!(result.content[0].as_text().unwrap().text, "hi");
        // The legacy result shape: no `resultType`.
        assert!(result.result_type.is_none());
        let stats = Box::new(ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("admin.stats"),
        )));
        let ServerResult::CallToolResult(stats) = *upstream
            .call(RequestId::from(NumberOrString::Number(4)), stats)
            .await
            .unwrap()
        else {
            panic!("not a tool result")
        };
        let stats: serde_json::Value =
            serde_json::from_str(&stats.content[0].as_text().unwrap().text).unwrap();
        assert_eq!(stats["tool_calls"], 2);
        let unknown = Box::new(ClientRequest::CallToolRequest(Request::new(
            CallToolRequestParams::new("no-such-tool"),
        )));
        assert!(
            upstream
                .call(RequestId::from(NumberOrString::Number(2)), unknown)
                .await
                .is_err()
        );
        let ping = Box::new(ClientRequest::PingRequest(PingRequest::default()));
        assert!(
            upstream
                .call(RequestId::from(NumberOrString::Number(3)), ping)
                .await
                .is_ok()
        );
        upstream.close();
    }
}
