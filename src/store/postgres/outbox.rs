//! The outbox and the sinks' cursors in PostgreSQL.

use super::Postgres;
use crate::events::OutboxEvent;
use crate::store::{Outbox, OutboxRow, StoreError, AMQP_SINK, PRUNED_THROUGH};

impl Outbox for Postgres {
    fn outbox_batch(&self, after_seq: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT seq, resource, op, event_id, routing_key, body, record_id FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after_seq, &(limit as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| OutboxRow {
                    seq: r.get(0),
                    event: OutboxEvent {
                        resource: r.get(1),
                        op: r.get(2),
                        event_id: r.get(3),
                        routing_key: r.get(4),
                        body: r.get(5),
                        record_id: r.get(6),
                    },
                })
                .collect())
        })
    }

    fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT seq FROM sink_cursor WHERE sink = $1", &[&sink])?
                    .map_or(0, |r| r.get(0)),
            )
        })
    }

    fn confirm_sink(&self, sink: &str, seq: i64) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute(
                "INSERT INTO sink_cursor (sink, seq) VALUES ($1, $2)
                 ON CONFLICT (sink) DO UPDATE SET seq = greatest(sink_cursor.seq, excluded.seq)",
                &[&sink, &seq],
            )?;
            Ok(())
        })
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM outbox WHERE seq > coalesce((SELECT seq FROM sink_cursor WHERE sink = $1), 0)",
                    &[&AMQP_SINK],
                )?
                .get(0);
            Ok(n as u64)
        })
    }

    fn prune_event_log(&self, retention: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
        self.fenced(true, |tx| {
            // The highest position deleted is kept: the pull feed answers 410 to a cursor
            // before it rather than skip what was pruned.
            let row = tx.query_one(
                "WITH pruned AS (
                   DELETE FROM outbox WHERE created_at < $1
                   AND seq <= (SELECT min(seq) FROM (
                         SELECT seq FROM sink_cursor WHERE sink = $2
                         UNION ALL SELECT cursor FROM webhook_endpoint WHERE NOT disabled) AS cursors)
                   AND NOT EXISTS (SELECT 1 FROM webhook_message m WHERE m.seq = outbox.seq)
                   AND NOT EXISTS (SELECT 1 FROM parked_event p WHERE p.seq = outbox.seq)
                   RETURNING seq)
                 SELECT count(*), max(seq) FROM pruned",
                &[&cutoff, &AMQP_SINK],
            )?;
            let (n, through): (i64, Option<i64>) = (row.get(0), row.get(1));
            if let Some(through) = through {
                tx.execute(
                    "INSERT INTO bridge_setting (name, value) VALUES ($1, $2::bigint::text)
                     ON CONFLICT (name) DO UPDATE
                     SET value = greatest(bridge_setting.value::bigint, excluded.value::bigint)::text",
                    &[&PRUNED_THROUGH, &through],
                )?;
            }
            Ok(n as usize)
        })
    }

    fn event_log_start(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT value::bigint FROM bridge_setting WHERE name = $1",
                &[&PRUNED_THROUGH],
            )?;
            Ok(row.map_or(0, |r| r.get(0)))
        })
    }

    fn outbox_head(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            // The sequence remembers positions of rows already pruned.
            let row = c.query_one(
                "SELECT greatest(coalesce((SELECT max(seq) FROM outbox), 0),
                                 (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_seq_seq))",
                &[],
            )?;
            Ok(row.get(0))
        })
    }
}
