//! `layer_instructions`: server-side instructions per HTTP request for a trivial axum handler
//! served over loopback HTTP/1.1 keep-alive, with and without [`mcp_metrics::MetricsLayer`],
//! counted by callgrind (deterministic where wall-clock benches on a busy machine are not).
//!
//! ```text
//! cargo bench -p mcp-metrics --all-features --bench layer_instructions [-- --requests 2000]
//! ```
//!
//! For each variant the bench runs itself under `valgrind --tool=callgrind`, once serving `N`
//! and once `2N` requests on one keep-alive connection, collecting only the server's thread
//! (`--toggle-collect` on the function that runs the server's runtime; the client is another
//! thread). Start-up, accept and first-request costs are the same in both runs, so
//! `(I(2N) - I(N)) / N` is what one request costs the server: hyper's parsing and writing,
//! axum's routing, tokio's I/O driver and the handler, plus the layer. Kernel time for the
//! socket calls is not counted, so the fraction is an upper bound on the layer's share of a
//! request's CPU time. The callgrind files stay in the printed directory for
//! `callgrind_annotate`. Without valgrind on `PATH` the bench says so and measures nothing.
//!
//! With `--cpu` (`cargo bench ... --bench layer_instructions -- --cpu [--requests 20000]
//! [--rounds 9]`) it runs without valgrind and reports the server thread's CPU time per
//! request instead: user plus system time as the scheduler accounts it, so the kernel's work
//! for the socket calls is included, over `N` requests (20 000 by default), for the handler
//! without and with the layer, the variants interleaved round by round. Instructions are
//! exact but leave the kernel out; CPU time has it all but varies with the machine's load.
//!
//! Run without `--bench` (as `cargo test --benches` does), it only serves a few requests per
//! variant without valgrind, to check the harness itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    reason = "benchmark harness: a failure must stop it, and its report is its output"
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use std::convert::Infallible;

use axum::ServiceExt;
use axum::extract::Request;
use axum::response::Response;
use tokio::sync::oneshot;
use tower::Service;

/// Serves the client's requests until `done` (with [`counted_server`]).
type Server = fn(&tokio::runtime::Runtime, TcpListener, oneshot::Receiver<()>);

/// One measured set-up.
struct Variant {
    name: &'static str,
    server: Server,
    /// Whether an info-level subscriber makes the request span live.
    logs: bool,
}

/// The variants, in report order; the first is the baseline.
const VARIANTS: [Variant; 6] = [
    Variant {
        name: "without_layer",
        server: |rt, listener, done| counted_server(rt, listener, support::plain_router(), done),
        logs: false,
    },
    Variant {
        name: "with_noop_layer",
        server: |rt, listener, done| {
            counted_server(rt, listener, support::noop_layer_router(), done);
        },
        logs: false,
    },
    Variant {
        name: "with_layer",
        server: |rt, listener, done| counted_server(rt, listener, support::measured_router(), done),
        logs: false,
    },
    Variant {
        name: "with_layer_and_info_logs",
        server: |rt, listener, done| counted_server(rt, listener, support::measured_router(), done),
        logs: true,
    },
    Variant {
        name: "around_router/without_layer",
        server: |rt, listener, done| {
            counted_server(rt, listener, support::plain_around_router(), done);
        },
        logs: false,
    },
    Variant {
        name: "around_router/with_layer",
        server: |rt, listener, done| {
            counted_server(rt, listener, support::measured_around_router(), done);
        },
        logs: false,
    },
];

/// The function callgrind collects inside (`--toggle-collect`); nothing else may match it.
const COUNTED: &str = "layer_instructions::counted_server";

