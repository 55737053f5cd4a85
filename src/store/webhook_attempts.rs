//! The webhook attempt log: each attempt's outcome committed with the queue change it implies,
//! and the recent attempts shown by `GET /webhooks/endpoints/{id}/deliveries`.

use rusqlite::params;

use super::{Store, StoreError};

/// Attempts kept in the log per endpoint (`GET /webhooks/endpoints/{id}/deliveries`).
pub const ATTEMPTS_KEPT: i64 = 1000;

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// 2xx: the message leaves the queue.
    Delivered,
    /// Tried again at this time (Unix milliseconds).
    RetryAt(i64),
    /// Not tried again while the endpoint stays disabled (re-enabling it resumes).
    Stopped,
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub seq: i64,
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix milliseconds when it started.
    pub at_ms: i64,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// Why it failed, without secrets.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

impl Store {
    /// Commits a batch of attempts of endpoint `id`: the log, the queue (delivered messages
    /// leave it, failed ones wait for their next attempt) and, with `disable`, the endpoint's
    /// disabling, all in one transaction.
    pub fn record_attempts(
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
                for a in attempts {
                    let next = match a.outcome {
                        AttemptOutcome::RetryAt(t) => Some(t),
                        _ => None,
                    };
                    log.execute(params![id, a.seq, a.event_id, a.attempt, a.at_ms, a.status, a.latency_ms, a.error, next])?;
                    match a.outcome {
                        AttemptOutcome::Delivered => done.execute(params![id, a.seq])?,
                        AttemptOutcome::RetryAt(t) => retry.execute(params![id, a.seq, a.attempt, t])?,
                        AttemptOutcome::Stopped => retry.execute(params![id, a.seq, a.attempt, i64::MAX])?,
                    };
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

    /// The newest `limit` attempts of endpoint `id`, newest first.
    pub fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError> {
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
                    outcome: match next {
                        Some(t) => AttemptOutcome::RetryAt(t),
                        None if status.is_some_and(|s| (200..300).contains(&s)) => {
                            AttemptOutcome::Delivered
                        }
                        None => AttemptOutcome::Stopped,
                    },
                    status,
                })
            })?;
            rows.collect()
        })
    }

    /// Keeps the newest [`ATTEMPTS_KEPT`] attempts of each endpoint.
    pub fn prune_attempts(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM webhook_attempt WHERE id IN (
                   SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY endpoint_id ORDER BY id DESC) AS n FROM webhook_attempt) WHERE n > ?1)",
                [ATTEMPTS_KEPT],
            )
        })
    }
}
