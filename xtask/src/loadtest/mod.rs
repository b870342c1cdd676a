//! `cargo xtask loadtest`: the peers' MCP workload (wrk + `mcp_load.lua`, RS256 tokens,
//! 64 connections, pinned CPUs) against the bare upstream and the gateway in several
//! configurations, with server CPU per request and a table against the peers' numbers.
//! See `xtask/LOADTEST.md`.

mod measure;
mod process;
mod profile;
mod report;
mod setup;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};

use measure::{Load, LoadSpec};
use process::{ECHO_CALL, JwksServer, Launch, Server, ensure_port_free, post_mcp};
use report::RunRecord;
use setup::{AuditSink, GatewayWiring, Profile, TokenSet, Upstream};

/// Runs the peers' MCP workload against the bare upstream and the gateway, and prints req/s,
/// p50/p99 and server CPU per request with ratios against the peers' published numbers.
///
/// Quick run: the defaults (3 s warm-up, 1 x 10 s). The benchmark contract of the peers:
/// `--warmup 5 --duration 20 --runs 3`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask loadtest")]
struct Options {
    /// The peers' benchmark folder (mcp_load.lua, mint_tokens.py with its .venv, mini_mcp).
    /// Default: ../shared/peers next to the workspace.
    #[arg(long)]
    peers: Option<PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    duration: u32,
    /// Unmeasured warm-up seconds before each scenario's first run (0 = none).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=120))]
    warmup: u32,
    /// Measured runs per scenario.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    conns: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// CPUs of the servers (gateway and upstream), a taskset list; "" = unpinned.
    #[arg(long, default_value = "1")]
    server_cpus: String,
    /// CPUs of wrk, a taskset list; "" = unpinned.
    #[arg(long, default_value = "0")]
    load_cpus: String,
    /// CPUs of the upstream while a gateway scenario is measured, a taskset list (default:
    /// the server CPUs, so the gateway and its upstream share them). With "0" the upstream
    /// shares wrk's CPU instead and the gateway has CPU 1 to itself, as when gateway and
    /// upstream run on different hosts: the gateway's CPU time then holds no context
    /// switches to and from the upstream. The bare upstream is always measured on the
    /// server CPUs.
    #[arg(long)]
    upstream_cpus: Option<String>,
    /// Scenarios to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "upstream,full,auth,auth-off,cache-off,inproc"
    )]
    scenarios: Vec<Scenario>,
    /// Distinct tokens minted for the `uncached` scenario (not run by default); split evenly
    /// over the runs, each slice should exceed the requests of one run (a warning says when
    /// it did not).
    #[arg(long, default_value_t = 100_000)]
    uncached_tokens: usize,
    /// The durable audit sink of the full chain.
    #[arg(long, value_enum, default_value = "jsonl")]
    audit_sink: AuditSink,
    /// Port of the upstream (mini_mcp) on 127.0.0.1.
    #[arg(long, default_value_t = 9100)]
    upstream_port: u16,
    /// Port of the gateway on 127.0.0.1.
    #[arg(long, default_value_t = 9200)]
    gateway_port: u16,
    /// Use the existing target/release/mcp-gateway instead of building it.
    #[arg(long)]
    no_build: bool,
    /// After each gateway scenario, profile one more (unrecorded) run with `perf record
    /// --call-graph dwarf` and print the hottest symbols and the share of each part of the
    /// request path (reports in target/loadtest/perf-*.txt).
    #[arg(long)]
    perf: bool,
}

impl Options {
    /// An upper bound of one scenario's wall-clock time: warm-up, runs, the profiled run,
    /// plus ten minutes for start-up, checks and token files.
    fn scenario_time(&self) -> Duration {
        let load = self.warmup + self.runs * self.duration + u32::from(self.perf) * self.duration;
        Duration::from_secs(u64::from(load) + 600)
    }
}