const REQUEST: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |n| n.parse().unwrap())
    };
    if let [flag, variant, n] = args.as_slice()
        && flag == "--serve"
    {
        serve(variant, n.parse().unwrap());
    } else if args.iter().any(|a| a == "--bench") && args.iter().any(|a| a == "--cpu") {
        measure_cpu(option("--requests", 20_000), option("--rounds", 9));
    } else if args.iter().any(|a| a == "--bench") {
        measure(option("--requests", 2000));
    } else {
        // Like criterion: without `--bench` (from `cargo bench`), only check that it works.
        for variant in &VARIANTS {
            serve(variant.name, 3);
        }
        measure_cpu(3, 1);
    }
}

/// Serves `n` requests of one keep-alive client with the router of `variant`; returns the CPU
/// time the serving thread used meanwhile.
fn serve(variant: &str, n: usize) -> ThreadCpu {
    let Some(variant) = VARIANTS.iter().find(|v| v.name == variant) else {
        panic!("unknown variant {variant}");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, done_rx) = oneshot::channel();
    let client = std::thread::spawn(move || {
        client(addr, n);
        done.send(()).unwrap();
    });
    let _logs = variant
        .logs
        .then(|| tracing::subscriber::set_default(support::info_subscriber()));
    let before = ThreadCpu::now();
    (variant.server)(&rt, listener, done_rx);
    let used = ThreadCpu::now().minus(&before);
    client.join().unwrap();
    used
}

/// CPU time of the calling thread: user plus system time as the scheduler accounts it (in
/// nanoseconds, from `/proc/thread-self/schedstat`), and its split into user and system time
/// (in clock ticks, from `/proc/thread-self/stat`). Zero where `/proc` is missing.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCpu {
    total_ns: u64,
    user_ticks: u64,
    sys_ticks: u64,
}

impl ThreadCpu {
    fn now() -> Self {
        let total_ns = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // Fields after the command name (which may hold spaces) start at field 3, `state`;
        // `utime` and `stime` are fields 14 and 15.
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            total_ns,
            user_ticks: fields.get(11).copied().unwrap_or(0),
            sys_ticks: fields.get(12).copied().unwrap_or(0),
        }
    }

    fn minus(&self, earlier: &Self) -> Self {
        Self {
            total_ns: self.total_ns.saturating_sub(earlier.total_ns),
            user_ticks: self.user_ticks.saturating_sub(earlier.user_ticks),
            sys_ticks: self.sys_ticks.saturating_sub(earlier.sys_ticks),
        }
    }
}

/// Runs the server until the client is done: everything callgrind counts happens in here.
#[inline(never)]
fn counted_server<S>(
    rt: &tokio::runtime::Runtime,
    listener: TcpListener,
    app: S,
    done: oneshot::Receiver<()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(async {
                let _ = done.await;
            })
            .await
            .unwrap();
    });
}

/// Sends `n` POSTs on one connection, reading each whole response (`ok`, length known).
fn client(addr: SocketAddr, n: usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 512];
    for _ in 0..n {
        stream.write_all(REQUEST).unwrap();
        buf.clear();
        loop {
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "server closed the connection");
            buf.extend_from_slice(&chunk[..read]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"ok") {
                assert!(buf.starts_with(b"HTTP/1.1 200 "), "unexpected response");
                break;
            }
        }
    }
}

