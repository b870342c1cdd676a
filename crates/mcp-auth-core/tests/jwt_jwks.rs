//! JWKS cache against the testkit issuer over real HTTP: discovery, rotation, coalesced
//! refetch on unknown `kid`, outages, background refresh.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use mcp_auth_core::jwks::JwksConfig;
use mcp_auth_core::{AuthError, TokenRejection};
use mcp_auth_testkit::TestIssuer;
use serde_json::json;
use support::jwt::{JwtOptions, JwtSetup, jwt_setup};

async fn setup_with(jwks: JwksConfig, discovery: bool) -> JwtSetup {
    let options = JwtOptions {
        discovery,
        jwks,
        ..JwtOptions::default()
    };
    jwt_setup(options, |builder| builder).await
}

async fn setup() -> JwtSetup {
    setup_with(JwksConfig::default().background_refresh(false), true).await
}

fn is_unknown_key(result: &Result<mcp_auth_core::Principal, AuthError>) -> bool {
    matches!(
        result,
        Err(AuthError::InvalidToken(TokenRejection::UnknownKey))
    )
}

#[tokio::test]
async fn discovery_then_verify() {
    let s = setup().await;
    let token = s.issuer.mint(json!({"sub": "alice", "scope": "mcp:tools"}));
    let principal = s.auth.verify(&token).await.unwrap();
    assert_eq!(principal.subject(), "alice");
    assert!(principal.has_scope("mcp:tools"));
    assert_eq!(s.issuer.discovery_fetches(), 1);
    assert_eq!(s.issuer.jwks_fetches(), 1);
    // Keys are cached: no more fetches for known kids.
    for _ in 0..5 {
        s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    }
    assert_eq!(s.issuer.jwks_fetches(), 1);
    assert_eq!(s.issuer.discovery_fetches(), 1);
}

#[tokio::test]
async fn discovery_issuer_mismatch_is_refused() {
    let s = setup().await;
    s.issuer
        .set_discovery_issuer(Some("https://evil.example".into()));
    let err = s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(s.issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn key_rotation() {
    let s = setup().await;
    let old_kid = s.issuer.current_kid();
    let old_token = s.issuer.mint(json!({}));
    s.auth.verify(&old_token).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);

    let new_kid = s.issuer.rotate();
    assert_ne!(new_kid, old_kid);
    let new_token = s.issuer.mint(json!({}));
    // Just after the last fetch, an unknown kid does not trigger a refetch ...
    assert!(is_unknown_key(&s.auth.verify(&new_token).await));
    assert_eq!(s.issuer.jwks_fetches(), 1);
    // ... but once the refetch interval (10 s) has passed it does, and the new kid works.
    s.clock.advance(Duration::from_secs(10));
    let p = s.auth.verify(&new_token).await.unwrap();
    assert_eq!(p.subject(), TestIssuer::SUBJECT);
    assert_eq!(s.issuer.jwks_fetches(), 2);
    // The old key is still published, so its tokens still verify.
    s.auth.verify(&old_token).await.unwrap();

    // Retired: the old kid keeps working from the cache until the keys are refreshed.
    assert!(s.issuer.retire(&old_kid));
    s.auth.verify(&old_token).await.unwrap();
    s.clock.advance(Duration::from_secs(601));
    let old_again = s
        .issuer
        .mint_with_header(json!({"kid": old_kid}), json!({}));
    assert!(is_unknown_key(&s.auth.verify(&old_again).await));
    assert_eq!(s.issuer.jwks_fetches(), 3);
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
}

#[tokio::test]
async fn unknown_kid_refetch_is_coalesced_and_rate_limited() {
    let s = setup().await;
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    s.issuer.rotate();
    s.clock.advance(Duration::from_secs(11));
    let token = s.issuer.mint(json!({}));

    let auth = Arc::new(s.auth);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let auth = Arc::clone(&auth);
        let token = token.clone();
        tasks.push(tokio::spawn(async move { auth.verify(&token).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Sixteen concurrent requests with a new kid: one shared fetch.
    assert_eq!(s.issuer.jwks_fetches(), 2);

    // A storm of unknown kids within the interval causes no fetch at all.
    s.clock.advance(Duration::from_secs(3));
    for i in 0..50 {
        let bogus = s
            .issuer
            .mint_with_header(json!({"kid": format!("bogus-{i}")}), json!({}));
        assert!(is_unknown_key(&auth.verify(&bogus).await));
    }
    assert_eq!(s.issuer.jwks_fetches(), 2);
    // After the interval, one more fetch for the next unknown kid.
    s.clock.advance(Duration::from_secs(10));
    for i in 0..5 {
        let bogus = s
            .issuer
            .mint_with_header(json!({"kid": format!("later-{i}")}), json!({}));
        assert!(is_unknown_key(&auth.verify(&bogus).await));
    }
    assert_eq!(s.issuer.jwks_fetches(), 3);
}

#[tokio::test]
async fn cache_control_sets_the_lifetime() {
    let s = setup().await;
    s.issuer
        .set_cache_control(Some("public, max-age=120".into()));
    s.cache.refresh().await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);
    s.clock.advance(Duration::from_secs(119));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 1);
    s.clock.advance(Duration::from_secs(2));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2);

    // A tiny max-age is raised to the minimum lifetime (60 s).
    s.issuer.set_cache_control(Some("max-age=1".into()));
    s.clock.advance(Duration::from_secs(200));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 3);
    s.clock.advance(Duration::from_secs(30));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 3);
}

