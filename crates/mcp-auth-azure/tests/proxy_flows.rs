//! The OAuth proxy over real HTTP against the testkit's Entra issuer: metadata, refresh
//! rotation and reuse detection, the grace window, PKCE, redirect URIs, unknown clients,
//! consent and its CSRF protection, code replay, revocation, confidential clients, and the
//! Entra side after sign-in (re-checks, background refresh, on-behalf-of).
#![cfg(feature = "proxy")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

mod proxy_support;

use std::sync::Arc;
use std::time::Duration;

use mcp_auth_core::refresh::RefreshConfig;
use mcp_auth_testkit::FakeClock;
use mcp_auth_testkit::entra::{Consent, EntraApp, EntraIssuer, EntraIssuerConfig};
use mcp_auth_testkit::tokens;
use proxy_support::{AuthRequest, Harness, Options, login};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:7777/cb";

async fn registered(harness: &Harness) -> AuthRequest {
    let client_id = harness.register(REDIRECT).await;
    AuthRequest::new(&client_id, REDIRECT, &harness.resource)
}

async fn refresh(harness: &Harness, client_id: &str, token: &str) -> (u16, Value) {
    harness
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ])
        .await
}

fn text(body: &Value, name: &str) -> String {
    body[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn metadata_jwks_and_resource_metadata_are_served() {
    let harness = Harness::start().await;
    let metadata: Value = reqwest::get(harness.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], harness.base);
    assert_eq!(
        metadata["authorization_endpoint"],
        harness.url("/authorize")
    );
    assert_eq!(metadata["token_endpoint"], harness.url("/token"));
    assert_eq!(metadata["registration_endpoint"], harness.url("/register"));
    assert_eq!(metadata["revocation_endpoint"], harness.url("/revoke"));
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp.tools", "mcp.resources"])
    );
    assert_eq!(metadata, harness.proxy.metadata());

    let jwks: Value = reqwest::get(harness.url("/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], harness.proxy.token_issuer().kid());

    let prm: Value = reqwest::get(harness.url("/.well-known/oauth-protected-resource/mcp"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([harness.base]));

    let response = reqwest::Client::new()
        .post(&harness.resource)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let harness = Harness::start_with(
        Options::default().configure(|c| c.lifetimes.refresh_reuse_grace_secs = 0),
    )
    .await;
    let request = registered(&harness).await;
    let first = login(&harness, &request).await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    assert_eq!(first["scope"], "mcp.tools");
    let rt1 = text(&first, "refresh_token");

    let (status, second) = refresh(&harness, &request.client_id, &rt1).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = text(&second, "refresh_token");
    assert_ne!(rt1, rt2);
    assert_ne!(text(&first, "access_token"), text(&second, "access_token"));
    let (status, third) = refresh(&harness, &request.client_id, &rt2).await;
    assert_eq!(status, 200, "{third}");
    let rt3 = text(&third, "refresh_token");

    // A stolen, already used token comes back: the whole family is revoked.
    let (status, body) = refresh(&harness, &request.client_id, &rt1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&harness, &request.client_id, &rt3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Another login is untouched.
    let other = login(
        &harness,
        &AuthRequest::new(&request.client_id, REDIRECT, &harness.resource),
    )
    .await;
    let (status, _) = refresh(&harness, &request.client_id, &text(&other, "refresh_token")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn previous_refresh_token_is_accepted_inside_the_grace_window_only() {
    let clock = Arc::new(FakeClock::at_system_now());
    let harness = Harness::start_with(
        Options::default()
            .clock(clock.clone())
            .configure(|c| c.lifetimes.refresh_reuse_grace_secs = 20),
    )
    .await;
    let request = registered(&harness).await;
    let rt1 = text(&login(&harness, &request).await, "refresh_token");
    let (status, lost) = refresh(&harness, &request.client_id, &rt1).await;
    assert_eq!(status, 200);
    // The response was lost; the client retries with the token it has, 10 s later.
    clock.advance(Duration::from_secs(10));
    let (status, retried) = refresh(&harness, &request.client_id, &rt1).await;
    assert_eq!(status, 200, "{retried}");
    // The token of the lost response is superseded: using it is a reuse.
    let (status, _) = refresh(&harness, &request.client_id, &text(&lost, "refresh_token")).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(
        &harness,
        &request.client_id,
        &text(&retried, "refresh_token"),
    )
    .await;
    assert_eq!(status, 400, "the family was revoked");

    // Past the window the previous token is a reuse.
    let rt1 = text(&login(&harness, &request).await, "refresh_token");
    let (_, next) = refresh(&harness, &request.client_id, &rt1).await;
    clock.advance(Duration::from_secs(21));
    let (status, _) = refresh(&harness, &request.client_id, &rt1).await;
    assert_eq!(status, 400);
    let (status, _) = refresh(&harness, &request.client_id, &text(&next, "refresh_token")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn token_lifetimes_come_from_the_configuration() {
    let clock = Arc::new(FakeClock::at_system_now());
    let harness = Harness::start_with(Options::default().clock(clock.clone()).configure(|c| {
        c.lifetimes.access_token_secs = 120;
        c.lifetimes.refresh_token_secs = 600;
    }))
    .await;
    let request = registered(&harness).await;
    let tokens_ = login(&harness, &request).await;
    assert_eq!(tokens_["expires_in"], 120);
    let claims = tokens::claims_of(tokens_["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    clock.advance(Duration::from_secs(601));
    let (status, body) = refresh(
        &harness,
        &request.client_id,
        &text(&tokens_, "refresh_token"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn pkce_is_required_and_verified() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;

    // No challenge, or a plain one: an error sent back to the client.
    for (drop_challenge, method) in [(true, "S256"), (false, "plain")] {
        let mut url = url::Url::parse(&request.url(&harness.base)).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !(drop_challenge && k == "code_challenge"))
            .map(|(k, v)| {
                let v = if k == "code_challenge_method" {
                    method.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let reply = harness.browser.get(url.as_str()).await;
        assert_eq!(reply.status, 302, "{reply:?}");
        assert!(reply.location.as_deref().unwrap().starts_with(REDIRECT));
        assert_eq!(reply.param("error").as_deref(), Some("invalid_request"));
        assert_eq!(reply.param("state"), Some(request.state.clone()));
    }

    // A wrong verifier fails, and the code is used up by the attempt.
    let back = harness
        .browser
        .sign_in(&request.url(&harness.base), &harness.base)
        .await;
    let code = back.param("code").unwrap();
    let exchange = |verifier: String| {
        let code = code.clone();
        let client_id = request.client_id.clone();
        let harness = &harness;
        async move {
            harness
                .token(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("client_id", &client_id),
                    ("code_verifier", &verifier),
                ])
                .await
        }
    };
    let (status, body) = exchange(proxy_support::Pkce::new().verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "PKCE verification failed");
    let (status, body) = exchange(request.pkce.verifier.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A missing verifier is a malformed request.
    let request = AuthRequest::new(&request.client_id, REDIRECT, &harness.resource);
    let back = harness
        .browser
        .sign_in(&request.url(&harness.base), &harness.base)
        .await;
    let (status, body) = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back.param("code").unwrap()),
            ("redirect_uri", REDIRECT),
            ("client_id", &request.client_id),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn redirect_uris_must_match_the_registration() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    for bad in [
        "https://evil.example/cb",
        "http://127.0.0.1:7777/other",
        "http://localhost:7777/cb",
    ] {
        let mut wrong = request.clone();
        wrong.redirect_uri = bad.into();
        let reply = harness.browser.get(&wrong.url(&harness.base)).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(
            reply.location.is_none(),
            "never redirect to an unregistered URI"
        );
        assert!(reply.body.contains("redirect URI is not registered"));
    }
    // A loopback redirect URI may use any port (RFC 8252).
    let mut other_port = request.clone();
    other_port.redirect_uri = "http://127.0.0.1:50123/cb".into();
    let back = harness
        .browser
        .sign_in(&other_port.url(&harness.base), &harness.base)
        .await;
    assert!(
        back.location
            .as_deref()
            .unwrap()
            .starts_with("http://127.0.0.1:50123/cb?")
    );
    // The token request must name the redirect URI of the authorization request.
    let (status, body) = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back.param("code").unwrap()),
            ("redirect_uri", REDIRECT),
            ("client_id", &request.client_id),
            ("code_verifier", &request.pkce.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn unknown_clients_are_refused_everywhere() {
    let harness = Harness::start().await;
    let request = AuthRequest::new("mcp_not-registered", REDIRECT, &harness.resource);
    let reply = harness.browser.get(&request.url(&harness.base)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.location.is_none());
    assert!(reply.body.contains("unknown client_id"));

    let (status, body) = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "whatever"),
            ("client_id", "mcp_not-registered"),
            ("code_verifier", &request.pkce.verifier),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let response = harness
        .browser
        .http
        .post(harness.url("/revoke"))
        .form(&[("token", "x"), ("client_id", "mcp_not-registered")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn consent_is_protected_against_csrf() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    let base = harness.base.clone();

    // The form posted without the browser's CSRF cookie (a cross-site post carries none).
    let page = harness.browser.get(&request.url(&base)).await;
    assert!(page.is_consent_page(), "{page:?}");
    assert!(page.body.contains("test client"));
    harness.browser.forget_all_cookies();
    let reply = harness
        .browser
        .answer_consent(&page, &base, "approve")
        .await;
    assert_eq!(reply.status, 403);
    assert!(reply.location.is_none());

    // The victim's cookie with a token from a page the attacker loaded.
    let attacker = proxy_support::Browser::new();
    let attacker_page = attacker.get(&request.url(&base)).await;
    let _victim_page = harness.browser.get(&request.url(&base)).await;
    let forged = harness
        .browser
        .answer_consent(&attacker_page, &base, "approve")
        .await;
    assert_eq!(forged.status, 403);

    // A wrong token with the right transaction.
    let page = harness.browser.get(&request.url(&base)).await;
    let transaction = page.hidden("transaction").unwrap();
    let reply = harness
        .browser
        .post_form(
            &format!("{base}/consent"),
            &[
                ("transaction", &transaction),
                ("csrf", "guess"),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403);
    // The transaction was used up by the failed attempt.
    let reply = harness
        .browser
        .answer_consent(&page, &base, "approve")
        .await;
    assert_eq!(reply.status, 400);

    // The genuine flow works, and the page cannot be framed.
    let page = harness.browser.get(&request.url(&base)).await;
    let reply = harness
        .browser
        .answer_consent(&page, &base, "approve")
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let headers = harness
        .browser
        .http
        .get(request.url(&base))
        .send()
        .await
        .unwrap();
    assert_eq!(headers.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn consent_is_remembered_per_client_and_browser_and_can_be_denied() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    let base = harness.base.clone();
    login(&harness, &request).await;

    // Same browser, same client: straight to Entra.
    let again = AuthRequest::new(&request.client_id, REDIRECT, &harness.resource);
    let reply = harness.browser.get(&again.url(&base)).await;
    assert_eq!(reply.status, 302);
    assert!(
        reply
            .location
            .unwrap()
            .starts_with(&harness.entra.authority())
    );

    // Another client in the same browser, or the same client in another browser: asked.
    let other = registered(&harness).await;
    assert!(
        harness
            .browser
            .get(&other.url(&base))
            .await
            .is_consent_page()
    );
    let fresh = proxy_support::Browser::new();
    let page = fresh.get(&again.url(&base)).await;
    assert!(page.is_consent_page());

    // Denying sends access_denied back to the client.
    let reply = fresh.answer_consent(&page, &base, "deny").await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.param("error").as_deref(), Some("access_denied"));
    assert_eq!(reply.param("state"), Some(again.state.clone()));
}

#[tokio::test]
async fn a_replayed_code_ends_its_login() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    let back = harness
        .browser
        .sign_in(&request.url(&harness.base), &harness.base)
        .await;
    let code = back.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", request.client_id.as_str()),
        ("code_verifier", request.pkce.verifier.as_str()),
    ];
    let (status, tokens_) = harness.token(&form).await;
    assert_eq!(status, 200);
    let (status, body) = harness.token(&form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The refresh token from the first exchange no longer works.
    let (status, _) = refresh(
        &harness,
        &request.client_id,
        &text(&tokens_, "refresh_token"),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    let tokens_ = login(&harness, &request).await;
    let access = text(&tokens_, "access_token");
    let authenticator = harness.proxy.authenticator();
    authenticator.verify(&access).await.unwrap();

    let revoke = |token: String| {
        let client_id = request.client_id.clone();
        let harness = &harness;
        async move {
            harness
                .browser
                .http
                .post(harness.url("/revoke"))
                .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(revoke(access.clone()).await, 200);
    assert_eq!(
        authenticator.verify(&access).await.unwrap_err().status(),
        401
    );
    let response = reqwest::Client::new()
        .post(&harness.resource)
        .bearer_auth(&access)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // The Entra side of the login went with it: its refresh token is refused now.
    let (status, _) = refresh(
        &harness,
        &request.client_id,
        &text(&tokens_, "refresh_token"),
    )
    .await;
    assert_eq!(status, 400);

    // A refresh token revokes its family; unknown tokens are answered 200 too.
    let tokens_ = login(&harness, &request).await;
    assert_eq!(revoke(text(&tokens_, "refresh_token")).await, 200);
    let (status, _) = refresh(
        &harness,
        &request.client_id,
        &text(&tokens_, "refresh_token"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(revoke("not-a-token".into()).await, 200);
}

#[tokio::test]
async fn scope_and_resource_are_checked() {
    let harness = Harness::start().await;
    let mut request = registered(&harness).await;
    request.scope = Some("mcp.admin".into());
    let reply = harness.browser.get(&request.url(&harness.base)).await;
    assert_eq!(reply.param("error").as_deref(), Some("invalid_scope"));
    request.scope = None;
    request.resource = Some("https://other.example/mcp".into());
    let reply = harness.browser.get(&request.url(&harness.base)).await;
    assert_eq!(reply.param("error").as_deref(), Some("invalid_target"));

    // No scope asked for: the default scope.
    request.resource = None;
    let tokens_ = login(&harness, &request).await;
    assert_eq!(tokens_["scope"], "mcp.tools");
}

#[tokio::test]
async fn confidential_clients_must_authenticate() {
    let harness = Harness::start().await;
    let response = harness
        .browser
        .http
        .post(harness.url("/register"))
        .json(&json!({"client_name": "server app", "redirect_uris": ["https://app.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registration: Value = response.json().await.unwrap();
    assert_eq!(
        registration["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    let client_id = text(&registration, "client_id");
    let secret = text(&registration, "client_secret");

    let request = AuthRequest::new(&client_id, "https://app.example/cb", &harness.resource);
    let back = harness
        .browser
        .sign_in(&request.url(&harness.base), &harness.base)
        .await;
    let code = back.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", request.pkce.verifier.as_str()),
    ];
    // Without the secret: refused (and the code is not consumed by a failed authentication).
    let response = harness
        .browser
        .http
        .post(harness.url("/token"))
        .form(&[form.as_slice(), &[("client_id", client_id.as_str())]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let response = harness
        .browser
        .http
        .post(harness.url("/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_registrations_get_rfc7591_errors() {
    let harness = Harness::start().await;
    for (body, error) in [
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let response = harness
            .browser
            .http
            .post(harness.url("/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], error, "{body}");
    }
}

#[tokio::test]
async fn a_login_ended_in_entra_cannot_be_refreshed() {
    // Entra tokens that expire at once, so every proxy refresh re-checks with Entra.
    let harness = Harness::start_with(Options {
        entra: EntraIssuerConfig {
            token_ttl_secs: 30,
            ..EntraIssuerConfig::default()
        },
        ..Options::default()
    })
    .await;
    let request = registered(&harness).await;
    let tokens_ = login(&harness, &request).await;
    let (status, next) = refresh(
        &harness,
        &request.client_id,
        &text(&tokens_, "refresh_token"),
    )
    .await;
    assert_eq!(status, 200);
    let refreshes = harness
        .entra
        .token_requests()
        .iter()
        .filter(|r| r["grant_type"] == "refresh_token")
        .count();
    assert_eq!(
        refreshes, 1,
        "the proxy refresh re-checked the login with Entra"
    );

    assert!(harness.entra.revoke_refresh_tokens(EntraIssuer::USER_OID) > 0);
    let (status, body) = refresh(&harness, &request.client_id, &text(&next, "refresh_token")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn entra_tokens_are_refreshed_in_the_background_and_exchanged_on_behalf_of() {
    let harness = Harness::start_with(
        Options {
            entra: EntraIssuerConfig {
                token_ttl_secs: 8,
                ..EntraIssuerConfig::default()
            },
            ..Options::default()
        }
        .builder(|b| {
            b.upstream_refresh(
                RefreshConfig::new()
                    .margin(Duration::from_secs(4))
                    .emergency_window(Duration::from_secs(2))
                    .backoff([Duration::from_secs(1)])
                    .jitter(0.0),
            )
        }),
    )
    .await;
    harness.entra.register_app(
        EntraApp::new("55555555-5555-4555-8555-555555555555")
            .app_id_uri("api://downstream")
            .scopes(["read"]),
    );
    let request = registered(&harness).await;
    let tokens_ = login(&harness, &request).await;
    let principal = harness
        .proxy
        .authenticator()
        .verify(tokens_["access_token"].as_str().unwrap())
        .await
        .unwrap();

    let first = harness.proxy.entra_token(&principal).await.unwrap();
    let claims = tokens::claims_of(first.expose());
    assert_eq!(claims["aud"], EntraIssuer::CLIENT_ID);
    assert_eq!(claims["oid"], EntraIssuer::USER_OID);

    // The refresher renews the token before it expires (bounded wait, no timing asserted).
    let mut renewed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let current = harness.proxy.entra_token(&principal).await.unwrap();
        if current != first {
            renewed = Some(current);
            break;
        }
    }
    let renewed = renewed.expect("the Entra token was not refreshed in the background");
    assert_eq!(
        tokens::claims_of(renewed.expose())["oid"],
        EntraIssuer::USER_OID
    );

    let obo = harness
        .proxy
        .on_behalf_of(&principal, &["api://downstream/read".to_owned()])
        .await
        .unwrap();
    let claims = tokens::claims_of(obo.token.expose());
    assert_eq!(claims["aud"], "55555555-5555-4555-8555-555555555555");
    assert_eq!(claims["oid"], EntraIssuer::USER_OID);
    // Cached while valid.
    let again = harness
        .proxy
        .on_behalf_of(&principal, &["api://downstream/read".to_owned()])
        .await
        .unwrap();
    assert_eq!(again.token, obo.token);

    // A principal that did not come from the proxy has no Entra login.
    let stranger = mcp_auth_core::Principal::builder("x", mcp_auth_core::AuthMethod::Local).build();
    assert!(harness.proxy.entra_token(&stranger).await.is_err());
}

#[tokio::test]
async fn multi_tenant_sign_in_needs_an_allowed_tenant() {
    for (allowed, accepted) in [
        (EntraIssuer::TENANT, true),
        (EntraIssuer::OTHER_TENANT, false),
    ] {
        let harness = Harness::start_with(Options::default().configure(move |c| {
            c.entra.tenant = "organizations".into();
            c.entra.allowed_tenants = vec![allowed.into()];
        }))
        .await;
        let request = registered(&harness).await;
        let back = harness
            .browser
            .sign_in(&request.url(&harness.base), &harness.base)
            .await;
        assert_eq!(back.status, 302);
        if accepted {
            assert!(back.param("code").is_some(), "{back:?}");
        } else {
            // The user's tenant is not on the allowlist: no code, access denied.
            assert_eq!(
                back.param("error").as_deref(),
                Some("access_denied"),
                "{back:?}"
            );
            assert!(back.param("code").is_none());
        }
    }
}

#[tokio::test]
async fn consent_is_remembered_only_after_a_successful_sign_in() {
    let harness = Harness::start().await;
    let request = registered(&harness).await;
    let base = harness.base.clone();
    // The user declines at Entra after consenting at the proxy.
    harness.entra.set_consent(Consent::Deny);
    let back = harness.browser.sign_in(&request.url(&base), &base).await;
    assert_eq!(back.param("error").as_deref(), Some("access_denied"));
    assert_eq!(back.param("state"), Some(request.state.clone()));
    // Nothing was remembered: the consent page comes again.
    harness.entra.set_consent(Consent::Grant);
    let again = AuthRequest::new(&request.client_id, REDIRECT, &harness.resource);
    assert!(
        harness
            .browser
            .get(&again.url(&base))
            .await
            .is_consent_page()
    );
}
