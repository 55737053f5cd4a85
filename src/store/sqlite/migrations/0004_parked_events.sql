-- Events a sink refused for good, set aside so the stream moves on; the outbox row is kept
-- while it is parked. sink: 'amqp' or 'webhook' (then endpoint_id). Times are Unix seconds.
CREATE TABLE IF NOT EXISTS parked_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    endpoint_id TEXT,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    parked_at INTEGER NOT NULL,
    retry_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS parked_event_seq ON parked_event (seq);
