//! A full login through the OAuth proxy driven by rmcp's client-side OAuth support
//! (discovery, dynamic registration, PKCE, code exchange, refresh), ending in a `tools/call`
//! on an rmcp server that accepts the proxy's tokens. The user agent (consent page, Entra's
//! auto-consenting `/authorize`, the proxy's callback) is a cookie-keeping reqwest client.
#![cfg(feature = "proxy")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a failure should stop the test loudly"
)]

mod proxy_support;

use mcp_auth_testkit::entra::EntraIssuer;
use mcp_auth_testkit::tokens;
use proxy_support::Harness;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

#[tokio::test]
async fn rmcp_client_signs_in_through_the_proxy_and_calls_a_tool() {
    let harness = Harness::start().await;
    // rmcp's client starts from the MCP endpoint: a 401, RFC 9728 metadata, then RFC 8414.
    let mut oauth = OAuthState::new(harness.resource.as_str(), None)
        .await
        .unwrap();
    let redirect_uri = "http://127.0.0.1:8976/callback";
    oauth
        .start_authorization(
            AuthorizationRequest::new(redirect_uri)
                .with_client_name("rmcp e2e")
                .with_scopes(["mcp.tools"]),
        )
        .await
        .unwrap();
    let authorize_url = oauth.get_authorization_url().await.unwrap();
    assert!(authorize_url.starts_with(&format!("{}/authorize?", harness.base)));

    let back = harness.browser.sign_in(&authorize_url, &harness.base).await;
    assert_eq!(back.status, 302, "{back:?}");
    let callback = back.location.clone().unwrap();
    assert!(callback.starts_with(redirect_uri), "{callback}");
    oauth.handle_callback_url(&callback).await.unwrap();

    // What Entra saw: the proxy's own client, prefixed scopes and offline_access, the
    // proxy's PKCE, and no RFC 8707 resource.
    let seen = harness.entra.authorize_requests();
    let entra_request = seen.last().unwrap();
    assert_eq!(entra_request["client_id"], EntraIssuer::CLIENT_ID);
    let scope = &entra_request["scope"];
    assert!(
        scope.contains(&format!("api://{}/mcp.tools", EntraIssuer::CLIENT_ID)),
        "{scope}"
    );
    assert!(
        scope.contains("offline_access") && scope.contains("openid"),
        "{scope}"
    );
    assert_eq!(entra_request["code_challenge_method"], "S256");
    assert!(!entra_request.contains_key("resource"));
    assert_eq!(entra_request["redirect_uri"], harness.url("/callback"));

    let manager = oauth.into_authorization_manager().unwrap();
    let (client_id, credentials) = manager.get_credentials().await.unwrap();
    let credentials = credentials.unwrap();
    let access = serde_json::to_value(&credentials).unwrap();
    // The client holds the proxy's tokens, never Entra's.
    let claims = tokens::claims_of(access["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], harness.base);
    assert_eq!(claims["aud"], harness.resource);
    assert_eq!(claims["sub"], EntraIssuer::USER_OID);
    assert_eq!(claims["tid"], EntraIssuer::TENANT);
    assert_eq!(claims["scope"], "mcp.tools");
    assert_eq!(claims["client_id"], client_id);
    assert!(
        access["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("mcprt_")
    );

    // rmcp refreshes through the proxy: rotation gives a new refresh token.
    let before = access["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = serde_json::to_value(manager.refresh_token().await.unwrap()).unwrap();
    assert_ne!(refreshed["refresh_token"].as_str().unwrap(), before);

    let client = AuthClient::new(reqwest::Client::default(), manager);
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(harness.resource.as_str()),
    );
    let mcp = ().serve(transport).await.unwrap();
    let result = mcp
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let caller = result.structured_content.unwrap();
    assert_eq!(caller["subject"], EntraIssuer::USER_OID);
    assert_eq!(caller["tenant"], EntraIssuer::TENANT);
    assert_eq!(caller["scopes"], serde_json::json!(["mcp.tools"]));
    assert_eq!(caller["client_id"], client_id);
    mcp.cancel().await.unwrap();
}
