//! Concurrent users per tenant over sliding windows, in fixed memory (HyperLogLog per time slot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;

use crate::families::{Tenant, TenantSeries};
use crate::labels::{BoundedLabels, hash_str};
use crate::sketch::{HyperLogLog, MAX_PRECISION, MIN_PRECISION, insert_atomic};

/// The most time slots one tenant keeps (bounds memory and scrape cost).
pub const MAX_SLOTS: u32 = 120;
/// The most windows `mcp_concurrent_users_detailed` reports.
pub const MAX_WINDOWS: usize = 8;

/// How distinct users are counted: slot length, windows and sketch precision.
///
/// Users are counted per tenant in a ring of time slots of length `slot`; each slot holds one
/// HyperLogLog sketch of `2^precision` bytes. A window of `k` slots is the union of the last
/// `k` slots, so it covers between `(k - 1) * slot` and `k * slot` of history (the current slot
/// is partly filled). The count has a relative standard error of about `1.04 / sqrt(2^precision)`
/// (3.25 % at the default 10) and is close to exact for small numbers of users. Memory per tenant
/// is `slots * 2^precision` bytes whatever the number of users: 15 KiB with the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// Length of one time slot (default 60 s).
    pub slot: Duration,
    /// Windows reported by `mcp_concurrent_users_detailed` (default 1 min, 5 min, 15 min).
    pub windows: Vec<Duration>,
    /// The window reported by `mcp_concurrent_users` (default 5 min); must be in `windows`.
    pub primary_window: Duration,
    /// HyperLogLog precision, 4..=16 (default 10).
    pub precision: u8,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            slot: Duration::from_secs(60),
            windows: vec![
                Duration::from_secs(60),
                Duration::from_secs(300),
                Duration::from_secs(900),
            ],
            primary_window: Duration::from_secs(300),
            precision: 10,
        }
    }
}

/// Why a [`ConcurrencyConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConcurrencyConfigError {
    /// The slot length is zero.
    #[error("the concurrency slot length must be positive")]
    ZeroSlot,
    /// A window is empty, not a whole number of slots, or longer than `MAX_SLOTS` slots.
    #[error("window {0:?} must be a positive whole number of slots and at most {MAX_SLOTS} slots")]
    BadWindow(Duration),
    /// No windows, or more than [`MAX_WINDOWS`].
    #[error("between 1 and {MAX_WINDOWS} windows are required")]
    WindowCount,
    /// The primary window is not one of the windows.
    #[error("the primary window {0:?} is not one of the windows")]
    PrimaryNotAWindow(Duration),
    /// The precision is outside 4..=16.
    #[error("precision {0} is outside {MIN_PRECISION}..={MAX_PRECISION}")]
    Precision(u8),
}

/// One configured window: its length in slots and its label value.
#[derive(Debug, Clone)]
struct Window {
    slots: u32,
    label: Arc<str>,
}

