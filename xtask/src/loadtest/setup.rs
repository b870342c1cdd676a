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
    /// Authentication only: JWT (with the validated-token cache, or with
    /// `auth.token_cache_capacity = 0` when `cache` is false); `rbac.allow_all`, no
    /// rate-limit rules, `audit.enabled = false`, `metrics.enabled = false`.
    AuthOnly {
        /// Whether the validated-token cache is on.
        cache: bool,
    },
    /// As [`Profile::AuthOnly`], with authentication off too (`auth.mode = "none"`): the
    /// baseline the RS256 path is compared with.
    AuthOff,
}

/// The `[rbac]` switch of the lean profiles (RBAC not asked); with `[audit] enabled = false`
/// and `[metrics] enabled = false` it leaves authentication as the only feature on.
const LEAN: &str = "allow_all = true\n";

/// The durable audit sink of the full chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AuditSink {
    /// JSON lines files.
    Jsonl,
    /// A SQLite database.
    Sqlite,
}

/// What serves the tools behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// An MCP server at this Streamable HTTP endpoint (`mini_mcp`).
    Http(String),
    /// The demo tools inside the gateway (`kind = "in-process"`): no upstream hop.
    InProcess,
}

/// Where a gateway listens and what it talks to.
#[derive(Debug, Clone)]
pub(crate) struct GatewayWiring {
    /// The gateway's port on 127.0.0.1.
    pub(crate) port: u16,
    /// What serves the tools.
    pub(crate) upstream: Upstream,
    /// Where the issuer's JWKS is served.
    pub(crate) jwks_url: String,
    /// The scenario's folder (audit files, spool).
    pub(crate) dir: PathBuf,
}

/// The gateway configuration (TOML) for `profile`. Role `user` may call `echo` and nothing
/// else; every limit is far above what one core can serve.
pub(crate) fn gateway_config(profile: Profile, wiring: &GatewayWiring) -> String {
    let toml_path = |p: PathBuf| format!("{:?}", p.display().to_string());
    let upstream = match &wiring.upstream {
        Upstream::Http(url) => format!("name = \"mini-mcp\"\nurl = \"{url}\"\n"),
        Upstream::InProcess => "name = \"demo\"\nkind = \"in-process\"\n".to_owned(),
    };
    let (auth, switches) = match profile {
        Profile::FullChain(_) => ("", ""),
        Profile::AuthOnly { cache: true } => ("", LEAN),
        Profile::AuthOnly { cache: false } => ("token_cache_capacity = 0\n", LEAN),
        Profile::AuthOff => ("mode = \"none\"\ninsecure_no_auth_i_know = true\n", LEAN),
    };
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
        Profile::AuthOnly { .. } | Profile::AuthOff => (
            String::new(),
            format!(
                "enabled = false\nsink = \"tracing\"\nspool_dir = {}\n",
                toml_path(wiring.dir.join("spool"))
            ),
            "warn",
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
{auth}
[auth.oidc]
issuer = "{ISSUER}"
jwks_url = "{jwks_url}"
algorithms = ["RS256"]

[auth.claims]
roles = ["roles"]
scope = ["scope"]

[rbac]
default_roles = false
{switches}policy = """
[roles.user]
allow = [{{ action = "tools/call", resource = "echo" }}]
"""

[rate_limit]
{rate_limit}
[[upstreams]]
{upstream}timeout_secs = 30

[audit]
{audit}
[logging]
format = "human"
filter = "{filter}"
{metrics}"#,
        metrics = if switches.is_empty() {
            ""
        } else {
            "\n[metrics]\nenabled = false\n"
        },
        port = wiring.port,
        jwks_url = wiring.jwks_url,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring() -> GatewayWiring {
        GatewayWiring {
            port: 9200,
            upstream: Upstream::Http("http://127.0.0.1:9100/mcp".to_owned()),
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
    fn auth_only_config_turns_everything_but_authentication_off() {
        let text = gateway_config(Profile::AuthOnly { cache: true }, &wiring());
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert!(table["rate_limit"].as_table().unwrap().is_empty());
        assert_eq!(table["audit"]["enabled"].as_bool(), Some(false));
        assert_eq!(table["metrics"]["enabled"].as_bool(), Some(false));
        assert_eq!(table["rbac"]["allow_all"].as_bool(), Some(true));
        assert!(table["auth"].get("mode").is_none());
        assert!(table["auth"].get("token_cache_capacity").is_none());
    }

    #[test]
    fn cache_off_and_auth_off_differ_from_auth_only_in_one_switch_each() {
        let parse = |p| -> toml::Table { toml::from_str(&gateway_config(p, &wiring())).unwrap() };
        let base = parse(Profile::AuthOnly { cache: true });
        let mut cache_off = parse(Profile::AuthOnly { cache: false });
        assert_eq!(
            cache_off["auth"]["token_cache_capacity"].as_integer(),
            Some(0)
        );
        let mut off = parse(Profile::AuthOff);
        assert_eq!(off["auth"]["mode"].as_str(), Some("none"));
        assert_eq!(off["auth"]["insecure_no_auth_i_know"].as_bool(), Some(true));
        for (table, keys) in [
            (&mut cache_off, &["token_cache_capacity"][..]),
            (&mut off, &["mode", "insecure_no_auth_i_know"][..]),
        ] {
            let auth = table
                .get_mut("auth")
                .and_then(toml::Value::as_table_mut)
                .unwrap();
            for key in keys {
                auth.remove(*key);
            }
            assert_eq!(*table, base);
        }
    }

    #[test]
    fn the_full_chain_has_no_lean_switches() {
        let text = gateway_config(Profile::FullChain(AuditSink::Jsonl), &wiring());
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert!(table.get("metrics").is_none());
        assert!(table["rbac"].get("allow_all").is_none());
        assert!(table["audit"].get("enabled").is_none());
    }

    #[test]
    fn the_in_process_upstream_replaces_only_the_upstream_section() {
        let parse = |w: &GatewayWiring| -> toml::Table {
            toml::from_str(&gateway_config(Profile::FullChain(AuditSink::Jsonl), w)).unwrap()
        };
        let mut proxied = parse(&wiring());
        let mut in_process = parse(&GatewayWiring {
            upstream: Upstream::InProcess,
            ..wiring()
        });
        let upstreams = in_process.remove("upstreams").unwrap();
        let upstream = &upstreams.as_array().unwrap()[0];
        assert_eq!(upstream["kind"].as_str(), Some("in-process"));
        assert_eq!(upstream["name"].as_str(), Some("demo"));
        assert!(upstream.get("url").is_none());
        assert_eq!(
            proxied.remove("upstreams").unwrap()[0]["url"].as_str(),
            Some("http://127.0.0.1:9100/mcp")
        );
        assert_eq!(proxied, in_process);
        // The workload's 1000 users never meet a limit.
        assert_eq!(
            in_process["rate_limit"]["per_user"].as_str(),
            Some("1000000/s")
        );
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
