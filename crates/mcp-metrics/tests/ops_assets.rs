//! The shipped operations assets cannot drift from the code: every dashboard query and alert
//! expression names only families this crate exports, the required panels and alerts exist,
//! and `promtool check rules` accepts the rules file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: a failure must fail the test"
)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use mcp_metrics::FAMILY_NAMES;

fn docs(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(path)
}

/// PromQL words that look like metric names but are not.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "irate",
    "deriv",
    "histogram_quantile",
    "topk",
    "max",
    "min",
    "avg",
    "count",
    "clamp_min",
    "and",
    "or",
    "unless",
    "le",
    "on",
    "ignoring",
];

/// The metric names an expression selects: identifiers not followed by `(`, not label names
/// (inside `{...}` or `by (...)`), not keywords, and not inside quotes. Histogram series
/// suffixes are mapped back to the family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let (mut i, mut in_braces, mut in_quotes, mut paren_label_list) = (0, false, false, false);
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_quotes {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_quotes = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '{' => in_braces = true,
            '}' => in_braces = false,
            ')' => paren_label_list = false,
            '[' => {
                // Skip range durations such as [5m] and [$__rate_interval].
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            _ if c.is_ascii_digit() || c == '.' => {
                // A number such as 0.99 or 1e-9: not a name.
                while i < bytes.len()
                    && ((bytes[i] as char).is_ascii_alphanumeric()
                        || bytes[i] == b'.'
                        || (matches!(bytes[i], b'-' | b'+') && bytes[i - 1] == b'e'))
                {
                    i += 1;
                }
                continue;
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < bytes.len()
                    && ((bytes[i] as char).is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let rest = expr[i..].trim_start();
                if matches!(word, "by" | "without" | "on" | "ignoring") {
                    paren_label_list = true;
                } else if !in_braces
                    && !paren_label_list
                    && !rest.starts_with('(')
                    && !word.starts_with('$')
                    && !PROMQL_WORDS.contains(&word)
                {
                    names.insert(word.to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
        .into_iter()
        .map(|n| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = n.strip_suffix(suffix)
                    && FAMILY_NAMES.contains(&base)
                {
                    return base.to_owned();
                }
            }
            n
        })
        .collect()
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, method) (rate(mcp_request_duration_seconds_bucket{job=~"$job",tool!="x{y}"}[$__rate_interval]))) / clamp_min(sum(mcp_pool_max_connections), 1e-9)"#,
    );
    let want: BTreeSet<String> = ["mcp_request_duration_seconds", "mcp_pool_max_connections"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(names, want);
}

fn check_expr(where_: &str, expr: &str, used: &mut BTreeSet<String>) {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{where_}: no metric in {expr}");
    for name in names {
        assert!(
            FAMILY_NAMES.contains(&name.as_str()),
            "{where_}: `{name}` is not a family mcp-metrics exports (expr: {expr})"
        );
        used.insert(name);
    }
}

#[test]
fn dashboard_queries_use_only_exported_families() {
    let text = std::fs::read_to_string(docs("grafana/mcp-auth-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        panels.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
    }
    let graphs: Vec<_> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(graphs.len() >= 12, "only {} panels", graphs.len());

    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in &graphs {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id in {title}"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            check_expr(title, target["expr"].as_str().unwrap(), &mut used);
        }
    }
    // Each topic the issue names has a panel.
    for family in [
        "mcp_requests_total",            // request rate
        "mcp_request_errors_total",      // errors
        "mcp_request_duration_seconds",  // latency percentiles
        "mcp_auth_events_total",         // auth outcomes
        "mcp_rate_limit_hits_total",     // rate-limit hits
        "mcp_tool_calls_total",          // tool calls by tool
        "mcp_tenant_activity_total",     // tenant activity
        "mcp_token_refresh_total",       // token refresh
        "mcp_concurrent_users",          // concurrent users
        "mcp_audit_queue_depth",         // audit backlog
        "process_resident_memory_bytes", // process resources
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
    // The template variable query names a family too.
    let job_query = dashboard["templating"]["list"][1]["definition"]
        .as_str()
        .unwrap();
    assert!(job_query.contains("mcp_requests_total"));
}

/// One alert rule as read from the YAML by a line-based structural check.
#[derive(Debug, Default)]
struct Alert {
    name: String,
    expr: String,
    has_for: bool,
    severity: bool,
    summary: bool,
    runbook: bool,
}

fn parse_alerts(text: &str) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            alerts.push(Alert {
                name: name.trim().to_owned(),
                ..Alert::default()
            });
            continue;
        }
        let Some(alert) = alerts.last_mut() else {
            continue;
        };
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            alert.expr = expr.trim().to_owned();
        } else if trimmed.starts_with("for:") {
            alert.has_for = true;
        } else if trimmed.starts_with("severity:") {
            alert.severity = true;
        } else if trimmed.starts_with("summary:") {
            alert.summary = trimmed.len() > "summary: \"\"".len();
        } else if trimmed.starts_with("runbook:") {
            alert.runbook = trimmed.len() > "runbook: \"\"".len();
        }
    }
    alerts
}

#[test]
fn alert_rules_are_complete_and_use_only_exported_families() {
    let path = docs("prometheus/mcp-auth-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("groups:") && text.contains("rules:"));
    let alerts = parse_alerts(&text);
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    for required in [
        "McpAuthFailureSpike",
        "McpRateLimitStorm",
        "McpHighP99Latency",
        "McpHighErrorRatio",
        "McpTokenRefreshFailures",
        "McpJwksRefreshFailing",
        "McpAuditBacklogGrowing",
        "McpPoolSaturation",
    ] {
        assert!(names.contains(required), "missing alert {required}");
    }
    let mut used = BTreeSet::new();
    for alert in &alerts {
        assert!(
            alert.has_for && alert.severity,
            "{} needs for and severity",
            alert.name
        );
        assert!(
            alert.summary && alert.runbook,
            "{} needs a summary and a runbook note",
            alert.name
        );
        check_expr(&alert.name, &alert.expr, &mut used);
    }
    if let Some((ok, output)) = common::promtool(&["check", "rules", path.to_str().unwrap()], None)
    {
        assert!(ok, "promtool check rules failed:\n{output}");
    }
}
