//! Stateful mode's MCP sessions: random `Mcp-Session-Id`s bound to the principal that created
//! them, bounded in number (in total and per principal) and expired when idle.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use mcp_auth_core::{AuthMethod, Principal};
use rand::RngCore as _;

/// Bytes of randomness in a session id (printed as hex: 64 visible ASCII characters).
const SESSION_ID_BYTES: usize = 32;

/// The bounds of a [`SessionStore`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    /// Sessions held at most; beyond it new sessions are refused.
    pub(crate) max_sessions: usize,
    /// Sessions one principal holds at most; its least recently used one is ended to make
    /// room for a new one.
    pub(crate) max_per_principal: usize,
    /// A session unused for this long has ended.
    pub(crate) idle_timeout: Duration,
}

/// Why a presented session id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    /// No such session (never issued, ended or expired).
    Unknown,
    /// The session exists but belongs to another principal (a hijack attempt).
    Foreign {
        /// The session owner's subject, for the audit trail.
        owner: String,
        /// The session owner's tenant.
        owner_tenant: Option<String>,
    },
}

/// Why no session could be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionFull {
    /// `max_sessions` live sessions exist.
    #[error("the gateway holds its maximum number of sessions")]
    Full,
}

/// A session that ended, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// The owner's tenant.
    pub(crate) tenant: Option<String>,
    /// How long the session lived.
    pub(crate) lifetime: Duration,
}

#[derive(Debug)]
struct Session {
    /// Who vouched for the owner: the JWT issuer, or the credential kind.
    authority: Box<str>,
    subject: Box<str>,
    tenant: Option<Box<str>>,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    fn owned_by(&self, principal: &Principal) -> bool {
        *self.subject == *principal.subject()
            && self.tenant.as_deref() == principal.tenant()
            && *self.authority == *authority(principal)
    }

    fn ended(&self, now: Instant) -> Ended {
        Ended {
            tenant: self.tenant.as_deref().map(str::to_owned),
            lifetime: now.saturating_duration_since(self.created),
        }
    }
}

/// Who vouched for `principal`: two issuers may use the same subject for different people.
fn authority(principal: &Principal) -> &str {
    match principal.method() {
        AuthMethod::Jwt { issuer } => issuer,
        AuthMethod::ApiKey { .. } => "api_key",
        _ => "local",
    }
}

/// The key counting one principal's sessions.
type OwnerKey = (Option<Box<str>>, Box<str>);

fn owner_key(tenant: Option<&str>, subject: &str) -> OwnerKey {
    (tenant.map(Box::from), Box::from(subject))
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Box<str>, Session>,
    per_owner: HashMap<OwnerKey, usize>,
    last_sweep: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, id: &str, now: Instant) -> Option<Ended> {
        let session = self.sessions.remove(id)?;
        let key = owner_key(session.tenant.as_deref(), &session.subject);
        if let Some(count) = self.per_owner.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_owner.remove(&key);
            }
        }
        Some(session.ended(now))
    }

    /// Ends every session idle for longer than `idle`.
    fn sweep(&mut self, now: Instant, idle: Duration, ended: &mut Vec<Ended>) {
        let expired: Vec<Box<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            ended.extend(self.remove(&id, now));
        }
        self.last_sweep = Some(now);
    }
}

/// The live sessions of a stateful gateway.
#[derive(Debug)]
pub(crate) struct SessionStore {
    limits: SessionLimits,
    inner: Mutex<Inner>,
}

