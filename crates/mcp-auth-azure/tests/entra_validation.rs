//! Entra ID token validation against the testkit's Entra-shaped authority over loopback
//! HTTP: discovery and JWKS per tenant mode, the issuer/tenant rules, v1 and v2, audiences,
//! claim mapping, group overage, app-only tokens and the bad-token classes.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions should fail loudly too"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mcp_auth_azure::{
    Cloud, EntraAuthenticator, EntraConfig, GroupResolver, MSA_TENANT_ID, TokenKind, TokenVersion,
    client_app_id, principal_kind, token_version,
};
use mcp_auth_core::jwks::JwksConfig;
use mcp_auth_core::{
    AuthChain, AuthError, Authenticator, BoxError, Credential, CredentialKind, Principal, Secret,
    TokenRejection,
};
use mcp_auth_testkit::entra::{EntraIssuer, EntraIssuerConfig, EntraUser, pkce_challenge};
use mcp_auth_testkit::{FakeClock, TestKey, tokens};
use serde_json::json;

const TENANT: &str = EntraIssuer::TENANT;
const OTHER: &str = EntraIssuer::OTHER_TENANT;
const CLIENT: &str = EntraIssuer::CLIENT_ID;

/// The configuration `tenant`/[`CLIENT`] pointed at `entra`.
fn config(entra: &EntraIssuer, tenant: &str) -> EntraConfig {
    EntraConfig::new(tenant, CLIENT).cloud(Cloud::custom(
        entra.authority(),
        entra.v1_issuer_base(),
        entra.authority(),
    ))
}

fn build(config: EntraConfig) -> EntraAuthenticator {
    EntraAuthenticator::builder(config)
        .jwks_config(JwksConfig::default().background_refresh(false))
        .build()
        .unwrap()
}

fn user(tid: &str) -> EntraUser {
    EntraUser::new("0b8f3a4e-5c6d-4e7f-8a9b-0c1d2e3f4a5b", tid).username("u@contoso.example")
}

