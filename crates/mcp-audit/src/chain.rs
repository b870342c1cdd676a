//! Tamper evidence: the hash chain over events, its canonical serialization, and `verify`.
//!
//! Each event written by a logger carries a [`ChainLink`]: the chain's name (`stream`), its
//! position (`seq`, from 1), the hash of the previous event (`prev_hash`, 64 zeros for the
//! first) and its own `hash`:
//!
//! ```text
//! hash = hex(SHA-256("mcp-audit/chain/v1\n" || canonical(event without chain.hash)))
//! ```
//!
//! The canonical form is the event's JSON (schema version included) with every object's keys
//! sorted by their UTF-8 bytes, no insignificant whitespace, and numbers and strings as
//! `serde_json` writes them. It does not depend on the order in which a store returns JSON
//! object keys, so an event read back from any sink hashes to the same value.
//!
//! [`verify`] walks events in `seq` order and reports the first modified, deleted or inserted
//! event. What it cannot see without an external anchor: an attacker who rewrites the whole
//! chain after the point of change, or who truncates its end. Keep the latest [`ChainHead`]
//! somewhere else (a log shipper, a signed checkpoint) and pass it as the expected tip.

use std::net::IpAddr;

use aws_lc_rs::digest::{Context, SHA256};
use serde_json::Value;
use uuid::Uuid;

use crate::event::{AuditEvent, ChainLink, Decision, TargetKind};

/// The `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"mcp-audit/chain/v1\n";

/// The end of a chain: the last event's position and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain's name.
    pub stream: String,
    /// The last event's `seq` (0 for an empty chain).
    pub seq: u64,
    /// The last event's hash ([`GENESIS_HASH`] for an empty chain).
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Links `event` after this head and advances the head to it.
    pub fn link(&mut self, event: &mut AuditEvent) {
        self.link_with(event, &mut String::new());
    }

    /// [`link`](Self::link) with a caller-owned scratch buffer for the canonical form, so
    /// that linking a batch allocates it once.
    pub(crate) fn link_with(&mut self, event: &mut AuditEvent, scratch: &mut String) {
        let seq = self.seq + 1;
        event.chain = Some(ChainLink::new(
            self.stream.clone(),
            seq,
            std::mem::take(&mut self.hash),
            String::new(),
        ));
        let hash = event_hash_with(event, scratch);
        if let Some(link) = event.chain.as_mut() {
            link.hash.clone_from(&hash);
        }
        self.seq = seq;
        self.hash = hash;
    }
}

/// Whether `s` holds a byte that JSON escapes (`"`, `\`, control characters). Written as a
/// fold without an early exit, so that it compiles to a vector loop.
fn needs_escape(s: &[u8]) -> bool {
    s.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json` escapes it (`"`,
/// `\`, the short escapes `\b \f \n \r \t`, other control characters as `\u00xx`;
/// everything else verbatim).
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is the position of an ASCII byte, hence a character boundary.
        out.push_str(&s[start..i]);
        start = i + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends ASCII bytes (digits, punctuation) to `out`.
fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| char::from(b)));
}

/// Appends the decimal form of `v` (what `Display` writes, without the formatting machinery).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    push_ascii(out, &buf[at..]);
}

/// Appends the decimal form of `v`.
fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends a client address as `Display` writes it (IPv4 without the formatting machinery).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing into a `String` cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// The lower-case hex form of a SHA-256 digest.
fn hex_digest(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * digest.len());
    for &b in digest {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    text
}

/// `,"name":` for a member name that needs no escaping, built at compile time, so that
/// starting a member is one copy.
macro_rules! member {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// Writes the members of one JSON object, inserting the separators.
struct Members<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    /// Starts a member and returns the buffer for its value. `member` is the member's
    /// separator and quoted name as built by [`member!`] (`,"name":`); the separator is left
    /// out for the first member.
    fn key(&mut self, member: &str) -> &mut String {
        let text = if self.first {
            member.get(1..).unwrap_or_default()
        } else {
            member
        };
        self.out.push_str(text);
        self.first = false;
        self.out
    }

    fn str(&mut self, member: &str, value: &str) {
        push_json_str(self.key(member), value);
    }

    fn opt_str(&mut self, member: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(member, v);
        }
    }

    fn close(self) {
        self.out.push('}');
    }
}

