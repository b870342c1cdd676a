//! Helpers shared by the integration tests: service URLs, a PostgreSQL schema per test, a
//! dead loopback port, bounded polling.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers: a broken service or fixture must stop the test loudly"
)]

use std::future::Future;
use std::time::Duration;

/// The URL in `var`, or `None` (with a message) when the tests should skip; panics when
/// `MCP_TEST_REQUIRE_SERVICES=1`.
fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set but MCP_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// The PostgreSQL URL, or `None` when the test should skip.
pub(crate) fn postgres_url() -> Option<String> {
    service_url("MCP_TEST_POSTGRES_URL")
}

/// The Redis URL, or `None` when the test should skip.
pub(crate) fn redis_url() -> Option<String> {
    service_url("MCP_TEST_REDIS_URL")
}

/// A unique lowercase tag for schema names, key prefixes and application names.
pub(crate) fn unique(tag: &str) -> String {
    format!("{tag}_{}", uuid::Uuid::now_v7().simple())
}

/// A loopback port with nothing listening: bound once, then released.
pub(crate) fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `condition` every 20 ms, at most 1 500 times (30 s); panics with `what` if it never
/// holds. For states reached by background work (sqlx returns connections in a task).
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1_500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// Runs `body` in a task and re-raises its panic after `cleanup` ran.
pub(crate) async fn with_cleanup<T, Fut, C>(body: Fut, cleanup: C) -> T
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    match result {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
