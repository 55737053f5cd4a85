//! Webhook endpoints and their queues in PostgreSQL.

use postgres::{GenericClient, Row};

use super::Postgres;
use crate::secret::Secret;
use crate::store::interface::{
    now_ms, patched_reason, previous_column, previous_secrets, rotated_secrets, OutboxKey,
};
use crate::store::{
    DueMessage, Endpoint, EndpointPatch, NewEndpoint, Outbox, StoreError, Webhooks,
};

const ENDPOINT_COLUMNS: &str = "id, url, events, description, secret, previous_secret, previous_secret_until, disabled, disabled_reason, created_at, cursor";

fn endpoint_row(r: &Row) -> Endpoint {
    let events: String = r.get(2);
    Endpoint {
        id: r.get(0),
        url: r.get(1),
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: r.get(3),
        secret: Secret::new(r.get::<_, String>(4)),
        previous_secrets: previous_secrets(r.get(5), r.get(6)),
        disabled: r.get(7),
        disabled_reason: r.get(8),
        created_at: r.get(9),
        cursor: r.get(10),
    }
}

fn load_endpoint(
    c: &mut impl GenericClient,
    id: &str,
    lock: bool,
) -> Result<Option<Endpoint>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(c.query_opt(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint WHERE id = $1{lock}"),
        &[&id],
    )?
    .map(|r| endpoint_row(&r)))
}

fn keys(rows: Vec<Row>) -> Vec<OutboxKey> {
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Messages whose record has no older message waiting (one record's events stay in order).
const HEAD_OF_RECORD: &str = "NOT EXISTS (SELECT 1 FROM webhook_message p WHERE p.endpoint_id = m.endpoint_id AND p.record_key = m.record_key AND p.seq < m.seq)";

impl Webhooks for Postgres {
    fn create_endpoint(
        &self,
        id: &str,
        new: &NewEndpoint,
        secret: &Secret,
    ) -> Result<Endpoint, StoreError> {
        let head = self.outbox_head()?;
        self.with(|c| {
            c.execute(
                "INSERT INTO webhook_endpoint (id, url, events, description, secret, created_at, cursor) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &new.url, &serde_json::to_string(&new.events).unwrap_or_default(), &new.description, &secret.expose(), &chrono::Utc::now().timestamp(), &head],
            )?;
            Ok(load_endpoint(c, id, false)?.expect("just inserted"))
        })
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoint ORDER BY created_at, id"),
                &[],
            )?;
            Ok(rows.iter().map(endpoint_row).collect())
        })
    }

    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.with(|c| load_endpoint(c, id, false))
    }

    fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let Some(old) = load_endpoint(&mut tx, id, true)? else {
                return Ok(None);
            };
            let events = patch.events.as_ref().unwrap_or(&old.events);
            let (disabled, reason) = patched_reason(&old, patch);
            tx.execute(
                "UPDATE webhook_endpoint SET url = $2, events = $3, description = $4, disabled = $5, disabled_reason = $6 WHERE id = $1",
                &[
                    &id,
                    patch.url.as_ref().unwrap_or(&old.url),
                    &serde_json::to_string(events).unwrap_or_default(),
                    patch.description.as_ref().unwrap_or(&old.description),
                    &disabled,
                    &reason,
                ],
            )?;
            if old.disabled && !disabled {
                tx.execute(
                    "UPDATE webhook_message SET attempt = 0, next_attempt_at = $2 WHERE endpoint_id = $1",
                    &[&id, &now_ms()],
                )?;
            }
            let updated = load_endpoint(&mut tx, id, false)?;
            tx.commit()?;
            Ok(updated)
        })
    }

    fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_endpoint SET disabled = true, disabled_reason = $2 WHERE id = $1",
                &[&id, &reason],
            )?;
            Ok(())
        })
    }

    fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM webhook_endpoint WHERE id = $1", &[&id])?;
            tx.execute("DELETE FROM webhook_message WHERE endpoint_id = $1", &[&id])?;
            tx.execute("DELETE FROM webhook_attempt WHERE endpoint_id = $1", &[&id])?;
            tx.execute("DELETE FROM parked_event WHERE endpoint_id = $1", &[&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn rotate_secret(&self, id: &str, secret: &Secret, old_until: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let Some(old) = load_endpoint(&mut tx, id, true)? else {
                return Ok(false);
            };
            tx.execute(
                "UPDATE webhook_endpoint SET previous_secret = $3, previous_secret_until = $4, secret = $2 WHERE id = $1",
                &[&id, &secret.expose(), &rotated_secrets(&old, old_until), &old_until],
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
                "UPDATE webhook_endpoint SET secret = $2, previous_secret = $3, previous_secret_until = $4 WHERE id = $1",
                &[&id, &secret.expose(), &column, &until],
            )?;
            Ok(())
        })
    }

    fn outbox_keys(&self, after: i64, limit: usize) -> Result<Vec<OutboxKey>, StoreError> {
        self.with(|c| {
            Ok(keys(c.query(
                "SELECT seq, routing_key, resource, record_id FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &(limit as i64)],
            )?))
        })
    }

    fn enqueue_messages(
        &self,
        id: &str,
        messages: &[(i64, String)],
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE webhook_endpoint SET cursor = greatest(cursor, $2) WHERE id = $1",
                &[&id, &cursor],
            )?;
            if n == 0 {
                return Ok(false);
            }
            if !messages.is_empty() {
                let seqs: Vec<i64> = messages.iter().map(|m| m.0).collect();
                let keys: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
                tx.execute(
                    "INSERT INTO webhook_message (endpoint_id, seq, record_key, next_attempt_at)
                     SELECT $1, s, k, $4 FROM unnest($2::bigint[], $3::text[]) AS t(s, k)
                     ON CONFLICT DO NOTHING",
                    &[&id, &seqs, &keys, &now_ms()],
                )?;
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
            let rows = c.query(
                &format!(
                    "SELECT m.seq, m.attempt, o.event_id, o.body FROM webhook_message m JOIN outbox o ON o.seq = m.seq
                     WHERE m.endpoint_id = $1 AND m.next_attempt_at <= $2 AND {HEAD_OF_RECORD}
                     ORDER BY m.seq LIMIT $3"
                ),
                &[&id, &now_ms, &(limit as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| DueMessage {
                    seq: r.get(0),
                    attempt: r.get::<_, i32>(1) as u32,
                    event_id: r.get(2),
                    body: r.get(3),
                })
                .collect())
        })
    }

    fn next_due(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.with(|c| {
            Ok(c.query_one(
                &format!("SELECT min(m.next_attempt_at) FROM webhook_message m WHERE m.endpoint_id = $1 AND {HEAD_OF_RECORD}"),
                &[&id],
            )?
            .get(0))
        })
    }

    fn endpoint_pending(&self, id: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT (SELECT count(*) FROM webhook_message WHERE endpoint_id = $1)
                          + (SELECT count(*) FROM outbox WHERE seq > (SELECT cursor FROM webhook_endpoint WHERE id = $1))",
                    &[&id],
                )?
                .get(0);
            Ok(n as u64)
        })
    }

    fn events_since(&self, since: i64, up_to: i64) -> Result<Vec<OutboxKey>, StoreError> {
        self.with(|c| {
            Ok(keys(c.query(
                "SELECT seq, routing_key, resource, record_id FROM outbox WHERE created_at >= $1 AND seq <= $2 ORDER BY seq",
                &[&since, &up_to],
            )?))
        })
    }
}
