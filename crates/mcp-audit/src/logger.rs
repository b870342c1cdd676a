//! `AuditLogger`: the non-blocking front end, the bounded queue and the batching writer.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::chain::ChainHead;
use crate::error::{BuildError, FlushError, RecordError, SinkError};
use crate::event::AuditEvent;
use crate::redact::Redactor;
use crate::sink::AuditSink;
use crate::spool::{Chunk, Overflow, Spool};

/// What [`AuditLogger::record`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Append the (redacted) event to a spill file in the spool directory; the writer picks
    /// it up when the queue has room. Nothing is lost, but the caller pays for a file append.
    /// The default.
    #[default]
    Spill,
    /// Wait up to the given time for room, then fail with [`RecordError::TimedOut`].
    Block(Duration),
    /// Drop the event, count it in [`AuditStats::dropped`] and return [`RecordError::Dropped`].
    Drop,
}

/// A snapshot of the logger's counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events waiting in the queue.
    pub queue_depth: usize,
    /// The queue's capacity.
    pub queue_capacity: usize,
    /// Events accepted by `record` / `try_record` (queued or spilled).
    pub accepted: u64,
    /// Events refused under [`OverflowPolicy::Drop`].
    pub dropped: u64,
    /// Events refused after waiting under [`OverflowPolicy::Block`].
    pub timed_out: u64,
    /// Events written to the overflow spill file.
    pub spilled: u64,
    /// Spilled events not yet taken back by the writer.
    pub overflow_pending: u64,
    /// Batches handed to the sinks.
    pub batches: u64,
    /// Events in those batches.
    pub events_written: u64,
    /// Size of the last batch.
    pub last_batch_size: u64,
    /// Size of the largest batch.
    pub max_batch_size: u64,
    /// Failed sink writes (each failed batch is spooled and retried).
    pub write_errors: u64,
    /// Events written to a sink from its spool after a failure.
    pub replayed: u64,
    /// Events waiting in the sinks' spools for a sink to come back.
    pub spool_pending: u64,
    /// Events that could be neither written nor spooled (sink down *and* spool unwritable).
    pub lost: u64,
    /// Sink write calls timed (direct writes and replays).
    pub writes_timed: u64,
    /// Duration of the last sink write.
    pub last_write_latency: Duration,
    /// Duration of the slowest sink write.
    pub max_write_latency: Duration,
    /// Total duration of all sink writes (divide by `writes_timed` for the mean).
    pub total_write_latency: Duration,
}

/// What a flush or shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Events kept in sink spools because a sink is still failing; they are on disk and
    /// will be written when the sink returns (after a restart too).
    pub spool_pending: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    timed_out: AtomicU64,
    spilled: AtomicU64,
    overflow_pending: AtomicU64,
    batches: AtomicU64,
    events_written: AtomicU64,
    last_batch_size: AtomicU64,
    max_batch_size: AtomicU64,
    write_errors: AtomicU64,
    replayed: AtomicU64,
    spool_pending: AtomicU64,
    lost: AtomicU64,
    writes_timed: AtomicU64,
    last_write_us: AtomicU64,
    max_write_us: AtomicU64,
    total_write_us: AtomicU64,
}

impl Counters {
    fn time_write(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.writes_timed.fetch_add(1, Ordering::Relaxed);
        self.last_write_us.store(us, Ordering::Relaxed);
        self.max_write_us.fetch_max(us, Ordering::Relaxed);
        self.total_write_us.fetch_add(us, Ordering::Relaxed);
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "events are nearly all the traffic: boxing them would cost an allocation per record"
)]
enum Msg {
    Event(AuditEvent),
    Flush(oneshot::Sender<FlushReport>),
    Shutdown(oneshot::Sender<FlushReport>),
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<Msg>,
    policy: OverflowPolicy,
    redactor: Redactor,
    overflow: Arc<Mutex<Overflow>>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Wakes a writer that holds part of a batch (see `Writer::run`).
    wake: Arc<Notify>,
    /// The queue depth from which a recorder wakes the writer.
    wake_depth: usize,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Event(_) => "Event",
            Msg::Flush(_) => "Flush",
            Msg::Shutdown(_) => "Shutdown",
        })
    }
}

