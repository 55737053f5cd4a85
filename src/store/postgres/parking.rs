//! Parked events in PostgreSQL.

use std::collections::HashMap;

use postgres::Row;

use super::Postgres;
use crate::events::OutboxEvent;
use crate::store::interface::now_ms;
use crate::store::{OutboxRow, Parked, Parking, StoreError, AMQP_SINK};

/// The columns of a [`Parked`], joined with its outbox row.
const PARKED: &str = "SELECT p.id, p.sink, p.endpoint_id, p.seq, o.event_id, o.resource, o.record_id,
        o.routing_key, octet_length(o.body)::bigint, p.reason, p.error, p.parked_at, p.retry_requested
    FROM parked_event p JOIN outbox o ON o.seq = p.seq";

fn parked_row(r: &Row) -> Parked {
    Parked {
        id: r.get(0),
        sink: r.get(1),
        endpoint: r.get(2),
        seq: r.get(3),
        event_id: r.get(4),
        resource: r.get(5),
        record_id: r.get(6),
        routing_key: r.get(7),
        bytes: r.get(8),
        reason: r.get(9),
        error: r.get(10),
        parked_at: r.get(11),
        retry_requested: r.get(12),
    }
}

impl Parking for Postgres {
    fn park_for_amqp(&self, seq: i64, reason: &str, error: &str) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute(
                "INSERT INTO parked_event (sink, seq, reason, error, parked_at)
                 VALUES ($1, $2, $3, $4, floor(extract(epoch FROM now()))::bigint)",
                &[&AMQP_SINK, &seq, &reason, &error],
            )?;
            tx.execute(
                "INSERT INTO sink_cursor (sink, seq) VALUES ($1, $2)
                 ON CONFLICT (sink) DO UPDATE SET seq = greatest(sink_cursor.seq, excluded.seq)",
                &[&AMQP_SINK, &seq],
            )?;
            Ok(())
        })
    }

    fn parked(&self, limit: usize) -> Result<Vec<Parked>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                &format!("{PARKED} ORDER BY p.id DESC LIMIT $1"),
                &[&(limit as i64)],
            )?;
            Ok(rows.iter().map(parked_row).collect())
        })
    }

    fn parked_one(&self, id: i64) -> Result<Option<Parked>, StoreError> {
        self.with(|c| {
            let row = c.query_opt(&format!("{PARKED} WHERE p.id = $1"), &[&id])?;
            Ok(row.as_ref().map(parked_row))
        })
    }

    fn parked_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.with(|c| {
            let rows = c.query("SELECT sink, count(*) FROM parked_event GROUP BY sink", &[])?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    fn retry_parked(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let Some(sink) = tx
                .query_opt("SELECT sink FROM parked_event WHERE id = $1 FOR UPDATE", &[&id])?
                .map(|r| r.get::<_, String>(0))
            else {
                return Ok(false);
            };
            tx.execute("UPDATE parked_event SET retry_requested = true WHERE id = $1", &[&id])?;
            if sink != AMQP_SINK {
                tx.execute(
                    "INSERT INTO webhook_message (endpoint_id, seq, record_key, attempt, next_attempt_at)
                     SELECT p.endpoint_id, p.seq, o.resource || ':' || o.record_id, 0, $2
                     FROM parked_event p JOIN outbox o ON o.seq = p.seq WHERE p.id = $1
                     ON CONFLICT DO NOTHING",
                    &[&id, &now_ms()],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn drop_parked(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.execute("DELETE FROM parked_event WHERE id = $1", &[&id])? > 0))
    }

    fn amqp_retries(&self, limit: usize) -> Result<Vec<(i64, OutboxRow)>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT p.id, o.seq, o.resource, o.op, o.event_id, o.routing_key, o.body, o.record_id
                 FROM parked_event p JOIN outbox o ON o.seq = p.seq
                 WHERE p.sink = $1 AND p.retry_requested ORDER BY p.seq LIMIT $2",
                &[&AMQP_SINK, &(limit as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let row = OutboxRow {
                        seq: r.get(1),
                        event: OutboxEvent {
                            resource: r.get(2),
                            op: r.get(3),
                            event_id: r.get(4),
                            routing_key: r.get(5),
                            body: r.get(6),
                            record_id: r.get(7),
                        },
                    };
                    (r.get(0), row)
                })
                .collect())
        })
    }

    fn unpark(&self, id: i64) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute("DELETE FROM parked_event WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn repark(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute(
                "UPDATE parked_event SET retry_requested = false, error = $2 WHERE id = $1",
                &[&id, &error],
            )?;
            Ok(())
        })
    }
}
