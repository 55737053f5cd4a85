//! The SQLite backend: one file on one node, the default. WAL mode; one writer connection
//! behind a mutex, and a read-only connection of its own for each long read (exports).

mod keys;
mod migrations;
mod order;
mod outbox;
mod parking;
mod spool;
mod webhook_attempts;
mod webhooks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

pub use spool::Spool;

use super::interface::raises_version;
use super::{Backend, RowOrder, SnapshotWrite, Snapshots, StoreError, Watermark};
use crate::events::OutboxEvent;
use crate::record::content_hash;

/// Handle to the SQLite file: the writer connection is shared behind a mutex, readers
/// (exports) open their own read-only connections.
pub struct Sqlite {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    /// A read-only connection of its own for the access-key lookup of every request: in WAL
    /// mode it never waits for the writer, so a lookup takes microseconds even mid-commit.
    key_reader: Mutex<Option<Connection>>,
}

impl Sqlite {
    /// Opens (creating the file and its folder when missing) and migrates the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Sqlite> {
        use anyhow::Context;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder {}", dir.display()))?;
        }
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        migrations::apply(&mut conn)?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(conn)),
            key_reader: Mutex::new(None),
        })
    }

    /// A new read-only connection, for long reads that must not hold the writer.
    fn reader(&self) -> Result<Connection, StoreError> {
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
                if raises_version(first > 0, writes) {
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

    fn watermark(&self, resource: &str) -> Result<Option<Watermark>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT changed_at, audited_to FROM watermark WHERE resource = ?1",
                [resource],
                |r| {
                    Ok(Watermark {
                        changed_at: r.get(0)?,
                        audited_to: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    fn save_watermark(&self, resource: &str, watermark: &Watermark) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO watermark (resource, changed_at, audited_to) VALUES (?1, ?2, ?3)",
                params![resource, watermark.changed_at, watermark.audited_to],
            )
            .map(|_| ())
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
        let order = RowOrder {
            descending,
            ..RowOrder::KEY
        };
        self.scan_snapshot_ordered(resource, order, each)
    }

    fn scan_snapshot_ordered(
        &self,
        resource: &str,
        order: RowOrder<'_>,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT record FROM snapshot WHERE resource = ?1 ORDER BY {}",
            order::order_by(order)
        );
        order::stream(&self.reader()?, &sql, [resource], each)
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
}
