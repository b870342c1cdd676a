-- API keys of mcp-auth-core. Times are Unix epoch milliseconds; roles and scopes are JSON
-- arrays of strings; hash is HMAC-SHA256(pepper, key_id || '_' || secret).
-- Tables are created in the first schema of the search_path.
CREATE TABLE IF NOT EXISTS mcp_api_keys (
    key_id       TEXT   NOT NULL PRIMARY KEY,
    hash         BYTEA  NOT NULL,
    owner        TEXT   NOT NULL,
    tenant       TEXT,
    roles        TEXT   NOT NULL DEFAULT '[]',
    scopes       TEXT   NOT NULL DEFAULT '[]',
    name         TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    rotated_from TEXT,
    replaced_by  TEXT
);

CREATE INDEX IF NOT EXISTS mcp_api_keys_owner ON mcp_api_keys (owner, created_at);
CREATE INDEX IF NOT EXISTS mcp_api_keys_tenant ON mcp_api_keys (tenant, created_at);
