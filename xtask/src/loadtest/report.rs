//! The load test's results: one record per measured run, the summary table (median over
//! runs) with ratios against the peers' published numbers, and the issue's targets.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// FastMCP peer (A), auth on, 1000 tokens, pinned, 1 worker: server CPU ms per request
/// (peers' README, "Measured here", 2026-11-21).
pub(crate) const FASTMCP_CPU_MS: f64 = 3.24;
/// FastMCP peer (A), same scenario: requests per second.
pub(crate) const FASTMCP_RPS: f64 = 308.0;
/// Rust peer C (rmcp + jsonwebtoken, no cache), auth on, 1000 tokens, pinned: CPU ms/request.
pub(crate) const PEER_C_CPU_MS: f64 = 0.094;
/// Rust peer C, same scenario: requests per second.
pub(crate) const PEER_C_RPS: f64 = 10_643.0;

/// Target: the gateway's own CPU per request with the full chain, when proxying.
pub(crate) const TARGET_FULL_CPU_MS: f64 = 0.040;
/// Target: extra CPU per request of the cache-free RS256 path over the auth-off path.
pub(crate) const TARGET_RS256_EXTRA_MS: f64 = 0.035;
/// Target: in-process tools serve at least this many times FastMCP's requests per second.
pub(crate) const TARGET_INPROCESS_FACTOR: f64 = 100.0;

/// One measured wrk run of one scenario.
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    /// Scenario key (`upstream`, `full`, `auth`, `auth-off`, `cache-off`, `uncached`,
    /// `inproc`).
    pub(crate) scenario: &'static str,
    /// Human description of the scenario.
    pub(crate) title: String,
    /// 1-based run number.
    pub(crate) run: u32,
    /// Requests per second.
    pub(crate) rps: f64,
    /// Median latency, ms.
    pub(crate) p50_ms: f64,
    /// 99th percentile latency, ms.
    pub(crate) p99_ms: f64,
    /// Requests wrk completed.
    pub(crate) requests: f64,
    /// Unexpected statuses + JSON-RPC errors + socket errors.
    pub(crate) errors: f64,
    /// CPU ms per request of the server under test (the gateway, or the bare upstream).
    pub(crate) server_cpu_ms: f64,
    /// CPU ms per request of the upstream behind the gateway.
    pub(crate) upstream_cpu_ms: Option<f64>,
    /// CPU seconds used during the run by anything but the servers and wrk.
    pub(crate) foreign_cpu_s: Option<f64>,
    /// The server's resident memory after the run, MiB.
    pub(crate) rss_mb: Option<f64>,
    /// 1-minute load average before the run.
    pub(crate) loadavg1: Option<f64>,
    /// wrk's raw `RESULT` object.
    pub(crate) raw: Value,
}

impl RunRecord {
    /// The record as one JSON line of the results file.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "title": self.title,
            "run": self.run,
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "errors": self.errors,
            "server_cpu_ms_per_req": self.server_cpu_ms,
            "upstream_cpu_ms_per_req": self.upstream_cpu_ms,
            "foreign_cpu_s": self.foreign_cpu_s,
            "server_rss_mb": self.rss_mb,
            "loadavg1_before": self.loadavg1,
            "wrk": self.raw,
        })
    }
}

/// The median of `values` (NaN when empty).
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// The median-over-runs summary of one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Scenario key.
    pub(crate) scenario: &'static str,
    /// Human description.
    pub(crate) title: String,
    /// Runs summarised.
    pub(crate) runs: usize,
    /// Median, minimum and maximum requests per second.
    pub(crate) rps: (f64, f64, f64),
    /// Median p50, ms.
    pub(crate) p50_ms: f64,
    /// Median p99, ms.
    pub(crate) p99_ms: f64,
    /// Median server CPU ms per request.
    pub(crate) server_cpu_ms: f64,
    /// Median upstream CPU ms per request.
    pub(crate) upstream_cpu_ms: Option<f64>,
    /// Errors over all runs.
    pub(crate) errors: f64,
    /// Largest foreign CPU seconds of any run.
    pub(crate) foreign_cpu_s: Option<f64>,
}

