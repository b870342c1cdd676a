//! The local issuer's signing key: generated at start-up (Ed25519 or P-256) or loaded from PEM.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use super::IssuerError;

/// The algorithm of a key the local issuer generates for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GeneratedKeyAlgorithm {
    /// Ed25519 (JWS `EdDSA`): small keys, fast signing and verification.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (JWS `ES256`), for verifiers without EdDSA support.
    ES256,
}

/// A private signing key with its public JWK and key id.
///
/// The `kid` defaults to the RFC 7638 SHA-256 thumbprint of the public JWK, so the same key
/// always gets the same `kid`. `Debug` shows only the algorithm and the `kid`.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// Generates a fresh key pair with the operating system's random source.
    pub fn generate(alg: GeneratedKeyAlgorithm) -> Result<Self, IssuerError> {
        let rng = SystemRandom::new();
        match alg {
            GeneratedKeyAlgorithm::EdDSA => {
                // PKCS#8 v1 (seed only) is the form jsonwebtoken derives the public JWK from.
                let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&rng)
                    .map_err(|_| IssuerError::KeyGeneration)?;
                Self::from_encoding_key(Algorithm::EdDSA, EncodingKey::from_ed_der(pkcs8.as_ref()))
            }
            GeneratedKeyAlgorithm::ES256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| IssuerError::KeyGeneration)?;
                Self::from_encoding_key(Algorithm::ES256, EncodingKey::from_ec_der(pkcs8.as_ref()))
            }
        }
    }

    /// Loads a PKCS#8 (or, for RSA, PKCS#1) private key in PEM form for `alg`.
    ///
    /// HMAC algorithms are refused: the local issuer publishes a JWKS, so it signs with a key
    /// pair.
    pub fn from_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, IssuerError> {
        let encoding = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => {
                return Err(IssuerError::Config("HMAC keys cannot be published"));
            }
        }
        .map_err(IssuerError::Key)?;
        Self::from_encoding_key(alg, encoding)
    }

    fn from_encoding_key(alg: Algorithm, encoding: EncodingKey) -> Result<Self, IssuerError> {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(IssuerError::Key)?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(IssuerError::Key)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(IssuerError::Key)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let key = Self {
            alg,
            kid,
            encoding,
            decoding,
            jwk,
        };
        key.check_signs()?;
        Ok(key)
    }

    /// Signs a probe message so a key that does not fit `alg` (an RSA key under ES256, a
    /// P-384 key under ES256) is refused at start-up rather than on the first token.
    fn check_signs(&self) -> Result<(), IssuerError> {
        jsonwebtoken::crypto::sign(b"probe", &self.encoding, self.alg)
            .map(drop)
            .map_err(IssuerError::Key)
    }

    /// Replaces the key id (the default is the RFC 7638 thumbprint).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self.jwk.common.key_id = Some(self.kid.clone());
        self
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, in the `kid` header of every token and in the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public verification key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    pub(super) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}
