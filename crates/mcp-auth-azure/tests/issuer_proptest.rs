//! Properties of the issuer-template / `tid` matching: the issuer of a tenant matches only
//! that tenant, in every cloud and version, and the policy's answer follows the allowlist.

use mcp_auth_azure::{Cloud, EntraConfig, EntraIssuerPolicy, TokenVersion, issuer_matches};
use mcp_auth_core::TokenRejection;
use mcp_auth_core::jwt::IssuerPolicy;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CLIENT: &str = "3f1c2d3e-0000-4000-8000-000000000001";

fn guid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

fn cloud() -> impl Strategy<Value = Cloud> {
    prop_oneof![
        Just(Cloud::Public),
        Just(Cloud::UsGovernment),
        Just(Cloud::China),
        Just(Cloud::custom(
            "http://127.0.0.1:8080",
            "https://sts.example",
            "http://127.0.0.1:8080"
        )),
    ]
}

fn claims(tid: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("tid".into(), json!(tid));
    map
}

proptest! {
    #[test]
    fn a_filled_template_matches_its_tenant_only(
        base in "https?://[a-z.]{1,20}(:[0-9]{1,5})?",
        tid in "[^\\s]{1,40}",
        other in "[^\\s]{1,40}",
        v2 in any::<bool>(),
    ) {
        let suffix = if v2 { "/v2.0" } else { "/" };
        let iss = format!("{base}/{tid}{suffix}");
        prop_assert!(issuer_matches(&iss, &base, &tid, suffix));
        prop_assert_eq!(issuer_matches(&iss, &base, &other, suffix), other == tid);
        let (longer, prefixed) = (format!("{iss}x"), format!("x{iss}"));
        prop_assert!(!issuer_matches(&longer, &base, &tid, suffix));
        prop_assert!(!issuer_matches(&prefixed, &base, &tid, suffix));
        prop_assert!(!issuer_matches(&iss, &base, "", suffix));
    }

    #[test]
    fn arbitrary_issuers_never_match_a_guid_tenant_they_do_not_name(
        iss in ".{0,80}",
        tid in guid(),
        cloud in cloud(),
    ) {
        let policy = EntraIssuerPolicy::from_config(
            &EntraConfig::new("common", CLIENT).cloud(cloud.clone()).allow_any_tenant_dangerously(),
        ).unwrap();
        let named = iss == cloud.v1_issuer(&tid) || iss == cloud.v2_issuer(&tid);
        prop_assert_eq!(policy.issuer_fits_tenant(&iss, &tid), named);
    }

    #[test]
    fn the_policy_follows_iss_tid_and_the_allowlist(
        allowed in prop::collection::vec(guid(), 1..4),
        tid in guid(),
        issuer_tid in guid(),
        cloud in cloud(),
        version in prop_oneof![Just(TokenVersion::V1), Just(TokenVersion::V2)],
        accepted_both in any::<bool>(),
        organizations in any::<bool>(),
    ) {
        let versions = if accepted_both {
            vec![TokenVersion::V1, TokenVersion::V2]
        } else {
            vec![version]
        };
        let tenant = if organizations { "organizations" } else { "common" };
        let config = EntraConfig::new(tenant, CLIENT)
            .cloud(cloud.clone())
            .allowed_tenants(allowed.clone())
            .token_versions(versions);
        let policy = EntraIssuerPolicy::from_config(&config).unwrap();
        let iss = match version {
            TokenVersion::V1 => cloud.v1_issuer(&issuer_tid),
            TokenVersion::V2 => cloud.v2_issuer(&issuer_tid),
        };
        let expected = if issuer_tid != tid {
            Err(TokenRejection::WrongIssuer)
        } else if allowed.contains(&tid) {
            Ok(())
        } else {
            Err(TokenRejection::TenantNotAllowed)
        };
        prop_assert_eq!(policy.check(&iss, &claims(&tid)), expected);
        // The other version's issuer is accepted only when both versions are.
        let other_version = match version {
            TokenVersion::V1 => cloud.v2_issuer(&tid),
            TokenVersion::V2 => cloud.v1_issuer(&tid),
        };
        let other = policy.check(&other_version, &claims(&tid));
        prop_assert_eq!(
            other == Err(TokenRejection::WrongIssuer),
            !accepted_both,
        );
        prop_assert_eq!(policy.is_entra_issuer(&iss), true);
    }

    #[test]
    fn single_tenant_takes_its_tenant_in_any_case(tid in guid(), upper in any::<bool>()) {
        let configured = if upper { tid.to_uppercase() } else { tid.clone() };
        let policy = EntraIssuerPolicy::from_config(&EntraConfig::new(configured, CLIENT)).unwrap();
        prop_assert!(policy.check(&Cloud::Public.v2_issuer(&tid), &claims(&tid)).is_ok());
        prop_assert!(policy.tenant_allowed(&tid));
    }
}

#[test]
fn routing_hint_needs_a_guid_tenant() {
    let policy = EntraIssuerPolicy::from_config(
        &EntraConfig::new("common", CLIENT).allow_any_tenant_dangerously(),
    )
    .unwrap();
    let tid = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";
    assert!(policy.is_entra_issuer(&format!("https://sts.windows.net/{tid}/")));
    assert!(policy.is_entra_issuer(&format!("https://login.microsoftonline.com/{tid}/v2.0")));
    assert!(!policy.is_entra_issuer("https://login.microsoftonline.com/{tenantid}/v2.0"));
    assert!(!policy.is_entra_issuer(&format!("https://login.microsoftonline.us/{tid}/v2.0")));
    assert!(!policy.is_entra_issuer("https://accounts.google.com"));
    // Without a tid claim at all, the policy asks for one.
    assert_eq!(
        policy.check(&format!("https://sts.windows.net/{tid}/"), &Map::new()),
        Err(TokenRejection::MissingClaim("tid"))
    );
}
