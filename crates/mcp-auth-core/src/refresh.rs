//! Background refresh of tokens the server itself holds (for upstream or outbound calls):
//! [`TokenRefresher`], [`TokenSource`], [`RefreshConfig`] and the [`RefreshStats`] counters.
//!
//! The refresher fetches a token at start, then refreshes it a margin before it expires
//! (a *proactive* refresh, default 10 minutes before). A refresh that happens inside the
//! last, shorter window before expiry (default 5 minutes) is an *emergency* refresh: retries
//! of a failing proactive refresh never sleep past the start of that window, so the first
//! emergency attempt happens as soon as it opens. Failed attempts are retried with
//! exponential backoff and jitter (30, 60, 120, 300 s by default), a bounded number of times
//! per cycle (default 4); then the failed cycle is counted and a new cycle starts after the
//! last backoff delay. Readers get the current token from a cheap [`TokenHandle`].
//!
//! Sleeping uses tokio time (tests pause and advance it); expiry is judged with the
//! injected [`Clock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::credential::Secret;

/// A token and the time it expires, as returned by a [`TokenSource`].
#[derive(Clone, Debug)]
pub struct FetchedToken {
    /// The token.
    pub token: Secret,
    /// When the token stops being valid.
    pub expires_at: SystemTime,
}

impl FetchedToken {
    /// A token that expires at `expires_at`.
    pub fn new(token: impl Into<Secret>, expires_at: SystemTime) -> Self {
        Self {
            token: token.into(),
            expires_at,
        }
    }
}

/// Where a [`TokenRefresher`] gets fresh tokens (a client-credentials grant, a refresh
/// token exchange, a managed-identity endpoint, ...).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// The error of a failed fetch. It is logged at warn level, so it must not contain the
    /// token or any other secret.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Fetches a new token.
    async fn fetch(&self) -> Result<FetchedToken, Self::Error>;
}

/// Why a [`TokenRefresher`] could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshSetupError {
    /// The emergency window is longer than the refresh margin.
    #[error("the emergency window must not be longer than the refresh margin")]
    EmergencyWindowExceedsMargin,
    /// The backoff schedule is empty or holds a zero delay.
    #[error("the backoff schedule must be non-empty and hold no zero delay")]
    InvalidBackoff,
    /// The jitter fraction is not within `0.0..=1.0`.
    #[error("the jitter fraction must be within 0.0..=1.0")]
    InvalidJitter,
    /// There is no tokio runtime to run the background task on.
    #[error("no tokio runtime is running")]
    NoRuntime,
}

/// Timing of a [`TokenRefresher`].
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshConfig {
    margin: Duration,
    emergency_window: Duration,
    backoff: Vec<Duration>,
    max_retries: u32,
    jitter: f64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(10 * 60),
            emergency_window: Duration::from_secs(5 * 60),
            backoff: [30, 60, 120, 300].map(Duration::from_secs).to_vec(),
            max_retries: 4,
            jitter: 0.2,
        }
    }
}

impl RefreshConfig {
    /// The defaults: margin 10 min, emergency window 5 min, backoff 30/60/120/300 s,
    /// 4 retries per cycle, jitter 0.2.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long before expiry a proactive refresh starts. For a token whose whole lifetime
    /// is shorter than twice the margin, half its lifetime is used instead.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The window before expiry in which a refresh is an emergency. For short-lived tokens
    /// it shrinks to a quarter of the lifetime.
    pub fn emergency_window(mut self, window: Duration) -> Self {
        self.emergency_window = window;
        self
    }

    /// The delays before the first, second, ... retry; the last one repeats.
    pub fn backoff(mut self, schedule: impl IntoIterator<Item = Duration>) -> Self {
        self.backoff = schedule.into_iter().collect();
        self
    }

