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

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::{AuditEvent, ChainLink};

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
        let seq = self.seq + 1;
        event.chain = Some(ChainLink::new(
            self.stream.clone(),
            seq,
            self.hash.clone(),
            String::new(),
        ));
        let hash = event_hash(event);
        if let Some(link) = event.chain.as_mut() {
            link.hash.clone_from(&hash);
        }
        self.seq = seq;
        self.hash = hash;
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
                out.push_str(&Value::String(key.clone()).to_string());
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
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The canonical serialization of `event` with `chain.hash` left out.
pub fn canonical_form(event: &AuditEvent) -> String {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(chain) = value.get_mut("chain").and_then(Value::as_object_mut) {
        chain.remove("hash");
    }
    let mut out = String::with_capacity(512);
    write_canonical(&value, &mut out);
    out
}

/// The hash of `event` as defined in the [module docs](self); `chain.hash` is ignored.
pub fn event_hash(event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(canonical_form(event).as_bytes());
    hex::encode(hasher.finalize())
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