/// A new session id: 256 bits from the thread-local CSPRNG, hex-encoded.
fn new_session_id() -> String {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl SessionStore {
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain maps; a panic elsewhere cannot leave them half-updated in a harmful way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The idle timeout.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.limits.idle_timeout
    }

    /// Starts a session owned by `principal`. Returns its id and the sessions that ended to
    /// make room (expired ones, or the principal's least recently used one).
    pub(crate) fn create(
        &self,
        principal: &Principal,
        now: Instant,
    ) -> Result<(String, Vec<Ended>), SessionFull> {
        let mut ended = Vec::new();
        let mut inner = self.lock();
        let sweep_due = inner
            .last_sweep
            .is_none_or(|at| now.saturating_duration_since(at) >= self.limits.idle_timeout);
        if sweep_due || inner.sessions.len() >= self.limits.max_sessions {
            inner.sweep(now, self.limits.idle_timeout, &mut ended);
        }
        let key = owner_key(principal.tenant(), principal.subject());
        let held = inner.per_owner.get(&key).copied().unwrap_or(0);
        if held >= self.limits.max_per_principal {
            let oldest = inner
                .sessions
                .iter()
                .filter(|(_, s)| s.owned_by(principal))
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                ended.extend(inner.remove(&id, now));
            }
        }
        if inner.sessions.len() >= self.limits.max_sessions {
            return Err(SessionFull::Full);
        }
        let id = new_session_id();
        inner.sessions.insert(
            Box::from(id.as_str()),
            Session {
                authority: Box::from(authority(principal)),
                subject: Box::from(principal.subject()),
                tenant: principal.tenant().map(Box::from),
                created: now,
                last_seen: now,
            },
        );
        *inner.per_owner.entry(key).or_insert(0) += 1;
        Ok((id, ended))
    }

    /// Accepts `id` for `principal` and marks the session used. An expired session is ended
    /// (and returned in the error's place as `Unknown`, with its end for metrics).
    pub(crate) fn touch(
        &self,
        id: &str,
        principal: &Principal,
        now: Instant,
    ) -> Result<(), (SessionRefusal, Option<Ended>)> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(id) else {
            return Err((SessionRefusal::Unknown, None));
        };
        if now.saturating_duration_since(session.last_seen) > self.limits.idle_timeout {
            let ended = inner.remove(id, now);
            return Err((SessionRefusal::Unknown, ended));
        }
        if !session.owned_by(principal) {
            return Err((
                SessionRefusal::Foreign {
                    owner: session.subject.to_string(),
                    owner_tenant: session.tenant.as_deref().map(str::to_owned),
                },
                None,
            ));
        }
        session.last_seen = now;
        Ok(())
    }

    /// Ends session `id` at `principal`'s request (`DELETE /mcp`).
    pub(crate) fn end(
        &self,
        id: &str,
        principal: &Principal,
        now: Instant,
    ) -> Result<Ended, SessionRefusal> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get(id) else {
            return Err(SessionRefusal::Unknown);
        };
        if !session.owned_by(principal) {
            return Err(SessionRefusal::Foreign {
                owner: session.subject.to_string(),
                owner_tenant: session.tenant.as_deref().map(str::to_owned),
            });
        }
        inner.remove(id, now).ok_or(SessionRefusal::Unknown)
    }

    /// Live sessions and distinct principals holding them, of `tenant` (all when `None`),
    /// as of `now` (idle sessions not yet swept are not counted).
    pub(crate) fn census(&self, tenant: Option<&str>, now: Instant) -> SessionCensus {
        let inner = self.lock();
        let live = |s: &&Session| {
            now.saturating_duration_since(s.last_seen) <= self.limits.idle_timeout
                && tenant.is_none_or(|t| s.tenant.as_deref() == Some(t))
        };
        let sessions = inner.sessions.values().filter(live).count();
        let mut users: Vec<(&Option<Box<str>>, &str)> = inner
            .sessions
            .values()
            .filter(live)
            .map(|s| (&s.tenant, &*s.subject))
            .collect();
        users.sort_unstable();
        users.dedup();
        SessionCensus {
            sessions,
            users: users.len(),
            max_sessions: self.limits.max_sessions,
        }
    }
}

