//! [`JwtAuthenticator`]: bearer JWT -> `Principal`, with key lookup, claim mapping, the
//! validated-token cache and the revocation check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::keys::KeyResolver;
use super::validator::{JwtValidator, VerifiedToken};
use crate::authenticator::Authenticator;
use crate::claims::ClaimMapping;
use crate::credential::{Credential, CredentialKind};
use crate::error::AuthError;
use crate::principal::{AuthMethod, Principal, from_unix};
use crate::revocation::RevocationStore;
use crate::token_cache::{DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_MAX_TTL, TokenCache};

/// Authenticates `Authorization: Bearer` JWTs.
///
/// The order of work keeps bad tokens cheap: size check, validated-token cache, structural
/// checks, key lookup, signature, claims, claim mapping, revocation. Revocation is checked
/// on cache hits too. Every token failure is [`AuthError::InvalidToken`] (401); keys that
/// cannot be fetched at all give [`AuthError::Unavailable`] (503).
///
/// ```
/// use std::sync::Arc;
/// use mcp_auth_core::jwt::{JwtAuthenticator, JwtValidator, KeySet};
///
/// let validator = JwtValidator::builder()
///     .issuer("https://login.example.com")
///     .audience("mcp")
///     .build()
///     .unwrap();
/// let authenticator = JwtAuthenticator::builder(validator, Arc::new(KeySet::new()))
///     .token_cache_capacity(1_000)
///     .build();
/// # let _ = authenticator;
/// ```
pub struct JwtAuthenticator {
    validator: JwtValidator,
    keys: Arc<dyn KeyResolver>,
    mapping: ClaimMapping,
    cache: Option<TokenCache>,
    revocation: Option<Arc<dyn RevocationStore>>,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("validator", &self.validator)
            .field("keys", &self.keys)
            .field("mapping", &self.mapping)
            .field("cache", &self.cache)
            .field("revocation", &self.revocation.is_some())
            .finish()
    }
}

/// Builds a [`JwtAuthenticator`]; see [`JwtAuthenticator::builder`].
pub struct JwtAuthenticatorBuilder {
    validator: JwtValidator,
    keys: Arc<dyn KeyResolver>,
    mapping: ClaimMapping,
    cache_capacity: u64,
    cache_max_ttl: Duration,
    revocation: Option<Arc<dyn RevocationStore>>,
}

impl fmt::Debug for JwtAuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("validator", &self.validator)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticatorBuilder {
    /// How claims become subject, tenant, roles and scopes (default: [`ClaimMapping::new`]).
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Capacity of the validated-token cache (default 10 000); 0 disables it.
    pub fn token_cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Longest time a verified token stays cached (default 5 minutes; never past its `exp`).
    pub fn token_cache_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.cache_max_ttl = max_ttl;
        self
    }

    /// Checks every authenticated principal (cached or not) against `store`.
    pub fn revocation(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// Builds the authenticator.
    pub fn build(self) -> JwtAuthenticator {
        let cache = TokenCache::new(
            self.cache_capacity,
            self.cache_max_ttl,
            Duration::from_secs(self.validator.leeway_secs()),
            Arc::clone(self.validator.clock()),
        );
        JwtAuthenticator {
            validator: self.validator,
            keys: self.keys,
            mapping: self.mapping,
            cache,
            revocation: self.revocation,
        }
    }
}

