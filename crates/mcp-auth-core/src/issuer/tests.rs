//! Unit tests of the local issuer: minting, verification, refresh rotation, reuse, expiry.

use jsonwebtoken::{Validation, decode, decode_header};

use super::*;
use crate::clock::TestClock;

const ISS: &str = "http://localhost:8080";
const AUD: &str = "mcp-test";

fn issuer_with(clock: Arc<TestClock>) -> LocalIssuer {
    LocalIssuer::builder(ISS, AUD).clock(clock).build().unwrap()
}

fn validation(issuer: &LocalIssuer) -> Validation {
    let mut v = Validation::new(issuer.algorithm());
    v.set_issuer(&[ISS]);
    v.set_audience(&[AUD]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

fn alice() -> IssueRequest {
    IssueRequest::new("alice")
        .tenant("acme")
        .roles(["admin", "user"])
        .scopes(["mcp:tools", "mcp:resources"])
        .client_id("cli")
        .claim("email", "alice@example.com")
}

#[test]
fn minted_tokens_verify_with_jsonwebtoken_for_each_algorithm() {
    for alg in [GeneratedKeyAlgorithm::EdDSA, GeneratedKeyAlgorithm::ES256] {
        let issuer = LocalIssuer::builder(ISS, AUD)
            .generate_key(alg)
            .build()
            .unwrap();
        let token = issuer.issue(&alice()).unwrap();
        let header = decode_header(token.token.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, issuer.algorithm());

        // Through the decoding key and through the published JWKS.
        let data = decode::<Value>(
            token.token.expose(),
            issuer.decoding_key(),
            &validation(&issuer),
        )
        .unwrap();
        let jwks = issuer.jwks();
        let jwk = jwks.find(issuer.kid()).unwrap();
        let from_jwk = DecodingKey::from_jwk(jwk).unwrap();
        decode::<Value>(token.token.expose(), &from_jwk, &validation(&issuer)).unwrap();

        let c = data.claims;
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["tid"], "acme");
        assert_eq!(c["roles"], json!(["admin", "user"]));
        assert_eq!(c["scope"], "mcp:tools mcp:resources");
        assert_eq!(c["client_id"], "cli");
        assert_eq!(c["email"], "alice@example.com");
        assert_eq!(c["jti"], token.jti.as_str());
        let iat = c["iat"].as_u64().unwrap();
        assert_eq!(c["exp"].as_u64().unwrap() - iat, 15 * 60);
        assert_eq!(token.expires_in, DEFAULT_ACCESS_TOKEN_TTL);
    }
}

#[test]
fn jwks_json_has_public_parts_only() {
    let issuer = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let jwks = issuer.jwks_json();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], issuer.kid());
    assert!(key.get("d").is_none());
}

#[test]
fn keys_differ_between_issuers_and_tokens_do_not_cross() {
    let a = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let b = LocalIssuer::builder(ISS, AUD).build().unwrap();
    assert_ne!(a.kid(), b.kid());
    let token = a.issue(&IssueRequest::new("x")).unwrap();
    assert!(decode::<Value>(token.token.expose(), b.decoding_key(), &validation(&b)).is_err());
}

#[test]
fn configured_pem_key_is_used_and_hmac_refused() {
    let pem = include_str!("../../../mcp-auth-testkit/fixtures/ec-p256-1.pem");
    let key = SigningKey::from_pem(Algorithm::ES256, pem.as_bytes())
        .unwrap()
        .with_kid("configured");
    let issuer = LocalIssuer::builder(ISS, AUD).key(key).build().unwrap();
    assert_eq!(issuer.kid(), "configured");
    let token = issuer.issue(&IssueRequest::new("x")).unwrap();
    decode::<Value>(
        token.token.expose(),
        issuer.decoding_key(),
        &validation(&issuer),
    )
    .unwrap();

    assert!(matches!(
        SigningKey::from_pem(Algorithm::HS256, b"secret"),
        Err(IssuerError::Config(_))
    ));
    // A P-256 key cannot sign ES384.
    assert!(SigningKey::from_pem(Algorithm::ES384, pem.as_bytes()).is_err());
    assert!(SigningKey::from_pem(Algorithm::RS256, b"not a pem").is_err());
}