/// Summarises the records of each scenario, in the order scenarios first appear.
pub(crate) fn summarize(records: &[RunRecord]) -> Vec<Summary> {
    let mut order: Vec<&'static str> = Vec::new();
    for r in records {
        if !order.contains(&r.scenario) {
            order.push(r.scenario);
        }
    }
    order
        .into_iter()
        .map(|scenario| {
            let runs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario == scenario).collect();
            let pick =
                |f: fn(&RunRecord) -> f64| -> Vec<f64> { runs.iter().map(|r| f(r)).collect() };
            let rps = pick(|r| r.rps);
            let upstream: Vec<f64> = runs.iter().filter_map(|r| r.upstream_cpu_ms).collect();
            Summary {
                scenario,
                title: runs.first().map(|r| r.title.clone()).unwrap_or_default(),
                runs: runs.len(),
                rps: (
                    median(&mut rps.clone()),
                    rps.iter().copied().fold(f64::INFINITY, f64::min),
                    rps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ),
                p50_ms: median(&mut pick(|r| r.p50_ms)),
                p99_ms: median(&mut pick(|r| r.p99_ms)),
                server_cpu_ms: median(&mut pick(|r| r.server_cpu_ms)),
                upstream_cpu_ms: (!upstream.is_empty()).then(|| median(&mut upstream.clone())),
                errors: runs.iter().map(|r| r.errors).sum(),
                foreign_cpu_s: runs
                    .iter()
                    .filter_map(|r| r.foreign_cpu_s)
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
            }
        })
        .collect()
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary table (Markdown), with ratios against the peers.
pub(crate) fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | req/s median [min-max] | p50 ms | p99 ms | server CPU ms/req | upstream CPU ms/req \
         | errors | foreign CPU s | FastMCP CPU / this | this rps / FastMCP | peer C CPU / this | this rps / peer C |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for s in summaries {
        let (rps, lo, hi) = s.rps;
        let range = if s.runs > 1 {
            format!(" [{lo:.0}-{hi:.0}]")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {rps:.0}{range} | {:.2} | {:.2} | {} | {} | {:.0} | {} | {:.0}x | {:.1}x | {:.2}x | {:.2}x |",
            s.title,
            s.p50_ms,
            s.p99_ms,
            ms(s.server_cpu_ms),
            s.upstream_cpu_ms.map_or_else(|| "-".to_owned(), ms),
            s.errors,
            s.foreign_cpu_s
                .map_or_else(|| "-".to_owned(), |f| format!("{f:.1}")),
            FASTMCP_CPU_MS / s.server_cpu_ms,
            rps / FASTMCP_RPS,
            PEER_C_CPU_MS / s.server_cpu_ms,
            rps / PEER_C_RPS,
        );
    }
    out
}

