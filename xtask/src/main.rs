//! Workspace automation: `cargo xtask ci` runs what CI runs; `cargo xtask bench` runs the
//! criterion benches and prints a table of bench ID to median; `cargo xtask loadtest` runs
//! the peers' MCP workload against the gateway (see `xtask/LOADTEST.md`).

mod loadtest;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                 run what CI runs (.ci/run: services, fmt, clippy, docs, tests)
  bench [ARGS...]    run the criterion benches (ARGS go to criterion, e.g. a filter
                     such as `auth/` or `--measurement-time 3`) and print bench ID -> median
  bench-table        print the table of the last bench results without running anything
  loadtest [OPTS]    the peers' wrk workload against the bare upstream and the gateway
                     (full chain, auth only, uncached RS256); `loadtest --help` for options";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root()?;
    match command.as_str() {
        "ci" => run(Command::new("bash").arg(root.join(".ci/run"))),
        "bench" => {
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["bench", "--workspace", "--all-features", "--"])
                .args(&rest))?;
            print_table(&root.join("target/criterion"))
        }
        "bench-table" => print_table(&root.join("target/criterion")),
        "loadtest" => loadtest::run(&root, &rest),
        _ => {
            eprintln_usage();
            bail!("unknown command `{command}`")
        }
    }
}

#[expect(clippy::print_stderr, reason = "usage text for a command-line tool")]
fn eprintln_usage() {
    eprintln!("{USAGE}");
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// One criterion result: its full bench ID and median in nanoseconds.
struct BenchResult {
    id: String,
    median_ns: f64,
}

/// Walks criterion's output (`<group>/<function>/new/{benchmark,estimates}.json`).
fn collect(dir: &Path, out: &mut Vec<BenchResult>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let benchmark = std::fs::read_to_string(path.join("benchmark.json"));
            let estimates = std::fs::read_to_string(path.join("estimates.json"));
            if let (Ok(benchmark), Ok(estimates)) = (benchmark, estimates) {
                let benchmark: serde_json::Value = serde_json::from_str(&benchmark)?;
                let estimates: serde_json::Value = serde_json::from_str(&estimates)?;
                let id = benchmark["full_id"].as_str().unwrap_or_default().to_owned();
                let median_ns = estimates["median"]["point_estimate"].as_f64();
                if let (false, Some(median_ns)) = (id.is_empty(), median_ns) {
                    out.push(BenchResult { id, median_ns });
                }
            }
        } else {
            collect(&path, out)?;
        }
    }
    Ok(())
}

fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

#[expect(clippy::print_stdout, reason = "the table is the command's output")]
fn print_table(dir: &Path) -> Result<()> {
    let mut results = Vec::new();
    if dir.exists() {
        collect(dir, &mut results)?;
    }
    if results.is_empty() {
        bail!("no criterion results under {}", dir.display());
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    let width = results.iter().map(|r| r.id.len()).max().unwrap_or(8).max(8);
    println!("| {:width$} | {:>12} |", "bench ID", "median");
    println!("| {:-<width$} | {:->12} |", "", "");
    for r in &results {
        println!("| {:width$} | {:>12} |", r.id, human(r.median_ns));
    }
    Ok(())
}
