-- Access keys: a name, scopes (JSON), the SHA-256 of the secret (never the secret), expiry and
-- revocation, use, and each key's limits. Times are Unix seconds.
CREATE TABLE IF NOT EXISTS access_key (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER,
    requests INTEGER NOT NULL DEFAULT 0,
    max_exports INTEGER NOT NULL,
    per_minute INTEGER NOT NULL
);
-- Values the bridge makes once and keeps (the link signing key, sealed like every secret).
CREATE TABLE IF NOT EXISTS bridge_setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
