//! The webhook attempt log in PostgreSQL.

use super::Postgres;
use crate::store::{AttemptLog, AttemptOutcome, AttemptRecord, StoreError, ATTEMPTS_KEPT};

impl AttemptLog for Postgres {
    fn record_attempts(
        &self,
        id: &str,
        attempts: &[AttemptRecord],
        disable: Option<&str>,
    ) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            let log = tx.prepare(
                "INSERT INTO webhook_attempt (endpoint_id, seq, event_id, attempt, at, status, latency_ms, error, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )?;
            let done = tx.prepare("DELETE FROM webhook_message WHERE endpoint_id = $1 AND seq = $2")?;
            let retry = tx.prepare(
                "UPDATE webhook_message SET attempt = $3, next_attempt_at = $4 WHERE endpoint_id = $1 AND seq = $2",
            )?;
            for a in attempts {
                let attempt = a.attempt as i32;
                let status = a.status.map(i32::from);
                tx.execute(
                    &log,
                    &[&id, &a.seq, &a.event_id, &attempt, &a.at_ms, &status, &a.latency_ms, &a.error, &a.outcome.logged_next()],
                )?;
                match a.outcome.queue_time() {
                    None => tx.execute(&done, &[&id, &a.seq])?,
                    Some(t) => tx.execute(&retry, &[&id, &a.seq, &attempt, &t])?,
                };
                match a.outcome.parked_reason() {
                    Some(reason) => {
                        let (error, at) = (a.error.as_deref().unwrap_or_default(), a.at_ms / 1000);
                        let p: [&(dyn postgres::types::ToSql + Sync); 5] =
                            [&id, &a.seq, &reason, &error, &at];
                        // A parked event retried by hand keeps its row (and id) when refused again.
                        let kept = tx.execute(
                            "UPDATE parked_event SET reason = $3, error = $4, parked_at = $5, retry_requested = false WHERE sink = 'webhook' AND endpoint_id = $1 AND seq = $2",
                            &p,
                        )?;
                        if kept == 0 {
                            tx.execute(
                                "INSERT INTO parked_event (sink, endpoint_id, seq, reason, error, parked_at) VALUES ('webhook', $1, $2, $3, $4, $5)",
                                &p,
                            )?;
                        }
                    }
                    None if a.outcome.queue_time().is_none() => {
                        tx.execute(
                            "DELETE FROM parked_event WHERE sink = 'webhook' AND endpoint_id = $1 AND seq = $2",
                            &[&id, &a.seq],
                        )?;
                    }
                    None => {}
                }
            }
            if let Some(reason) = disable {
                tx.execute(
                    "UPDATE webhook_endpoint SET disabled = true, disabled_reason = $2 WHERE id = $1",
                    &[&id, &reason],
                )?;
            }
            Ok(())
        })
    }

    fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT seq, event_id, attempt, at, status, latency_ms, error, next_attempt_at FROM webhook_attempt WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
                &[&id, &(limit as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let status = r.get::<_, Option<i32>>(4).map(|s| s as u16);
                    AttemptRecord {
                        seq: r.get(0),
                        event_id: r.get(1),
                        attempt: r.get::<_, i32>(2) as u32,
                        at_ms: r.get(3),
                        latency_ms: r.get(5),
                        error: r.get(6),
                        outcome: AttemptOutcome::from_log(status, r.get(7)),
                        status,
                    }
                })
                .collect())
        })
    }

    fn prune_attempts(&self) -> Result<usize, StoreError> {
        self.fenced(true, |tx| {
            let n = tx.execute(
                "DELETE FROM webhook_attempt WHERE id IN (
                   SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY endpoint_id ORDER BY id DESC) AS n FROM webhook_attempt) AS ranked WHERE n > $1)",
                &[&ATTEMPTS_KEPT],
            )?;
            Ok(n as usize)
        })
    }
}
