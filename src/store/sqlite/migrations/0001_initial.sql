-- The SQLite backend's tables: the snapshot, the outbox as event log, the sinks' cursors, the
-- poll statuses, the baselines and snapshot versions, and the webhook tables. Times are Unix
-- seconds, webhook times Unix milliseconds. Every statement is IF NOT EXISTS: a file made by a
-- build from before versioned migrations already holds some of them (and the later migrations
-- add the columns such a file lacks).
CREATE TABLE IF NOT EXISTS snapshot (
    resource TEXT NOT NULL,
    id INTEGER NOT NULL,
    record TEXT NOT NULL,
    hash INTEGER,
    PRIMARY KEY (resource, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,
    op TEXT NOT NULL,
    event_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body TEXT NOT NULL,
    record_id INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sink_cursor (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS poll_status (
    resource TEXT PRIMARY KEY,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline (
    resource TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_version (
    resource TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO snapshot_version (resource, version, modified_at)
    SELECT resource, 1, CAST(strftime('%s', 'now') AS INTEGER) FROM baseline;
CREATE TABLE IF NOT EXISTS webhook_endpoint (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    created_at INTEGER NOT NULL,
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_message (
    endpoint_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_message_record ON webhook_message (endpoint_id, record_key, seq);
CREATE INDEX IF NOT EXISTS webhook_message_due ON webhook_message (endpoint_id, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_message_seq ON webhook_message (seq);
CREATE TABLE IF NOT EXISTS webhook_attempt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    next_attempt_at INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_attempt_endpoint ON webhook_attempt (endpoint_id, id);