/// Records audit events without blocking the request path and writes them in batches.
///
/// * [`try_record`](Self::try_record) puts the event on a bounded queue and returns; when the
///   queue is full the [`OverflowPolicy`] decides. [`record`](Self::record) is the same but
///   can wait under [`OverflowPolicy::Block`].
/// * A background task takes events from the queue, redacts them ([`Redactor`]), links them
///   into the hash chain and hands them to every sink in batches of
///   [`batch_size`](AuditLoggerBuilder::batch_size) events or after
///   [`max_batch_delay`](AuditLoggerBuilder::max_batch_delay), whichever comes first.
///   Recording does the least it can: the event is moved onto the queue, and the writer is
///   woken only when a batch's worth is waiting (or by the batch deadline), not per event.
///   One batch is written while the next is taken, redacted and linked; at most one write
///   is in flight to a sink, so sinks see batches in order, unless a sink allows more
///   ([`AuditSink::max_in_flight`]; the PostgreSQL store takes as many as its pool has
///   connections but one, between 2 and 8, so that commits and round trips overlap the next
///   batches' copies).
///   While every write a sink allows is still in flight, the batch in hand keeps growing
///   (up to [`batch_limit`](AuditLoggerBuilder::batch_limit)) instead of waiting at
///   `batch_size`: under a backlog, a slow sink gets fewer, larger writes, and the fixed cost
///   of each (a round trip, a commit) is spread over more events.
/// * When a sink fails, the batch goes to that sink's spool file (append-only, fsynced) and
///   every later batch follows it there, so order is kept; the spool is replayed with
///   exponential back-off until the sink accepts it.
/// * [`flush`](Self::flush) waits until everything recorded before it was written (or
///   spooled); [`shutdown`](Self::shutdown) drains the queue, flushes and stops the writer.
///
/// Cloning is cheap; all clones share the queue.
#[derive(Debug, Clone)]
pub struct AuditLogger {
    shared: Arc<Shared>,
}

/// Configures an [`AuditLogger`].
#[derive(Debug)]
pub struct AuditLoggerBuilder {
    spool_dir: PathBuf,
    sinks: Vec<Arc<dyn AuditSink>>,
    queue_capacity: usize,
    batch_size: usize,
    batch_limit: Option<usize>,
    max_batch_delay: Duration,
    overflow: OverflowPolicy,
    redactor: Redactor,
    stream: String,
    chain_head: Option<ChainHead>,
    retry_min: Duration,
    retry_max: Duration,
    spool_fsync: bool,
}

impl AuditLogger {
    /// A builder whose spill file, sink spools and chain head live in `spool_dir` (created if
    /// missing). One directory per logger.
    pub fn builder(spool_dir: impl Into<PathBuf>) -> AuditLoggerBuilder {
        AuditLoggerBuilder {
            spool_dir: spool_dir.into(),
            sinks: Vec::new(),
            queue_capacity: 65_536,
            batch_size: 500,
            batch_limit: None,
            max_batch_delay: Duration::from_millis(50),
            overflow: OverflowPolicy::Spill,
            redactor: Redactor::new(),
            stream: "default".to_owned(),
            chain_head: None,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            spool_fsync: true,
        }
    }