    /// How many times a failed attempt is retried before the cycle counts as failed.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The jitter fraction: each delay `d` becomes a random value in `[d * (1 - jitter), d]`,
    /// so replicas do not retry in step. `0.0` disables it.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    fn validate(&self) -> Result<(), RefreshSetupError> {
        if self.emergency_window > self.margin {
            return Err(RefreshSetupError::EmergencyWindowExceedsMargin);
        }
        if self.backoff.is_empty() || self.backoff.iter().any(Duration::is_zero) {
            return Err(RefreshSetupError::InvalidBackoff);
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(RefreshSetupError::InvalidJitter);
        }
        Ok(())
    }

    /// The jittered delay before retry number `retry` (0-based).
    fn retry_delay(&self, retry: u32) -> Duration {
        let index = usize::try_from(retry)
            .unwrap_or(usize::MAX)
            .min(self.backoff.len().saturating_sub(1));
        let base = self.backoff.get(index).copied().unwrap_or_default();
        if self.jitter == 0.0 {
            return base;
        }
        let cut = rand::rng().random_range(0.0..=self.jitter);
        base.mul_f64(1.0 - cut)
    }
}

/// What kind of refresh an attempt was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshKind {
    /// The first fetch, or a fetch after the previous token expired.
    Initial,
    /// A refresh before the emergency window.
    Proactive,
    /// A refresh inside the emergency window.
    Emergency,
}

impl RefreshKind {
    /// A stable lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Proactive => "proactive",
            Self::Emergency => "emergency",
        }
    }
}

/// A snapshot of a refresher's counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshStats {
    /// Successful initial fetches (at start, or after the token had expired).
    pub initial: u64,
    /// Successful proactive refreshes.
    pub proactive: u64,
    /// Successful emergency refreshes.
    pub emergency: u64,
    /// Refresh cycles that failed after all their retries.
    pub failed: u64,
    /// Individual failed fetch attempts.
    pub failed_attempts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    initial: AtomicU64,
    proactive: AtomicU64,
    emergency: AtomicU64,
    failed: AtomicU64,
    failed_attempts: AtomicU64,
}

impl Counters {
    fn success(&self, kind: RefreshKind) {
        let counter = match kind {
            RefreshKind::Initial => &self.initial,
            RefreshKind::Proactive => &self.proactive,
            RefreshKind::Emergency => &self.emergency,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RefreshStats {
        RefreshStats {
            initial: self.initial.load(Ordering::Relaxed),
            proactive: self.proactive.load(Ordering::Relaxed),
            emergency: self.emergency.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
        }
    }
}

/// The token held now, with the wall time it was fetched (to know its lifetime).
#[derive(Clone)]
struct Current {
    token: Secret,
    fetched_at: SystemTime,
    expires_at: SystemTime,
}

impl Current {
    fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.fetched_at)
            .unwrap_or_default()
    }

    fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

/// A cheap, cloneable reader of the token a [`TokenRefresher`] keeps fresh.
#[derive(Clone)]
pub struct TokenHandle {
    current: watch::Receiver<Option<Current>>,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("expires_at", &self.expires_at())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenHandle {
    /// The current token, or `None` before the first fetch succeeded or once the token has
    /// expired (when refreshing kept failing).
    pub fn current(&self) -> Option<Secret> {
        let now = self.clock.now();
        self.current
            .borrow()
            .as_ref()
            .filter(|c| c.expires_at > now)
            .map(|c| c.token.clone())
    }

    /// When the current token expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.current.borrow().as_ref().map(|c| c.expires_at)
    }

    /// The counters.
    pub fn stats(&self) -> RefreshStats {
        self.counters.snapshot()
    }

