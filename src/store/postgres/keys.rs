//! Access keys and settings in PostgreSQL.

use postgres::Row;

use super::Postgres;
use crate::store::{AccessKeys, StoreError, StoredKey};

const KEY_COLUMNS: &str = "id, name, secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at, requests, max_exports, per_minute";

fn key_row(r: &Row) -> StoredKey {
    let scopes: String = r.get(3);
    StoredKey {
        id: r.get(0),
        name: r.get(1),
        secret_hash: r.get(2),
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        last_used_at: r.get(7),
        requests: r.get(8),
        max_exports: r.get(9),
        per_minute: r.get(10),
    }
}

impl AccessKeys for Postgres {
    fn create_key(&self, k: &StoredKey) -> Result<(), StoreError> {
        let scopes = serde_json::to_string(&k.scopes).unwrap_or_default();
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO access_key ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                &[&k.id, &k.name, &k.secret_hash, &scopes, &k.created_at, &k.expires_at, &k.revoked_at, &k.last_used_at, &k.requests, &k.max_exports, &k.per_minute],
            )?;
            Ok(())
        })
    }

    fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                &format!("SELECT {KEY_COLUMNS} FROM access_key ORDER BY created_at, id"),
                &[],
            )?;
            Ok(rows.iter().map(key_row).collect())
        })
    }

    fn key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            let row = c.query_opt(
                &format!("SELECT {KEY_COLUMNS} FROM access_key WHERE id = $1"),
                &[&id],
            )?;
            Ok(row.as_ref().map(key_row))
        })
    }

    fn replace_key(&self, k: &StoredKey) -> Result<bool, StoreError> {
        let scopes = serde_json::to_string(&k.scopes).unwrap_or_default();
        self.with(|c| {
            let n = c.execute(
                "UPDATE access_key SET name = $2, scopes = $3, expires_at = $4, max_exports = $5, per_minute = $6 WHERE id = $1",
                &[&k.id, &k.name, &scopes, &k.expires_at, &k.max_exports, &k.per_minute],
            )?;
            Ok(n > 0)
        })
    }

    fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            let n = c.execute(
                "UPDATE access_key SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &at],
            )?;
            Ok(n > 0)
        })
    }

    fn record_key_use(&self, uses: &[(String, i64, i64)]) -> Result<(), StoreError> {
        let uses = uses.to_vec();
        self.with(move |c| {
            let mut tx = c.transaction()?;
            for (id, at, n) in &uses {
                tx.execute(
                    "UPDATE access_key SET requests = requests + $3, last_used_at = greatest(coalesce(last_used_at, 0), $2) WHERE id = $1",
                    &[id, at, n],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn any_key(&self) -> Result<bool, StoreError> {
        self.with(move |c| {
            let row = c.query_opt("SELECT 1 FROM access_key LIMIT 1", &[])?;
            Ok(row.is_some())
        })
    }

    fn setting_or_init(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_string(), value.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO bridge_setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )?;
            Ok(c.query_one("SELECT value FROM bridge_setting WHERE name = $1", &[&name])?
                .get(0))
        })
    }
}