/// Runs every variant under callgrind with `n` and `2n` requests and prints the table.
fn measure(n: usize) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("layer_instructions: valgrind is not on PATH; nothing measured");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("layer_instructions");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    println!("server-side instructions per request over loopback HTTP/1.1 keep-alive");
    println!("(callgrind, ({n}x2 requests) - ({n} requests), divided by {n})");
    let mut per_variant = Vec::new();
    for Variant { name, .. } in &VARIANTS {
        let mut totals = [0u64; 2];
        for (total, count) in totals.iter_mut().zip([n, 2 * n]) {
            let out = dir.join(format!("callgrind.{}.{count}", name.replace('/', "-")));
            let status = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--toggle-collect={COUNTED}"))
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .args(["--serve", name, &count.to_string()])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "callgrind run of {name} failed");
            *total = collected(&out);
        }
        let per_request = totals[1].saturating_sub(totals[0]) as f64 / n as f64;
        let base = per_variant.first().map_or(per_request, |(_, base)| *base);
        let added = per_request - base;
        println!(
            "{name:<28} {per_request:>9.0} instr/request   {added:>+7.0} ({:+.1}%) vs without_layer",
            100.0 * added / base
        );
        per_variant.push((*name, per_request));
    }
    let of = |wanted: &str| {
        per_variant
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|v| v.1)
    };
    if let (Some(base), Some(noop), Some(layer)) =
        (of("without_layer"), of("with_noop_layer"), of("with_layer"))
    {
        println!(
            "the layer's own work (with_layer - with_noop_layer): {:.0} instr/request ({:.1}% of without_layer)",
            layer - noop,
            100.0 * (layer - noop) / base
        );
    }
    if let (Some(base), Some(layer)) = (
        of("around_router/without_layer"),
        of("around_router/with_layer"),
    ) {
        println!(
            "around the router (no per-route boxing by axum): the layer adds {:.0} instr/request ({:.1}%)",
            layer - base,
            100.0 * (layer - base) / base
        );
    }
    println!("callgrind files: {}", dir.display());
}

/// The variants `--cpu` compares: the handler without and with the layer, wrapped around the
/// router and added with `Router::layer`.
const CPU_VARIANTS: [&str; 4] = [
    "around_router/without_layer",
    "around_router/with_layer",
    "without_layer",
    "with_layer",
];

/// Server-thread CPU time per request (user + system, so the kernel's socket work is
/// included), without valgrind: per round and variant, `CPU(n) / n` (start-up and accept are
/// in it, a few hundred microseconds against `n` requests), the variants interleaved in a
/// rotating order; the medians over the rounds are printed, and the layer's share as the
/// median of the per-round differences.
fn measure_cpu(n: usize, rounds: usize) {
    let clock_tick_ns = 10_000_000.0; // USER_HZ is 100 on Linux.
    let mut per_request: Vec<Vec<f64>> = vec![Vec::new(); CPU_VARIANTS.len()];
    let mut ticks = vec![(0u64, 0u64); CPU_VARIANTS.len()];
    let mut requests = vec![0usize; CPU_VARIANTS.len()];
    for round in 0..rounds {
        for k in 0..CPU_VARIANTS.len() {
            let v = (k + round) % CPU_VARIANTS.len();
            let used = serve(CPU_VARIANTS[v], n);
            per_request[v].push(used.total_ns as f64 / n as f64);
            ticks[v].0 += used.user_ticks;
            ticks[v].1 += used.sys_ticks;
            requests[v] += n;
        }
    }
    let median = |values: &[f64]| {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!("server-thread CPU time per request over loopback HTTP/1.1 keep-alive");
    println!(
        "(user + system from /proc/thread-self/schedstat over {n} requests, median of {rounds} interleaved rounds)"
    );
    for (v, name) in CPU_VARIANTS.iter().enumerate() {
        let (user, sys) = ticks[v];
        let per = |t: u64| t as f64 * clock_tick_ns / requests[v].max(1) as f64;
        println!(
            "{name:<28} {:>8.0} ns/request   (user {:>6.0} ns, system {:>6.0} ns; ticks of 10 ms over {} requests)",
            median(&per_request[v]),
            per(user),
            per(sys),
            requests[v]
        );
    }
    for (base, with) in [(0, 1), (2, 3)] {
        let diffs: Vec<f64> = per_request[with]
            .iter()
            .zip(&per_request[base])
            .map(|(w, b)| 100.0 * (w - b) / b)
            .collect();
        let (lo, hi) = diffs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| {
                (lo.min(*d), hi.max(*d))
            });
        println!(
            "{} adds {:+.1}% CPU per request (median of per-round differences; range {lo:+.1}% to {hi:+.1}%)",
            CPU_VARIANTS[with],
            median(&diffs)
        );
    }
}

/// The instruction count callgrind collected, from its output file's `totals:` line.
fn collected(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", file.display()))
}
