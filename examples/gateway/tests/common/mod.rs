//! Helpers shared by the gateway's integration tests: scratch directories, the real
//! services named by environment variables, and a gateway serving in the test
//! ([`gateway`]).

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up must stop the test loudly"
)]

/// `Deref` and `DerefMut` of `$outer` to its field `$field` (a `$inner`): a harness that
/// wraps a gateway calls its methods directly.
macro_rules! deref_to {
    ($outer:ty => $field:ident: $inner:ty) => {
        impl std::ops::Deref for $outer {
            type Target = $inner;

            fn deref(&self) -> &$inner {
                &self.$field
            }
        }

        impl std::ops::DerefMut for $outer {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.$field
            }
        }
    };
}

#[allow(unused_imports, reason = "cli.rs and upstreams.rs wrap no gateway")]
pub(crate) use deref_to;

pub(crate) mod gateway;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A number unique in this test process.
pub(crate) fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcp-gateway-{what}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `name` in the directory as a TOML string.
    pub(crate) fn toml(&self, name: &str) -> String {
        toml::Value::String(self.path(name).display().to_string()).to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The value of `var`, or `None` (after saying why) when the test should be skipped; panics
/// when the variable is unset and `MCP_TEST_REQUIRE_SERVICES=1`.
pub(crate) fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set and MCP_TEST_REQUIRE_SERVICES=1"
            );
            #[allow(clippy::print_stdout, reason = "the skip must show in the test output")]
            {
                println!("skipped: {var} is not set");
            }
            None
        }
    }
}
