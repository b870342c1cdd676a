//! Criterion benches of the authentication hot paths (group `auth`; the IDs are quoted in issues).
//!
//! Every authenticator checks a revocation store that holds 1 000 revoked token ids and 100
//! revoked subjects (none of them the bench token's), so the revocation check on each request
//! is a real lookup. `auth_instructions` counts the instructions of the same paths.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failure should stop the bench loudly"
)]

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::Authenticator;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = support::JwtFixture::new(&rt);

    let mut group = c.benchmark_group("auth");

    group.bench_function("jwt_rs256_cold", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(f.cold_rsa.authenticate(black_box(&f.rsa)).await.unwrap())
        });
    });

    group.bench_function("raw_jsonwebtoken_rs256", |b| {
        b.iter(|| black_box(f.raw_decode()));
    });

    group.bench_function("jwt_es256_cold", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(f.cold_es.authenticate(black_box(&f.es)).await.unwrap()) });
    });

    group.bench_function("jwt_eddsa_cold", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(f.cold_ed.authenticate(black_box(&f.ed)).await.unwrap()) });
    });

    group.bench_function("jwt_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(f.cached.authenticate(black_box(&f.rsa)).await.unwrap()) });
    });

    group.bench_function("reject_malformed", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                f.cold_rsa
                    .authenticate(black_box(&f.malformed))
                    .await
                    .unwrap_err(),
            )
        });
    });

    group.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
