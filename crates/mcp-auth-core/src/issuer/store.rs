//! Refresh-token state: the [`RefreshTokenStore`] trait and its bounded in-memory store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::IssueRequest;
use crate::error::BoxError;

/// The SHA-256 of a refresh token: the only form in which a store keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash([u8; 32]);

impl RefreshTokenHash {
    /// Hashes a refresh token.
    pub fn of(token: &str) -> Self {
        Self(crate::token_cache::TokenCache::hash(token))
    }

    /// The raw digest, for stores that persist it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a hash read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for RefreshTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines; the digest is not a secret, but there
        // is no reason to print all of it.
        write!(f, "RefreshTokenHash({}..)", hex::encode(&self.0[..4]))
    }
}

/// A refresh-token family: the chain of tokens that descends from one login.
///
/// Every refresh exchanges the family's active token for a new one; presenting a token that
/// was already exchanged revokes the whole family (OAuth 2.0 Security BCP, section 4.14).
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshFamily {
    /// Random identifier of the family.
    pub id: String,
    /// What each access token minted from this family says about the caller.
    pub grant: IssueRequest,
    /// When the family started (the login).
    pub created_at: SystemTime,
    /// Absolute end of the family: no refresh token of it outlives this.
    pub expires_at: SystemTime,
}

/// The outcome of [`RefreshTokenStore::exchange`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Exchange {
    /// The presented token was active; it is now used and `next` is the family's active
    /// token until `expires_at` (the requested expiry, capped at the family's end).
    Rotated {
        /// The family, with the grant to mint the new access token from.
        family: RefreshFamily,
        /// When the new refresh token expires.
        expires_at: SystemTime,
    },
    /// No such token (never issued, forgotten, or its family was evicted).
    Unknown,
    /// The token or its family has expired.
    Expired,
    /// The token had already been exchanged: the family is now revoked.
    Reused {
        /// The family that was revoked.
        family_id: String,
    },
    /// The token's family was revoked earlier.
    Revoked {
        /// The revoked family.
        family_id: String,
    },
}

/// Where refresh tokens (as hashes) and their families live.
///
/// Implementations must make [`RefreshTokenStore::exchange`] atomic: two concurrent
/// exchanges of the same token must not both succeed (the second one is a reuse).
///
/// A store may also support a *reuse grace window* through
/// [`RefreshTokenStore::exchange_with_grace`]; the default implementation has none and
/// treats every second presentation as a reuse.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + fmt::Debug {
    /// Starts `family` with its first token `first`, valid until `expires_at`.
    async fn start_family(
        &self,
        family: RefreshFamily,
        first: RefreshTokenHash,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), BoxError>;

    /// Exchanges the `presented` token for `next`, atomically, as described on [`Exchange`].
    async fn exchange(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Exchange, BoxError>;

    /// Revokes the family `token` belongs to (logout). Returns whether a family was found.
    async fn revoke_family_of(
        &self,
        token: RefreshTokenHash,
        now: SystemTime,
    ) -> Result<bool, BoxError>;

    /// Like [`exchange`](Self::exchange), but the family's *previous* token (the one whose
    /// exchange produced the active token) may be presented again for `grace` after that
    /// exchange: a client whose refresh response was lost can retry with the token it
    /// still holds. Such a retry rotates again: `next` becomes the family's only active
    /// token and the token it replaces counts as used (presenting it later is a reuse).
    /// Outside the window, or for any older token, a second presentation is a reuse as in
    /// `exchange`.
    ///
    /// The default implementation ignores `grace` and calls `exchange`: a store without
    /// grace support is strict, never lenient.
    async fn exchange_with_grace(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
        grace: Duration,
    ) -> Result<Exchange, BoxError> {
        let _ = grace;
        self.exchange(presented, next, next_expires_at, now).await
    }
}

/// Bounds of a [`MemoryRefreshTokenStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStoreLimits {
    /// Most families kept; when full, expired ones are purged, then the oldest is evicted
    /// (its tokens then fail as unknown). Default 100 000.
    pub max_families: usize,
    /// Most tokens remembered per family, the active one included. Older used tokens are
    /// forgotten beyond this, so their reuse is refused as unknown instead of revoking the
    /// family. Default 32.
    pub max_tokens_per_family: usize,
    /// A full purge of expired entries runs every this many operations. Default 4096.
    pub purge_every: usize,
}

