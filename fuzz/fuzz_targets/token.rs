//! Fuzz target: arbitrary bytes as a bearer token through the JWT validator (parse, key
//! lookup, signature and claim checks). It must never panic and never accept.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::Secret;
use mcp_auth_core::jwt::{Algorithm, JwtValidator, KeySet, VerifyingKey};

struct Fixture {
    validator: JwtValidator,
    keys: KeySet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let validator = JwtValidator::builder()
            .issuer("https://issuer.fuzz")
            .audience("mcp-fuzz")
            .algorithms([
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
                Algorithm::HS256,
            ])
            .required_type("at+jwt")
            .build()
            .expect("valid validator configuration");
        let pem = |name: &str| {
            let path = format!(
                "{}/../crates/mcp-auth-core/testdata/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(path).expect("fixture key present")
        };
        let hmac = Secret::new("fuzz-secret-fuzz-secret-fuzz-secret!");
        let keys = KeySet::new()
            .with(
                VerifyingKey::from_pem(pem("rsa_public.pem"))
                    .expect("RSA key")
                    .with_kid("rsa"),
            )
            .with(
                VerifyingKey::from_pem(pem("ec_p256_public.pem"))
                    .expect("EC key")
                    .with_kid("ec"),
            )
            .with(VerifyingKey::from_pem(pem("ed25519_public.pem")).expect("Ed key"))
            .with(
                VerifyingKey::hmac(&hmac, Algorithm::HS256)
                    .expect("HMAC key")
                    .with_kid("hs"),
            );
        Fixture { validator, keys }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let token = String::from_utf8_lossy(data);
    if let Ok(parsed) = fixture.validator.parse(&token) {
        let _ = (parsed.algorithm(), parsed.kid());
    }
    assert!(fixture.validator.validate(&token, &fixture.keys).is_err());
});
