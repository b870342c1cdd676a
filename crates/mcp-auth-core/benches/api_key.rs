//! Criterion bench `auth/api_key`: a valid API key through `ApiKeyAuthenticator`, in-memory
//! store holding 1 000 other keys.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failure should stop the bench loudly"
)]

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::Authenticator;

fn api_key(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (authenticator, credential) = support::api_key_fixture(&runtime);

    let mut group = c.benchmark_group("auth");
    group.bench_function("api_key", |b| {
        b.to_async(&runtime).iter(|| async {
            let principal = authenticator.authenticate(black_box(&credential)).await;
            black_box(principal.unwrap())
        });
    });
    group.finish();
}

criterion_group!(benches, api_key);
criterion_main!(benches);
