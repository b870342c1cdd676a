//! Criterion bench `auth/api_key`: a valid API key through `ApiKeyAuthenticator`, in-memory store.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failure should stop the bench loudly"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_auth_core::api_key::{ApiKeyAuthenticator, ApiKeyManager, MemoryApiKeyStore, NewApiKey};
use mcp_auth_core::{Authenticator, Credential, Secret};

fn api_key(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pepper = Secret::new("bench-pepper-bench-pepper-bench-pepper!!");
    let manager = ApiKeyManager::builder(Arc::new(MemoryApiKeyStore::new()), pepper)
        .build()
        .unwrap();
    // A populated store, so the lookup is not into a one-entry map.
    let issued = runtime.block_on(async {
        for i in 0..1_000 {
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
    let authenticator = ApiKeyAuthenticator::new(manager);
    let credential = Credential::ApiKey(issued.key);

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
