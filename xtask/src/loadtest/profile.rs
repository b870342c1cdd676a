//! `--perf`: one extra, unrecorded run with `perf record --call-graph dwarf` attached to the
//! server, reported as the hottest symbols (self time) and as the share of samples spent
//! under each part of the request path (inclusive time).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

/// Parts of the gateway's CPU, each recognised by substrings of a stack frame's symbol.
/// A sample counts for a part when any frame of its stack matches; parts overlap (a malloc
/// under the upstream client counts for both).
const PARTS: &[(&str, &[&str])] = &[
    (
        "upstream hop (mcp_gateway::upstream, reqwest and hyper client)",
        &[
            "StreamableHttpClientWorker",
            "reqwest::",
            "mcp_gateway::upstream",
        ],
    ),
    ("authentication (mcp-auth-core)", &["mcp_auth_core::"]),
    ("rate limiting (mcp-ratelimit)", &["mcp_ratelimit::"]),
    ("authorization (mcp-rbac)", &["mcp_rbac::"]),
    ("audit (mcp-audit)", &["mcp_audit::"]),
    ("metrics (mcp-metrics)", &["mcp_metrics::"]),
    ("JSON (serde_json)", &["serde_json::"]),
    ("socket writes (writev, loopback delivery)", &["writev"]),
    ("socket reads", &["tcp_recvmsg", "recvfrom"]),
    (
        "heap (malloc, free, realloc)",
        &["malloc", "_int_free", "cfree", "realloc"],
    ),
    ("memcpy / memmove", &["memmove", "memcpy"]),
];

/// Records `pid` for `seconds` while `load` runs, then writes `perf-{name}.txt` into `work`
/// and returns its summary (or why there is none).
pub(crate) fn profile(
    work: &Path,
    name: &str,
    pid: u32,
    seconds: u32,
    load: impl FnOnce() -> Result<()>,
) -> Result<String> {
    let data = work.join(format!("perf-{name}.data"));
    let mut perf = Command::new("perf")
        .args(["record", "--call-graph", "dwarf,32768", "-F", "299", "-o"])
        .arg(&data)
        .arg("-p")
        .arg(pid.to_string())
        .arg("--")
        .arg("sleep")
        .arg(seconds.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run perf (install linux-perf, or run without --perf)")?;
    let loaded = load();
    let status = perf.wait()?;
    loaded?;
    if !status.success() {
        return Ok(format!("perf record failed ({status}); no profile"));
    }
    let flat = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--sort",
            "dso,symbol",
        ])
        .args(["--percent-limit", "0.7", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("cannot run perf report")?;
    let flat = String::from_utf8_lossy(&flat.stdout);
    let script = Command::new("perf")
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("cannot run perf script")?;
    let stacks = parse_stacks(&String::from_utf8_lossy(&script.stdout));

    let mut text = String::new();
    let _ = writeln!(text, "hottest symbols (self time):");
    for line in flat
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .take(12)
    {
        // perf pads the line with empty "-" columns (no parent symbol, no caller).
        let words: Vec<&str> = line.split_whitespace().collect();
        let end = words.iter().rposition(|w| *w != "-").map_or(0, |i| i + 1);
        let _ = writeln!(text, "  {}", words[..end].join(" "));
    }
    let _ = writeln!(
        text,
        "share of {} samples under each part of the request path (inclusive; parts overlap):",
        stacks.len()
    );
    for (part, share) in breakdown(&stacks) {
        let _ = writeln!(text, "  {share:5.1}%  {part}");
    }
    std::fs::write(
        work.join(format!("perf-{name}.txt")),
        format!("{text}\n{flat}"),
    )?;
    Ok(text)
}

/// The samples of `perf script -F comm,ip,sym`: a header line, then one indented
/// `ADDRESS SYMBOL` line per frame, then a blank line.
fn parse_stacks(script: &str) -> Vec<Vec<String>> {
    let mut stacks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in script.lines() {
        if line.starts_with('\t') {
            let frame = line.trim();
            let symbol = frame.split_once(' ').map_or(frame, |(_, s)| s);
            current.push(symbol.to_owned());
        } else if !current.is_empty() {
            stacks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        stacks.push(current);
    }
    stacks
}

/// Per part of [`PARTS`], the percentage of stacks with a matching frame.
fn breakdown(stacks: &[Vec<String>]) -> Vec<(&'static str, f64)> {
    PARTS
        .iter()
        .map(|(part, needles)| {
            let hits = stacks
                .iter()
                .filter(|stack| {
                    stack
                        .iter()
                        .any(|frame| needles.iter().any(|n| frame.contains(n)))
                })
                .count();
            let share = if stacks.is_empty() {
                0.0
            } else {
                100.0 * hits as f64 / stacks.len() as f64
            };
            (*part, share)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "tokio-rt-worker \n\
        \t           97943 _int_malloc\n\
        \t          b7bb3d reqwest::async_impl::client::Client::execute_request\n\
        \n\
        tokio-rt-worker \n\
        \t          12345 mcp_auth_core::token_cache::TokenCache::get\n\
        \t          12346 mcp_gateway::gateway::mcp_post::{{closure}}\n";

    #[test]
    fn stacks_are_split_on_headers_and_keep_symbols() {
        let stacks = parse_stacks(SCRIPT);
        assert_eq!(stacks.len(), 2);
        assert_eq!(
            stacks[0],
            [
                "_int_malloc",
                "reqwest::async_impl::client::Client::execute_request"
            ]
        );
        assert_eq!(stacks[1][0], "mcp_auth_core::token_cache::TokenCache::get");
    }

    #[test]
    fn breakdown_counts_a_stack_once_per_part() {
        let shares = breakdown(&parse_stacks(SCRIPT));
        let get = |name: &str| {
            shares
                .iter()
                .find(|(p, _)| p.starts_with(name))
                .map(|(_, s)| *s)
                .unwrap()
        };
        assert!((get("upstream hop") - 50.0).abs() < 1e-9);
        assert!((get("authentication") - 50.0).abs() < 1e-9);
        assert!((get("heap") - 50.0).abs() < 1e-9);
        assert!(get("audit").abs() < 1e-9);
    }
}
