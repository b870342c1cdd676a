//! Test helpers: a small OpenMetrics text parser and a loopback HTTP GET.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers: a malformed exposition or a failed request must fail the test"
)]

pub(crate) mod service;

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// A parsed exposition: family name -> type, and every sample.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    pub(crate) types: BTreeMap<String, String>,
    pub(crate) help: BTreeMap<String, String>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) saw_eof: bool,
}

impl Exposition {
    /// Samples of a family; counters are matched on `<family>_total`, histograms on
    /// `<family>_bucket|_sum|_count`.
    pub(crate) fn family_samples(&self, family: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == family
                    || s.name == format!("{family}_total")
                    || s.name == format!("{family}_bucket")
                    || s.name == format!("{family}_sum")
                    || s.name == format!("{family}_count")
            })
            .collect()
    }

    /// The label names used by a family's samples (`le` excluded).
    pub(crate) fn label_names(&self, family: &str) -> BTreeSet<String> {
        self.family_samples(family)
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .filter(|k| k != "le")
            .collect()
    }

    /// The distinct values of one label in a family.
    pub(crate) fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        self.family_samples(family)
            .iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }

    /// The value of the sample with exactly this name and these labels.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every exposed family name as a scraper sees it (counters with `_total`).
    pub(crate) fn exposed_families(&self) -> BTreeSet<String> {
        self.types
            .iter()
            .map(|(name, ty)| {
                if ty == "counter" {
                    format!("{name}_total")
                } else {
                    name.clone()
                }
            })
            .collect()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} value must be quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape"),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        out.insert(key, value);
    }
    out
}

/// Parses OpenMetrics text; panics on a malformed line (the test then fails).
pub(crate) fn parse(text: &str) -> Exposition {
    let mut exp = Exposition::default();
    for line in text.lines() {
        if line == "# EOF" {
            exp.saw_eof = true;
            continue;
        }
        assert!(!exp.saw_eof, "content after # EOF: {line}");
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line");
            exp.types.insert(name.to_owned(), ty.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP line");
            exp.help.insert(name.to_owned(), help.to_owned());
            continue;
        }
        if line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (head, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (head, BTreeMap::new()),
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        exp.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    exp
}

/// A GET over a fresh loopback connection; returns (status line, headers, body).
pub(crate) async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> (String, Vec<(String, String)>, String) {
    http_get_accept(addr, path, "*/*").await
}

/// A GET with an `Accept` header over a fresh loopback connection.
pub(crate) async fn http_get_accept(
    addr: std::net::SocketAddr,
    path: &str,
    accept: &str,
) -> (String, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("response within 30 s")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Runs `promtool` with `args` and `stdin`; `None` when promtool is not installed (and not
/// required by `MCP_TEST_REQUIRE_PROMTOOL=1`).
pub(crate) fn promtool(args: &[&str], stdin: Option<&str>) -> Option<(bool, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("MCP_TEST_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is required (MCP_TEST_REQUIRE_PROMTOOL=1) but could not run: {error}"
            );
            eprintln!("skipping promtool check: promtool not installed ({error})");
            return None;
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}
