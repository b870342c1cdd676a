//! The flat row form of an event, shared by the SQLite and PostgreSQL stores.

use crate::error::StoreError;
use crate::event::{Action, Actor, AuditEvent, ChainLink, Outcome};
use crate::time::Timestamp;

/// The columns of `audit_events`, in table order.
pub(crate) const COLUMNS: &[&str] = &[
    "id",
    "ts_us",
    "schema_version",
    "category",
    "severity",
    "subject",
    "tenant",
    "auth_method",
    "api_key_id",
    "method",
    "target_kind",
    "target",
    "arguments",
    "decision",
    "reason",
    "outcome_status",
    "outcome_code",
    "latency_us",
    "request_id",
    "trace_id",
    "session_id",
    "client_ip",
    "user_agent",
    "chain_stream",
    "chain_seq",
    "prev_hash",
    "hash",
];

/// One event as column values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) ts_us: i64,
    pub(crate) schema_version: i64,
    pub(crate) category: String,
    pub(crate) severity: String,
    pub(crate) subject: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) auth_method: Option<String>,
    pub(crate) api_key_id: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) target_kind: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) arguments: Option<String>,
    pub(crate) decision: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) outcome_status: Option<String>,
    pub(crate) outcome_code: Option<i64>,
    pub(crate) latency_us: Option<i64>,
    pub(crate) request_id: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) client_ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) chain_stream: Option<String>,
    pub(crate) chain_seq: Option<i64>,
    pub(crate) prev_hash: Option<String>,
    pub(crate) hash: Option<String>,
}

impl Row {
    pub(crate) fn from_event(e: &AuditEvent) -> Self {
        let chain = e.chain.as_ref();
        Self {
            id: e.id.to_string(),
            ts_us: e.time.unix_micros(),
            schema_version: i64::from(e.schema),
            category: e.category.as_str().to_owned(),
            severity: e.severity.as_str().to_owned(),
            subject: e.actor.subject.clone(),
            tenant: e.actor.tenant.clone(),
            auth_method: e.actor.auth_method.clone(),
            api_key_id: e.actor.api_key_id.clone(),
            method: e.action.method.clone(),
            target_kind: e.action.target_kind.map(|k| k.as_str().to_owned()),
            target: e.action.target.clone(),
            arguments: e.action.arguments.as_ref().map(ToString::to_string),
            decision: e.decision.map(|d| d.as_str().to_owned()),
            reason: e.reason.clone(),
            outcome_status: e.outcome.map(|o| o.status.as_str().to_owned()),
            outcome_code: e.outcome.and_then(|o| o.code),
            latency_us: e
                .outcome
                .and_then(|o| o.latency_us)
                .map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
            request_id: e.request_id.clone(),
            trace_id: e.trace_id.clone(),
            session_id: e.session_id.clone(),
            client_ip: e.client_ip.map(|ip| ip.to_string()),
            user_agent: e.user_agent.clone(),
            chain_stream: chain.map(|c| c.stream.clone()),
            chain_seq: chain.map(|c| i64::try_from(c.seq).unwrap_or(i64::MAX)),
            prev_hash: chain.map(|c| c.prev_hash.clone()),
            hash: chain.map(|c| c.hash.clone()),
        }
    }

    pub(crate) fn into_event(self) -> Result<AuditEvent, StoreError> {
        fn bad(column: &str) -> StoreError {
            StoreError::Decode(format!("column {column}"))
        }
        fn parse<T: std::str::FromStr>(v: &str, column: &str) -> Result<T, StoreError> {
            v.parse().map_err(|_| bad(column))
        }
        fn opt<T: std::str::FromStr>(
            v: Option<String>,
            column: &str,
        ) -> Result<Option<T>, StoreError> {
            v.map(|s| parse(&s, column)).transpose()
        }
        let chain = match (self.chain_stream, self.chain_seq, self.prev_hash, self.hash) {
            (Some(stream), Some(seq), Some(prev), Some(hash)) => Some(ChainLink::new(
                stream,
                u64::try_from(seq).map_err(|_| bad("chain_seq"))?,
                prev,
                hash,
            )),
            (None, None, None, None) => None,
            _ => return Err(bad("chain")),
        };
        let outcome = match self.outcome_status {
            Some(status) => Some(Outcome {
                status: parse(&status, "outcome_status")?,
                code: self.outcome_code,
                latency_us: self
                    .latency_us
                    .map(|l| u64::try_from(l).map_err(|_| bad("latency_us")))
                    .transpose()?,
            }),
            None => None,
        };
        let mut event = AuditEvent::new(parse(&self.category, "category")?);
        event.schema = u16::try_from(self.schema_version).map_err(|_| bad("schema_version"))?;
        event.id = parse(&self.id, "id")?;
        event.time = Timestamp::from_unix_micros(self.ts_us).ok_or_else(|| bad("ts_us"))?;
        event.severity = parse(&self.severity, "severity")?;
        event.actor = Actor::default();
        event.actor.subject = self.subject;
        event.actor.tenant = self.tenant;
        event.actor.auth_method = self.auth_method;
        event.actor.api_key_id = self.api_key_id;
        event.action = Action::default();
        event.action.method = self.method;
        event.action.target_kind = opt(self.target_kind, "target_kind")?;
        event.action.target = self.target;
        event.action.arguments = self
            .arguments
            .map(|a| serde_json::from_str(&a).map_err(|_| bad("arguments")))
            .transpose()?;
        event.decision = opt(self.decision, "decision")?;
        event.reason = self.reason;
        event.outcome = outcome;
        event.request_id = self.request_id;
        event.trace_id = self.trace_id;
        event.session_id = self.session_id;
        event.client_ip = opt(self.client_ip, "client_ip")?;
        event.user_agent = self.user_agent;
        event.chain = chain;
        Ok(event)
    }
}

/// Reads a [`Row`] from a sqlx row of either backend (`id` must be selected as text).
macro_rules! decode_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = $row;
        Ok::<_, sqlx::Error>(crate::store::columns::Row {
            id: r.try_get("id")?,
            ts_us: r.try_get("ts_us")?,
            schema_version: r.try_get("schema_version")?,
            category: r.try_get("category")?,
            severity: r.try_get("severity")?,
            subject: r.try_get("subject")?,
            tenant: r.try_get("tenant")?,
            auth_method: r.try_get("auth_method")?,
            api_key_id: r.try_get("api_key_id")?,
            method: r.try_get("method")?,
            target_kind: r.try_get("target_kind")?,
            target: r.try_get("target")?,
            arguments: r.try_get("arguments")?,
            decision: r.try_get("decision")?,
            reason: r.try_get("reason")?,
            outcome_status: r.try_get("outcome_status")?,
            outcome_code: r.try_get("outcome_code")?,
            latency_us: r.try_get("latency_us")?,
            request_id: r.try_get("request_id")?,
            trace_id: r.try_get("trace_id")?,
            session_id: r.try_get("session_id")?,
            client_ip: r.try_get("client_ip")?,
            user_agent: r.try_get("user_agent")?,
            chain_stream: r.try_get("chain_stream")?,
            chain_seq: r.try_get("chain_seq")?,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        })
    }};
}
pub(crate) use decode_row;