    /// Waits until a token is available and returns it; `None` if the refresher stopped
    /// first.
    pub async fn wait_for_token(&self) -> Option<Secret> {
        let mut current = self.current.clone();
        loop {
            if let Some(token) = self.current() {
                return Some(token);
            }
            if current.changed().await.is_err() {
                return self.current();
            }
        }
    }
}

/// Keeps a token fresh in a background tokio task.
///
/// Dropping the refresher (or calling [`TokenRefresher::shutdown`]) stops the task, even in
/// the middle of a fetch; handles keep returning the last token until it expires.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use mcp_auth_core::refresh::{FetchedToken, RefreshConfig, TokenRefresher, TokenSource};
///
/// struct Upstream;
///
/// #[async_trait::async_trait]
/// impl TokenSource for Upstream {
///     type Error = std::io::Error;
///     async fn fetch(&self) -> Result<FetchedToken, std::io::Error> {
///         // A real source calls the token endpoint here.
///         Ok(FetchedToken::new("upstream-token", SystemTime::now() + Duration::from_secs(3600)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let refresher = TokenRefresher::spawn(Upstream, RefreshConfig::new())?;
/// let token = refresher.handle().wait_for_token().await;
/// assert!(token.is_some());
/// refresher.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TokenRefresher {
    handle: TokenHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl TokenRefresher {
    /// Starts refreshing tokens from `source` on the current tokio runtime, judging expiry
    /// with the system clock.
    pub fn spawn<T: TokenSource>(
        source: T,
        config: RefreshConfig,
    ) -> Result<Self, RefreshSetupError> {
        Self::spawn_with_clock(source, config, Arc::new(SystemClock))
    }

    /// Like [`TokenRefresher::spawn`] with an injected wall clock.
    pub fn spawn_with_clock<T: TokenSource>(
        source: T,
        config: RefreshConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RefreshSetupError> {
        config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| RefreshSetupError::NoRuntime)?;
        let (current_tx, current_rx) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            source,
            config,
            clock: Arc::clone(&clock),
            current: current_tx,
            counters: Arc::clone(&counters),
        };
        let task = runtime.spawn(worker.run(stop_rx));
        Ok(Self {
            handle: TokenHandle {
                current: current_rx,
                counters,
                clock,
            },
            stop,
            task,
        })
    }

    /// A reader of the current token.
    pub fn handle(&self) -> TokenHandle {
        self.handle.clone()
    }

    /// The current token; see [`TokenHandle::current`].
    pub fn current(&self) -> Option<Secret> {
        self.handle.current()
    }

    /// The counters.
    pub fn stats(&self) -> RefreshStats {
        self.handle.stats()
    }

    /// Stops the background task and waits for it to end.
    pub async fn shutdown(self) {
        drop(self.stop);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "token refresh task ended abnormally");
        }
    }
}

/// Whether the task was told to stop while it waited.
enum Waited<T> {
    Done(T),
    Stopped,
}

struct Worker<T> {
    source: T,
    config: RefreshConfig,
    clock: Arc<dyn Clock>,
    current: watch::Sender<Option<Current>>,
    counters: Arc<Counters>,
}

impl<T: TokenSource> Worker<T> {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        loop {
            let wait = self.time_until_due();
            if !wait.is_zero()
                && let Waited::Stopped = until_stopped(tokio::time::sleep(wait), &mut stop).await
            {
                return;
            }
            let mut retry = 0;
            loop {
                let kind = self.classify();
                let fetched = match until_stopped(self.source.fetch(), &mut stop).await {
                    Waited::Done(fetched) => fetched,
                    Waited::Stopped => return,
                };
                match self.accept(fetched, kind) {
                    Ok(()) => break,
                    Err(()) => {
                        self.counters
                            .failed_attempts
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                let delay = self.cap_at_emergency(self.config.retry_delay(retry));
                if retry >= self.config.max_retries {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        attempts = retry + 1,
                        next_cycle_in_secs = delay.as_secs(),
                        "token refresh cycle failed"
                    );
                }
                if let Waited::Stopped = until_stopped(tokio::time::sleep(delay), &mut stop).await {
                    return;
                }
                if retry >= self.config.max_retries {
                    break;
                }
                retry += 1;
            }
        }
    }