/// The measured configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// mini_mcp alone, no token (the floor and the load generator's reference).
    Upstream,
    /// The gateway with JWT, RBAC, rate limits, durable audit and metrics; 1000 tokens.
    Full,
    /// Authentication only: JWT (validated-token cache hits); RBAC allow-all, no rate
    /// limits, audit and metrics off; 1000 tokens.
    Auth,
    /// As `auth` with authentication off (`auth.mode = "none"`): the baseline of the RS256
    /// target. The requests still carry the tokens (same bytes on the wire).
    AuthOff,
    /// As `auth` with the token cache off (`auth.token_cache_capacity = 0`): every request's
    /// RS256 signature is verified; 1000 tokens.
    CacheOff,
    /// As `auth` (cache on), but every request carries a token the gateway has not seen:
    /// verification plus a cache insertion per request.
    Uncached,
    /// As `full`, with the demo tools served inside the gateway (`kind = "in-process"`)
    /// instead of `mini_mcp`: no upstream hop, the comparison with FastMCP, which serves its
    /// tool in-process too.
    Inproc,
}

impl Scenario {
    fn key(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Full => "full",
            Self::Auth => "auth",
            Self::AuthOff => "auth-off",
            Self::CacheOff => "cache-off",
            Self::Uncached => "uncached",
            Self::Inproc => "inproc",
        }
    }
}

/// Progress and warnings go to stderr; the table goes to stdout.
pub(crate) fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "loadtest: {message}");
}

/// Everything one measurement needs.
struct Bench {
    spec: LoadSpec,
    options: Options,
    work: PathBuf,
    ticks: f64,
    results: std::fs::File,
    records: Vec<RunRecord>,
}

/// One scenario's measurement target.
struct Target {
    scenario: &'static str,
    title: String,
    url: String,
    server_pid: u32,
    upstream_pid: Option<u32>,
    warmup_tokens: Option<PathBuf>,
    /// The tokens of the `--perf` run.
    profile_tokens: Option<PathBuf>,
    /// The tokens of each run (`None`: no `Authorization` header).
    run_tokens: Vec<Option<PathBuf>>,
}

