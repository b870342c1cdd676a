//! Which audit events to read: the query of `GET /api/v1/admin/audit` (and `/export`) and
//! the flags of `mcp-gateway audit query|export`, turned into mcp-audit's filter, page and
//! export format; and the queryable store of an `[audit]` section.

use mcp_audit::{
    AuditFilter, AuditStore, Category, Decision, ExportFormat, Order, PageRequest, Scope, Timestamp,
};
use serde::Deserialize;

use crate::config::Config;

/// The tenant that stands for every tenant in a query.
pub const ALL_TENANTS: &str = "*";

/// Audit query parameters (the admin API's query string, the CLI's flags).
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditParams {
    /// Only events of this tenant; `*` for every tenant (the admin API's default is the
    /// caller's tenant, the CLI's every tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only events of this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events of this category (authentication, authorization, tool_call, admin,
    /// rate_limit, security_violation, system).
    #[arg(long)]
    pub category: Option<String>,
    /// Only events with this decision (allow, deny).
    #[arg(long)]
    pub decision: Option<String>,
    /// Only events whose target is this tool.
    #[arg(long)]
    pub tool: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Events per page (default 100, at most 10000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The cursor of the next page, as returned by the previous one.
    #[arg(long)]
    pub after: Option<String>,
    /// `newest` first (default) or `oldest` first.
    #[arg(long)]
    pub order: Option<String>,
    /// Export format: `jsonl` (default) or `csv`.
    #[arg(long)]
    pub format: Option<String>,
}

impl AuditParams {
    /// The filter the parameters describe, or what is wrong with them.
    pub(crate) fn filter(&self) -> Result<AuditFilter, &'static str> {
        let mut filter = AuditFilter::new();
        if let Some(s) = &self.subject {
            filter = filter.subject(s.as_str());
        }
        if let Some(c) = &self.category {
            filter = filter.category(c.parse::<Category>().map_err(|_| "unknown category")?);
        }
        if let Some(d) = &self.decision {
            filter = filter.decision(d.parse::<Decision>().map_err(|_| "unknown decision")?);
        }
        if let Some(t) = &self.tool {
            filter = filter.tool(t.as_str());
        }
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(str::parse::<Timestamp>)
                .transpose()
                .map_err(|_| "times are RFC 3339")
        };
        filter.from = time(&self.from)?;
        filter.until = time(&self.until)?;
        Ok(filter)
    }

    /// The page the parameters ask for, or what is wrong with them.
    pub(crate) fn page(&self) -> Result<PageRequest, &'static str> {
        let mut page = PageRequest::first(self.limit.unwrap_or(100));
        match self.order.as_deref() {
            None | Some("newest") => {}
            Some("oldest") => page = page.order(Order::OldestFirst),
            Some(_) => return Err("order is newest or oldest"),
        }
        if let Some(after) = &self.after {
            page = page.after(after.as_str());
        }
        Ok(page)
    }

    /// The export format with its content type and file extension.
    pub(crate) fn export_format(
        &self,
    ) -> Result<(ExportFormat, &'static str, &'static str), &'static str> {
        match self.format.as_deref() {
            None | Some("jsonl") => Ok((ExportFormat::JsonLines, "application/x-ndjson", "jsonl")),
            Some("csv") => Ok((ExportFormat::Csv, "text/csv; charset=utf-8", "csv")),
            Some(_) => Err("format is jsonl or csv"),
        }
    }
}

/// The store scope of `tenant` (`*`: every tenant).
pub(crate) fn scope(tenant: &str) -> Scope {
    if tenant == ALL_TENANTS {
        Scope::All
    } else {
        Scope::Tenant(tenant.to_owned())
    }
}

/// The queryable store of `config`'s `[audit]` (SQLite or PostgreSQL) on a plain pool of
/// its own (the command line's), migrated; `None` for the other sinks.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Option<AuditStore>> {
    let Some(database) = crate::pools::audit_database(config)? else {
        return Ok(None);
    };
    let store = database.connect(4, "audit").await?.audit_store();
    store.migrate().await?;
    Ok(Some(store))
}
