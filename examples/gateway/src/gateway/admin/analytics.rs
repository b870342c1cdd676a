//! The seeds' analytics endpoints, derived from the audit store and the in-memory metrics:
//! `GET /api/v1/admin/user-activity/{user}` (what one user did: requests, tools with their
//! outcomes and duration categories, denials, time of day, sessions, last seen) and
//! `GET /api/v1/admin/tenant-analytics/{tenant}` (a tenant's resource use: exact event
//! counts, users and tools, active users, sessions and fair share).
//!
//! Both read at most [`SAMPLE`] events of the window, newest first, and say when the window
//! held more (`truncated`); the tenant's totals are exact counts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use mcp_audit::{
    AuditEvent, AuditFilter, AuditStore, Category, Decision, OutcomeStatus, PageRequest, Scope,
    TargetKind, Timestamp,
};
use mcp_metrics::{TimeOfDay, ToolUsageThresholds};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, App, Core, GLOBAL_TENANT, Params, Problem, Scoped, analytics_store, ok};
use crate::audit_query;

/// Events read for one answer at most.
const SAMPLE: u32 = 10_000;

/// Longest window, in hours (30 days).
const MAX_HOURS: u64 = 720;

/// Entries of the top lists.
const TOP: usize = 10;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/admin/user-activity/{user}", get(user_activity))
        .route(
            "/api/v1/admin/tenant-analytics/{tenant}",
            get(tenant_analytics),
        )
}

super::in_tenant!(WindowParams);

/// `?tenant=&hours=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowParams {
    /// user-activity only: the tenant the user is looked up in (default the caller's).
    tenant: Option<String>,
    /// The window, in hours up to now (default 24, at most 720).
    hours: Option<u64>,
}

impl WindowParams {
    fn window(&self) -> Result<(u64, Timestamp, Timestamp), Problem> {
        let hours = self.hours.unwrap_or(24);
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(super::invalid_request(format!("hours is 1 to {MAX_HOURS}")));
        }
        let until = Timestamp::now();
        Ok((
            hours,
            until.saturating_sub(Duration::from_secs(hours * 3600)),
            until,
        ))
    }
}

/// One tool's calls in a tally.
#[derive(Debug, Default)]
struct ToolTally {
    calls: u64,
    denied: u64,
    failed: u64,
    latency_us: u64,
    timed: u64,
    /// mcp-metrics' duration categories (`quick_action`, ...) of the timed calls.
    durations: BTreeMap<&'static str, u64>,
}

impl ToolTally {
    fn to_json(&self, name: &str) -> Value {
        json!({
            "tool": name,
            "calls": self.calls,
            "denied": self.denied,
            "failed": self.failed,
            "avg_latency_ms": (self.timed > 0)
                .then(|| self.latency_us as f64 / self.timed as f64 / 1000.0),
            "duration_categories": self.durations,
        })
    }
}

/// What a sample of audit events adds up to.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    categories: BTreeMap<&'static str, u64>,
    denied: u64,
    tools: BTreeMap<String, ToolTally>,
    users: BTreeMap<String, u64>,
    time_of_day: BTreeMap<&'static str, u64>,
    sessions: BTreeSet<String>,
    client_ips: BTreeSet<IpAddr>,
    auth_methods: BTreeMap<String, u64>,
    api_keys: BTreeSet<String>,
}

impl Tally {
    fn of<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Self {
        let thresholds = ToolUsageThresholds::default();
        let mut tally = Self::default();
        for event in events {
            tally.add(event, &thresholds);
        }
        tally
    }

    fn add(&mut self, event: &AuditEvent, thresholds: &ToolUsageThresholds) {
        self.events += 1;
        self.first = Some(self.first.map_or(event.time, |t| t.min(event.time)));
        self.last = Some(self.last.map_or(event.time, |t| t.max(event.time)));
        *self.categories.entry(event.category.as_str()).or_default() += 1;
        let denied = event.decision == Some(Decision::Deny);
        self.denied += u64::from(denied);
        let micros = u64::try_from(event.time.unix_micros()).unwrap_or(0);
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
        *self
            .time_of_day
            .entry(TimeOfDay::of(at).as_str())
            .or_default() += 1;
        let actor = &event.actor;
        if let Some(subject) = &actor.subject {
            *self.users.entry(subject.clone()).or_default() += 1;
        }
        if let Some(method) = &actor.auth_method {
            *self.auth_methods.entry(method.clone()).or_default() += 1;
        }
        if let Some(key) = &actor.api_key_id {
            self.api_keys.insert(key.clone());
        }
        if let Some(session) = &event.session_id {
            self.sessions.insert(session.clone());
        }
        if let Some(ip) = event.client_ip {
            self.client_ips.insert(ip);
        }
        if event.action.target_kind == Some(TargetKind::Tool)
            && let Some(tool) = &event.action.target
        {
            let entry = self.tools.entry(tool.clone()).or_default();
            entry.calls += 1;
            entry.denied += u64::from(denied || event.category == Category::RateLimit);
            if let Some(outcome) = &event.outcome {
                entry.failed += u64::from(!denied && outcome.status != OutcomeStatus::Success);
                if let (false, Some(us)) = (denied, outcome.latency_us) {
                    entry.latency_us += us;
                    entry.timed += 1;
                    let category = thresholds.categorise(Duration::from_micros(us));
                    *entry.durations.entry(category.as_str()).or_default() += 1;
                }
            }
        }
    }

