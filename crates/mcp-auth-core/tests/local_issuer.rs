//! Local issuer tokens through the crate's own JWT verifier: static keys from
//! `LocalIssuer::jwks()`, claim mapping to a `Principal`, expiry with a fake clock.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions should fail loudly too"
)]

use std::sync::Arc;
use std::time::Duration;

use mcp_auth_core::issuer::{GeneratedKeyAlgorithm, IssueRequest, LocalIssuer};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
use mcp_auth_core::{AuthError, AuthMethod, TokenRejection};
use mcp_auth_testkit::FakeClock;

const ISS: &str = "http://127.0.0.1:8080";
const AUD: &str = "mcp-local";

fn setup(alg: GeneratedKeyAlgorithm, clock: &FakeClock) -> (LocalIssuer, JwtAuthenticator) {
    let issuer = LocalIssuer::builder(ISS, AUD)
        .generate_key(alg)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let validator = JwtValidator::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([issuer.algorithm()])
        .required_type("at+jwt")
        .leeway(Duration::ZERO)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let keys = KeySet::from_jwk_set(&issuer.jwks(), 8);
    let auth = JwtAuthenticator::builder(validator, Arc::new(keys))
        .token_cache_capacity(0)
        .build();
    (issuer, auth)
}

#[tokio::test]
async fn local_tokens_verify_into_a_principal() {
    for alg in [GeneratedKeyAlgorithm::EdDSA, GeneratedKeyAlgorithm::ES256] {
        let clock = FakeClock::at_system_now();
        let (issuer, auth) = setup(alg, &clock);
        let request = IssueRequest::new("alice")
            .tenant("acme")
            .roles(["admin"])
            .scopes(["mcp:tools", "mcp:resources"]);
        let token = issuer.issue(&request).unwrap();
        let principal = auth.verify(token.token.expose()).await.unwrap();
        assert_eq!(principal.subject(), "alice");
        assert_eq!(principal.tenant(), Some("acme"));
        assert!(principal.has_role("admin"));
        assert!(principal.has_scope("mcp:resources"));
        assert_eq!(principal.token_id(), Some(token.jti.as_str()));
        assert_eq!(
            principal.method(),
            &AuthMethod::Jwt {
                issuer: ISS.to_owned()
            }
        );
    }
}

#[tokio::test]
async fn refreshed_tokens_verify_and_expired_ones_do_not() {
    let clock = FakeClock::at_system_now();
    let (issuer, auth) = setup(GeneratedKeyAlgorithm::EdDSA, &clock);
    let login = issuer
        .issue_with_refresh(&IssueRequest::new("bob").scopes(["mcp:tools"]))
        .await
        .unwrap();
    auth.verify(login.access.token.expose()).await.unwrap();

    clock.advance(issuer.access_token_ttl() + Duration::from_secs(1));
    let err = auth.verify(login.access.token.expose()).await.unwrap_err();
    assert!(matches!(
        err,
        AuthError::InvalidToken(TokenRejection::Expired)
    ));

    let next = issuer.refresh(&login.refresh_token).await.unwrap();
    let principal = auth.verify(next.access.token.expose()).await.unwrap();
    assert_eq!(principal.subject(), "bob");
}

#[tokio::test]
async fn another_local_issuers_tokens_are_rejected() {
    let clock = FakeClock::at_system_now();
    let (_issuer, auth) = setup(GeneratedKeyAlgorithm::EdDSA, &clock);
    let other = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let token = other.issue(&IssueRequest::new("mallory")).unwrap();
    let err = auth.verify(token.token.expose()).await.unwrap_err();
    assert_eq!(err.status(), 401);
}
