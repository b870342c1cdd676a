//! Raw token builders, including deliberately bad tokens (unsigned, alg confusion, tampered,
//! signed with a foreign key, malformed).
//!
//! Header and claim arguments are JSON objects merged over defaults: a key set to `null`
//! removes that field. Nothing here checks that the result makes sense; that is the point.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::keys::TestKey;

/// Merges the object `overrides` over the object `base`: fields set to `null` are removed,
/// others replace or add. A non-object `overrides` replaces `base` entirely.
pub fn merge(base: Value, overrides: Value) -> Value {
    match (base, overrides) {
        (Value::Object(mut base), Value::Object(overrides)) => {
            for (name, value) in overrides {
                if value.is_null() {
                    base.remove(&name);
                } else {
                    base.insert(name, value);
                }
            }
            Value::Object(base)
        }
        (base, Value::Null) => base,
        (_, overrides) => overrides,
    }
}

/// Base64url (no padding) of the JSON serialization of `value`.
pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The signing input `<b64 header>.<b64 claims>`, without signature.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64_json(header), b64_json(claims))
}

pub(crate) fn alg_name(alg: Algorithm) -> Value {
    serde_json::to_value(alg).unwrap_or(Value::Null)
}

fn sign_input(input: &str, key: &EncodingKey, alg: Algorithm) -> Option<String> {
    jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).ok()
}

/// Signs `claims` (taken as they are, no defaults) with `key`.
///
/// `header` is merged over `{"alg": <key alg>, "typ": "JWT"}`; set `kid` here (a foreign key
/// under a known `kid` is the classic test). If the header's `alg` names another algorithm
/// the key can sign with (RS384 for an RSA key), that algorithm is used; otherwise (`none`,
/// `HS256`, nonsense) the header keeps the claimed `alg` and the signature is made with the
/// key's own algorithm, so the token lies about how it was signed.
#[expect(
    clippy::needless_pass_by_value,
    reason = "taken by value like the header, so callers pass json!(...) literals directly"
)]
pub fn sign_with(key: &TestKey, header: Value, claims: Value) -> String {
    let header = merge(json!({"alg": alg_name(key.alg()), "typ": "JWT"}), header);
    sign_exact(key, &header, &claims)
}

/// Signs `claims` with `key` under exactly `header` (no defaults merged in). The signing
/// algorithm is chosen as in [`sign_with`]; a header without `alg` is signed with the key's.
pub fn sign_exact(key: &TestKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let claimed: Option<Algorithm> = header
        .get("alg")
        .and_then(|alg| serde_json::from_value(alg.clone()).ok());
    let signature = claimed
        .filter(|alg| alg.family() == key.alg().family())
        .and_then(|alg| sign_input(&input, key.encoding_key(), alg))
        .or_else(|| sign_input(&input, key.encoding_key(), key.alg()))
        .unwrap_or_else(|| panic!("fixture key {} cannot sign", key.name()));
    format!("{input}.{signature}")
}

/// An unsigned token: header merged over `{"alg": "none", "typ": "JWT"}`, empty signature
/// (`<header>.<claims>.`).
#[expect(
    clippy::needless_pass_by_value,
    reason = "taken by value like the header, so callers pass json!(...) literals directly"
)]
pub fn unsigned(header: Value, claims: Value) -> String {
    let header = merge(json!({"alg": "none", "typ": "JWT"}), header);
    format!("{}.", signing_input(&header, &claims))
}

/// A token MACed with HMAC-SHA256 under `secret`; header merged over
/// `{"alg": "HS256", "typ": "JWT"}`.
///
/// The alg-confusion attack passes the issuer's RSA public key PEM as `secret`:
/// `hs256_with_secret(json!({"kid": kid}), claims, key.public_pem().as_bytes())`.
#[expect(
    clippy::needless_pass_by_value,
    reason = "taken by value like the header, so callers pass json!(...) literals directly"
)]
pub fn hs256_with_secret(header: Value, claims: Value, secret: &[u8]) -> String {
    let header = merge(json!({"alg": "HS256", "typ": "JWT"}), header);
    let input = signing_input(&header, &claims);
    let signature = sign_input(&input, &EncodingKey::from_secret(secret), Algorithm::HS256)
        .unwrap_or_else(|| panic!("HMAC signing failed"));
    format!("{input}.{signature}")
}

/// Decodes the claims segment of a compact JWS without verifying anything.
///
/// # Panics
///
/// If `token` has no valid base64url JSON object as its second segment.
pub fn claims_of(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("token has no claims segment"));
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("claims segment is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("claims are not JSON: {e}"))
}

/// Decodes the header segment of a compact JWS without verifying anything.
///
/// # Panics
///
/// If the first segment is not a base64url JSON object.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_else(|e| panic!("header segment is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("header is not JSON: {e}"))
}

/// Replaces the claims of `token` by its claims merged with `changes`, keeping the original
/// header and signature, so the signature no longer matches.
///
/// # Panics
///
/// If `token` is not a three-segment JWS with JSON claims.
pub fn tamper_payload(token: &str, changes: Value) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS");
    };
    let claims = merge(claims_of(token), changes);
    format!("{header}.{}.{signature}", b64_json(&claims))
}

