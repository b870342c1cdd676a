-- API keys of mcp-auth-core. Times are Unix epoch milliseconds; roles and scopes are JSON
-- arrays of strings; hash is HMAC-SHA256(pepper, key_id || '_' || secret).
CREATE TABLE IF NOT EXISTS mcp_api_keys (
    key_id       TEXT    NOT NULL PRIMARY KEY,
    hash         BLOB    NOT NULL,
    owner        TEXT    NOT NULL,
    tenant       TEXT,
    roles        TEXT    NOT NULL DEFAULT '[]',
    scopes       TEXT    NOT NULL DEFAULT '[]',
    name         TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    rotated_from TEXT,
    replaced_by  TEXT
);

CREATE INDEX IF NOT EXISTS mcp_api_keys_owner ON mcp_api_keys (owner, created_at);
CREATE INDEX IF NOT EXISTS mcp_api_keys_tenant ON mcp_api_keys (tenant, created_at);
