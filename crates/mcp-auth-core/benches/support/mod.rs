//! Fixtures shared by the `auth`, `api_key` and `auth_instructions` benches: the tokens, the
//! authenticators and the stores behind each `auth/*` bench ID, so that the criterion times
//! and the callgrind instruction counts measure the same thing.

#![allow(
    dead_code,
    reason = "each bench binary uses its own part of the shared fixtures"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mcp_auth_core::api_key::{ApiKeyAuthenticator, ApiKeyManager, MemoryApiKeyStore, NewApiKey};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet, VerifyingKey};
use mcp_auth_core::revocation::MemoryRevocationStore;
use mcp_auth_core::{Credential, RevocationStore, Secret};

pub(crate) const ISS: &str = "https://issuer.bench";
pub(crate) const AUD: &str = "mcp-bench";

const RSA_PRIVATE: &str = include_str!("../../testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../testdata/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../testdata/ec_p256_private.pem");
const EC_PUBLIC: &str = include_str!("../../testdata/ec_p256_public.pem");
const ED_PRIVATE: &str = include_str!("../../testdata/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../../testdata/ed25519_public.pem");

/// Revoked token ids in the benches' revocation store, so that the check on every request
/// looks into populated maps instead of returning early on an empty store.
pub(crate) const REVOKED_TOKENS: usize = 1_000;

/// Revoked subjects in the benches' revocation store (none of them the bench user).
pub(crate) const REVOKED_SUBJECTS: usize = 100;

/// Issued API keys besides the one the bench presents, so the lookup is not into a one-entry
/// map.
pub(crate) const OTHER_API_KEYS: usize = 1_000;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn claims() -> serde_json::Value {
    let now = now_secs();
    serde_json::json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "bench-user",
        "tid": "bench-tenant",
        "jti": "bench-jti",
        "roles": ["user", "reader"],
        "scope": "mcp:tools mcp:resources",
        "iat": now,
        "exp": now + 3600,
    })
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("bench".into());
    jsonwebtoken::encode(&header, &claims(), key).unwrap()
}

/// A revocation store holding [`REVOKED_TOKENS`] token ids and [`REVOKED_SUBJECTS`] subjects,
/// none of which matches the bench tokens.
fn revocation_store(rt: &tokio::runtime::Runtime) -> Arc<MemoryRevocationStore> {
    let store = Arc::new(MemoryRevocationStore::new());
    let until = SystemTime::now() + Duration::from_secs(3_600);
    rt.block_on(async {
        for i in 0..REVOKED_TOKENS {
            store
                .revoke_token(&format!("revoked-jti-{i}"), until)
                .await
                .unwrap();
        }
        for i in 0..REVOKED_SUBJECTS {
            store
                .revoke_subject(&format!("revoked-user-{i}"), SystemTime::now(), until)
                .await
                .unwrap();
        }
    });
    store
}

fn authenticator(
    public_pem: &str,
    cache: u64,
    revocation: Arc<dyn RevocationStore>,
) -> JwtAuthenticator {
    let validator = JwtValidator::builder()
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
    let keys = KeySet::new().with(
        VerifyingKey::from_pem(public_pem)
            .unwrap()
            .with_kid("bench"),
    );
    JwtAuthenticator::builder(validator, Arc::new(keys))
        .token_cache_capacity(cache)
        .revocation(revocation)
        .build()
}

/// Everything the JWT bench IDs need.
pub(crate) struct JwtFixture {
    /// The RS256 token as a bearer credential (`jwt_rs256_cold`, `jwt_cached`).
    pub(crate) rsa: Credential,
    /// The same RS256 token as text (`raw_jsonwebtoken_rs256`).
    pub(crate) rsa_text: String,
    pub(crate) es: Credential,
    pub(crate) ed: Credential,
    /// A token whose header is not base64url (`reject_malformed`).
    pub(crate) malformed: Credential,
    /// Authenticators without a token cache.
    pub(crate) cold_rsa: JwtAuthenticator,
    pub(crate) cold_es: JwtAuthenticator,
    pub(crate) cold_ed: JwtAuthenticator,
    /// An authenticator with a token cache that already holds the RS256 token.
    pub(crate) cached: JwtAuthenticator,
    /// Plain jsonwebtoken: the key and validation of `raw_jsonwebtoken_rs256`.
    pub(crate) raw_key: DecodingKey,
    pub(crate) raw_validation: Validation,
}

impl JwtFixture {
    /// Builds the fixture and fills the token cache of `cached`.
    pub(crate) fn new(rt: &tokio::runtime::Runtime) -> Self {
        let rsa_text = token(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        );
        let es = token(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        );
        let ed = token(
            Algorithm::EdDSA,
            &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        );
        let revocation: Arc<dyn RevocationStore> = revocation_store(rt);
        let cached = authenticator(RSA_PUBLIC, 1_000, Arc::clone(&revocation));
        let rsa = Credential::Bearer(Secret::new(rsa_text.as_str()));
        rt.block_on(cached.verify(&rsa_text)).unwrap();

        let mut raw_validation = Validation::new(Algorithm::RS256);
        raw_validation.set_issuer(&[ISS]);
        raw_validation.set_audience(&[AUD]);
        raw_validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Self {
            rsa,
            es: Credential::Bearer(Secret::new(es)),
            ed: Credential::Bearer(Secret::new(ed)),
            malformed: Credential::Bearer(Secret::new("eyJhbGciOiJSUzI1Ni!9.e30.c2ln")),
            cold_rsa: authenticator(RSA_PUBLIC, 0, Arc::clone(&revocation)),
            cold_es: authenticator(EC_PUBLIC, 0, Arc::clone(&revocation)),
            cold_ed: authenticator(ED_PUBLIC, 0, revocation),
            cached,
            raw_key: DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
            raw_validation,
            rsa_text,
        }
    }

    /// `auth/raw_jsonwebtoken_rs256`: plain jsonwebtoken decode of the RS256 token.
    pub(crate) fn raw_decode(&self) -> serde_json::Map<String, serde_json::Value> {
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            std::hint::black_box(&self.rsa_text),
            &self.raw_key,
            &self.raw_validation,
        )
        .unwrap()
        .claims
    }
}

/// `auth/api_key`: an authenticator over an in-memory store with [`OTHER_API_KEYS`] other
/// keys, and a valid key for a user with a tenant, two roles and two scopes.
pub(crate) fn api_key_fixture(rt: &tokio::runtime::Runtime) -> (ApiKeyAuthenticator, Credential) {
    let pepper = Secret::new("bench-pepper-bench-pepper-bench-pepper!!");
    let manager = ApiKeyManager::builder(Arc::new(MemoryApiKeyStore::new()), pepper)
        .build()
        .unwrap();
    let issued = rt.block_on(async {
        for i in 0..OTHER_API_KEYS {
            manager
                .issue(NewApiKey::new(format!("user-{i}")))
                .await
                .unwrap();
        }
        manager
            .issue(
                NewApiKey::new("bench-user")
                    .tenant("acme")
                    .roles(["user", "deployer"])
                    .scopes(["mcp:tools", "mcp:resources"]),
            )
            .await
            .unwrap()
    });
    (
        ApiKeyAuthenticator::new(manager),
        Credential::ApiKey(issued.key),
    )
}