    /// Enqueues `event` without waiting. Under [`OverflowPolicy::Block`] a full queue returns
    /// [`RecordError::QueueFull`] (use [`record`](Self::record) to wait).
    pub fn try_record(&self, event: AuditEvent) -> Result<(), RecordError> {
        let c = &self.shared.counters;
        match self.shared.tx.try_send(Msg::Event(event)) {
            Ok(()) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                self.queued();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RecordError::Closed),
            Err(mpsc::error::TrySendError::Full(msg)) => match self.shared.policy {
                OverflowPolicy::Drop => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    Err(RecordError::Dropped)
                }
                OverflowPolicy::Block(_) => Err(RecordError::QueueFull),
                OverflowPolicy::Spill => match msg {
                    Msg::Event(event) => self.spill(event),
                    _ => Err(RecordError::QueueFull),
                },
            },
        }
    }

    /// Enqueues `event`; under [`OverflowPolicy::Block`] waits for room up to the configured
    /// time. Otherwise identical to [`try_record`](Self::try_record).
    pub async fn record(&self, event: AuditEvent) -> Result<(), RecordError> {
        let OverflowPolicy::Block(limit) = self.shared.policy else {
            return self.try_record(event);
        };
        let c = &self.shared.counters;
        match tokio::time::timeout(limit, self.shared.tx.send(Msg::Event(event))).await {
            Ok(Ok(())) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                self.queued();
                Ok(())
            }
            Ok(Err(_)) => Err(RecordError::Closed),
            Err(_) => {
                c.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(RecordError::TimedOut)
            }
        }
    }

    /// Wakes the writer once a batch's worth of events is queued.
    fn queued(&self) {
        let tx = &self.shared.tx;
        if tx.max_capacity() - tx.capacity() >= self.shared.wake_depth {
            self.shared.wake.notify_one();
        }
    }

    fn spill(&self, mut event: AuditEvent) -> Result<(), RecordError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(RecordError::Closed);
        }
        // Secrets never reach the disk: redact before spilling.
        self.shared.redactor.redact(&mut event);
        let mut overflow = self
            .shared
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        overflow.spill(&event).map_err(RecordError::Spill)?;
        let c = &self.shared.counters;
        c.spilled.fetch_add(1, Ordering::Relaxed);
        c.overflow_pending.fetch_add(1, Ordering::Relaxed);
        c.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every event recorded before this call was written to every sink or put in
    /// a sink's spool, tries once to replay spools, and asks the sinks to flush.
    pub async fn flush(&self) -> Result<FlushReport, FlushError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| FlushError::Closed)?;
        self.shared.wake.notify_one();
        rx.await.map_err(|_| FlushError::Closed)
    }

    /// Stops accepting events, writes everything already accepted (queue and spill file),
    /// tries once more to replay the spools, flushes the sinks and ends the writer task.
    /// Events still in a spool (sink down) stay on disk for the next start.
    pub async fn shutdown(&self) -> Result<FlushReport, FlushError> {
        self.shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Shutdown(tx))
            .await
            .map_err(|_| FlushError::Closed)?;
        self.shared.wake.notify_one();
        let report = rx.await.map_err(|_| FlushError::Closed)?;
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // The writer has answered; waiting for it to return is only tidiness.
            let _ = task.await;
        }
        Ok(report)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AuditStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let tx = &self.shared.tx;
        AuditStats {
            queue_depth: tx.max_capacity() - tx.capacity(),
            queue_capacity: tx.max_capacity(),
            accepted: get(&c.accepted),
            dropped: get(&c.dropped),
            timed_out: get(&c.timed_out),
            spilled: get(&c.spilled),
            overflow_pending: get(&c.overflow_pending),
            batches: get(&c.batches),
            events_written: get(&c.events_written),
            last_batch_size: get(&c.last_batch_size),
            max_batch_size: get(&c.max_batch_size),
            write_errors: get(&c.write_errors),
            replayed: get(&c.replayed),
            spool_pending: get(&c.spool_pending),
            lost: get(&c.lost),
            writes_timed: get(&c.writes_timed),
            last_write_latency: Duration::from_micros(get(&c.last_write_us)),
            max_write_latency: Duration::from_micros(get(&c.max_write_us)),
            total_write_latency: Duration::from_micros(get(&c.total_write_us)),
        }
    }
}

