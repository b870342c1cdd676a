//! API-key behaviour on the in-memory store.

#![allow(
    clippy::unwrap_used,
    reason = "integration test: a failure should stop the test loudly"
)]

mod support;

use std::future::Future;
use std::sync::Arc;

use mcp_auth_core::api_key::{ApiKeyStore, MemoryApiKeyStore};

async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn ApiKeyStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    test(Arc::new(MemoryApiKeyStore::new())).await;
}

crate::api_key_suite!(with_store);
