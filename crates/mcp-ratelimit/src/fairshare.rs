//! Weighted tenant fair share: a global window limit split by weight, with bursts into
//! capacity no active tenant is owed, per-tenant usage and Jain's fairness index.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::algorithm::{Window, WindowState};
use crate::clock::{Clock, SystemClock, duration_micros};
use crate::quota::{Quota, QuotaError};

/// Fair-share settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FairShareConfig {
    /// Units all tenants together may use per `window` (the global limit L).
    pub global_limit: NonZeroU32,
    /// The sliding window (default five minutes).
    pub window: Duration,
    /// How far above its share a tenant may go while capacity remains (default 1.5).
    pub burst_factor: f64,
    /// Weights of known tenants.
    pub weights: HashMap<String, NonZeroU32>,
    /// Weight of a tenant not in `weights` (default 1).
    pub default_weight: NonZeroU32,
    /// Unknown tenants tracked at most; beyond it they share one overflow tenant.
    pub max_tenants: usize,
}

impl FairShareConfig {
    /// L units per `window`, no weights yet.
    #[must_use]
    pub fn new(global_limit: NonZeroU32, window: Duration) -> Self {
        Self {
            global_limit,
            window,
            burst_factor: 1.5,
            weights: HashMap::new(),
            default_weight: NonZeroU32::MIN,
            max_tenants: 10_000,
        }
    }

    /// Sets a tenant's weight.
    #[must_use]
    pub fn weight(mut self, tenant: impl Into<String>, weight: NonZeroU32) -> Self {
        self.weights.insert(tenant.into(), weight);
        self
    }

    /// Sets the burst factor.
    #[must_use]
    pub fn burst_factor(mut self, factor: f64) -> Self {
        self.burst_factor = factor;
        self
    }
}

/// Why a fair-share configuration was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FairShareError {
    /// The burst factor was not a finite number of at least 1.
    #[error("burst factor must be finite and at least 1.0, got {0}")]
    BurstFactor(f64),
    /// The global limit and window do not form a valid quota.
    #[error("invalid global limit")]
    Quota(#[from] QuotaError),
}

/// One tenant's numbers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// Its weight.
    pub weight: u32,
    /// Its share of the global limit: L x weight / total weight.
    pub share: f64,
    /// The most it may use while capacity remains: share x burst factor.
    pub burst_limit: f64,
    /// Units used in the current sliding window.
    pub window_usage: u64,
    /// Units admitted since the limiter started.
    pub admitted: u64,
    /// Requests rejected since the limiter started.
    pub rejected: u64,
}

/// The answer for one tenant request.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FairDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The tenant's share.
    pub share: f64,
    /// The tenant's usage in the window, after this request if allowed.
    pub usage: u64,
    /// The reason, for logs and metrics.
    pub reason: FairReason,
}

/// Why a fair-share decision went the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FairReason {
    /// Within the tenant's share.
    WithinShare,
    /// Above the share, into capacity no active tenant is owed.
    Burst,
    /// The tenant reached share x burst factor.
    BurstLimit,
    /// Above the share, and the remaining capacity is owed to other active tenants.
    Reserved,
    /// The global limit is used up.
    GlobalLimit,
}

#[derive(Debug)]
struct Tenant {
    weight: u32,
    configured: bool,
    window: Option<WindowState>,
    last_seen: u64,
    admitted: u64,
    rejected: u64,
}

#[derive(Debug)]
struct State {
    tenants: HashMap<String, Tenant>,
    global: Option<WindowState>,
    total_weight: u64,
    unknown: usize,
}

/// The name of the tenant that unknown tenants share once `max_tenants` is reached.
pub const OVERFLOW_TENANT: &str = "~overflow";

