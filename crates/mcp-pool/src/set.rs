//! The `PoolSet`: classes by name, the sampler, advice, snapshots and health.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::advice::{Advice, AdviceConfig, ClassUsage, advise};
use crate::class::{Backend, BoxFuture, ClassOps};
use crate::error::{ConfigError, LookupError};
use crate::history::{History, Sample, UsageSummary};
use crate::stats::StatsSnapshot;

/// The most samples a class keeps, whatever the resolution (a day at 1 s).
pub const MAX_HISTORY_SAMPLES: usize = 86_400;

/// What a class's config says about its size, checked before anything is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) size: u32,
    pub(crate) min: u32,
    pub(crate) budgeted: bool,
}

pub(crate) type Opened = Result<Arc<dyn ClassOps>, ConfigError>;

/// A class config waiting for `build`.
pub(crate) trait PendingClass: Send {
    fn name(&self) -> &str;
    fn plan(&self) -> Result<Plan, ConfigError>;
    fn open(self: Box<Self>, apply: bool, lazy: bool) -> BoxFuture<'static, Opened>;
}

/// How usage is sampled and how much of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerConfig {
    /// Time between samples (default 10 s).
    pub resolution: Duration,
    /// How far back the history reaches (default 24 h; at most [`MAX_HISTORY_SAMPLES`]
    /// samples are kept).
    pub history: Duration,
    /// The window the advice looks at (default 5 min).
    pub window: Duration,
    /// Whether a background task samples every `resolution` (default true). Without it,
    /// [`PoolSet::sample_now`] takes the samples.
    pub background: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            resolution: Duration::from_secs(10),
            history: Duration::from_secs(24 * 3600),
            window: Duration::from_secs(300),
            background: true,
        }
    }
}

impl SamplerConfig {
    /// The defaults, without the background task: samples are taken by calling
    /// [`PoolSet::sample_now`] (from a scheduler of your own, or a test).
    pub fn manual() -> Self {
        Self {
            background: false,
            ..Self::default()
        }
    }

    /// Sets the time between samples.
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }

    /// Sets how far back the history reaches.
    pub fn history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// Sets the advice window.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Samples kept per class: `history / resolution`, rounded up, at most
    /// [`MAX_HISTORY_SAMPLES`].
    pub fn capacity(&self) -> usize {
        samples_in(self.history, self.resolution).min(MAX_HISTORY_SAMPLES)
    }

    /// Samples in a full advice window: `window / resolution`, rounded up, within
    /// `[1, capacity]`.
    pub fn window_samples(&self) -> usize {
        samples_in(self.window, self.resolution).clamp(1, self.capacity().max(1))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.resolution < Duration::from_millis(10) {
            return Err(ConfigError::Sampler(
                "resolution must be at least 10 ms".into(),
            ));
        }
        if self.window < self.resolution || self.history < self.window {
            return Err(ConfigError::Sampler(
                "need resolution <= window <= history".into(),
            ));
        }
        Ok(())
    }
}

fn samples_in(span: Duration, resolution: Duration) -> usize {
    let n = span.as_nanos().div_ceil(resolution.as_nanos().max(1));
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Builds a [`PoolSet`].
#[must_use]
pub struct PoolSetBuilder {
    classes: Vec<Box<dyn PendingClass>>,
    budget: Option<u32>,
    sampler: SamplerConfig,
    advice: AdviceConfig,
    apply: bool,
    lazy: bool,
}

impl std::fmt::Debug for PoolSetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSetBuilder")
            .field(
                "classes",
                &self.classes.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("budget", &self.budget)
            .field("sampler", &self.sampler)
            .field("advice", &self.advice)
            .field("apply", &self.apply)
            .field("lazy", &self.lazy)
            .finish()
    }
}

impl PoolSetBuilder {
    /// Adds a PostgreSQL or SQLite class.
    #[cfg(feature = "sql")]
    pub fn sql<DB: crate::sql::SqlBackend>(
        mut self,
        config: crate::sql::SqlClassConfig<DB>,
    ) -> Self {
        self.classes.push(Box::new(config));
        self
    }