#[test]
fn reserved_claims_and_bad_config_are_refused() {
    let issuer = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let err = issuer
        .issue(&IssueRequest::new("x").claim("iss", "evil"))
        .unwrap_err();
    assert!(matches!(err, IssuerError::ReservedClaim(ref n) if n == "iss"));
    assert!(LocalIssuer::builder("", AUD).build().is_err());
    assert!(LocalIssuer::builder(ISS, "").build().is_err());
    assert!(
        LocalIssuer::builder(ISS, AUD)
            .access_token_ttl(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        LocalIssuer::builder(ISS, AUD)
            .refresh_family_lifetime(Duration::MAX)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn refresh_rotates_and_old_token_is_single_use() {
    let clock = TestClock::at(1_735_689_600);
    let issuer = issuer_with(clock.clone());
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    assert!(
        login
            .refresh_token
            .expose()
            .starts_with(REFRESH_TOKEN_PREFIX)
    );
    assert!(is_refresh_token_shaped(login.refresh_token.expose()));

    clock.advance(Duration::from_secs(60));
    let second = issuer.refresh(&login.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, login.refresh_token);
    assert_eq!(second.family_id, login.family_id);
    assert_ne!(second.access.jti, login.access.jti);
    let claims = decode::<Value>(second.access.token.expose(), issuer.decoding_key(), &{
        let mut v = validation(&issuer);
        v.validate_exp = false;
        v
    })
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "mcp:tools mcp:resources");
    assert_eq!(
        claims["iat"].as_u64().unwrap(),
        unix_secs(clock.now()),
        "the refreshed token is minted at the new time"
    );

    let third = issuer.refresh(&second.refresh_token).await.unwrap();
    let body = third.to_token_response();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_token"], third.refresh_token.expose());
    assert_eq!(body["scope"], "mcp:tools mcp:resources");
}

#[tokio::test]
async fn reuse_revokes_the_whole_family() {
    let clock = TestClock::at(1_735_689_600);
    let issuer = issuer_with(clock.clone());
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    let other_login = issuer.issue_with_refresh(&alice()).await.unwrap();
    let second = issuer.refresh(&login.refresh_token).await.unwrap();

    // An attacker replays the first token: the family dies.
    let err = issuer.refresh(&login.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshTokenReused));
    assert_eq!(err.oauth_error(), "invalid_grant");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // The legitimate holder's current token fails too.
    let err = issuer.refresh(&second.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshFamilyRevoked));
    let err = issuer.refresh(&login.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshFamilyRevoked));
    // Another family is untouched.
    issuer.refresh(&other_login.refresh_token).await.unwrap();
}

#[tokio::test]
async fn previous_refresh_token_retries_inside_the_grace_window() {
    let clock = TestClock::at(1_735_689_600);
    let issuer = LocalIssuer::builder(ISS, AUD)
        .clock(clock.clone())
        .refresh_reuse_grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    let lost = issuer.refresh(&login.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(10));
    // The client never saw `lost` and retries with the token it holds.
    let retried = issuer.refresh(&login.refresh_token).await.unwrap();
    assert_eq!(retried.family_id, login.family_id);
    assert_eq!(retried.grant, alice());
    assert_ne!(retried.refresh_token, lost.refresh_token);
    // Only the newest token is active; the superseded one is a reuse.
    let err = issuer.refresh(&lost.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshTokenReused));
    assert!(matches!(
        issuer.refresh(&retried.refresh_token).await.unwrap_err(),
        IssuerError::RefreshFamilyRevoked
    ));

    // Past the window the previous token is an ordinary reuse.
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    let next = issuer.refresh(&login.refresh_token).await.unwrap();
    clock.advance(Duration::from_secs(30));
    let err = issuer.refresh(&login.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshTokenReused));
    assert!(issuer.refresh(&next.refresh_token).await.is_err());

    assert!(
        LocalIssuer::builder(ISS, AUD)
            .refresh_reuse_grace(Duration::from_secs(301))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn refresh_tokens_expire_with_the_clock() {
    let clock = TestClock::at(1_735_689_600);
    let issuer = LocalIssuer::builder(ISS, AUD)
        .clock(clock.clone())
        .refresh_token_ttl(Duration::from_secs(3600))
        .refresh_family_lifetime(Duration::from_secs(3 * 3600))
        .build()
        .unwrap();
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    assert_eq!(
        login.refresh_expires_at,
        clock.now() + Duration::from_secs(3600)
    );
    clock.advance(Duration::from_secs(3600));
    let err = issuer.refresh(&login.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshTokenExpired));

    // Rotation renews the token, but never past the family's end.
    let mut current = issuer.issue_with_refresh(&alice()).await.unwrap();
    let family_end = clock.now() + Duration::from_secs(3 * 3600);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(3000));
        current = issuer.refresh(&current.refresh_token).await.unwrap();
        assert!(current.refresh_expires_at <= family_end);
    }
    assert_eq!(current.refresh_expires_at, family_end);
    clock.advance(Duration::from_secs(3 * 3600));
    let err = issuer.refresh(&current.refresh_token).await.unwrap_err();
    assert!(matches!(err, IssuerError::RefreshTokenExpired));
}

