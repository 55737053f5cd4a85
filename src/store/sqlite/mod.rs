//! The SQLite backend: one file on one node, the default. WAL mode; one writer connection
//! behind a mutex, and a read-only connection of its own for each long read (exports).

mod outbox;
mod webhook_attempts;
mod webhooks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{Backend, SnapshotWrite, Snapshots, StoreError};
use crate::events::OutboxEvent;
use crate::record::content_hash;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshot (
    resource TEXT NOT NULL,
    id INTEGER NOT NULL,
    record TEXT NOT NULL,
    hash INTEGER,
    PRIMARY KEY (resource, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,
    op TEXT NOT NULL,
    event_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body TEXT NOT NULL,
    record_id INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sink_cursor (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS poll_status (
    resource TEXT PRIMARY KEY,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline (
    resource TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_version (
    resource TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO snapshot_version (resource, version, modified_at)
    SELECT resource, 1, CAST(strftime('%s', 'now') AS INTEGER) FROM baseline;
";

/// Adds the `hash` column to a snapshot made before it existed, and fills it.
fn migrate_hashes(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('snapshot') WHERE name = 'hash'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch("ALTER TABLE snapshot ADD COLUMN hash INTEGER")?;
    }
    let missing: Vec<(String, i64, String)> = conn
        .prepare("SELECT resource, id, record FROM snapshot WHERE hash IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    if missing.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut set =
            tx.prepare("UPDATE snapshot SET hash = ?3 WHERE resource = ?1 AND id = ?2")?;
        for (resource, id, record) in &missing {
            set.execute(params![resource, id, content_hash(record)])?;
        }
    }
    tx.commit()
}

/// Handle to the SQLite file: the writer connection is shared behind a mutex, readers
/// (exports) open their own read-only connections.
pub struct Sqlite {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (creating the file and its folder when missing) and migrates the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        use anyhow::Context;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA).context("creating the schema")?;
        migrate_hashes(&conn).context("adding content hashes to the snapshot")?;
        outbox::migrate_outbox(&conn).context("adding the event log columns to the outbox")?;
        conn.execute_batch(webhooks::SCHEMA)
            .context("creating the webhook tables")?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    /// A new read-only connection, for long reads that must not hold the writer.
    pub fn reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(conn)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut conn)?)
    }
}

impl Snapshots for Sqlite {
    fn has_baseline(&self, resource: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM baseline WHERE resource = ?1",
                [resource],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    fn snapshot_version(&self, resource: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT version, modified_at FROM snapshot_version WHERE resource = ?1",
                [resource],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    fn any_baseline(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row("SELECT 1 FROM baseline LIMIT 1", [], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    fn load_hashes(&self, resource: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        let n = self.snapshot_len(resource)? as usize;
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, hash FROM snapshot WHERE resource = ?1 ORDER BY id")?;
            let mut out = Vec::with_capacity(n);
            let mut rows = stmt.query([resource])?;
            while let Some(r) = rows.next()? {
                out.push((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or_default()));
            }
            Ok(out)
        })
    }

    fn load_many(&self, resource: &str, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT record FROM snapshot WHERE resource = ?1 AND id = ?2")?;
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(text) = stmt
                    .query_row(params![resource, id], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    out.insert(*id, text);
                }
            }
            Ok(out)
        })
    }

    fn write_baseline_page(
        &self,
        resource: &str,
        records: &[(i64, String)],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO snapshot (resource, id, record, hash) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (id, record) in records {
                    upsert.execute(params![resource, id, record, content_hash(record)])?;
                }
            }
            tx.commit()
        })
    }

    fn load_snapshot(&self, resource: &str) -> Result<HashMap<i64, String>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, record FROM snapshot WHERE resource = ?1")?;
            let rows = stmt.query_map([resource], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn snapshot_len(&self, resource: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM snapshot WHERE resource = ?1",
                [resource],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }

    fn commit_poll(
        &self,
        resource: &str,
        writes: &[SnapshotWrite],
        events: &[OutboxEvent],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached("INSERT OR REPLACE INTO snapshot (resource, id, record, hash) VALUES (?1, ?2, ?3, ?4)")?;
                let mut delete = tx.prepare_cached("DELETE FROM snapshot WHERE resource = ?1 AND id = ?2")?;
                for w in writes {
                    match w {
                        SnapshotWrite::Upsert { id, record } => upsert.execute(params![resource, id, record, content_hash(record)])?,
                        SnapshotWrite::Delete { id } => delete.execute(params![resource, id])?,
                    };
                }
                let mut append = tx.prepare_cached(
                    "INSERT INTO outbox (resource, op, event_id, routing_key, body, record_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let now = chrono::Utc::now().timestamp();
                for e in events {
                    append.execute(params![e.resource, e.op, e.event_id, e.routing_key, e.body, e.record_id, now])?;
                }
                let first = tx.execute(
                    "INSERT OR IGNORE INTO baseline (resource, recorded_at) VALUES (?1, datetime('now'))",
                    [resource],
                )?;
                if first > 0 || !writes.is_empty() {
                    tx.execute(
                        "INSERT INTO snapshot_version (resource, version, modified_at) VALUES (?1, 1, CAST(strftime('%s', 'now') AS INTEGER))
                         ON CONFLICT (resource) DO UPDATE SET version = version + 1, modified_at = excluded.modified_at",
                        [resource],
                    )?;
                }
            }
            tx.commit()
        })
    }

    fn save_poll_status(&self, resource: &str, status: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO poll_status (resource, status) VALUES (?1, ?2)",
                params![resource, status],
            )
            .map(|_| ())
        })
    }

    fn poll_statuses(&self) -> Result<HashMap<String, String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT resource, status FROM poll_status")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    fn load_one(&self, resource: &str, id: i64) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT record FROM snapshot WHERE resource = ?1 AND id = ?2",
                params![resource, id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn scan_snapshot(
        &self,
        resource: &str,
        descending: bool,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        let conn = self.reader()?;
        let dir = if descending { "DESC" } else { "ASC" };
        let mut stmt = conn.prepare(&format!(
            "SELECT record FROM snapshot WHERE resource = ?1 ORDER BY id {dir}"
        ))?;
        let mut rows = stmt.query([resource])?;
        while let Some(row) = rows.next()? {
            let text = row
                .get_ref(0)?
                .as_str()
                .map_err(|e| StoreError::from(rusqlite::Error::from(e)))?;
            if !each(text) {
                break;
            }
        }
        Ok(())
    }
}

impl Backend for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn set_fencing_token(&self, _token: Option<i64>) {}

    fn check_fence(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn leader_address(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    fn as_sqlite(&self) -> Option<&Sqlite> {
        Some(self)
    }
}
