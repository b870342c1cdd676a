//! Group overage: [`GroupResolver`], the lookup of a user's groups when the token could not
//! carry them, and the cache of its answers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mcp_auth_core::{BoxError, Clock};
use serde_json::{Map, Value};

/// Looks up the groups of a user whose token carries the group overage claims instead of
/// `groups`.
///
/// Entra puts at most 200 groups in a JWT (6 in an implicit-flow ID token); past that, the
/// token carries `_claim_names: {"groups": "src1"}` with a Microsoft Graph endpoint in
/// `_claim_sources` (or `hasgroups: true`), and the application must ask Graph itself
/// (`POST /v1.0/users/{oid}/getMemberObjects` or `GET /users/{oid}/transitiveMemberOf`,
/// with an app token holding `GroupMember.Read.All`). Implement this trait with your Graph
/// client; the [`EntraAuthenticator`](crate::EntraAuthenticator) caches the answers per
/// user for [`EntraConfig::group_cache_ttl_secs`](crate::EntraConfig::group_cache_ttl_secs).
///
/// Without a resolver, overage tokens authenticate without group-based roles and one warning
/// is logged.
///
/// ```
/// use async_trait::async_trait;
/// use mcp_auth_azure::GroupResolver;
/// use mcp_auth_core::BoxError;
///
/// /// A fixed directory, as a test double or for a small deployment.
/// #[derive(Debug)]
/// struct Fixed;
///
/// #[async_trait]
/// impl GroupResolver for Fixed {
///     async fn groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, BoxError> {
///         Ok(match (tenant, oid) {
///             ("t1", "alice") => vec!["g-admins".into()],
///             _ => Vec::new(),
///         })
///     }
/// }
/// ```
#[async_trait]
pub trait GroupResolver: Send + Sync + fmt::Debug {
    /// The object ids of the groups user `oid` of tenant `tenant` is a member of
    /// (transitively, as the `groups` claim would have listed them).
    ///
    /// An error makes the authentication fail with 503 (the roles cannot be decided); it is
    /// not cached.
    async fn groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, BoxError>;
}

/// Whether verified `claims` signal group overage: `_claim_names` names `groups`, or
/// `hasgroups` is true.
pub fn has_group_overage(claims: &Map<String, Value>) -> bool {
    claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .is_some_and(|names| names.contains_key("groups"))
        || claims.get("hasgroups").and_then(Value::as_bool) == Some(true)
}

/// Most users whose groups are kept at once; when full, expired entries are dropped first,
/// then everything.
const MAX_ENTRIES: usize = 10_000;

/// (tenant, oid) -> (expiry, groups).
type Entries = HashMap<(String, String), (SystemTime, Arc<[String]>)>;

/// Resolved groups per (tenant, oid), each for a fixed time.
pub(crate) struct GroupCache {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
}

impl fmt::Debug for GroupCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("GroupCache")
            .field("ttl", &self.ttl)
            .field("entries", &len)
            .finish()
    }
}

impl GroupCache {
    pub(crate) fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The groups of (`tenant`, `oid`): cached, or from `resolver` (and then cached).
    pub(crate) async fn groups(
        &self,
        resolver: &dyn GroupResolver,
        tenant: &str,
        oid: &str,
    ) -> Result<Arc<[String]>, BoxError> {
        let key = (tenant.to_owned(), oid.to_owned());
        let now = self.clock.now();
        if let Some((expires, groups)) = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && now < *expires
        {
            return Ok(Arc::clone(groups));
        }
        let groups: Arc<[String]> = resolver.groups(tenant, oid).await?.into();
        if !self.ttl.is_zero() {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (expires, _)| now < *expires);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            let expires = now.checked_add(self.ttl).unwrap_or(now);
            entries.insert(key, (expires, Arc::clone(&groups)));
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mcp_auth_testkit::FakeClock;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl GroupResolver for Counting {
        async fn groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, BoxError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if oid == "broken" {
                return Err("graph is down".into());
            }
            Ok(vec![format!("{tenant}/{oid}/{n}")])
        }
    }

    #[test]
    fn overage_signals() {
        let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(has_group_overage(&claims(
            json!({"_claim_names": {"groups": "src1"}})
        )));
        assert!(has_group_overage(&claims(json!({"hasgroups": true}))));
        assert!(!has_group_overage(&claims(json!({"hasgroups": false}))));
        assert!(!has_group_overage(&claims(
            json!({"_claim_names": {"other": "src1"}})
        )));
        assert!(!has_group_overage(&claims(
            json!({"_claim_names": "groups"})
        )));
        assert!(!has_group_overage(&claims(json!({"groups": ["g"]}))));
    }

    #[tokio::test]
    async fn answers_are_cached_for_the_ttl_and_errors_are_not() {
        let clock = FakeClock::new();
        let cache = GroupCache::new(Duration::from_secs(60), Arc::new(clock.clone()));
        let resolver = Counting::default();
        let first = cache.groups(&resolver, "t", "o").await.unwrap();
        assert_eq!(&*first, ["t/o/0"]);
        assert_eq!(
            &*cache.groups(&resolver, "t", "o").await.unwrap(),
            ["t/o/0"]
        );
        assert_eq!(
            &*cache.groups(&resolver, "t", "p").await.unwrap(),
            ["t/p/1"]
        );
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            &*cache.groups(&resolver, "t", "o").await.unwrap(),
            ["t/o/2"]
        );
        assert!(cache.groups(&resolver, "t", "broken").await.is_err());
        assert!(cache.groups(&resolver, "t", "broken").await.is_err());
        assert_eq!(resolver.0.load(Ordering::SeqCst), 5);

        let uncached = GroupCache::new(Duration::ZERO, Arc::new(clock));
        uncached.groups(&resolver, "t", "o").await.unwrap();
        uncached.groups(&resolver, "t", "o").await.unwrap();
        assert_eq!(resolver.0.load(Ordering::SeqCst), 7);
        assert!(format!("{uncached:?}").contains("entries: 0"));
    }
}
