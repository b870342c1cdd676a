//! `keys create|list|rotate|revoke`: API keys in the store of `[auth.api_keys]`, directly.
//! The memory store lives inside a serving gateway only: use the admin API for it.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mcp_auth_core::api_key::{ApiKeyFilter, ApiKeyManager, IssuedApiKey, NewApiKey};
use serde_json::{Value, json};

use super::{ConfigArg, Grants, Io, Verdict};
use crate::api_keys::record_json;
use crate::config::{ApiKeyStoreKind, MAX_ROTATION_GRACE_SECS};

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Issue a key; prints the key (shown this once) and its record.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The subject the key authenticates as.
        #[arg(long)]
        owner: String,
        /// What the key grants (no scope unless given).
        #[command(flatten)]
        grants: Grants,
        /// A label.
        #[arg(long, default_value = "")]
        name: String,
        /// Expire the key this many seconds from now (default never).
        #[arg(long)]
        ttl_secs: Option<u64>,
        #[command(flatten)]
        format: Format,
    },
    /// List keys (never their secrets), oldest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only keys of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only keys of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// At most this many keys (at most 1000).
        #[arg(long, default_value_t = ApiKeyFilter::DEFAULT_LIMIT)]
        limit: u32,
        #[command(flatten)]
        format: Format,
    },
    /// Replace a key by a new one with the same grants; the old one keeps working for the
    /// grace period. Prints the new key (shown this once).
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// The key id (the middle part of `<prefix>_<key id>_<secret>`).
        key_id: String,
        /// How long the old key keeps working, in seconds (default
        /// `auth.api_keys.rotation_grace_secs`).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_ROTATION_GRACE_SECS))]
        grace_secs: Option<u64>,
        #[command(flatten)]
        format: Format,
    },
    /// Revoke a key: it fails from the next request on.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        /// The key id.
        key_id: String,
        #[command(flatten)]
        format: Format,
    },
}

/// Output format.
#[derive(Debug, Args)]
pub(super) struct Format {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl KeysCommand {
    pub(super) async fn run(self, io: &mut Io<'_>) -> anyhow::Result<Verdict> {
        match self {
            Self::Create {
                config,
                owner,
                grants,
                name,
                ttl_secs,
                format,
            } => {
                let (keys, _) = open(&config).await?;
                let mut new = NewApiKey::new(owner)
                    .roles(grants.roles)
                    .scopes(grants.scopes)
                    .name(name);
                if let Some(tenant) = grants.tenant {
                    new = new.tenant(tenant);
                }
                if let Some(ttl) = ttl_secs {
                    new = new.ttl(Duration::from_secs(ttl));
                }
                let issued = keys.issue(new).await.context("issuing the key")?;
                write_issued(&issued, format.json, io)?;
            }
            Self::List {
                config,
                tenant,
                owner,
                limit,
                format,
            } => {
                let (keys, _) = open(&config).await?;
                let mut filter = ApiKeyFilter::all().limit(limit);
                filter.tenant = tenant;
                filter.owner = owner;
                let records = keys.list(&filter).await.context("listing keys")?;
                for record in &records {
                    let record = record_json(record);
                    if format.json {
                        writeln!(io.out, "{record}")?;
                    } else {
                        write_record(&record, io.out)?;
                    }
                }
                writeln!(io.err, "{} key(s)", records.len())?;
            }
            Self::Rotate {
                config,
                key_id,
                grace_secs,
                format,
            } => {
                let (keys, default_grace) = open(&config).await?;
                let grace = Duration::from_secs(grace_secs.unwrap_or(default_grace));
                let issued = keys
                    .rotate(&key_id, grace)
                    .await
                    .with_context(|| format!("rotating key {key_id}"))?;
                writeln!(
                    io.err,
                    "key {key_id} works until {} s from now; its successor is {}",
                    grace.as_secs(),
                    issued.record.key_id
                )?;
                write_issued(&issued, format.json, io)?;
            }
            Self::Revoke {
                config,
                key_id,
                format,
            } => {
                let (keys, _) = open(&config).await?;
                let record = keys
                    .revoke(&key_id)
                    .await
                    .with_context(|| format!("revoking key {key_id}"))?;
                let record = record_json(&record);
                if format.json {
                    writeln!(io.out, "{record}")?;
                } else {
                    write_record(&record, io.out)?;
                }
            }
        }
        Ok(Verdict::Yes)
    }
}

/// The manager over the configured store, and the default rotation grace period.
async fn open(config: &ConfigArg) -> anyhow::Result<(ApiKeyManager, u64)> {
    let config = config.load()?;
    let section = config
        .auth
        .api_keys
        .as_ref()
        .context("this configuration has no [auth.api_keys]")?;
    anyhow::ensure!(
        section.store != ApiKeyStoreKind::Memory,
        "auth.api_keys.store is `memory`: its keys live in the serving gateway; use /api/v1/admin/api-keys"
    );
    Ok((
        crate::api_keys::manager(section).await?,
        section.rotation_grace_secs,
    ))
}

fn write_issued(issued: &IssuedApiKey, json: bool, io: &mut Io<'_>) -> anyhow::Result<()> {
    let record = record_json(&issued.record);
    if json {
        writeln!(
            io.out,
            "{}",
            json!({ "key": issued.key.expose(), "record": record })
        )?;
    } else {
        writeln!(io.out, "key: {}", issued.key.expose())?;
        write_record(&record, io.out)?;
    }
    writeln!(io.err, "the key is shown only this once: store it now")?;
    Ok(())
}

fn write_record(record: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let field = |name: &str| match &record[name] {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    writeln!(
        out,
        "{}  owner={} tenant={} roles={} scopes={} active={} expires={} last_used={} name={}",
        field("key_id"),
        field("owner"),
        field("tenant"),
        field("roles"),
        field("scopes"),
        field("active"),
        field("expires_at"),
        field("last_used_at"),
        field("name"),
    )?;
    Ok(())
}
