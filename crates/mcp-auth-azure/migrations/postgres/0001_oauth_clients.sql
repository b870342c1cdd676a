-- OAuth clients registered with the mcp-auth-azure OAuth proxy (RFC 7591). `client` is the
-- registration as JSON (it holds only the SHA-256 of a client secret, never the secret);
-- times are Unix epoch seconds. Tables are created in the first schema of the search_path.
CREATE TABLE IF NOT EXISTS mcp_oauth_clients (
    client_id  TEXT   NOT NULL PRIMARY KEY,
    client     TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE INDEX IF NOT EXISTS mcp_oauth_clients_expires ON mcp_oauth_clients (expires_at);
