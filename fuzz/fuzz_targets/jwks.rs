//! Fuzz target: arbitrary bytes as a JWKS document and as a single JWK. Bad keys must be
//! skipped or refused, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::jwt::{KeySet, VerifyingKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = KeySet::from_jwks_json(data, 64) {
        assert!(keys.len() <= 64);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = VerifyingKey::from_jwk_json(text);
        let _ = VerifyingKey::from_pem(text);
    }
});