/// Formats a window length as a short label value: `30s`, `5m`, `2h`.
fn window_label(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// One time slot: its epoch plus one (0 while unused) and its sketch's registers, written
/// without a lock ([`insert_atomic`]).
#[derive(Debug)]
struct Slot {
    epoch: AtomicU64,
    registers: Box<[AtomicU8]>,
}

/// The ring of slots of one tenant.
///
/// Recording takes no lock: a slot is claimed for a new epoch (its registers cleared) under
/// `reset`, once per slot length, and registers only grow. An estimate taken while a slot is
/// being cleared may miss part of that slot for that scrape.
#[derive(Debug)]
struct TenantRing {
    precision: u8,
    slots: Vec<Slot>,
    reset: Mutex<()>,
}

impl TenantRing {
    fn new(len: u32, precision: u8) -> Self {
        let registers = HyperLogLog::new(precision).memory_bytes();
        Self {
            precision,
            slots: (0..len)
                .map(|_| Slot {
                    epoch: AtomicU64::new(0),
                    registers: (0..registers).map(|_| AtomicU8::new(0)).collect(),
                })
                .collect(),
            reset: Mutex::new(()),
        }
    }

    /// Adds `hash` to the sketch of `epoch`, which lies at `index` in the ring.
    #[inline]
    fn insert(&self, epoch: u64, index: usize, hash: u64) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let tag = epoch.saturating_add(1);
        let held = slot.epoch.load(Ordering::Acquire);
        if held != tag {
            if held > tag {
                // A newer epoch owns the slot: this item's window is over.
                return;
            }
            self.claim(slot, tag);
        }
        insert_atomic(&slot.registers, self.precision, hash);
    }

    /// Clears `slot` for the epoch tagged `tag`, unless another thread already did.
    #[cold]
    fn claim(&self, slot: &Slot, tag: u64) {
        let _reset = self.reset.lock().unwrap_or_else(|e| e.into_inner());
        if slot.epoch.load(Ordering::Acquire) < tag {
            for register in slot.registers.iter() {
                register.store(0, Ordering::Relaxed);
            }
            slot.epoch.store(tag, Ordering::Release);
        }
    }

    /// Estimates for each window (sorted by slot count), merging from the newest slot back.
    fn estimates(&self, now_epoch: u64, windows: &[Window], scratch: &mut HyperLogLog) -> Vec<f64> {
        scratch.clear();
        let len = self.slots.len() as u64;
        let mut out = Vec::with_capacity(windows.len());
        let mut merged: u32 = 0;
        for window in windows {
            while merged < window.slots {
                let Some(epoch) = now_epoch.checked_sub(u64::from(merged)) else {
                    break;
                };
                let index = epoch.checked_rem(len).and_then(|i| usize::try_from(i).ok());
                if let Some(slot) = index.and_then(|i| self.slots.get(i))
                    && slot.epoch.load(Ordering::Acquire) == epoch.saturating_add(1)
                {
                    scratch.merge_atomic(&slot.registers);
                }
                merged += 1;
            }
            out.push(scratch.estimate().round());
        }
        out
    }

    fn memory_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.registers.len()).sum()
    }
}

/// A tenant's ring of sketches, cached on its label value so recording needs no map lookup.
/// Belongs to the one [`ConcurrentUsers`] built on that tenant set.
#[derive(Debug, Default)]
pub(crate) struct UserRing(OnceLock<Arc<TenantRing>>);

/// Distinct users per tenant over sliding windows. User ids are hashed, never stored.
#[derive(Debug)]
pub(crate) struct ConcurrentUsers {
    /// The slot length in nanoseconds (at least 1).
    slot_nanos: u64,
    precision: u8,
    ring_len: u32,
    /// Windows sorted by length.
    windows: Vec<Window>,
    primary: usize,
    origin: Instant,
    /// The slot last recorded into, as `epoch << 8 | index in the ring` (epochs below 2^56): a
    /// recording in the same slot reuses it instead of dividing twice.
    current: AtomicU64,
    /// Seeded per process; a quality (well-mixed) hash, as HyperLogLog reads its top and low bits.
    hasher: foldhash::quality::RandomState,
    tenants: Arc<BoundedLabels<TenantSeries>>,
    /// Every tenant's ring, for scrapes.
    rings: RwLock<HashMap<Arc<str>, Arc<TenantRing>>>,
}

