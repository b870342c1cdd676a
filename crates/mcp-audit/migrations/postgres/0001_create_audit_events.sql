-- mcp-audit schema 1: one row per audit event (PostgreSQL).
-- subject, tenant and chain_stream are identifiers, only ever compared for equality: the "C"
-- collation makes their index comparisons a byte comparison instead of a locale-aware one.
CREATE TABLE IF NOT EXISTS audit_events (
    id             UUID    NOT NULL,
    ts_us          BIGINT  NOT NULL,
    schema_version BIGINT  NOT NULL,
    category       TEXT    NOT NULL,
    severity       TEXT    NOT NULL,
    subject        TEXT COLLATE "C",
    tenant         TEXT COLLATE "C",
    auth_method    TEXT,
    api_key_id     TEXT,
    method         TEXT,
    target_kind    TEXT,
    target         TEXT,
    arguments      TEXT,
    decision       TEXT,
    reason         TEXT,
    outcome_status TEXT,
    outcome_code   BIGINT,
    latency_us     BIGINT,
    request_id     TEXT,
    trace_id       TEXT,
    session_id     TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    chain_stream   TEXT COLLATE "C",
    chain_seq      BIGINT,
    prev_hash      TEXT,
    hash           TEXT,
    -- The time index too: keyset pagination on (time, id) and the retention purge. A replayed
    -- event carries the same id and time (the time is stored exactly, in microseconds), so
    -- inserts stay idempotent by event id with `ON CONFLICT (ts_us, id) DO NOTHING`.
    PRIMARY KEY (ts_us, id)
);

-- Tenant-scoped listing (the tenant admin view).
CREATE INDEX IF NOT EXISTS audit_events_tenant_ts ON audit_events (tenant, ts_us, id);
-- "What did this subject do?"
CREATE INDEX IF NOT EXISTS audit_events_subject_ts ON audit_events (subject, ts_us);
-- Chain verification and the chain head.
CREATE INDEX IF NOT EXISTS audit_events_chain ON audit_events (chain_stream, chain_seq);