    /// Adds several SQL classes, e.g. [`SqlClassConfig::standard_set`](crate::SqlClassConfig::standard_set).
    #[cfg(feature = "sql")]
    pub fn sql_classes<DB: crate::sql::SqlBackend>(
        mut self,
        configs: impl IntoIterator<Item = crate::sql::SqlClassConfig<DB>>,
    ) -> Self {
        for config in configs {
            self.classes.push(Box::new(config));
        }
        self
    }

    /// Adds a Redis class.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, config: crate::redis::RedisClassConfig) -> Self {
        self.classes.push(Box::new(config));
        self
    }

    /// The most connections the budgeted SQL classes may hold together (the database's
    /// `max_connections` minus what others need). Checked against the sizes at build, and
    /// never exceeded by the advice or by applying it.
    pub fn connection_budget(mut self, budget: u32) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sampling settings.
    pub fn sampler(mut self, sampler: SamplerConfig) -> Self {
        self.sampler = sampler;
        self
    }

    /// Advice thresholds.
    pub fn advice(mut self, advice: AdviceConfig) -> Self {
        self.advice = advice;
        self
    }

    /// Apply the advice after each sample (default off: advice only). SQL pools are then
    /// opened at their `max_connections` with a semaphore in front that holds each class to
    /// its current limit.
    pub fn apply_advice(mut self, apply: bool) -> Self {
        self.apply = apply;
        self
    }

    /// Build without connecting; connections open on first use (default: each class opens
    /// its first connection at build and fails the build if it cannot).
    pub fn connect_lazily(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Checks the settings, opens every class and starts the sampler.
    pub async fn build(self) -> Result<PoolSet, ConfigError> {
        self.sampler.validate()?;
        self.advice.validate()?;
        let mut names = std::collections::HashSet::new();
        let (mut sizes, mut mins) = (0_u64, 0_u64);
        for class in &self.classes {
            let plan = class.plan()?;
            if !names.insert(class.name().to_owned()) {
                return Err(ConfigError::DuplicateClass {
                    class: class.name().to_owned(),
                });
            }
            if plan.budgeted {
                sizes += u64::from(plan.size);
                mins += u64::from(plan.min.max(1));
            }
        }
        if let Some(budget) = self.budget {
            let required = sizes.max(mins);
            if required > u64::from(budget) {
                return Err(ConfigError::OverBudget { budget, required });
            }
        }
        let mut opened: Vec<Arc<dyn ClassOps>> = Vec::with_capacity(self.classes.len());
        for class in self.classes {
            match class.open(self.apply, self.lazy).await {
                Ok(ops) => opened.push(ops),
                Err(error) => {
                    for ops in &opened {
                        ops.close().await;
                    }
                    return Err(error);
                }
            }
        }
        let capacity = self.sampler.capacity();
        let entries = opened
            .into_iter()
            .map(|ops| {
                let history = History::new(capacity, ops.stats().waits(), ops.stats().timeouts());
                Entry {
                    ops,
                    history: Mutex::new(history),
                    advice: Mutex::new(None),
                }
            })
            .collect();
        let inner = Arc::new(SetInner {
            entries,
            budget: self.budget,
            sampler: self.sampler,
            advice: self.advice,
            apply: self.apply,
            tick: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
        });
        if self.sampler.background {
            let task = tokio::spawn(run_sampler(Arc::downgrade(&inner), self.sampler.resolution));
            *inner.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        Ok(PoolSet(inner))
    }
}

struct Entry {
    ops: Arc<dyn ClassOps>,
    history: Mutex<History>,
    advice: Mutex<Option<Advice>>,
}

pub(crate) struct SetInner {
    entries: Vec<Entry>,
    budget: Option<u32>,
    sampler: SamplerConfig,
    advice: AdviceConfig,
    apply: bool,
    /// One sample-advise-apply step at a time.
    tick: tokio::sync::Mutex<()>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for SetInner {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

async fn run_sampler(set: Weak<SetInner>, resolution: Duration) {
    let start = tokio::time::Instant::now() + resolution;
    let mut interval = tokio::time::interval_at(start, resolution);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(inner) = set.upgrade() else {
            return;
        };
        PoolSet(inner).sample_now().await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Database and Redis pools by operation class, with statistics, health checks and sizing
/// advice. Cheap to clone; the sampler stops when the last clone is dropped.
#[derive(Clone)]
pub struct PoolSet(Arc<SetInner>);

impl std::fmt::Debug for PoolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSet")
            .field("classes", &self.class_names().collect::<Vec<_>>())
            .field("budget", &self.0.budget)
            .field("apply", &self.0.apply)
            .finish_non_exhaustive()
    }
}

/// The advice for one class after a sample, and what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClassAdvice {
    /// The class.
    pub class: String,
    /// The recommendation.
    pub advice: Advice,
    /// The new limit, when the advice was applied and changed it.
    pub applied: Option<u32>,
}

impl PoolSet {
    /// A builder with no classes, no budget, the default sampler and advice only.
    pub fn builder() -> PoolSetBuilder {
        PoolSetBuilder {
            classes: Vec::new(),
            budget: None,
            sampler: SamplerConfig::default(),
            advice: AdviceConfig::default(),
            apply: false,
            lazy: false,
        }
    }

    /// The class names, in the order they were added.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.0.entries.iter().map(|e| e.ops.name())
    }

    fn entry(&self, class: &str) -> Result<&Entry, LookupError> {
        self.0
            .entries
            .iter()
            .find(|e| e.ops.name() == class)
            .ok_or_else(|| LookupError::Unknown {
                class: class.to_owned(),
            })
    }

    fn typed<T: 'static>(&self, class: &str, expected: Backend) -> Result<&T, LookupError> {
        let entry = self.entry(class)?;
        entry
            .ops
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| LookupError::WrongBackend {
                class: class.to_owned(),
                expected,
                actual: entry.ops.backend(),
            })
    }

    /// The SQL class `class` of backend `DB`.
    #[cfg(feature = "sql")]
    pub fn sql<DB: crate::sql::SqlBackend>(
        &self,
        class: &str,
    ) -> Result<&crate::sql::SqlClass<DB>, LookupError> {
        self.typed(class, DB::BACKEND)
    }

    /// The PostgreSQL class `class`.
    #[cfg(feature = "postgres")]
    pub fn postgres(&self, class: &str) -> Result<&crate::sql::PgClass, LookupError> {
        self.sql::<sqlx::Postgres>(class)
    }

    /// The SQLite class `class`.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self, class: &str) -> Result<&crate::sql::SqliteClass, LookupError> {
        self.sql::<sqlx::Sqlite>(class)
    }

    /// The Redis class `class`.
    #[cfg(feature = "redis")]
    pub fn redis(&self, class: &str) -> Result<&crate::redis::RedisClass, LookupError> {
        self.typed(class, Backend::Redis)
    }

    /// Takes one sample of every class, recomputes the advice and, when advice is applied,
    /// moves the limits: shrinks first (closing idle connections above the new limit), then
    /// growth, within the budget counting every connection still open. The background
    /// sampler calls this every `resolution`; call it yourself with a manual sampler.
    pub async fn sample_now(&self) -> Vec<ClassAdvice> {
        let inner = &*self.0;
        let _tick = inner.tick.lock().await;
        let at = now_unix_ms();
        let window = inner.sampler.window_samples();
        let mut usages = Vec::with_capacity(inner.entries.len());
        for entry in &inner.entries {
            let gauges = entry.ops.gauges();
            let stats = entry.ops.stats();
            let settings = entry.ops.settings();
            let peak = stats.take_peak().max(gauges.in_use);
            let mut history = lock(&entry.history);
            history.record(at, peak, gauges.limit, stats.waits(), stats.timeouts());
            let w = history.window(window);
            usages.push(
                ClassUsage::new(gauges.limit, settings.min, settings.max)
                    .budgeted(settings.budgeted)
                    .window(w.samples, w.p95_in_use, w.waits, w.timeouts),
            );
        }
        let window = u32::try_from(window).unwrap_or(u32::MAX);
        let advice = advise(&usages, inner.budget, window, &inner.advice);
        for (entry, advice) in inner.entries.iter().zip(&advice) {
            *lock(&entry.advice) = Some(*advice);
        }
        let applied = if inner.apply {
            self.apply(&advice).await
        } else {
            vec![None; advice.len()]
        };
        inner
            .entries
            .iter()
            .zip(advice)
            .zip(applied)
            .map(|((entry, advice), applied)| ClassAdvice {
                class: entry.ops.name().to_owned(),
                advice,
                applied,
            })
            .collect()
    }

    async fn apply(&self, advice: &[Advice]) -> Vec<Option<u32>> {
        let inner = &*self.0;
        let mut applied = vec![None; advice.len()];
        for (i, (entry, advice)) in inner.entries.iter().zip(advice).enumerate() {
            let limit = entry.ops.gauges().limit;
            if entry.ops.settings().resizable && advice.target < limit {
                entry.ops.set_limit(advice.target);
                lock(&entry.history).mark_changed();
                applied[i] = Some(advice.target);
                tracing::info!(
                    class = entry.ops.name(),
                    from = limit,
                    to = advice.target,
                    reason = ?advice.reason,
                    "pool class limit lowered"
                );
            }
        }
        for (entry, applied) in inner.entries.iter().zip(&applied) {
            if applied.is_some() {
                entry.ops.trim().await;
            }
        }
        // Growth is paid for by connections actually closed: a class holds the larger of its
        // limit and its open connections.
        let mut holds: Vec<u64> = inner
            .entries
            .iter()
            .map(|e| {
                let g = e.ops.gauges();
                if e.ops.settings().budgeted {
                    u64::from(g.limit.max(g.size))
                } else {
                    0
                }
            })
            .collect();
        for (i, (entry, advice)) in inner.entries.iter().zip(advice).enumerate() {
            let settings = entry.ops.settings();
            let gauges = entry.ops.gauges();
            if !settings.resizable || advice.target <= gauges.limit {
                continue;
            }
            let want = advice.target - gauges.limit;
            let grow = match inner.budget {
                Some(budget) if settings.budgeted => {
                    let others: u64 = holds.iter().sum::<u64>().saturating_sub(holds[i]);
                    let room = u64::from(budget).saturating_sub(others);
                    let allowed = room.saturating_sub(u64::from(gauges.limit));
                    let grow = u32::try_from(allowed.min(u64::from(want))).unwrap_or(want);
                    holds[i] = u64::from((gauges.limit + grow).max(gauges.size));
                    grow
                }
                _ => want,
            };
            if grow > 0 {
                let to = gauges.limit + grow;
                entry.ops.set_limit(to);
                lock(&entry.history).mark_changed();
                applied[i] = Some(to);
                tracing::info!(
                    class = entry.ops.name(),
                    from = gauges.limit,
                    to,
                    reason = ?advice.reason,
                    "pool class limit raised"
                );
            }
        }
        applied
    }

    /// The samples a class holds, oldest first (at most a day at the sampler's resolution).
    pub fn history(&self, class: &str) -> Result<Vec<Sample>, LookupError> {
        Ok(lock(&self.entry(class)?.history).samples())
    }

    /// Statistics, usage and advice of every class, ready to serialise (for an admin
    /// endpoint such as `/api/v1/admin/connection-pool-status`).
    pub fn snapshot(&self) -> PoolSetSnapshot {
        let inner = &*self.0;
        let window = inner.sampler.window_samples();
        let classes: Vec<ClassSnapshot> = inner
            .entries
            .iter()
            .map(|entry| {
                let gauges = entry.ops.gauges();
                let settings = entry.ops.settings();
                let (window, history, held) = {
                    let history = lock(&entry.history);
                    (history.window(window), history.all(), history.len())
                };
                ClassSnapshot {
                    class: entry.ops.name().to_owned(),
                    backend: entry.ops.backend(),
                    size: gauges.size,
                    idle: gauges.idle,
                    in_use: gauges.in_use,
                    limit: gauges.limit,
                    min: settings.min,
                    max: settings.max,
                    budgeted: settings.budgeted,
                    resizable: settings.resizable,
                    acquire_timeout_seconds: settings.acquire_timeout.as_secs_f64(),
                    idle_timeout_seconds: settings.idle_timeout.map(|d| d.as_secs_f64()),
                    stats: entry.ops.stats().snapshot(gauges.open),
                    window,
                    history,
                    history_samples: u32::try_from(held).unwrap_or(u32::MAX),
                    advice: *lock(&entry.advice),
                }
            })
            .collect();
        let budget_used = classes.iter().filter(|c| c.budgeted).map(|c| c.limit).sum();
        let capacity = inner
            .entries
            .first()
            .map_or(inner.sampler.capacity(), |e| lock(&e.history).capacity());
        PoolSetSnapshot {
            connection_budget: inner.budget,
            budget_used,
            apply_advice: inner.apply,
            sampler: SamplerSnapshot {
                resolution_seconds: inner.sampler.resolution.as_secs_f64(),
                window_seconds: inner.sampler.window.as_secs_f64(),
                history_seconds: inner.sampler.history.as_secs_f64(),
                window_samples: u32::try_from(window).unwrap_or(u32::MAX),
                history_capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
                background: inner.sampler.background,
            },
            classes,
        }
    }

    /// Checks every class at once (`SELECT 1` on a pooled connection, `PING` on Redis),
    /// each within its health timeout. The check bypasses the class's applied limit; a
    /// class whose sqlx pool stays full for longer than the health timeout reports
    /// unhealthy.
    pub async fn health(&self) -> HealthReport {
        let mut checks = tokio::task::JoinSet::new();
        for (i, entry) in self.0.entries.iter().enumerate() {
            let ops = Arc::clone(&entry.ops);
            checks.spawn(async move { (i, check(&*ops).await) });
        }
        let mut classes: Vec<Option<ClassHealth>> = vec![None; self.0.entries.len()];
        while let Some(joined) = checks.join_next().await {
            // A check that panicked leaves its slot empty and is reported below.
            if let Ok((i, health)) = joined
                && let Some(slot) = classes.get_mut(i)
            {
                *slot = Some(health);
            }
        }
        let classes: Vec<ClassHealth> = classes
            .into_iter()
            .zip(&self.0.entries)
            .map(|(health, entry)| {
                health.unwrap_or_else(|| ClassHealth {
                    class: entry.ops.name().to_owned(),
                    backend: entry.ops.backend(),
                    healthy: false,
                    latency_seconds: 0.0,
                    error: Some("health check task failed".into()),
                })
            })
            .collect();
        HealthReport {
            healthy: classes.iter().all(|c| c.healthy),
            classes,
        }
    }

    /// Checks one class.
    pub async fn health_of(&self, class: &str) -> Result<ClassHealth, LookupError> {
        let ops = Arc::clone(&self.entry(class)?.ops);
        Ok(check(&*ops).await)
    }

    /// Closes every class: waiters fail with [`PoolError::Closed`](crate::PoolError::Closed),
    /// SQL pools close their connections once returned.
    pub async fn close(&self) {
        if let Some(task) = lock(&self.0.task).take() {
            task.abort();
        }
        for entry in &self.0.entries {
            entry.ops.close().await;
        }
    }

    /// Registers the statistics with a prometheus-client registry (see the crate docs for
    /// the families). The registry holds only a weak reference: after the set is dropped
    /// it exports nothing.
    #[cfg(feature = "prometheus")]
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(crate::metrics::PoolCollector::new(
            Arc::downgrade(&self.0),
        )));
    }

    /// What the collector reads on a scrape: per class, name, backend, gauges, counters and
    /// the last advice (no history walk).
    #[cfg(feature = "prometheus")]
    pub(crate) fn scrape(inner: &SetInner) -> Vec<crate::metrics::Scraped> {
        inner
            .entries
            .iter()
            .map(|entry| {
                let gauges = entry.ops.gauges();
                crate::metrics::Scraped {
                    class: entry.ops.name().to_owned(),
                    backend: entry.ops.backend(),
                    in_use: gauges.in_use,
                    idle: gauges.idle,
                    limit: gauges.limit,
                    max: entry.ops.settings().max,
                    recommended: lock(&entry.advice).map(|a| a.target),
                    stats: entry.ops.stats().snapshot(gauges.open),
                }
            })
            .collect()
    }
}