/// Weighted fair share of one global limit among tenants (in-process).
///
/// Each tenant's share is `L x weight / total weight` (total over configured tenants and
/// the unknown tenants currently tracked). A tenant within its share is admitted while
/// the global limit allows. Above its share it may burst up to `share x burst_factor`,
/// but only into capacity that no *active* tenant (one seen within the window) is still
/// owed, so under saturation every tenant gets its share and idle tenants' shares are
/// lent out. State is per process: with N replicas give each `L / N`.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use mcp_ratelimit::{FairShare, FairShareConfig};
///
/// let n = |v| NonZeroU32::new(v).unwrap();
/// let config = FairShareConfig::new(n(100), Duration::from_secs(60))
///     .weight("gold", n(3))
///     .weight("free", n(1));
/// let fair = FairShare::new(config).unwrap();
/// assert!(fair.check("gold", 1).allowed);
/// assert_eq!(fair.usage()[0].share, 75.0);
/// ```
#[derive(Debug, Clone)]
pub struct FairShare {
    config: Arc<FairShareConfig>,
    window: Window,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl FairShare {
    /// A fair-share limiter with the system clock.
    ///
    /// # Errors
    /// See [`FairShareError`].
    pub fn new(config: FairShareConfig) -> Result<Self, FairShareError> {
        Self::with_clock(config, SystemClock::new())
    }

    /// A fair-share limiter with an injected clock.
    ///
    /// # Errors
    /// See [`FairShareError`].
    pub fn with_clock(config: FairShareConfig, clock: impl Clock) -> Result<Self, FairShareError> {
        if !config.burst_factor.is_finite() || config.burst_factor < 1.0 {
            return Err(FairShareError::BurstFactor(config.burst_factor));
        }
        let quota = Quota::new(config.global_limit, config.window)?;
        let mut tenants = HashMap::new();
        let mut total_weight = 0;
        for (name, w) in &config.weights {
            total_weight += u64::from(w.get());
            tenants.insert(
                name.clone(),
                Tenant {
                    weight: w.get(),
                    configured: true,
                    window: None,
                    last_seen: 0,
                    admitted: 0,
                    rejected: 0,
                },
            );
        }
        Ok(Self {
            window: Window::of(&quota),
            config: Arc::new(config),
            clock: Arc::new(clock),
            state: Arc::new(Mutex::new(State {
                tenants,
                global: None,
                total_weight,
                unknown: 0,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters only; a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets unknown tenants idle for a whole window.
    fn evict_idle(&self, st: &mut State, now: u64) {
        let horizon = duration_micros(self.config.window);
        let mut freed_weight = 0;
        let mut freed = 0;
        st.tenants.retain(|_, t| {
            let keep = t.configured || t.last_seen + horizon > now;
            if !keep {
                freed_weight += u64::from(t.weight);
                freed += 1;
            }
            keep
        });
        st.total_weight -= freed_weight;
        st.unknown -= freed;
    }

    /// Checks and, if allowed, charges `cost` units for `tenant`.
    pub fn check(&self, tenant: &str, cost: u32) -> FairDecision {
        let now = self.clock.now().as_micros();
        let cost = u64::from(cost);
        let limit = u64::from(self.config.global_limit.get());
        let horizon = duration_micros(self.config.window);
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut name = tenant;
        if !st.tenants.contains_key(name) {
            if st.unknown >= self.config.max_tenants {
                self.evict_idle(st, now);
            }
            if st.unknown >= self.config.max_tenants {
                name = OVERFLOW_TENANT;
            }
            if !st.tenants.contains_key(name) {
                let weight = self.config.default_weight.get();
                st.total_weight += u64::from(weight);
                st.unknown += 1;
                st.tenants.insert(
                    name.to_owned(),
                    Tenant {
                        weight,
                        configured: false,
                        window: None,
                        last_seen: now,
                        admitted: 0,
                        rejected: 0,
                    },
                );
            }
        }
        let total = st.total_weight.max(1) as f64;
        let (global_used, global_state) = self.window.usage(st.global, now);
        // Capacity owed to other active tenants: their unused shares.
        let mut reserved = 0.0;
        for (n, t) in &st.tenants {
            if n != name && t.last_seen + horizon > now && t.last_seen != 0 {
                let share = limit as f64 * f64::from(t.weight) / total;
                let (used, _) = self.window.usage(t.window, now);
                reserved += (share - used as f64).max(0.0);
            }
        }
        let Some(t) = st.tenants.get_mut(name) else {
            return FairDecision {
                allowed: false,
                share: 0.0,
                usage: 0,
                reason: FairReason::GlobalLimit,
            };
        };
        t.last_seen = now;
        let share = limit as f64 * f64::from(t.weight) / total;
        let burst_limit = share * self.config.burst_factor;
        let (used, tenant_state) = self.window.usage(t.window, now);
        let after = (used + cost) as f64;
        let reason = if global_used + cost > limit {
            FairReason::GlobalLimit
        } else if after <= share {
            FairReason::WithinShare
        } else if after > burst_limit {
            FairReason::BurstLimit
        } else if (global_used + cost) as f64 + reserved > limit as f64 {
            FairReason::Reserved
        } else {
            FairReason::Burst
        };
        let allowed = matches!(reason, FairReason::WithinShare | FairReason::Burst);
        if allowed {
            let mut ts = tenant_state;
            ts.cur += cost;
            t.window = Some(ts);
            t.admitted += cost;
            let mut gs = global_state;
            gs.cur += cost;
            st.global = Some(gs);
        } else {
            t.rejected += 1;
        }
        FairDecision {
            allowed,
            share,
            usage: if allowed { used + cost } else { used },
            reason,
        }
    }

    /// Every tracked tenant's numbers, largest share first.
    #[must_use]
    pub fn usage(&self) -> Vec<TenantUsage> {
        let now = self.clock.now().as_micros();
        let st = self.lock();
        let total = st.total_weight.max(1) as f64;
        let limit = f64::from(self.config.global_limit.get());
        let mut out: Vec<TenantUsage> = st
            .tenants
            .iter()
            .map(|(name, t)| {
                let share = limit * f64::from(t.weight) / total;
                TenantUsage {
                    tenant: name.clone(),
                    weight: t.weight,
                    share,
                    burst_limit: share * self.config.burst_factor,
                    window_usage: self.window.usage(t.window, now).0,
                    admitted: t.admitted,
                    rejected: t.rejected,
                }
            })
            .collect();
        out.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.tenant.cmp(&b.tenant)));
        out
    }

    /// Jain's fairness index over the weighted window usage (usage / weight) of the
    /// tenants that used anything in the current window; 1.0 is perfectly fair.
    #[must_use]
    pub fn fairness_index(&self) -> f64 {
        let xs: Vec<f64> = self
            .usage()
            .iter()
            .filter(|u| u.window_usage > 0)
            .map(|u| u.window_usage as f64 / f64::from(u.weight))
            .collect();
        jain_index(&xs)
    }
}

/// Jain's fairness index `(sum x)^2 / (n * sum x^2)`: 1.0 when all are equal, `1/n` when
/// one takes everything. An empty or all-zero input is perfectly fair (1.0).
#[must_use]
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * sq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, Timestamp};

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn jain() {
        assert_eq!(jain_index(&[1.0, 1.0, 1.0]), 1.0);
        assert!((jain_index(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        assert_eq!(jain_index(&[]), 1.0);
    }

    #[test]
    fn config_validated() {
        let c = FairShareConfig::new(n(10), Duration::from_secs(1));
        assert!(matches!(
            FairShare::new(c.clone().burst_factor(0.5)),
            Err(FairShareError::BurstFactor(_))
        ));
        assert!(FairShare::new(c.burst_factor(f64::NAN)).is_err());
    }

    #[test]
    fn a_lone_tenant_bursts_to_its_limit() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let config = FairShareConfig::new(n(100), Duration::from_secs(10))
            .weight("a", n(1))
            .weight("b", n(1));
        let fair = FairShare::with_clock(config, clock).unwrap();
        let admitted = (0..200).filter(|_| fair.check("a", 1).allowed).count();
        assert_eq!(admitted, 75, "share 50 x burst 1.5");
        assert_eq!(fair.check("a", 1).reason, FairReason::BurstLimit);
        // B has its full share guaranteed; once active, A may not dip into it.
        let b = (0..200).filter(|_| fair.check("b", 1).allowed).count();
        assert_eq!(
            b, 25,
            "only what A left of the global 100: B bursts into nothing more"
        );
        assert_eq!(fair.check("b", 1).reason, FairReason::GlobalLimit);
    }

    #[test]
    fn unknown_tenants_are_bounded() {
        let clock = FakeClock::new(Timestamp::from_micros(1_000_000_000_000));
        let mut config = FairShareConfig::new(n(1000), Duration::from_secs(10));
        config.max_tenants = 3;
        let fair = FairShare::with_clock(config, clock.clone()).unwrap();
        for i in 0..10 {
            fair.check(&format!("t{i}"), 1);
        }
        let names: Vec<String> = fair.usage().into_iter().map(|u| u.tenant).collect();
        assert_eq!(names.len(), 4);
        assert!(names.iter().any(|t| t == OVERFLOW_TENANT));
        clock.advance(Duration::from_secs(11));
        fair.check("fresh", 1);
        assert!(fair.usage().iter().any(|u| u.tenant == "fresh"));
    }
}
