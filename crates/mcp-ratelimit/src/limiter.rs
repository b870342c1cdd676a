//! The limiter: rules over scopes, per-tool costs, all-or-nothing charging and the
//! backend failure policy.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::algorithm::Algorithm;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::keys::{RequestKeys, Scope};
use crate::quota::Quota;
use crate::store::memory::MemoryStore;
use crate::store::{Charge, RateLimitStore, StoreError, StoreOutcome};

/// One limit: a named quota over a scope with an algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    name: Arc<str>,
    scope: Scope,
    quota: Quota,
    algorithm: Algorithm,
}

/// Why a limiter configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rule name was empty, longer than 64 bytes, or not made of `[A-Za-z0-9_.-]`
    /// (names appear in storage keys and in the `RateLimit` headers).
    #[error("invalid rule name `{0}`: use 1 to 64 characters from [A-Za-z0-9_.-]")]
    InvalidRuleName(String),
    /// Two rules had the same name.
    #[error("duplicate rule name `{0}`")]
    DuplicateRule(String),
    /// A sliding-window quota had a burst different from its count (the window's limit is
    /// its count; a burst only means something to GCRA).
    #[error("rule `{0}`: a sliding window takes no burst; use a GCRA rule for bursts")]
    BurstOnWindow(String),
}

impl Rule {
    /// A GCRA rule.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRuleName`].
    pub fn gcra(name: &str, scope: Scope, quota: Quota) -> Result<Self, ConfigError> {
        Self::new(name, scope, quota, Algorithm::Gcra)
    }

    /// A sliding-window rule.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRuleName`], [`ConfigError::BurstOnWindow`].
    pub fn sliding_window(name: &str, scope: Scope, quota: Quota) -> Result<Self, ConfigError> {
        Self::new(name, scope, quota, Algorithm::SlidingWindow)
    }

    /// A rule with the given algorithm.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRuleName`], [`ConfigError::BurstOnWindow`].
    pub fn new(
        name: &str,
        scope: Scope,
        quota: Quota,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(ConfigError::InvalidRuleName(name.to_owned()));
        }
        if algorithm == Algorithm::SlidingWindow && quota.burst() != quota.count() {
            return Err(ConfigError::BurstOnWindow(name.to_owned()));
        }
        Ok(Self {
            name: name.into(),
            scope,
            quota,
            algorithm,
        })
    }

    /// The rule's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope.
    #[must_use]
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// The quota.
    #[must_use]
    pub const fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// What the limiter does when its store fails. Chosen explicitly per limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Allow every request while the store is down. Weakens protection: use only where
    /// availability matters more than limits.
    FailOpen,
    /// Deny every request while the store is down.
    FailClosed,
    /// Decide with a local in-memory limiter with the same rules (per process, so with N
    /// replicas up to N times the budget passes while the store is down). The default.
    #[default]
    FallbackLocal,
}

/// Which path produced a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionSource {
    /// The configured store.
    Store,
    /// The local fallback limiter (store down, [`FailurePolicy::FallbackLocal`]).
    Fallback,
    /// Allowed without checking (store down, [`FailurePolicy::FailOpen`]).
    FailOpen,
    /// Denied without checking (store down, [`FailurePolicy::FailClosed`]).
    FailClosed,
    /// No rule applied to the request.
    NoRules,
}

/// The policy a decision was made under: for the `RateLimit-Policy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The rule name.
    pub name: Arc<str>,
    /// Quota units per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    policy: Option<PolicyInfo>,
    remaining: u64,
    reset_after: Duration,
    retry_after: Option<Duration>,
    source: DecisionSource,
}

impl Decision {
    /// Whether the request may proceed.
    #[must_use]
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The deciding rule: the one that denied, or the one with the least quota left.
    #[must_use]
    pub fn policy(&self) -> Option<&PolicyInfo> {
        self.policy.as_ref()
    }

