//! The logger without a database: batching, flush, shutdown, overflow policies, spool replay,
//! redaction, and the JSONL and tracing sinks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers outside #[test] functions fail loudly too"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MemorySink, TempDir};
use mcp_audit::chain::{VerifyOptions, verify};
use mcp_audit::{
    ArgumentsPolicy, AuditEvent, AuditLogger, AuditLoggerBuilder, AuditSink, BuildError, Category,
    FsyncPolicy, JsonlSink, JsonlSinkConfig, OverflowPolicy, REDACTED, RecordError, Redactor,
    Timestamp, TracingSink,
};
use serde_json::json;

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(Category::ToolCall)
        .subject(format!("user-{i}"))
        .tenant("acme")
        .tool("search")
}

fn assert_exactly_once(recorded: &[AuditEvent], stored: &[AuditEvent]) {
    let mut want: Vec<_> = recorded.iter().map(|e| e.id).collect();
    let mut got: Vec<_> = stored.iter().map(|e| e.id).collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "count");
    assert_eq!(got, want, "ids");
}

/// A logger on `sink` with batches of 10 and no batch deadline to speak of: only the batch
/// size, the limit and the writes in flight decide when batches go.
fn size_driven(dir: &TempDir, sink: &Arc<MemorySink>) -> AuditLoggerBuilder {
    AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .batch_size(10)
        .max_batch_delay(Duration::from_secs(3600))
}

/// Every recorded event stored once, in chain order from the genesis (seq 1, 2, ...).
fn assert_stored_in_chain_order(recorded: &[AuditEvent], stored: &[AuditEvent]) {
    assert_exactly_once(recorded, stored);
    let seqs: Vec<u64> = stored
        .iter()
        .map(|e| e.chain.as_ref().unwrap().seq)
        .collect();
    let expected: Vec<u64> = (1..=recorded.len() as u64).collect();
    assert_eq!(seqs, expected, "stored in chain order");
}

#[tokio::test]
async fn shutdown_persists_events_recorded_just_before_it() {
    let dir = TempDir::new("shutdown");
    let sink = JsonlSink::new(JsonlSinkConfig::new(dir.path("log"))).unwrap();
    let logger = AuditLogger::builder(dir.path("spool"))
        .sink(sink)
        .max_batch_delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..2_345).map(event).collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    let report = logger.shutdown().await.unwrap();
    assert_eq!(report.spool_pending, 0);
    assert!(matches!(
        logger.try_record(event(0)),
        Err(RecordError::Closed)
    ));

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path("log")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        stored.extend(
            text.lines()
                .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap()),
        );
    }
    assert_exactly_once(&recorded, &stored);
    stored.sort_by_key(|e| e.chain.as_ref().unwrap().seq);
    assert!(verify(stored, VerifyOptions::from_genesis("default")).is_intact());
}