/// The issue's targets, each with the measured value and whether it is met.
pub(crate) fn targets(summaries: &[Summary]) -> String {
    let find = |key: &str| summaries.iter().find(|s| s.scenario == key);
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    let mut out = String::new();
    match find("full") {
        Some(full) => {
            let _ = writeln!(
                out,
                "- Gateway's own CPU per request, full chain, proxying: {} ms (target <= {TARGET_FULL_CPU_MS} ms): {}",
                ms(full.server_cpu_ms),
                verdict(full.server_cpu_ms <= TARGET_FULL_CPU_MS)
            );
        }
        None => out.push_str("- Full chain: not run.\n"),
    }
    match (find("cache-off"), find("auth-off")) {
        (Some(cache_off), Some(auth_off)) => {
            let extra = cache_off.server_cpu_ms - auth_off.server_cpu_ms;
            let _ = writeln!(
                out,
                "- Cache-free RS256 path above the auth-off path: {} ms (target <= {TARGET_RS256_EXTRA_MS} ms): {}",
                ms(extra),
                verdict(extra <= TARGET_RS256_EXTRA_MS)
            );
        }
        _ => out
            .push_str("- Cache-free RS256 path: needs the `cache-off` and `auth-off` scenarios.\n"),
    }
    let floor = TARGET_INPROCESS_FACTOR * FASTMCP_RPS;
    match find("inproc") {
        Some(inproc) => {
            let (rps, ..) = inproc.rps;
            let _ = writeln!(
                out,
                "- In-process tools, full chain: {rps:.0} req/s = {:.1}x FastMCP's {FASTMCP_RPS:.0} req/s \
                 (target >= {TARGET_INPROCESS_FACTOR:.0}x, >= {floor:.0} req/s): {}",
                rps / FASTMCP_RPS,
                verdict(rps >= floor)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "- In-process tools at >= {TARGET_INPROCESS_FACTOR:.0}x FastMCP's req/s (>= {floor:.0} req/s): \
                 needs the `inproc` scenario."
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &'static str, run: u32, rps: f64, cpu: f64) -> RunRecord {
        RunRecord {
            scenario,
            title: scenario.to_owned(),
            run,
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            requests: rps * 10.0,
            errors: 0.0,
            server_cpu_ms: cpu,
            upstream_cpu_ms: Some(0.01),
            foreign_cpu_s: Some(f64::from(run)),
            rss_mb: None,
            loadavg1: None,
            raw: Value::Null,
        }
    }

    #[test]
    fn summaries_take_medians_and_ranges_per_scenario() {
        let records = [
            record("full", 1, 100.0, 0.05),
            record("full", 2, 300.0, 0.03),
            record("full", 3, 200.0, 0.04),
            record("auth", 1, 500.0, 0.02),
        ];
        let s = summarize(&records);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].scenario, "full");
        assert_eq!(s[0].rps, (200.0, 100.0, 300.0));
        assert!((s[0].server_cpu_ms - 0.04).abs() < 1e-12);
        assert_eq!(s[0].foreign_cpu_s, Some(3.0));
        assert_eq!(s[1].runs, 1);
    }

    #[test]
    fn targets_compare_against_the_issue() {
        let records = [
            record("full", 1, 10_000.0, 0.039),
            record("auth-off", 1, 12_000.0, 0.020),
            record("cache-off", 1, 8_000.0, 0.060),
        ];
        let text = targets(&summarize(&records));
        assert!(
            text.contains("0.0390 ms (target <= 0.04 ms): MET"),
            "{text}"
        );
        assert!(
            text.contains("auth-off path: 0.0400 ms (target <= 0.035 ms): NOT MET"),
            "{text}"
        );
        let met = targets(&summarize(&[
            record("auth-off", 1, 12_000.0, 0.020),
            record("cache-off", 1, 9_000.0, 0.050),
        ]));
        assert!(met.contains("0.0300 ms (target <= 0.035 ms): MET"), "{met}");
        assert!(met.contains("Full chain: not run"), "{met}");
        assert!(met.contains("needs the `inproc` scenario"), "{met}");
    }

    #[test]
    fn the_in_process_target_is_a_hundred_times_fastmcp() {
        let text = |rps: f64| targets(&summarize(&[record("inproc", 1, rps, 0.02)]));
        let met = text(31_000.0);
        assert!(
            met.contains(
                "31000 req/s = 100.6x FastMCP's 308 req/s (target >= 100x, >= 30800 req/s): MET"
            ),
            "{met}"
        );
        let missed = text(30_000.0);
        assert!(missed.contains("97.4x"), "{missed}");
        assert!(missed.contains("req/s): NOT MET"), "{missed}");
    }

    #[test]
    fn even_counts_take_the_midpoint() {
        assert!((median(&mut [4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-12);
        assert!(median(&mut []).is_nan());
    }
}