impl Default for MemoryStoreLimits {
    fn default() -> Self {
        Self {
            max_families: 100_000,
            max_tokens_per_family: 32,
            purge_every: 4096,
        }
    }
}

#[derive(Debug)]
struct FamilyState {
    family: RefreshFamily,
    revoked: bool,
    /// The family's remembered tokens, oldest first; the last one is the active one.
    tokens: VecDeque<RefreshTokenHash>,
    /// The token whose exchange produced the active token, and when that exchange happened:
    /// the only token a grace window applies to.
    previous: Option<(RefreshTokenHash, SystemTime)>,
}

#[derive(Debug)]
struct TokenState {
    family_id: String,
    expires_at: SystemTime,
    used: bool,
}

#[derive(Debug, Default)]
struct Inner {
    families: HashMap<String, FamilyState>,
    tokens: HashMap<RefreshTokenHash, TokenState>,
    ops_since_purge: usize,
}

impl Inner {
    fn remove_family(&mut self, id: &str) {
        if let Some(state) = self.families.remove(id) {
            for hash in state.tokens {
                self.tokens.remove(&hash);
            }
        }
    }

    fn purge_expired(&mut self, now: SystemTime) -> usize {
        let expired: Vec<String> = self
            .families
            .iter()
            .filter(|(_, state)| state.family.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_family(id);
        }
        let tokens = &mut self.tokens;
        for state in self.families.values_mut() {
            state.tokens.retain(|hash| {
                let live = tokens.get(hash).is_some_and(|t| t.expires_at > now);
                if !live {
                    tokens.remove(hash);
                }
                live
            });
        }
        self.ops_since_purge = 0;
        expired.len()
    }

    fn tick(&mut self, now: SystemTime, limits: &MemoryStoreLimits) {
        self.ops_since_purge += 1;
        if self.ops_since_purge >= limits.purge_every {
            self.purge_expired(now);
        }
    }

    fn make_room(&mut self, now: SystemTime, limits: &MemoryStoreLimits) {
        if self.families.len() < limits.max_families {
            return;
        }
        self.purge_expired(now);
        while self.families.len() >= limits.max_families {
            let oldest = self
                .families
                .iter()
                .min_by_key(|(_, state)| state.family.created_at)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.remove_family(&id),
                None => break,
            }
        }
    }
}

/// A bounded in-memory [`RefreshTokenStore`] for one process (development, tests, a single
/// replica). Expired families and tokens are purged periodically and when full.
#[derive(Default)]
pub struct MemoryRefreshTokenStore {
    inner: Mutex<Inner>,
    limits: MemoryStoreLimits,
}

impl MemoryRefreshTokenStore {
    /// A store with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with `limits`. Zero limits are raised to one.
    pub fn with_limits(limits: MemoryStoreLimits) -> Self {
        Self {
            inner: Mutex::default(),
            limits: MemoryStoreLimits {
                max_families: limits.max_families.max(1),
                max_tokens_per_family: limits.max_tokens_per_family.max(1),
                purge_every: limits.purge_every.max(1),
            },
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes expired families and expired tokens now; returns how many families went.
    pub fn purge_expired(&self, now: SystemTime) -> usize {
        self.inner().purge_expired(now)
    }

    /// Number of families held (live, revoked or not yet purged).
    pub fn family_count(&self) -> usize {
        self.inner().families.len()
    }

    /// Number of token hashes held.
    pub fn token_count(&self) -> usize {
        self.inner().tokens.len()
    }
}

impl fmt::Debug for MemoryRefreshTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner();
        f.debug_struct("MemoryRefreshTokenStore")
            .field("families", &inner.families.len())
            .field("tokens", &inner.tokens.len())
            .field("limits", &self.limits)
            .finish()
    }
}