async fn check(ops: &dyn ClassOps) -> ClassHealth {
    let start = Instant::now();
    let result = ops.check(ops.settings().health_timeout).await;
    if let Err(error) = &result {
        tracing::debug!(class = ops.name(), %error, "pool class health check failed");
    }
    ClassHealth {
        class: ops.name().to_owned(),
        backend: ops.backend(),
        healthy: result.is_ok(),
        latency_seconds: start.elapsed().as_secs_f64(),
        error: result.err(),
    }
}

/// Statistics, usage and advice of every class.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolSetSnapshot {
    /// The connection budget of the budgeted SQL classes, if one was set.
    pub connection_budget: Option<u32>,
    /// Sum of the budgeted classes' limits.
    pub budget_used: u32,
    /// Whether the advice is applied.
    pub apply_advice: bool,
    /// Sampler settings.
    pub sampler: SamplerSnapshot,
    /// Every class, in the order they were added.
    pub classes: Vec<ClassSnapshot>,
}

/// Sampler settings in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SamplerSnapshot {
    /// Time between samples.
    pub resolution_seconds: f64,
    /// The advice window.
    pub window_seconds: f64,
    /// How far back the history reaches.
    pub history_seconds: f64,
    /// Samples in a full window.
    pub window_samples: u32,
    /// Samples kept per class.
    pub history_capacity: u32,
    /// Whether a background task samples.
    pub background: bool,
}

