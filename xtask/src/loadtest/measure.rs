//! One measured wrk run: CPU time of the servers from `/proc`, the whole machine's busy time,
//! and the `RESULT {json}` line that the peers' `mcp_load.lua` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// How the load generator is run.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    /// The peers' folder (holds `mcp_load.lua`).
    pub(crate) peers: PathBuf,
    /// `taskset` CPU list for wrk; empty means unpinned.
    pub(crate) load_cpus: String,
    /// Concurrent connections.
    pub(crate) conns: u32,
    /// wrk threads.
    pub(crate) threads: u32,
}

/// Where and what to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load<'a> {
    /// The endpoint, e.g. `http://127.0.0.1:9200/mcp`.
    pub(crate) url: &'a str,
    /// The bearer tokens (one per line, rotated), or `None` for no `Authorization` header.
    pub(crate) tokens: Option<&'a Path>,
    /// Seconds of load.
    pub(crate) seconds: u32,
    /// Copied into the result line.
    pub(crate) label: &'a str,
}

/// What wrk reported, plus its own CPU time when `/usr/bin/time` is there to measure it.
#[derive(Debug, Clone)]
pub(crate) struct WrkResult {
    /// The parsed `RESULT` JSON object.
    pub(crate) result: Value,
    /// wrk's user + system CPU seconds.
    pub(crate) wrk_cpu_s: Option<f64>,
}

impl WrkResult {
    /// A numeric field of the result (0 when absent).
    pub(crate) fn num(&self, key: &str) -> f64 {
        self.result.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    /// Socket errors and timeouts.
    pub(crate) fn socket_errors(&self) -> f64 {
        ["sock_connect", "sock_read", "sock_write", "timeouts"]
            .iter()
            .map(|k| self.num(k))
            .sum()
    }
}

const TIME: &str = "/usr/bin/time";

/// Runs wrk with the peers' `mcp_load.lua` (expecting 200 and a JSON-RPC result) and parses
/// its `RESULT` line. Bounded by `load.seconds` plus wrk's 5 s per-request timeout.
pub(crate) fn run_wrk(spec: &LoadSpec, load: Load<'_>, scratch: &Path) -> Result<WrkResult> {
    let script = spec.peers.join("mcp_load.lua");
    let time_file = scratch.join("wrk-time.txt");
    let timed = Path::new(TIME).exists();
    let mut argv: Vec<String> = Vec::new();
    if timed {
        argv.extend([TIME, "-o"].map(str::to_owned));
        argv.push(time_file.display().to_string());
        argv.extend(["-f", "%U %S"].map(str::to_owned));
    }
    if !spec.load_cpus.is_empty() {
        argv.extend([
            "taskset".to_owned(),
            "-c".to_owned(),
            spec.load_cpus.clone(),
        ]);
    }
    argv.extend([
        "wrk".to_owned(),
        format!("-t{}", spec.threads),
        format!("-c{}", spec.conns),
        format!("-d{}s", load.seconds),
        "--timeout".to_owned(),
        "5s".to_owned(),
        "-s".to_owned(),
        script.display().to_string(),
        load.url.to_owned(),
    ]);
    let tokens = load
        .tokens
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .env("TOKENS", tokens)
        .env("EXPECT", "200")
        .env("CHECK_BODY", "1")
        .env("LABEL", load.label)
        .output()
        .context("cannot run wrk (apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("wrk printed no RESULT line:\n{stdout}"))?;
    let result: Value =
        serde_json::from_str(line).with_context(|| format!("bad RESULT line: {line}"))?;
    let wrk_cpu_s = if timed {
        std::fs::read_to_string(&time_file)
            .ok()
            .and_then(|t| parse_time_output(&t))
    } else {
        None
    };
    Ok(WrkResult { result, wrk_cpu_s })
}

/// `/usr/bin/time -f "%U %S"` output (possibly after a "Command exited" line): user + system.
fn parse_time_output(text: &str) -> Option<f64> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut parts = line.split_whitespace().map(str::parse::<f64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(user)), Some(Ok(system))) => Some(user + system),
        _ => None,
    }
}

/// Clock ticks per second of the `/proc` CPU counters.
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU ticks of process `pid` (all its threads).
pub(crate) fn process_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    parse_process_ticks(&stat).with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
}

/// Fields 14 (utime) and 15 (stime) of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so counting starts after its closing parenthesis.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime = fields.get(14 - 3)?.parse::<u64>().ok()?;
    let stime = fields.get(15 - 3)?.parse::<u64>().ok()?;
    Some(utime + stime)
}

/// Busy ticks of all CPUs (user, nice, system, irq, softirq, steal), from `/proc/stat`.
pub(crate) fn system_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_system_busy(&stat).context("unexpected /proc/stat")
}

fn parse_system_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal
    let pick = |i: usize| values.get(i).copied().unwrap_or(0);
    Some(pick(0) + pick(1) + pick(2) + pick(5) + pick(6) + pick(7))
}

/// Resident set size of `pid` in MiB.
pub(crate) fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()?;
    Some(kb / 1024.0)
}

/// The 1-minute load average.
pub(crate) fn loadavg1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 3 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_process_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_process_ticks("garbage"), None);
    }

    #[test]
    fn system_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 20 30 1000 2000 40 50 60 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_system_busy(stat), Some(10 + 20 + 30 + 40 + 50 + 60));
    }

    #[test]
    fn time_output_is_user_plus_system() {
        assert_eq!(parse_time_output("1.50 0.25\n"), Some(1.75));
        assert_eq!(
            parse_time_output("Command exited with non-zero status 1\n0.5 0.5\n"),
            Some(1.0)
        );
        assert_eq!(parse_time_output("nonsense"), None);
    }
}