    /// Units left under the deciding rule.
    #[must_use]
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until the deciding rule is back to its full quota.
    #[must_use]
    pub const fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// For a denial, how long to wait before retrying.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Which path decided.
    #[must_use]
    pub const fn source(&self) -> DecisionSource {
        self.source
    }

    pub(crate) fn denied_for(retry_after: Duration, policy: Option<PolicyInfo>) -> Self {
        Self {
            allowed: false,
            policy,
            remaining: 0,
            reset_after: retry_after,
            retry_after: Some(retry_after),
            source: DecisionSource::Store,
        }
    }
}

/// Counters of a limiter; a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Store operations that failed.
    pub store_errors: u64,
    /// Decisions taken by the local fallback.
    pub fallback_decisions: u64,
    /// Requests allowed because the store was down.
    pub fail_open_decisions: u64,
    /// Requests denied because the store was down.
    pub fail_closed_decisions: u64,
    /// Switches from the store to the failure policy.
    pub switched_to_policy: u64,
    /// Switches from the failure policy back to the store.
    pub switched_to_store: u64,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    store_errors: AtomicU64,
    fallback_decisions: AtomicU64,
    fail_open_decisions: AtomicU64,
    fail_closed_decisions: AtomicU64,
    switched_to_policy: AtomicU64,
    switched_to_store: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Builder for [`RateLimiter`].
#[derive(Debug)]
pub struct RateLimiterBuilder {
    rules: Vec<Rule>,
    tool_costs: HashMap<String, NonZeroU32>,
    policy: FailurePolicy,
    retry_store_after: Duration,
    clock: Arc<dyn Clock>,
    fallback: Option<MemoryStore>,
}

impl RateLimiterBuilder {
    /// Adds a rule.
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the cost of one call of `tool` (default 1), charged to every rule.
    #[must_use]
    pub fn tool_cost(mut self, tool: impl Into<String>, cost: NonZeroU32) -> Self {
        self.tool_costs.insert(tool.into(), cost);
        self
    }

    /// Sets the failure policy (default [`FailurePolicy::FallbackLocal`]).
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// After a store failure, how long to use the failure policy before trying the store
    /// again (default one second), so a dead backend is not hit by every request.
    #[must_use]
    pub fn retry_store_after(mut self, d: Duration) -> Self {
        self.retry_store_after = d;
        self
    }

    /// Injects the clock (default [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses this store as the local fallback (default: a new [`MemoryStore`]).
    #[must_use]
    pub fn fallback_store(mut self, store: MemoryStore) -> Self {
        self.fallback = Some(store);
        self
    }

    /// Builds the limiter over `store`.
    ///
    /// # Errors
    /// [`ConfigError::DuplicateRule`].
    pub fn build<S: RateLimitStore>(self, store: S) -> Result<RateLimiter<S>, ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for r in &self.rules {
            if !seen.insert(r.name.clone()) {
                return Err(ConfigError::DuplicateRule(r.name.to_string()));
            }
        }
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                store,
                fallback: self.fallback.unwrap_or_default(),
                rules: self.rules,
                tool_costs: self.tool_costs,
                policy: self.policy,
                retry_store_after: self.retry_store_after,
                clock: self.clock,
                down_since: AtomicU64::new(HEALTHY),
                counters: Counters::default(),
            }),
        })
    }
}

const HEALTHY: u64 = u64::MAX;

struct Inner<S> {
    store: S,
    fallback: MemoryStore,
    rules: Vec<Rule>,
    tool_costs: HashMap<String, NonZeroU32>,
    policy: FailurePolicy,
    retry_store_after: Duration,
    clock: Arc<dyn Clock>,
    /// `HEALTHY`, or the time (µs) of the last store failure.
    down_since: AtomicU64,
    counters: Counters,
}

