//! Query filters, tenant scope, keyset pagination and the SQL they turn into.

use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{Category, Decision, TargetKind};
use crate::time::Timestamp;

/// Who is asking: an operator sees every tenant, a tenant admin only its own.
///
/// The scope is applied on top of the filter, so a tenant-scoped caller cannot widen it
/// with [`AuditFilter::tenant`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// All events (operators).
    All,
    /// Only events of this tenant (tenant administrators).
    Tenant(String),
}

/// Which events to return. Unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditFilter {
    /// Events at or after this time.
    pub from: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Events of this tenant.
    pub tenant: Option<String>,
    /// Events of this subject.
    pub subject: Option<String>,
    /// Events of this category.
    pub category: Option<Category>,
    /// Events with this decision.
    pub decision: Option<Decision>,
    /// Events whose target has this kind.
    pub target_kind: Option<TargetKind>,
    /// Events whose target (tool name, resource URI, prompt name) is this.
    pub target: Option<String>,
}

impl AuditFilter {
    /// A filter that matches everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events in `[from, until)`.
    pub fn time_range(mut self, from: Timestamp, until: Timestamp) -> Self {
        self.from = Some(from);
        self.until = Some(until);
        self
    }

    /// Events of `tenant`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Events of `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Events of `category`.
    pub fn category(mut self, category: Category) -> Self {
        self.category = Some(category);
        self
    }

    /// Events with `decision`.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Calls of the tool `name`.
    pub fn tool(mut self, name: impl Into<String>) -> Self {
        self.target_kind = Some(TargetKind::Tool);
        self.target = Some(name.into());
        self
    }
}

/// Page order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Order {
    /// Newest first (the default).
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// Which page to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// At most this many events (1 to 10 000).
    pub limit: u32,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    /// The order.
    pub order: Order,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: 100,
            after: None,
            order: Order::NewestFirst,
        }
    }
}

impl PageRequest {
    /// The first page of `limit` events, newest first.
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Sets the order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Continues after `cursor`.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }
}

/// One page of events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The events, in the requested order.
    pub events: Vec<crate::AuditEvent>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

pub(crate) const MAX_LIMIT: u32 = 10_000;

/// A keyset position: the time and id of the last event of a page.
pub(crate) fn encode_cursor(ts_us: i64, id: &Uuid) -> String {
    format!("{ts_us}.{}", id.simple())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, Uuid), StoreError> {
    let (ts, id) = cursor.split_once('.').ok_or(StoreError::InvalidCursor)?;
    let ts = ts.parse().map_err(|_| StoreError::InvalidCursor)?;
    let id = Uuid::try_parse(id).map_err(|_| StoreError::InvalidCursor)?;
    Ok((ts, id))
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    /// An event id (a `UUID` on PostgreSQL, text on SQLite).
    Id(String),
}

/// The SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(
        not(feature = "sqlite"),
        allow(dead_code, reason = "only built with the sqlite feature")
    )]
    Sqlite,
    #[cfg_attr(
        not(feature = "postgres"),
        allow(dead_code, reason = "only built with the postgres feature")
    )]
    Postgres,
}