/// One class in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ClassSnapshot {
    /// The class name.
    pub class: String,
    /// Its backend.
    pub backend: Backend,
    /// Connections open (SQL); handle slots, i.e. the limit (Redis).
    pub size: u32,
    /// Open connections not in use (SQL); free slots (Redis).
    pub idle: u32,
    /// Connections (or Redis handles) in use.
    pub in_use: u32,
    /// The current limit.
    pub limit: u32,
    /// The lowest limit the advice goes to.
    pub min: u32,
    /// The highest limit the advice goes to.
    pub max: u32,
    /// Whether the class counts against the connection budget.
    pub budgeted: bool,
    /// Whether the advice is applied to this class.
    pub resizable: bool,
    /// Acquire timeout.
    pub acquire_timeout_seconds: f64,
    /// Idle timeout (SQL).
    pub idle_timeout_seconds: Option<f64>,
    /// Counters and the acquire-wait histogram.
    pub stats: StatsSnapshot,
    /// Usage in the advice window (since the last limit change).
    pub window: UsageSummary,
    /// Usage over the whole history held.
    pub history: UsageSummary,
    /// Samples held.
    pub history_samples: u32,
    /// The advice from the last sample (none before the first).
    pub advice: Option<Advice>,
}

/// Health of every class, for a readiness endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Whether every class answered.
    pub healthy: bool,
    /// Each class, in the order they were added.
    pub classes: Vec<ClassHealth>,
}