#[tokio::test]
async fn batches_respect_the_size_limit_and_the_time_limit() {
    let dir = TempDir::new("batch");
    let sink = Arc::new(MemorySink::new("mem"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .batch_size(10)
        .batch_limit(10)
        .max_batch_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    for i in 0..35 {
        logger.try_record(event(i)).unwrap();
    }
    logger.flush().await.unwrap();
    let sizes: Vec<usize> = sink.batches.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 35);
    assert!(sizes.iter().all(|s| *s <= 10), "{sizes:?}");
    let stats = logger.stats();
    assert!(stats.max_batch_size <= 10);
    assert_eq!(stats.events_written, 35);
    assert!(stats.writes_timed >= 4);

    // Three events, no flush: the time limit alone writes them.
    let before = sink.batches.lock().unwrap().len();
    for i in 0..3 {
        logger.try_record(event(i)).unwrap();
    }
    for _ in 0..500 {
        if sink.batches.lock().unwrap().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.batches.lock().unwrap()[before].len(), 3);
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn drop_policy_counts_and_refuses_when_full() {
    let dir = TempDir::new("drop");
    let sink = Arc::new(MemorySink::gated("mem"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .queue_capacity(4)
        .batch_size(2)
        .overflow(OverflowPolicy::Drop)
        .build()
        .unwrap();
    let mut accepted = Vec::new();
    let mut dropped = 0;
    for i in 0..100 {
        let e = event(i);
        match logger.try_record(e.clone()) {
            Ok(()) => accepted.push(e),
            Err(RecordError::Dropped) => dropped += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(dropped > 0);
    assert_eq!(logger.stats().dropped, dropped);
    sink.open_gate();
    logger.shutdown().await.unwrap();
    assert_exactly_once(&accepted, &sink.events());
}

#[tokio::test]
async fn spill_policy_accepts_everything_and_loses_nothing() {
    let dir = TempDir::new("spill");
    let sink = Arc::new(MemorySink::gated("mem"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .queue_capacity(4)
        .batch_size(3)
        .redactor(Redactor::new().arguments(ArgumentsPolicy::Redacted))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..200)
        .map(|i| event(i).arguments(json!({"password": "hunter2", "n": i})))
        .collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    let stats = logger.stats();
    assert!(stats.spilled > 0);
    assert_eq!(stats.accepted, 200);
    // Spilled events are redacted before they touch the disk.
    let spill = std::fs::read_to_string(dir.path("spool").join("overflow.jsonl")).unwrap();
    assert!(!spill.contains("hunter2"));
    sink.open_gate();
    logger.shutdown().await.unwrap();
    let stored = sink.events();
    assert_exactly_once(&recorded, &stored);
    assert!(
        stored
            .iter()
            .all(|e| e.action.arguments.as_ref().unwrap()["password"] == REDACTED)
    );
    assert_eq!(logger.stats().overflow_pending, 0);
    let mut chain = stored;
    chain.sort_by_key(|e| e.chain.as_ref().unwrap().seq);
    assert!(verify(chain, VerifyOptions::from_genesis("default")).is_intact());
}

#[tokio::test]
async fn block_policy_waits_then_times_out() {
    let dir = TempDir::new("block");
    let sink = Arc::new(MemorySink::gated("mem"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .queue_capacity(2)
        .batch_size(1)
        .batch_limit(1)
        .overflow(OverflowPolicy::Block(Duration::from_millis(20)))
        .build()
        .unwrap();
    let mut accepted = Vec::new();
    let mut timed_out = 0;
    for i in 0..10 {
        let e = event(i);
        match logger.record(e.clone()).await {
            Ok(()) => accepted.push(e),
            Err(RecordError::TimedOut) => timed_out += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(timed_out > 0);
    assert!(matches!(
        logger.try_record(event(99)),
        Err(RecordError::QueueFull)
    ));
    assert_eq!(logger.stats().timed_out, timed_out);
    sink.open_gate();
    logger.shutdown().await.unwrap();
    assert_exactly_once(&accepted, &sink.events());
}

#[tokio::test]
async fn failed_sink_is_spooled_and_replayed_in_order_across_a_restart() {
    let dir = TempDir::new("replay");
    let down = Arc::new(MemorySink::new("db"));
    let healthy = Arc::new(MemorySink::new("file"));
    down.set_failing(true);
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(down.clone())
        .shared_sink(healthy.clone())
        .batch_size(7)
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..100).map(event).collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    let report = logger.shutdown().await.unwrap();
    assert_eq!(report.spool_pending, 100);
    assert!(logger.stats().write_errors > 0);
    // The healthy sink was not held back and saw each event once.
    assert_exactly_once(&recorded, &healthy.events());

    // Restart with the database back: the spool is replayed and the chain continues.
    let back = Arc::new(MemorySink::new("db"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(back.clone())
        .build()
        .unwrap();
    let more: Vec<_> = (100..120).map(event).collect();
    for e in &more {
        logger.try_record(e.clone()).unwrap();
    }
    let report = logger.shutdown().await.unwrap();
    assert_eq!(report.spool_pending, 0);
    // New events queue behind the old spool to keep the order, so all 120 come from it.
    assert_eq!(logger.stats().replayed, 120);
    let stored = back.events();
    let all: Vec<_> = recorded.iter().chain(&more).cloned().collect();
    // Replayed in order, and the chain continued across the restart.
    assert_stored_in_chain_order(&all, &stored);
    assert!(verify(stored, VerifyOptions::from_genesis("default")).is_intact());
}

#[tokio::test]
async fn sink_outage_during_traffic_recovers_without_loss() {
    let dir = TempDir::new("outage");
    let sink = Arc::new(MemorySink::new("db"));
    let logger = AuditLogger::builder(dir.path("spool"))
        .shared_sink(sink.clone())
        .batch_size(16)
        .max_batch_delay(Duration::from_millis(2))
        .retry_backoff(Duration::from_millis(2), Duration::from_millis(10))
        .build()
        .unwrap();
    let mut recorded = Vec::new();
    for i in 0..600 {
        if i == 200 {
            sink.set_failing(true);
        }
        if i == 400 {
            sink.set_failing(false);
        }
        let e = event(i);
        logger.try_record(e.clone()).unwrap();
        recorded.push(e);
        if i % 50 == 0 {
            logger.flush().await.unwrap();
        }
    }
    let report = logger.flush().await.unwrap();
    assert_eq!(report.spool_pending, 0);
    assert!(logger.stats().replayed > 0);
    let stored = sink.events();
    assert_exactly_once(&recorded, &stored);
    assert!(verify(stored, VerifyOptions::from_genesis("default")).is_intact());
    logger.shutdown().await.unwrap();
}

/// Waits (bounded) until `cond` holds for the logger's stats.
async fn wait_for(logger: &AuditLogger, what: &str, cond: impl Fn(&mcp_audit::AuditStats) -> bool) {
    for _ in 0..10_000 {
        if cond(&logger.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}: {:?}", logger.stats());
}

#[tokio::test]
async fn next_batch_is_linked_while_one_is_written_and_a_failed_write_keeps_the_order() {
    let dir = TempDir::new("pipeline");
    let sink = Arc::new(MemorySink::gated("db"));
    let logger = size_driven(&dir, &sink)
        .batch_limit(10)
        .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..30).map(event).collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    // The first write hangs in the sink; the writer has already linked the second batch.
    wait_for(&logger, "a second batch", |s| s.batches >= 2).await;
    assert!(sink.events().is_empty());
    // The write in flight fails: its batch is spooled, and the later batches go behind it
    // into the spool instead of reaching the sink first.
    sink.set_failing(true);
    sink.open_gate();
    wait_for(&logger, "all batches spooled", |s| s.spool_pending == 30).await;
    assert_eq!(logger.stats().write_errors, 1);
    assert!(sink.events().is_empty());
    sink.set_failing(false);
    let report = logger.flush().await.unwrap();
    assert_eq!(report.spool_pending, 0);
    assert_stored_in_chain_order(&recorded, &sink.events());
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_grows_to_its_limit_while_the_write_in_flight_is_slow() {
    let dir = TempDir::new("grow");
    let sink = Arc::new(MemorySink::gated("db"));
    let logger = size_driven(&dir, &sink).build().unwrap();
    let recorded: Vec<_> = (0..100).map(event).collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    // The first batch (10) hangs in the sink; the next one grows to the default limit
    // (8 x 10) instead of stopping at 10, and waits there for the write in flight.
    wait_for(&logger, "a second batch", |s| s.batches >= 2).await;
    assert_eq!(logger.stats().max_batch_size, 80);
    assert!(sink.events().is_empty());
    sink.open_gate();
    logger.flush().await.unwrap();
    let sizes: Vec<usize> = sink.batches.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 80, 10]);
    assert_stored_in_chain_order(&recorded, &sink.events());
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_grown_batch_goes_as_soon_as_the_write_in_flight_ends() {
    let dir = TempDir::new("grown");
    let sink = Arc::new(MemorySink::gated("db"));
    let logger = size_driven(&dir, &sink).build().unwrap();
    for i in 0..25 {
        logger.try_record(event(i)).unwrap();
    }
    // 10 in flight, 15 in hand: past the batch size, under the limit, and no deadline soon.
    wait_for(&logger, "the first batch", |s| s.batches >= 1).await;
    sink.open_gate();
    // No flush: the end of the first write alone starts the second.
    for _ in 0..10_000 {
        if sink.events().len() == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sizes: Vec<usize> = sink.batches.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 15]);
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sink_allowing_two_writes_in_flight_gets_two_and_loses_nothing_when_they_fail() {
    let dir = TempDir::new("in-flight");
    let sink = Arc::new(MemorySink::gated("db").allowing_in_flight(2));
    let logger = size_driven(&dir, &sink)
        .batch_limit(10)
        .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
        .unwrap();
    let recorded: Vec<_> = (0..40).map(event).collect();
    for e in &recorded {
        logger.try_record(e.clone()).unwrap();
    }
    // The first write hangs in the sink; the second starts without waiting for it, and the
    // writer, with the third batch linked, waits for the first.
    wait_for(&logger, "a third batch", |s| s.batches >= 3).await;
    for _ in 0..10_000 {
        if sink.running() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(sink.running(), 2);
    // Both writes in flight fail: their batches are spooled, the later ones behind them.
    sink.set_failing(true);
    sink.open_gate();
    wait_for(&logger, "all batches spooled", |s| s.spool_pending == 40).await;
    assert_eq!(logger.stats().write_errors, 2);
    sink.set_failing(false);
    let report = logger.flush().await.unwrap();
    assert_eq!(report.spool_pending, 0);
    let mut stored = sink.events();
    assert_exactly_once(&recorded, &stored);
    stored.sort_by_key(|e| e.chain.as_ref().unwrap().seq);
    assert!(verify(stored, VerifyOptions::from_genesis("default")).is_intact());
    assert_eq!(sink.most_running(), 2);
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn builder_rejects_bad_configuration() {
    let dir = TempDir::new("build");
    assert!(matches!(
        AuditLogger::builder(dir.path("s")).build(),
        Err(BuildError::NoSink)
    ));
    let twice = AuditLogger::builder(dir.path("s"))
        .sink(MemorySink::new("x"))
        .sink(MemorySink::new("x"))
        .build();
    assert!(matches!(twice, Err(BuildError::DuplicateSinkName(_))));
    let zero = AuditLogger::builder(dir.path("s"))
        .sink(MemorySink::new("x"))
        .batch_size(0)
        .build();
    assert!(matches!(zero, Err(BuildError::Invalid(_))));
    // Stored with every event: a NUL would make every PostgreSQL write fail.
    let nul_stream = AuditLogger::builder(dir.path("s"))
        .sink(MemorySink::new("x"))
        .stream("gw\0")
        .build();
    assert!(matches!(nul_stream, Err(BuildError::Invalid(_))));
    let mut head = mcp_audit::chain::ChainHead::genesis("gw");
    head.hash = "\0".repeat(64);
    let bad_hash = AuditLogger::builder(dir.path("s"))
        .sink(MemorySink::new("x"))
        .chain_head(head)
        .build();
    assert!(matches!(bad_hash, Err(BuildError::Invalid(_))));
}

#[tokio::test]
async fn jsonl_sink_rotates_by_day_and_by_size() {
    let dir = TempDir::new("jsonl");
    let sink = JsonlSink::new(
        JsonlSinkConfig::new(dir.path("log"))
            .max_file_bytes(1_000)
            .fsync(FsyncPolicy::OnRotateAndFlush),
    )
    .unwrap();
    let day1: Timestamp = "2026-01-31T23:59:00Z".parse().unwrap();
    let day2: Timestamp = "2026-02-01T00:01:00Z".parse().unwrap();
    let events: Vec<_> = (0..20)
        .map(|i| event(i).time(if i < 10 { day1 } else { day2 }))
        .collect();
    sink.write_batch(&events).await.unwrap();
    sink.flush().await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.iter().any(|n| n == "audit-2026-01-31.0.jsonl"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "audit-2026-01-31.1.jsonl"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "audit-2026-02-01.0.jsonl"),
        "{names:?}"
    );
    let mut total = 0;
    for name in &names {
        let path = dir.path("log").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 1_000 || text.lines().count() == 1);
        let day = if name.contains("01-31") { day1 } else { day2 };
        for line in text.lines() {
            assert_eq!(serde_json::from_str::<AuditEvent>(line).unwrap().time, day);
            total += 1;
        }
    }
    assert_eq!(total, 20);

    // A restarted sink appends to the newest file of the day.
    let again =
        JsonlSink::new(JsonlSinkConfig::new(dir.path("log")).max_file_bytes(1_000)).unwrap();
    again.write_batch(&[event(99).time(day2)]).await.unwrap();
    let count = std::fs::read_dir(dir.path("log")).unwrap().count();
    assert_eq!(count, names.len());
}

#[test]
fn tracing_sink_emits_json_on_the_audit_target() {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let e = event(1).decision(mcp_audit::Decision::Deny, "no role");
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(TracingSink::new().write_batch(std::slice::from_ref(&e)))
            .unwrap();
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["target"], "audit");
    assert_eq!(line["fields"]["decision"], "deny");
    let inner: AuditEvent =
        serde_json::from_str(line["fields"]["event"].as_str().unwrap()).unwrap();
    assert_eq!(inner, e);
}