/// `cargo xtask loadtest [OPTIONS]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse_from(
        std::iter::once("cargo xtask loadtest".to_owned()).chain(args.iter().cloned()),
    );
    let peers = options
        .peers
        .clone()
        .unwrap_or_else(|| root.join("../shared/peers"));
    let peers = peers
        .canonicalize()
        .with_context(|| format!("peers folder {} not found (--peers DIR)", peers.display()))?;
    if Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!("wrk is not installed (apt-get install -y wrk)");
    }
    let work = root.join("target/loadtest");
    std::fs::create_dir_all(&work)?;
    let command_line = format!("cargo xtask loadtest {}", args.join(" "));
    say(&format!("{command_line}; machine: {}", uptime()));

    let gateway_bin = if options.no_build {
        setup::gateway_binary(root)?
    } else {
        setup::build_gateway(root)?
    };
    let upstream_bin = setup::upstream_binary(&peers)?;
    let tokens = setup::ensure_tokens(&peers, &work.join("tokens"), 1000, None)?;
    let uncached_slices = if options.scenarios.contains(&Scenario::Uncached) {
        let set = setup::ensure_tokens(
            &peers,
            &work.join("uncached"),
            options.uncached_tokens,
            Some(&tokens),
        )?;
        // One slice per measured run, and one for the profiled run.
        let parts = options.runs as usize + usize::from(options.perf);
        setup::split_tokens(&set.tokens(), parts, &work.join("uncached"))?
    } else {
        Vec::new()
    };
    let jwks_body = std::fs::read_to_string(tokens.jwks())?;
    let jwks = JwksServer::start(jwks_body)?;

    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], options.upstream_port));
    ensure_port_free(upstream_addr)?;
    let scenario_time = options.scenario_time();
    let scenarios_run = u32::try_from(options.scenarios.len())?;
    let mut upstream = Server::spawn(&Launch {
        name: "mini_mcp",
        cpus: &options.server_cpus,
        program: &upstream_bin,
        args: &[upstream_addr.to_string()],
        envs: &[("MINI_MCP_THREADS", "1")],
        log: &work.join("mini_mcp.log"),
        lifetime: scenario_time * scenarios_run.max(1),
    })?;
    upstream.wait_ready(upstream_addr)?;
    let answer = post_mcp(upstream_addr, None, ECHO_CALL)?;
    if !answer.is_rpc_success() {
        bail!("mini_mcp pre-flight failed: {answer:?}");
    }

    let results_path = work.join("results.jsonl");
    let mut bench = Bench {
        spec: LoadSpec {
            peers: peers.clone(),
            load_cpus: options.load_cpus.clone(),
            conns: options.conns,
            threads: options.threads,
        },
        results: OpenOptions::new()
            .create(true)
            .append(true)
            .open(&results_path)?,
        ticks: measure::clock_ticks(),
        work: work.clone(),
        records: Vec::new(),
        options,
    };
    let upstream_url = format!("http://{upstream_addr}/mcp");
    let scenarios = bench.options.scenarios.clone();
    for scenario in scenarios {
        match scenario {
            Scenario::Upstream => {
                if bench.options.upstream_cpus.is_some() {
                    upstream.pin(&bench.options.server_cpus)?;
                }
                let target = Target {
                    scenario: scenario.key(),
                    title: "bare upstream (mini_mcp, no auth)".to_owned(),
                    url: upstream_url.clone(),
                    server_pid: upstream.pid(),
                    upstream_pid: None,
                    warmup_tokens: None,
                    profile_tokens: None,
                    run_tokens: vec![None; bench.options.runs as usize],
                };
                bench.measure(&target, &mut [&mut upstream])?;
            }
            Scenario::Full
            | Scenario::Auth
            | Scenario::AuthOff
            | Scenario::CacheOff
            | Scenario::Uncached
            | Scenario::Inproc => {
                if let Some(cpus) = &bench.options.upstream_cpus {
                    upstream.pin(cpus)?;
                }
                let runs = bench.options.runs as usize;
                let chain = format!(
                    "full chain (JWT + RBAC + rate limits + audit {} + metrics), 1000 tokens",
                    match bench.options.audit_sink {
                        AuditSink::Jsonl => "JSONL",
                        AuditSink::Sqlite => "SQLite",
                    }
                );
                let in_process = scenario == Scenario::Inproc;
                let (profile, title, run_tokens, profile_tokens) = match scenario {
                    Scenario::Full | Scenario::Inproc => (
                        Profile::FullChain(bench.options.audit_sink),
                        if in_process {
                            format!("gateway in-process demo tools (no upstream hop), {chain}")
                        } else {
                            format!("gateway {chain}")
                        },
                        vec![Some(tokens.tokens()); runs],
                        Some(tokens.tokens()),
                    ),
                    Scenario::Auth => (
                        Profile::AuthOnly { cache: true },
                        "gateway auth only (JWT, token cache hits; RBAC allow-all, no limits, audit and metrics off), 1000 tokens"
                            .to_owned(),
                        vec![Some(tokens.tokens()); runs],
                        Some(tokens.tokens()),
                    ),
                    Scenario::AuthOff => (
                        Profile::AuthOff,
                        "gateway auth off (auth.mode = none; RBAC allow-all, no limits, audit and metrics off)"
                            .to_owned(),
                        vec![Some(tokens.tokens()); runs],
                        Some(tokens.tokens()),
                    ),
                    Scenario::CacheOff => (
                        Profile::AuthOnly { cache: false },
                        "gateway auth only, token cache off (RS256 verified per request), 1000 tokens"
                            .to_owned(),
                        vec![Some(tokens.tokens()); runs],
                        Some(tokens.tokens()),
                    ),
                    _ => (
                        Profile::AuthOnly { cache: true },
                        "gateway auth only, uncached RS256 (every token new, cache on)".to_owned(),
                        uncached_slices
                            .iter()
                            .take(runs)
                            .cloned()
                            .map(Some)
                            .collect(),
                        uncached_slices.get(runs).cloned(),
                    ),
                };
                let dir = bench.work.join(format!("gateway-{}", scenario.key()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let wiring = GatewayWiring {
                    port: bench.options.gateway_port,
                    upstream: if in_process {
                        Upstream::InProcess
                    } else {
                        Upstream::Http(upstream_url.clone())
                    },
                    jwks_url: jwks.url(),
                    dir: dir.clone(),
                };
                let config = dir.join("gateway.toml");
                std::fs::write(&config, setup::gateway_config(profile, &wiring))?;
                let mut gateway = start_gateway(
                    &bench.options,
                    &gateway_bin,
                    &config,
                    &dir,
                    &tokens,
                    profile != Profile::AuthOff,
                )?;
                let target = Target {
                    scenario: scenario.key(),
                    title,
                    url: format!("http://127.0.0.1:{}/mcp", bench.options.gateway_port),
                    server_pid: gateway.pid(),
                    upstream_pid: (!in_process).then(|| upstream.pid()),
                    warmup_tokens: Some(tokens.tokens()),
                    profile_tokens,
                    run_tokens,
                };
                bench.measure(&target, &mut [&mut gateway, &mut upstream])?;
                if bench.options.perf {
                    bench.profile(&target)?;
                }
                gateway.stop()?;
            }
        }
    }
    upstream.stop()?;
    drop(jwks);

    let summaries = report::summarize(&bench.records);
    let text = format!(
        "{}\n{}\ncommand: `{command_line}` (server CPUs `{}`, upstream CPUs under the gateway `{}`, \
         wrk CPUs `{}`, {} conns, {} wrk thread(s), warm-up {} s, {} x {} s)\nmachine after: {}\n\
         per-run records: {}\n",
        report::table(&summaries),
        report::targets(&summaries),
        bench.options.server_cpus,
        bench
            .options
            .upstream_cpus
            .as_deref()
            .unwrap_or(&bench.options.server_cpus),
        bench.options.load_cpus,
        bench.options.conns,
        bench.options.threads,
        bench.options.warmup,
        bench.options.runs,
        bench.options.duration,
        uptime(),
        results_path.display(),
    );
    std::fs::write(work.join("summary.md"), &text)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Starts the gateway pinned, waits for its port and checks that a valid token gets the
/// echo result and a missing token gets 401 (200 when `authenticates` is false).
fn start_gateway(
    options: &Options,
    binary: &Path,
    config: &Path,
    dir: &Path,
    tokens: &TokenSet,
    authenticates: bool,
) -> Result<Server> {
    let addr = SocketAddr::from(([127, 0, 0, 1], options.gateway_port));
    ensure_port_free(addr)?;
    let args = [
        "serve".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let mut gateway = Server::spawn(&Launch {
        name: "mcp-gateway",
        cpus: &options.server_cpus,
        program: binary,
        args: &args,
        envs: &[],
        log: &dir.join("gateway.log"),
        lifetime: options.scenario_time(),
    })?;
    gateway.wait_ready(addr)?;
    let ok = post_mcp(addr, Some(&tokens.first_token()?), ECHO_CALL)?;
    if !ok.is_rpc_success() {
        bail!(
            "gateway pre-flight: a valid token got {} {}; log:\n{}",
            ok.status,
            ok.body,
            process::log_tail(&dir.join("gateway.log"))
        );
    }
    let anonymous = post_mcp(addr, None, ECHO_CALL)?;
    let expected = if authenticates { 401 } else { 200 };
    if anonymous.status != expected {
        bail!(
            "gateway pre-flight: no token got {} instead of {expected}",
            anonymous.status
        );
    }
    Ok(gateway)
}

/// `uptime`'s line (load averages), for the record.
fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "uptime unavailable".to_owned())
}

impl Bench {
    /// Warm-up, then the measured runs of `target`; `servers` are checked after every run.
    fn measure(&mut self, target: &Target, servers: &mut [&mut Server]) -> Result<()> {
        let scratch = self.work.clone();
        if self.options.warmup > 0 {
            say(&format!(
                "{}: warm-up {} s",
                target.scenario, self.options.warmup
            ));
            measure::run_wrk(
                &self.spec,
                Load {
                    url: &target.url,
                    tokens: target.warmup_tokens.as_deref(),
                    seconds: self.options.warmup,
                    label: "warmup",
                },
                &scratch,
            )?;
        }
        for (index, tokens) in target.run_tokens.iter().enumerate() {
            let run = u32::try_from(index + 1)?;
            let loadavg1 = measure::loadavg1();
            let s0 = measure::process_ticks(target.server_pid)?;
            let u0 = target
                .upstream_pid
                .map(measure::process_ticks)
                .transpose()?;
            let b0 = measure::system_busy_ticks()?;
            let wrk = measure::run_wrk(
                &self.spec,
                Load {
                    url: &target.url,
                    tokens: tokens.as_deref(),
                    seconds: self.options.duration,
                    label: target.scenario,
                },
                &scratch,
            )?;
            let s1 = measure::process_ticks(target.server_pid)?;
            let u1 = target
                .upstream_pid
                .map(measure::process_ticks)
                .transpose()?;
            let b1 = measure::system_busy_ticks()?;
            for server in servers.iter_mut() {
                server.check_alive()?;
            }
            let requests = wrk.num("requests");
            if requests <= 0.0 {
                bail!(
                    "{}: wrk completed no requests: {}",
                    target.scenario,
                    wrk.result
                );
            }
            let seconds = |a: u64, b: u64| b.saturating_sub(a) as f64 / self.ticks;
            let server_s = seconds(s0, s1);
            let upstream_s = u0.zip(u1).map(|(a, b)| seconds(a, b));
            let foreign = wrk
                .wrk_cpu_s
                .map(|w| seconds(b0, b1) - server_s - upstream_s.unwrap_or(0.0) - w);
            let record = RunRecord {
                scenario: target.scenario,
                title: target.title.clone(),
                run,
                rps: wrk.num("rps"),
                p50_ms: wrk.num("p50_ms"),
                p99_ms: wrk.num("p99_ms"),
                requests,
                errors: wrk.num("bad_status") + wrk.num("rpc_errors") + wrk.socket_errors(),
                server_cpu_ms: server_s * 1000.0 / requests,
                upstream_cpu_ms: upstream_s.map(|u| u * 1000.0 / requests),
                foreign_cpu_s: foreign,
                rss_mb: measure::rss_mb(target.server_pid),
                loadavg1,
                raw: wrk.result.clone(),
            };
            writeln!(self.results, "{}", record.to_json())?;
            say(&format!(
                "{} run {run}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms, server CPU {:.4} ms/req{}, errors {:.0}, foreign CPU {}",
                target.scenario,
                record.rps,
                record.p50_ms,
                record.p99_ms,
                record.server_cpu_ms,
                record
                    .upstream_cpu_ms
                    .map_or_else(String::new, |u| format!(" (+ upstream {u:.4})")),
                record.errors,
                foreign.map_or_else(|| "?".to_owned(), |f| format!("{f:.1} s")),
            ));
            if let Some(path) = tokens {
                let distinct = std::fs::read(path)?.iter().filter(|b| **b == b'\n').count();
                if target.scenario == Scenario::Uncached.key() && requests > distinct as f64 {
                    say(&format!(
                        "uncached run {run} sent {requests:.0} requests over {distinct} tokens: some were \
                         repeated and may have hit the token cache (raise --uncached-tokens)"
                    ));
                }
            }
            if record.errors > 0.0 {
                say(&format!(
                    "{} run {run}: statuses {}",
                    target.scenario, wrk.result["statuses"]
                ));
            }
            self.records.push(record);
        }
        Ok(())
    }

    /// One extra (unrecorded) run with `perf record` attached to the server; prints the
    /// hottest symbols and the share of each part of the request path.
    fn profile(&self, target: &Target) -> Result<()> {
        let load = || {
            measure::run_wrk(
                &self.spec,
                Load {
                    url: &target.url,
                    tokens: target.profile_tokens.as_deref(),
                    seconds: self.options.duration,
                    label: "perf",
                },
                &self.work,
            )
            .map(drop)
        };
        let summary = profile::profile(
            &self.work,
            target.scenario,
            target.server_pid,
            self.options.duration,
            load,
        )?;
        say(&format!(
            "{} profile (target/loadtest/perf-{}.txt):\n{summary}",
            target.scenario, target.scenario
        ));
        Ok(())
    }
}