impl AuditLoggerBuilder {
    /// Adds a sink. Each sink gets its own spool, so one failing sink does not hold back or
    /// repeat writes to the others.
    pub fn sink(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Adds a shared sink.
    pub fn shared_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Sets the queue capacity (default 65 536 events).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the batch size at which a write starts when the sink can take one (default 500
    /// events).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// Sets the largest batch (default eight times [`batch_size`](Self::batch_size); never
    /// less than it). A batch grows past `batch_size` only while every write its sinks allow
    /// at once ([`AuditSink::max_in_flight`]) is still in flight. Set it to `batch_size` for
    /// batches that never grow, e.g. for a sink with a size limit per write.
    pub fn batch_limit(mut self, limit: usize) -> Self {
        self.batch_limit = Some(limit);
        self
    }

    /// Sets how long the first event of a batch may wait for the batch to fill (default 50 ms).
    pub fn max_batch_delay(mut self, delay: Duration) -> Self {
        self.max_batch_delay = delay;
        self
    }

    /// Sets the overflow policy (default [`OverflowPolicy::Spill`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Sets the redaction rules (default [`Redactor::new`]).
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Names the hash chain (default `default`; must be non-empty and free of NUL). Replicas
    /// that write to one store need distinct names, each with its own spool directory.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// Continues the chain after `head` (e.g. read from the store at start-up). Without it,
    /// the chain continues after the head saved in the spool directory, or starts at genesis.
    pub fn chain_head(mut self, head: ChainHead) -> Self {
        self.chain_head = Some(head);
        self
    }

    /// Sets the first and the longest wait between attempts to replay a failed sink's spool
    /// (defaults 100 ms and 30 s; the wait doubles after each failure).
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max;
        self
    }

    /// Whether sink spool appends are fsynced (default `true`).
    pub fn spool_fsync(mut self, fsync: bool) -> Self {
        self.spool_fsync = fsync;
        self
    }

    /// Opens the spool directory and starts the writer task (must run inside a tokio runtime).
    pub fn build(self) -> Result<AuditLogger, BuildError> {
        if self.sinks.is_empty() {
            return Err(BuildError::NoSink);
        }
        if self.queue_capacity == 0 || self.batch_size == 0 {
            return Err(BuildError::Invalid(
                "queue capacity and batch size must be positive",
            ));
        }
        if self.max_batch_delay.is_zero()
            || self.retry_min.is_zero()
            || self.retry_min > self.retry_max
        {
            return Err(BuildError::Invalid(
                "delays must be positive and retry_min <= retry_max",
            ));
        }
        // The stream name and the head hash are stored with every event: a NUL there would
        // make every PostgreSQL write fail.
        if self.stream.is_empty() || self.stream.contains('\0') {
            return Err(BuildError::Invalid(
                "the chain stream name must be non-empty and free of NUL",
            ));
        }
        if let Some(head) = &self.chain_head
            && (head.hash.len() != 64 || !head.hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(BuildError::Invalid(
                "the chain head hash must be 64 hex digits",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        fs::create_dir_all(&self.spool_dir)?;
        let counters = Arc::new(Counters::default());
        let mut lanes = Vec::with_capacity(self.sinks.len());
        let mut names = std::collections::HashSet::new();
        for sink in self.sinks {
            let file = file_name(sink.name());
            if !names.insert(file.clone()) {
                return Err(BuildError::DuplicateSinkName(sink.name().to_owned()));
            }
            let spool = Spool::open(
                self.spool_dir.join(format!("spool-{file}.jsonl")),
                self.spool_fsync,
            )?;
            counters
                .spool_pending
                .fetch_add(spool.pending(), Ordering::Relaxed);
            lanes.push(Lane {
                sink,
                pending: spool.pending(),
                spool: Arc::new(Mutex::new(spool)),
                retry_at: Some(Instant::now()),
                backoff: self.retry_min,
            });
        }
        let overflow = Overflow::open(&self.spool_dir)?;
        counters
            .overflow_pending
            .store(overflow.pending(), Ordering::Relaxed);
        let overflow = Arc::new(Mutex::new(overflow));
        let head_path = self
            .spool_dir
            .join(format!("chain-{}.head", file_name(&self.stream)));
        let head = match self.chain_head {
            Some(head) => ChainHead {
                stream: self.stream.clone(),
                ..head
            },
            None => read_head(&head_path, &self.stream)?
                .unwrap_or_else(|| ChainHead::genesis(self.stream.clone())),
        };
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let wake = Arc::new(Notify::new());
        let writer = Writer {
            lanes,
            overflow: Arc::clone(&overflow),
            counters: Arc::clone(&counters),
            redactor: self.redactor.clone(),
            head,
            head_path,
            scratch: String::with_capacity(1024),
            buf: Vec::with_capacity(self.batch_size),
            first_at: None,
            batch_size: self.batch_size,
            batch_limit: self
                .batch_limit
                .unwrap_or(self.batch_size.saturating_mul(8))
                .max(self.batch_size),
            max_delay: self.max_batch_delay,
            retry_min: self.retry_min,
            retry_max: self.retry_max,
            queue_capacity: self.queue_capacity,
            in_flight: VecDeque::new(),
            wake: Arc::clone(&wake),
        };
        let task = runtime.spawn(writer.run(rx));
        Ok(AuditLogger {
            shared: Arc::new(Shared {
                tx,
                policy: self.overflow,
                redactor: self.redactor,
                overflow,
                counters,
                closed: AtomicBool::new(false),
                task: Mutex::new(Some(task)),
                wake,
                wake_depth: self.batch_size.min((self.queue_capacity / 2).max(1)),
            }),
        })
    }
}

/// A name made safe for a file name.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_head(path: &Path, stream: &str) -> io::Result<Option<ChainHead>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = text.split_whitespace();
    match (parts.next().and_then(|s| s.parse().ok()), parts.next()) {
        (Some(seq), Some(hash)) if hash.len() == 64 => Ok(Some(ChainHead {
            stream: stream.to_owned(),
            seq,
            hash: hash.to_owned(),
        })),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "corrupt audit chain head file",
        )),
    }
}

async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// One sink and its spool.
#[derive(Debug)]
struct Lane {
    sink: Arc<dyn AuditSink>,
    spool: Arc<Mutex<Spool>>,
    pending: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// The background task's state.
#[derive(Debug)]
struct Writer {
    lanes: Vec<Lane>,
    overflow: Arc<Mutex<Overflow>>,
    counters: Arc<Counters>,
    redactor: Redactor,
    head: ChainHead,
    head_path: PathBuf,
    /// Reused for the canonical form of each event while linking.
    scratch: String,
    buf: Vec<AuditEvent>,
    first_at: Option<Instant>,
    batch_size: usize,
    batch_limit: usize,
    max_delay: Duration,
    retry_min: Duration,
    retry_max: Duration,
    queue_capacity: usize,
    /// Writes started and not yet settled, oldest first: at most the smallest
    /// [`AuditSink::max_in_flight`] of the sinks each write goes to.
    in_flight: VecDeque<InFlight>,
    wake: Arc<Notify>,
}

/// A batch being written in the background and the lanes it is being written to.
#[derive(Debug)]
struct InFlight {
    batch: Arc<Vec<AuditEvent>>,
    lanes: Vec<usize>,
    task: JoinHandle<Vec<Result<(), SinkError>>>,
    /// Set when every sink of the write has returned, just before the task wakes the
    /// writer (the task itself ends a moment later; a task that panicked ends without it).
    done: Arc<AtomicBool>,
    /// How many writes may be in flight while this one is (the smallest `max_in_flight` of
    /// its sinks).
    depth: usize,
}

/// How many spool chunks one replay round may write before the writer looks at its queue.
const REPLAY_CHUNKS_PER_ROUND: usize = 16;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(self.batch_size);
        let wake = Arc::clone(&self.wake);
        loop {
            if self.counters.overflow_pending.load(Ordering::Relaxed) > 0
                && rx.len() < self.queue_capacity / 2
            {
                self.drain_overflow_chunk().await;
            }
            let deadline = self.next_deadline();
            // With part of a batch in hand the writer does not listen to the queue, where
            // every event would wake it: recorders signal `wake` once a batch's worth is
            // queued, `flush` and `shutdown` signal it too, and the batch deadline covers the
            // rest. An idle writer listens, so that the first event starts the batch clock.
            let partial = !self.buf.is_empty();
            let mut timer = false;
            let mut disconnected = false;
            tokio::select! {
                n = rx.recv_many(&mut msgs, self.batch_size), if !partial => disconnected = n == 0,
                () = wake.notified(), if partial => {}
                () = sleep_until(deadline), if deadline.is_some() => timer = true,
            }
            if partial {
                let room = self.batch_limit.saturating_sub(self.buf.len()).max(1);
                while msgs.len() < room {
                    match rx.try_recv() {
                        Ok(msg) => msgs.push(msg),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
            }
            if self.handle(&mut msgs, &mut rx).await {
                return;
            }
            if disconnected {
                // Every logger handle was dropped without a shutdown.
                self.finish().await;
                return;
            }
            if timer {
                self.on_timer().await;
            } else if self.buf.len() >= self.batch_size && self.can_write_now() {
                // A grown batch, once a write in flight has finished (its task wakes us).
                self.write_buf().await;
            }
        }
    }

    /// Whether a batch could start now without waiting for a write in flight: the writes
    /// [`write_buf`](Self::write_buf) would settle first have all finished.
    fn can_write_now(&self) -> bool {
        let allowed = self.allowed_in_flight(self.next_depth().saturating_sub(1));
        let excess = self.in_flight.len().saturating_sub(allowed);
        self.in_flight
            .iter()
            .take(excess)
            .all(|f| f.done.load(Ordering::Acquire) || f.task.is_finished())
    }

    /// How many writes may be in flight alongside the next batch: the smallest
    /// [`AuditSink::max_in_flight`] of the sinks it goes to directly.
    fn next_depth(&self) -> usize {
        self.lanes
            .iter()
            .filter(|l| l.pending == 0)
            .map(|l| l.sink.max_in_flight().max(1))
            .min()
            .unwrap_or(1)
    }

    /// Handles the messages taken from the queue; returns `true` when the writer has shut
    /// down.
    async fn handle(&mut self, msgs: &mut Vec<Msg>, rx: &mut mpsc::Receiver<Msg>) -> bool {
        let mut shutdown = None;
        for msg in msgs.drain(..) {
            match msg {
                Msg::Event(event) => self.push(event).await,
                Msg::Flush(reply) => {
                    let report = self.flush_all().await;
                    let _ = reply.send(report);
                }
                // Events after the shutdown request in this batch were accepted too: keep
                // handling them before closing.
                Msg::Shutdown(reply) => shutdown = Some(reply),
            }
        }
        let Some(reply) = shutdown else {
            return false;
        };
        rx.close();
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Event(event) => self.push(event).await,
                Msg::Flush(r) | Msg::Shutdown(r) => {
                    let _ = r.send(FlushReport {
                        spool_pending: self.spool_pending(),
                    });
                }
            }
        }
        let report = self.finish().await;
        let _ = reply.send(report);
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        let batch = self.first_at.map(|t| t + self.max_delay);
        let retry = self
            .lanes
            .iter()
            .filter(|l| l.pending > 0)
            .filter_map(|l| l.retry_at)
            .min();
        let overflow = (self.counters.overflow_pending.load(Ordering::Relaxed) > 0)
            .then(|| Instant::now() + self.max_delay);
        [batch, retry, overflow].into_iter().flatten().min()
    }

