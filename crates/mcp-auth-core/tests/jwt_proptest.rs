//! Property tests: arbitrary bytes and dotted strings as tokens never panic and never verify.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration test: a failure should stop the test loudly"
)]

use std::sync::{Arc, OnceLock};

use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet, VerifyingKey};
use mcp_auth_core::{AuthError, Authenticator, Credential, Secret};
use mcp_auth_testkit::fixtures;
use proptest::prelude::*;

struct Fixture {
    validator: JwtValidator,
    keys: KeySet,
    auth: JwtAuthenticator,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let validator = JwtValidator::builder()
            .issuer("https://issuer.test")
            .audience("mcp-test")
            .build()
            .unwrap();
        let keys = KeySet::new()
            .with(
                VerifyingKey::from_pem(fixtures::rsa_public_pem(0))
                    .unwrap()
                    .with_kid("k1"),
            )
            .with(VerifyingKey::from_pem(fixtures::ec_p256_pem(0).1).unwrap());
        let auth = JwtAuthenticator::builder(validator.clone(), Arc::new(keys.clone())).build();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Fixture {
            validator,
            keys,
            auth,
            runtime,
        }
    })
}

fn check(token: &str) {
    let f = fixture();
    assert!(f.validator.validate(token, &f.keys).is_err());
    let result = f
        .runtime
        .block_on(f.auth.authenticate(&Credential::Bearer(Secret::new(token))));
    match result {
        Err(AuthError::InvalidToken(_)) => {}
        other => panic!("unexpected result {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn dotted_strings_never_panic(token in "[A-Za-z0-9_\\-=+/.!*]{0,400}") {
        check(&token);
    }

    #[test]
    fn base64_segments_never_panic(
        header in "[A-Za-z0-9_-]{0,120}",
        payload in "[A-Za-z0-9_-]{0,300}",
        signature in "[A-Za-z0-9_-]{0,400}",
    ) {
        check(&format!("{header}.{payload}.{signature}"));
    }

    #[test]
    fn json_headers_never_panic(
        alg in prop_oneof![
            Just("RS256"), Just("ES256"), Just("HS256"), Just("none"), Just("EdDSA"), Just("x")
        ],
        kid in proptest::option::of("[a-z0-9]{0,8}"),
        payload in "[A-Za-z0-9_-]{0,200}",
        signature in "[A-Za-z0-9_-]{0,400}",
    ) {
        use base64::Engine as _;
        let header = serde_json::json!({"alg": alg, "kid": kid});
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        check(&format!("{header}.{payload}.{signature}"));
    }
}
