//! The webhook attempt log in SQLite.

use rusqlite::params;

use super::Sqlite;
use crate::store::{AttemptLog, AttemptOutcome, AttemptRecord, StoreError, ATTEMPTS_KEPT};

impl AttemptLog for Sqlite {
    fn record_attempts(
        &self,
        id: &str,
        attempts: &[AttemptRecord],
        disable: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut log = tx.prepare_cached(
                    "INSERT INTO webhook_attempt (endpoint_id, seq, event_id, attempt, at, status, latency_ms, error, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                let mut done =
                    tx.prepare_cached("DELETE FROM webhook_message WHERE endpoint_id = ?1 AND seq = ?2")?;
                let mut retry = tx.prepare_cached(
                    "UPDATE webhook_message SET attempt = ?3, next_attempt_at = ?4 WHERE endpoint_id = ?1 AND seq = ?2",
                )?;
                // A parked event retried by hand keeps its row (and id) when refused again.
                let mut repark = tx.prepare_cached(
                    "UPDATE parked_event SET reason = ?3, error = ?4, parked_at = ?5, retry_requested = 0 WHERE sink = 'webhook' AND endpoint_id = ?1 AND seq = ?2",
                )?;
                let mut park = tx.prepare_cached(
                    "INSERT INTO parked_event (sink, endpoint_id, seq, reason, error, parked_at) VALUES ('webhook', ?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut unpark = tx.prepare_cached(
                    "DELETE FROM parked_event WHERE sink = 'webhook' AND endpoint_id = ?1 AND seq = ?2",
                )?;
                for a in attempts {
                    log.execute(params![id, a.seq, a.event_id, a.attempt, a.at_ms, a.status, a.latency_ms, a.error, a.outcome.logged_next()])?;
                    match a.outcome.queue_time() {
                        None => done.execute(params![id, a.seq])?,
                        Some(t) => retry.execute(params![id, a.seq, a.attempt, t])?,
                    };
                    match a.outcome.parked_reason() {
                        Some(reason) => {
                            let p = params![id, a.seq, reason, a.error.as_deref().unwrap_or_default(), a.at_ms / 1000];
                            if repark.execute(p)? == 0 {
                                park.execute(p)?;
                            }
                        }
                        None if a.outcome.queue_time().is_none() => {
                            unpark.execute(params![id, a.seq])?;
                        }
                        None => {}
                    }
                }
            }
            if let Some(reason) = disable {
                tx.execute(
                    "UPDATE webhook_endpoint SET disabled = 1, disabled_reason = ?2 WHERE id = ?1",
                    params![id, reason],
                )?;
            }
            tx.commit()
        })
    }

    fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, event_id, attempt, at, status, latency_ms, error, next_attempt_at FROM webhook_attempt WHERE endpoint_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit as i64], |r| {
                let status: Option<u16> = r.get(4)?;
                let next: Option<i64> = r.get(7)?;
                Ok(AttemptRecord {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    attempt: r.get(2)?,
                    at_ms: r.get(3)?,
                    latency_ms: r.get(5)?,
                    error: r.get(6)?,
                    outcome: AttemptOutcome::from_log(status, next),
                    status,
                })
            })?;
            rows.collect()
        })
    }

    fn prune_attempts(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM webhook_attempt WHERE id IN (
                   SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY endpoint_id ORDER BY id DESC) AS n FROM webhook_attempt) WHERE n > ?1)",
                [ATTEMPTS_KEPT],
            )
        })
    }
}
