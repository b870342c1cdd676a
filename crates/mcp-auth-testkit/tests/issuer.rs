//! The test issuer over real HTTP: discovery, JWKS, rotation, retirement, outages, minting.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions should fail loudly too"
)]

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use std::sync::Arc;
use std::time::Duration;

use mcp_auth_testkit::{FakeClock, TestIssuer, TestIssuerConfig, TestKey, tokens};
use serde_json::{Value, json};

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

async fn fetch_jwks(issuer: &TestIssuer) -> JwkSet {
    let response = get(&issuer.jwks_url()).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn verify(issuer: &TestIssuer, jwks: &JwkSet, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let kid = decode_header(token)?.kid.unwrap_or_default();
    let jwk = jwks
        .find(&kid)
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let mut validation = Validation::new(issuer.alg());
    validation.set_audience(&[TestIssuer::AUDIENCE]);
    validation.set_issuer(&[issuer.issuer_url()]);
    Ok(decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
}

#[tokio::test]
async fn discovery_documents_are_served() {
    let issuer = TestIssuer::start().await;
    assert!(issuer.issuer_url().starts_with("http://127.0.0.1:"));
    for url in [issuer.discovery_url(), issuer.oauth_metadata_url()] {
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["issuer"], issuer.issuer_url());
        assert_eq!(doc["jwks_uri"], issuer.jwks_url());
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
        assert!(doc["authorization_endpoint"].is_string());
        assert!(doc["token_endpoint"].is_string());
        assert_eq!(doc["response_types_supported"][0], "code");
    }
    assert_eq!(issuer.discovery_fetches(), 2);
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn minted_tokens_verify_against_the_served_jwks() {
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::PS256,
    ] {
        let issuer = TestIssuer::start_with(TestIssuerConfig::with_alg(alg)).await;
        let jwks = fetch_jwks(&issuer).await;
        assert_eq!(jwks.keys.len(), 1);
        assert!(jwks.find(&issuer.current_kid()).is_some());
        let token = issuer.mint(json!({"sub": "alice", "roles": ["admin"]}));
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, alg);
        assert_eq!(header.kid, Some(issuer.current_kid()));
        let claims = verify(&issuer, &jwks, &token).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["roles"][0], "admin");
        assert_eq!(claims["aud"], TestIssuer::AUDIENCE);
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);
    }
}

#[tokio::test]
async fn null_removes_claims_and_jti_is_unique() {
    let issuer = TestIssuer::start().await;
    let a = tokens::claims_of(&issuer.mint(json!({"exp": null, "aud": null})));
    assert!(a.get("exp").is_none());
    assert!(a.get("aud").is_none());
    assert_eq!(a["sub"], TestIssuer::SUBJECT);
    let b = tokens::claims_of(&issuer.mint(json!({})));
    assert_ne!(a["jti"], b["jti"]);
}

#[tokio::test]
async fn rotation_publishes_new_key_and_retire_removes_old() {
    let issuer = TestIssuer::start().await;
    let old_kid = issuer.current_kid();
    let old_token = issuer.mint(json!({}));

    let new_kid = issuer.rotate();
    assert_ne!(old_kid, new_kid);
    assert_eq!(issuer.current_kid(), new_kid);
    assert_ne!(
        issuer.key(&old_kid).unwrap().public_pem(),
        issuer.current_key().public_pem()
    );
    let jwks = fetch_jwks(&issuer).await;
    assert_eq!(jwks.keys.len(), 2);
    let new_token = issuer.mint(json!({}));
    assert_eq!(
        decode_header(&new_token).unwrap().kid,
        Some(new_kid.clone())
    );
    verify(&issuer, &jwks, &old_token).unwrap();
    verify(&issuer, &jwks, &new_token).unwrap();

    // An explicit old kid mints with the old key.
    let old_again = issuer.mint_with_header(json!({"kid": old_kid}), json!({}));
    verify(&issuer, &jwks, &old_again).unwrap();

    assert!(issuer.retire(&old_kid));
    assert!(!issuer.retire(&old_kid));
    assert_eq!(issuer.published_kids(), vec![new_kid.clone()]);
    let jwks = fetch_jwks(&issuer).await;
    assert_eq!(jwks.keys.len(), 1);
    assert!(jwks.find(&old_kid).is_none());
    assert!(verify(&issuer, &jwks, &old_token).is_err());
    verify(&issuer, &jwks, &new_token).unwrap();
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn rotation_cycles_through_the_pool_with_fresh_kids() {
    let issuer = TestIssuer::start_with(TestIssuerConfig::with_alg(Algorithm::EdDSA)).await;
    let mut kids = vec![issuer.current_kid()];
    for _ in 0..5 {
        kids.push(issuer.rotate());
    }
    let mut unique = kids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), kids.len());
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), kids.len());
}