/// Collects a `WHERE` clause and its arguments.
#[derive(Debug)]
pub(crate) struct Sql {
    dialect: Dialect,
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect, text: &str) -> Self {
        Self {
            dialect,
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Adds an argument and returns its placeholder; placeholders must appear in the text
    /// in the order the arguments were added.
    pub(crate) fn arg(&mut self, arg: Arg) -> String {
        let is_id = matches!(arg, Arg::Id(_));
        self.args.push(arg);
        match (self.dialect, is_id) {
            // Anonymous `?`: numbered `?NNN` parameters make SQLite look each one up in a
            // list on every bind, which is quadratic in the number of parameters.
            (Dialect::Sqlite, _) => "?".to_owned(),
            (Dialect::Postgres, true) => format!("${}::uuid", self.args.len()),
            (Dialect::Postgres, false) => format!("${}", self.args.len()),
        }
    }

    pub(crate) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Appends ` AND column = value` for one of the identifier columns that PostgreSQL
    /// indexes by a 64-bit hash (`tenant`, `subject`, `chain_stream`; see the migration): on
    /// PostgreSQL the condition also names the indexed expression, so that the index is
    /// used, and keeps the plain comparison for the (unlikely) hash collisions.
    pub(crate) fn push_key_eq(&mut self, column: &str, value: &str) {
        let p = self.arg(Arg::Text(value.to_owned()));
        match self.dialect {
            Dialect::Sqlite => self.push(&format!(" AND {column} = {p}")),
            Dialect::Postgres => self.push(&format!(
                " AND hashtextextended({column}, 0) = hashtextextended({p}, 0) AND {column} = {p}"
            )),
        }
    }

    /// `SELECT` of every column (the id as text) of the events, conditions to be appended
    /// (`AND ...`).
    pub(crate) fn select_events(dialect: Dialect) -> Self {
        let columns = super::columns::COLUMNS
            .iter()
            .map(|c| match (dialect, *c) {
                (Dialect::Postgres, "id") => "id::text AS id".to_owned(),
                _ => (*c).to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            dialect,
            &format!("SELECT {columns} FROM audit_events WHERE 1=1"),
        )
    }
}

/// Appends the scope and filter conditions (`AND ...`) to `sql`.
pub(crate) fn push_filters(sql: &mut Sql, scope: &Scope, filter: &AuditFilter) {
    if let Scope::Tenant(t) = scope {
        sql.push_key_eq("tenant", t);
    }
    if let Some(t) = &filter.tenant {
        sql.push_key_eq("tenant", t);
    }
    if let Some(s) = &filter.subject {
        sql.push_key_eq("subject", s);
    }
    let text_filters = [
        ("category", filter.category.map(|c| c.as_str().to_owned())),
        ("decision", filter.decision.map(|d| d.as_str().to_owned())),
        (
            "target_kind",
            filter.target_kind.map(|k| k.as_str().to_owned()),
        ),
        ("target", filter.target.clone()),
    ];
    for (column, value) in text_filters {
        if let Some(v) = value {
            let p = sql.arg(Arg::Text(v));
            sql.push(&format!(" AND {column} = {p}"));
        }
    }
    if let Some(from) = filter.from {
        let p = sql.arg(Arg::Int(from.unix_micros()));
        sql.push(&format!(" AND ts_us >= {p}"));
    }
    if let Some(until) = filter.until {
        let p = sql.arg(Arg::Int(until.unix_micros()));
        sql.push(&format!(" AND ts_us < {p}"));
    }
}

/// Builds the `SELECT` for one page (one row more than the limit, to know if there is a next).
pub(crate) fn page_query(
    dialect: Dialect,
    scope: &Scope,
    filter: &AuditFilter,
    page: &PageRequest,
) -> Result<Sql, StoreError> {
    let mut sql = Sql::select_events(dialect);
    push_filters(&mut sql, scope, filter);
    let (cmp, dir) = match page.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if let Some(cursor) = &page.after {
        let (ts, id) = decode_cursor(cursor)?;
        // The first bound is implied by the second but, unlike an `OR`, it bounds the index
        // scan, so that a page starts at the cursor instead of skipping every earlier row.
        let t0 = sql.arg(Arg::Int(ts));
        let t1 = sql.arg(Arg::Int(ts));
        let t2 = sql.arg(Arg::Int(ts));
        let i = sql.arg(Arg::Id(id.to_string()));
        sql.push(&format!(
            " AND ts_us {cmp}= {t0} AND (ts_us {cmp} {t1} OR (ts_us = {t2} AND id {cmp} {i}))"
        ));
    }
    let limit = i64::from(page.limit.clamp(1, MAX_LIMIT)) + 1;
    let p = sql.arg(Arg::Int(limit));
    sql.push(&format!(" ORDER BY ts_us {dir}, id {dir} LIMIT {p}"));
    Ok(sql)
}

/// Events per page when a chain is read for verification.
pub(crate) const CHAIN_PAGE: usize = 1_000;

/// The last event of chain `stream`.
pub(crate) fn chain_head_query(dialect: Dialect, stream: &str) -> Sql {
    let mut sql = Sql::select_events(dialect);
    sql.push_key_eq("chain_stream", stream);
    sql.push(" ORDER BY chain_seq DESC LIMIT 1");
    sql
}

/// One page of chain `stream` in `(seq, id)` order, after the `(seq, id)` of the previous
/// page's last event.
pub(crate) fn chain_page_query(
    dialect: Dialect,
    stream: &str,
    after: Option<&(i64, String)>,
) -> Sql {
    let mut sql = Sql::select_events(dialect);
    sql.push_key_eq("chain_stream", stream);
    if let Some((seq, id)) = after {
        // The first bound is implied by the rest but, unlike an `OR`, bounds the index scan.
        let a0 = sql.arg(Arg::Int(*seq));
        let a = sql.arg(Arg::Int(*seq));
        let b = sql.arg(Arg::Int(*seq));
        let i = sql.arg(Arg::Id(id.clone()));
        sql.push(&format!(
            " AND chain_seq >= {a0} AND (chain_seq > {a} OR (chain_seq = {b} AND id > {i}))"
        ));
    }
    sql.push(&format!(" ORDER BY chain_seq, id LIMIT {CHAIN_PAGE}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(-5, &id)).unwrap(), (-5, id));
        for bad in ["", "1", "x.y", "1.zzz"] {
            assert!(decode_cursor(bad).is_err());
        }
    }

    #[test]
    fn tenant_scope_is_always_applied() {
        let sql = page_query(
            Dialect::Postgres,
            &Scope::Tenant("acme".into()),
            &AuditFilter::new().tenant("other"),
            &PageRequest::first(10),
        )
        .unwrap();
        assert!(
            sql.text.contains(
                " AND hashtextextended(tenant, 0) = hashtextextended($1, 0) AND tenant = $1 \
                 AND hashtextextended(tenant, 0) = hashtextextended($2, 0) AND tenant = $2"
            ),
            "{}",
            sql.text
        );
        assert_eq!(sql.args[0], Arg::Text("acme".into()));
        assert_eq!(sql.args[1], Arg::Text("other".into()));
    }
}