/// Writes `value` in canonical form (sorted keys, no whitespace).
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, key);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => push_json_str(out, s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            use std::fmt::Write as _;
            // Writing into a `String` cannot fail.
            let _ = write!(out, "{n}");
        }
    }
}

/// Appends the canonical form of `event` to `out`: without `chain.hash` (the form that is
/// hashed), or with it (`with_hash`: the event's whole JSON, keys sorted).
///
/// The members are written straight from the struct, in the byte order of their names and
/// with the same omissions as the event's `Serialize` implementation, so the result is the
/// sorted-key JSON described in the [module docs](self) without building a JSON tree.
fn write_event_canonical(event: &AuditEvent, out: &mut String, with_hash: bool) {
    let mut m = Members::open(out);
    let action = &event.action;
    if !action.is_empty() {
        let mut a = Members::open(m.key(member!("action")));
        if let Some(args) = &action.arguments {
            write_canonical(args, a.key(member!("arguments")));
        }
        a.opt_str(member!("method"), action.method.as_deref());
        a.opt_str(member!("target"), action.target.as_deref());
        a.opt_str(
            member!("target_kind"),
            action.target_kind.map(TargetKind::as_str),
        );
        a.close();
    }
    let actor = &event.actor;
    if !actor.is_empty() {
        let mut a = Members::open(m.key(member!("actor")));
        a.opt_str(member!("api_key_id"), actor.api_key_id.as_deref());
        a.opt_str(member!("auth_method"), actor.auth_method.as_deref());
        a.opt_str(member!("subject"), actor.subject.as_deref());
        a.opt_str(member!("tenant"), actor.tenant.as_deref());
        a.close();
    }
    m.str(member!("category"), event.category.as_str());
    if let Some(chain) = &event.chain {
        let mut c = Members::open(m.key(member!("chain")));
        if with_hash {
            c.str(member!("hash"), &chain.hash);
        }
        c.str(member!("prev_hash"), &chain.prev_hash);
        push_u64(c.key(member!("seq")), chain.seq);
        c.str(member!("stream"), &chain.stream);
        c.close();
    }
    if let Some(ip) = event.client_ip {
        let out = m.key(member!("client_ip"));
        out.push('"');
        push_ip(out, ip);
        out.push('"');
    }
    m.opt_str(member!("decision"), event.decision.map(Decision::as_str));
    let mut id = Uuid::encode_buffer();
    m.str(member!("id"), event.id.hyphenated().encode_lower(&mut id));
    if let Some(outcome) = &event.outcome {
        let mut o = Members::open(m.key(member!("outcome")));
        if let Some(code) = outcome.code {
            push_i64(o.key(member!("code")), code);
        }
        if let Some(latency) = outcome.latency_us {
            push_u64(o.key(member!("latency_us")), latency);
        }
        o.str(member!("status"), outcome.status.as_str());
        o.close();
    }
    m.opt_str(member!("reason"), event.reason.as_deref());
    m.opt_str(member!("request_id"), event.request_id.as_deref());
    push_u64(m.key(member!("schema")), u64::from(event.schema));
    m.opt_str(member!("session_id"), event.session_id.as_deref());
    m.str(member!("severity"), event.severity.as_str());
    let out = m.key(member!("time"));
    out.push('"');
    push_ascii(out, &event.time.rfc3339());
    out.push('"');
    m.opt_str(member!("trace_id"), event.trace_id.as_deref());
    m.opt_str(member!("user_agent"), event.user_agent.as_deref());
    m.close();
}