/// What [`SessionStore::census`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SessionCensus {
    /// Live sessions.
    pub(crate) sessions: usize,
    /// Distinct principals holding them.
    pub(crate) users: usize,
    /// The configured cap (of all tenants together).
    pub(crate) max_sessions: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str, tenant: &str) -> Principal {
        Principal::builder(
            subject,
            AuthMethod::Jwt {
                issuer: "https://issuer.example".into(),
            },
        )
        .tenant(tenant)
        .build()
    }

    fn store(max: usize, per_principal: usize) -> SessionStore {
        SessionStore::new(SessionLimits {
            max_sessions: max,
            max_per_principal: per_principal,
            idle_timeout: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_session_is_bound_to_its_creator() {
        let s = store(10, 10);
        let now = Instant::now();
        let alice = principal("alice", "acme");
        let (id, ended) = s.create(&alice, now).unwrap();
        assert!(ended.is_empty());
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.touch(&id, &alice, now), Ok(()));
        // The same subject in another tenant, or vouched for by another issuer, is another
        // principal.
        let elsewhere = Principal::builder(
            "alice",
            AuthMethod::Jwt {
                issuer: "https://other.example".into(),
            },
        )
        .tenant("acme")
        .build();
        for other in [
            principal("mallory", "acme"),
            principal("alice", "globex"),
            elsewhere,
        ] {
            let (refusal, _) = s.touch(&id, &other, now).unwrap_err();
            assert_eq!(
                refusal,
                SessionRefusal::Foreign {
                    owner: "alice".into(),
                    owner_tenant: Some("acme".into())
                }
            );
            assert!(matches!(
                s.end(&id, &other, now),
                Err(SessionRefusal::Foreign { .. })
            ));
        }
        assert_eq!(
            s.touch("0000", &alice, now).unwrap_err().0,
            SessionRefusal::Unknown
        );
        let ended = s.end(&id, &alice, now + Duration::from_secs(5)).unwrap();
        assert_eq!(ended.lifetime, Duration::from_secs(5));
        assert_eq!(ended.tenant.as_deref(), Some("acme"));
        assert_eq!(
            s.touch(&id, &alice, now).unwrap_err().0,
            SessionRefusal::Unknown
        );
    }

    #[test]
    fn ids_are_unique() {
        let s = store(100, 100);
        let alice = principal("alice", "acme");
        let now = Instant::now();
        let mut ids: Vec<String> = (0..50).map(|_| s.create(&alice, now).unwrap().0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50);
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them_alive() {
        let s = store(10, 10);
        let alice = principal("alice", "acme");
        let t0 = Instant::now();
        let (kept, _) = s.create(&alice, t0).unwrap();
        let (idle, _) = s.create(&alice, t0).unwrap();
        assert_eq!(s.touch(&kept, &alice, t0 + Duration::from_secs(50)), Ok(()));
        let later = t0 + Duration::from_secs(100);
        assert_eq!(s.touch(&kept, &alice, later), Ok(()));
        let (refusal, ended) = s.touch(&idle, &alice, later).unwrap_err();
        assert_eq!(refusal, SessionRefusal::Unknown);
        assert_eq!(ended.unwrap().lifetime, Duration::from_secs(100));
        assert_eq!(s.census(None, later).sessions, 1);
    }

    #[test]
    fn the_cap_refuses_new_sessions_until_old_ones_expire() {
        let s = store(2, 10);
        let t0 = Instant::now();
        s.create(&principal("a", "t"), t0).unwrap();
        s.create(&principal("b", "t"), t0).unwrap();
        assert_eq!(
            s.create(&principal("c", "t"), t0).unwrap_err(),
            SessionFull::Full
        );
        let (_, ended) = s
            .create(&principal("c", "t"), t0 + Duration::from_secs(61))
            .unwrap();
        assert_eq!(ended.len(), 2);
    }

    #[test]
    fn a_principal_over_its_share_loses_its_least_recently_used_session() {
        let s = store(10, 2);
        let alice = principal("alice", "acme");
        let t0 = Instant::now();
        let (first, _) = s.create(&alice, t0).unwrap();
        let (second, _) = s.create(&alice, t0 + Duration::from_secs(1)).unwrap();
        s.touch(&first, &alice, t0 + Duration::from_secs(2))
            .unwrap();
        let (third, ended) = s.create(&alice, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(ended.len(), 1);
        let now = t0 + Duration::from_secs(4);
        assert!(s.touch(&first, &alice, now).is_ok());
        assert!(s.touch(&third, &alice, now).is_ok());
        // Others are unaffected by alice's share.
        s.create(&principal("bob", "acme"), now).unwrap();
        assert_eq!(
            s.census(Some("acme"), now),
            SessionCensus {
                sessions: 3,
                users: 2,
                max_sessions: 10
            }
        );
        assert_eq!(s.census(Some("globex"), now).sessions, 0);
        assert_eq!(
            s.touch(&second, &alice, now).unwrap_err().0,
            SessionRefusal::Unknown
        );
    }
}
