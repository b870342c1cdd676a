//! A sink that appends JSON lines to files rotated by size and by day.
//!
//! Each line is one event's JSON (the schema of [`AuditEvent`], `chain.hash` included) with
//! every object's keys sorted: the hashed canonical form plus the hash, written by the same
//! code that hashes it (see [`crate::chain`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::error::SinkError;
use crate::event::AuditEvent;
use crate::sink::AuditSink;

/// About the length of one event's line, for sizing a batch's buffer.
const LINE_GUESS: usize = 512;

/// When the JSONL sink calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// After every batch, before the batch counts as written (the default).
    #[default]
    EveryBatch,
    /// Only when a file is rotated or the logger flushes; a power loss can lose the
    /// batches written since.
    OnRotateAndFlush,
}

/// Settings of a [`JsonlSink`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JsonlSinkConfig {
    /// The directory holding the files (created if missing).
    pub dir: PathBuf,
    /// File name prefix; files are named `<prefix>-<YYYY-MM-DD>.<n>.jsonl`.
    pub prefix: String,
    /// A file is closed and the next one started once it would grow past this size.
    pub max_file_bytes: u64,
    /// When to `fsync`.
    pub fsync: FsyncPolicy,
}

impl JsonlSinkConfig {
    /// Files `audit-<date>.<n>.jsonl` in `dir`, 100 MiB each, fsync after every batch.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            prefix: "audit".to_owned(),
            max_file_bytes: 100 * 1024 * 1024,
            fsync: FsyncPolicy::EveryBatch,
        }
    }

    /// Sets the file name prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the size at which files rotate.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// Sets the fsync policy.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }
}

/// Appends one JSON object per line to files in a directory.
///
/// A new file starts when the UTC date of the next event differs from the current file's
/// date, or when the next line would make the file larger than
/// [`max_file_bytes`](JsonlSinkConfig::max_file_bytes). After a restart, writing continues
/// in the newest file of the day. File I/O runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    name: String,
    config: Arc<JsonlSinkConfig>,
    state: Arc<Mutex<State>>,
}

/// A UTC calendar date `(year, month, day)`.
type Date = (i64, u32, u32);

#[derive(Debug, Default)]
struct State {
    file: Option<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    date: Date,
    index: u32,
    size: u64,
    writer: BufWriter<File>,
}

impl JsonlSink {
    /// A sink with the given settings; creates the directory.
    pub fn new(config: JsonlSinkConfig) -> io::Result<Self> {
        fs::create_dir_all(&config.dir)?;
        Ok(Self {
            name: format!("jsonl-{}", config.prefix),
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// The path of file `index` of `date`.
    pub fn file_path(&self, date: (i64, u32, u32), index: u32) -> PathBuf {
        file_path(&self.config, date, index)
    }
}

fn file_path(config: &JsonlSinkConfig, (y, m, d): (i64, u32, u32), index: u32) -> PathBuf {
    config.dir.join(format!(
        "{}-{y:04}-{m:02}-{d:02}.{index}.jsonl",
        config.prefix
    ))
}

fn open(config: &JsonlSinkConfig, date: (i64, u32, u32), index: u32) -> io::Result<OpenFile> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file_path(config, date, index))?;
    let size = file.metadata()?.len();
    Ok(OpenFile {
        date,
        index,
        size,
        writer: BufWriter::with_capacity(64 * 1024, file),
    })
}

/// Opens the newest existing file of `date`, or its first file.
fn open_latest(config: &JsonlSinkConfig, date: (i64, u32, u32)) -> io::Result<OpenFile> {
    let mut index = 0;
    while index < u32::MAX && file_path(config, date, index + 1).exists() {
        index += 1;
    }
    open(config, date, index)
}

fn finish(file: &mut OpenFile, sync: bool) -> io::Result<()> {
    file.writer.flush()?;
    if sync {
        file.writer.get_ref().sync_data()?;
    }
    Ok(())
}

/// Writes the lines of `text` (each given by its day and the offset where it ends).
fn write_lines(
    config: &JsonlSinkConfig,
    state: &mut State,
    text: &[u8],
    lines: &[(Date, usize)],
) -> io::Result<()> {
    let mut start = 0;
    for &(date, end) in lines {
        let line = text.get(start..end).unwrap_or_default();
        start = end;
        let len = line.len() as u64;
        let needs_new = match &state.file {
            None => true,
            Some(f) => f.date != date || (f.size > 0 && f.size + len > config.max_file_bytes),
        };
        if needs_new {
            let next = match state.file.take() {
                Some(mut old) => {
                    finish(&mut old, true)?;
                    (old.date == date).then_some(old.index + 1)
                }
                None => None,
            };
            state.file = Some(match next {
                Some(index) => open(config, date, index)?,
                None => open_latest(config, date)?,
            });
        }
        let Some(file) = state.file.as_mut() else {
            return Err(io::Error::other("no open audit file"));
        };
        // The newest file found after a restart may already be full.
        if file.size > 0 && file.size + len > config.max_file_bytes {
            finish(file, true)?;
            let next = file.index + 1;
            *file = open(config, date, next)?;
        }
        file.writer.write_all(line)?;
        file.size += len;
    }
    if let Some(file) = state.file.as_mut() {
        finish(file, config.fsync == FsyncPolicy::EveryBatch)?;
    }
    Ok(())
}

async fn blocking<F>(f: F) -> Result<(), SinkError>
where
    F: FnOnce() -> io::Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Io(io::Error::other(e)))?
        .map_err(SinkError::Io)
}

#[async_trait]
impl AuditSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), SinkError> {
        // One buffer for the batch's lines (no allocation per event); each line's day and end.
        let mut text = String::with_capacity(events.len() * LINE_GUESS);
        let mut lines = Vec::with_capacity(events.len());
        for e in events {
            crate::chain::write_event_json(e, &mut text);
            text.push('\n');
            lines.push((e.time.date(), text.len()));
        }
        let config = Arc::clone(&self.config);
        let state = Arc::clone(&self.state);
        blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            write_lines(&config, &mut state, text.as_bytes(), &lines)
        })
        .await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let state = Arc::clone(&self.state);
        blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            match state.file.as_mut() {
                Some(file) => finish(file, true),
                None => Ok(()),
            }
        })
        .await
    }
}
