//! A testkit issuer over real HTTP and the crate's JWT verifier pointed at it, on one fake clock.

use std::sync::Arc;

use mcp_auth_core::jwks::{JwksCache, JwksConfig, JwksSource};
use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, JwtValidatorBuilder};
use mcp_auth_testkit::{FakeClock, TestIssuer, TestIssuerConfig};

/// The issuer, its keys as a JWKS cache, and a verifier that trusts them.
pub(crate) struct JwtSetup {
    pub(crate) issuer: TestIssuer,
    pub(crate) clock: FakeClock,
    pub(crate) cache: JwksCache,
    pub(crate) auth: JwtAuthenticator,
}

/// What differs between the tests that use [`jwt_setup`].
pub(crate) struct JwtOptions {
    /// Where the cache finds the keys: discovery from the issuer URL, or the JWKS URL.
    pub(crate) discovery: bool,
    /// The cache settings.
    pub(crate) jwks: JwksConfig,
    /// The validated-token cache capacity (0 sends every call through the key lookup).
    pub(crate) token_cache_capacity: u64,
}

impl Default for JwtOptions {
    fn default() -> Self {
        Self {
            discovery: false,
            jwks: JwksConfig::default().background_refresh(false),
            token_cache_capacity: 0,
        }
    }
}

/// Starts a testkit issuer on a fresh fake clock and a verifier of its tokens. `validator`
/// receives a builder with the issuer, audience and clock already set.
pub(crate) async fn jwt_setup(
    options: JwtOptions,
    validator: impl FnOnce(JwtValidatorBuilder) -> JwtValidatorBuilder,
) -> JwtSetup {
    let clock = FakeClock::at_system_now();
    let issuer = TestIssuer::start_with(TestIssuerConfig {
        clock: Arc::new(clock.clone()),
        ..TestIssuerConfig::default()
    })
    .await;
    let source = if options.discovery {
        JwksSource::Discovery {
            issuer: issuer.issuer_url(),
        }
    } else {
        JwksSource::Url(issuer.jwks_url())
    };
    let cache = JwksCache::builder(source)
        .config(options.jwks)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let builder = JwtValidator::builder()
        .issuer(issuer.issuer_url())
        .audience(TestIssuer::AUDIENCE)
        .clock(Arc::new(clock.clone()));
    let auth =
        JwtAuthenticator::builder(validator(builder).build().unwrap(), Arc::new(cache.clone()))
            .token_cache_capacity(options.token_cache_capacity)
            .build();
    JwtSetup {
        issuer,
        clock,
        cache,
        auth,
    }
}
