//! Names as clients see them when several upstreams share the gateway: each upstream's tool
//! and prompt names get its name prefix, its resource URIs and URI templates its URI prefix.
//! Requests are rewritten to the upstream's own names on the way in, results to the prefixed
//! names on the way out.

use std::borrow::Cow;

use rmcp::model::{ClientRequest, ContentBlock, Reference, ResourceContents, ServerResult};

/// What a request is about, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Address<'a> {
    /// A tool or prompt name.
    Name(&'a str),
    /// A resource URI.
    Uri(&'a str),
    /// A list every upstream contributes to.
    List(ListOf),
    /// Something every upstream should hear (the log level).
    Everyone,
    /// Nothing in particular: the first upstream answers.
    Default,
}

/// The merged lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListOf {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

/// What `request` addresses.
pub(crate) fn address(request: &ClientRequest) -> Address<'_> {
    match request {
        ClientRequest::CallToolRequest(r) => Address::Name(r.params.name.as_ref()),
        ClientRequest::GetPromptRequest(r) => Address::Name(r.params.name.as_str()),
        ClientRequest::ReadResourceRequest(r) => Address::Uri(r.params.uri.as_str()),
        ClientRequest::SubscribeRequest(r) => Address::Uri(r.params.uri.as_str()),
        ClientRequest::UnsubscribeRequest(r) => Address::Uri(r.params.uri.as_str()),
        ClientRequest::CompleteRequest(r) => match &r.params.r#ref {
            Reference::Prompt(p) => Address::Name(p.name.as_str()),
            Reference::Resource(t) => Address::Uri(t.uri.as_str()),
            _ => Address::Default,
        },
        ClientRequest::ListToolsRequest(_) => Address::List(ListOf::Tools),
        ClientRequest::ListPromptsRequest(_) => Address::List(ListOf::Prompts),
        ClientRequest::ListResourcesRequest(_) => Address::List(ListOf::Resources),
        ClientRequest::ListResourceTemplatesRequest(_) => Address::List(ListOf::ResourceTemplates),
        ClientRequest::SetLevelRequest(_) => Address::Everyone,
        _ => Address::Default,
    }
}

/// The cursor of a list request.
pub(crate) fn cursor(request: &ClientRequest) -> Option<&str> {
    let params = match request {
        ClientRequest::ListToolsRequest(r) => r.params.as_ref(),
        ClientRequest::ListPromptsRequest(r) => r.params.as_ref(),
        ClientRequest::ListResourcesRequest(r) => r.params.as_ref(),
        ClientRequest::ListResourceTemplatesRequest(r) => r.params.as_ref(),
        _ => None,
    };
    params.and_then(|p| p.cursor.as_deref())
}

/// One upstream's prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naming {
    name: String,
    uri: String,
}

fn strip<'a>(prefix: &str, exposed: &'a str) -> Option<&'a str> {
    exposed.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