    /// Stores a fetched token, or reports why the attempt failed.
    fn accept(&self, fetched: Result<FetchedToken, T::Error>, kind: RefreshKind) -> Result<(), ()> {
        let now = self.clock.now();
        match fetched {
            Ok(fetched) if fetched.expires_at > now => {
                self.current.send_replace(Some(Current {
                    token: fetched.token,
                    fetched_at: now,
                    expires_at: fetched.expires_at,
                }));
                self.counters.success(kind);
                tracing::debug!(kind = kind.as_str(), "token refreshed");
                Ok(())
            }
            Ok(_) => {
                tracing::warn!(
                    kind = kind.as_str(),
                    "token source returned an expired token"
                );
                Err(())
            }
            Err(error) => {
                tracing::warn!(kind = kind.as_str(), %error, "token refresh attempt failed");
                Err(())
            }
        }
    }

    /// The proactive margin and emergency window for the current token, shrunk for
    /// short-lived tokens so a refresh never starts right after the previous one.
    fn windows(&self, current: &Current) -> (Duration, Duration) {
        let lifetime = current.lifetime();
        (
            self.config.margin.min(lifetime / 2),
            self.config.emergency_window.min(lifetime / 4),
        )
    }

    fn time_until_due(&self) -> Duration {
        let now = self.clock.now();
        match &*self.current.borrow() {
            None => Duration::ZERO,
            Some(current) => {
                let (margin, _) = self.windows(current);
                current.remaining(now).saturating_sub(margin)
            }
        }
    }

    fn classify(&self) -> RefreshKind {
        let now = self.clock.now();
        match &*self.current.borrow() {
            Some(current) if current.expires_at > now => {
                let (_, emergency) = self.windows(current);
                if current.remaining(now) <= emergency {
                    RefreshKind::Emergency
                } else {
                    RefreshKind::Proactive
                }
            }
            _ => RefreshKind::Initial,
        }
    }

    /// Shortens `delay` so that the task wakes when the emergency window opens, if it would
    /// otherwise sleep past that moment.
    fn cap_at_emergency(&self, delay: Duration) -> Duration {
        let now = self.clock.now();
        match &*self.current.borrow() {
            Some(current) => {
                let (_, emergency) = self.windows(current);
                let until_emergency = current.remaining(now).saturating_sub(emergency);
                if until_emergency.is_zero() {
                    delay
                } else {
                    delay.min(until_emergency)
                }
            }
            None => delay,
        }
    }
}