impl JwtAuthenticator {
    /// Starts a builder with the validator and the source of keys (a
    /// [`KeySet`](super::KeySet), or a [`JwksCache`](crate::jwks::JwksCache) with the `jwks`
    /// feature).
    pub fn builder(validator: JwtValidator, keys: Arc<dyn KeyResolver>) -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder {
            validator,
            keys,
            mapping: ClaimMapping::new(),
            cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
            cache_max_ttl: DEFAULT_TOKEN_CACHE_MAX_TTL,
            revocation: None,
        }
    }

    /// The validator.
    pub fn validator(&self) -> &JwtValidator {
        &self.validator
    }

    /// The validated-token cache, if enabled.
    pub fn token_cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// Verifies a bearer token and returns its principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.validator.check_size(token)?;
        let cache_key = self.cache.as_ref().map(|_| TokenCache::hash(token));
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key)
            && let Some(principal) = cache.get(key)
        {
            self.check_revocation(&principal).await?;
            return Ok(principal);
        }

        let parsed = self.validator.parse(token)?;
        let key = self.keys.resolve(parsed.kid(), parsed.algorithm()).await?;
        let verified = self.validator.verify(&parsed, &key)?;
        let principal = self.principal(verified)?;
        self.check_revocation(&principal).await?;

        if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
            cache.insert(key, principal.clone());
        }
        Ok(principal)
    }

    async fn check_revocation(&self, principal: &Principal) -> Result<(), AuthError> {
        let Some(store) = &self.revocation else {
            return Ok(());
        };
        let revoked = match store.is_revoked_now(principal) {
            Some(answer) => answer?,
            None => store.is_revoked(principal).await?,
        };
        if revoked {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }

    fn principal(&self, verified: VerifiedToken) -> Result<Principal, AuthError> {
        let mapped = self.mapping.map(verified.claims())?;
        let mut builder = Principal::builder(
            mapped.subject,
            AuthMethod::Jwt {
                issuer: verified.issuer().to_owned(),
            },
        )
        .maybe_tenant(mapped.tenant)
        .roles(mapped.roles)
        .scopes(mapped.scopes)
        .expires_at(from_unix(verified.expires_at()));
        if let Some(iat) = verified.issued_at() {
            builder = builder.issued_at(from_unix(iat));
        }
        if let Some(jti) = verified.token_id() {
            builder = builder.token_id(jti);
        }
        Ok(builder.claims(verified.into_claims()).build())
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::Bearer
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        match credential {
            Credential::Bearer(token) => self.verify(token.expose()).await,
            _ => Err(AuthError::NotAccepted),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::credential::Secret;
    use crate::error::TokenRejection;
    use crate::jwt::keys::tests::*;
    use crate::jwt::keys::{KeySet, VerifyingKey};
    use crate::jwt::validator::tests::{
        AUD, ISS, NOW, claims, clock, sign, strict_validator, validator,
    };
    use crate::revocation::MemoryRevocationStore;

    fn keys() -> Arc<KeySet> {
        Arc::new(KeySet::new().with(VerifyingKey::from_pem(RSA_PUBLIC).unwrap().with_kid("k1")))
    }

    #[tokio::test]
    async fn principal_from_token() {
        let auth = JwtAuthenticator::builder(validator(), keys()).build();
        let mut c = claims();
        c["jti"] = json!("j-1");
        c["tid"] = json!("acme");
        c["roles"] = json!(["admin"]);
        c["scope"] = json!("mcp:tools mcp:read");
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c);
        let p = auth
            .authenticate(&Credential::Bearer(Secret::new(token)))
            .await
            .unwrap();
        assert_eq!(p.subject(), "alice");
        assert_eq!(p.tenant(), Some("acme"));
        assert!(p.has_role("admin"));
        assert!(p.has_scope("mcp:read"));
        assert_eq!(p.token_id(), Some("j-1"));
        assert_eq!(p.method(), &AuthMethod::Jwt { issuer: ISS.into() });
        assert_eq!(
            p.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(NOW + 600))
        );
        assert_eq!(
            p.issued_at(),
            Some(UNIX_EPOCH + Duration::from_secs(NOW - 10))
        );
        assert_eq!(p.claims()["aud"], AUD);
        assert!(!auth.accepts(CredentialKind::ApiKey));
        assert!(matches!(
            auth.authenticate(&Credential::ApiKey(Secret::new("k")))
                .await,
            Err(AuthError::NotAccepted)
        ));
    }

    #[tokio::test]
    async fn far_future_exp_does_not_overflow() {
        let auth = JwtAuthenticator::builder(validator(), keys()).build();
        let mut c = claims();
        c["exp"] = json!(i64::MAX);
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c);
        let p = auth.verify(&token).await.unwrap();
        let year_9999 = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(p.expires_at(), Some(year_9999));
        // The cached entry is served too.
        auth.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn missing_subject_is_invalid() {
        let auth = JwtAuthenticator::builder(validator(), keys()).build();
        let mut c = claims();
        c.as_object_mut().unwrap().remove("sub");
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c);
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::InvalidToken(TokenRejection::MissingClaim("sub")))
        ));
    }

    #[tokio::test]
    async fn cache_hit_still_checks_revocation_and_expiry() {
        let clock = clock();
        let store = Arc::new(MemoryRevocationStore::new().with_clock(clock.clone()));
        let auth = JwtAuthenticator::builder(strict_validator(&clock), keys())
            .revocation(store.clone())
            .build();
        let mut c = claims();
        c["jti"] = json!("j-2");
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c);
        auth.verify(&token).await.unwrap();
        let hash = TokenCache::hash(&token);
        assert!(auth.token_cache().unwrap().get(&hash).is_some());
        auth.verify(&token).await.unwrap();

        let exp = UNIX_EPOCH + Duration::from_secs(NOW + 600);
        store.revoke_token("j-2", exp).await.unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Revoked)));

        let other = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &claims());
        auth.verify(&other).await.unwrap();
        clock.set(NOW + 600);
        assert!(matches!(
            auth.verify(&other).await,
            Err(AuthError::InvalidToken(TokenRejection::Expired))
        ));
    }

    /// A store that can only answer by awaiting, as a networked store does.
    struct AwaitOnly(MemoryRevocationStore);

    #[async_trait]
    impl RevocationStore for AwaitOnly {
        async fn revoke_token(
            &self,
            jti: &str,
            expires_at: std::time::SystemTime,
        ) -> Result<(), AuthError> {
            self.0.revoke_token(jti, expires_at).await
        }

        async fn revoke_subject(
            &self,
            subject: &str,
            issued_before: std::time::SystemTime,
            ttl_until: std::time::SystemTime,
        ) -> Result<(), AuthError> {
            self.0
                .revoke_subject(subject, issued_before, ttl_until)
                .await
        }

        async fn is_revoked(&self, principal: &Principal) -> Result<bool, AuthError> {
            self.0.is_revoked(principal).await
        }
    }

    #[tokio::test]
    async fn store_without_an_immediate_answer_is_awaited() {
        let clock = clock();
        let store = Arc::new(AwaitOnly(
            MemoryRevocationStore::new().with_clock(clock.clone()),
        ));
        let auth = JwtAuthenticator::builder(strict_validator(&clock), keys())
            .revocation(store.clone())
            .build();
        let mut c = claims();
        c["jti"] = json!("j-3");
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c);
        auth.verify(&token).await.unwrap();
        assert!(
            store
                .is_revoked_now(&auth.verify(&token).await.unwrap())
                .is_none()
        );
        let exp = UNIX_EPOCH + Duration::from_secs(NOW + 600);
        store.revoke_token("j-3", exp).await.unwrap();
        assert!(matches!(auth.verify(&token).await, Err(AuthError::Revoked)));
    }

    #[tokio::test]
    async fn cache_can_be_disabled() {
        let auth = JwtAuthenticator::builder(validator(), keys())
            .token_cache_capacity(0)
            .build();
        assert!(auth.token_cache().is_none());
        let token = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &claims());
        auth.verify(&token).await.unwrap();
        let oversized = "x".repeat(20_000);
        assert!(matches!(
            auth.verify(&oversized).await,
            Err(AuthError::InvalidToken(TokenRejection::Oversized))
        ));
    }
}