/// The canonical serialization of `event` with `chain.hash` left out.
pub fn canonical_form(event: &AuditEvent) -> String {
    let mut out = String::with_capacity(512);
    write_event_canonical(event, &mut out, false);
    out
}

/// Appends the JSON of `event`, `chain.hash` included, to `out`: the same value as its
/// `Serialize` implementation gives, with every object's keys sorted (the canonical form
/// plus the hash), written without `serde_json`'s per-member dispatch. The JSON lines sink
/// writes its lines with it.
pub(crate) fn write_event_json(event: &AuditEvent, out: &mut String) {
    write_event_canonical(event, out, true);
}

/// The hash of `event` as defined in the [module docs](self); `chain.hash` is ignored.
pub fn event_hash(event: &AuditEvent) -> String {
    event_hash_with(event, &mut String::new())
}

/// [`event_hash`] with a reusable scratch buffer.
fn event_hash_with(event: &AuditEvent, scratch: &mut String) -> String {
    scratch.clear();
    write_event_canonical(event, scratch, false);
    let mut hasher = Context::new(&SHA256);
    hasher.update(DOMAIN);
    hasher.update(scratch.as_bytes());
    hex_digest(hasher.finish().as_ref())
}

/// What kind of tampering was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TamperKind {
    /// The event's content no longer matches its hash, or the next event does not link to it.
    Modified,
    /// One or more events are missing before this position.
    Deleted,
    /// The event does not belong in the chain (duplicate position, no link, wrong chain,
    /// or beyond the expected tip).
    Inserted,
}

/// The first problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tamper {
    /// What was found.
    pub kind: TamperKind,
    /// The chain position concerned (for a deletion: the first missing position).
    pub seq: u64,
    /// The event concerned (`None` for a deletion).
    pub id: Option<Uuid>,
}

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// How many events were examined.
    pub checked: u64,
    /// The head after the last event that verified.
    pub head: Option<ChainHead>,
    /// The first problem, if any.
    pub tamper: Option<Tamper>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.tamper.is_none()
    }
}

/// Where verification starts and ends.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The head the first event must follow (e.g. [`ChainHead::genesis`], or a checkpoint).
    /// `None` accepts the first event's `prev_hash` as given, which is what is left after a
    /// retention purge removed the chain's beginning.
    pub anchor: Option<ChainHead>,
    /// The head the chain must end at, to detect a truncated or extended end.
    pub expected_tip: Option<ChainHead>,
}

impl VerifyOptions {
    /// Verification from the genesis of `stream`.
    pub fn from_genesis(stream: &str) -> Self {
        Self {
            anchor: Some(ChainHead::genesis(stream)),
            expected_tip: None,
        }
    }

    /// Sets the expected tip.
    pub fn expected_tip(mut self, tip: ChainHead) -> Self {
        self.expected_tip = Some(tip);
        self
    }
}

/// A streaming verifier: feed events of one chain in `seq` order with [`Verifier::push`],
/// then call [`Verifier::finish`]. Memory is bounded by the number of events that share a
/// `seq` (normally one).
#[derive(Debug)]
pub struct Verifier {
    stream: Option<String>,
    prev: Option<(u64, String)>,
    prev_prev_hash: Option<String>,
    pending: Vec<AuditEvent>,
    checked: u64,
    tamper: Option<Tamper>,
    expected_tip: Option<ChainHead>,
}

impl Verifier {
    /// A verifier with the given options.
    pub fn new(options: VerifyOptions) -> Self {
        let stream = options.anchor.as_ref().map(|a| a.stream.clone());
        Self {
            stream,
            prev: options.anchor.map(|a| (a.seq, a.hash)),
            prev_prev_hash: None,
            pending: Vec::new(),
            checked: 0,
            tamper: None,
            expected_tip: options.expected_tip,
        }
    }

    fn fail(&mut self, kind: TamperKind, seq: u64, id: Option<Uuid>) {
        if self.tamper.is_none() {
            self.tamper = Some(Tamper { kind, seq, id });
        }
    }