impl Naming {
    /// Prefixes `name` (tools, prompts) and `uri` (resources).
    pub(crate) fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uri: uri.into(),
        }
    }

    /// The upstream's own name of the exposed tool or prompt `exposed`, if it is this
    /// upstream's.
    pub(crate) fn own_name<'a>(&self, exposed: &'a str) -> Option<&'a str> {
        strip(&self.name, exposed)
    }

    /// The upstream's own URI of the exposed `exposed`, if it is this upstream's.
    pub(crate) fn own_uri<'a>(&self, exposed: &'a str) -> Option<&'a str> {
        strip(&self.uri, exposed)
    }

    /// Whether `address` belongs to this upstream.
    pub(crate) fn owns(&self, address: Address<'_>) -> bool {
        match address {
            Address::Name(name) => self.own_name(name).is_some(),
            Address::Uri(uri) => self.own_uri(uri).is_some(),
            _ => false,
        }
    }

    fn expose_name(&self, name: &str) -> String {
        let mut exposed = String::with_capacity(self.name.len() + name.len());
        exposed.push_str(&self.name);
        exposed.push_str(name);
        exposed
    }

    fn expose_uri(&self, uri: &mut String) {
        uri.insert_str(0, &self.uri);
    }

    /// Rewrites the names and URIs `request` carries to the upstream's own; a name that is
    /// not this upstream's is left alone (routing checked it).
    pub(crate) fn to_upstream(&self, request: &mut ClientRequest) {
        let own_name = |name: &mut String| {
            if let Some(own) = self.own_name(name) {
                *name = own.to_owned();
            }
        };
        let own_uri = |uri: &mut String| {
            if let Some(own) = self.own_uri(uri) {
                *uri = own.to_owned();
            }
        };
        match request {
            ClientRequest::CallToolRequest(r) => {
                if let Some(own) = self.own_name(&r.params.name) {
                    r.params.name = Cow::Owned(own.to_owned());
                }
            }
            ClientRequest::GetPromptRequest(r) => own_name(&mut r.params.name),
            ClientRequest::ReadResourceRequest(r) => own_uri(&mut r.params.uri),
            ClientRequest::SubscribeRequest(r) => own_uri(&mut r.params.uri),
            ClientRequest::UnsubscribeRequest(r) => own_uri(&mut r.params.uri),
            ClientRequest::CompleteRequest(r) => match &mut r.params.r#ref {
                Reference::Prompt(p) => own_name(&mut p.name),
                Reference::Resource(t) => own_uri(&mut t.uri),
                _ => {}
            },
            _ => {}
        }
    }

    /// Rewrites the names and URIs `result` carries to the exposed ones.
    pub(crate) fn to_client(&self, result: &mut ServerResult) {
        match result {
            ServerResult::ListToolsResult(r) => {
                for tool in &mut r.tools {
                    tool.name = Cow::Owned(self.expose_name(&tool.name));
                }
            }
            ServerResult::ListPromptsResult(r) => {
                for prompt in &mut r.prompts {
                    prompt.name = self.expose_name(&prompt.name);
                }
            }
            ServerResult::ListResourcesResult(r) => {
                for resource in &mut r.resources {
                    self.expose_uri(&mut resource.uri);
                }
            }
            ServerResult::ListResourceTemplatesResult(r) => {
                for template in &mut r.resource_templates {
                    self.expose_uri(&mut template.uri_template);
                }
            }
            ServerResult::ReadResourceResult(r) => {
                for contents in &mut r.contents {
                    self.expose_contents(contents);
                }
            }
            ServerResult::CallToolResult(r) => {
                for block in &mut r.content {
                    self.expose_block(block);
                }
            }
            ServerResult::GetPromptResult(r) => {
                for message in &mut r.messages {
                    self.expose_block(&mut message.content);
                }
            }
            _ => {}
        }
    }

    fn expose_contents(&self, contents: &mut ResourceContents) {
        match contents {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => self.expose_uri(uri),
            _ => {}
        }
    }

    fn expose_block(&self, block: &mut ContentBlock) {
        match block {
            ContentBlock::Resource(embedded) => self.expose_contents(&mut embedded.resource),
            ContentBlock::ResourceLink(link) => self.expose_uri(&mut link.uri),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rmcp::model::{
        CallToolRequestParams, ListToolsResult, ReadResourceRequestParams, ReadResourceResult,
        Request, Resource, Tool,
    };

    use super::*;

    fn naming() -> Naming {
        Naming::new("crm_", "crm+")
    }

    #[test]
    fn a_tool_call_is_routed_and_renamed() {
        let n = naming();
        let mut request = ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new(
            "crm_contacts.find",
        )));
        assert!(n.owns(address(&request)));
        assert!(!Naming::new("erp_", "erp+").owns(address(&request)));
        n.to_upstream(&mut request);
        assert_eq!(address(&request), Address::Name("contacts.find"));
        // The bare prefix names nothing.
        assert_eq!(n.own_name("crm_"), None);
    }

    #[test]
    fn resources_are_routed_by_uri_and_exposed_with_the_prefix() {
        let n = naming();
        let mut request = ClientRequest::ReadResourceRequest(Request::new(
            ReadResourceRequestParams::new("crm+file:///notes.txt"),
        ));
        n.to_upstream(&mut request);
        assert_eq!(address(&request), Address::Uri("file:///notes.txt"));
        let mut result = ServerResult::ReadResourceResult(ReadResourceResult::new(vec![
            ResourceContents::text("hi", "file:///notes.txt"),
        ]));
        n.to_client(&mut result);
        let ServerResult::ReadResourceResult(r) = result else {
            unreachable!()
        };
        assert!(matches!(
            &r.contents[0],
            ResourceContents::TextResourceContents { uri, .. } if uri == "crm+file:///notes.txt"
        ));
        let mut list = ServerResult::ListResourcesResult(rmcp::model::ListResourcesResult {
            resources: vec![Resource::new("memo://a", "a")],
            ..Default::default()
        });
        n.to_client(&mut list);
        let ServerResult::ListResourcesResult(list) = list else {
            unreachable!()
        };
        assert_eq!(list.resources[0].uri, "crm+memo://a");
    }

    #[test]
    fn listed_tools_get_the_prefix() {
        let mut result = ServerResult::ListToolsResult(ListToolsResult {
            tools: vec![Tool::new("echo", "echoes", rmcp::model::JsonObject::new())],
            ..Default::default()
        });
        naming().to_client(&mut result);
        let ServerResult::ListToolsResult(r) = result else {
            unreachable!()
        };
        assert_eq!(r.tools[0].name, "crm_echo");
    }

    proptest! {
        #[test]
        fn exposing_then_routing_gives_back_the_name(
            prefix in "[a-z][a-z0-9-]{0,8}[_.]",
            name in "[A-Za-z0-9_.-]{1,20}",
        ) {
            let n = Naming::new(prefix.clone(), format!("{prefix}+"));
            let exposed = n.expose_name(&name);
            prop_assert_eq!(n.own_name(&exposed), Some(name.as_str()));
            let own = format!("file:///{name}");
            let mut uri = own.clone();
            n.expose_uri(&mut uri);
            prop_assert_eq!(n.own_uri(&uri), Some(own.as_str()));
        }

        #[test]
        fn a_name_without_the_prefix_is_never_claimed(
            prefix in "[a-z]{1,6}_",
            name in "[A-Za-z0-9_.-]{0,20}",
        ) {
            let n = Naming::new(prefix.clone(), "x+");
            prop_assume!(!name.starts_with(&prefix));
            prop_assert_eq!(n.own_name(&name), None);
        }
    }
}
