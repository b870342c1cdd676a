//! Group overage resolved through the Graph stand-in of the testkit's Entra authority:
//! client-credentials token per tenant, paging, caching, refusals.
#![cfg(feature = "graph")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions should fail loudly too"
)]

use std::sync::Arc;

use mcp_auth_azure::GroupResolver as _;
use mcp_auth_azure::{Cloud, EntraAuthenticator, EntraConfig, GraphGroupResolver};
use mcp_auth_core::jwks::JwksConfig;
use mcp_auth_core::{AuthError, Secret};
use mcp_auth_testkit::entra::{EntraApp, EntraIssuer, EntraUser};

const TENANT: &str = EntraIssuer::TENANT;
const CLIENT: &str = EntraIssuer::CLIENT_ID;
const ADMINS: &str = "a0000000-0000-4000-8000-000000000999";

fn cloud(entra: &EntraIssuer) -> Cloud {
    Cloud::custom(entra.authority(), entra.v1_issuer_base(), entra.authority())
}

fn resolver(entra: &EntraIssuer) -> GraphGroupResolver {
    GraphGroupResolver::builder(
        cloud(entra),
        CLIENT,
        Secret::new(EntraIssuer::CLIENT_SECRET),
    )
    .graph_url(entra.graph_url())
    .build()
    .unwrap()
}

fn authenticator(entra: &EntraIssuer) -> EntraAuthenticator {
    let config = EntraConfig::new(TENANT, CLIENT)
        .cloud(cloud(entra))
        .map_group(ADMINS, ["admin"]);
    EntraAuthenticator::builder(config)
        .jwks_config(JwksConfig::default().background_refresh(false))
        .group_resolver(Arc::new(resolver(entra)))
        .build()
        .unwrap()
}

fn guid(n: usize) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

/// The default app, allowed to read group memberships (or not).
fn register_api(entra: &EntraIssuer, may_read_groups: bool) {
    let roles: &[&str] = if may_read_groups {
        &["GroupMember.Read.All"]
    } else {
        &[]
    };
    entra.register_app(
        EntraApp::new(CLIENT)
            .secret(EntraIssuer::CLIENT_SECRET)
            .scopes(["access_as_user"])
            .granted_app_roles(roles.iter().copied()),
    );
}

#[tokio::test]
async fn overage_groups_come_from_graph_across_pages() {
    let entra = EntraIssuer::start().await;
    register_api(&entra, true);
    // 1 200 groups: two pages of 999; the mapped one is on the second.
    let mut groups: Vec<String> = (0..1200).map(guid).collect();
    groups[1100] = ADMINS.to_owned();
    let many = EntraUser::new(guid(1), TENANT)
        .groups(groups)
        .group_overage();
    let other = EntraUser::new(guid(2), TENANT)
        .groups([ADMINS])
        .group_overage();
    entra.add_user(many.clone());
    entra.add_user(other.clone());
    let auth = authenticator(&entra);

    let p = auth
        .verify(&entra.access_token(&many).mint())
        .await
        .unwrap();
    assert!(p.has_role("admin"), "{p:?}");
    assert_eq!(entra.graph_requests(), 2);
    let client_credentials = || {
        entra
            .token_requests()
            .iter()
            .filter(|r| r["grant_type"] == "client_credentials")
            .count()
    };
    assert_eq!(client_credentials(), 1);

    // The answer is cached per user; the app token per tenant.
    auth.verify(&entra.access_token(&many).v1().mint())
        .await
        .unwrap();
    assert_eq!(entra.graph_requests(), 2);
    let q = auth
        .verify(&entra.access_token(&other).mint())
        .await
        .unwrap();
    assert!(q.has_role("admin"));
    assert_eq!((entra.graph_requests(), client_credentials()), (3, 1));
}

#[tokio::test]
async fn graph_refusals_are_503() {
    let entra = EntraIssuer::start().await;
    register_api(&entra, false);
    let user = EntraUser::new(guid(7), TENANT)
        .groups([ADMINS])
        .group_overage();
    entra.add_user(user.clone());
    let auth = authenticator(&entra);
    let err = auth
        .verify(&entra.access_token(&user).mint())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unavailable { .. }), "{err}");
    assert_eq!(entra.graph_requests(), 1);

    // The error names the status, never the token or the secret.
    let direct = resolver(&entra).groups(TENANT, &guid(7)).await.unwrap_err();
    let text = direct.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(!text.contains(EntraIssuer::CLIENT_SECRET));

    // A wrong secret fails at the token endpoint.
    let wrong = GraphGroupResolver::builder(cloud(&entra), CLIENT, Secret::new("wrong"))
        .graph_url(entra.graph_url())
        .build()
        .unwrap();
    let text = wrong
        .groups(TENANT, &guid(7))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("401") && text.contains("invalid_client"),
        "{text}"
    );
    // Ids that are not GUIDs never reach Graph.
    assert!(resolver(&entra).groups(TENANT, "../../me").await.is_err());
    assert_eq!(entra.graph_requests(), 2);
}

#[test]
fn builder_checks() {
    let custom = Cloud::custom(
        "https://login.example",
        "https://sts.example",
        "https://login.example",
    );
    let secret = || Secret::new("s");
    assert!(
        GraphGroupResolver::builder(custom.clone(), CLIENT, secret())
            .build()
            .is_err()
    );
    assert!(
        GraphGroupResolver::builder(custom.clone(), CLIENT, secret())
            .graph_url("http://graph.example")
            .build()
            .is_err()
    );
    assert!(
        GraphGroupResolver::builder(custom, CLIENT, secret())
            .graph_url("https://graph.example/")
            .build()
            .is_ok()
    );
    assert!(
        GraphGroupResolver::builder(Cloud::Public, "app", secret())
            .build()
            .is_err()
    );
    assert!(
        GraphGroupResolver::builder(Cloud::Public, CLIENT, Secret::new(""))
            .build()
            .is_err()
    );
    let resolver = GraphGroupResolver::builder(Cloud::China, CLIENT, secret())
        .build()
        .unwrap();
    let debug = format!("{resolver:?}");
    assert!(debug.contains("microsoftgraph.chinacloudapi.cn") && !debug.contains("\"s\""));
}
