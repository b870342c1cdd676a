//! Shared harness of the OAuth proxy's integration tests: the testkit's Entra issuer, the
//! proxy and a small rmcp Streamable HTTP server behind mcp-auth-core's auth layer, served
//! on 127.0.0.1, and a cookie-keeping "browser" with redirects off.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: each test binary uses a subset, and a failure should stop the test loudly"
)]

pub mod services;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use mcp_auth_azure::Cloud;
use mcp_auth_azure::proxy::{
    ClientStore, EntraUpstreamConfig, OAuthProxy, OAuthProxyBuilder, OAuthProxyConfig, StateStore,
};
use mcp_auth_core::{AuthLayer, Clock, Principal, Secret};
use mcp_auth_testkit::entra::{EntraIssuer, EntraIssuerConfig, pkce_challenge};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

/// The encryption key of the harness (32 bytes of 7).
pub const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";

/// What the `whoami` tool returns.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Caller {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
}

/// An MCP server with one tool that reports the authenticated caller.
#[derive(Clone, Debug)]
pub struct WhoAmI {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl WhoAmI {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Who is calling.")]
    fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<Json<Caller>, ErrorData> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or_else(|| ErrorData::internal_error("no principal", None))?;
        Ok(Json(Caller {
            subject: principal.subject().to_owned(),
            tenant: principal.tenant().map(str::to_owned),
            scopes: principal.scopes().iter().cloned().collect(),
            client_id: principal
                .claims()
                .get("client_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for WhoAmI {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// How a harness is set up.
pub struct Options {
    pub configure: Box<dyn FnOnce(&mut OAuthProxyConfig) + Send>,
    pub builder: Box<dyn FnOnce(OAuthProxyBuilder) -> OAuthProxyBuilder + Send>,
    pub entra: EntraIssuerConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            configure: Box::new(|_| {}),
            builder: Box::new(|b| b),
            entra: EntraIssuerConfig::default(),
        }
    }
}

impl Options {
    pub fn configure(mut self, f: impl FnOnce(&mut OAuthProxyConfig) + Send + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// Adds a step to the proxy's builder (after the earlier ones).
    pub fn builder(
        mut self,
        f: impl FnOnce(OAuthProxyBuilder) -> OAuthProxyBuilder + Send + 'static,
    ) -> Self {
        let earlier = self.builder;
        self.builder = Box::new(move |b| f(earlier(b)));
        self
    }

    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        self.builder(move |b| b.clock(clock))
    }

    pub fn stores(self, clients: Arc<dyn ClientStore>, state: Arc<dyn StateStore>) -> Self {
        self.builder(move |b| b.client_store(clients).state_store(state))
    }
}

/// The Entra issuer, the proxy and the MCP server, running.
pub struct Harness {
    pub entra: EntraIssuer,
    pub proxy: OAuthProxy,
    /// `http://127.0.0.1:<port>`: the proxy's issuer and the server's origin.
    pub base: String,
    /// `{base}/mcp`.
    pub resource: String,
    pub browser: Browser,
    /// The configuration the proxy was built from.
    pub config: OAuthProxyConfig,
    server: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let entra = EntraIssuer::start_with(options.entra).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        assert!(entra.add_redirect_uri(EntraIssuer::CLIENT_ID, format!("{base}/callback")));

        let mut upstream = EntraUpstreamConfig::new(
            EntraIssuer::TENANT,
            EntraIssuer::CLIENT_ID,
            Secret::from(EntraIssuer::CLIENT_SECRET),
        );
        upstream.cloud =
            Cloud::custom(entra.authority(), entra.v1_issuer_base(), entra.authority());
        let mut config = OAuthProxyConfig::new(&base, &resource, upstream, vec![Secret::from(KEY)]);
        config.scopes.supported = vec!["mcp.tools".into(), "mcp.resources".into()];
        config.scopes.default = vec!["mcp.tools".into()];
        (options.configure)(&mut config);
        let proxy = (options.builder)(OAuthProxy::builder(config.clone()))
            .build()
            .unwrap();

        let metadata = proxy.protected_resource_metadata().unwrap();
        let mcp = StreamableHttpService::new(
            || Ok(WhoAmI::new()),
            Arc::new(NeverSessionManager::default()),
            StreamableHttpServerConfig::default()
                .with_legacy_session_mode(false)
                .with_json_response(true)
                .with_sse_keep_alive(None),
        );
        let auth = AuthLayer::new(proxy.authenticator())
            .challenge(metadata.challenge_config().default_scope("mcp.tools"));
        let app: Router = Router::new()
            .route_service("/mcp", mcp)
            .route_layer(auth)
            .merge(metadata.router())
            .merge(proxy.router());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            entra,
            proxy,
            base,
            resource,
            browser: Browser::new(),
            config,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a public client with `redirect_uri` through `/register`.
    pub async fn register(&self, redirect_uri: &str) -> String {
        let response = self
            .browser
            .http
            .post(self.url("/register"))
            .json(&serde_json::json!({
                "client_name": "test client",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// Posts a form to the token endpoint and returns the status and JSON body.
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .browser
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A PKCE pair.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), "v".repeat(20));
        let challenge = pkce_challenge(&verifier);
        Self {
            verifier,
            challenge,
        }
    }
}

/// An authorization request of a test client.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub pkce: Pkce,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

impl AuthRequest {
    pub fn new(client_id: &str, redirect_uri: &str, resource: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            state: uuid::Uuid::new_v4().to_string(),
            pkce: Pkce::new(),
            scope: Some("mcp.tools".into()),
            resource: Some(resource.to_owned()),
        }
    }

    pub fn url(&self, base: &str) -> String {
        let mut url = Url::parse(&format!("{base}/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", &self.state)
                .append_pair("code_challenge", &self.pkce.challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(scope) = &self.scope {
                q.append_pair("scope", scope);
            }
            if let Some(resource) = &self.resource {
                q.append_pair("resource", resource);
            }
        }
        url.to_string()
    }
}

/// A page or redirect the browser got.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    /// A query parameter of the `Location`.
    pub fn param(&self, name: &str) -> Option<String> {
        let location = Url::parse(self.location.as_deref()?).ok()?;
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The value of the hidden input `name` of a consent page.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }

    pub fn is_consent_page(&self) -> bool {
        self.status == 200 && self.body.contains("name=\"csrf\"")
    }
}

/// A user agent: keeps cookies, never follows redirects.
pub struct Browser {
    pub http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn reply(&self, response: reqwest::Response) -> Reply {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut cookies = self.cookies.lock().unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Reply {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.reply(response).await
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        let response = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.reply(response).await
    }

    /// Removes a cookie (to play a browser that never had it).
    pub fn forget_cookie(&self, name: &str) {
        self.cookies.lock().unwrap().remove(name);
    }

    pub fn forget_all_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    /// Answers a consent page with `decision`.
    pub async fn answer_consent(&self, page: &Reply, base: &str, decision: &str) -> Reply {
        let transaction = page
            .hidden("transaction")
            .expect("no transaction on the page");
        let csrf = page.hidden("csrf").expect("no csrf token on the page");
        self.post_form(
            &format!("{base}/consent"),
            &[
                ("transaction", &transaction),
                ("csrf", &csrf),
                ("decision", decision),
            ],
        )
        .await
    }

    /// Runs the user-agent part of a sign-in from the client's authorization URL:
    /// consent (approving when asked), Entra (auto-consent), the proxy's callback. Returns
    /// the final redirect to the client.
    pub async fn sign_in(&self, authorize_url: &str, base: &str) -> Reply {
        let mut reply = self.get(authorize_url).await;
        if reply.is_consent_page() {
            reply = self.answer_consent(&reply, base, "approve").await;
            assert_eq!(reply.status, 303, "consent answer: {reply:?}");
        } else {
            assert_eq!(reply.status, 302, "authorize: {reply:?}");
        }
        let to_entra = reply.location.clone().unwrap();
        assert!(
            !to_entra.starts_with(base),
            "expected a redirect to Entra: {to_entra}"
        );
        let from_entra = self.get(&to_entra).await;
        assert_eq!(from_entra.status, 302, "Entra authorize: {from_entra:?}");
        let callback = from_entra.location.clone().unwrap();
        assert!(
            callback.starts_with(&format!("{base}/callback")),
            "{callback}"
        );
        self.get(&callback).await
    }
}

/// Signs in with `request` and exchanges the code: the token response.
pub async fn login(harness: &Harness, request: &AuthRequest) -> Value {
    let back = harness
        .browser
        .sign_in(&request.url(&harness.base), &harness.base)
        .await;
    assert_eq!(back.status, 302, "{back:?}");
    assert_eq!(back.param("state").as_deref(), Some(request.state.as_str()));
    assert_eq!(back.param("iss").as_deref(), Some(harness.base.as_str()));
    let code = back.param("code").expect("no code in the redirect");
    let (status, body) = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &request.redirect_uri),
            ("client_id", &request.client_id),
            ("code_verifier", &request.pkce.verifier),
            ("resource", &harness.resource),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}
