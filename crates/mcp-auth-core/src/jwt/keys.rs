//! Verification keys: [`VerifyingKey`] (PEM, JWK, HMAC secret) and [`KeySet`], the lookup by `kid`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, RsaParameters,
    RsaPublicKeyComponents, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::credential::Secret;
use crate::error::{AuthError, TokenRejection};

/// Why a key could not be loaded or a verifier could not be configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// The PEM text is not a public key of a supported type (RSA, EC P-256/P-384, Ed25519).
    #[error("not a supported PEM public key: {0}")]
    InvalidPem(&'static str),
    /// The JWK is malformed or of an unsupported type or curve.
    #[error("unsupported or malformed JWK: {0}")]
    InvalidJwk(&'static str),
    /// The key is meant for encryption, or its `key_ops` exclude verification.
    #[error("key is not meant for signature verification")]
    NotForSignature,
    /// The key's declared algorithm does not fit its type (for example `alg: HS256` on an RSA key).
    #[error("key algorithm does not fit the key type")]
    AlgorithmMismatch,
    /// The RSA modulus is shorter than 2048 bits.
    #[error("RSA key shorter than 2048 bits")]
    WeakKey,
    /// The HMAC secret is shorter than the hash output of its algorithm (RFC 7518 section 3.2).
    #[error("HMAC secret shorter than {0} bytes")]
    WeakSecret(usize),
    /// A required setting is missing or invalid.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

/// The type of a verification key; it decides which algorithms the key may verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An RSA public key: RS256/384/512 and PS256/384/512.
    Rsa,
    /// An EC public key on P-256: ES256 only.
    EcP256,
    /// An EC public key on P-384: ES384 only.
    EcP384,
    /// An Ed25519 public key: EdDSA only.
    Ed25519,
    /// A shared HMAC secret: HS256/384/512, only when configured explicitly.
    Hmac,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`. This is the alg-confusion defence: an
    /// RSA or EC public key is never used as an HMAC secret.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::{ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512};
        use Algorithm::{RS256, RS384, RS512};
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
            Self::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

/// The RSA algorithms with their aws-lc-rs parameters, in the order of [`Parsed::Rsa`].
const RSA_ALGORITHMS: [(Algorithm, &RsaParameters); 6] = [
    (Algorithm::RS256, &RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &RSA_PSS_2048_8192_SHA512),
];

/// The longest signature accepted, in bytes: RSA with an 8192-bit modulus.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// The key in the form aws-lc-rs verifies with, parsed once when the key is loaded.
///
/// `jsonwebtoken::crypto::verify` rebuilds the key for every token: it clones the key
/// material, boxes a verifier, and for RSA builds a new `RSA` object whose Montgomery
/// constants are computed again on first use. A parsed key keeps those across tokens.
#[derive(Clone)]
enum Parsed {
    /// One parsed key per algorithm of [`RSA_ALGORITHMS`], in that order (the hash and the
    /// padding are part of an aws-lc-rs verification algorithm).
    Rsa(Arc<[ParsedPublicKey]>),
    /// An EC or Ed25519 key, which verifies exactly one algorithm.
    Single(ParsedPublicKey),
    /// An HMAC key for the one algorithm the secret was configured with.
    Hmac(Box<hmac::Key>),
}

impl Parsed {
    fn rsa(components: &RsaPublicKeyComponents<&[u8]>) -> Option<Self> {
        let keys = RSA_ALGORITHMS
            .iter()
            .map(|(_, params)| components.to_parsed_public_key(params).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self::Rsa(keys.into()))
    }

    fn single(algorithm: &'static dyn VerificationAlgorithm, bytes: &[u8]) -> Option<Self> {
        ParsedPublicKey::new(algorithm, bytes)
            .ok()
            .map(Self::Single)
    }

    /// Checks `signature` over `message`; `alg` has already been checked to fit the key.
    fn verify(&self, message: &[u8], signature: &[u8], alg: Algorithm) -> bool {
        match self {
            Self::Rsa(keys) => RSA_ALGORITHMS
                .iter()
                .position(|(a, _)| *a == alg)
                .and_then(|i| keys.get(i))
                .is_some_and(|key| key.verify_sig(message, signature).is_ok()),
            Self::Single(key) => key.verify_sig(message, signature).is_ok(),
            Self::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }
}

/// One key that verifies token signatures.
///
/// Built from a PEM public key, a JWK, or an explicit HMAC secret. The key remembers its type
/// and, when pinned (a JWK `alg`, or [`VerifyingKey::with_algorithm`]), its single algorithm;
/// a token whose `alg` does not fit is rejected before any cryptography runs. The key is
/// parsed for verification once, when it is loaded: a key aws-lc-rs refuses is refused here.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    kind: KeyKind,
    algorithm: Option<Algorithm>,
    key: DecodingKey,
    parsed: Parsed,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Minimum RSA modulus length in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

fn rsa_modulus_len(n: &[u8]) -> usize {
    n.iter().skip_while(|b| **b == 0).count()
}

fn pem_is_public(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    let text = text.trim_start();
    text.starts_with("-----BEGIN PUBLIC KEY-----")
        || text.starts_with("-----BEGIN RSA PUBLIC KEY-----")
}

impl VerifyingKey {
    /// Loads a PEM public key: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC on P-256 or P-384,
    /// or Ed25519. Private keys and certificates are refused.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtConfigError> {
        let pem = pem.as_ref();
        if !pem_is_public(pem) {
            return Err(JwtConfigError::InvalidPem("expected a PUBLIC KEY block"));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            let der = key
                .try_get_as_bytes()
                .map_err(|_| JwtConfigError::InvalidPem("RSA key"))?;
            let (n, e) = (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(der)
            .map_err(|_| JwtConfigError::InvalidPem("RSA key"))?;
            if rsa_modulus_len(&n) < MIN_RSA_MODULUS_BYTES {
                return Err(JwtConfigError::WeakKey);
            }
            let parsed = Parsed::rsa(&RsaPublicKeyComponents { n: &n, e: &e })
                .ok_or(JwtConfigError::InvalidPem("RSA key"))?;
            return Ok(Self::new(KeyKind::Rsa, key, parsed));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            let point = key.try_get_as_bytes().unwrap_or_default();
            let (kind, algorithm) = match point.len() {
                65 => (KeyKind::EcP256, &ECDSA_P256_SHA256_FIXED),
                97 => (KeyKind::EcP384, &ECDSA_P384_SHA384_FIXED),
                _ => return Err(JwtConfigError::InvalidPem("EC curve not supported")),
            };
            let parsed =
                Parsed::single(algorithm, point).ok_or(JwtConfigError::InvalidPem("EC key"))?;
            return Ok(Self::new(kind, key, parsed));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            let point = key.try_get_as_bytes().unwrap_or_default();
            if point.len() != 32 {
                return Err(JwtConfigError::InvalidPem("Ed25519 key"));
            }
            let parsed =
                Parsed::single(&ED25519, point).ok_or(JwtConfigError::InvalidPem("Ed25519 key"))?;
            return Ok(Self::new(KeyKind::Ed25519, key, parsed));
        }
        Err(JwtConfigError::InvalidPem("unsupported key type"))
    }

    /// Loads a public JWK. Enforces `use` (an `enc` key is refused), `key_ops` (must include
    /// `verify` when present), `kty`/`crv`, and a declared `alg` that must fit the key type.
    /// Symmetric (`oct`) JWKs are refused: configure HMAC secrets with [`VerifyingKey::hmac`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwtConfigError> {
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            Some(_) => return Err(JwtConfigError::NotForSignature),
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(JwtConfigError::NotForSignature);
        }
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(
                Algorithm::from_str(&alg.to_string())
                    .map_err(|_| JwtConfigError::AlgorithmMismatch)?,
            ),
        };
        let (kind, key, parsed) = match &jwk.algorithm {
            AlgorithmParameters::RSA(params) => {
                let n = URL_SAFE_NO_PAD
                    .decode(&params.n)
                    .map_err(|_| JwtConfigError::InvalidJwk("RSA modulus is not base64url"))?;
                let e = URL_SAFE_NO_PAD
                    .decode(&params.e)
                    .map_err(|_| JwtConfigError::InvalidJwk("RSA exponent is not base64url"))?;
                if rsa_modulus_len(&n) < MIN_RSA_MODULUS_BYTES {
                    return Err(JwtConfigError::WeakKey);
                }
                if e.is_empty() {
                    return Err(JwtConfigError::InvalidJwk("RSA exponent is empty"));
                }
                let parsed = Parsed::rsa(&RsaPublicKeyComponents { n: &n, e: &e })
                    .ok_or(JwtConfigError::InvalidJwk("RSA key rejected"))?;
                (
                    KeyKind::Rsa,
                    DecodingKey::from_rsa_raw_components(&n, &e),
                    parsed,
                )
            }
            AlgorithmParameters::EllipticCurve(params) => {
                let (kind, len, algorithm) = match params.curve {
                    EllipticCurve::P256 => (KeyKind::EcP256, 32, &ECDSA_P256_SHA256_FIXED),
                    EllipticCurve::P384 => (KeyKind::EcP384, 48, &ECDSA_P384_SHA384_FIXED),
                    _ => return Err(JwtConfigError::InvalidJwk("EC curve not supported")),
                };
                let x = URL_SAFE_NO_PAD
                    .decode(&params.x)
                    .map_err(|_| JwtConfigError::InvalidJwk("EC x is not base64url"))?;
                let y = URL_SAFE_NO_PAD
                    .decode(&params.y)
                    .map_err(|_| JwtConfigError::InvalidJwk("EC y is not base64url"))?;
                if x.len() != len || y.len() != len {
                    return Err(JwtConfigError::InvalidJwk(
                        "EC coordinates of the wrong length",
                    ));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let parsed = Parsed::single(algorithm, &point)
                    .ok_or(JwtConfigError::InvalidJwk("EC point not on the curve"))?;
                (kind, DecodingKey::from_ec_der(&point), parsed)
            }
            AlgorithmParameters::OctetKeyPair(params) => {
                if params.curve != EllipticCurve::Ed25519 {
                    return Err(JwtConfigError::InvalidJwk("OKP curve not supported"));
                }
                let x = URL_SAFE_NO_PAD
                    .decode(&params.x)
                    .map_err(|_| JwtConfigError::InvalidJwk("Ed25519 x is not base64url"))?;
                if x.len() != 32 {
                    return Err(JwtConfigError::InvalidJwk(
                        "Ed25519 key of the wrong length",
                    ));
                }
                let parsed = Parsed::single(&ED25519, &x)
                    .ok_or(JwtConfigError::InvalidJwk("Ed25519 key rejected"))?;
                (KeyKind::Ed25519, DecodingKey::from_ed_der(&x), parsed)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(JwtConfigError::InvalidJwk(
                    "symmetric JWKs are refused; configure an HMAC secret explicitly",
                ));
            }
            _ => return Err(JwtConfigError::InvalidJwk("unsupported key type")),
        };
        let mut key = Self::new(kind, key, parsed);
        if let Some(alg) = declared {
            key = key.with_algorithm(alg)?;
        }
        if let Some(kid) = &jwk.common.key_id {
            key = key.with_kid(kid.as_str());
        }
        Ok(key)
    }

    /// Parses one JWK from JSON text; see [`VerifyingKey::from_jwk`].
    pub fn from_jwk_json(json: &str) -> Result<Self, JwtConfigError> {
        let jwk: Jwk = serde_json::from_str(json)
            .map_err(|_| JwtConfigError::InvalidJwk("not a JWK in JSON"))?;
        Self::from_jwk(&jwk)
    }

    /// An HMAC secret for exactly one of HS256, HS384 or HS512.
    ///
    /// HMAC is only ever used with a secret configured here: a public key is never turned
    /// into an HMAC secret. The secret must be at least as long as the hash output.
    pub fn hmac(secret: &Secret, algorithm: Algorithm) -> Result<Self, JwtConfigError> {
        let (min, hash) = match algorithm {
            Algorithm::HS256 => (32, hmac::HMAC_SHA256),
            Algorithm::HS384 => (48, hmac::HMAC_SHA384),
            Algorithm::HS512 => (64, hmac::HMAC_SHA512),
            _ => return Err(JwtConfigError::AlgorithmMismatch),
        };
        if secret.len() < min {
            return Err(JwtConfigError::WeakSecret(min));
        }
        let bytes = secret.expose().as_bytes();
        let parsed = Parsed::Hmac(Box::new(hmac::Key::new(hash, bytes)));
        Self::new(KeyKind::Hmac, DecodingKey::from_secret(bytes), parsed).with_algorithm(algorithm)
    }

    fn new(kind: KeyKind, key: DecodingKey, parsed: Parsed) -> Self {
        Self {
            kid: None,
            kind,
            algorithm: None,
            key,
            parsed,
        }
    }

    /// Sets the key id (`kid`) tokens name this key by.
    pub fn with_kid(mut self, kid: impl Into<Box<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Pins the key to one algorithm; fails when the algorithm does not fit the key type.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<Self, JwtConfigError> {
        if !self.kind.fits(algorithm) {
            return Err(JwtConfigError::AlgorithmMismatch);
        }
        self.algorithm = Some(algorithm);
        Ok(self)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The pinned algorithm, if any.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.algorithm.is_none_or(|pinned| pinned == alg)
    }

    /// Verifies `signature` (base64url, as in the token) over `message` (`header.payload`).
    pub(crate) fn verify(
        &self,
        signature: &str,
        message: &[u8],
        alg: Algorithm,
    ) -> Result<(), TokenRejection> {
        if !self.allows(alg) {
            return Err(TokenRejection::KeyMismatch);
        }
        let mut buf = [0u8; MAX_SIGNATURE_BYTES];
        let len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut buf)
            .map_err(|_| {
                TokenRejection::Malformed("signature is not base64url of at most 1024 bytes")
            })?;
        let signature = buf.get(..len).unwrap_or_default();
        if self.parsed.verify(message, signature, alg) {
            Ok(())
        } else {
            Err(TokenRejection::BadSignature)
        }
    }

    /// The underlying `jsonwebtoken` key.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// Finds the key for a token, from static keys or a key cache.
///
/// Implemented by [`KeySet`] (static keys) and, with the `jwks` feature, by
/// [`JwksCache`](crate::jwks::JwksCache).
#[async_trait]
pub trait KeyResolver: Send + Sync + fmt::Debug {
    /// The key that verifies a token with key id `kid` signed with `alg`.
    ///
    /// Fails with [`TokenRejection::UnknownKey`] when no key fits, and with
    /// [`AuthError::Unavailable`] when the keys cannot be obtained at all.
    async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, AuthError>;
}

/// A fixed set of verification keys, looked up by `kid`.
///
/// A token with a `kid` gets the key with that id. A token without a `kid` (or with a `kid`
/// no key carries) may use a key without id, but only when exactly one such key fits the
/// token's algorithm; anything ambiguous is rejected.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.keys.push(Arc::new(key));
        self
    }

    /// Adds a key.
    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.push(Arc::new(key));
    }

    /// Loads every usable signature key of a JWK set. Keys that are not for signatures,
    /// malformed or unsupported are skipped; only the first `max_keys` entries are read.
    pub fn from_jwk_set(set: &JwkSet, max_keys: usize) -> Self {
        let keys = set
            .keys
            .iter()
            .take(max_keys)
            .filter_map(|jwk| match VerifyingKey::from_jwk(jwk) {
                Ok(key) => Some(Arc::new(key)),
                Err(error) => {
                    tracing::debug!(kid = ?jwk.common.key_id, %error, "JWK skipped");
                    None
                }
            })
            .collect();
        Self { keys }
    }

    /// Parses a JWK set from JSON text, reading at most the first `max_keys` entries and
    /// skipping those that are not usable signature keys (unknown key types included).
    /// Fails only if the text is not a JSON object with `keys`.
    pub fn from_jwks_json(json: &[u8], max_keys: usize) -> Result<Self, JwtConfigError> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(json)
            .map_err(|_| JwtConfigError::InvalidJwk("not a JWK set in JSON"))?;
        if raw.keys.len() > max_keys {
            tracing::debug!(
                max_keys,
                "JWK set has more entries than allowed, extras ignored"
            );
        }
        let mut keys = Vec::new();
        for value in raw.keys.into_iter().take(max_keys) {
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|_| JwtConfigError::InvalidJwk("malformed JWK"))
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk));
            match parsed {
                Ok(key) => keys.push(Arc::new(key)),
                Err(error) => tracing::debug!(%error, "JWK skipped"),
            }
        }
        Ok(Self { keys })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids in the set.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid())
    }

    /// Whether some key carries `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// The key for a token with key id `kid` and algorithm `alg`.
    pub fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&Arc<VerifyingKey>, TokenRejection> {
        if let Some(kid) = kid {
            let mut named = self.keys.iter().filter(|k| k.kid() == Some(kid)).peekable();
            if named.peek().is_some() {
                return named
                    .find(|k| k.allows(alg))
                    .ok_or(TokenRejection::KeyMismatch);
            }
        }
        let mut anonymous = self
            .keys
            .iter()
            .filter(|k| k.kid().is_none() || kid.is_none())
            .filter(|k| k.allows(alg));
        match (anonymous.next(), anonymous.next()) {
            (Some(key), None) => Ok(key),
            _ => Err(TokenRejection::UnknownKey),
        }
    }
}

#[async_trait]
impl KeyResolver for KeySet {
    async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, AuthError> {
        Ok(Arc::clone(self.find(kid, alg)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const RSA_PUBLIC: &str = include_str!("../../testdata/rsa_public.pem");
    pub(crate) const RSA_PRIVATE: &str = include_str!("../../testdata/rsa_private.pem");
    pub(crate) const RSA2_PUBLIC: &str = include_str!("../../testdata/rsa2_public.pem");
    pub(crate) const RSA2_PRIVATE: &str = include_str!("../../testdata/rsa2_private.pem");
    pub(crate) const EC256_PUBLIC: &str = include_str!("../../testdata/ec_p256_public.pem");
    pub(crate) const EC256_PRIVATE: &str = include_str!("../../testdata/ec_p256_private.pem");
    pub(crate) const EC384_PUBLIC: &str = include_str!("../../testdata/ec_p384_public.pem");
    pub(crate) const EC384_PRIVATE: &str = include_str!("../../testdata/ec_p384_private.pem");
    pub(crate) const ED_PUBLIC: &str = include_str!("../../testdata/ed25519_public.pem");
    pub(crate) const ED_PRIVATE: &str = include_str!("../../testdata/ed25519_private.pem");

    #[test]
    fn pem_kinds() {
        assert_eq!(
            VerifyingKey::from_pem(RSA_PUBLIC).unwrap().kind(),
            KeyKind::Rsa
        );
        assert_eq!(
            VerifyingKey::from_pem(EC256_PUBLIC).unwrap().kind(),
            KeyKind::EcP256
        );
        assert_eq!(
            VerifyingKey::from_pem(EC384_PUBLIC).unwrap().kind(),
            KeyKind::EcP384
        );
        assert_eq!(
            VerifyingKey::from_pem(ED_PUBLIC).unwrap().kind(),
            KeyKind::Ed25519
        );
        assert!(VerifyingKey::from_pem(RSA_PRIVATE).is_err());
        assert!(VerifyingKey::from_pem("garbage").is_err());
        assert!(
            VerifyingKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn kinds_fit_only_their_algorithms() {
        let rsa = VerifyingKey::from_pem(RSA_PUBLIC).unwrap();
        assert!(rsa.allows(Algorithm::RS256));
        assert!(rsa.allows(Algorithm::PS512));
        assert!(!rsa.allows(Algorithm::HS256));
        assert!(!rsa.allows(Algorithm::ES256));
        assert_eq!(
            rsa.clone().with_algorithm(Algorithm::HS256).unwrap_err(),
            JwtConfigError::AlgorithmMismatch
        );
        let pinned = rsa.with_algorithm(Algorithm::RS256).unwrap();
        assert!(!pinned.allows(Algorithm::PS256));
        let ec = VerifyingKey::from_pem(EC256_PUBLIC).unwrap();
        assert!(ec.allows(Algorithm::ES256));
        assert!(!ec.allows(Algorithm::ES384));
    }

    #[test]
    fn hmac_needs_explicit_strong_secret() {
        let short = Secret::new("too-short");
        assert_eq!(
            VerifyingKey::hmac(&short, Algorithm::HS256).unwrap_err(),
            JwtConfigError::WeakSecret(32)
        );
        let long = Secret::new("0123456789abcdef0123456789abcdef");
        let key = VerifyingKey::hmac(&long, Algorithm::HS256).unwrap();
        assert!(key.allows(Algorithm::HS256));
        assert!(!key.allows(Algorithm::HS512));
        assert!(VerifyingKey::hmac(&long, Algorithm::RS256).is_err());
        assert!(!format!("{key:?}").contains("0123456789"));
    }

    #[expect(
        clippy::needless_pass_by_value,
        reason = "test helper called with json! literals"
    )]
    fn rsa_jwk(extra: serde_json::Value) -> serde_json::Value {
        let key = VerifyingKey::from_pem(RSA_PUBLIC).unwrap();
        let jwk = Jwk::from_decoding_key(key.decoding_key(), Some(Algorithm::RS256)).unwrap();
        let mut value = serde_json::to_value(jwk).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        value
    }

    #[test]
    fn jwk_use_alg_kty_enforced() {
        let ok = VerifyingKey::from_jwk_json(
            &rsa_jwk(serde_json::json!({"kid": "a", "use": "sig"})).to_string(),
        )
        .unwrap();
        assert_eq!(ok.kid(), Some("a"));
        assert_eq!(ok.algorithm(), Some(Algorithm::RS256));

        let enc = rsa_jwk(serde_json::json!({"use": "enc"}));
        assert_eq!(
            VerifyingKey::from_jwk_json(&enc.to_string()).unwrap_err(),
            JwtConfigError::NotForSignature
        );
        let hs = rsa_jwk(serde_json::json!({"alg": "HS256"}));
        assert_eq!(
            VerifyingKey::from_jwk_json(&hs.to_string()).unwrap_err(),
            JwtConfigError::AlgorithmMismatch
        );
        let ops = rsa_jwk(serde_json::json!({"key_ops": ["encrypt"]}));
        assert_eq!(
            VerifyingKey::from_jwk_json(&ops.to_string()).unwrap_err(),
            JwtConfigError::NotForSignature
        );
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"});
        assert!(VerifyingKey::from_jwk_json(&oct.to_string()).is_err());
    }

    /// Each algorithm checks with its own parsed key: a signature verifies under the
    /// algorithm it was made with and under no other, and a tampered or oversized signature
    /// is refused without a panic.
    #[test]
    fn parsed_keys_verify_each_algorithm_and_only_it() {
        use crate::jwt::validator::tests::{claims, sign};
        let cases = [
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::RS256),
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::RS384),
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::RS512),
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::PS256),
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::PS384),
            (RSA_PUBLIC, RSA_PRIVATE, Algorithm::PS512),
            (EC256_PUBLIC, EC256_PRIVATE, Algorithm::ES256),
            (EC384_PUBLIC, EC384_PRIVATE, Algorithm::ES384),
            (ED_PUBLIC, ED_PRIVATE, Algorithm::EdDSA),
        ];
        for (public, private, alg) in cases {
            let key = VerifyingKey::from_pem(public).unwrap();
            let token = sign(alg, private, None, &claims());
            let (message, signature) = token.rsplit_once('.').unwrap();
            assert_eq!(
                key.verify(signature, message.as_bytes(), alg),
                Ok(()),
                "{alg:?}"
            );
            for other in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
                if other != alg && key.allows(other) {
                    assert_eq!(
                        key.verify(signature, message.as_bytes(), other),
                        Err(TokenRejection::BadSignature),
                        "{alg:?} checked as {other:?}"
                    );
                }
            }
            let tampered = format!("{}x", &message[..message.len() - 1]);
            assert_eq!(
                key.verify(signature, tampered.as_bytes(), alg),
                Err(TokenRejection::BadSignature),
                "{alg:?}"
            );
            let oversized = "A".repeat(2 * MAX_SIGNATURE_BYTES);
            assert!(matches!(
                key.verify(&oversized, message.as_bytes(), alg),
                Err(TokenRejection::Malformed(_))
            ));
        }
        let secret = Secret::new("0123456789abcdef0123456789abcdef0123456789abcdef");
        for alg in [Algorithm::HS256, Algorithm::HS384] {
            let key = VerifyingKey::hmac(&secret, alg).unwrap();
            let token = sign(alg, secret.expose(), None, &claims());
            let (message, signature) = token.rsplit_once('.').unwrap();
            assert_eq!(key.verify(signature, message.as_bytes(), alg), Ok(()));
            let other = Secret::new("ffffffffffffffffffffffffffffffffffffffffffffffff");
            let wrong = VerifyingKey::hmac(&other, alg).unwrap();
            assert_eq!(
                wrong.verify(signature, message.as_bytes(), alg),
                Err(TokenRejection::BadSignature)
            );
        }
    }

    /// Keys are parsed when loaded, so one that aws-lc-rs refuses never reaches a token, and
    /// one it only refuses when verifying (an even RSA modulus) fails every token cleanly.
    #[test]
    fn unusable_keys_are_refused_at_load_or_fail_tokens_cleanly() {
        use crate::jwt::validator::tests::{claims, sign};
        let n = URL_SAFE_NO_PAD.encode([[0xff; 255].as_slice(), &[0xfe]].concat());
        let even = serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB"});
        let token = sign(Algorithm::RS256, RSA_PRIVATE, None, &claims());
        let (message, signature) = token.rsplit_once('.').unwrap();
        match VerifyingKey::from_jwk_json(&even.to_string()) {
            Ok(key) => assert_eq!(
                key.verify(signature, message.as_bytes(), Algorithm::RS256),
                Err(TokenRejection::BadSignature)
            ),
            Err(error) => assert!(matches!(error, JwtConfigError::InvalidJwk(_))),
        }
        // A P-256 point that is not on the curve.
        let coordinate = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let off_curve = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": coordinate, "y": coordinate
        });
        assert!(matches!(
            VerifyingKey::from_jwk_json(&off_curve.to_string()),
            Err(JwtConfigError::InvalidJwk(_))
        ));
    }

    #[test]
    fn jwks_skips_bad_keys_and_bounds_count() {
        let good = rsa_jwk(serde_json::json!({"kid": "good"}));
        let set = serde_json::json!({"keys": [
            {"kty": "weird"},
            rsa_jwk(serde_json::json!({"kid": "enc", "use": "enc"})),
            good,
            rsa_jwk(serde_json::json!({"kid": "second"})),
            rsa_jwk(serde_json::json!({"kid": "third"})),
        ]});
        let keys = KeySet::from_jwks_json(set.to_string().as_bytes(), 4).unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["good", "second"]);
        assert!(KeySet::from_jwks_json(b"[]", 4).is_err());
    }

    #[test]
    fn lookup_by_kid() {
        let rsa = VerifyingKey::from_pem(RSA_PUBLIC).unwrap();
        let ec = VerifyingKey::from_pem(EC256_PUBLIC).unwrap();
        let set = KeySet::new()
            .with(rsa.clone().with_kid("r"))
            .with(ec.clone().with_kid("e"));
        assert_eq!(
            set.find(Some("r"), Algorithm::RS256).unwrap().kid(),
            Some("r")
        );
        assert_eq!(
            set.find(Some("r"), Algorithm::ES256).unwrap_err(),
            TokenRejection::KeyMismatch
        );
        assert_eq!(
            set.find(Some("x"), Algorithm::RS256).unwrap_err(),
            TokenRejection::UnknownKey
        );
        // Without a kid, exactly one compatible key is needed.
        assert_eq!(set.find(None, Algorithm::ES256).unwrap().kid(), Some("e"));
        let two = set
            .clone()
            .with(VerifyingKey::from_pem(RSA2_PUBLIC).unwrap().with_kid("r2"));
        assert_eq!(
            two.find(None, Algorithm::RS256).unwrap_err(),
            TokenRejection::UnknownKey
        );
        // A key without id serves tokens with an unknown kid only when it is the only fit.
        let anon = KeySet::new().with(rsa);
        assert!(anon.find(Some("any"), Algorithm::RS256).is_ok());
        assert!(anon.find(Some("any"), Algorithm::HS256).is_err());
    }
}
