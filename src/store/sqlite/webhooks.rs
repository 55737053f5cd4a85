//! Webhook endpoints, their queues and attempt log in SQLite.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Sqlite;
use crate::secret::Secret;
use crate::store::interface::{
    now_ms, patched_reason, previous_column, previous_secrets, rotated_secrets, OutboxKey,
};
use crate::store::{
    DueMessage, Endpoint, EndpointPatch, NewEndpoint, Outbox, StoreError, Webhooks,
};

fn endpoint_row(r: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let events: String = r.get(2)?;
    let previous: Option<String> = r.get(5)?;
    let until: Option<i64> = r.get(6)?;
    Ok(Endpoint {
        id: r.get(0)?,
        url: r.get(1)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: r.get(3)?,
        secret: Secret::new(r.get::<_, String>(4)?),
        previous_secrets: previous_secrets(previous, until),
        disabled: r.get::<_, i64>(7)? != 0,
        disabled_reason: r.get(8)?,
        created_at: r.get(9)?,
        cursor: r.get(10)?,
    })
}

const ENDPOINT_COLUMNS: &str = "id, url, events, description, secret, previous_secret, previous_secret_until, disabled, disabled_reason, created_at, cursor";

fn load_endpoint(c: &Connection, id: &str) -> rusqlite::Result<Option<Endpoint>> {
    c.query_row(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = ?1"),
        [id],
        endpoint_row,
    )
    .optional()
}

impl Webhooks for Sqlite {
    fn create_endpoint(
        &self,
        id: &str,
        new: &NewEndpoint,
        secret: &Secret,
    ) -> Result<Endpoint, StoreError> {
        let head = self.outbox_head()?;
        self.with(|c| {
            c.execute(
                "INSERT INTO webhook_endpoint (id, url, events, description, secret, created_at, cursor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, new.url, serde_json::to_string(&new.events).unwrap_or_default(), new.description, secret.expose(), chrono::Utc::now().timestamp(), head],
            )?;
            Ok(load_endpoint(c, id)?.expect("just inserted"))
        })
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], endpoint_row)?;
            rows.collect()
        })
    }

    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.with(|c| load_endpoint(c, id))
    }

    fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let Some(old) = load_endpoint(&tx, id)? else {
                return Ok(None);
            };
            let events = patch.events.as_ref().unwrap_or(&old.events);
            let (disabled, reason) = patched_reason(&old, patch);
            tx.execute(
                "UPDATE webhook_endpoint SET url = ?2, events = ?3, description = ?4, disabled = ?5, disabled_reason = ?6 WHERE id = ?1",
                params![
                    id,
                    patch.url.as_ref().unwrap_or(&old.url),
                    serde_json::to_string(events).unwrap_or_default(),
                    patch.description.as_ref().unwrap_or(&old.description),
                    disabled as i64,
                    reason
                ],
            )?;
            if old.disabled && !disabled {
                tx.execute(
                    "UPDATE webhook_message SET attempt = 0, next_attempt_at = ?2 WHERE endpoint_id = ?1",
                    params![id, now_ms()],
                )?;
            }
            let updated = load_endpoint(&tx, id)?;
            tx.commit()?;
            Ok(updated)
        })
    }

    fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_endpoint SET disabled = 1, disabled_reason = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(|_| ())
        })
    }

    fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM webhook_endpoint WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM webhook_message WHERE endpoint_id = ?1", [id])?;
            tx.execute("DELETE FROM webhook_attempt WHERE endpoint_id = ?1", [id])?;
            tx.execute("DELETE FROM parked_event WHERE endpoint_id = ?1", [id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn rotate_secret(&self, id: &str, secret: &Secret, old_until: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let Some(old) = load_endpoint(&tx, id)? else {
                return Ok(false);
            };
            let kept = rotated_secrets(&old, old_until);
            tx.execute(
                "UPDATE webhook_endpoint SET previous_secret = ?3, previous_secret_until = ?4, secret = ?2 WHERE id = ?1",
                params![id, secret.expose(), kept, old_until],
            )?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn replace_secrets(
        &self,
        id: &str,
        secret: &Secret,
        previous: &[(Secret, i64)],
    ) -> Result<(), StoreError> {
        let (column, until) = previous_column(previous);
        self.with(|c| {
            c.execute(
                "UPDATE webhook_endpoint SET secret = ?2, previous_secret = ?3, previous_secret_until = ?4 WHERE id = ?1",
                params![id, secret.expose(), column, until],
            )
            .map(|_| ())
        })
    }

    fn outbox_keys(&self, after: i64, limit: usize) -> Result<Vec<OutboxKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, routing_key, resource, record_id FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
    }

    fn enqueue_messages(
        &self,
        id: &str,
        messages: &[(i64, String)],
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE webhook_endpoint SET cursor = max(cursor, ?2) WHERE id = ?1",
                params![id, cursor],
            )?;
            if n == 0 {
                return Ok(false);
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO webhook_message (endpoint_id, seq, record_key, next_attempt_at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let now = now_ms();
                for (seq, key) in messages {
                    insert.execute(params![id, seq, key, now])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn due_messages(
        &self,
        id: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueMessage>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.seq, m.attempt, o.event_id, o.body FROM webhook_message m JOIN outbox o ON o.seq = m.seq
                 WHERE m.endpoint_id = ?1 AND m.next_attempt_at <= ?2
                   AND NOT EXISTS (SELECT 1 FROM webhook_message p WHERE p.endpoint_id = m.endpoint_id AND p.record_key = m.record_key AND p.seq < m.seq)
                 ORDER BY m.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, now_ms, limit as i64], |r| {
                Ok(DueMessage {
                    seq: r.get(0)?,
                    attempt: r.get(1)?,
                    event_id: r.get(2)?,
                    body: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    fn next_due(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT min(m.next_attempt_at) FROM webhook_message m WHERE m.endpoint_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM webhook_message p WHERE p.endpoint_id = m.endpoint_id AND p.record_key = m.record_key AND p.seq < m.seq)",
                [id],
                |r| r.get(0),
            )
        })
    }

    fn endpoint_pending(&self, id: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM webhook_message WHERE endpoint_id = ?1)
                      + (SELECT count(*) FROM outbox WHERE seq > (SELECT cursor FROM webhook_endpoint WHERE id = ?1))",
                [id],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }

    fn events_since(&self, since: i64, up_to: i64) -> Result<Vec<OutboxKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, routing_key, resource, record_id FROM outbox WHERE created_at >= ?1 AND seq <= ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![since, up_to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
    }
}
