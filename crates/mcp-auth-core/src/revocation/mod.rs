//! Token revocation: the [`RevocationStore`] trait and its stores.

use std::time::{Duration, SystemTime};

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryRevocationStore;
#[cfg(feature = "redis")]
pub use redis::RedisRevocationStore;

use async_trait::async_trait;

use crate::error::AuthError;
use crate::principal::Principal;

/// Revoked tokens and subjects, checked on every request (also on a validated-token cache hit).
///
/// Entries are bounded in time: a revoked `jti` is kept only until the token would have
/// expired anyway, so the store never grows without bound.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Revokes the token with identifier `jti` until `expires_at` (the token's own `exp`).
    async fn revoke_token(&self, jti: &str, expires_at: SystemTime) -> Result<(), AuthError>;

    /// Revokes every token of `subject` issued before `issued_before` (for example after a
    /// password change or a compromised account). `ttl_until` bounds how long the entry is
    /// kept: set it to now + the longest token lifetime you accept.
    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        ttl_until: SystemTime,
    ) -> Result<(), AuthError>;

    /// Whether `principal`'s credential is revoked: its `jti` is revoked, or its subject was
    /// revoked after (or without knowing when) the credential was issued.
    async fn is_revoked(&self, principal: &Principal) -> Result<bool, AuthError>;

    /// The answer of [`is_revoked`](Self::is_revoked) when the store can give it without
    /// waiting (its state is in process memory), or `None` (the default) when it must be
    /// awaited. A store that answers here must answer exactly as `is_revoked` would.
    ///
    /// Callers on a hot path try this first and await `is_revoked` only on `None`, which
    /// spares an in-memory store the boxed future of an async trait call on every request.
    fn is_revoked_now(&self, principal: &Principal) -> Option<Result<bool, AuthError>> {
        let _ = principal;
        None
    }
}

/// Default time an entry outlives the expiry it was given, to cover clock skew and the
/// verifier's leeway (a token is accepted up to `exp` + leeway).
const DEFAULT_RETENTION_MARGIN: Duration = Duration::from_secs(120);

/// Until when an entry given expiry `at` is kept (`at` + `margin`), or `None` when that
/// time is not after `now`: nothing can accept such a credential any more, so no entry is
/// written.
fn retention_end(at: SystemTime, margin: Duration, now: SystemTime) -> Option<SystemTime> {
    let until = at.checked_add(margin).unwrap_or(at);
    (until > now).then_some(until)
}

/// Whether a subject revocation of tokens issued before `issued_before` covers `principal`.
///
/// A credential without an issue time is revoked (it cannot prove it is newer). `iat` has
/// whole-second precision, so a token issued in the same second as the revocation counts as
/// older: failing closed costs the caller one re-login.
fn subject_revokes(issued_before: SystemTime, principal: &Principal) -> bool {
    principal.issued_at().is_none_or(|iat| iat < issued_before)
}
