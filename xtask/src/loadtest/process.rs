//! Child processes of the load test (pinned servers that are always stopped), a loopback
//! JWKS server, and a one-shot HTTP/1.1 client for the pre-flight checks.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a server may take to open its port.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Launch<'a> {
    /// Name in messages.
    pub(crate) name: &'a str,
    /// `taskset` CPU list; empty means unpinned.
    pub(crate) cpus: &'a str,
    /// The executable.
    pub(crate) program: &'a Path,
    /// Its arguments.
    pub(crate) args: &'a [String],
    /// Extra environment variables.
    pub(crate) envs: &'a [(&'a str, &'a str)],
    /// Where its stdout and stderr go.
    pub(crate) log: &'a Path,
    /// The longest the server may live: if the xtask itself is killed before it can stop
    /// the server, `timeout` does.
    pub(crate) lifetime: Duration,
}

/// A server process started by the load test. Dropping it stops the process (SIGTERM, then
/// SIGKILL), so every exit path of the xtask, errors included, leaves nothing running; and
/// each server runs under `timeout`, so that even a killed xtask leaves none behind for long.
#[derive(Debug)]
pub(crate) struct Server {
    name: String,
    /// The `timeout` process that runs the server.
    child: Option<Child>,
    /// The server's own pid (the child of `timeout`; `taskset` execs the server).
    pid: u32,
    log: PathBuf,
}

impl Server {
    /// Starts the server described by `launch`.
    pub(crate) fn spawn(launch: &Launch<'_>) -> Result<Self> {
        let out = std::fs::File::create(launch.log)
            .with_context(|| format!("cannot create {}", launch.log.display()))?;
        let err = out.try_clone()?;
        // `--foreground` keeps the server in our process group (Ctrl-C reaches it) and
        // `timeout` forwards SIGTERM to it.
        let mut command = Command::new("timeout");
        command
            .arg("--foreground")
            .arg("--kill-after=10s")
            .arg(format!("{}s", launch.lifetime.as_secs().max(1)));
        if !launch.cpus.is_empty() {
            // `taskset -c LIST PROGRAM` execs PROGRAM: the pid is the server's own.
            command.arg("taskset").arg("-c").arg(launch.cpus);
        }
        command
            .arg(launch.program)
            .args(launch.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Keep the caller's environment from changing the measured configuration.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("MCP_GATEWAY_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        for (key, value) in launch.envs {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {} ({})",
                launch.name,
                launch.program.display()
            )
        })?;
        let mut server = Self {
            name: launch.name.to_owned(),
            pid: 0,
            child: Some(child),
            log: launch.log.to_owned(),
        };
        server.pid = server.find_server_pid()?;
        Ok(server)
    }

    /// The child of the `timeout` process (it appears right after the fork).
    fn find_server_pid(&mut self) -> Result<u32> {
        let outer = self.child.as_ref().map_or(0, Child::id);
        let children = format!("/proc/{outer}/task/{outer}/children");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            self.check_alive()?;
            let text = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{}: no server process under timeout ({outer})", self.name)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Moves every thread of the server to `cpus` (a taskset list; "" = every online CPU).
    pub(crate) fn pin(&self, cpus: &str) -> Result<()> {
        let all;
        let cpus = if cpus.is_empty() {
            let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            all = format!("0-{}", n.saturating_sub(1));
            all.as_str()
        } else {
            cpus
        };
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &self.pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("cannot run taskset")?;
        if !status.success() {
            bail!(
                "taskset could not move {} to CPUs {cpus}: {status}",
                self.name
            );
        }
        Ok(())
    }

    /// Fails (with the end of the server's log) when the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Waits until `addr` accepts connections (at most 30 s), failing early if the process dies.
    pub(crate) fn wait_ready(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} did not open {addr} within {READY_TIMEOUT:?}; end of {}:\n{}",
            self.name,
            self.log.display(),
            log_tail(&self.log)
        )
    }

    /// Stops the process: SIGTERM (graceful shutdown), SIGKILL after 10 s.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        // std only sends SIGKILL; `kill -TERM` (forwarded by `timeout`) lets the gateway
        // drain and flush its audit.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SIGKILL cannot be forwarded: kill the server itself, then `timeout`.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
        child.kill()?;
        child.wait()?;
        bail!(
            "{} ignored SIGTERM for {STOP_TIMEOUT:?} and was killed",
            self.name
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.terminate() {
            let _ = writeln!(std::io::stderr(), "loadtest: {error:#}");
        }
    }
}

/// Fails when something already listens on `addr` (a server left over from another run
/// would otherwise answer in place of the one under test).
pub(crate) fn ensure_port_free(addr: SocketAddr) -> Result<()> {
    TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("{addr} is in use (choose another port)"))
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Serves one JSON document (the issuer's JWKS) to every request on a loopback port, from
/// a thread that ends when the server is dropped.
#[derive(Debug)]
pub(crate) struct JwksServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    /// Starts serving `body` on `127.0.0.1` at an OS-chosen port.
    pub(crate) fn start(body: String) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer_json(stream, &body);
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The JWKS URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head (bounded in size and time) and answers `body` as JSON.
fn answer_json(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: max-age=3600\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A response of [`post_mcp`]: status code and body.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    /// The status code.
    pub(crate) status: u16,
    /// The raw body (not de-chunked; only searched for JSON-RPC markers).
    pub(crate) body: String,
}

impl HttpAnswer {
    /// A JSON-RPC `result` that is not an error: what `mcp_load.lua` counts as success.
    pub(crate) fn is_rpc_success(&self) -> bool {
        self.status == 200
            && self.body.contains("\"result\"")
            && !self.body.contains("\"error\"")
            && !self.body.contains("\"isError\":true")
    }
}

/// The workload's request: `tools/call echo`.
pub(crate) const ECHO_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;

/// POSTs `body` to `http://{addr}/mcp` on a fresh connection, like the workload does.
pub(crate) fn post_mcp(addr: SocketAddr, token: Option<&str>, body: &str) -> Result<HttpAnswer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream
        .take(1024 * 1024)
        .read_to_end(&mut raw)
        .context("reading the response")?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("not an HTTP response: {text:.200}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok(HttpAnswer { status, body })
}
