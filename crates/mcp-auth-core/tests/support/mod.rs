//! Helpers shared by the integration tests.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failure should stop the test loudly"
)]
#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

pub(crate) mod api_key_suite;
pub(crate) mod jwt;
pub(crate) mod services;