async fn rejection(auth: &EntraAuthenticator, token: &str) -> TokenRejection {
    match auth.verify(token).await {
        Err(AuthError::InvalidToken(r)) => r,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn single_tenant_accepts_v1_and_v2_from_the_tenant_discovery() {
    let entra = EntraIssuer::start().await;
    let auth = build(config(&entra, TENANT));
    let u = user(TENANT).roles(["Tools.Read"]);
    for version in [TokenVersion::V2, TokenVersion::V1] {
        let testkit_version = match version {
            TokenVersion::V1 => mcp_auth_testkit::entra::TokenVersion::V1,
            TokenVersion::V2 => mcp_auth_testkit::entra::TokenVersion::V2,
        };
        let token = entra
            .access_token(&u)
            .version(testkit_version)
            .scopes("mcp.tools mcp.prompts")
            .mint();
        let p = auth.verify(&token).await.unwrap();
        assert_eq!(p.subject(), u.oid, "oid, not the pairwise sub");
        assert_eq!(p.tenant(), Some(TENANT));
        assert!(p.has_role("Tools.Read"));
        assert!(p.has_scope("mcp.tools") && p.has_scope("mcp.prompts"));
        assert_eq!(token_version(&p), Some(version));
        assert_eq!(client_app_id(&p), Some(CLIENT));
        assert_eq!(principal_kind(&p), TokenKind::Delegated);
    }
    // The tenant's own v2 document was read once, the keys fetched once.
    assert_eq!(entra.discovery_fetches(), 1);
    assert_eq!(entra.keys().jwks_fetches(), 1);
    assert!(auth.jwks().is_some_and(|j| j.keys().is_some()));

    // Another tenant's token, however well-formed, is not for this API.
    let other = entra.access_token(&user(OTHER)).mint();
    assert_eq!(
        rejection(&auth, &other).await,
        TokenRejection::TenantNotAllowed
    );
}

#[tokio::test]
async fn multi_tenant_checks_issuer_against_tid_and_the_allowlist() {
    let entra = EntraIssuer::start().await;
    let auth = build(config(&entra, "organizations").allowed_tenants([TENANT]));
    let ok = entra.access_token(&user(TENANT)).mint();
    assert!(auth.verify(&ok).await.is_ok());
    let ok_v1 = entra.access_token(&user(TENANT)).v1().mint();
    assert!(auth.verify(&ok_v1).await.is_ok());

    // Not on the allowlist, though signed by Entra and self-consistent.
    let stranger = entra.access_token(&user(OTHER)).mint();
    assert_eq!(
        rejection(&auth, &stranger).await,
        TokenRejection::TenantNotAllowed
    );
    let stranger_v1 = entra.access_token(&user(OTHER)).v1().mint();
    assert_eq!(
        rejection(&auth, &stranger_v1).await,
        TokenRejection::TenantNotAllowed
    );

    // `iss` of one tenant, `tid` of another: refused both ways.
    let cases = [
        (TENANT, entra.v2_issuer(OTHER)),
        (OTHER, entra.v2_issuer(TENANT)),
        (TENANT, entra.v1_issuer(OTHER)),
        (TENANT, format!("{}/{{tenantid}}/v2.0", entra.authority())),
        (TENANT, format!("{}/{TENANT}/v2.0/", entra.authority())),
        (
            TENANT,
            format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        ),
    ];
    for (tid, iss) in cases {
        let token = entra
            .access_token(&user(TENANT))
            .tenant(tid)
            .issuer(iss.clone())
            .mint();
        assert_eq!(
            rejection(&auth, &token).await,
            TokenRejection::WrongIssuer,
            "{tid} {iss}"
        );
    }
    for bad_tid in [json!(null), json!(""), json!("contoso"), json!(42)] {
        let token = entra
            .access_token(&user(TENANT))
            .claims(json!({"tid": bad_tid}))
            .mint();
        assert_eq!(
            rejection(&auth, &token).await,
            TokenRejection::MissingClaim("tid")
        );
    }

    // The keys come from the shared organizations document, whose issuer is a template.
    assert_eq!(entra.discovery_fetches(), 1);
    assert_eq!(entra.keys().jwks_fetches(), 1);
}

#[tokio::test]
async fn any_tenant_only_when_asked_and_personal_accounts_by_mode() {
    let entra = EntraIssuer::start().await;
    let msa = entra.access_token(&user(MSA_TENANT_ID)).mint();
    let other = entra.access_token(&user(OTHER)).mint();

    let organizations = build(config(&entra, "organizations").allow_any_tenant_dangerously());
    assert!(organizations.verify(&other).await.is_ok());
    assert_eq!(
        rejection(&organizations, &msa).await,
        TokenRejection::TenantNotAllowed
    );

    let common = build(config(&entra, "common").allow_any_tenant_dangerously());
    assert!(common.verify(&other).await.is_ok());
    assert!(common.verify(&msa).await.is_ok());

    let consumers = build(config(&entra, "consumers"));
    assert!(consumers.verify(&msa).await.is_ok());
    assert_eq!(
        rejection(&consumers, &other).await,
        TokenRejection::TenantNotAllowed
    );

    // Without the option, multi-tenant needs a list.
    let open = EntraAuthenticator::builder(config(&entra, "common")).build();
    assert!(open.unwrap_err().to_string().contains("allowed_tenants"));
}

#[tokio::test]
async fn accepted_versions_are_enforced() {
    let entra = EntraIssuer::start().await;
    let v2_only = build(config(&entra, TENANT).token_versions([TokenVersion::V2]));
    let v1 = entra.access_token(&user(TENANT)).v1().mint();
    assert_eq!(rejection(&v2_only, &v1).await, TokenRejection::WrongIssuer);
    assert!(
        v2_only
            .verify(&entra.access_token(&user(TENANT)).mint())
            .await
            .is_ok()
    );
    let v1_only = build(config(&entra, TENANT).token_versions([TokenVersion::V1]));
    assert!(v1_only.verify(&v1).await.is_ok());
}

#[tokio::test]
async fn audience_variants() {
    let entra = EntraIssuer::start().await;
    let auth = build(config(&entra, TENANT).audience("https://mcp.contoso.example"));
    let u = user(TENANT);
    for aud in [
        format!("api://{CLIENT}"),
        CLIENT.to_owned(),
        "https://mcp.contoso.example".to_owned(),
    ] {
        for v1 in [false, true] {
            let b = entra.access_token(&u).audience(aud.clone());
            let token = if v1 { b.v1().mint() } else { b.mint() };
            assert!(auth.verify(&token).await.is_ok(), "{aud} v1={v1}");
        }
    }
    for aud in ["api://another-app", "00000003-0000-0000-c000-000000000000"] {
        let token = entra.access_token(&u).audience(aud).mint();
        assert_eq!(
            rejection(&auth, &token).await,
            TokenRejection::WrongAudience
        );
    }
    let many = entra
        .access_token(&u)
        .claims(json!({"aud": ["x", CLIENT]}))
        .mint();
    assert!(auth.verify(&many).await.is_ok());
}

#[tokio::test]
async fn groups_map_to_roles() {
    let entra = EntraIssuer::start().await;
    let auth = build(
        config(&entra, TENANT)
            .map_group("g-admins", ["admin"])
            .map_group("g-ops", ["operator", "readonly"]),
    );
    let token = entra
        .access_token(
            &user(TENANT)
                .roles(["Tools.Read"])
                .groups(["g-admins", "g-ops", "g-other"]),
        )
        .mint();
    let p = auth.verify(&token).await.unwrap();
    let roles: Vec<&str> = p.roles().iter().map(String::as_str).collect();
    assert_eq!(roles, ["Tools.Read", "admin", "operator", "readonly"]);
}

/// A directory that answers from a table and counts its calls.
#[derive(Debug, Default)]
struct Directory {
    calls: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl GroupResolver for Directory {
    async fn groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err("Graph unavailable".into());
        }
        assert_eq!(tenant, TENANT);
        Ok(match oid {
            "many-groups" => vec!["g-admins".into(), "g-unmapped".into()],
            _ => Vec::new(),
        })
    }
}

#[tokio::test]
async fn group_overage_with_and_without_a_resolver() {
    let entra = EntraIssuer::start().await;
    let base = config(&entra, TENANT).map_group("g-admins", ["admin"]);
    let many = EntraUser::new("many-groups", TENANT)
        .roles(["Tools.Read"])
        .group_overage();
    let overage = entra.access_token(&many).mint();
    let overage_v1 = entra.access_token(&many).v1().mint();
    assert!(tokens::claims_of(&overage).get("groups").is_none());

    // Without a resolver: authenticated, app roles only.
    let plain = build(base.clone());
    for token in [&overage, &overage_v1] {
        let p = plain.verify(token).await.unwrap();
        assert!(p.has_role("Tools.Read") && !p.has_role("admin"));
    }

    // With a resolver: the groups come from the directory, once per user within the TTL.
    let directory = Arc::new(Directory::default());
    let resolved = EntraAuthenticator::builder(base.clone())
        .jwks_config(JwksConfig::default().background_refresh(false))
        .group_resolver(directory.clone())
        .build()
        .unwrap();
    for token in [&overage, &overage_v1, &overage] {
        let p = resolved.verify(token).await.unwrap();
        assert!(p.has_role("admin") && p.has_role("Tools.Read"), "{p:?}");
        assert_eq!(p.subject(), "many-groups");
        assert!(p.claims().contains_key("_claim_names"));
    }
    assert_eq!(directory.calls.load(Ordering::SeqCst), 1);
    // `hasgroups` (implicit-flow ID tokens) is overage too; no overage, no lookup.
    let hasgroups = entra
        .access_token(&EntraUser::new("other-user", TENANT))
        .claims(json!({"hasgroups": true}))
        .mint();
    assert!(!resolved.verify(&hasgroups).await.unwrap().has_role("admin"));
    assert_eq!(directory.calls.load(Ordering::SeqCst), 2);
    resolved
        .verify(&entra.access_token(&user(TENANT)).mint())
        .await
        .unwrap();
    assert_eq!(directory.calls.load(Ordering::SeqCst), 2);

    // A failing directory is a 503, not a principal without its roles.
    let down = Arc::new(Directory::default());
    down.down.store(true, Ordering::SeqCst);
    let failing = EntraAuthenticator::builder(base)
        .jwks_config(JwksConfig::default().background_refresh(false))
        .group_resolver(down)
        .build()
        .unwrap();
    let err = failing.verify(&overage).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn app_only_tokens() {
    let entra = EntraIssuer::start().await;
    let app = entra
        .app_token(TENANT, "daemon-client")
        .roles(["Tools.Run"])
        .mint();
    let no_idtyp = entra
        .app_token(TENANT, "daemon-client")
        .roles(["Tools.Run"])
        .idtyp(None)
        .v1()
        .mint();
    let auth = build(config(&entra, TENANT));
    for token in [&app, &no_idtyp] {
        let p = auth.verify(token).await.unwrap();
        assert_eq!(principal_kind(&p), TokenKind::AppOnly);
        assert!(p.has_role("Tools.Run") && p.scopes().is_empty());
        assert_eq!(client_app_id(&p), Some("daemon-client"));
    }
    // `idtyp = user` wins over a missing `scp`.
    let user_token = entra
        .access_token(&user(TENANT))
        .no_scopes()
        .idtyp(Some("user"))
        .mint();
    assert_eq!(
        principal_kind(&auth.verify(&user_token).await.unwrap()),
        TokenKind::Delegated
    );

    let strict = build(config(&entra, TENANT).allow_app_only_tokens(false));
    assert_eq!(
        rejection(&strict, &app).await,
        TokenRejection::MissingClaim("scp")
    );
    assert!(
        strict
            .verify(&entra.access_token(&user(TENANT)).mint())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let entra = EntraIssuer::start().await;
    let auth = build(config(&entra, TENANT));
    let claims = entra.access_token(&user(TENANT)).to_claims();
    let kid = entra.keys().current_kid();

    let foreign = tokens::sign_with(&TestKey::rsa(3), json!({"kid": kid}), claims.clone());
    assert_eq!(
        rejection(&auth, &foreign).await,
        TokenRejection::BadSignature
    );

    let public_pem = entra.keys().current_key().public_pem().to_owned();
    let confused =
        tokens::hs256_with_secret(json!({"kid": kid}), claims.clone(), public_pem.as_bytes());
    assert_eq!(
        rejection(&auth, &confused).await,
        TokenRejection::AlgorithmNotAllowed
    );

    let unsigned = tokens::unsigned(json!({"kid": kid}), claims.clone());
    assert!(matches!(
        rejection(&auth, &unsigned).await,
        TokenRejection::Malformed(_) | TokenRejection::AlgorithmNotAllowed
    ));

    let expired = entra
        .access_token(&user(TENANT))
        .claims(json!({"exp": 1_000_000_000, "iat": 999_999_000, "nbf": 999_999_000}))
        .mint();
    assert_eq!(rejection(&auth, &expired).await, TokenRejection::Expired);

    let no_oid = entra
        .access_token(&user(TENANT))
        .claims(json!({"oid": null}))
        .mint();
    assert!(matches!(
        rejection(&auth, &no_oid).await,
        TokenRejection::MissingClaim(_)
    ));

    let unknown_kid = entra
        .access_token(&user(TENANT))
        .header(json!({"kid": "nope"}))
        .mint();
    assert_eq!(
        rejection(&auth, &unknown_kid).await,
        TokenRejection::UnknownKey
    );

    let not_a_token = auth.verify("not.a.token").await.unwrap_err();
    assert_eq!(not_a_token.status(), 401);
}

#[tokio::test]
async fn an_outage_is_503_and_rotated_keys_are_picked_up() {
    let clock = FakeClock::at_system_now();
    let entra = EntraIssuer::start_with(EntraIssuerConfig {
        clock: Arc::new(clock.clone()),
        ..EntraIssuerConfig::default()
    })
    .await;
    entra.keys().set_available(false);
    let auth = EntraAuthenticator::builder(config(&entra, TENANT))
        .jwks_config(JwksConfig::default().background_refresh(false))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let token = entra.access_token(&user(TENANT)).mint();
    // The discovery document is served, the JWKS is down and nothing is cached yet.
    let err = auth.verify(&token).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(err.status(), 503);

    entra.keys().set_available(true);
    clock.advance(Duration::from_secs(11));
    auth.verify(&token).await.unwrap();
    entra.keys().rotate();
    clock.advance(Duration::from_secs(11));
    // A new kid triggers one refetch.
    auth.verify(&entra.access_token(&user(TENANT)).mint())
        .await
        .unwrap();
    assert_eq!(entra.keys().jwks_fetches(), 3);
    assert_eq!(entra.discovery_fetches(), 1);
}

#[tokio::test]
async fn a_real_authorization_code_flow_ends_in_a_principal() {
    let entra = EntraIssuer::start().await;
    let redirect = "http://127.0.0.1:9/callback";
    entra.add_redirect_uri(CLIENT, redirect);
    entra.sign_in_as(user(TENANT).roles(["Tools.Read"]).groups(["g-admins"]));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = "v".repeat(64);
    let challenge = pkce_challenge(&verifier);
    let scope = format!("api://{CLIENT}/mcp.tools offline_access");
    let authorize = reqwest::Url::parse_with_params(
        &entra.authorize_url("organizations"),
        &[
            ("client_id", CLIENT),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", &scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let response = http.get(authorize).send().await.unwrap();
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body: serde_json::Value = http
        .post(entra.token_url("organizations"))
        .basic_auth(CLIENT, Some(EntraIssuer::CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap();

    let chain = AuthChain::new().with(build(
        config(&entra, "organizations")
            .allowed_tenants([TENANT])
            .map_group("g-admins", ["admin"]),
    ));
    let p: Principal = chain
        .authenticate(&Credential::Bearer(Secret::new(access)))
        .await
        .unwrap();
    assert_eq!(p.tenant(), Some(TENANT));
    assert!(p.has_scope("mcp.tools") && p.has_role("Tools.Read") && p.has_role("admin"));
    assert!(chain.accepts(CredentialKind::Bearer) && !chain.accepts(CredentialKind::ApiKey));
    assert!(matches!(
        chain
            .authenticate(&Credential::ApiKey(Secret::new("k")))
            .await,
        Err(AuthError::NotAccepted)
    ));
}
