//! The Entra-shaped issuer over real HTTP: discovery per tenant, authorize with PKCE, the
//! token endpoint's grants and errors, and the shapes of minted tokens.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions should fail loudly too"
)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_auth_core::jwt::{JwtValidator, KeySet};
use mcp_auth_testkit::FakeClock;
use mcp_auth_testkit::entra::{
    Consent, EntraApp, EntraIssuer, EntraIssuerConfig, EntraUser, GRAPH_RESOURCE, MSA_TENANT_ID,
    TokenVersion, service_principal_oid,
};
use mcp_auth_testkit::tokens;
use serde_json::{Value, json};
use sha2::Digest as _;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abc";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn api_scope(name: &str) -> String {
    format!("api://{}/{name}", EntraIssuer::CLIENT_ID)
}

async fn entra() -> EntraIssuer {
    let entra = EntraIssuer::start().await;
    assert!(entra.add_redirect_uri(EntraIssuer::CLIENT_ID, REDIRECT));
    entra
}

/// Sends an authorize request with the default client, redirect and a PKCE challenge of
/// [`VERIFIER`]; `extra` adds or (with an empty value) removes parameters.
async fn authorize(entra: &EntraIssuer, tenant: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let scope = format!("{} openid offline_access", api_scope("mcp.tools"));
    let challenge = challenge(VERIFIER);
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", EntraIssuer::CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", &scope),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    http()
        .get(entra.authorize_url(tenant))
        .query(&params)
        .send()
        .await
        .unwrap()
}

/// The query parameters of the redirect `response` points to.
fn redirect_params(response: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 302, "expected a redirect");
    let location = response.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(location).unwrap();
    assert_eq!(
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
        REDIRECT
    );
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn code(entra: &EntraIssuer, tenant: &str) -> String {
    let response = authorize(entra, tenant, &[]).await;
    let params = redirect_params(&response);
    assert_eq!(get(&params, "state"), Some("st-1"));
    get(&params, "code").unwrap().to_owned()
}