#[async_trait]
impl RefreshTokenStore for MemoryRefreshTokenStore {
    async fn start_family(
        &self,
        family: RefreshFamily,
        first: RefreshTokenHash,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<(), BoxError> {
        let mut inner = self.inner();
        inner.tick(now, &self.limits);
        inner.make_room(now, &self.limits);
        let id = family.id.clone();
        inner.remove_family(&id);
        inner.tokens.insert(
            first,
            TokenState {
                family_id: id.clone(),
                expires_at: expires_at.min(family.expires_at),
                used: false,
            },
        );
        inner.families.insert(
            id,
            FamilyState {
                family,
                revoked: false,
                tokens: VecDeque::from([first]),
                previous: None,
            },
        );
        Ok(())
    }

    async fn exchange(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Exchange, BoxError> {
        self.exchange_with_grace(presented, next, next_expires_at, now, Duration::ZERO)
            .await
    }

    async fn exchange_with_grace(
        &self,
        presented: RefreshTokenHash,
        next: RefreshTokenHash,
        next_expires_at: SystemTime,
        now: SystemTime,
        grace: Duration,
    ) -> Result<Exchange, BoxError> {
        let mut inner = self.inner();
        inner.tick(now, &self.limits);
        let Some(token) = inner.tokens.get(&presented) else {
            return Ok(Exchange::Unknown);
        };
        let (family_id, used, token_expiry) =
            (token.family_id.clone(), token.used, token.expires_at);
        let Some(state) = inner.families.get_mut(&family_id) else {
            inner.tokens.remove(&presented);
            return Ok(Exchange::Unknown);
        };
        if state.revoked {
            return Ok(Exchange::Revoked { family_id });
        }
        // The active token is the last one; a used token is a retry inside the grace window
        // only if there is a window, it is the previous token and the window since its
        // exchange is still open. Without a window no retry is allowed: a concurrent exchange
        // that read the clock before the winner would otherwise look "inside" a zero window.
        let retry = used
            && !grace.is_zero()
            && state.previous.is_some_and(|(previous, exchanged_at)| {
                previous == presented
                    && exchanged_at
                        .checked_add(grace)
                        .is_some_and(|window_end| now < window_end)
            });
        if used && !retry {
            state.revoked = true;
            return Ok(Exchange::Reused { family_id });
        }
        if token_expiry <= now || state.family.expires_at <= now {
            return Ok(Exchange::Expired);
        }
        let expires_at = next_expires_at.min(state.family.expires_at);
        let family = state.family.clone();
        // On a retry the active token is superseded: it stays remembered as used, so a later
        // presentation of it revokes the family. The previous token and the start of its
        // window stay as they were, so retries never extend the window.
        let superseded = if retry {
            state.tokens.back().copied()
        } else {
            state.previous = Some((presented, now));
            Some(presented)
        };
        state.tokens.push_back(next);
        let forgotten = if state.tokens.len() > self.limits.max_tokens_per_family {
            state.tokens.pop_front()
        } else {
            None
        };
        if let Some(token) = superseded.and_then(|hash| inner.tokens.get_mut(&hash)) {
            token.used = true;
        }
        if let Some(old) = forgotten {
            inner.tokens.remove(&old);
        }
        inner.tokens.insert(
            next,
            TokenState {
                family_id,
                expires_at,
                used: false,
            },
        );
        if retry {
            tracing::debug!(
                family_id = %family.id,
                "previous refresh token presented again inside the grace window; rotated again"
            );
        }
        Ok(Exchange::Rotated { family, expires_at })
    }

    async fn revoke_family_of(
        &self,
        token: RefreshTokenHash,
        now: SystemTime,
    ) -> Result<bool, BoxError> {
        let mut inner = self.inner();
        inner.tick(now, &self.limits);
        let Some(family_id) = inner.tokens.get(&token).map(|t| t.family_id.clone()) else {
            return Ok(false);
        };
        match inner.families.get_mut(&family_id) {
            Some(state) => {
                state.revoked = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn family(id: &str, created: u64, ends: u64) -> RefreshFamily {
        RefreshFamily {
            id: id.into(),
            grant: IssueRequest::new("alice"),
            created_at: at(created),
            expires_at: at(ends),
        }
    }

    fn h(token: &str) -> RefreshTokenHash {
        RefreshTokenHash::of(token)
    }

    /// Starts `family` with its first token `first` (valid until `expires` s) at `now` s.
    async fn start(
        store: &MemoryRefreshTokenStore,
        family: RefreshFamily,
        first: &str,
        expires: u64,
        now: u64,
    ) {
        store
            .start_family(family, h(first), at(expires), at(now))
            .await
            .unwrap();
    }

    /// Exchanges `presented` for `next` (valid until `expires` s) at `now` s.
    async fn exchange(
        store: &MemoryRefreshTokenStore,
        presented: &str,
        next: &str,
        expires: u64,
        now: u64,
    ) -> Exchange {
        store
            .exchange(h(presented), h(next), at(expires), at(now))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn exchange_rotates_then_detects_reuse() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 100, 0).await;
        let out = exchange(&store, "a", "b", 200, 10).await;
        assert!(matches!(out, Exchange::Rotated { expires_at, .. } if expires_at == at(200)));
        let out = exchange(&store, "a", "c", 200, 11).await;
        assert_eq!(
            out,
            Exchange::Reused {
                family_id: "f".into()
            }
        );
        let out = exchange(&store, "b", "d", 200, 12).await;
        assert_eq!(
            out,
            Exchange::Revoked {
                family_id: "f".into()
            }
        );
        let out = exchange(&store, "zz", "e", 200, 12).await;
        assert_eq!(out, Exchange::Unknown);
    }

    #[tokio::test]
    async fn without_grace_a_concurrent_exchange_with_an_earlier_clock_is_reuse() {
        // Two refreshes of one token read the clock at 10 and 9; the one stamped 10 wins the
        // store first. The loser must not pass as a retry inside a zero-length window.
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 100, 0).await;
        let out = exchange(&store, "a", "b", 200, 10).await;
        assert!(matches!(out, Exchange::Rotated { .. }));
        let out = exchange(&store, "a", "c", 200, 9).await;
        assert_eq!(
            out,
            Exchange::Reused {
                family_id: "f".into()
            }
        );
    }

    #[tokio::test]
    async fn expiry_of_token_and_family() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 150), "a", 100, 0).await;
        let out = exchange(&store, "a", "b", 300, 50).await;
        // The new token is capped at the family's end.
        assert!(matches!(out, Exchange::Rotated { expires_at, .. } if expires_at == at(150)));
        let out = exchange(&store, "b", "c", 400, 150).await;
        assert_eq!(out, Exchange::Expired);
        assert_eq!(store.purge_expired(at(151)), 1);
        assert_eq!(store.family_count(), 0);
        assert_eq!(store.token_count(), 0);
    }

