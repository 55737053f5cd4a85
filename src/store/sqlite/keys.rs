//! Access keys and settings in SQLite.

use rusqlite::{params, OptionalExtension, Row};

use super::Sqlite;
use crate::store::{AccessKeys, StoreError, StoredKey};

const KEY_COLUMNS: &str = "id, name, secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at, requests, max_exports, per_minute";

fn key_row(r: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let scopes: String = r.get(3)?;
    Ok(StoredKey {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        last_used_at: r.get(7)?,
        requests: r.get(8)?,
        max_exports: r.get(9)?,
        per_minute: r.get(10)?,
    })
}

/// A name already taken is a conflict, as PostgreSQL's unique violation is.
fn conflict(e: StoreError) -> StoreError {
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, m))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(m.unwrap_or_else(|| "a key of that name exists".into()))
        }
        other => other,
    }
}

impl AccessKeys for Sqlite {
    fn create_key(&self, k: &StoredKey) -> Result<(), StoreError> {
        let scopes = serde_json::to_string(&k.scopes).unwrap_or_default();
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO access_key ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![k.id, k.name, k.secret_hash, scopes, k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.requests, k.max_exports, k.per_minute],
            )
            .map(|_| ())
        })
        .map_err(conflict)
    }

    fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM access_key ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], key_row)?;
            rows.collect()
        })
    }

    fn key(&self, id: &str) -> Result<Option<StoredKey>, StoreError> {
        let mut slot = self.key_reader.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.reader()?);
        }
        let conn = slot.as_ref().expect("opened above");
        let found = conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM access_key WHERE id = ?1"
            ))?
            .query_row([id], key_row)
            .optional();
        if found.is_err() {
            // Opened again at the next lookup (a file replaced, a schema changed).
            *slot = None;
        }
        Ok(found?)
    }

    fn key_lookup_is_local(&self) -> bool {
        true
    }

    fn replace_key(&self, k: &StoredKey) -> Result<bool, StoreError> {
        let scopes = serde_json::to_string(&k.scopes).unwrap_or_default();
        self.with(|c| {
            c.execute(
                "UPDATE access_key SET name = ?2, scopes = ?3, expires_at = ?4, max_exports = ?5, per_minute = ?6 WHERE id = ?1",
                params![k.id, k.name, scopes, k.expires_at, k.max_exports, k.per_minute],
            )
            .map(|n| n > 0)
        })
        .map_err(conflict)
    }

    fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE access_key SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .map(|n| n > 0)
        })
    }

    fn record_key_use(&self, uses: &[(String, i64, i64)]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE access_key SET requests = requests + ?3, last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
                )?;
                for (id, at, n) in uses {
                    stmt.execute(params![id, at, n])?;
                }
            }
            tx.commit()
        })
    }

    fn any_key(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM access_key LIMIT 1")?
                .query_row([], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    fn setting_or_init(&self, name: &str, value: &str) -> Result<String, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO bridge_setting (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            c.query_row(
                "SELECT value FROM bridge_setting WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
        })
    }
}
