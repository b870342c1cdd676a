//! API keys of `[auth.api_keys]`: the store, the pepper and the mcp-auth-core
//! [`ApiKeyManager`] on top of them, shared by the serving gateway and `mcp-gateway keys`.

use std::sync::Arc;

use anyhow::Context as _;
use mcp_audit::Timestamp;
use mcp_auth_core::api_key::{
    ApiKeyHasher, ApiKeyManager, ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore, SqlApiKeyStore,
};
use mcp_auth_core::sql::ConnectionSource;
use mcp_auth_core::{CredentialExtractor, Secret};
use serde_json::{Value, json};

use crate::config::{ApiKeyStoreKind, ApiKeysConfig};
use crate::pools::SqlPool;

/// The manager of `section` on a store of its own (the command line's): a memory store, or
/// a plain pool on the SQL database (migrated); the pepper read from the file or the
/// environment variable. The serving gateway gives [`manager_with`] its `auth` class's store.
pub(crate) async fn manager(section: &ApiKeysConfig) -> anyhow::Result<ApiKeyManager> {
    let store: Arc<dyn ApiKeyStore> = match &section.store {
        ApiKeyStoreKind::Memory => Arc::new(MemoryApiKeyStore::new()),
        _ => {
            let database = crate::pools::api_key_database(section)?
                .context("auth.api_keys: no SQL store configured")?;
            sql_store(section, database.connect(4, "auth.api_keys").await?).await?
        }
    };
    manager_with(section, store)
}

/// The manager of `section` on `store`.
pub(crate) fn manager_with(
    section: &ApiKeysConfig,
    store: Arc<dyn ApiKeyStore>,
) -> anyhow::Result<ApiKeyManager> {
    ApiKeyManager::builder(store, pepper(section)?)
        .prefix(section.prefix.as_str())
        .build()
        .context("auth.api_keys")
}

/// The SQL key store of `section` on `pool` (in `section.schema` on PostgreSQL), migrated.
pub(crate) async fn sql_store<L, P>(
    section: &ApiKeysConfig,
    pool: SqlPool<L, P>,
) -> anyhow::Result<Arc<dyn ApiKeyStore>>
where
    L: ConnectionSource<sqlx::Sqlite>,
    P: ConnectionSource<sqlx::Postgres>,
{
    let store = match pool {
        SqlPool::Sqlite(pool) => SqlApiKeyStore::sqlite(pool),
        SqlPool::Postgres(pool) => match &section.schema {
            Some(schema) => {
                SqlApiKeyStore::postgres_in_schema(pool, schema).context("auth.api_keys.schema")?
            }
            None => SqlApiKeyStore::postgres(pool),
        },
    };
    store.migrate().await.context("auth.api_keys")?;
    Ok(Arc::new(store))
}

/// The credential extractor for `section`: its header and prefix, besides bearer tokens.
pub(crate) fn extractor(section: Option<&ApiKeysConfig>) -> anyhow::Result<CredentialExtractor> {
    let extractor = CredentialExtractor::new();
    let Some(section) = section else {
        return Ok(extractor);
    };
    let header =
        http::HeaderName::from_bytes(section.header.as_bytes()).context("auth.api_keys.header")?;
    Ok(extractor
        .api_key_header(Some(header))
        .api_key_prefix(Some(section.prefix.as_str())))
}

/// Checks what `mcp-gateway validate` can without opening the store: the pepper is there
/// and long enough.
pub(crate) fn check(section: &ApiKeysConfig) -> anyhow::Result<()> {
    ApiKeyHasher::new(&pepper(section)?).context("auth.api_keys")?;
    Ok(())
}

/// The pepper: the file's content, or the variable's value, without a trailing newline.
fn pepper(section: &ApiKeysConfig) -> anyhow::Result<Secret> {
    let raw = match &section.pepper_file {
        Some(path) => std::fs::read_to_string(path).with_context(|| {
            format!(
                "auth.api_keys.pepper_file: cannot read {}",
                path.display()
            )
        })?,
        None => std::env::var(&section.pepper_env).map_err(|_| {
            anyhow::anyhow!(
                "auth.api_keys: the pepper variable {} is not set (or set auth.api_keys.pepper_file)",
                section.pepper_env
            )
        })?,
    };
    Ok(Secret::new(raw.trim_end_matches(['\r', '\n'])))
}

/// A key as the admin API and `mcp-gateway keys` show it: everything but the secret and its
/// hash.
pub(crate) fn record_json(record: &ApiKeyRecord) -> Value {
    let time =
        |t: Option<std::time::SystemTime>| t.map(|t| Timestamp::from_system_time(t).to_string());
    json!({
        "key_id": record.key_id,
        "owner": record.owner,
        "tenant": record.tenant,
        "roles": record.roles,
        "scopes": record.scopes,
        "name": record.name,
        "created_at": time(Some(record.created_at)),
        "expires_at": time(record.expires_at),
        "last_used_at": time(record.last_used_at),
        "revoked_at": time(record.revoked_at),
        "rotated_from": record.rotated_from,
        "replaced_by": record.replaced_by,
        "active": record.is_active_at(std::time::SystemTime::now()),
    })
}