/// Checks requests against every rule that applies. Clones share state.
///
/// A request is charged to all its rules or to none: when one rule denies, the charges
/// already taken by the others are refunded.
pub struct RateLimiter<S = MemoryStore> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for RateLimiter<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimiter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("store", &self.inner.store)
            .field("rules", &self.inner.rules)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl RateLimiter<MemoryStore> {
    /// A builder with no rules, the system clock and the default failure policy.
    #[must_use]
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            rules: Vec::new(),
            tool_costs: HashMap::new(),
            policy: FailurePolicy::default(),
            retry_store_after: Duration::from_secs(1),
            clock: Arc::new(SystemClock::new()),
            fallback: None,
        }
    }
}

/// A charge of one rule for one request, kept for refunds.
struct Planned<'r> {
    rule: &'r Rule,
    key: String,
}

enum Attempt {
    Decided(Decision),
    StoreFailed(StoreError),
}

impl<S: RateLimitStore> RateLimiter<S> {
    /// The rules.
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// The failure policy.
    #[must_use]
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The injected clock.
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> LimiterStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LimiterStats {
            allowed: l(&c.allowed),
            denied: l(&c.denied),
            store_errors: l(&c.store_errors),
            fallback_decisions: l(&c.fallback_decisions),
            fail_open_decisions: l(&c.fail_open_decisions),
            fail_closed_decisions: l(&c.fail_closed_decisions),
            switched_to_policy: l(&c.switched_to_policy),
            switched_to_store: l(&c.switched_to_store),
        }
    }

    /// Whether the limiter is currently deciding by its failure policy.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.inner.down_since.load(Ordering::Acquire) != HEALTHY
    }

    /// The cost of a request: its explicit cost, else its tool's cost, else 1.
    fn cost_of(&self, keys: &RequestKeys) -> u32 {
        keys.cost
            .or_else(|| {
                keys.tool
                    .as_deref()
                    .and_then(|t| self.inner.tool_costs.get(t).copied())
            })
            .map_or(1, NonZeroU32::get)
    }

    fn plan(&self, keys: &RequestKeys) -> Vec<Planned<'_>> {
        self.inner
            .rules
            .iter()
            .filter_map(|rule| {
                keys.key(&rule.name, rule.scope)
                    .map(|key| Planned { key, rule })
            })
            .collect()
    }

    /// Checks a request against every applicable rule and charges it if all allow.
    pub async fn check(&self, keys: &RequestKeys) -> Decision {
        let now = self.inner.clock.now();
        let cost = self.cost_of(keys);
        let plan = self.plan(keys);
        let decision = self.decide(&plan, cost, now).await;
        if decision.allowed {
            bump(&self.inner.counters.allowed);
        } else {
            bump(&self.inner.counters.denied);
        }
        decision
    }

    async fn decide(&self, plan: &[Planned<'_>], cost: u32, now: Timestamp) -> Decision {
        if plan.is_empty() {
            return Decision {
                allowed: true,
                policy: None,
                remaining: u64::MAX,
                reset_after: Duration::ZERO,
                retry_after: None,
                source: DecisionSource::NoRules,
            };
        }
        let down = self.inner.down_since.load(Ordering::Acquire);
        let probe_at = if down == HEALTHY {
            now
        } else {
            Timestamp::from_micros(down).saturating_add(self.inner.retry_store_after)
        };
        if now >= probe_at {
            match run(&self.inner.store, plan, cost, now).await {
                Attempt::Decided(d) => {
                    if down != HEALTHY
                        && self
                            .inner
                            .down_since
                            .compare_exchange(down, HEALTHY, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        bump(&self.inner.counters.switched_to_store);
                        tracing::info!(
                            policy = ?self.inner.policy,
                            "rate-limit store reachable again; deciding with the store"
                        );
                    }
                    return d;
                }
                Attempt::StoreFailed(err) => {
                    bump(&self.inner.counters.store_errors);
                    let previous = self
                        .inner
                        .down_since
                        .swap(now.as_micros(), Ordering::AcqRel);
                    if previous == HEALTHY {
                        bump(&self.inner.counters.switched_to_policy);
                        tracing::warn!(
                            error = %err,
                            source = ?std::error::Error::source(&err),
                            policy = ?self.inner.policy,
                            "rate-limit store failed; deciding by the failure policy"
                        );
                    } else {
                        tracing::debug!(error = %err, "rate-limit store still failing");
                    }
                }
            }
        }
        self.decide_by_policy(plan, cost, now).await
    }

    async fn decide_by_policy(&self, plan: &[Planned<'_>], cost: u32, now: Timestamp) -> Decision {
        let c = &self.inner.counters;
        match self.inner.policy {
            FailurePolicy::FailOpen => {
                bump(&c.fail_open_decisions);
                Decision {
                    allowed: true,
                    policy: None,
                    remaining: 0,
                    reset_after: Duration::ZERO,
                    retry_after: None,
                    source: DecisionSource::FailOpen,
                }
            }
            FailurePolicy::FailClosed => {
                bump(&c.fail_closed_decisions);
                let mut d = Decision::denied_for(
                    self.inner.retry_store_after.max(Duration::from_secs(1)),
                    None,
                );
                d.source = DecisionSource::FailClosed;
                d
            }
            FailurePolicy::FallbackLocal => {
                bump(&c.fallback_decisions);
                match run(&self.inner.fallback, plan, cost, now).await {
                    Attempt::Decided(mut d) => {
                        d.source = DecisionSource::Fallback;
                        d
                    }
                    // The memory store never fails; deny rather than panic if that changes.
                    Attempt::StoreFailed(_) => {
                        Decision::denied_for(self.inner.retry_store_after, None)
                    }
                }
            }
        }
    }
}

fn policy_of(rule: &Rule) -> PolicyInfo {
    PolicyInfo {
        name: rule.name.clone(),
        limit: u64::from(match rule.algorithm {
            Algorithm::Gcra => rule.quota.burst().get(),
            Algorithm::SlidingWindow => rule.quota.count().get(),
        }),
        window: rule.quota.period(),
    }
}

/// Charges every planned rule in order; on the first denial or failure refunds what was
/// taken.
async fn run<S: RateLimitStore>(
    store: &S,
    plan: &[Planned<'_>],
    cost: u32,
    now: Timestamp,
) -> Attempt {
    let mut taken: Vec<(Charge<'_>, StoreOutcome)> = Vec::with_capacity(plan.len());
    for p in plan {
        let charge = Charge::new(&p.key, &p.rule.quota, p.rule.algorithm, cost, now);
        match store.charge(&charge).await {
            Ok(out) if out.allowed => taken.push((charge, out)),
            Ok(out) => {
                let failed = refund_all(store, &taken, now).await;
                if let Some(err) = failed {
                    return Attempt::StoreFailed(err);
                }
                return Attempt::Decided(Decision {
                    allowed: false,
                    policy: Some(policy_of(p.rule)),
                    remaining: out.remaining,
                    reset_after: out.reset_after,
                    retry_after: Some(out.retry_after),
                    source: DecisionSource::Store,
                });
            }
            Err(err) => {
                // Best effort: the store just failed, refunds may fail too, and an
                // unrefunded charge only makes the limit stricter for a moment.
                let _ = refund_all(store, &taken, now).await;
                return Attempt::StoreFailed(err);
            }
        }
    }
    let tightest = plan
        .iter()
        .zip(&taken)
        .min_by_key(|(_, (_, out))| out.remaining);
    match tightest {
        Some((p, (_, out))) => Attempt::Decided(Decision {
            allowed: true,
            policy: Some(policy_of(p.rule)),
            remaining: out.remaining,
            reset_after: out.reset_after,
            retry_after: None,
            source: DecisionSource::Store,
        }),
        None => Attempt::Decided(Decision {
            allowed: true,
            policy: None,
            remaining: u64::MAX,
            reset_after: Duration::ZERO,
            retry_after: None,
            source: DecisionSource::NoRules,
        }),
    }
}

async fn refund_all<S: RateLimitStore>(
    store: &S,
    taken: &[(Charge<'_>, StoreOutcome)],
    now: Timestamp,
) -> Option<StoreError> {
    let mut first_err = None;
    for (charge, _) in taken {
        if let Err(e) = store.refund(charge, now).await {
            first_err.get_or_insert(e);
        }
    }
    first_err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    fn q(s: &str) -> Quota {
        s.parse().unwrap()
    }

    fn limiter(clock: &FakeClock) -> RateLimiter {
        RateLimiter::builder()
            .rule(Rule::gcra("tenant", Scope::Tenant, q("10/s")).unwrap())
            .rule(Rule::sliding_window("user", Scope::User, q("3/s")).unwrap())
            .tool_cost("heavy", NonZeroU32::new(3).unwrap())
            .clock(clock.clone())
            .build(MemoryStore::new())
            .unwrap()
    }

    #[tokio::test]
    async fn denial_by_one_rule_is_not_charged_to_others() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000));
        let l = limiter(&clock);
        let alice = RequestKeys::new().tenant("acme").user("alice");
        for _ in 0..3 {
            assert!(l.check(&alice).await.is_allowed());
        }
        // Alice is out of her 3/s; her denials must not eat the tenant's 10.
        for _ in 0..20 {
            let d = l.check(&alice).await;
            assert!(!d.is_allowed());
            assert_eq!(d.policy().unwrap().name.as_ref(), "user");
            assert!(d.retry_after().unwrap() > Duration::ZERO);
        }
        let mut passed = 0;
        for i in 0..20 {
            let bob = RequestKeys::new().tenant("acme").user(format!("bob{i}"));
            if l.check(&bob).await.is_allowed() {
                passed += 1;
            }
        }
        assert_eq!(passed, 7, "the tenant had 10 - 3 left");
        let s = l.stats();
        assert_eq!((s.allowed, s.denied), (10, 33));
    }

    #[tokio::test]
    async fn tool_cost_is_charged_everywhere() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000));
        let l = limiter(&clock);
        let heavy = RequestKeys::new().tenant("t").user("u").tool("heavy");
        let d = l.check(&heavy).await;
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 0, "user window 3 - 3");
        assert_eq!(d.policy().unwrap().name.as_ref(), "user");
        assert!(
            !l.check(&RequestKeys::new().tenant("t").user("u"))
                .await
                .is_allowed()
        );
        clock.advance(Duration::from_secs(2));
        assert!(l.check(&heavy).await.is_allowed());
        let explicit = RequestKeys::new()
            .tenant("t2")
            .cost(NonZeroU32::new(11).unwrap());
        assert!(
            !l.check(&explicit).await.is_allowed(),
            "a cost above the burst never passes"
        );
    }

    #[tokio::test]
    async fn no_rule_applies_means_allowed() {
        let clock = FakeClock::default();
        let l = limiter(&clock);
        let d = l.check(&RequestKeys::new()).await;
        assert!(d.is_allowed());
        assert_eq!(d.source(), DecisionSource::NoRules);
    }

    #[test]
    fn config_is_validated() {
        assert!(matches!(
            Rule::gcra("bad name", Scope::Global, q("1/s")),
            Err(ConfigError::InvalidRuleName(_))
        ));
        assert!(matches!(
            Rule::sliding_window("w", Scope::Global, q("1/s burst 2")),
            Err(ConfigError::BurstOnWindow(_))
        ));
        let r = Rule::gcra("a", Scope::Global, q("1/s")).unwrap();
        let err = RateLimiter::builder()
            .rule(r.clone())
            .rule(r)
            .build(MemoryStore::new())
            .unwrap_err();
        assert_eq!(err, ConfigError::DuplicateRule("a".into()));
    }
}
