//! Identity assertions: short-lived JWTs the gateway signs (with mcp-auth-core's local issuer)
//! so an upstream learns who is calling (`sub`, `tid`, `roles`, `scope`; `aud` = the upstream)
//! without ever seeing the client's token. The public key is served as a JWKS.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use http::{HeaderName, HeaderValue};
use mcp_auth_core::issuer::{GeneratedKeyAlgorithm, IssueRequest, IssuerError, SigningKey};
use mcp_auth_core::jwt::Algorithm;
use mcp_auth_core::{Clock, LocalIssuer, Principal, SystemClock};
use serde_json::{Value, json};

use crate::config::IdentityAssertionConfig;

/// The path of the gateway's assertion-verification keys.
pub const GATEWAY_JWKS_PATH: &str = "/.well-known/gateway-jwks.json";

/// Callers whose assertions one upstream keeps at most; beyond it stale ones are dropped, and
/// if none is stale the cache starts over.
const CACHE_CAPACITY: usize = 4096;

/// The signing key and settings shared by every upstream's [`Asserter`].
pub(crate) struct AssertionSigner {
    key: SigningKey,
    issuer: String,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("issuer", &self.issuer)
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// The signer `config` describes: its key loaded from `key_file` or `key_env`, or
    /// generated; `iss` is `config.issuer` or else `default_issuer`.
    pub(crate) fn from_config(
        config: &IdentityAssertionConfig,
        default_issuer: &str,
    ) -> anyhow::Result<Self> {
        let algorithm = config
            .algorithm
            .parse::<Algorithm>()
            .context("identity_assertion.algorithm")?;
        let key = match (&config.key_file, &config.key_env) {
            (Some(path), _) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!(
                        "identity_assertion.key_file: cannot read {}",
                        path.display()
                    )
                })?;
                SigningKey::from_pem(algorithm, &pem).context("identity_assertion.key_file")?
            }
            (None, Some(var)) => {
                let pem = std::env::var(var)
                    .with_context(|| format!("identity_assertion.key_env: `{var}` is not set"))?;
                SigningKey::from_pem(algorithm, pem.as_bytes())
                    .context("identity_assertion.key_env")?
            }
            (None, None) => SigningKey::generate(match algorithm {
                Algorithm::ES256 => GeneratedKeyAlgorithm::ES256,
                _ => GeneratedKeyAlgorithm::EdDSA,
            })?,
        };
        Ok(Self {
            key,
            issuer: config
                .issuer
                .clone()
                .unwrap_or_else(|| default_issuer.to_owned()),
            ttl: config.ttl(),
            clock: Arc::new(SystemClock),
        })
    }

    #[cfg(test)]
    fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The public key as a JWK set.
    pub(crate) fn jwks_json(&self) -> Value {
        json!({ "keys": [self.key.jwk()] })
    }

    /// An asserter for one upstream: assertions with `aud` = `audience`, sent in `header`.
    pub(crate) fn asserter(&self, audience: &str, header: &str) -> anyhow::Result<Asserter> {
        let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
            .context("identity_assertion.header")?;
        let issuer = LocalIssuer::builder(self.issuer.as_str(), audience)
            .key(self.key.clone())
            .access_token_ttl(self.ttl)
            .token_type(Some("JWT".to_owned()))
            .clock(Arc::clone(&self.clock))
            .build()
            .context("identity assertion issuer")?;
        Ok(Asserter {
            bearer: header == http::header::AUTHORIZATION,
            header,
            issuer,
            reuse_for: self.ttl.mul_f64(0.75),
            clock: Arc::clone(&self.clock),
            cache: Mutex::new(Cache {
                hasher: RandomState::new(),
                entries: HashMap::new(),
                gateway: None,
            }),
        })
    }
}

/// One caller's cached assertion.
struct Entry {
    subject: String,
    tenant: Option<String>,
    roles: BTreeSet<String>,
    scopes: BTreeSet<String>,
    value: HeaderValue,
    fresh_until: SystemTime,
}

struct Cache {
    hasher: RandomState,
    entries: HashMap<u64, Entry>,
    /// The gateway's own assertion (its session set-up and health pings).
    gateway: Option<(HeaderValue, SystemTime)>,
}

/// Signs and caches the assertions for one upstream.
pub(crate) struct Asserter {
    header: HeaderName,
    bearer: bool,
    issuer: LocalIssuer,
    reuse_for: Duration,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Asserter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asserter")
            .field("header", &self.header)
            .field("audience", &self.issuer.audience())
            .finish_non_exhaustive()
    }
}

impl Asserter {
    /// The header the assertion travels in.
    pub(crate) fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The `aud` of this upstream's assertions.
    pub(crate) fn audience(&self) -> &str {
        self.issuer.audience()
    }