    #[tokio::test]
    async fn families_and_token_history_are_bounded() {
        let store = MemoryRefreshTokenStore::with_limits(MemoryStoreLimits {
            max_families: 2,
            max_tokens_per_family: 3,
            purge_every: 1000,
        });
        for (i, id) in ["f1", "f2", "f3"].into_iter().enumerate() {
            start(&store, family(id, i as u64, 1000), id, 900, i as u64).await;
        }
        assert_eq!(store.family_count(), 2);
        // The oldest family was evicted; its token is now unknown.
        let out = exchange(&store, "f1", "x", 900, 5).await;
        assert_eq!(out, Exchange::Unknown);

        let mut current = "f3".to_owned();
        for n in 0..5 {
            let next = format!("f3-{n}");
            let out = exchange(&store, &current, &next, 900, 10).await;
            assert!(matches!(out, Exchange::Rotated { .. }));
            current = next;
        }
        // f2 holds one token, f3 remembers at most three.
        assert_eq!(store.token_count(), 1 + 3);
        // A forgotten used token is refused as unknown and does not revoke the family...
        let out = exchange(&store, "f3", "y", 900, 11).await;
        assert_eq!(out, Exchange::Unknown);
        let out = exchange(&store, &current, "f3-5", 900, 12).await;
        assert!(matches!(out, Exchange::Rotated { .. }));
        // ...while a remembered one does.
        let out = exchange(&store, &current, "z", 900, 13).await;
        assert!(matches!(out, Exchange::Reused { .. }));
    }