#[tokio::test]
async fn issuer_down_keeps_cached_keys_then_fails_clearly() {
    let s = setup_with(
        JwksConfig::default()
            .background_refresh(false)
            .max_stale(Duration::from_secs(3600)),
        false,
    )
    .await;
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    s.issuer.set_available(false);

    // Past the keys' lifetime (10 min default): the refresh fails, the last good keys serve.
    s.clock.advance(Duration::from_secs(700));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), 2);
    assert!(s.cache.refresh().await.is_err());
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();

    // Past the staleness bound the keys are gone: a clear 503, not a 401.
    s.clock.advance(Duration::from_secs(3600));
    let err = s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.to_string().contains("JWKS"), "{err}");

    // The issuer comes back: after the refetch interval, keys are fetched again.
    s.issuer.set_available(true);
    s.clock.advance(Duration::from_secs(10));
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
}

#[tokio::test]
async fn issuer_down_from_the_start_is_unavailable() {
    let s = setup().await;
    s.issuer.set_available(false);
    let err = s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(err.public_body(), r#"{"error":"temporarily_unavailable"}"#);
    // Rate-limited: a second request within the interval does not hit the issuer again.
    let fetches = s.issuer.discovery_fetches();
    assert!(s.auth.verify(&s.issuer.mint(json!({}))).await.is_err());
    assert_eq!(s.issuer.discovery_fetches(), fetches);
}

#[tokio::test]
async fn retired_keys_leave_a_static_kid_unknown_after_refresh() {
    let s = setup_with(JwksConfig::default().background_refresh(false), false).await;
    let kid = s.issuer.current_kid();
    let token = s.issuer.mint(json!({}));
    s.auth.verify(&token).await.unwrap();
    s.issuer.rotate();
    s.issuer.retire(&kid);
    s.cache.refresh().await.unwrap();
    assert!(is_unknown_key(&s.auth.verify(&token).await));
    let keys = s.cache.keys().unwrap();
    assert!(!keys.contains_kid(&kid));
}

#[tokio::test]
async fn background_refresh_before_expiry() {
    let s = setup_with(
        JwksConfig::default()
            .refresh_check_interval(Duration::from_millis(20))
            .refetch_interval(Duration::from_secs(1)),
        false,
    )
    .await;
    // The refresher fetches right away (no Cache-Control: the default 10 min lifetime).
    wait_for(|| s.issuer.jwks_fetches() >= 1).await;
    let first = s.issuer.jwks_fetches();
    // At 80 % of the lifetime the refresher fetches again, before any request needs it.
    s.clock.advance(Duration::from_secs(481));
    wait_for(|| s.issuer.jwks_fetches() > first).await;
    let token = s.issuer.mint(json!({}));
    let fetches = s.issuer.jwks_fetches();
    s.auth.verify(&token).await.unwrap();
    assert_eq!(s.issuer.jwks_fetches(), fetches);
}

/// Polls `done` for up to ten seconds (an event wait, not a timing assertion).
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 10 s");
}

#[tokio::test]
async fn explicit_discovery_document_with_a_templated_issuer() {
    use mcp_auth_core::jwks::{JwksCache, JwksSource};
    let issuer = TestIssuer::start().await;
    // Entra's multi-tenant documents name a template, not a URL the document lives under.
    let template = "https://login.example/{tenantid}/v2.0";
    issuer.set_discovery_issuer(Some(template.into()));
    let cache_for = |expected: &str| {
        JwksCache::builder(JwksSource::DiscoveryDocument {
            url: issuer.discovery_url(),
            issuer: expected.into(),
        })
        .config(JwksConfig::default().background_refresh(false))
        .build()
        .unwrap()
    };
    let cache = cache_for(template);
    cache.refresh().await.unwrap();
    assert_eq!(cache.keys().unwrap().len(), 1);
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));

    // Any other issuer in the document is refused, and only the given URL is tried.
    let wrong = cache_for("https://login.example/72f988bf/v2.0");
    assert!(wrong.refresh().await.is_err());
    assert!(wrong.keys().is_none());
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (2, 1));

    // The document URL must be https or loopback http, and the issuer non-empty.
    for (url, expected) in [
        ("http://idp.example/doc", template),
        (issuer.discovery_url().as_str(), ""),
    ] {
        assert!(
            JwksCache::builder(JwksSource::DiscoveryDocument {
                url: url.into(),
                issuer: expected.into(),
            })
            .build()
            .is_err()
        );
    }
}
