//! Access to the real PostgreSQL and Redis services named by environment variables.

/// The value of `var`, or `None` (after saying why) when the test should be skipped.
///
/// Panics when the variable is unset and `MCP_TEST_REQUIRE_SERVICES=1`.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set and MCP_TEST_REQUIRE_SERVICES=1"
            );
            #[allow(
                clippy::print_stdout,
                reason = "the skip must be visible in the test output"
            )]
            {
                println!("skipped: {var} is not set");
            }
            None
        }
    }
}

/// A name unique to this test run, usable as a schema name or key prefix.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
