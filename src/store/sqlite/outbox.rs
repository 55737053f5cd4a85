//! The outbox and the sinks' cursors in SQLite.

use rusqlite::{params, OptionalExtension};

use super::Sqlite;
use crate::events::OutboxEvent;
use crate::store::{Outbox, OutboxRow, StoreError, AMQP_SINK, PRUNED_THROUGH};

impl Outbox for Sqlite {
    fn outbox_batch(&self, after_seq: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, resource, op, event_id, routing_key, body, record_id FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_seq, limit as i64], |r| {
                Ok(OutboxRow {
                    seq: r.get(0)?,
                    event: OutboxEvent {
                        resource: r.get(1)?,
                        op: r.get(2)?,
                        event_id: r.get(3)?,
                        routing_key: r.get(4)?,
                        body: r.get(5)?,
                        record_id: r.get(6)?,
                    },
                })
            })?;
            rows.collect()
        })
    }

    fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT seq FROM sink_cursor WHERE sink = ?1", [sink], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn confirm_sink(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sink_cursor (sink, seq) VALUES (?1, ?2) ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![sink, seq],
            )
            .map(|_| ())
        })
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM outbox WHERE seq > coalesce((SELECT seq FROM sink_cursor WHERE sink = ?1), 0)",
                [AMQP_SINK],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }

    fn prune_event_log(&self, retention: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
        const PRUNABLE: &str = "FROM outbox WHERE created_at < ?1
                   AND seq <= (SELECT min(seq) FROM (
                         SELECT seq FROM sink_cursor WHERE sink = ?2
                         UNION ALL SELECT cursor FROM webhook_endpoint WHERE disabled = 0))
                   AND NOT EXISTS (SELECT 1 FROM webhook_message m WHERE m.seq = outbox.seq)
                   AND NOT EXISTS (SELECT 1 FROM parked_event p WHERE p.seq = outbox.seq)";
        self.with(|c| {
            let tx = c.transaction()?;
            // The highest position deleted is kept: the pull feed answers 410 to a cursor
            // before it rather than skip what was pruned.
            let through: Option<i64> = tx.query_row(
                &format!("SELECT max(seq) {PRUNABLE}"),
                params![cutoff, AMQP_SINK],
                |r| r.get(0),
            )?;
            let n = tx.execute(&format!("DELETE {PRUNABLE}"), params![cutoff, AMQP_SINK])?;
            if let Some(through) = through {
                tx.execute(
                    "INSERT INTO bridge_setting (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE
                     SET value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                    params![PRUNED_THROUGH, through.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn event_log_start(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT CAST(value AS INTEGER) FROM bridge_setting WHERE name = ?1",
                [PRUNED_THROUGH],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
        })
    }

    fn outbox_head(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))",
                [],
                |r| r.get(0),
            )
        })
    }
}
