//! `audit query|verify|export`: the SQLite or PostgreSQL audit store of `[audit]`, directly.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use mcp_audit::{AuditStore, TamperKind, VerifyOptions};
use tokio::io::AsyncWriteExt as _;

use super::{ConfigArg, Io, Verdict};
use crate::audit_query::{self, ALL_TENANTS, AuditParams};

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// One page of events, newest first, as JSON lines; the next page's cursor goes to
    /// standard error.
    Query {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        params: AuditParams,
    },
    /// Verify the hash chain: every event unmodified, none deleted or inserted. Exit code 3
    /// and the first bad event when it is broken.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The chain (the logger's stream name).
        #[arg(long, default_value = "default")]
        stream: String,
        /// The chain's beginning was purged by retention: accept the first stored event's
        /// link as given instead of requiring the genesis.
        #[arg(long)]
        after_purge: bool,
    },
    /// Every matching event, oldest first, as JSON lines or CSV (`--format`).
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        params: AuditParams,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

impl AuditCommand {
    pub(super) async fn run(self, io: &mut Io<'_>) -> anyhow::Result<Verdict> {
        match self {
            Self::Query { config, params } => {
                let store = open(&config).await?;
                let filter = params.filter().map_err(anyhow::Error::msg)?;
                let page = params.page().map_err(anyhow::Error::msg)?;
                let scope = audit_query::scope(params.tenant.as_deref().unwrap_or(ALL_TENANTS));
                let page = store
                    .query(&scope, &filter, &page)
                    .await
                    .context("querying the audit store")?;
                for event in &page.events {
                    writeln!(io.out, "{}", serde_json::to_string(event)?)?;
                }
                writeln!(io.err, "{} event(s)", page.events.len())?;
                if let Some(next) = page.next {
                    writeln!(io.err, "more: --after {next}")?;
                }
                Ok(Verdict::Yes)
            }
            Self::Verify {
                config,
                stream,
                after_purge,
            } => {
                let store = open(&config).await?;
                let options = if after_purge {
                    VerifyOptions::default()
                } else {
                    VerifyOptions::from_genesis(&stream)
                };
                let report = store
                    .verify_chain(&stream, options)
                    .await
                    .context("reading the audit chain")?;
                match &report.tamper {
                    None => {
                        writeln!(
                            io.out,
                            "chain `{stream}` intact: {} event(s) checked{}",
                            report.checked,
                            report
                                .head
                                .as_ref()
                                .map(|h| format!(", head seq {} hash {}", h.seq, h.hash))
                                .unwrap_or_default()
                        )?;
                        Ok(Verdict::Yes)
                    }
                    Some(tamper) => {
                        let kind = match tamper.kind {
                            TamperKind::Modified => "modified",
                            TamperKind::Deleted => "deleted (missing)",
                            _ => "inserted",
                        };
                        writeln!(
                            io.out,
                            "chain `{stream}` BROKEN ({} event(s) examined): first bad event at seq {}: {kind}{}",
                            report.checked,
                            tamper.seq,
                            tamper
                                .id
                                .map(|id| format!(", event id {id}"))
                                .unwrap_or_default()
                        )?;
                        Ok(Verdict::No)
                    }
                }
            }
            Self::Export {
                config,
                params,
                output,
            } => {
                let store = open(&config).await?;
                let filter = params.filter().map_err(anyhow::Error::msg)?;
                let (format, _, _) = params.export_format().map_err(anyhow::Error::msg)?;
                let scope = audit_query::scope(params.tenant.as_deref().unwrap_or(ALL_TENANTS));
                let written = match &output {
                    Some(path) => {
                        let mut file = tokio::fs::File::create(path)
                            .await
                            .with_context(|| format!("creating {}", path.display()))?;
                        let n = store.export(&scope, &filter, format, &mut file).await?;
                        file.flush().await?;
                        n
                    }
                    None => {
                        let mut stdout = tokio::io::stdout();
                        let n = store.export(&scope, &filter, format, &mut stdout).await?;
                        stdout.flush().await?;
                        n
                    }
                };
                writeln!(io.err, "{written} event(s) exported")?;
                Ok(Verdict::Yes)
            }
        }
    }
}

async fn open(config: &ConfigArg) -> anyhow::Result<AuditStore> {
    let config = config.load()?;
    audit_query::open_store(&config)
        .await?
        .context("audit.sink is not sqlite or postgres: there is no store to read")
}