    /// Feeds the next event. Returns `false` once a problem has been found (later events
    /// are ignored).
    pub fn push(&mut self, event: AuditEvent) -> bool {
        if self.tamper.is_some() {
            return false;
        }
        self.checked += 1;
        let Some(link) = event.chain.as_ref() else {
            let seq = self.prev.as_ref().map_or(0, |p| p.0 + 1);
            self.fail(TamperKind::Inserted, seq, Some(event.id));
            return false;
        };
        match &self.stream {
            Some(stream) if *stream != link.stream => {
                let seq = link.seq;
                self.fail(TamperKind::Inserted, seq, Some(event.id));
                return false;
            }
            Some(_) => {}
            None => self.stream = Some(link.stream.clone()),
        }
        let seq = link.seq;
        if self
            .pending
            .first()
            .and_then(|p| p.chain.as_ref())
            .is_some_and(|p| p.seq != seq)
        {
            let next_prev = link.prev_hash.clone();
            self.resolve(Some(&next_prev));
        }
        if self.tamper.is_none() {
            self.pending.push(event);
        }
        self.tamper.is_none()
    }

    /// Checks the events waiting at one position, `next_prev` being the `prev_hash` of the
    /// event after them (which tells the genuine one among duplicates).
    fn resolve(&mut self, next_prev: Option<&str>) {
        let pending = std::mem::take(&mut self.pending);
        let genuine = if pending.len() == 1 {
            0
        } else {
            let hash_of = |e: &AuditEvent| e.chain.as_ref().map(|c| c.hash.clone());
            let by_next = next_prev.and_then(|n| {
                pending
                    .iter()
                    .position(|e| hash_of(e).as_deref() == Some(n))
            });
            let prev_hash = self.prev.as_ref().map(|p| p.1.clone());
            let by_prev = pending.iter().position(|e| {
                e.chain.as_ref().is_some_and(|c| {
                    Some(&c.prev_hash) == prev_hash.as_ref() && c.hash == event_hash(e)
                })
            });
            let genuine = by_next.or(by_prev).unwrap_or(0);
            if let Some((_, e)) = pending.iter().enumerate().find(|(i, _)| *i != genuine) {
                let seq = e.chain.as_ref().map_or(0, |c| c.seq);
                self.fail(TamperKind::Inserted, seq, Some(e.id));
                return;
            }
            genuine
        };
        let Some(event) = pending.into_iter().nth(genuine) else {
            return;
        };
        let Some(link) = event.chain.as_ref() else {
            return;
        };
        if link.hash != event_hash(&event) {
            self.fail(TamperKind::Modified, link.seq, Some(event.id));
            return;
        }
        if let Some((prev_seq, prev_hash)) = &self.prev {
            if link.seq <= *prev_seq {
                self.fail(TamperKind::Inserted, link.seq, Some(event.id));
                return;
            }
            if link.seq > prev_seq + 1 {
                self.fail(TamperKind::Deleted, prev_seq + 1, None);
                return;
            }
            if link.prev_hash != *prev_hash {
                // The previous event was swapped for another one whose hash is consistent
                // with its own content: either inserted in place of the genuine one (this
                // event still links to the one before it) or modified and rehashed.
                let kind = if self.prev_prev_hash.as_deref() == Some(link.prev_hash.as_str()) {
                    TamperKind::Inserted
                } else {
                    TamperKind::Modified
                };
                self.fail(kind, *prev_seq, None);
                return;
            }
        }
        self.prev_prev_hash = self.prev.take().map(|p| p.1);
        self.prev = Some((link.seq, link.hash.clone()));
    }