    async fn on_timer(&mut self) {
        if self
            .first_at
            .is_some_and(|t| t + self.max_delay <= Instant::now())
        {
            self.write_buf().await;
        }
        self.replay_all(false).await;
    }

    async fn push(&mut self, mut event: AuditEvent) {
        self.redactor.redact(&mut event);
        if self.buf.is_empty() {
            self.first_at = Some(Instant::now());
        }
        self.buf.push(event);
        if self.buf.len() >= self.batch_limit
            || (self.buf.len() >= self.batch_size && self.can_write_now())
        {
            self.write_buf().await;
        }
    }

    async fn drain_overflow_chunk(&mut self) {
        let overflow = Arc::clone(&self.overflow);
        let max = self.batch_size;
        let chunk = blocking(move || {
            overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_chunk(max)
        })
        .await;
        let chunk: Chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "mcp_audit", error = %e, "cannot read the audit overflow file");
                return;
            }
        };
        for event in chunk.events.iter().cloned() {
            self.push(event).await;
        }
        // The events are written (or spooled) before the spill file lets go of them.
        self.write_buf().await;
        self.settle().await;
        let overflow = Arc::clone(&self.overflow);
        let lines = chunk.lines;
        let done = blocking(move || {
            overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .consume(&chunk)
        })
        .await;
        match done {
            Ok(()) => {
                let _ = self.counters.overflow_pending.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |p| Some(p.saturating_sub(lines)),
                );
            }
            Err(e) => {
                tracing::error!(target: "mcp_audit", error = %e, "cannot update the audit overflow file")
            }
        }
    }

    /// Links the buffered events into the chain and starts writing them. The write runs in
    /// its own task while the writer goes on taking and linking the next batch; at most the
    /// sinks' [`AuditSink::max_in_flight`] writes are in flight, and the oldest are settled
    /// before the next batch goes to any sink or spool beyond that.
    async fn write_buf(&mut self) {
        self.first_at = None;
        if self.buf.is_empty() {
            return;
        }
        let mut batch = std::mem::replace(&mut self.buf, Vec::with_capacity(self.batch_size));
        for event in &mut batch {
            self.head.link_with(event, &mut self.scratch);
        }
        let head_path = self.head_path.clone();
        let head_line = format!("{} {}\n", self.head.seq, self.head.hash);
        if let Err(e) = blocking(move || fs::write(head_path, head_line)).await {
            tracing::warn!(target: "mcp_audit", error = %e, "cannot save the audit chain head");
        }
        let n = batch.len() as u64;
        let c = Arc::clone(&self.counters);
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.last_batch_size.store(n, Ordering::Relaxed);
        c.max_batch_size.fetch_max(n, Ordering::Relaxed);
        // An `Arc<Vec<_>>` shares the batch without copying it (`Arc<[_]>` would move every
        // event into a new allocation).
        let batch = Arc::new(batch);
        // Sinks that allow it have more than one batch in flight; the others wait for theirs.
        let depth = self.next_depth();
        self.settle_to(depth.saturating_sub(1)).await;
        // Sinks with a backlog get the batch behind it in their spool; the others get it
        // directly, in the background.
        let mut direct = Vec::with_capacity(self.lanes.len());
        for i in 0..self.lanes.len() {
            if self.lanes[i].pending == 0 {
                direct.push(i);
            } else {
                // Whatever is still in flight to this sink settles (and is spooled, if it
                // fails) before this batch is spooled behind it.
                self.settle().await;
                self.spool_batch(i, &batch).await;
            }
        }
        if direct.is_empty() {
            c.events_written.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let sinks: Vec<_> = direct
            .iter()
            .map(|&i| Arc::clone(&self.lanes[i].sink))
            .collect();
        let counters = Arc::clone(&self.counters);
        let events = Arc::clone(&batch);
        let wake = Arc::clone(&self.wake);
        let done = Arc::new(AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let task = tokio::spawn(async move {
            let mut results = Vec::with_capacity(sinks.len());
            for sink in sinks {
                let started = Instant::now();
                let result = sink.write_batch(&events).await;
                counters.time_write(started.elapsed());
                results.push(result);
            }
            // A batch grown while this write was in flight can go now.
            finished.store(true, Ordering::Release);
            wake.notify_one();
            results
        });
        self.in_flight.push_back(InFlight {
            batch,
            lanes: direct,
            task,
            done,
            depth,
        });
    }

    /// Waits for every write in flight.
    async fn settle(&mut self) {
        self.settle_to(0).await;
    }

    /// Waits for the oldest writes in flight until at most `left` are, or fewer if one of
    /// those left allows fewer. A failed batch is spooled for every sink that failed it.
    async fn settle_to(&mut self, left: usize) {
        while self.in_flight.len() > self.allowed_in_flight(left) {
            if let Some(write) = self.in_flight.pop_front() {
                self.settle_one(write).await;
            }
        }
    }

    /// How many writes may stay in flight: `left`, or fewer if a write in flight allows
    /// fewer beside it.
    fn allowed_in_flight(&self, left: usize) -> usize {
        self.in_flight
            .iter()
            .map(|f| f.depth.saturating_sub(1))
            .fold(left, usize::min)
    }

    async fn settle_one(&mut self, write: InFlight) {
        let InFlight {
            batch, lanes, task, ..
        } = write;
        let results = match task.await {
            Ok(results) => results,
            Err(e) => {
                // A sink panicked (or the runtime is going down): the batch counts as not
                // written for every sink of this write.
                tracing::error!(target: "mcp_audit", error = %e, "audit sink write task failed");
                Vec::new()
            }
        };
        let mut results = results.into_iter();
        for i in lanes {
            let error = match results.next() {
                Some(Ok(())) => continue,
                Some(Err(e)) => e.to_string(),
                None => "the write task ended without a result".to_owned(),
            };
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            let lane = &mut self.lanes[i];
            tracing::warn!(target: "mcp_audit", sink = lane.sink.name(), error = %error, events = batch.len(), "audit sink write failed; spooling");
            lane.backoff = self.retry_min;
            lane.retry_at = Some(Instant::now() + self.retry_min);
            self.spool_batch(i, &batch).await;
        }
        self.counters
            .events_written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Appends `batch` to lane `i`'s spool.
    async fn spool_batch(&mut self, i: usize, batch: &Arc<Vec<AuditEvent>>) {
        let counters = Arc::clone(&self.counters);
        let lane = &mut self.lanes[i];
        let spool = Arc::clone(&lane.spool);
        let events = Arc::clone(batch);
        let n = events.len() as u64;
        match blocking(move || {
            spool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(&events)
        })
        .await
        {
            Ok(()) => {
                lane.pending += n;
                counters.spool_pending.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                counters.lost.fetch_add(n, Ordering::Relaxed);
                tracing::error!(target: "mcp_audit", sink = lane.sink.name(), error = %e, events = n, "audit events lost: sink failed and spool unwritable");
            }
        }
    }

    /// Replays due spools; with `force`, also those waiting for their back-off.
    async fn replay_all(&mut self, force: bool) {
        for i in 0..self.lanes.len() {
            self.replay(i, force).await;
        }
    }

    async fn replay(&mut self, i: usize, force: bool) {
        let now = Instant::now();
        let batch_size = self.batch_size;
        let (retry_min, retry_max) = (self.retry_min, self.retry_max);
        let counters = Arc::clone(&self.counters);
        let lane = &mut self.lanes[i];
        if lane.pending == 0 || (!force && lane.retry_at.is_some_and(|t| t > now)) {
            return;
        }
        for _ in 0..REPLAY_CHUNKS_PER_ROUND {
            let spool = Arc::clone(&lane.spool);
            let chunk = match blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .read_chunk(batch_size)
            })
            .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(target: "mcp_audit", sink = lane.sink.name(), error = %e, "cannot read audit spool");
                    lane.retry_at = Some(Instant::now() + lane.backoff);
                    return;
                }
            };
            if !chunk.events.is_empty() {
                let started = Instant::now();
                let result = lane.sink.write_batch(&chunk.events).await;
                counters.time_write(started.elapsed());
                if let Err(e) = result {
                    counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    lane.backoff = (lane.backoff * 2).clamp(retry_min, retry_max);
                    lane.retry_at = Some(Instant::now() + lane.backoff);
                    tracing::debug!(target: "mcp_audit", sink = lane.sink.name(), error = %e, retry_in = ?lane.backoff, "audit sink still failing");
                    return;
                }
            }
            let spool = Arc::clone(&lane.spool);
            let written = chunk.events.len() as u64;
            // A spool that claims events but yields no line is reset rather than retried forever.
            let (bytes, lines) = (
                chunk.bytes,
                if chunk.lines == 0 {
                    u64::MAX
                } else {
                    chunk.lines
                },
            );
            let pending = blocking(move || {
                let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
                spool.consume(bytes, lines)?;
                Ok(spool.pending())
            })
            .await;
            let pending = match pending {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(target: "mcp_audit", sink = lane.sink.name(), error = %e, "cannot update audit spool");
                    lane.retry_at = Some(Instant::now() + lane.backoff);
                    return;
                }
            };
            counters.replayed.fetch_add(written, Ordering::Relaxed);
            let _ =
                counters
                    .spool_pending
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                        Some(p.saturating_sub(lane.pending - pending))
                    });
            lane.pending = pending;
            if pending == 0 {
                break;
            }
        }
        if lane.pending == 0 {
            lane.backoff = retry_min;
            tracing::info!(target: "mcp_audit", sink = lane.sink.name(), "audit spool replayed");
        }
        // More to do: come back as soon as the queue has been looked at.
        lane.retry_at = Some(Instant::now());
    }

    fn spool_pending(&self) -> u64 {
        self.lanes.iter().map(|l| l.pending).sum()
    }

    async fn flush_all(&mut self) -> FlushReport {
        while self.counters.overflow_pending.load(Ordering::Relaxed) > 0 {
            let before = self.counters.overflow_pending.load(Ordering::Relaxed);
            self.drain_overflow_chunk().await;
            if self.counters.overflow_pending.load(Ordering::Relaxed) >= before {
                break;
            }
        }
        self.write_buf().await;
        self.settle().await;
        self.replay_all(true).await;
        // A forced replay writes a bounded number of chunks; keep going while it progresses.
        loop {
            let before = self.spool_pending();
            if before == 0 {
                break;
            }
            self.replay_all(true).await;
            if self.spool_pending() >= before {
                break;
            }
        }
        for lane in &self.lanes {
            if lane.pending == 0
                && let Err(e) = lane.sink.flush().await
            {
                tracing::warn!(target: "mcp_audit", sink = lane.sink.name(), error = %e, "audit sink flush failed");
            }
        }
        FlushReport {
            spool_pending: self.spool_pending(),
        }
    }

    async fn finish(&mut self) -> FlushReport {
        let report = self.flush_all().await;
        if report.spool_pending > 0 {
            tracing::warn!(target: "mcp_audit", events = report.spool_pending, "audit events remain spooled at shutdown; they are replayed at the next start");
        }
        report
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}