/// Runs `future` unless the stop signal arrives (or its sender is dropped) first.
async fn until_stopped<F: Future>(
    future: F,
    stop: &mut oneshot::Receiver<()>,
) -> Waited<F::Output> {
    tokio::select! {
        output = future => Waited::Done(output),
        _ = stop => Waited::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A wall clock that moves with tokio's (paused) time.
    #[derive(Debug)]
    struct TokioClock {
        base: SystemTime,
        start: tokio::time::Instant,
    }

    impl Clock for TokioClock {
        fn now(&self) -> SystemTime {
            self.base + self.start.elapsed()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("token endpoint unavailable")]
    struct Down;

    /// Issues tokens valid for `lifetime`; fails the calls whose numbers (0-based) are in
    /// `failing` (or all calls from `fail_from` on); records when each call happened.
    struct Scripted {
        clock: Arc<TokioClock>,
        lifetime: Duration,
        failing: Vec<usize>,
        fail_from: usize,
        calls: Arc<Mutex<Vec<u64>>>,
        count: AtomicUsize,
    }

    #[async_trait]
    impl TokenSource for Scripted {
        type Error = Down;
        async fn fetch(&self) -> Result<FetchedToken, Down> {
            let n = self.count.fetch_add(1, Ordering::SeqCst);
            self.calls
                .lock()
                .unwrap()
                .push(self.clock.start.elapsed().as_secs());
            if self.failing.contains(&n) || n >= self.fail_from {
                return Err(Down);
            }
            Ok(FetchedToken::new(
                format!("token-{n}"),
                self.clock.now() + self.lifetime,
            ))
        }
    }

    struct Setup {
        clock: Arc<TokioClock>,
        calls: Arc<Mutex<Vec<u64>>>,
    }

    fn setup() -> Setup {
        Setup {
            clock: Arc::new(TokioClock {
                base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                start: tokio::time::Instant::now(),
            }),
            calls: Arc::default(),
        }
    }

    impl Setup {
        fn source(&self, lifetime: Duration, failing: Vec<usize>, fail_from: usize) -> Scripted {
            Scripted {
                clock: Arc::clone(&self.clock),
                lifetime,
                failing,
                fail_from,
                calls: Arc::clone(&self.calls),
                count: AtomicUsize::new(0),
            }
        }

        fn calls(&self) -> Vec<u64> {
            self.calls.lock().unwrap().clone()
        }

        /// Starts a refresher on this setup's clock.
        fn spawn(&self, source: Scripted, config: RefreshConfig) -> TokenRefresher {
            TokenRefresher::spawn_with_clock(
                source,
                config,
                Arc::clone(&self.clock) as Arc<dyn Clock>,
            )
            .unwrap()
        }
    }

    async fn sleep_until_secs(setup: &Setup, secs: u64) {
        let target = setup.clock.start + Duration::from_secs(secs);
        tokio::time::sleep_until(target).await;
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn proactive_refresh_at_the_margin() {
        let s = setup();
        let refresher = s.spawn(s.source(HOUR, vec![], usize::MAX), RefreshConfig::new());
        let handle = refresher.handle();
        assert_eq!(handle.wait_for_token().await.unwrap().expose(), "token-0");

        sleep_until_secs(&s, 50 * 60 - 1).await;
        assert_eq!(s.calls(), vec![0]);
        assert_eq!(handle.current().unwrap().expose(), "token-0");

        sleep_until_secs(&s, 50 * 60 + 1).await;
        assert_eq!(s.calls(), vec![0, 3000]);
        assert_eq!(handle.current().unwrap().expose(), "token-1");
        assert_eq!(
            handle.stats(),
            RefreshStats {
                initial: 1,
                proactive: 1,
                ..RefreshStats::default()
            }
        );
        // The next refresh is 50 minutes after the last one.
        sleep_until_secs(&s, 6001).await;
        assert_eq!(s.calls(), vec![0, 3000, 6000]);
        assert_eq!(handle.stats().proactive, 2);
        refresher.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn failing_proactive_refresh_becomes_emergency() {
        let s = setup();
        // Calls 1..=4 fail (the proactive attempt at 50:00 and three retries); the retry
        // that would come at 58:30 is pulled forward to 55:00, where the window opens.
        let refresher = s.spawn(
            s.source(HOUR, vec![1, 2, 3, 4], usize::MAX),
            RefreshConfig::new().jitter(0.0),
        );
        sleep_until_secs(&s, 3400).await;
        assert_eq!(s.calls(), vec![0, 3000, 3030, 3090, 3210, 3300]);
        assert_eq!(refresher.current().unwrap().expose(), "token-5");
        assert_eq!(
            refresher.stats(),
            RefreshStats {
                initial: 1,
                emergency: 1,
                failed_attempts: 4,
                ..RefreshStats::default()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_retries_then_new_cycle() {
        let s = setup();
        // Margin 30 min and a 1 min emergency window on a 2 h token: the first proactive
        // attempt is at 5400 s and the window opens at 7140 s.
        let config = RefreshConfig::new()
            .margin(Duration::from_secs(30 * 60))
            .emergency_window(Duration::from_secs(60))
            .jitter(0.0);
        let refresher = s.spawn(s.source(2 * HOUR, vec![], 1), config);
        sleep_until_secs(&s, 7030).await;
        assert_eq!(
            s.calls(),
            vec![
                0, 5400, 5430, 5490, 5610, 5910, // cycle 1: 1 + 4 retries
                6210, 6240, 6300, 6420, 6720, // cycle 2 after the last delay
                7020, // cycle 3
            ]
        );
        let stats = refresher.stats();
        assert_eq!((stats.failed, stats.failed_attempts), (2, 11));
        // The old token is still served while it is valid.
        assert_eq!(refresher.current().unwrap().expose(), "token-0");

        // Cycle 3's retry at 7230 is pulled forward to 7140 (the emergency window); once
        // the token expires at 7200 nothing is served.
        sleep_until_secs(&s, 7199).await;
        assert_eq!(&s.calls()[11..], &[7020, 7050, 7110, 7140]);
        assert!(refresher.current().is_some());
        sleep_until_secs(&s, 7200).await;
        assert!(refresher.current().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_bounds() {
        let s = setup();
        let refresher = s.spawn(
            s.source(HOUR, vec![], 0),
            RefreshConfig::new().jitter(0.5).max_retries(3),
        );
        sleep_until_secs(&s, 30 + 60 + 120 + 1).await;
        let calls = s.calls();
        assert!(calls.len() >= 4, "{calls:?}");
        let gaps: Vec<u64> = calls.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, base) in gaps.iter().zip([30, 60, 120]) {
            assert!(
                (base / 2..=base).contains(gap),
                "gap {gap} for base {base}: {calls:?}"
            );
        }
        assert!(refresher.current().is_none());
        assert_eq!(refresher.stats().initial, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_refresh_at_half_life() {
        let s = setup();
        let refresher = s.spawn(
            s.source(Duration::from_secs(240), vec![], usize::MAX),
            RefreshConfig::new(),
        );
        sleep_until_secs(&s, 250).await;
        assert_eq!(s.calls(), vec![0, 120, 240]);
        assert_eq!(refresher.stats().proactive, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_drop_and_shutdown() {
        let s = setup();
        let refresher = s.spawn(s.source(HOUR, vec![], usize::MAX), RefreshConfig::new());
        let handle = refresher.handle();
        handle.wait_for_token().await.unwrap();
        drop(refresher);
        sleep_until_secs(&s, 2 * 3600).await;
        assert_eq!(s.calls(), vec![0]);
        assert!(handle.wait_for_token().await.is_none());

        let s = setup();
        let refresher = s.spawn(s.source(HOUR, vec![], usize::MAX), RefreshConfig::new());
        let handle = refresher.handle();
        handle.wait_for_token().await.unwrap();
        refresher.shutdown().await;
        sleep_until_secs(&s, 2 * 3600).await;
        assert_eq!(s.calls(), vec![0]);
    }

    #[test]
    fn config_validation_and_runtime() {
        let bad = [
            (
                RefreshConfig::new().emergency_window(Duration::from_secs(3600)),
                RefreshSetupError::EmergencyWindowExceedsMargin,
            ),
            (
                RefreshConfig::new().backoff([]),
                RefreshSetupError::InvalidBackoff,
            ),
            (
                RefreshConfig::new().backoff([Duration::ZERO]),
                RefreshSetupError::InvalidBackoff,
            ),
            (
                RefreshConfig::new().jitter(1.5),
                RefreshSetupError::InvalidJitter,
            ),
        ];
        for (config, error) in bad {
            assert_eq!(config.validate(), Err(error));
        }
        let s = setup();
        assert_eq!(
            TokenRefresher::spawn(s.source(HOUR, vec![], 0), RefreshConfig::new()).map(|_| ()),
            Err(RefreshSetupError::NoRuntime)
        );
    }

    #[test]
    fn token_never_in_debug() {
        let token = FetchedToken::new("top-secret", SystemTime::UNIX_EPOCH);
        assert!(!format!("{token:?}").contains("top-secret"));
    }
}