    /// Ends verification and returns the report.
    pub fn finish(mut self) -> VerifyReport {
        if self.tamper.is_none() && !self.pending.is_empty() {
            self.resolve(None);
        }
        if self.tamper.is_none()
            && let Some(tip) = self.expected_tip.take()
        {
            let last = self.prev.as_ref().map_or(0, |p| p.0);
            if last < tip.seq {
                self.fail(TamperKind::Deleted, last + 1, None);
            } else if last > tip.seq {
                self.fail(TamperKind::Inserted, tip.seq + 1, None);
            } else if self.prev.as_ref().is_some_and(|p| p.1 != tip.hash) {
                self.fail(TamperKind::Modified, last, None);
            }
        }
        let head = match (self.stream, self.prev) {
            (Some(stream), Some((seq, hash))) => Some(ChainHead { stream, seq, hash }),
            _ => None,
        };
        VerifyReport {
            checked: self.checked,
            head,
            tamper: self.tamper,
        }
    }
}

/// Verifies events of one chain, given in `seq` order.
///
/// ```
/// use mcp_audit::chain::{verify, ChainHead, TamperKind, VerifyOptions};
/// use mcp_audit::{AuditEvent, Category};
///
/// let mut head = ChainHead::genesis("gw-1");
/// let mut events: Vec<AuditEvent> = (0..5)
///     .map(|i| {
///         let mut e = AuditEvent::new(Category::System).subject(format!("u{i}"));
///         head.link(&mut e);
///         e
///     })
///     .collect();
/// assert!(verify(events.clone(), VerifyOptions::from_genesis("gw-1")).is_intact());
///
/// events[2].actor.subject = Some("mallory".into());
/// let report = verify(events, VerifyOptions::from_genesis("gw-1"));
/// assert_eq!(report.tamper.unwrap().kind, TamperKind::Modified);
/// ```
pub fn verify<I>(events: I, options: VerifyOptions) -> VerifyReport
where
    I: IntoIterator<Item = AuditEvent>,
{
    let mut verifier = Verifier::new(options);
    for event in events {
        if !verifier.push(event) {
            break;
        }
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Category;
    use serde_json::json;

    fn chain(n: usize) -> Vec<AuditEvent> {
        let mut head = ChainHead::genesis("s");
        (0..n)
            .map(|i| {
                let mut e = AuditEvent::new(Category::ToolCall)
                    .subject(format!("u{i}"))
                    .arguments(json!({"b": [1, 2.5, null], "a": {"z": true, "y": "é\"\n"}}));
                head.link(&mut e);
                e
            })
            .collect()
    }

    fn check(events: Vec<AuditEvent>) -> Option<Tamper> {
        verify(events, VerifyOptions::from_genesis("s")).tamper
    }

    #[test]
    fn intact_chain_verifies_and_reports_head() {
        let events = chain(10);
        let last = events[9].chain.clone().unwrap();
        let report = verify(events, VerifyOptions::from_genesis("s"));
        assert!(report.is_intact());
        assert_eq!(report.checked, 10);
        assert_eq!(
            report.head.unwrap(),
            ChainHead {
                stream: "s".into(),
                seq: 10,
                hash: last.hash
            }
        );
    }

    #[test]
    fn canonical_form_ignores_key_order_and_survives_json_round_trip() {
        let events = chain(3);
        let text = serde_json::to_string(&events[1]).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(event_hash(&back), events[1].chain.as_ref().unwrap().hash);
        let a: Value = json!({"b": 1, "a": [{"d": 1, "c": 2}]});
        let mut out = String::new();
        write_canonical(&a, &mut out);
        assert_eq!(out, r#"{"a":[{"c":2,"d":1}],"b":1}"#);
    }

    fn json_form(event: &AuditEvent) -> String {
        let mut out = String::new();
        write_event_json(event, &mut out);
        out
    }

    /// The event's `Serialize` output, every object's keys sorted by bytes.
    fn sorted_json(event: &AuditEvent) -> String {
        sorted_text(&serde_json::to_value(event).unwrap())
    }

    /// The canonical form as first specified: the event's `serde_json::Value` with `chain.hash`
    /// removed, keys sorted by bytes, keys, strings and scalars written by `serde_json`.
    fn reference_form(event: &AuditEvent) -> String {
        let mut value = serde_json::to_value(event).unwrap();
        if let Some(chain) = value.get_mut("chain").and_then(Value::as_object_mut) {
            chain.remove("hash");
        }
        sorted_text(&value)
    }

    /// `value` with every object's keys sorted by bytes, keys, strings and scalars written by
    /// `serde_json`.
    fn sorted_text(value: &Value) -> String {
        fn write(value: &Value, out: &mut String) {
            match value {
                Value::Object(map) => {
                    let mut entries: Vec<_> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    out.push('{');
                    for (i, (key, v)) in entries.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(key).unwrap());
                        out.push(':');
                        write(v, out);
                    }
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(v, out);
                    }
                    out.push(']');
                }
                scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
            }
        }
        let mut out = String::new();
        write(value, &mut out);
        out
    }

    fn full_event(text: &str) -> AuditEvent {
        use crate::event::OutcomeStatus;
        let mut e = AuditEvent::new(Category::SecurityViolation)
            .subject(format!("s{text}"))
            .tenant(text)
            .auth_method("jwt")
            .api_key_id(format!("k{text}"))
            .method("tools/call")
            .tool(text)
            .arguments(json!({"z": [1, -2, 2.5, 1e300, null, true], "a": {text: text}, "": {}}))
            .decision(Decision::Deny, text)
            .outcome(
                OutcomeStatus::Error,
                Some(-32_603),
                Some(std::time::Duration::from_micros(u64::MAX)),
            )
            .request_id(text)
            .trace_id("t")
            .session_id(text)
            .client_ip("2001:db8::1".parse().unwrap())
            .user_agent(text);
        let mut head = ChainHead::genesis(format!("stream{text}"));
        head.link(&mut e);
        e
    }

    #[test]
    fn direct_canonical_form_equals_the_json_tree_form() {
        let text = "q\"b\\s/\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t é 😀 \u{2028}";
        let mut events = vec![full_event(text), full_event("")];
        // Optional parts absent, one at a time and all together.
        let mut bare = AuditEvent::new(Category::System);
        events.push(bare.clone());
        bare.action.arguments = Some(Value::Null);
        bare.outcome = Some(crate::event::Outcome {
            status: crate::event::OutcomeStatus::Success,
            code: None,
            latency_us: None,
        });
        bare.client_ip = Some("10.0.0.1".parse().unwrap());
        bare.schema = u16::MAX;
        bare.time = crate::time::Timestamp::MIN;
        events.push(bare);
        let mut actor_only = AuditEvent::new(Category::Admin).api_key_id("k");
        actor_only.severity = crate::event::Severity::Critical;
        events.push(actor_only);
        events.push(AuditEvent::new(Category::Admin).prompt("p"));
        for e in &events {
            assert_eq!(canonical_form(e), reference_form(e));
            assert_eq!(json_form(e), sorted_json(e));
            let mut without_hash = e.clone();
            if let Some(c) = without_hash.chain.as_mut() {
                c.hash = "ignored".into();
            }
            assert_eq!(event_hash(&without_hash), event_hash(e));
        }
    }

    #[test]
    fn known_event_hash_is_stable() {
        let mut e = AuditEvent::new(Category::ToolCall)
            .subject("alice")
            .tenant("acme")
            .method("tools/call")
            .tool("search")
            .decision(Decision::Allow, "role user")
            .client_ip("10.1.2.3".parse().unwrap());
        e.id = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        e.time = crate::time::Timestamp::from_unix_micros(1_700_000_000_123_456).unwrap();
        let mut head = ChainHead::genesis("gw");
        head.link(&mut e);
        assert_eq!(
            canonical_form(&e),
            r#"{"action":{"method":"tools/call","target":"search","target_kind":"tool"},"actor":{"subject":"alice","tenant":"acme"},"category":"tool_call","chain":{"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":1,"stream":"gw"},"client_ip":"10.1.2.3","decision":"allow","id":"01890a5d-ac96-774b-bcce-b302099a8057","reason":"role user","schema":1,"severity":"info","time":"2023-11-14T22:13:20.123456Z"}"#
        );
        assert_eq!(
            head.hash,
            "bddaed7b05ed820f360a5db147a8218f215130e0eab4c049dd8cfd12b3566439"
        );
    }

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_like_serde_json(s in proptest::prelude::any::<String>()) {
            let mut out = String::new();
            push_json_str(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn any_text_gives_the_reference_form(s in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let e = full_event(&s);
            proptest::prop_assert_eq!(canonical_form(&e), reference_form(&e));
            proptest::prop_assert_eq!(json_form(&e), sorted_json(&e));
        }
    }

    #[test]
    fn modification_is_detected() {
        let mut events = chain(6);
        events[3].reason = Some("edited".into());
        let t = check(events.clone()).unwrap();
        assert_eq!(
            (t.kind, t.seq, t.id),
            (TamperKind::Modified, 4, Some(events[3].id))
        );
    }

    #[test]
    fn modification_with_rehash_is_detected_at_the_next_link() {
        let mut events = chain(6);
        events[3].reason = Some("edited".into());
        let h = event_hash(&events[3]);
        events[3].chain.as_mut().unwrap().hash = h;
        let t = check(events).unwrap();
        assert_eq!((t.kind, t.seq), (TamperKind::Modified, 4));
    }

    #[test]
    fn deletion_is_detected() {
        let mut events = chain(6);
        events.remove(2);
        let t = check(events).unwrap();
        assert_eq!((t.kind, t.seq, t.id), (TamperKind::Deleted, 3, None));
        let mut first_gone = chain(3);
        first_gone.remove(0);
        assert_eq!(check(first_gone).unwrap().kind, TamperKind::Deleted);
    }

    #[test]
    fn insertion_is_detected() {
        let events = chain(6);
        // A forged event with a duplicate position, properly linked and hashed.
        let mut head = ChainHead {
            stream: "s".into(),
            seq: 2,
            hash: events[1].chain.clone().unwrap().hash,
        };
        let mut forged = AuditEvent::new(Category::Admin).subject("mallory");
        head.link(&mut forged);
        for at in [2, 3] {
            let mut tampered = events.clone();
            tampered.insert(at, forged.clone());
            let t = check(tampered).unwrap();
            assert_eq!(
                (t.kind, t.seq, t.id),
                (TamperKind::Inserted, 3, Some(forged.id)),
                "at {at}"
            );
        }
        // An event without a chain link.
        let mut tampered = events.clone();
        tampered.insert(4, AuditEvent::new(Category::Admin));
        assert_eq!(check(tampered).unwrap().kind, TamperKind::Inserted);
        // A forged event appended after the expected tip.
        let tip = ChainHead {
            stream: "s".into(),
            seq: 6,
            hash: events[5].chain.clone().unwrap().hash,
        };
        let mut head = tip.clone();
        let mut extra = AuditEvent::new(Category::Admin);
        head.link(&mut extra);
        let mut tampered = events.clone();
        tampered.push(extra);
        let report = verify(
            tampered,
            VerifyOptions::from_genesis("s").expected_tip(tip.clone()),
        );
        assert_eq!(report.tamper.unwrap().kind, TamperKind::Inserted);
        let mut truncated = events;
        truncated.pop();
        let report = verify(
            truncated,
            VerifyOptions::from_genesis("s").expected_tip(tip),
        );
        assert_eq!(report.tamper.unwrap().kind, TamperKind::Deleted);
    }

    #[test]
    fn verification_without_anchor_accepts_a_purged_prefix() {
        let events = chain(6);
        let report = verify(events[3..].to_vec(), VerifyOptions::default());
        assert!(report.is_intact());
        assert_eq!(report.head.unwrap().seq, 6);
    }
}
