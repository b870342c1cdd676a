//! Signing keys for tests: [`TestKey`], loaded from the committed PEM fixtures.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use crate::fixtures;

/// A key pair from the fixture pool: private and public PEM, its algorithm and its JWK.
///
/// The PEM files live in `crates/mcp-auth-testkit/fixtures/` and were generated once with
/// `openssl genpkey`; they are test material only and must never protect anything real.
///
/// ```
/// use mcp_auth_testkit::TestKey;
///
/// let key = TestKey::rsa(0);
/// let jwk = key.jwk("k1");
/// assert_eq!(jwk.common.key_id.as_deref(), Some("k1"));
/// ```
#[derive(Clone)]
pub struct TestKey {
    name: &'static str,
    alg: Algorithm,
    private_pem: &'static str,
    public_pem: &'static str,
    encoding: EncodingKey,
}

impl TestKey {
    fn load(
        name: &'static str,
        alg: Algorithm,
        (private_pem, public_pem): (&'static str, &'static str),
    ) -> Self {
        let bytes = private_pem.as_bytes();
        let encoding = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(bytes),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(bytes),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(bytes),
            AlgorithmFamily::Hmac => panic!("{name}: HMAC is not a key-pair algorithm"),
        }
        .unwrap_or_else(|e| panic!("fixture key {name} does not load: {e}"));
        Self {
            name,
            alg,
            private_pem,
            public_pem,
            encoding,
        }
    }

    /// RSA 2048 key number `index` (0-based, [`fixtures::RSA_KEYS`] of them), for RS256.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn rsa(index: usize) -> Self {
        Self::load(
            fixtures::RSA_NAMES[index],
            Algorithm::RS256,
            fixtures::rsa_pem(index),
        )
    }

    /// EC P-256 key number `index` (0-based, [`fixtures::EC_P256_KEYS`] of them), for ES256.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn ec_p256(index: usize) -> Self {
        Self::load(
            fixtures::EC_P256_NAMES[index],
            Algorithm::ES256,
            fixtures::ec_p256_pem(index),
        )
    }

    /// The EC P-384 key, for ES384.
    pub fn ec_p384() -> Self {
        Self::load("ec-p384-1", Algorithm::ES384, fixtures::ec_p384_pem())
    }

    /// Ed25519 key number `index` (0-based, [`fixtures::ED25519_KEYS`] of them), for EdDSA.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn ed25519(index: usize) -> Self {
        Self::load(
            fixtures::ED25519_NAMES[index],
            Algorithm::EdDSA,
            fixtures::ed25519_pem(index),
        )
    }

    /// Every fixture key usable with `alg`, in a fixed order (the rotation pool of a
    /// [`TestIssuer`](crate::TestIssuer)). RSA keys are used for all RS* and PS* algorithms.
    ///
    /// # Panics
    ///
    /// For HMAC algorithms, which have no key pair.
    pub fn pool(alg: Algorithm) -> Vec<Self> {
        let keys: Vec<Self> = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (0..fixtures::RSA_KEYS).map(Self::rsa).collect(),
            Algorithm::ES256 => (0..fixtures::EC_P256_KEYS).map(Self::ec_p256).collect(),
            Algorithm::ES384 => vec![Self::ec_p384()],
            Algorithm::EdDSA => (0..fixtures::ED25519_KEYS).map(Self::ed25519).collect(),
            _ => panic!("{alg:?} has no fixture key pair; for HMAC use tokens::hs256_with_secret"),
        };
        keys.into_iter().map(|key| key.with_alg(alg)).collect()
    }

    /// The same key used with another algorithm of its family (RS256 -> PS256, RS384, ...).
    ///
    /// # Panics
    ///
    /// If `alg` is not of the key's family.
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        assert_eq!(
            alg.family(),
            self.alg.family(),
            "{alg:?} does not fit key {}",
            self.name
        );
        self.alg = alg;
        self
    }

    /// The fixture file name, without extension (`rsa-1`, `ec-p256-2`, `ed25519-1`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The algorithm tokens signed with this key use.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_pem(&self) -> &'static str {
        self.private_pem
    }

    /// The public key, SPKI PEM.
    pub fn public_pem(&self) -> &'static str {
        self.public_pem
    }

    /// The signing key for jsonwebtoken.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The verification key for jsonwebtoken, from the public PEM.
    pub fn decoding_key(&self) -> DecodingKey {
        let bytes = self.public_pem.as_bytes();
        match self.alg.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(bytes),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(bytes),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(bytes),
            AlgorithmFamily::Hmac => unreachable!("TestKey is never an HMAC key"),
        }
        .unwrap_or_else(|e| panic!("fixture public key {} does not load: {e}", self.name))
    }

    /// The public JWK of this key with `kid`, `alg` and `use: sig` set.
    pub fn jwk(&self, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg)
            .unwrap_or_else(|e| panic!("no JWK for fixture key {}: {e}", self.name));
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }

    /// [`TestKey::jwk`] as JSON.
    pub fn jwk_json(&self, kid: &str) -> serde_json::Value {
        serde_json::to_value(self.jwk(kid))
            .unwrap_or_else(|e| panic!("JWK of {} does not serialize: {e}", self.name))
    }
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("name", &self.name)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn every_fixture_signs_and_verifies_via_pem_and_jwk() {
        let mut keys = TestKey::pool(Algorithm::RS256);
        keys.extend(TestKey::pool(Algorithm::ES256));
        keys.extend(TestKey::pool(Algorithm::ES384));
        keys.extend(TestKey::pool(Algorithm::EdDSA));
        keys.push(TestKey::rsa(0).with_alg(Algorithm::PS256));
        assert_eq!(
            keys.len(),
            fixtures::RSA_KEYS + fixtures::EC_P256_KEYS + 1 + fixtures::ED25519_KEYS + 1
        );
        for key in keys {
            let claims = json!({"sub": "x", "exp": 4_000_000_000u64});
            let token = encode(&Header::new(key.alg()), &claims, key.encoding_key()).unwrap();
            let mut validation = Validation::new(key.alg());
            validation.validate_aud = false;
            let from_pem = decode::<Value>(&token, &key.decoding_key(), &validation).unwrap();
            assert_eq!(from_pem.claims["sub"], "x", "{key:?}");
            let from_jwk = DecodingKey::from_jwk(&key.jwk("k")).unwrap();
            decode::<Value>(&token, &from_jwk, &validation).unwrap();
        }
    }

    #[test]
    fn keys_in_a_pool_differ() {
        let pool = TestKey::pool(Algorithm::RS256);
        let jwks: Vec<_> = pool.iter().map(|k| k.jwk_json("k")).collect();
        for (i, a) in jwks.iter().enumerate() {
            for b in &jwks[i + 1..] {
                assert_ne!(a["n"], b["n"]);
            }
        }
    }

    #[test]
    fn debug_hides_key_material() {
        let out = format!("{:?}", TestKey::ed25519(0));
        assert!(!out.contains("PRIVATE"));
        assert!(out.contains("ed25519-1"));
    }
}