    fn header_value(&self, token: &str) -> Result<HeaderValue, IssuerError> {
        let value = if self.bearer {
            HeaderValue::from_str(&format!("Bearer {token}"))
        } else {
            HeaderValue::from_str(token)
        };
        let mut value =
            value.map_err(|_| IssuerError::Config("assertion is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The header value asserting `principal`: the cached one while it is fresh, else a new
    /// one. Its claims: `sub`, `tid`, `roles`, `scope` of the principal and `act.sub` = the
    /// gateway (which acts for the principal).
    pub(crate) fn for_principal(&self, principal: &Principal) -> Result<HeaderValue, IssuerError> {
        let now = self.clock.now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let key = cache.hasher.hash_one((
            principal.subject(),
            principal.tenant(),
            principal.roles(),
            principal.scopes(),
        ));
        if let Some(entry) = cache.entries.get(&key)
            && entry.fresh_until > now
            && entry.subject == principal.subject()
            && entry.tenant.as_deref() == principal.tenant()
            && entry.roles == *principal.roles()
            && entry.scopes == *principal.scopes()
        {
            return Ok(entry.value.clone());
        }
        let mut request = IssueRequest::new(principal.subject())
            .roles(principal.roles().iter().cloned())
            .scopes(principal.scopes().iter().cloned())
            .claim("act", json!({ "sub": self.issuer.issuer() }));
        if let Some(tenant) = principal.tenant() {
            request = request.tenant(tenant);
        }
        let token = self.issuer.issue(&request)?;
        let value = self.header_value(token.token.expose())?;
        if cache.entries.len() >= CACHE_CAPACITY {
            cache.entries.retain(|_, e| e.fresh_until > now);
            if cache.entries.len() >= CACHE_CAPACITY {
                cache.entries.clear();
            }
        }
        cache.entries.insert(
            key,
            Entry {
                subject: principal.subject().to_owned(),
                tenant: principal.tenant().map(str::to_owned),
                roles: principal.roles().clone(),
                scopes: principal.scopes().clone(),
                value: value.clone(),
                fresh_until: now + self.reuse_for,
            },
        );
        Ok(value)
    }

    /// The header value asserting the gateway itself (`sub` = the gateway's issuer, no
    /// `act`), for the requests it makes on its own: session set-up and health pings.
    pub(crate) fn for_gateway(&self) -> Result<HeaderValue, IssuerError> {
        let now = self.clock.now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((value, fresh_until)) = &cache.gateway
            && *fresh_until > now
        {
            return Ok(value.clone());
        }
        let token = self
            .issuer
            .issue(&IssueRequest::new(self.issuer.issuer()))?;
        let value = self.header_value(token.token.expose())?;
        cache.gateway = Some((value.clone(), now + self.reuse_for));
        Ok(value)
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use mcp_auth_core::AuthMethod;
    use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
    use mcp_auth_testkit::FakeClock;

    use super::*;

    fn principal(subject: &str, tenant: &str, role: &str) -> Principal {
        Principal::builder(subject, AuthMethod::Local)
            .tenant(tenant)
            .roles([role])
            .scopes(["mcp:tools"])
            .build()
    }

    fn signer(clock: &FakeClock) -> AssertionSigner {
        AssertionSigner::from_config(&IdentityAssertionConfig::default(), "https://gw.example")
            .unwrap()
            .with_clock(Arc::new(clock.clone()))
    }

    /// Verifies the assertion in `value` as an upstream would (the JWKS, `iss`, `aud`,
    /// `exp`) and returns its claims.
    async fn verify(signer: &AssertionSigner, audience: &str, value: &HeaderValue) -> Value {
        let text = value.to_str().unwrap();
        let token = text.strip_prefix("Bearer ").unwrap_or(text);
        let jwks = serde_json::to_vec(&signer.jwks_json()).unwrap();
        let keys = Arc::new(KeySet::from_jwks_json(&jwks, 4).unwrap());
        let validator = JwtValidator::builder()
            .issuer("https://gw.example")
            .audience(audience)
            .algorithms([Algorithm::EdDSA])
            .build()
            .unwrap();
        let principal = JwtAuthenticator::builder(validator, keys)
            .build()
            .verify(token)
            .await
            .unwrap();
        Value::Object(principal.claims().clone())
    }

    #[tokio::test]
    async fn an_assertion_names_the_caller_and_the_upstream_and_verifies_with_the_jwks() {
        let clock = FakeClock::at_system_now();
        let signer = signer(&clock);
        let asserter = signer
            .asserter("https://crm.internal/mcp", "Authorization")
            .unwrap();
        let value = asserter
            .for_principal(&principal("alice", "acme", "user"))
            .unwrap();
        assert!(value.is_sensitive());
        let claims = verify(&signer, "https://crm.internal/mcp", &value).await;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["tid"], "acme");
        assert_eq!(claims["roles"], json!(["user"]));
        assert_eq!(claims["scope"], "mcp:tools");
        assert_eq!(claims["act"]["sub"], "https://gw.example");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let own = asserter.for_gateway().unwrap();
        let own = verify(&signer, "https://crm.internal/mcp", &own).await;
        assert_eq!(own["sub"], "https://gw.example");
        assert!(own.get("act").is_none());
    }

    #[test]
    fn assertions_are_reused_for_three_quarters_of_their_life() {
        let clock = FakeClock::at_system_now();
        let asserter = signer(&clock)
            .asserter("crm", "x-gateway-assertion")
            .unwrap();
        let alice = principal("alice", "acme", "user");
        let first = asserter.for_principal(&alice).unwrap();
        assert!(!first.to_str().unwrap().starts_with("Bearer"));
        clock.advance(Duration::from_secs(44));
        assert_eq!(asserter.for_principal(&alice).unwrap(), first);
        // Another tenant or role is another caller.
        let other = asserter
            .for_principal(&principal("alice", "globex", "user"))
            .unwrap();
        assert_ne!(other, first);
        let admin = asserter
            .for_principal(&principal("alice", "acme", "admin"))
            .unwrap();
        assert_ne!(admin, first);
        assert_eq!(asserter.cached(), 3);
        clock.advance(Duration::from_secs(2));
        assert_ne!(asserter.for_principal(&alice).unwrap(), first);
    }

    #[test]
    fn the_cache_is_bounded() {
        let clock = FakeClock::at_system_now();
        let asserter = signer(&clock).asserter("crm", "authorization").unwrap();
        for i in 0..=CACHE_CAPACITY {
            asserter
                .for_principal(&principal(&format!("user{i}"), "acme", "user"))
                .unwrap();
        }
        assert!(asserter.cached() <= CACHE_CAPACITY);
    }
}