impl ConcurrentUsers {
    pub(crate) fn new(
        config: &ConcurrencyConfig,
        tenants: Arc<BoundedLabels<TenantSeries>>,
        origin: Instant,
    ) -> Result<Self, ConcurrencyConfigError> {
        if config.slot.is_zero() {
            return Err(ConcurrencyConfigError::ZeroSlot);
        }
        if config.windows.is_empty() || config.windows.len() > MAX_WINDOWS {
            return Err(ConcurrencyConfigError::WindowCount);
        }
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&config.precision) {
            return Err(ConcurrencyConfigError::Precision(config.precision));
        }
        let slot_nanos = config.slot.as_nanos();
        let slot_nanos_u64 = u64::try_from(slot_nanos).unwrap_or(u64::MAX);
        let mut windows = Vec::with_capacity(config.windows.len());
        for &w in &config.windows {
            let nanos = w.as_nanos();
            let slots = nanos / slot_nanos;
            if nanos == 0 || nanos % slot_nanos != 0 || slots > u128::from(MAX_SLOTS) {
                return Err(ConcurrencyConfigError::BadWindow(w));
            }
            let slots = u32::try_from(slots).map_err(|_| ConcurrencyConfigError::BadWindow(w))?;
            windows.push((
                w,
                Window {
                    slots,
                    label: Arc::from(window_label(w)),
                },
            ));
        }
        windows.sort_by_key(|(_, w)| w.slots);
        windows.dedup_by_key(|(_, w)| w.slots);
        let primary = windows
            .iter()
            .position(|(d, _)| *d == config.primary_window)
            .ok_or(ConcurrencyConfigError::PrimaryNotAWindow(
                config.primary_window,
            ))?;
        let windows: Vec<Window> = windows.into_iter().map(|(_, w)| w).collect();
        let ring_len = windows.last().map_or(1, |w| w.slots);
        Ok(Self {
            slot_nanos: slot_nanos_u64,
            precision: config.precision,
            ring_len,
            windows,
            primary,
            origin,
            current: AtomicU64::new(0),
            hasher: foldhash::quality::RandomState::default(),
            tenants,
            rings: RwLock::new(HashMap::new()),
        })
    }

    /// Nanoseconds from the origin to `now` (0 before it, saturated after 584 years).
    fn nanos_since_origin(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn epoch(&self, now: Instant) -> u64 {
        self.nanos_since_origin(now) / self.slot_nanos
    }

    /// The epoch `nanos` after the origin falls in and its slot in the ring: from the cached
    /// current slot while time stays in it, by division when a new slot begins.
    #[inline]
    fn slot_at(&self, nanos: u64) -> (u64, usize) {
        let current = self.current.load(Ordering::Relaxed);
        let epoch = current >> 8;
        // The cached epoch came from a division of some time, so `epoch * slot_nanos` fits.
        if nanos.wrapping_sub(epoch.wrapping_mul(self.slot_nanos)) < self.slot_nanos {
            return (epoch, (current & 0xff) as usize);
        }
        self.new_slot(nanos)
    }

    #[cold]
    fn new_slot(&self, nanos: u64) -> (u64, usize) {
        let epoch = nanos / self.slot_nanos;
        let index = epoch % u64::from(self.ring_len);
        if epoch < 1 << 56 {
            self.current.store(epoch << 8 | index, Ordering::Relaxed);
        }
        (epoch, usize::try_from(index).unwrap_or(0))
    }

    /// Records that `user` of `tenant` was active at `now`.
    pub(crate) fn record(&self, tenant: Option<&str>, user: &str, now: Instant) {
        self.record_tenant_nanos(
            self.tenants.resolve_opt(tenant),
            user,
            self.nanos_since_origin(now),
        );
    }

    /// Records that `user` of the resolved `tenant` was active `since_origin` nanoseconds after
    /// the origin (the layer reads them from its own clock).
    #[inline(always)]
    pub(crate) fn record_tenant_nanos(&self, tenant: &Tenant, user: &str, since_origin: u64) {
        let hash = hash_str(&self.hasher, user);
        let (epoch, index) = self.slot_at(since_origin);
        let cell = &tenant.data().users.0;
        match cell.get() {
            Some(ring) => ring,
            None => self.new_ring(cell, tenant),
        }
        .insert(epoch, index, hash);
    }

    /// The tenant's ring, made on its first user (out of line: the hot path only tests `cell`).
    #[cold]
    #[inline(never)]
    fn new_ring<'a>(&self, cell: &'a OnceLock<Arc<TenantRing>>, tenant: &Tenant) -> &'a TenantRing {
        cell.get_or_init(|| {
            let mut rings = self.rings.write().unwrap_or_else(|e| e.into_inner());
            let ring = rings
                .entry(Arc::clone(tenant.value()))
                .or_insert_with(|| Arc::new(TenantRing::new(self.ring_len, self.precision)));
            Arc::clone(ring)
        })
    }

    /// Per tenant, the estimated distinct users for each window (in the order of `self.windows`).
    fn snapshot(&self, now: Instant) -> Vec<(Arc<str>, Vec<f64>)> {
        let epoch = self.epoch(now);
        let mut scratch = HyperLogLog::new(self.precision);
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Arc<str>, Vec<f64>)> = rings
            .iter()
            .map(|(tenant, ring)| {
                let estimates = ring.estimates(epoch, &self.windows, &mut scratch);
                (Arc::clone(tenant), estimates)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The estimate for `tenant` over the window labelled `window` (e.g. `5m`) at `now`.
    pub(crate) fn estimate(&self, tenant: &str, window: &str, now: Instant) -> Option<f64> {
        let index = self.windows.iter().position(|w| &*w.label == window)?;
        self.snapshot(now)
            .into_iter()
            .find(|(t, _)| &**t == tenant)
            .and_then(|(_, v)| v.get(index).copied())
            .or(Some(0.0))
    }

    /// Bytes of sketch memory held now (summed over every slot of every tenant); at most
    /// `(tenant cap + 2) * per_tenant_bytes()`.
    pub(crate) fn memory_bytes(&self) -> usize {
        let rings = self.rings.read().unwrap_or_else(|e| e.into_inner());
        rings.values().map(|ring| ring.memory_bytes()).sum()
    }

    /// Sketch bytes for one tenant.
    pub(crate) fn per_tenant_bytes(&self) -> usize {
        usize::try_from(self.ring_len).unwrap_or(usize::MAX) << self.precision
    }
}

/// `mcp_concurrent_users{tenant}`: the primary window.
#[derive(Debug)]
pub(crate) struct PrimaryGauge(pub(crate) Arc<ConcurrentUsers>);

/// `mcp_concurrent_users_detailed{tenant,window}`: every window.
#[derive(Debug)]
pub(crate) struct DetailedGauge(pub(crate) Arc<ConcurrentUsers>);

impl EncodeMetric for PrimaryGauge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let users = &self.0;
        for (tenant, estimates) in users.snapshot(Instant::now()) {
            let value = estimates.get(users.primary).copied().unwrap_or(0.0);
            let labels = [("tenant", tenant)];
            encoder.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

impl EncodeMetric for DetailedGauge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let users = &self.0;
        for (tenant, estimates) in users.snapshot(Instant::now()) {
            for (window, value) in users.windows.iter().zip(estimates) {
                let labels = [
                    ("tenant", Arc::clone(&tenant)),
                    ("window", Arc::clone(&window.label)),
                ];
                encoder.encode_family(&labels)?.encode_gauge(&value)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelLimit;

    fn users(cap: usize) -> (ConcurrentUsers, Instant) {
        let origin = Instant::now();
        let tenants = Arc::new(BoundedLabels::new(&LabelLimit::learned(cap)));
        let users = ConcurrentUsers::new(&ConcurrencyConfig::default(), tenants, origin).unwrap();
        (users, origin)
    }

    /// Two users can share a sketch register, so even small counts may be one low.
    fn close(estimate: Option<f64>, want: f64) -> bool {
        estimate.is_some_and(|e| e <= want && e >= want - 1.0 - 0.05 * want)
    }

    #[test]
    fn windows_slide() {
        let (users, t0) = users(4);
        for i in 0..10 {
            users.record(Some("acme"), &format!("user-{i}"), t0);
        }
        // Two minutes later: gone from the 1m window, still in 5m and 15m.
        let t2 = t0 + Duration::from_secs(120);
        for i in 0..3 {
            users.record(Some("acme"), &format!("late-{i}"), t2);
        }
        let one = users.estimate("acme", "1m", t2);
        assert!(close(one, 3.0), "{one:?}");
        let five = users.estimate("acme", "5m", t2);
        assert!(close(five, 13.0), "{five:?}");
        assert_eq!(users.estimate("acme", "15m", t2), five);
        // Twenty minutes later: everything has slid out.
        let t20 = t0 + Duration::from_secs(1200);
        assert_eq!(users.estimate("acme", "15m", t20), Some(0.0));
        assert_eq!(users.estimate("acme", "2h", t20), None);
    }

    #[test]
    fn repeated_users_count_once() {
        let (users, t0) = users(4);
        for _ in 0..100 {
            users.record(Some("acme"), "alice", t0);
            users.record(Some("acme"), "bob", t0 + Duration::from_secs(30));
        }
        assert_eq!(
            users.estimate("acme", "5m", t0 + Duration::from_secs(30)),
            Some(2.0)
        );
    }

    #[test]
    fn a_reused_slot_is_cleared() {
        let (users, t0) = users(4);
        users.record(Some("acme"), "alice", t0);
        // Same ring index 15 slots later: the old sketch must not leak into the new epoch.
        let later = t0 + Duration::from_secs(15 * 60);
        users.record(Some("acme"), "bob", later);
        assert_eq!(users.estimate("acme", "15m", later), Some(1.0));
    }

    #[test]
    fn recordings_out_of_time_order_land_in_their_own_slots() {
        let (users, t0) = users(4);
        let t5 = t0 + Duration::from_secs(300);
        // Epoch 5 becomes the cached slot, then an earlier time must not be counted in it.
        users.record(Some("acme"), "late", t5);
        users.record(Some("acme"), "early", t0 + Duration::from_secs(200));
        users.record(Some("acme"), "late-2", t5 + Duration::from_secs(59));
        assert_eq!(users.slot_at(users.nanos_since_origin(t5)), (5, 5));
        let one = users.estimate("acme", "1m", t5);
        assert!(close(one, 2.0), "{one:?}");
        let five = users.estimate("acme", "5m", t5);
        assert!(close(five, 3.0), "{five:?}");
        // The slot index wraps around the ring (15 slots): epoch 17 lies at index 2.
        let t17 = t0 + Duration::from_secs(17 * 60 + 1);
        assert_eq!(users.slot_at(users.nanos_since_origin(t17)), (17, 2));
        assert_eq!(users.slot_at(users.nanos_since_origin(t17)), (17, 2));
        assert_eq!(users.slot_at(0), (0, 0));
    }

    #[test]
    fn memory_is_fixed_per_tenant_and_tenants_are_capped() {
        let (users, t0) = users(3);
        for i in 0..20_000u32 {
            users.record(
                Some(&format!("tenant-{}", i % 50)),
                &format!("user-{i}"),
                t0,
            );
        }
        // 3 learned tenants plus `other`.
        assert_eq!(users.rings.read().unwrap().len(), 4);
        assert_eq!(users.memory_bytes(), 4 * 15 * 1024);
    }

    #[test]
    fn config_is_validated() {
        let tenants = Arc::new(BoundedLabels::new(&LabelLimit::learned(1)));
        let now = Instant::now();
        let bad = |c: ConcurrencyConfig| ConcurrentUsers::new(&c, Arc::clone(&tenants), now).err();
        let base = ConcurrencyConfig::default();
        assert_eq!(
            bad(ConcurrencyConfig {
                slot: Duration::ZERO,
                ..base.clone()
            }),
            Some(ConcurrencyConfigError::ZeroSlot)
        );
        assert_eq!(
            bad(ConcurrencyConfig {
                windows: vec![],
                ..base.clone()
            }),
            Some(ConcurrencyConfigError::WindowCount)
        );
        let odd = Duration::from_secs(90);
        assert_eq!(
            bad(ConcurrencyConfig {
                windows: vec![odd],
                primary_window: odd,
                ..base.clone()
            }),
            Some(ConcurrencyConfigError::BadWindow(odd))
        );
        assert_eq!(
            bad(ConcurrencyConfig {
                primary_window: Duration::from_secs(120),
                ..base.clone()
            }),
            Some(ConcurrencyConfigError::PrimaryNotAWindow(
                Duration::from_secs(120)
            ))
        );
        assert_eq!(
            bad(ConcurrencyConfig {
                precision: 3,
                ..base
            }),
            Some(ConcurrencyConfigError::Precision(3))
        );
    }

    #[test]
    fn window_labels() {
        assert_eq!(window_label(Duration::from_secs(30)), "30s");
        assert_eq!(window_label(Duration::from_secs(300)), "5m");
        assert_eq!(window_label(Duration::from_secs(7200)), "2h");
        assert_eq!(window_label(Duration::from_millis(1500)), "1500ms");
    }
}
