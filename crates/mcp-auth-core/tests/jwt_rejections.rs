//! Every bad-token class is rejected with 401 `invalid_token` (and no panic), against the
//! testkit issuer's JWKS over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

mod support;

use std::time::Duration;

use mcp_auth_core::jwt::{Algorithm, JwtAuthenticator};
use mcp_auth_core::token_cache::DEFAULT_TOKEN_CACHE_CAPACITY;
use mcp_auth_core::{AuthError, Authenticator, Credential, Secret, TokenRejection};
use mcp_auth_testkit::{TestIssuer, TestKey, tokens};
use serde_json::{Value, json};
use support::jwt::{JwtOptions, JwtSetup, jwt_setup};

async fn setup(algorithms: &[Algorithm]) -> JwtSetup {
    let options = JwtOptions {
        token_cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
        ..JwtOptions::default()
    };
    let s = jwt_setup(options, |builder| {
        builder
            .algorithms(algorithms.iter().copied())
            .leeway(Duration::from_secs(60))
    })
    .await;
    // Fetch the keys once so that every case below runs against known keys.
    s.auth.verify(&s.issuer.mint(json!({}))).await.unwrap();
    s
}

const ASYMMETRIC: [Algorithm; 3] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// Authenticates `token` and returns the rejection, checking the 401 / `invalid_token` mapping.
async fn rejection(auth: &JwtAuthenticator, token: &str) -> TokenRejection {
    let err = auth
        .authenticate(&Credential::Bearer(Secret::new(token)))
        .await
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(err.error_code(), Some("invalid_token"), "{err}");
    assert_eq!(err.public_body(), r#"{"error":"invalid_token"}"#);
    match err {
        AuthError::InvalidToken(rejection) => rejection,
        other => panic!("expected InvalidToken, got {other}"),
    }
}

fn now(issuer: &TestIssuer) -> u64 {
    issuer.claims(json!({}))["iat"].as_u64().unwrap()
}

#[tokio::test]
async fn malformed_tokens() {
    let s = setup(&ASYMMETRIC).await;
    for (label, token) in tokens::malformed() {
        if token.is_empty() {
            continue; // An empty bearer token never reaches an authenticator.
        }
        let r = rejection(&s.auth, &token).await;
        assert!(
            matches!(
                r,
                TokenRejection::Malformed(_)
                    | TokenRejection::UnknownKey
                    | TokenRejection::BadSignature
            ),
            "{label}: {r:?}"
        );
    }
    let r = rejection(&s.auth, "a.b.c").await;
    assert!(matches!(r, TokenRejection::Malformed(_)), "{r:?}");
}

#[tokio::test]
async fn bad_base64() {
    let s = setup(&ASYMMETRIC).await;
    let token = s.issuer.mint(json!({}));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0].insert(3, '*');
    let r = rejection(&s.auth, &parts.join(".")).await;
    assert!(matches!(r, TokenRejection::Malformed(_)), "{r:?}");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2].push('=');
    let r = rejection(&s.auth, &parts.join(".")).await;
    assert!(matches!(r, TokenRejection::Malformed(_)), "{r:?}");
}

#[tokio::test]
async fn alg_none() {
    let s = setup(&ASYMMETRIC).await;
    let kid = s.issuer.current_kid();
    let claims = s.issuer.claims(json!({}));
    let unsigned = tokens::unsigned(json!({"kid": kid}), claims.clone());
    assert!(matches!(
        rejection(&s.auth, &unsigned).await,
        TokenRejection::Malformed(_)
    ));
    // `none` with some signature bytes, and case variants: still not an algorithm.
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.c2ln",
            tokens::signing_input(&json!({"alg": alg, "kid": kid}), &claims)
        );
        assert_eq!(
            rejection(&s.auth, &token).await,
            TokenRejection::AlgorithmNotAllowed
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key() {
    let kid_claims = |s: &JwtSetup| (s.issuer.current_kid(), s.issuer.claims(json!({})));
    // With HS256 not allowed, the allow-list stops it.
    let s = setup(&ASYMMETRIC).await;
    let (kid, claims) = kid_claims(&s);
    let public = s.issuer.current_key().public_pem();
    let forged = tokens::hs256_with_secret(json!({"kid": kid}), claims, public.as_bytes());
    assert_eq!(
        rejection(&s.auth, &forged).await,
        TokenRejection::AlgorithmNotAllowed
    );
    // Even with HS256 allowed, an RSA key is never used as an HMAC secret.
    let s = setup(&[Algorithm::RS256, Algorithm::HS256]).await;
    let (kid, claims) = kid_claims(&s);
    let public = s.issuer.current_key().public_pem();
    let forged = tokens::hs256_with_secret(json!({"kid": kid}), claims.clone(), public.as_bytes());
    assert_eq!(
        rejection(&s.auth, &forged).await,
        TokenRejection::KeyMismatch
    );
    let forged = tokens::hs256_with_secret(json!({}), claims, public.as_bytes());
    assert_eq!(
        rejection(&s.auth, &forged).await,
        TokenRejection::UnknownKey
    );
}

#[tokio::test]
async fn foreign_key_under_a_known_kid() {
    let s = setup(&ASYMMETRIC).await;
    let foreign = TestKey::rsa(4);
    let token = tokens::sign_with(
        &foreign,
        json!({"kid": s.issuer.current_kid()}),
        s.issuer.claims(json!({})),
    );
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::BadSignature
    );
}

