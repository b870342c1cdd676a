//! Criterion benches of the authentication hot paths (group `auth`; the IDs are quoted in issues).

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failure should stop the bench loudly"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet, VerifyingKey};
use mcp_auth_core::revocation::MemoryRevocationStore;
use mcp_auth_core::{Authenticator, Credential, RevocationStore, Secret};

const ISS: &str = "https://issuer.bench";
const AUD: &str = "mcp-bench";

const RSA_PRIVATE: &str = include_str!("../testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../testdata/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../testdata/ec_p256_private.pem");
const EC_PUBLIC: &str = include_str!("../testdata/ec_p256_public.pem");
const ED_PRIVATE: &str = include_str!("../testdata/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("../testdata/ed25519_public.pem");

fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
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

fn authenticator(public_pem: &str, cache: u64) -> JwtAuthenticator {
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
    let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocationStore::new());
    JwtAuthenticator::builder(validator, Arc::new(keys))
        .token_cache_capacity(cache)
        .revocation(store)
        .build()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rsa = token(
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
    let cold_rsa = authenticator(RSA_PUBLIC, 0);
    let cold_es = authenticator(EC_PUBLIC, 0);
    let cold_ed = authenticator(ED_PUBLIC, 0);
    let cached = authenticator(RSA_PUBLIC, 1_000);

    let mut group = c.benchmark_group("auth");

    let credential = Credential::Bearer(Secret::new(rsa.as_str()));
    group.bench_function("jwt_rs256_cold", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(cold_rsa.authenticate(black_box(&credential)).await.unwrap())
        });
    });

    let raw_key = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    group.bench_function("raw_jsonwebtoken_rs256", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                    black_box(&rsa),
                    &raw_key,
                    &validation,
                )
                .unwrap(),
            )
        });
    });

    let credential_es = Credential::Bearer(Secret::new(es.as_str()));
    group.bench_function("jwt_es256_cold", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cold_es
                    .authenticate(black_box(&credential_es))
                    .await
                    .unwrap(),
            )
        });
    });

    let credential_ed = Credential::Bearer(Secret::new(ed.as_str()));
    group.bench_function("jwt_eddsa_cold", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cold_ed
                    .authenticate(black_box(&credential_ed))
                    .await
                    .unwrap(),
            )
        });
    });

    rt.block_on(cached.authenticate(&credential)).unwrap();
    group.bench_function("jwt_cached", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(cached.authenticate(black_box(&credential)).await.unwrap())
        });
    });

    let malformed = Credential::Bearer(Secret::new("eyJhbGciOiJSUzI1Ni!9.e30.c2ln"));
    group.bench_function("reject_malformed", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cold_rsa
                    .authenticate(black_box(&malformed))
                    .await
                    .unwrap_err(),
            )
        });
    });

    group.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
