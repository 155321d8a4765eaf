-- Tenants of the HTTP API, their API keys, and the cache of phone-number checks.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC), as in 0001.

-- One row per tenant. The webhook secret signs the tenant's webhook calls; it is stored as
-- given (the server needs it to sign), so the database file is as sensitive as the config.
CREATE TABLE tenants (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT,
    webhook_url    TEXT,
    webhook_secret TEXT,
    created_at     INTEGER NOT NULL
) STRICT;

-- API keys: only the hex SHA-256 of a key is stored, never the key. `id` is the public part
-- (a prefix of the key) shown in listings and used to revoke it.
CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash   TEXT    NOT NULL UNIQUE,
    label      TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at, id);

-- Whether a phone number has a WhatsApp account, as last checked through a session.
-- Deleted with the session; purged daily by age.
CREATE TABLE number_checks (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    phone      TEXT    NOT NULL,
    registered INTEGER NOT NULL CHECK (registered IN (0, 1)),
    wid        TEXT,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, phone)
) STRICT;

CREATE INDEX number_checks_checked_at_idx ON number_checks (checked_at);