#[tokio::test]
async fn unavailable_issuer_answers_503_and_counts_fetches() {
    let issuer = TestIssuer::start().await;
    issuer.set_available(false);
    assert_eq!(get(&issuer.jwks_url()).await.status(), 503);
    assert_eq!(get(&issuer.discovery_url()).await.status(), 503);
    assert_eq!(get(&issuer.oauth_metadata_url()).await.status(), 503);
    issuer.set_available(true);
    assert_eq!(get(&issuer.jwks_url()).await.status(), 200);
    assert_eq!(issuer.jwks_fetches(), 2);
    assert_eq!(issuer.discovery_fetches(), 2);
}

#[tokio::test]
async fn cache_control_header_is_configurable() {
    let issuer = TestIssuer::start_with(TestIssuerConfig {
        cache_control: Some("max-age=300".into()),
        ..TestIssuerConfig::default()
    })
    .await;
    let response = get(&issuer.jwks_url()).await;
    assert_eq!(response.headers()["cache-control"], "max-age=300");
    issuer.set_cache_control(None);
    let response = get(&issuer.jwks_url()).await;
    assert!(response.headers().get("cache-control").is_none());
    issuer.set_cache_control(Some("no-store".into()));
    let response = get(&issuer.jwks_url()).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn discovery_issuer_can_lie() {
    let issuer = TestIssuer::start().await;
    issuer.set_discovery_issuer(Some("https://evil.example".into()));
    let doc: Value = get(&issuer.discovery_url()).await.json().await.unwrap();
    assert_eq!(doc["issuer"], "https://evil.example");
}

#[tokio::test]
async fn custom_headers_and_bad_tokens() {
    let issuer = TestIssuer::start().await;
    let jwks = fetch_jwks(&issuer).await;

    let crit = issuer.mint_with_header(
        json!({"crit": ["exp"], "exp": 1, "typ": "at+jwt"}),
        json!({}),
    );
    let header = tokens::header_of(&crit);
    assert_eq!(header["crit"][0], "exp");
    assert_eq!(header["typ"], "at+jwt");

    let no_typ = issuer.mint_with_header(json!({"typ": null}), json!({}));
    assert!(tokens::header_of(&no_typ).get("typ").is_none());
    verify(&issuer, &jwks, &no_typ).unwrap();

    let unknown_kid = issuer.mint_with_header(json!({"kid": "nope"}), json!({}));
    assert!(verify(&issuer, &jwks, &unknown_kid).is_err());

    let foreign = tokens::sign_with(
        &TestKey::rsa(4),
        json!({"kid": issuer.current_kid()}),
        issuer.claims(json!({})),
    );
    assert!(verify(&issuer, &jwks, &foreign).is_err());

    let confused = tokens::hs256_with_secret(
        json!({"kid": issuer.current_kid()}),
        issuer.claims(json!({})),
        issuer.current_key().public_pem().as_bytes(),
    );
    assert!(verify(&issuer, &jwks, &confused).is_err());

    let tampered = tokens::tamper_payload(&issuer.mint(json!({})), json!({"sub": "root"}));
    assert!(verify(&issuer, &jwks, &tampered).is_err());

    let expired = issuer.mint(json!({"exp": 1_000_000_000u64, "iat": 999_999_000u64}));
    assert!(verify(&issuer, &jwks, &expired).is_err());

    let wrong_iss = issuer.mint(json!({"iss": "https://other.example"}));
    assert!(verify(&issuer, &jwks, &wrong_iss).is_err());
}

#[tokio::test]
async fn server_stops_on_drop() {
    let issuer = TestIssuer::start().await;
    let url = issuer.jwks_url();
    assert_eq!(get(&url).await.status(), 200);
    drop(issuer);
    let client = reqwest::Client::builder().build().unwrap();
    let mut refused = false;
    // The aborted task releases the listener at its next poll; allow a few yields.
    for _ in 0..50 {
        if client.get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
}

#[tokio::test]
async fn minted_times_follow_the_configured_clock() {
    let clock = FakeClock::new();
    let issuer = TestIssuer::start_with(TestIssuerConfig {
        clock: Arc::new(clock.clone()),
        ttl_secs: 60,
        ..TestIssuerConfig::default()
    })
    .await;
    let claims = tokens::claims_of(&issuer.mint(json!({})));
    assert_eq!(claims["iat"], FakeClock::DEFAULT_START_UNIX);
    assert_eq!(claims["exp"], FakeClock::DEFAULT_START_UNIX + 60);
    clock.advance(Duration::from_secs(100));
    let claims = tokens::claims_of(&issuer.mint(json!({})));
    assert_eq!(claims["iat"], FakeClock::DEFAULT_START_UNIX + 100);
}

#[tokio::test]
async fn es384_issuer_and_header_alg_override() {
    let issuer = TestIssuer::start_with(TestIssuerConfig::with_alg(Algorithm::ES384)).await;
    let jwks = fetch_jwks(&issuer).await;
    verify(&issuer, &jwks, &issuer.mint(json!({}))).unwrap();
    // An alg the key cannot produce stays in the header; the token then fails to verify.
    let lying = issuer.mint_with_header(json!({"alg": "ES256"}), json!({}));
    assert_eq!(tokens::header_of(&lying)["alg"], "ES256");
    assert!(verify(&issuer, &jwks, &lying).is_err());
}