    /// Exchanges `presented` for `next` at `now` s with a grace window of `grace` s.
    async fn exchange_grace(
        store: &MemoryRefreshTokenStore,
        presented: &str,
        next: &str,
        now: u64,
        grace: u64,
    ) -> Exchange {
        store
            .exchange_with_grace(
                h(presented),
                h(next),
                at(900),
                at(now),
                Duration::from_secs(grace),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn previous_token_may_retry_inside_the_grace_window_only() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 900, 0).await;
        assert!(matches!(
            exchange_grace(&store, "a", "b", 10, 30).await,
            Exchange::Rotated { .. }
        ));
        // The response holding "b" was lost: "a" again inside the window rotates to "c"...
        assert!(matches!(
            exchange_grace(&store, "a", "c", 20, 30).await,
            Exchange::Rotated { .. }
        ));
        // ...and "b" is superseded: presenting it now is a reuse.
        let out = exchange_grace(&store, "b", "d", 21, 30).await;
        assert_eq!(
            out,
            Exchange::Reused {
                family_id: "f".into()
            }
        );
        assert!(matches!(
            exchange_grace(&store, "c", "e", 22, 30).await,
            Exchange::Revoked { .. }
        ));
    }

    #[tokio::test]
    async fn grace_window_is_not_extended_by_retries_and_older_tokens_get_none() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 900, 0).await;
        assert!(matches!(
            exchange_grace(&store, "a", "b", 10, 30).await,
            Exchange::Rotated { .. }
        ));
        assert!(matches!(
            exchange_grace(&store, "a", "c", 39, 30).await,
            Exchange::Rotated { .. }
        ));
        // The window opened at 10 s and closes at 40 s, retries or not.
        let out = exchange_grace(&store, "a", "d", 40, 30).await;
        assert!(matches!(out, Exchange::Reused { .. }));

        let store = MemoryRefreshTokenStore::new();
        start(&store, family("g", 0, 1000), "a", 900, 0).await;
        for (presented, next, now) in [("a", "b", 10), ("b", "c", 11)] {
            assert!(matches!(
                exchange_grace(&store, presented, next, now, 30).await,
                Exchange::Rotated { .. }
            ));
        }
        // "a" is two exchanges back: not the previous token, so a reuse.
        let out = exchange_grace(&store, "a", "d", 12, 30).await;
        assert!(matches!(out, Exchange::Reused { .. }));
    }

    #[tokio::test]
    async fn zero_grace_is_strict_and_expiry_still_applies_to_a_retry() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 900, 0).await;
        assert!(matches!(
            exchange_grace(&store, "a", "b", 10, 0).await,
            Exchange::Rotated { .. }
        ));
        assert!(matches!(
            exchange_grace(&store, "a", "c", 10, 0).await,
            Exchange::Reused { .. }
        ));

        let store = MemoryRefreshTokenStore::new();
        start(&store, family("g", 0, 1000), "a", 15, 0).await;
        assert!(matches!(
            exchange_grace(&store, "a", "b", 10, 30).await,
            Exchange::Rotated { .. }
        ));
        // Inside the window but past the presented token's own expiry.
        assert_eq!(
            exchange_grace(&store, "a", "c", 16, 30).await,
            Exchange::Expired
        );
    }

    #[tokio::test]
    async fn revoke_family_of_a_token() {
        let store = MemoryRefreshTokenStore::new();
        start(&store, family("f", 0, 1000), "a", 900, 0).await;
        assert!(store.revoke_family_of(h("a"), at(1)).await.unwrap());
        assert!(!store.revoke_family_of(h("nope"), at(1)).await.unwrap());
        let out = exchange(&store, "a", "b", 900, 2).await;
        assert_eq!(
            out,
            Exchange::Revoked {
                family_id: "f".into()
            }
        );
    }

    #[test]
    fn hash_debug_is_short() {
        let out = format!("{:?}", h("secret-token"));
        assert!(out.starts_with("RefreshTokenHash("));
        assert!(out.len() < 30);
    }
}