    fn count(&self, category: Category) -> u64 {
        self.categories.get(category.as_str()).copied().unwrap_or(0)
    }

    /// The tools, most called first, at most `limit`.
    fn top_tools(&self, limit: usize) -> Vec<Value> {
        let mut tools: Vec<(&String, &ToolTally)> = self.tools.iter().collect();
        tools.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(b.0)));
        tools
            .into_iter()
            .take(limit)
            .map(|(name, t)| t.to_json(name))
            .collect()
    }
}

/// The newest [`SAMPLE`] events of `filter` in `scope`, and whether there were more.
async fn sample(
    store: &AuditStore,
    scope: &Scope,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEvent>, bool), Problem> {
    let page = store
        .query(scope, filter, &PageRequest::first(SAMPLE))
        .await
        .map_err(|e| super::unavailable("audit store", &e))?;
    Ok((page.events, page.next.is_some()))
}

fn time(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

/// `GET /api/v1/admin/user-activity/{user}?tenant=&hours=`: the user's activity in the
/// window (`admin:audit.read` in the tenant; `tenant=*` across tenants).
async fn user_activity(
    scoped: Scoped<WindowParams>,
    Path(user): Path<String>,
) -> Result<Response, Problem> {
    let (call, params) = scoped.authorize("admin:audit.read")?;
    let result = async {
        let (hours, from, until) = params.window()?;
        let store = analytics_store(call.core())?;
        let filter = AuditFilter::new()
            .time_range(from, until)
            .subject(user.as_str());
        let (events, truncated) = sample(store, &audit_query::scope(&call.tenant), &filter).await?;
        let tally = Tally::of(&events);
        Ok(ok(&json!({
            "user": user,
            "tenant": call.tenant,
            "window": { "hours": hours, "from": from.to_string(), "until": until.to_string() },
            "events": tally.events,
            "truncated": truncated,
            "first_seen": time(tally.first),
            "last_seen": time(tally.last),
            "requests": {
                "tool_calls": tally.count(Category::ToolCall),
                "other_methods": tally.count(Category::Authorization),
                "denied": tally.denied,
                "rate_limited": tally.count(Category::RateLimit),
                "security_violations": tally.count(Category::SecurityViolation),
            },
            "categories": tally.categories,
            "tools": tally.top_tools(usize::MAX),
            "time_of_day_utc": tally.time_of_day,
            "sessions": tally.sessions.len(),
            "client_ips": tally.client_ips.len(),
            "auth_methods": tally.auth_methods,
            "api_keys": tally.api_keys,
        })))
    }
    .await;
    Ok(call.answer(result))
}

/// Exact counts of the tenant's events in the window, by what they were.
async fn totals(store: &AuditStore, scope: &Scope, window: &AuditFilter) -> Result<Value, Problem> {
    let count = |filter: AuditFilter| async move {
        store
            .count(scope, &filter)
            .await
            .map_err(|e| super::unavailable("audit store", &e))
    };
    let events = count(window.clone()).await?;
    Ok(json!({
        "events": events,
        "tool_calls": count(window.clone().category(Category::ToolCall)).await?,
        "denied": count(window.clone().decision(Decision::Deny)).await?,
        "rate_limited": count(window.clone().category(Category::RateLimit)).await?,
        "security_violations": count(window.clone().category(Category::SecurityViolation)).await?,
        "admin_calls": count(window.clone().category(Category::Admin)).await?,
    }))
}

/// `GET /api/v1/admin/tenant-analytics/{tenant}?hours=`: the tenant's resource use
/// (`admin:metrics.read` in that tenant). The audit part is `null` when the audit sink is
/// not queryable; the live part comes from memory.
async fn tenant_analytics(
    admin: Admin,
    Path(tenant): Path<String>,
    Params(params): Params<WindowParams>,
) -> Result<Response, Problem> {
    let call = admin.authorize("admin:metrics.read", Some(&tenant))?;
    let result = async {
        if params.tenant.is_some() {
            return Err(super::invalid_request("the tenant is in the path"));
        }
        let (hours, from, until) = params.window()?;
        let core = call.core();
        let audit = match analytics_store(core) {
            Ok(store) => Some(audit_part(store, &tenant, hours, from, until).await?),
            Err(_) => None,
        };
        Ok(ok(&json!({
            "tenant": tenant,
            "window": { "hours": hours, "from": from.to_string(), "until": until.to_string() },
            "audit": audit,
            "live": live_part(core, &tenant),
        })))
    }
    .await;
    Ok(call.answer(result))
}

async fn audit_part(
    store: &AuditStore,
    tenant: &str,
    hours: u64,
    from: Timestamp,
    until: Timestamp,
) -> Result<Value, Problem> {
    let scope = audit_query::scope(tenant);
    let window = AuditFilter::new().time_range(from, until);
    let totals = totals(store, &scope, &window).await?;
    let (events, truncated) = sample(store, &scope, &window).await?;
    let tally = Tally::of(&events);
    let mut users: Vec<(&String, &u64)> = tally.users.iter().collect();
    users.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let requests_per_hour = totals["events"].as_u64().unwrap_or(0) as f64 / hours as f64;
    Ok(json!({
        "totals": totals,
        "requests_per_hour": requests_per_hour,
        "sample": { "events": tally.events, "truncated": truncated },
        "last_activity": time(tally.last),
        "distinct_users": tally.users.len(),
        "top_users": users
            .into_iter()
            .take(TOP)
            .map(|(subject, events)| json!({ "subject": subject, "events": events }))
            .collect::<Vec<_>>(),
        "top_tools": tally.top_tools(TOP),
        "time_of_day_utc": tally.time_of_day,
        "auth_methods": tally.auth_methods,
    }))
}

/// What memory knows about the tenant now: active users, sessions, fair share.
fn live_part(core: &Core, tenant: &str) -> Value {
    let now = Instant::now();
    let scoped = (tenant != GLOBAL_TENANT).then_some(tenant);
    json!({
        "active_users": super::active_users(core, scoped, now),
        "sessions": core
            .sessions
            .as_ref()
            .map(|s| serde_json::to_value(s.census(scoped, now)).unwrap_or(Value::Null)),
        "fair_share": super::fairness(core, tenant).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        subject: &str,
        tool: &str,
        decision: Decision,
        latency: Option<Duration>,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(Category::ToolCall)
            .subject(subject)
            .auth_method("jwt")
            .tool(tool)
            .decision(decision, "test");
        if let Some(latency) = latency {
            event = event.outcome(OutcomeStatus::Success, Some(200), Some(latency));
        } else {
            event = event.outcome(OutcomeStatus::Failure, Some(403), None);
        }
        event
    }

    #[test]
    fn a_tally_counts_tools_denials_and_duration_categories() {
        let events = vec![
            call(
                "alice",
                "echo",
                Decision::Allow,
                Some(Duration::from_millis(5)),
            ),
            call(
                "alice",
                "echo",
                Decision::Allow,
                Some(Duration::from_secs(20)),
            ),
            call("alice", "admin.stats", Decision::Deny, None),
            call(
                "bob",
                "echo",
                Decision::Allow,
                Some(Duration::from_millis(1)),
            ),
            AuditEvent::new(Category::RateLimit)
                .subject("bob")
                .tool("echo")
                .decision(Decision::Deny, "rate limit `user`"),
        ];
        let tally = Tally::of(&events);
        assert_eq!(tally.events, 5);
        assert_eq!(tally.denied, 2);
        assert_eq!(tally.count(Category::ToolCall), 4);
        assert_eq!(tally.count(Category::RateLimit), 1);
        assert_eq!(tally.users["alice"], 3);
        let echo = &tally.tools["echo"];
        assert_eq!((echo.calls, echo.denied, echo.timed), (4, 1, 3));
        assert_eq!(echo.durations["quick_action"], 2);
        assert_eq!(echo.durations["extended_usage"], 1);
        assert_eq!(tally.tools["admin.stats"].denied, 1);
        let top = tally.top_tools(1);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0]["tool"], "echo");
        let avg = top[0]["avg_latency_ms"].as_f64().unwrap();
        assert!((avg - 20006.0 / 3.0).abs() < 1e-6, "{avg}");
        assert_eq!(tally.time_of_day.values().sum::<u64>(), 5);
        assert!(tally.first <= tally.last);
    }

    #[test]
    fn failed_outcomes_count_as_failures_not_denials() {
        let event = AuditEvent::new(Category::ToolCall)
            .subject("carol")
            .tool("echo")
            .decision(Decision::Allow, "test")
            .outcome(
                OutcomeStatus::Error,
                Some(502),
                Some(Duration::from_millis(3)),
            );
        let tally = Tally::of(&[event]);
        assert_eq!(tally.tools["echo"].failed, 1);
        assert_eq!(tally.tools["echo"].denied, 0);
        assert_eq!(tally.denied, 0);
    }
}
