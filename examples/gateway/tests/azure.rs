//! `[auth.azure]` end to end, against the testkit's Entra authority: an MCP client that
//! nobody here wrote (rmcp's client-side OAuth support: discovery from the 401, dynamic
//! registration, PKCE, code exchange) signs in through the OAuth proxy mounted on the
//! gateway and calls a tool on the HTTP upstream; the gateway also accepts Entra access
//! tokens callers obtained themselves, refuses other tenants' with 401, and never forwards
//! a client's token.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use mcp_auth_testkit::TestIssuer;
use mcp_auth_testkit::entra::{EntraIssuer, EntraUser};
use mcp_gateway::demo::DemoUpstream;
use mcp_gateway::{BuildOptions, Gateway};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

mod common;

use common::gateway::{Served, config, listen, sqlite_audit, text_of};
use common::{Scratch, deref_to};

/// The proxy's token-encryption key (32 bytes, base64url).
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";

/// Where rmcp's client says it waits for the authorization code.
const REDIRECT_URI: &str = "http://127.0.0.1:8976/callback";

/// A gateway with `[auth.azure]` (multi-tenant, one allowed tenant) and the OAuth proxy,
/// in front of the demo upstream over HTTP.
struct AzureGateway {
    served: Served,
    entra: EntraIssuer,
    upstream: DemoUpstream,
    resource: String,
    _scratch: Scratch,
}

deref_to!(AzureGateway => served: Served);

impl AzureGateway {
    async fn start() -> Self {
        let entra = EntraIssuer::start().await;
        // The user who signs in holds the app role `user` (the gateway's default role).
        entra.sign_in_as(
            EntraUser::new(EntraIssuer::USER_OID, EntraIssuer::TENANT)
                .name("Ada Lovelace")
                .roles(["user"]),
        );
        let upstream = DemoUpstream::start().await.unwrap();
        let scratch = Scratch::new("azure");
        let (listener, base) = listen("http").await;
        assert!(entra.add_redirect_uri(EntraIssuer::CLIENT_ID, format!("{base}/callback")));
        let cloud = format!(
            r#"{{ custom = {{ authority = "{a}", v1_issuer_base = "{v1}", v2_issuer_base = "{a}" }} }}"#,
            a = entra.authority(),
            v1 = entra.v1_issuer_base(),
        );
        let text = format!(
            r#"
            [server]
            public_url = "{base}"
            shutdown_timeout_secs = 10

            [auth]
            required_scope = "mcp.tools"

            [auth.azure]
            tenant = "organizations"
            allowed_tenants = ["{tenant}"]
            client_id = "{client}"
            cloud = {cloud}

            [auth.azure.proxy]
            issuer = "{base}"
            resource = "{base}/mcp"
            token_encryption_keys = ["{KEY}"]

            [auth.azure.proxy.entra]
            tenant = "organizations"
            allowed_tenants = ["{tenant}"]
            client_id = "{client}"
            client_secret = "{secret}"
            cloud = {cloud}

            [auth.azure.proxy.scopes]
            supported = ["mcp.tools"]
            default = ["mcp.tools"]

            [rbac]
            tenant_bound_arguments = [{{ tool = "tenant_data", argument = "tenant" }}]

            [[upstreams]]
            name = "demo"
            url = "{up}"

            {audit}
            "#,
            tenant = EntraIssuer::TENANT,
            client = EntraIssuer::CLIENT_ID,
            secret = EntraIssuer::CLIENT_SECRET,
            up = upstream.url(),
            audit = sqlite_audit(&scratch),
        );
        let config = config(&text, "", "azure");
        let gateway = Gateway::build(&config, BuildOptions::default())
            .await
            .unwrap();
        assert_eq!(
            gateway.metadata().authorization_servers(),
            [base.as_str()],
            "the protected resource names the proxy"
        );
        Self {
            resource: format!("{base}/mcp"),
            served: Served::start(gateway, listener, base, reqwest::Client::new()),
            entra,
            upstream,
            _scratch: scratch,
        }
    }

