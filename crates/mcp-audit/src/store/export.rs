//! Export of query results as JSON lines or CSV.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::AuditStore;
use super::columns::Row;
use super::query::{AuditFilter, Order, PageRequest, Scope};
use crate::error::StoreError;
use crate::event::AuditEvent;

/// The format of [`AuditStore::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One event per line in the JSON schema of [`AuditEvent`].
    JsonLines,
    /// RFC 4180 CSV with a header row, one column per event field (`time` in RFC 3339,
    /// `arguments` as JSON text). Text cells that a spreadsheet would run as a formula
    /// (starting with `=`, `+`, `-`, `@`, tab or carriage return) are prefixed with `'`.
    Csv,
}

const CSV_HEADER: &str = "id,time,category,severity,subject,tenant,auth_method,api_key_id,method,target_kind,\
target,arguments,decision,reason,outcome_status,outcome_code,latency_us,request_id,trace_id,session_id,\
client_ip,user_agent,chain_stream,chain_seq,prev_hash,hash\r\n";

fn csv_text(out: &mut String, value: Option<&str>) {
    let Some(v) = value else {
        return;
    };
    let guarded = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let needs_quotes =
        guarded || v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') || v.ends_with(' ');
    if needs_quotes {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn csv_row(event: &AuditEvent) -> String {
    let time = event.time.to_string();
    let r = Row::from_event(event);
    let num = |v: Option<i64>| v.map(|n| n.to_string());
    let cells: [(Option<String>, bool); 26] = [
        (Some(r.id), false),
        (Some(time), false),
        (Some(r.category), false),
        (Some(r.severity), false),
        (r.subject, true),
        (r.tenant, true),
        (r.auth_method, true),
        (r.api_key_id, true),
        (r.method, true),
        (r.target_kind, false),
        (r.target, true),
        (r.arguments, true),
        (r.decision, false),
        (r.reason, true),
        (r.outcome_status, false),
        (num(r.outcome_code), false),
        (num(r.latency_us), false),
        (r.request_id, true),
        (r.trace_id, true),
        (r.session_id, true),
        (r.client_ip, false),
        (r.user_agent, true),
        (r.chain_stream, true),
        (num(r.chain_seq), false),
        (r.prev_hash, false),
        (r.hash, false),
    ];
    let mut out = String::with_capacity(512);
    for (i, (value, text)) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if *text {
            csv_text(&mut out, value.as_deref());
        } else if let Some(v) = value {
            out.push_str(v);
        }
    }
    out.push_str("\r\n");
    out
}

impl AuditStore {
    /// Writes every event matching `filter` within `scope`, oldest first, to `out`, reading
    /// the store in pages of 1 000. Returns how many events were written.
    pub async fn export<W>(
        &self,
        scope: &Scope,
        filter: &AuditFilter,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64, StoreError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        if format == ExportFormat::Csv {
            out.write_all(CSV_HEADER.as_bytes()).await?;
        }
        let mut page = PageRequest::first(1_000).order(Order::OldestFirst);
        let mut written = 0;
        // Bounded by the number of matching events: each page moves the keyset forward.
        loop {
            let result = self.query(scope, filter, &page).await?;
            let mut buf = Vec::with_capacity(result.events.len() * 512);
            for event in &result.events {
                match format {
                    ExportFormat::JsonLines => {
                        serde_json::to_writer(&mut buf, event)?;
                        buf.push(b'\n');
                    }
                    ExportFormat::Csv => buf.extend_from_slice(csv_row(event).as_bytes()),
                }
            }
            out.write_all(&buf).await?;
            written += result.events.len() as u64;
            match result.next {
                Some(next) => page = page.after(next),
                None => break,
            }
        }
        out.flush().await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_guards_formulas() {
        let mut s = String::new();
        csv_text(&mut s, Some("a,\"b\"\nc"));
        assert_eq!(s, "\"a,\"\"b\"\"\nc\"");
        let mut s = String::new();
        csv_text(&mut s, Some("=HYPERLINK(1)"));
        assert_eq!(s, "\"'=HYPERLINK(1)\"");
        assert_eq!(CSV_HEADER.split(',').count(), 26);
    }
}
