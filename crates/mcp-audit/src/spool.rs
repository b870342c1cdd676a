//! Append-only local files of events: the per-sink spool and the overflow spill file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::event::AuditEvent;

/// A JSON-lines file that events are appended to and later read back in order.
///
/// The read position lives in memory: after a crash the whole file is read again, which is
/// safe because replays are idempotent by event id. The file is emptied once everything in
/// it has been read back.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    append: Option<File>,
    offset: u64,
    pending: u64,
    sync: bool,
}

/// The result of reading a chunk of a spool.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) events: Vec<AuditEvent>,
    pub(crate) bytes: u64,
    pub(crate) lines: u64,
}

impl Spool {
    /// Opens (or prepares to create) the spool at `path`, dropping a torn last line left by
    /// a crash in the middle of an append.
    pub(crate) fn open(path: PathBuf, sync: bool) -> io::Result<Self> {
        let mut pending = 0;
        if path.exists() {
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if complete < data.len() {
                tracing::warn!(target: "mcp_audit", path = %path.display(), "dropping a torn line at the end of an audit spool");
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(complete as u64)?;
            }
            pending = data[..complete].iter().filter(|b| **b == b'\n').count() as u64;
        }
        Ok(Self {
            path,
            append: None,
            offset: 0,
            pending,
            sync,
        })
    }

    /// Events appended and not yet read back.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events`, one JSON line each (and `fsync`s if configured).
    pub(crate) fn append(&mut self, events: &[AuditEvent]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(events.len() * 512);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let file = match &mut self.append {
            Some(f) => f,
            slot => slot.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        file.write_all(&buf)?;
        if self.sync {
            file.sync_data()?;
        }
        self.pending += events.len() as u64;
        Ok(())
    }

    /// Reads up to `max` events after the read position without moving it.
    pub(crate) fn read_chunk(&self, max: usize) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        if self.pending == 0 {
            return Ok(chunk);
        }
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::with_capacity(1024);
        while chunk.events.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            chunk.bytes += n as u64;
            chunk.lines += 1;
            match serde_json::from_slice::<AuditEvent>(&line) {
                Ok(e) => chunk.events.push(e),
                Err(e) => {
                    tracing::error!(target: "mcp_audit", path = %self.path.display(), error = %e, "skipping an unreadable audit spool line");
                }
            }
        }
        Ok(chunk)
    }

    /// Moves the read position past a chunk; empties the file once all was read.
    pub(crate) fn consume(&mut self, bytes: u64, lines: u64) -> io::Result<()> {
        self.offset += bytes;
        self.pending = self.pending.saturating_sub(lines);
        if self.pending == 0 {
            self.append = None;
            if self.path.exists() {
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)?
                    .set_len(0)?;
            }
            self.offset = 0;
        }
        Ok(())
    }
}

/// The spill file used when the queue is full: `record` appends to the active file; the
/// writer renames it aside and drains the renamed file, so the two never race.
#[derive(Debug)]
pub(crate) struct Overflow {
    active: Spool,
    drain: Spool,
}

impl Overflow {
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            active: Spool::open(dir.join("overflow.jsonl"), false)?,
            drain: Spool::open(dir.join("overflow.draining.jsonl"), false)?,
        })
    }

    /// Events spilled and not yet taken by the writer.
    pub(crate) fn pending(&self) -> u64 {
        self.active.pending() + self.drain.pending()
    }

    pub(crate) fn spill(&mut self, event: &AuditEvent) -> io::Result<()> {
        self.active.append(std::slice::from_ref(event))
    }

    /// The next chunk to drain, switching to the active file when the drain file is empty.
    pub(crate) fn next_chunk(&mut self, max: usize) -> io::Result<Chunk> {
        if self.drain.pending() == 0 && self.active.pending() > 0 {
            let active_path = self.active.path().to_path_buf();
            let drain_path = self.drain.path().to_path_buf();
            self.active.append = None;
            fs::rename(&active_path, &drain_path)?;
            self.drain = Spool::open(drain_path, false)?;
            self.active = Spool::open(active_path, false)?;
        }
        self.drain.read_chunk(max)
    }

    /// Marks a chunk returned by [`Overflow::next_chunk`] as written.
    pub(crate) fn consume(&mut self, chunk: &Chunk) -> io::Result<()> {
        self.drain.consume(chunk.bytes, chunk.lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Category;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-audit-spool-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn append_read_consume_in_order_and_survive_reopen() {
        let dir = temp_dir();
        let path = dir.join("s.jsonl");
        let events: Vec<_> = (0..5).map(|_| AuditEvent::new(Category::System)).collect();
        let mut spool = Spool::open(path.clone(), true).unwrap();
        spool.append(&events[..3]).unwrap();
        spool.append(&events[3..]).unwrap();
        let chunk = spool.read_chunk(2).unwrap();
        assert_eq!(chunk.events, events[..2]);
        spool.consume(chunk.bytes, chunk.lines).unwrap();
        // A crash now: a torn line is appended and the process restarts.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"schema\":1,\"id\":").unwrap();
        let mut spool = Spool::open(path.clone(), true).unwrap();
        assert_eq!(spool.pending(), 5);
        let chunk = spool.read_chunk(100).unwrap();
        assert_eq!(chunk.events, events);
        spool.consume(chunk.bytes, chunk.lines).unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn overflow_drains_spilled_events_while_new_ones_arrive() {
        let dir = temp_dir();
        let mut of = Overflow::open(&dir).unwrap();
        let a = AuditEvent::new(Category::System);
        let b = AuditEvent::new(Category::System);
        of.spill(&a).unwrap();
        let chunk = of.next_chunk(10).unwrap();
        of.spill(&b).unwrap();
        assert_eq!(chunk.events, [a]);
        of.consume(&chunk).unwrap();
        assert_eq!(of.pending(), 1);
        let chunk = of.next_chunk(10).unwrap();
        assert_eq!(chunk.events, [b]);
        of.consume(&chunk).unwrap();
        assert_eq!(of.pending(), 0);
        fs::remove_dir_all(dir).unwrap();
    }
}