    /// A delegated Entra access token of the signed-in user (v2 unless changed), for the
    /// gateway's app, with scope `mcp.tools`.
    fn entra_token(
        &self,
        shape: impl FnOnce(
            mcp_auth_testkit::entra::EntraTokenBuilder<'_>,
        ) -> mcp_auth_testkit::entra::EntraTokenBuilder<'_>,
    ) -> String {
        let user = self.entra.signed_in_user();
        shape(self.entra.access_token(&user).scopes("mcp.tools")).mint()
    }

    fn upstream_saw_credentials(&self) -> u64 {
        self.upstream
            .counters()
            .authorization_headers
            .load(Ordering::Relaxed)
    }
}

/// A user agent for the sign-in: keeps cookies, never follows redirects, approves the
/// proxy's consent page.
struct Browser {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

/// A browser's answer: the status, the `Location` and the body.
struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The value of the hidden input `name` (the consent form's fields).
    fn hidden(&self, name: &str) -> Option<&str> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(&self.body[start..end])
    }
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let cookie = {
            let jar = self.cookies.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let response = request.header("cookie", cookie).send().await.unwrap();
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies
                    .lock()
                    .unwrap()
                    .insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    /// From the client's authorization URL to the redirect back to the client: the proxy's
    /// consent page (approved), Entra's authorize endpoint (which consents at once), the
    /// proxy's callback.
    async fn sign_in(&self, authorize_url: &str, base: &str) -> String {
        let consent = self.send(self.http.get(authorize_url)).await;
        assert_eq!(consent.status, 200, "the consent page: {}", consent.body);
        let form = [
            ("transaction", consent.hidden("transaction").unwrap()),
            ("csrf", consent.hidden("csrf").unwrap()),
            ("decision", "approve"),
        ];
        let approved = self
            .send(self.http.post(format!("{base}/consent")).form(&form))
            .await;
        assert_eq!(approved.status, 303, "{}", approved.body);
        let to_entra = approved.location.unwrap();
        assert!(!to_entra.starts_with(base), "{to_entra}");
        let from_entra = self.send(self.http.get(&to_entra)).await;
        let callback = from_entra.location.unwrap();
        assert!(
            callback.starts_with(&format!("{base}/callback?")),
            "{callback}"
        );
        let back = self.send(self.http.get(&callback)).await;
        assert_eq!(back.status, 302, "{}", back.body);
        back.location.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_signs_in_through_the_gateway_and_calls_a_tool() {
    let mut gw = AzureGateway::start().await;

    // The proxy's RFC 8414 metadata, served by the gateway.
    let (status, metadata) = gw
        .get(None, "/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["issuer"], gw.base.as_str());
    for (key, path) in [
        ("registration_endpoint", "/register"),
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(metadata[key], format!("{}{path}", gw.base), "{metadata}");
    }

    // rmcp starts from the MCP endpoint: the 401 names the protected-resource metadata,
    // which names the proxy; it registers, and sends the user to the proxy.
    let mut oauth = OAuthState::new(gw.resource.as_str(), None).await.unwrap();
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT_URI)
                .with_client_name("rmcp through the gateway")
                .with_scopes(["mcp.tools"]),
        )
        .await
        .unwrap();
    let authorize_url = oauth.get_authorization_url().await.unwrap();
    assert!(
        authorize_url.starts_with(&format!("{}/authorize?", gw.base)),
        "{authorize_url}"
    );
    let back = Browser::new().sign_in(&authorize_url, &gw.base).await;
    assert!(back.starts_with(REDIRECT_URI), "{back}");
    oauth.handle_callback_url(&back).await.unwrap();
    let manager = oauth.into_authorization_manager().unwrap();
    let (client_id, credentials) = manager.get_credentials().await.unwrap();
    let access = serde_json::to_value(credentials.unwrap()).unwrap();
    let access = access["access_token"].as_str().unwrap().to_owned();
    // The client holds the proxy's token for the gateway's MCP endpoint, never Entra's.
    let claims = mcp_auth_testkit::tokens::claims_of(&access);
    assert_eq!(claims["iss"], gw.base.as_str());
    assert_eq!(claims["aud"], gw.resource.as_str());
    assert_eq!(claims["sub"], EntraIssuer::USER_OID);
    assert_eq!(claims["tid"], EntraIssuer::TENANT);

    // The signed-in client calls a tool through the gateway on the HTTP upstream.
    let client = AuthClient::new(reqwest::Client::default(), manager);
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(gw.resource.as_str()),
    );
    let mcp = ().serve(transport).await.unwrap();
    let mut params = CallToolRequestParams::new("echo");
    params.arguments = json!({"text": "signed in through Entra"})
        .as_object()
        .cloned();
    let result = serde_json::to_value(mcp.call_tool(params).await.unwrap()).unwrap();
    assert_eq!(result["content"][0]["text"], "signed in through Entra");
    mcp.cancel().await.unwrap();

    // The principal is the Entra user: its tenant binds tool arguments.
    let (status, body) = gw
        .call_tool(
            &access,
            "tenant_data",
            json!({"tenant": EntraIssuer::TENANT}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = gw
        .call_tool(
            &access,
            "tenant_data",
            json!({"tenant": EntraIssuer::OTHER_TENANT}),
        )
        .await;
    assert_eq!(status, 403);

    // Revoked at the proxy (RFC 7009): refused by the gateway from the next request.
    let revoked = gw
        .http
        .post(format!("{}/revoke", gw.base))
        .form(&[
            ("token", access.as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let (status, _) = gw.call_tool(&access, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 401);

    // The client's token never reached the upstream.
    assert_eq!(gw.upstream_saw_credentials(), 0);
    assert_eq!(gw.upstream.counters().tool_calls.load(Ordering::Relaxed), 2);
    assert!(gw.shutdown().await.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_entra_tokens_are_accepted_and_other_tenants_refused() {
    let mut gw = AzureGateway::start().await;

    // The protected-resource metadata names the proxy as the authorization server.
    let (status, resource) = gw.get(None, "/.well-known/oauth-protected-resource").await;
    assert_eq!(status, 200);
    assert_eq!(resource["resource"], gw.resource.as_str());
    assert_eq!(resource["authorization_servers"], json!([gw.base.as_str()]));

    // v2 and v1 Entra tokens of the allowed tenant, obtained without the proxy.
    for token in [gw.entra_token(|t| t), gw.entra_token(|t| t.v1())] {
        let (status, body) = gw
            .call_tool(&token, "echo", json!({"text": "direct"}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(text_of(&body), "direct");
    }
    let v2 = gw.entra_token(|t| t);
    let (status, _) = gw
        .call_tool(&v2, "tenant_data", json!({"tenant": EntraIssuer::TENANT}))
        .await;
    assert_eq!(status, 200, "oid and tid map to the principal");

    // Refused with 401 and the challenge: a tenant not on the allowlist, an issuer of
    // another tenant than the token's own, a token of an issuer that is neither Entra nor
    // the proxy, a token without the required scope's audience.
    let stranger = TestIssuer::start().await;
    let refused = [
        gw.entra_token(|t| t.tenant(EntraIssuer::OTHER_TENANT)),
        gw.entra_token(|t| {
            t.tenant(EntraIssuer::OTHER_TENANT)
                .issuer(gw.entra.v2_issuer(EntraIssuer::TENANT))
        }),
        gw.entra_token(|t| t.audience("api://someone-else")),
        stranger.mint(json!({"sub": "x", "tid": EntraIssuer::TENANT, "scope": "mcp.tools"})),
    ];
    for token in refused {
        let response = gw
            .rpc_response(
                &token,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "no"}}),
            )
            .await;
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("resource_metadata=") && challenge.contains("invalid_token"),
            "{challenge}"
        );
    }
    // Without `mcp.tools` the token authenticates but the call is forbidden.
    let unscoped = gw.entra_token(|t| t.scopes("access_as_user"));
    let (status, _) = gw.call_tool(&unscoped, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 403);

    // Readiness covers Entra's keys; no client token ever reached the upstream.
    let (status, ready) = gw.get(None, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["identity_provider_keys"], true);
    assert_eq!(gw.upstream_saw_credentials(), 0);
    assert_eq!(gw.upstream.counters().tool_calls.load(Ordering::Relaxed), 3);
    assert!(gw.shutdown().await.drained);
}