/// Structurally broken tokens, each with a short label: wrong segment counts, bad base64,
/// non-JSON header or claims, a JSON array header, empty segments.
pub fn malformed() -> Vec<(&'static str, String)> {
    let header = b64_json(&json!({"alg": "RS256", "typ": "JWT", "kid": "k"}));
    let claims = b64_json(&json!({"sub": "x", "exp": 4_000_000_000u64}));
    let not_json = URL_SAFE_NO_PAD.encode("not json");
    let array = b64_json(&json!(["RS256"]));
    vec![
        ("empty", String::new()),
        ("one segment", header.clone()),
        ("two segments", format!("{header}.{claims}")),
        ("four segments", format!("{header}.{claims}.c2ln.c2ln")),
        ("empty segments", "..".to_owned()),
        ("bad base64 header", format!("@@@.{claims}.c2ln")),
        ("bad base64 claims", format!("{header}.!!!.c2ln")),
        ("bad base64 signature", format!("{header}.{claims}.***")),
        ("padded base64", format!("{header}=.{claims}.c2ln")),
        ("header not json", format!("{not_json}.{claims}.c2ln")),
        ("claims not json", format!("{header}.{not_json}.c2ln")),
        ("header is an array", format!("{array}.{claims}.c2ln")),
        ("whitespace", format!("{header} .{claims}.c2ln")),
        ("non-ascii", format!("{header}.{claims}.sig\u{e9}")),
        ("nul byte", format!("{header}\0.{claims}.c2ln")),
    ]
}

/// A base64url segment of `len` bytes, for oversized tokens
/// (`format!("{h}.{}.{s}", tokens::filler(20_000))`).
pub fn filler(len: usize) -> String {
    "A".repeat(len)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    use super::*;

    fn claims() -> Value {
        json!({"sub": "mallory", "exp": 4_000_000_000u64})
    }

    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.validate_aud = false;
        v
    }

    #[test]
    fn merge_removes_nulls_and_replaces() {
        let merged = merge(
            json!({"a": 1, "b": 2}),
            json!({"b": null, "c": 3, "a": "x"}),
        );
        assert_eq!(merged, json!({"a": "x", "c": 3}));
        assert_eq!(merge(json!({"a": 1}), Value::Null), json!({"a": 1}));
    }

    #[test]
    fn sign_with_uses_claimed_alg_of_the_same_family() {
        let key = TestKey::rsa(1);
        let token = sign_with(&key, json!({"alg": "RS384", "kid": "x"}), claims());
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), Some("x"));
        decode::<Value>(&token, &key.decoding_key(), &validation(Algorithm::RS384)).unwrap();
    }

    #[test]
    fn sign_with_foreign_alg_keeps_the_lie() {
        let key = TestKey::ed25519(0);
        let token = sign_with(&key, json!({"alg": "RS256"}), claims());
        assert_eq!(header_of(&token)["alg"], "RS256");
        let err = decode::<Value>(
            &token,
            &TestKey::rsa(0).decoding_key(),
            &validation(Algorithm::RS256),
        );
        assert!(err.is_err());
    }

    #[test]
    fn unsigned_has_alg_none_and_empty_signature() {
        let token = unsigned(json!({"kid": "k"}), claims());
        assert!(token.ends_with('.'));
        assert_eq!(header_of(&token)["alg"], "none");
        assert_eq!(claims_of(&token)["sub"], "mallory");
    }

    #[test]
    fn hs256_with_public_pem_verifies_only_as_hmac() {
        let key = TestKey::rsa(0);
        let secret = key.public_pem().as_bytes();
        let token = hs256_with_secret(json!({"kid": "k"}), claims(), secret);
        decode::<Value>(
            &token,
            &DecodingKey::from_secret(secret),
            &validation(Algorithm::HS256),
        )
        .unwrap();
        assert!(
            decode::<Value>(&token, &key.decoding_key(), &validation(Algorithm::RS256)).is_err()
        );
    }

    #[test]
    fn tampered_token_keeps_signature_and_fails() {
        let key = TestKey::ec_p256(0);
        let token = sign_with(&key, json!({}), claims());
        let tampered = tamper_payload(&token, json!({"sub": "admin"}));
        assert_eq!(claims_of(&tampered)["sub"], "admin");
        assert_eq!(token.rsplit('.').next(), tampered.rsplit('.').next());
        let v = validation(Algorithm::ES256);
        decode::<Value>(&token, &key.decoding_key(), &v).unwrap();
        assert!(decode::<Value>(&tampered, &key.decoding_key(), &v).is_err());
    }

    #[test]
    fn malformed_samples_all_fail_to_decode() {
        let key = TestKey::rsa(0);
        for (label, token) in malformed() {
            assert!(
                decode::<Value>(&token, &key.decoding_key(), &validation(Algorithm::RS256))
                    .is_err(),
                "{label}"
            );
        }
    }
}
