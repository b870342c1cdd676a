//! What the load test needs before it starts: the peers' RS256 tokens (minted with their
//! `mint_tokens.py`), the binaries, and the gateway configurations it measures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};

/// The workload's issuer, audience and scope (fixed by the peers' `mint_tokens.py`).
pub(crate) const ISSUER: &str = "https://issuer.bench.local";
/// The audience of the minted tokens.
pub(crate) const AUDIENCE: &str = "mcp-bench";
/// The scope every minted token carries and the gateway requires.
pub(crate) const SCOPE: &str = "mcp:tools";

/// Minted tokens are valid for 7 days; older sets are minted again.
const TOKEN_MAX_AGE: Duration = Duration::from_secs(5 * 24 * 3600);

/// A set of minted tokens: `dir/tokens.txt` and `dir/keys/jwks.json`.
#[derive(Debug, Clone)]
pub(crate) struct TokenSet {
    /// The folder `mint_tokens.py --out` wrote.
    pub(crate) dir: PathBuf,
}

impl TokenSet {
    /// One valid token per line.
    pub(crate) fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.txt")
    }

    /// The public key as a JWKS.
    pub(crate) fn jwks(&self) -> PathBuf {
        self.dir.join("keys").join("jwks.json")
    }

    /// The first valid token.
    pub(crate) fn first_token(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.dir.join("token_one.txt"))?;
        Ok(text.trim().to_owned())
    }
}

/// Mints `count` tokens into `dir` with the peers' script, unless a fresh enough set of at
/// least `count` tokens is already there. With `key_from`, the new set is signed with that
/// set's key (so one JWKS verifies both).
pub(crate) fn ensure_tokens(
    peers: &Path,
    dir: &Path,
    count: usize,
    key_from: Option<&TokenSet>,
) -> Result<TokenSet> {
    let set = TokenSet {
        dir: dir.to_owned(),
    };
    let same_key = match key_from {
        Some(other) => std::fs::read(other.jwks()).ok() == std::fs::read(set.jwks()).ok(),
        None => true,
    };
    if same_key && is_fresh(&set.tokens()) && count_lines(&set.tokens())? >= count {
        return Ok(set);
    }
    let python = peers.join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing; set up the peers once: cd {} && python3 -m venv .venv && \
             .venv/bin/pip install -r requirements.txt",
            python.display(),
            peers.display()
        );
    }
    let mut command = Command::new(&python);
    command
        .arg(peers.join("mint_tokens.py"))
        .arg("--out")
        .arg(dir)
        .arg("-n")
        .arg(count.to_string());
    if let Some(other) = key_from {
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        std::fs::copy(other.dir.join("keys/private.pem"), keys.join("private.pem"))
            .context("copying the signing key")?;
        command.arg("--reuse-key");
    }
    super::say(&format!(
        "minting {count} RS256 tokens into {}",
        dir.display()
    ));
    // Its progress line goes to stderr with ours: stdout carries only the table.
    let status = command
        .stdout(std::io::stderr())
        .status()
        .context("running mint_tokens.py")?;
    if !status.success() {
        bail!("mint_tokens.py failed with {status}");
    }
    Ok(set)
}

fn is_fresh(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < TOKEN_MAX_AGE)
}

fn count_lines(path: &Path) -> Result<usize> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes.iter().filter(|b| **b == b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Writes `parts` files of consecutive, disjoint lines of `tokens` (`slice-1.txt`, ...) into
/// `dir`, so that no measured run re-sends a token an earlier run (or the warm-up) sent.
pub(crate) fn split_tokens(tokens: &Path, parts: usize, dir: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(tokens)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let size = lines.len() / parts.max(1);
    if size == 0 {
        bail!(
            "{} holds too few tokens to split in {parts}",
            tokens.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    lines
        .chunks(size)
        .take(parts)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("slice-{}.txt", i + 1));
            std::fs::write(&path, chunk.join("\n") + "\n")?;
            Ok(path)
        })
        .collect()
}

/// Builds the gateway in release mode.
pub(crate) fn build_gateway(root: &Path) -> Result<PathBuf> {
    super::say("building mcp-gateway (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "mcp-gateway"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p mcp-gateway failed with {status}");
    }
    gateway_binary(root)
}

/// The release gateway binary, which must exist.
pub(crate) fn gateway_binary(root: &Path) -> Result<PathBuf> {
    let binary = root.join("target/release/mcp-gateway");
    if !binary.exists() {
        bail!("{} is missing (run without --no-build)", binary.display());
    }
    Ok(binary)
}

/// The peers' `mini_mcp` upstream, built in release mode (its own lock file and target dir)
/// when it is not there yet.
pub(crate) fn upstream_binary(peers: &Path) -> Result<PathBuf> {
    let dir = peers.join("mini_mcp");
    let binary = dir.join("target/release/mini-mcp");
    if !binary.exists() {
        super::say("building the peers' mini_mcp (release)");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(&dir)
            .args(["build", "--release", "--quiet"])
            .status()
            .context("building mini_mcp")?;
        if !status.success() {
            bail!("building mini_mcp failed with {status}");
        }
    }
    Ok(binary)
}