/// Health of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ClassHealth {
    /// The class name.
    pub class: String,
    /// Its backend.
    pub backend: Backend,
    /// Whether `SELECT 1` / `PING` answered within the health timeout.
    pub healthy: bool,
    /// How long the check took.
    pub latency_seconds: f64,
    /// Why it failed (driver message or timeout; never a URL or password).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_capacity_and_window_follow_the_resolution() {
        let s = SamplerConfig::default();
        assert_eq!(s.capacity(), 8640);
        assert_eq!(s.window_samples(), 30);
        let fine = SamplerConfig::default().resolution(Duration::from_millis(100));
        assert_eq!(fine.capacity(), MAX_HISTORY_SAMPLES);
        let odd = SamplerConfig::default()
            .resolution(Duration::from_secs(7))
            .window(Duration::from_secs(60));
        assert_eq!(odd.window_samples(), 9);
    }

    #[test]
    fn sampler_settings_are_checked() {
        assert!(SamplerConfig::default().validate().is_ok());
        let too_fine = SamplerConfig::default().resolution(Duration::from_millis(1));
        assert!(too_fine.validate().is_err());
        let short_history = SamplerConfig::default().history(Duration::from_secs(60));
        assert!(short_history.validate().is_err());
    }

    #[tokio::test]
    async fn an_empty_set_builds_and_reports() {
        let set = PoolSet::builder()
            .sampler(SamplerConfig::manual())
            .connection_budget(0)
            .build()
            .await
            .unwrap();
        assert!(set.sample_now().await.is_empty());
        assert!(set.health().await.healthy);
        let snapshot = set.snapshot();
        assert_eq!(snapshot.budget_used, 0);
        assert_eq!(snapshot.sampler.history_capacity, 8640);
        assert!(matches!(
            set.history("read"),
            Err(LookupError::Unknown { .. })
        ));
    }
}