#[tokio::test]
async fn malformed_unknown_and_revoked_refresh_tokens() {
    let issuer = LocalIssuer::builder(ISS, AUD).build().unwrap();
    for bad in [
        "",
        "mcprt_",
        "mcprt_short",
        "other_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "mcprt_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    ] {
        let err = issuer.refresh(&Secret::from(bad)).await.unwrap_err();
        assert!(matches!(err, IssuerError::UnknownRefreshToken), "{bad}");
    }
    let unknown = new_refresh_token();
    assert!(matches!(
        issuer.refresh(&unknown).await.unwrap_err(),
        IssuerError::UnknownRefreshToken
    ));

    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    assert!(
        issuer
            .revoke_refresh_token(&login.refresh_token)
            .await
            .unwrap()
    );
    assert!(!issuer.revoke_refresh_token(&unknown).await.unwrap());
    assert!(matches!(
        issuer.refresh(&login.refresh_token).await.unwrap_err(),
        IssuerError::RefreshFamilyRevoked
    ));
}

#[derive(Debug)]
struct FailingStore;

#[async_trait::async_trait]
impl RefreshTokenStore for FailingStore {
    async fn start_family(
        &self,
        _: RefreshFamily,
        _: RefreshTokenHash,
        _: SystemTime,
        _: SystemTime,
    ) -> Result<(), BoxError> {
        Err("store down".into())
    }

    async fn exchange(
        &self,
        _: RefreshTokenHash,
        _: RefreshTokenHash,
        _: SystemTime,
        _: SystemTime,
    ) -> Result<Exchange, BoxError> {
        Err("store down".into())
    }

    async fn revoke_family_of(&self, _: RefreshTokenHash, _: SystemTime) -> Result<bool, BoxError> {
        Err("store down".into())
    }
}

#[tokio::test]
async fn store_failures_map_to_temporarily_unavailable() {
    let issuer = LocalIssuer::builder(ISS, AUD)
        .refresh_store(Arc::new(FailingStore))
        .build()
        .unwrap();
    let err = issuer.issue_with_refresh(&alice()).await.unwrap_err();
    assert_eq!(err.oauth_error(), "temporarily_unavailable");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = issuer.refresh(&new_refresh_token()).await.unwrap_err();
    assert!(matches!(err, IssuerError::Store(_)));
}

#[tokio::test]
async fn no_token_or_key_in_debug_output() {
    let issuer = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let pair = issuer.issue_with_refresh(&alice()).await.unwrap();
    let outputs = [
        format!("{pair:?}"),
        format!("{:?}", pair.access),
        format!("{issuer:?}"),
        format!("{:?}", issuer.signing_key()),
        format!("{:?}", IssuerError::RefreshTokenReused),
    ];
    let access = pair.access.token.expose();
    let refresh = pair.refresh_token.expose();
    let signature = access.rsplit('.').next().unwrap();
    for out in outputs {
        assert!(!out.contains(access), "{out}");
        assert!(!out.contains(signature), "{out}");
        assert!(!out.contains(refresh), "{out}");
        assert!(
            !out.contains(&refresh[REFRESH_TOKEN_PREFIX.len()..]),
            "{out}"
        );
    }
    assert!(format!("{issuer:?}").contains(issuer.kid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let issuer = LocalIssuer::builder(ISS, AUD).build().unwrap();
    let login = issuer.issue_with_refresh(&alice()).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let issuer = issuer.clone();
            let token = login.refresh_token.clone();
            tokio::spawn(async move { issuer.refresh(&token).await })
        })
        .collect();
    let mut ok = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(pair) => ok.push(pair),
            Err(IssuerError::RefreshTokenReused | IssuerError::RefreshFamilyRevoked) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok.len(), 1);
    // The replays revoked the family, so even the winner's new token is dead.
    assert!(issuer.refresh(&ok[0].refresh_token).await.is_err());
}