/// Which features of the request path a gateway configuration turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// JWT + RBAC + rate limits (global, user, IP, tool; never reached) + durable audit +
    /// metrics.
    FullChain(AuditSink),
    /// JWT + the RBAC check the gateway always makes; no rate-limit rules; audit to the
    /// `tracing` sink with logging filtered to errors (the audit pipeline still runs, its
    /// events are dropped by the filter); metrics (always on).
    AuthOnly,
}

/// The durable audit sink of the full chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AuditSink {
    /// JSON lines files.
    Jsonl,
    /// A SQLite database.
    Sqlite,
}

/// Where a gateway listens and what it talks to.
#[derive(Debug, Clone)]
pub(crate) struct GatewayWiring {
    /// The gateway's port on 127.0.0.1.
    pub(crate) port: u16,
    /// The upstream's MCP endpoint.
    pub(crate) upstream_url: String,
    /// Where the issuer's JWKS is served.
    pub(crate) jwks_url: String,
    /// The scenario's folder (audit files, spool).
    pub(crate) dir: PathBuf,
}

/// The gateway configuration (TOML) for `profile`. Role `user` may call `echo` and nothing
/// else; every limit is far above what one core can serve.
pub(crate) fn gateway_config(profile: Profile, wiring: &GatewayWiring) -> String {
    let toml_path = |p: PathBuf| format!("{:?}", p.display().to_string());
    let (rate_limit, audit, filter) = match profile {
        Profile::FullChain(sink) => {
            let (kind, path) = match sink {
                AuditSink::Jsonl => ("jsonl", wiring.dir.join("audit")),
                AuditSink::Sqlite => ("sqlite", wiring.dir.join("audit.db")),
            };
            (
                "global = \"10000000/s\"\nper_user = \"1000000/s\"\nper_ip = \"10000000/s\"\n\
                 per_tool = \"10000000/s\"\nalgorithm = \"gcra\"\n"
                    .to_owned(),
                format!(
                    "sink = \"{kind}\"\npath = {}\nspool_dir = {}\n",
                    toml_path(path),
                    toml_path(wiring.dir.join("spool"))
                ),
                "warn",
            )
        }
        Profile::AuthOnly => (
            String::new(),
            format!(
                "sink = \"tracing\"\nspool_dir = {}\n",
                toml_path(wiring.dir.join("spool"))
            ),
            "error",
        ),
    };
    format!(
        r#"# Generated by `cargo xtask loadtest` ({profile:?}).
[server]
listen = "127.0.0.1:{port}"
shutdown_timeout_secs = 5

[auth]
audiences = ["{AUDIENCE}"]
required_scope = "{SCOPE}"

[auth.oidc]
issuer = "{ISSUER}"
jwks_url = "{jwks_url}"
algorithms = ["RS256"]

[auth.claims]
roles = ["roles"]
scope = ["scope"]

[rbac]
default_roles = false
policy = """
[roles.user]
allow = [{{ action = "tools/call", resource = "echo" }}]
"""

[rate_limit]
{rate_limit}
[[upstreams]]
name = "mini_mcp"
url = "{upstream_url}"
timeout_secs = 30

[audit]
{audit}
[logging]
format = "human"
filter = "{filter}"
"#,
        port = wiring.port,
        jwks_url = wiring.jwks_url,
        upstream_url = wiring.upstream_url,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring() -> GatewayWiring {
        GatewayWiring {
            port: 9200,
            upstream_url: "http://127.0.0.1:9100/mcp".to_owned(),
            jwks_url: "http://127.0.0.1:4000/jwks.json".to_owned(),
            dir: PathBuf::from("/tmp/lt"),
        }
    }

    #[test]
    fn full_chain_config_turns_every_feature_on() {
        let text = gateway_config(Profile::FullChain(AuditSink::Sqlite), &wiring());
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["rate_limit"]["per_user"].as_str(), Some("1000000/s"));
        assert_eq!(table["audit"]["sink"].as_str(), Some("sqlite"));
        assert_eq!(
            table["audit"]["path"].as_str(),
            Some("/tmp/lt/audit.db"),
            "{text}"
        );
        assert_eq!(table["auth"]["oidc"]["issuer"].as_str(), Some(ISSUER));
        assert!(
            table["rbac"]["policy"]
                .as_str()
                .unwrap()
                .contains("resource = \"echo\"")
        );
    }

    #[test]
    fn auth_only_config_has_no_limits_and_no_durable_audit() {
        let text = gateway_config(Profile::AuthOnly, &wiring());
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert!(table["rate_limit"].as_table().unwrap().is_empty());
        assert_eq!(table["audit"]["sink"].as_str(), Some("tracing"));
        assert_eq!(table["logging"]["filter"].as_str(), Some("error"));
    }

    #[test]
    fn tokens_split_into_disjoint_slices() {
        let dir = std::env::temp_dir().join(format!("xtask-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens.txt");
        std::fs::write(&file, "a\nb\nc\nd\ne\n").unwrap();
        let slices = split_tokens(&file, 2, &dir).unwrap();
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&slices[0]), "a\nb\n");
        assert_eq!(read(&slices[1]), "c\nd\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
