//! The API-key behaviour every store must show, run by the per-store test files.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use mcp_auth_core::api_key::{
    ApiKeyAuthenticator, ApiKeyError, ApiKeyFilter, ApiKeyManager, ApiKeyStore, ApiKeyUpdate,
    NewApiKey,
};
use mcp_auth_core::{AuthError, AuthMethod, Authenticator, Credential, Secret};
use mcp_auth_testkit::FakeClock;

const PEPPER: &str = "integration-test-pepper-0123456789abcdef";

fn manager(store: Arc<dyn ApiKeyStore>, clock: &FakeClock) -> ApiKeyManager {
    ApiKeyManager::builder(store, Secret::new(PEPPER))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

/// Swaps one character of the secret part for another base62 character.
fn wrong_secret(key: &Secret) -> String {
    let mut text = key.expose().to_owned();
    let last = text.pop().unwrap();
    text.push(if last == 'a' { 'b' } else { 'a' });
    text
}

/// Issue, verify, rejections, record contents, listing and store-level rules.
pub(crate) async fn issue_verify_and_reject(store: Arc<dyn ApiKeyStore>) {
    let clock = FakeClock::new();
    let keys = manager(store.clone(), &clock);
    let auth = ApiKeyAuthenticator::new(keys.clone());

    let issued = keys
        .issue(
            NewApiKey::new("alice")
                .tenant("acme")
                .roles(["user", "deployer"])
                .scopes(["mcp:tools"])
                .name("CI key")
                .ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let key_id = issued.record.key_id.clone();
    assert!(!format!("{issued:?}").contains(issued.key.expose()));

    let principal = auth
        .authenticate(&Credential::ApiKey(issued.key.clone()))
        .await
        .unwrap();
    assert_eq!(principal.subject(), "alice");
    assert_eq!(principal.tenant(), Some("acme"));
    assert!(principal.has_role("deployer") && principal.has_role("user"));
    assert!(principal.has_scope("mcp:tools"));
    assert_eq!(
        principal.method(),
        &AuthMethod::ApiKey {
            key_id: key_id.clone()
        }
    );
    assert_eq!(
        principal.expires_at(),
        Some(clock.now_for_test() + Duration::from_secs(3600))
    );
    assert!(!format!("{principal:?}").contains(issued.key.expose()));

    // Rejections: wrong secret, malformed, unknown key id, wrong credential kind.
    let cases = [
        wrong_secret(&issued.key),
        "mcpk_nonsense".to_owned(),
        String::new(),
        issued.key.expose().replacen(&key_id, "0000000000000000", 1),
        issued.key.expose().replacen("mcpk_", "othr_", 1),
    ];
    for bad in cases {
        let result = auth
            .authenticate(&Credential::ApiKey(Secret::new(bad)))
            .await;
        assert!(
            matches!(result, Err(AuthError::InvalidApiKey)),
            "{result:?}"
        );
    }
    assert!(!auth.accepts(mcp_auth_core::CredentialKind::Bearer));

    // The stored record holds a hash, never the key.
    let record = store.get(&key_id).await.unwrap().unwrap();
    assert_eq!(record.owner, "alice");
    assert_eq!(record.name, "CI key");
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    assert_eq!(record.roles.len(), 2);
    assert_eq!(record.created_at, clock.now_for_test());
    let secret_part = issued.key.expose().rsplit('_').next().unwrap();
    assert!(
        !record
            .hash
            .windows(8)
            .any(|w| secret_part.as_bytes().windows(8).any(|s| s == w))
    );
    assert!(!format!("{record:?}").contains(secret_part));
    // The shared record (what verification reads) is the same record.
    assert_eq!(*store.get_shared(&key_id).await.unwrap().unwrap(), record);
    assert!(
        store
            .get_shared("ffffffffffffffff")
            .await
            .unwrap()
            .is_none()
    );

    // Duplicate ids are refused; updates of unknown keys report it.
    assert!(matches!(
        store.insert(&record).await,
        Err(ApiKeyError::AlreadyExists)
    ));
    assert!(
        store
            .update(
                "ffffffffffffffff",
                &ApiKeyUpdate::revoke(clock.now_for_test())
            )
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        keys.revoke("ffffffffffffffff").await,
        Err(ApiKeyError::NotFound)
    ));

    // Listing by owner and tenant.
    keys.issue(NewApiKey::new("alice")).await.unwrap();
    keys.issue(NewApiKey::new("bob").tenant("acme"))
        .await
        .unwrap();
    assert_eq!(
        keys.list(&ApiKeyFilter::owner("alice"))
            .await
            .unwrap()
            .len(),
        2
    );
    let acme = keys.list(&ApiKeyFilter::tenant("acme")).await.unwrap();
    assert_eq!(acme.len(), 2);
    assert_eq!(
        keys.list(&ApiKeyFilter::owner("alice").in_tenant("acme"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        keys.list(&ApiKeyFilter::all().limit(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(keys.list(&ApiKeyFilter::all()).await.unwrap().len(), 3);
}

/// Expiry and revocation.
pub(crate) async fn expiry_and_revocation(store: Arc<dyn ApiKeyStore>) {
    let clock = FakeClock::new();
    let keys = manager(store.clone(), &clock);

    let short = keys
        .issue(NewApiKey::new("carol").ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(keys.verify(short.key.expose()).await.is_ok());
    clock.advance(Duration::from_secs(59));
    assert!(keys.verify(short.key.expose()).await.is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        keys.verify(short.key.expose()).await,
        Err(AuthError::InvalidApiKey)
    ));

    let long = keys.issue(NewApiKey::new("carol")).await.unwrap();
    assert!(keys.verify(long.key.expose()).await.is_ok());
    let revoked = keys.revoke(&long.record.key_id).await.unwrap();
    let first_revocation = revoked.revoked_at.unwrap();
    assert!(matches!(
        keys.verify(long.key.expose()).await,
        Err(AuthError::Revoked)
    ));
    // A wrong secret for a revoked key says nothing about the revocation.
    assert!(matches!(
        keys.verify(&wrong_secret(&long.key)).await,
        Err(AuthError::InvalidApiKey)
    ));
    clock.advance(Duration::from_secs(10));
    let again = keys.revoke(&long.record.key_id).await.unwrap();
    assert_eq!(again.revoked_at, Some(first_revocation));
    assert!(matches!(
        keys.rotate(&long.record.key_id, Duration::from_secs(60))
            .await,
        Err(ApiKeyError::Inactive)
    ));

    // `expire` only ever shortens.
    let k = keys
        .issue(NewApiKey::new("dave").ttl(Duration::from_secs(100)))
        .await
        .unwrap();
    let later = clock.now_for_test() + Duration::from_secs(1000);
    let after = store
        .update(&k.record.key_id, &ApiKeyUpdate::expire(later))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.expires_at, k.record.expires_at);
}

/// Rotation with a grace period.
pub(crate) async fn rotation_grace(store: Arc<dyn ApiKeyStore>) {
    let clock = FakeClock::new();
    let keys = manager(store.clone(), &clock);
    let old = keys
        .issue(
            NewApiKey::new("erin")
                .roles(["admin"])
                .ttl(Duration::from_secs(30 * 24 * 3600)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    let before = keys.verify(old.key.expose()).await.unwrap();
    assert_eq!(before.expires_at(), old.record.expires_at);

    let grace = Duration::from_secs(600);
    let new = keys.rotate(&old.record.key_id, grace).await.unwrap();
    assert_ne!(new.record.key_id, old.record.key_id);
    assert_eq!(new.record.owner, "erin");
    assert!(new.record.roles.contains("admin"));
    assert_eq!(
        new.record.rotated_from.as_deref(),
        Some(&*old.record.key_id)
    );
    // The successor gets the old key's lifetime from now.
    assert_eq!(
        new.record.expires_at,
        Some(clock.now_for_test() + Duration::from_secs(30 * 24 * 3600))
    );
    let old_record = store.get(&old.record.key_id).await.unwrap().unwrap();
    assert_eq!(old_record.replaced_by.as_deref(), Some(&*new.record.key_id));
    assert_eq!(old_record.expires_at, Some(clock.now_for_test() + grace));

    // Both keys work inside the grace period; the old key's principal now expires with it.
    let during = keys.verify(old.key.expose()).await.unwrap();
    assert_eq!(during.expires_at(), Some(clock.now_for_test() + grace));
    assert_eq!(during.subject(), before.subject());
    assert!(keys.verify(new.key.expose()).await.is_ok());
    assert!(matches!(
        keys.rotate(&old.record.key_id, grace).await,
        Err(ApiKeyError::AlreadyRotated)
    ));
    clock.advance(grace - Duration::from_secs(1));
    assert!(keys.verify(old.key.expose()).await.is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        keys.verify(old.key.expose()).await,
        Err(AuthError::InvalidApiKey)
    ));
    assert!(keys.verify(new.key.expose()).await.is_ok());
    assert!(matches!(
        keys.rotate("0123456789abcdef", grace).await,
        Err(ApiKeyError::NotFound)
    ));
}

/// The last-use time `store` holds for `key_id`.
async fn last_used(store: &Arc<dyn ApiKeyStore>, key_id: &str) -> Option<std::time::SystemTime> {
    store.get(key_id).await.unwrap().unwrap().last_used_at
}

/// Last-use times are batched in memory and written by a flush.
pub(crate) async fn last_used_batching(store: Arc<dyn ApiKeyStore>) {
    let clock = FakeClock::new();
    let keys = manager(store.clone(), &clock);
    let a = keys.issue(NewApiKey::new("frank")).await.unwrap();
    let b = keys.issue(NewApiKey::new("grace")).await.unwrap();
    let t0 = clock.now_for_test();

    for _ in 0..5 {
        keys.verify(a.key.expose()).await.unwrap();
    }
    clock.advance(Duration::from_secs(30));
    keys.verify(a.key.expose()).await.unwrap();
    keys.verify(b.key.expose()).await.unwrap();
    // Failed verifications are not uses.
    let _ = keys.verify(&wrong_secret(&a.key)).await;

    // Nothing reaches the store before a flush.
    assert_eq!(last_used(&store, &a.record.key_id).await, None);
    assert_eq!(keys.pending_last_used(), 2);
    assert_eq!(keys.flush_last_used().await.unwrap(), 2);
    assert_eq!(keys.pending_last_used(), 0);
    let now = clock.now_for_test();
    assert_eq!(last_used(&store, &a.record.key_id).await, Some(now));
    assert_eq!(last_used(&store, &b.record.key_id).await, Some(now));
    assert_eq!(keys.flush_last_used().await.unwrap(), 0);

    // An older time never overwrites a newer one.
    store
        .touch_last_used(&[(a.record.key_id.clone(), t0), ("unknown".to_owned(), t0)])
        .await
        .unwrap();
    assert_eq!(last_used(&store, &a.record.key_id).await, Some(now));
    assert!(now > UNIX_EPOCH);
}

/// Runs every scenario against fresh stores made by `make`.
#[macro_export]
macro_rules! api_key_suite {
    ($make:expr) => {
        #[tokio::test]
        async fn issue_verify_and_reject() {
            $make(|store| support::api_key_suite::issue_verify_and_reject(store)).await;
        }

        #[tokio::test]
        async fn expiry_and_revocation() {
            $make(|store| support::api_key_suite::expiry_and_revocation(store)).await;
        }

        #[tokio::test]
        async fn rotation_grace() {
            $make(|store| support::api_key_suite::rotation_grace(store)).await;
        }

        #[tokio::test]
        async fn last_used_batching() {
            $make(|store| support::api_key_suite::last_used_batching(store)).await;
        }
    };
}

/// `FakeClock::now` through the `Clock` trait, without importing the trait everywhere.
trait NowForTest {
    fn now_for_test(&self) -> std::time::SystemTime;
}

impl NowForTest for FakeClock {
    fn now_for_test(&self) -> std::time::SystemTime {
        mcp_auth_core::Clock::now(self)
    }
}
