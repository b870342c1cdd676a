//! `auth_instructions`: instructions per operation of each `auth/*` bench ID, counted by
//! callgrind (deterministic where wall-clock benches on a busy machine are not).
//!
//! ```text
//! cargo bench -p mcp-auth-core --all-features --bench auth_instructions [-- --iterations 2000]
//! ```
//!
//! For each bench ID the bench runs itself under `valgrind --tool=callgrind`, once doing `N`
//! and once `2N` operations on the fixtures of the criterion benches (`benches/support`),
//! collecting only inside the loop (`--toggle-collect`). Set-up and first-call costs are the
//! same in both runs, so `(I(2N) - I(N)) / N` is what one operation costs. Slow operations
//! (signature checks) run `N / 20` times. The callgrind files stay in the printed directory
//! for `callgrind_annotate`. Without valgrind on `PATH` the bench says so and measures
//! nothing.
//!
//! Valgrind's virtual CPU has no SHA extensions, so SHA-256 runs its portable code under
//! callgrind while the real CPU may use SHA-NI: compare SHA-256 implementations by time, not
//! by these counts.
//!
//! Without `--bench` (which `cargo bench` passes), as under `cargo test --benches`, it runs a
//! few operations per ID without valgrind, to check the harness itself.

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

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use mcp_auth_core::Authenticator;
use support::JwtFixture;

/// The bench IDs, in report order, and whether one operation is slow (a signature check).
const IDS: [(&str, bool); 7] = [
    ("jwt_rs256_cold", true),
    ("raw_jsonwebtoken_rs256", true),
    ("jwt_es256_cold", true),
    ("jwt_eddsa_cold", true),
    ("jwt_cached", false),
    ("api_key", false),
    ("reject_malformed", false),
];

/// The function callgrind collects inside (`--toggle-collect`); nothing else may match it,
/// so no wildcard: its async block (`counted_loop::{{closure}}`) would toggle collection off.
const COUNTED: &str = "auth_instructions::counted_loop";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, id, n] = args.as_slice()
        && flag == "--run"
    {
        run(id, n.parse().unwrap());
    } else if args.iter().any(|a| a == "--bench") {
        let iterations = args
            .iter()
            .position(|a| a == "--iterations")
            .and_then(|i| args.get(i + 1))
            .map_or(2000, |n| n.parse().unwrap());
        measure(iterations);
    } else {
        for (id, _) in IDS {
            run(id, 3);
        }
    }
}

/// Builds the fixtures of `id` and runs `n` operations of it.
fn run(id: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if id == "api_key" {
        let (authenticator, credential) = support::api_key_fixture(&rt);
        // One use first: the last-used buffer then holds the key, as in a steady state.
        rt.block_on(authenticator.authenticate(&credential))
            .unwrap();
        counted_loop(&rt, n, || async {
            black_box(
                authenticator
                    .authenticate(black_box(&credential))
                    .await
                    .unwrap(),
            );
        });
        return;
    }
    let f = JwtFixture::new(&rt);
    match id {
        "jwt_rs256_cold" => counted_loop(&rt, n, || async {
            black_box(f.cold_rsa.authenticate(black_box(&f.rsa)).await.unwrap());
        }),
        "raw_jsonwebtoken_rs256" => counted_loop(&rt, n, || async {
            black_box(f.raw_decode());
        }),
        "jwt_es256_cold" => counted_loop(&rt, n, || async {
            black_box(f.cold_es.authenticate(black_box(&f.es)).await.unwrap());
        }),
        "jwt_eddsa_cold" => counted_loop(&rt, n, || async {
            black_box(f.cold_ed.authenticate(black_box(&f.ed)).await.unwrap());
        }),
        "jwt_cached" => counted_loop(&rt, n, || async {
            black_box(f.cached.authenticate(black_box(&f.rsa)).await.unwrap());
        }),
        "reject_malformed" => counted_loop(&rt, n, || async {
            black_box(
                f.cold_rsa
                    .authenticate(black_box(&f.malformed))
                    .await
                    .unwrap_err(),
            );
        }),
        other => panic!("unknown bench ID {other}"),
    }
}

/// Runs `op` `n` times on `rt`: everything callgrind counts happens in here.
#[inline(never)]
fn counted_loop<F, Fut>(rt: &tokio::runtime::Runtime, n: usize, op: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    rt.block_on(async {
        for _ in 0..n {
            op().await;
        }
    });
}

/// Runs every ID under callgrind with `n` and `2n` operations and prints the table.
fn measure(n: usize) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("auth_instructions: valgrind is not on PATH; nothing measured");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("auth_instructions");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    println!("instructions per operation (callgrind, I(2N) - I(N) over N operations)");
    for (id, slow) in IDS {
        let n = if slow { (n / 20).max(1) } else { n };
        let mut totals = [0u64; 2];
        for (total, count) in totals.iter_mut().zip([n, 2 * n]) {
            let out = dir.join(format!("callgrind.{id}.{count}"));
            let status = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--toggle-collect={COUNTED}"))
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .args(["--run", id, &count.to_string()])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "callgrind run of {id} failed");
            *total = collected(&out);
        }
        let per_op = totals[1].saturating_sub(totals[0]) as f64 / n as f64;
        println!("auth/{id:<24} {per_op:>10.0} instructions  (N = {n})");
    }
    println!("callgrind files: {}", dir.display());
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
