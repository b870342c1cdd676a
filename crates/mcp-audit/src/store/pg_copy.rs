//! Events encoded as PostgreSQL binary `COPY` data for the `audit_events` table.
//!
//! The format (PostgreSQL docs, "COPY", binary format): a fixed signature and header, then per
//! row a 16-bit field count and, per field, a 32-bit byte length (`-1` for NULL) followed by
//! the value in the type's binary wire form: 16 raw bytes for `uuid`, a big-endian 64-bit
//! integer for `bigint`, UTF-8 bytes for `text`. A 16-bit `-1` ends the data. Fields follow
//! [`COLUMNS`](super::columns::COLUMNS) and carry the same values as the row form used by the
//! `INSERT` paths.

use std::io::Write as _;

use crate::event::AuditEvent;

use super::columns::COLUMNS;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// A value too large for a `COPY` field (more than 2 GiB).
fn too_large() -> sqlx::Error {
    sqlx::Error::Encode("audit event field too large for PostgreSQL".into())
}

struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn bytes(&mut self, value: &[u8]) -> Result<(), sqlx::Error> {
        let len = i32::try_from(value.len()).map_err(|_| too_large())?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn int(&mut self, value: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    fn opt_int(&mut self, value: Option<i64>) {
        match value {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    fn text(&mut self, value: &str) -> Result<(), sqlx::Error> {
        self.bytes(value.as_bytes())
    }

    fn opt_text(&mut self, value: Option<&str>) -> Result<(), sqlx::Error> {
        match value {
            Some(v) => self.text(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// A text field written in place by `write`, its length filled in afterwards.
    fn text_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), sqlx::Error> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write(&mut self.buf).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let len = i32::try_from(self.buf.len() - at - 4).map_err(|_| too_large())?;
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    fn row(&mut self, e: &AuditEvent) -> Result<(), sqlx::Error> {
        let fields = i16::try_from(COLUMNS.len()).map_err(|_| too_large())?;
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.bytes(e.id.as_bytes())?;
        self.int(e.time.unix_micros());
        self.int(i64::from(e.schema));
        self.text(e.category.as_str())?;
        self.text(e.severity.as_str())?;
        self.opt_text(e.actor.subject.as_deref())?;
        self.opt_text(e.actor.tenant.as_deref())?;
        self.opt_text(e.actor.auth_method.as_deref())?;
        self.opt_text(e.actor.api_key_id.as_deref())?;
        self.opt_text(e.action.method.as_deref())?;
        self.opt_text(e.action.target_kind.map(|k| k.as_str()))?;
        self.opt_text(e.action.target.as_deref())?;
        match &e.action.arguments {
            Some(args) => self.text_with(|out| Ok(serde_json::to_writer(out, args)?))?,
            None => self.null(),
        }
        self.opt_text(e.decision.map(|d| d.as_str()))?;
        self.opt_text(e.reason.as_deref())?;
        self.opt_text(e.outcome.map(|o| o.status.as_str()))?;
        self.opt_int(e.outcome.and_then(|o| o.code));
        self.opt_int(
            e.outcome
                .and_then(|o| o.latency_us)
                .map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
        );
        self.opt_text(e.request_id.as_deref())?;
        self.opt_text(e.trace_id.as_deref())?;
        self.opt_text(e.session_id.as_deref())?;
        match e.client_ip {
            Some(ip) => self.text_with(|out| write!(out, "{ip}"))?,
            None => self.null(),
        }
        self.opt_text(e.user_agent.as_deref())?;
        let chain = e.chain.as_ref();
        self.opt_text(chain.map(|c| c.stream.as_str()))?;
        self.opt_int(chain.map(|c| i64::try_from(c.seq).unwrap_or(i64::MAX)));
        self.opt_text(chain.map(|c| c.prev_hash.as_str()))?;
        self.opt_text(chain.map(|c| c.hash.as_str()))?;
        Ok(())
    }
}

/// The binary `COPY` data for `events`, in the column order of [`COLUMNS`].
pub(super) fn encode(events: &[AuditEvent]) -> Result<Vec<u8>, sqlx::Error> {
    let mut enc = Encoder {
        buf: Vec::with_capacity(64 + events.len() * 512),
    };
    enc.buf.extend_from_slice(SIGNATURE);
    // Flags (no OIDs) and the length of the header extension area.
    enc.buf.extend_from_slice(&0i32.to_be_bytes());
    enc.buf.extend_from_slice(&0i32.to_be_bytes());
    for e in events {
        enc.row(e)?;
    }
    enc.buf.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(enc.buf)
}