async fn token_request(entra: &EntraIssuer, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(entra.token_url(tenant))
        .basic_auth(EntraIssuer::CLIENT_ID, Some(EntraIssuer::CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

async fn redeem(entra: &EntraIssuer, tenant: &str, code: &str, verifier: &str) -> (u16, Value) {
    token_request(
        entra,
        tenant,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap()
}

/// Verifies `token` against the issuer's JWKS as served, for issuer `iss` and audience `aud`.
async fn verify(entra: &EntraIssuer, token: &str, iss: &str, aud: &str) -> Value {
    let jwks = reqwest::get(entra.jwks_url())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = KeySet::from_jwks_json(&jwks, 16).unwrap();
    let validator = JwtValidator::builder()
        .issuer(iss)
        .audience(aud)
        .build()
        .unwrap();
    Value::Object(validator.validate(token, &keys).unwrap().into_claims())
}

#[tokio::test]
async fn discovery_per_tenant_and_version() {
    let entra = entra().await;
    let authority = entra.authority();
    assert!(authority.starts_with("http://127.0.0.1:"));
    let cases = [
        (
            EntraIssuer::TENANT,
            TokenVersion::V2,
            entra.v2_issuer(EntraIssuer::TENANT),
        ),
        (
            EntraIssuer::TENANT,
            TokenVersion::V1,
            entra.v1_issuer(EntraIssuer::TENANT),
        ),
        (
            "organizations",
            TokenVersion::V2,
            format!("{authority}/{{tenantid}}/v2.0"),
        ),
        (
            "common",
            TokenVersion::V1,
            "https://sts.windows.net/{tenantid}/".to_owned(),
        ),
        (
            "consumers",
            TokenVersion::V2,
            entra.v2_issuer(MSA_TENANT_ID),
        ),
    ];
    for (tenant, version, issuer) in &cases {
        let doc: Value = reqwest::get(entra.discovery_url(tenant, *version))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["issuer"], *issuer, "{tenant} {version:?}");
        assert_eq!(doc["jwks_uri"], entra.jwks_url());
        assert!(
            doc["authorization_endpoint"]
                .as_str()
                .unwrap()
                .starts_with(&authority)
        );
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    }
    assert_eq!(
        entra.v1_issuer(EntraIssuer::TENANT),
        format!("https://sts.windows.net/{}/", EntraIssuer::TENANT)
    );
    assert_eq!(entra.discovery_fetches(), cases.len());
    let v2 = format!(
        "{authority}/{}/v2.0/.well-known/openid-configuration",
        EntraIssuer::TENANT
    );
    assert_eq!(
        entra.discovery_url(EntraIssuer::TENANT, TokenVersion::V2),
        v2
    );
}

#[tokio::test]
async fn authorization_code_flow_with_pkce() {
    let entra = entra().await;
    let code = code(&entra, "organizations").await;
    let (status, body) = redeem(&entra, "organizations", &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(
        body["scope"]
            .as_str()
            .unwrap()
            .contains(&api_scope("mcp.tools"))
    );

    let tid = EntraIssuer::TENANT;
    let access = body["access_token"].as_str().unwrap();
    let claims = verify(
        &entra,
        access,
        &entra.v2_issuer(tid),
        EntraIssuer::CLIENT_ID,
    )
    .await;
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["tid"], tid);
    assert_eq!(claims["oid"], EntraIssuer::USER_OID);
    assert_eq!(claims["azp"], EntraIssuer::CLIENT_ID);
    assert_eq!(claims["azpacr"], "1");
    assert_eq!(claims["scp"], "mcp.tools");
    assert_eq!(claims["preferred_username"], "ada@contoso.example");
    assert_ne!(claims["sub"], claims["oid"], "sub is pairwise");
    assert!(claims.get("idtyp").is_none() && claims.get("appid").is_none());

    let id = body["id_token"].as_str().unwrap();
    let id = verify(&entra, id, &entra.v2_issuer(tid), EntraIssuer::CLIENT_ID).await;
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["sub"], claims["sub"]);
    assert!(body["refresh_token"].is_string());

    let requests = entra.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["grant_type"], "authorization_code");
    let authorizations = entra.authorize_requests();
    assert_eq!(authorizations[0]["code_challenge_method"], "S256");
}

#[tokio::test]
async fn code_is_single_use_and_checked() {
    let entra = entra().await;
    let tenant = "organizations";
    let code1 = code(&entra, tenant).await;
    let (status, body) = redeem(&entra, tenant, &code1, &"x".repeat(43)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(aadsts(&body), 501481);
    // A failed redemption burns the code, as a used one.
    let (_, body) = redeem(&entra, tenant, &code1, VERIFIER).await;
    assert_eq!(aadsts(&body), 54005);

    let code2 = code(&entra, tenant).await;
    assert_eq!(redeem(&entra, tenant, &code2, VERIFIER).await.0, 200);
    let (_, body) = redeem(&entra, tenant, &code2, VERIFIER).await;
    assert_eq!(aadsts(&body), 54005);

    let code3 = code(&entra, tenant).await;
    let (_, body) = token_request(
        &entra,
        tenant,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code3),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(aadsts(&body), 50011);
    let (_, body) = redeem(&entra, tenant, "no-such-code", VERIFIER).await;
    assert_eq!(aadsts(&body), 70000);
}

#[tokio::test]
async fn codes_expire_on_the_issuer_clock() {
    let clock = Arc::new(FakeClock::at_system_now());
    let entra = EntraIssuer::start_with(EntraIssuerConfig {
        clock: clock.clone(),
        ..EntraIssuerConfig::default()
    })
    .await;
    entra.add_redirect_uri(EntraIssuer::CLIENT_ID, REDIRECT);
    let code = code(&entra, "common").await;
    clock.advance(Duration::from_secs(601));
    let (status, body) = redeem(&entra, "common", &code, VERIFIER).await;
    assert_eq!((status, aadsts(&body)), (400, 70008));
}

#[tokio::test]
async fn authorize_refusals() {
    let entra = entra().await;
    let t = "organizations";

    let response = authorize(&entra, t, &[("client_id", "unknown-client")]).await;
    assert_eq!(response.status(), 400);
    let response = authorize(&entra, t, &[("redirect_uri", "http://127.0.0.1:9/evil")]).await;
    assert_eq!(response.status(), 400, "no redirect to an unregistered URI");
    let body: Value = response.json().await.unwrap();
    assert_eq!(aadsts(&body), 50011);

    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 8] = [
        (
            &[("resource", "https://mcp.example")],
            "invalid_target",
            "AADSTS9010010",
        ),
        (
            &[("code_challenge_method", "plain")],
            "invalid_request",
            "AADSTS501491",
        ),
        (
            &[("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
            "AADSTS9002325",
        ),
        (
            &[("response_type", "token")],
            "unsupported_response_type",
            "AADSTS700054",
        ),
        (
            &[("scope", "api://a/x api://b/y")],
            "invalid_scope",
            "AADSTS28000",
        ),
        (
            &[("scope", "api://22222222-2222-4222-8222-222222222222/nope")],
            "invalid_scope",
            "AADSTS70011",
        ),
        (
            &[("login_hint", "nobody@example.test")],
            "invalid_request",
            "AADSTS50034",
        ),
        (&[("scope", "")], "invalid_request", "AADSTS900144"),
    ];
    for (extra, error, code) in cases {
        let params = redirect_params(&authorize(&entra, t, extra).await);
        assert_eq!(get(&params, "error"), Some(error), "{extra:?}");
        assert!(
            get(&params, "error_description").unwrap().starts_with(code),
            "{extra:?}"
        );
        assert_eq!(get(&params, "state"), Some("st-1"));
        assert_eq!(get(&params, "code"), None);
    }

    // The signed-in user's tenant must fit the tenant path.
    let params = redirect_params(&authorize(&entra, EntraIssuer::OTHER_TENANT, &[]).await);
    assert_eq!(get(&params, "error"), Some("invalid_request"));
    let params = redirect_params(&authorize(&entra, "consumers", &[]).await);
    assert_eq!(get(&params, "error"), Some("invalid_request"));

    entra.set_consent(Consent::Deny);
    let params = redirect_params(&authorize(&entra, t, &[]).await);
    assert_eq!(get(&params, "error"), Some("access_denied"));
    entra.set_consent(Consent::Grant);
    assert!(get(&redirect_params(&authorize(&entra, t, &[]).await), "code").is_some());
}

#[tokio::test]
async fn login_hint_picks_the_user_and_roles_groups_follow() {
    let entra = entra().await;
    let bob = EntraUser::new("bob-oid", EntraIssuer::OTHER_TENANT)
        .username("bob@fabrikam.example")
        .roles(["Tools.Admin"])
        .groups(["g-1", "g-2"]);
    entra.add_user(bob);
    let response = authorize(&entra, "common", &[("login_hint", "bob@fabrikam.example")]).await;
    let code = get(&redirect_params(&response), "code").unwrap().to_owned();
    let (_, body) = redeem(&entra, "common", &code, VERIFIER).await;
    let claims = tokens::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["oid"], "bob-oid");
    assert_eq!(claims["tid"], EntraIssuer::OTHER_TENANT);
    assert_eq!(claims["iss"], entra.v2_issuer(EntraIssuer::OTHER_TENANT));
    assert_eq!(claims["roles"], json!(["Tools.Admin"]));
    assert_eq!(claims["groups"], json!(["g-1", "g-2"]));

    entra.sign_in_as(EntraUser::new("many-groups", EntraIssuer::TENANT).group_overage());
    let code = code_of(&entra).await;
    let (_, body) = redeem(&entra, "common", &code, VERIFIER).await;
    let claims = tokens::claims_of(body["access_token"].as_str().unwrap());
    assert!(claims.get("groups").is_none());
    assert_eq!(claims["_claim_names"]["groups"], "src1");
    assert!(
        claims["_claim_sources"]["src1"]["endpoint"]
            .as_str()
            .unwrap()
            .contains("/users/many-groups/getMemberObjects")
    );
}

async fn code_of(entra: &EntraIssuer) -> String {
    get(
        &redirect_params(&authorize(entra, "common", &[]).await),
        "code",
    )
    .unwrap()
    .to_owned()
}

#[tokio::test]
async fn refresh_tokens_and_revocation() {
    let entra = entra().await;
    let code = code_of(&entra).await;
    let (_, first) = redeem(&entra, "common", &code, VERIFIER).await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = token_request(
        &entra,
        "common",
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_ne!(first["access_token"], second["access_token"]);
    // Entra's old refresh tokens stay valid.
    let (status, _) = token_request(
        &entra,
        "common",
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await;
    assert_eq!(status, 200);

    assert_eq!(entra.revoke_refresh_tokens(EntraIssuer::USER_OID), 3);
    let (status, body) = token_request(
        &entra,
        "common",
        &[("grant_type", "refresh_token"), ("refresh_token", rt2)],
    )
    .await;
    assert_eq!((status, aadsts(&body)), (400, 50173));
    let (_, body) = token_request(
        &entra,
        "common",
        &[("grant_type", "refresh_token"), ("refresh_token", "bogus")],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_authentication() {
    let entra = entra().await;
    let code = code_of(&entra).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", EntraIssuer::CLIENT_ID),
    ];
    let post = |form: Vec<(&'static str, String)>| {
        let url = entra.token_url("common");
        async move {
            let response = http().post(url).form(&form).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let owned = |extra: &[(&'static str, &str)]| {
        form.iter()
            .chain(extra)
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let (status, body) = post(owned(&[])).await;
    assert_eq!((status, aadsts(&body)), (401, 7000218));
    let (status, body) = post(owned(&[("client_secret", "wrong")])).await;
    assert_eq!((status, aadsts(&body)), (401, 7000215));
    // client_secret_post works (the code is still unredeemed: the client failed first).
    let (status, _) = post(owned(&[("client_secret", EntraIssuer::CLIENT_SECRET)])).await;
    assert_eq!(status, 200);
    // The secret never reaches the request log.
    assert!(
        entra
            .token_requests()
            .iter()
            .all(|r| r.get("client_secret").is_none_or(|s| s == "<redacted>"))
    );

    // A public client sends no secret.
    entra.register_app(EntraApp::new("public-client").redirect_uri(REDIRECT));
    let (_, body) = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", "x".into()),
        ("client_id", "public-client".into()),
        ("client_secret", "s".into()),
    ])
    .await;
    assert_eq!(aadsts(&body), 700025);
    let (status, body) = token_request(&entra, "common", &[("grant_type", "password")]).await;
    assert_eq!((status, aadsts(&body)), (400, 70003));
}

#[tokio::test]
async fn client_credentials_give_app_only_tokens() {
    let entra = entra().await;
    entra.register_app(
        EntraApp::new("daemon")
            .secret("daemon-secret")
            .granted_app_roles(["Tools.Run"]),
    );
    let response = http()
        .post(entra.token_url(EntraIssuer::TENANT))
        .basic_auth("daemon", Some("daemon-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", &api_scope(".default")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    let claims = tokens::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["roles"], json!(["Tools.Run"]));
    assert!(claims.get("scp").is_none());
    assert_eq!(
        claims["oid"],
        service_principal_oid("daemon", EntraIssuer::TENANT)
    );
    assert_eq!(claims["sub"], claims["oid"]);
    assert_eq!(claims["azp"], "daemon");
    assert_eq!(claims["aud"], EntraIssuer::CLIENT_ID);
}

#[tokio::test]
async fn on_behalf_of_exchanges_a_user_token() {
    let entra = entra().await;
    entra.register_app(
        EntraApp::new("downstream")
            .app_id_uri("https://downstream.example")
            .access_token_version(TokenVersion::V1)
            .scopes(["Files.Read"]),
    );
    let user = entra.signed_in_user();
    let assertion = entra.access_token(&user).scopes("mcp.tools").mint();
    let obo = |assertion: String, scope: &'static str| {
        let url = entra.token_url(EntraIssuer::TENANT);
        async move {
            let response = http()
                .post(url)
                .basic_auth(EntraIssuer::CLIENT_ID, Some(EntraIssuer::CLIENT_SECRET))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("requested_token_use", "on_behalf_of"),
                    ("assertion", &assertion),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = obo(
        assertion.clone(),
        "https://downstream.example/Files.Read offline_access",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string() && body.get("id_token").is_none());
    let claims = tokens::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://downstream.example");
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["iss"], entra.v1_issuer(EntraIssuer::TENANT));
    assert_eq!(claims["appid"], EntraIssuer::CLIENT_ID);
    assert_eq!(claims["scp"], "Files.Read");
    assert_eq!(claims["oid"], EntraIssuer::USER_OID);
    assert_eq!(claims["upn"], "ada@contoso.example");

    let (_, body) = obo(assertion, "User.Read").await;
    let graph = tokens::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(graph["aud"], GRAPH_RESOURCE);

    // An assertion for another audience, or a foreign signature, is refused.
    let other = entra.access_token(&user).audience("someone-else").mint();
    let (status, body) = obo(other, "https://downstream.example/Files.Read").await;
    assert_eq!((status, aadsts(&body)), (400, 50013));
    let foreign = tokens::sign_with(
        &mcp_auth_testkit::TestKey::rsa(3),
        json!({"kid": entra.keys().current_kid()}),
        entra.access_token(&user).to_claims(),
    );
    let (_, body) = obo(foreign, "https://downstream.example/Files.Read").await;
    assert_eq!(aadsts(&body), 50013);
}

#[tokio::test]
async fn builder_shapes() {
    let entra = entra().await;
    let user = EntraUser::new("o-1", EntraIssuer::TENANT)
        .username("o1@contoso.example")
        .roles(["Reader"])
        .groups(["g-9"]);

    let v2 = tokens::claims_of(&entra.access_token(&user).mint());
    assert_eq!(v2["ver"], "2.0");
    assert_eq!(v2["aud"], EntraIssuer::CLIENT_ID);
    assert_eq!(v2["scp"], "access_as_user");
    assert_eq!(v2["roles"], json!(["Reader"]));
    assert_eq!(v2["groups"], json!(["g-9"]));
    assert!(v2["nbf"].is_u64() && v2["exp"].as_u64() > v2["iat"].as_u64());

    let v1 = tokens::claims_of(&entra.access_token(&user).v1().group_overage().mint());
    assert_eq!(v1["ver"], "1.0");
    assert_eq!(
        v1["iss"],
        format!("https://sts.windows.net/{}/", EntraIssuer::TENANT)
    );
    assert_eq!(v1["aud"], format!("api://{}", EntraIssuer::CLIENT_ID));
    assert_eq!(v1["appid"], EntraIssuer::CLIENT_ID);
    assert_eq!(v1["upn"], "o1@contoso.example");
    assert!(v1.get("azp").is_none() && v1.get("groups").is_none());
    assert!(
        v1["_claim_sources"]["src1"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://graph.windows.net/")
    );

    let mismatch = tokens::claims_of(
        &entra
            .access_token(&user)
            .tenant(EntraIssuer::OTHER_TENANT)
            .issuer(entra.v2_issuer(EntraIssuer::TENANT))
            .mint(),
    );
    assert_eq!(mismatch["tid"], EntraIssuer::OTHER_TENANT);
    assert_eq!(mismatch["iss"], entra.v2_issuer(EntraIssuer::TENANT));

    let app = tokens::claims_of(
        &entra
            .app_token(EntraIssuer::TENANT, "daemon")
            .roles(["R"])
            .mint(),
    );
    assert_eq!(app["idtyp"], "app");
    assert!(app.get("scp").is_none() && app.get("name").is_none());
    let id = tokens::claims_of(&entra.id_token(&user, "client-x").nonce("n").v1().mint());
    assert_eq!(
        (id["ver"].as_str(), id["aud"].as_str()),
        (Some("2.0"), Some("client-x"))
    );
    assert!(id.get("scp").is_none() && id.get("groups").is_none());

    // Minted tokens verify against the served JWKS, also under an older key after rotation.
    let token = entra.access_token(&user).mint();
    let old_kid = entra.keys().current_kid();
    entra.keys().rotate();
    let old = entra
        .access_token(&user)
        .header(json!({"kid": old_kid}))
        .mint();
    for t in [token, old] {
        verify(
            &entra,
            &t,
            &entra.v2_issuer(EntraIssuer::TENANT),
            EntraIssuer::CLIENT_ID,
        )
        .await;
    }
}

async fn graph_token(entra: &EntraIssuer, client: &str, secret: &str) -> String {
    let scope = format!("{}/.default", entra.graph_url());
    let body: Value = http()
        .post(entra.token_url(EntraIssuer::TENANT))
        .basic_auth(client, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn graph_lists_groups_of_a_user_page_by_page() {
    let entra = entra().await;
    entra.register_app(
        EntraApp::new("reader")
            .secret("reader-secret")
            .granted_app_roles(["GroupMember.Read.All"]),
    );
    entra.register_app(EntraApp::new("nobody").secret("nobody-secret"));
    let groups: Vec<String> = (0..5).map(|i| format!("g-{i}")).collect();
    entra.add_user(EntraUser::new("u-1", EntraIssuer::TENANT).groups(groups.clone()));
    let token = graph_token(&entra, "reader", "reader-secret").await;
    assert_eq!(tokens::claims_of(&token)["aud"], entra.graph_url());

    let mut url = format!(
        "{}/v1.0/users/u-1/transitiveMemberOf/microsoft.graph.group?$select=id&$top=2",
        entra.graph_url()
    );
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page: Value = http()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for group in page["value"].as_array().unwrap() {
            seen.push(group["id"].as_str().unwrap().to_owned());
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, groups);

    let status = |token: Option<String>, oid: &'static str| {
        let url = format!(
            "{}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group",
            entra.graph_url()
        );
        async move {
            let mut request = http().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status(None, "u-1").await, 401);
    let user_token = entra.access_token(&entra.signed_in_user()).mint();
    assert_eq!(status(Some(user_token), "u-1").await, 401, "wrong audience");
    let unprivileged = graph_token(&entra, "nobody", "nobody-secret").await;
    assert_eq!(status(Some(unprivileged), "u-1").await, 403);
    assert_eq!(status(Some(token), "no-such-user").await, 404);
    assert_eq!(entra.graph_requests(), 7);
}