#[tokio::test]
async fn unknown_kid() {
    let s = setup(&ASYMMETRIC).await;
    let token = s
        .issuer
        .mint_with_header(json!({"kid": "no-such-key"}), json!({}));
    assert_eq!(rejection(&s.auth, &token).await, TokenRejection::UnknownKey);
}

#[tokio::test]
async fn tampered_payload() {
    let s = setup(&ASYMMETRIC).await;
    let token = tokens::tamper_payload(&s.issuer.mint(json!({})), json!({"sub": "admin"}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::BadSignature
    );
}

#[tokio::test]
async fn time_claims() {
    let s = setup(&ASYMMETRIC).await;
    let now = now(&s.issuer);
    let cases: [(Value, TokenRejection); 4] = [
        (
            json!({"iat": now - 7200, "exp": now - 3600}),
            TokenRejection::Expired,
        ),
        (json!({"nbf": now + 3600}), TokenRejection::NotYetValid),
        (
            json!({"iat": now + 3600, "exp": now + 7200}),
            TokenRejection::IssuedInFuture,
        ),
        (json!({"exp": null}), TokenRejection::MissingClaim("exp")),
    ];
    for (claims, expected) in cases {
        let token = s.issuer.mint(claims.clone());
        assert_eq!(rejection(&s.auth, &token).await, expected, "{claims}");
    }
}

#[tokio::test]
async fn wrong_issuer_and_audience() {
    let s = setup(&ASYMMETRIC).await;
    let token = s.issuer.mint(json!({"iss": "https://evil.example"}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::WrongIssuer
    );
    let token = s.issuer.mint(json!({"aud": "someone-else"}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::WrongAudience
    );
    let token = s.issuer.mint(json!({"aud": ["a", "b"]}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::WrongAudience
    );
    let token = s.issuer.mint(json!({"aud": null}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::MissingClaim("aud")
    );
    let token = s
        .issuer
        .mint(json!({"aud": ["other", TestIssuer::AUDIENCE]}));
    s.auth.verify(&token).await.unwrap();
}

#[tokio::test]
async fn oversized() {
    let s = setup(&ASYMMETRIC).await;
    let token = s.issuer.mint(json!({"padding": tokens::filler(20_000)}));
    assert_eq!(rejection(&s.auth, &token).await, TokenRejection::Oversized);
    let token = format!("{}.{}.c2ln", tokens::filler(10), tokens::filler(17_000));
    assert_eq!(rejection(&s.auth, &token).await, TokenRejection::Oversized);
}

#[tokio::test]
async fn unknown_crit() {
    let s = setup(&ASYMMETRIC).await;
    let token = s
        .issuer
        .mint_with_header(json!({"crit": ["x-custom"], "x-custom": true}), json!({}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::UnknownCritical
    );
    let token = s.issuer.mint_with_header(json!({"crit": []}), json!({}));
    assert_eq!(
        rejection(&s.auth, &token).await,
        TokenRejection::UnknownCritical
    );
}

#[tokio::test]
async fn wrong_type_when_required() {
    let JwtSetup { issuer, auth, .. } = jwt_setup(JwtOptions::default(), |builder| {
        builder.required_type("at+jwt")
    })
    .await;
    let jwt = issuer.mint(json!({}));
    assert_eq!(rejection(&auth, &jwt).await, TokenRejection::WrongType);
    let at = issuer.mint_with_header(json!({"typ": "at+jwt"}), json!({}));
    auth.verify(&at).await.unwrap();
    let at = issuer.mint_with_header(json!({"typ": "application/at+jwt"}), json!({}));
    auth.verify(&at).await.unwrap();
}
