//! Versioned schema migrations of the SQLite file, as PostgreSQL has them: each applied once,
//! recorded in `schema_migrations`, all pending ones in one `IMMEDIATE` transaction (SQLite's
//! write lock serialises two processes opening one file at once). A file from before versioned
//! migrations runs them all: each is written to find its work already done.

use anyhow::Context;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::record::content_hash;
use crate::store::AMQP_SINK;

/// One migration's work.
enum Step {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// The migrations in order: `(version, name, step)`. Never edit one that shipped; add the next.
const MIGRATIONS: &[(i64, &str, Step)] = &[
    (
        1,
        "initial",
        Step::Sql(include_str!("migrations/0001_initial.sql")),
    ),
    (2, "snapshot content hashes", Step::Code(add_content_hashes)),
    (3, "event log columns", Step::Code(add_event_log_columns)),
    (
        4,
        "parked events",
        Step::Sql(include_str!("migrations/0004_parked_events.sql")),
    ),
    (
        5,
        "watermarks",
        Step::Sql(include_str!("migrations/0005_watermarks.sql")),
    ),
    (
        6,
        "access keys",
        Step::Sql(include_str!("migrations/0006_access_keys.sql")),
    ),
    (
        7,
        "snapshot hash index",
        Step::Sql(include_str!("migrations/0007_snapshot_hash_index.sql")),
    ),
];

/// Applies the migrations not yet recorded. Returns how many ran.
pub(super) fn apply(conn: &mut Connection) -> anyhow::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (datetime('now'))
        )",
    )?;
    let newest: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    anyhow::ensure!(
        newest <= known,
        "the database has schema version {newest}, newer than this build knows ({known}): run the newer daftra-bridge"
    );
    let mut ran = 0;
    for (version, name, step) in MIGRATIONS.iter().filter(|m| m.0 > newest) {
        match step {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Code(f) => f(&tx),
        }
        .with_context(|| format!("applying migration {version} ({name})"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![version, name],
        )?;
        ran += 1;
    }
    tx.commit()?;
    if ran > 0 {
        tracing::debug!(migrations = ran, version = known, "SQLite schema migrated");
    }
    Ok(ran)
}

fn has_column(tx: &Transaction<'_>, table: &str, column: &str) -> rusqlite::Result<bool> {
    tx.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])
}

/// Adds the `hash` column to a snapshot made before it existed, and fills it.
fn add_content_hashes(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    if !has_column(tx, "snapshot", "hash")? {
        tx.execute_batch("ALTER TABLE snapshot ADD COLUMN hash INTEGER")?;
    }
    let missing: Vec<(String, i64, String)> = tx
        .prepare("SELECT resource, id, record FROM snapshot WHERE hash IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut set = tx.prepare("UPDATE snapshot SET hash = ?3 WHERE resource = ?1 AND id = ?2")?;
    for (resource, id, record) in &missing {
        set.execute(rusqlite::params![resource, id, content_hash(record)])?;
    }
    Ok(())
}

/// Adds the event log columns (`record_id`, `created_at`) to an outbox made before them, and the
/// RabbitMQ sink's cursor before the rows that were still waiting (before cursors, a confirmed
/// row was deleted, so every row left is unconfirmed).
fn add_event_log_columns(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for (column, fill) in [
        (
            "record_id",
            "CAST(json_extract(body, '$.data.id') AS INTEGER)",
        ),
        ("created_at", "CAST(strftime('%s', 'now') AS INTEGER)"),
    ] {
        if !has_column(tx, "outbox", column)? {
            tx.execute_batch(&format!(
                "ALTER TABLE outbox ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0; UPDATE outbox SET {column} = coalesce({fill}, 0);"
            ))?;
        }
    }
    tx.execute(
        "INSERT OR IGNORE INTO sink_cursor (sink, seq) SELECT ?1, coalesce(min(seq) - 1, max(0, (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'))) FROM outbox",
        [AMQP_SINK],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_from_before_versions_is_brought_up_to_date_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        // The oldest shape: no content hashes, no event log columns, no other table.
        conn.execute_batch(
            "CREATE TABLE snapshot (resource TEXT NOT NULL, id INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (resource, id)) WITHOUT ROWID;
             CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, resource TEXT NOT NULL, op TEXT NOT NULL, event_id TEXT NOT NULL, routing_key TEXT NOT NULL, body TEXT NOT NULL);
             CREATE TABLE baseline (resource TEXT PRIMARY KEY, recorded_at TEXT NOT NULL);
             INSERT INTO snapshot VALUES ('work_orders', 7, '{\"id\":7}');
             INSERT INTO baseline VALUES ('work_orders', '2026-01-01');
             INSERT INTO outbox (resource, op, event_id, routing_key, body) VALUES ('work_orders', 'created', 'e', 'work_order.created', '{\"data\":{\"id\":7}}');",
        )
        .unwrap();
        assert_eq!(apply(&mut conn).unwrap(), MIGRATIONS.len());
        let (hash, record_id, cursor, version): (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT hash FROM snapshot), (SELECT record_id FROM outbox),
                        (SELECT seq FROM sink_cursor WHERE sink = 'amqp'),
                        (SELECT version FROM snapshot_version WHERE resource = 'work_orders')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(hash, content_hash("{\"id\":7}"));
        assert_eq!((record_id, cursor, version), (7, 0, 1));
        assert_eq!(apply(&mut conn).unwrap(), 0, "nothing runs twice");
    }

    #[test]
    fn a_poll_reads_the_snapshot_hashes_from_their_own_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id, hash FROM snapshot WHERE resource = ?1 ORDER BY id",
            )
            .unwrap()
            .query_map(["work_orders"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("COVERING INDEX snapshot_hashes"), "{plan}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
            [],
        )
        .unwrap();
        let e = apply(&mut conn).unwrap_err().to_string();
        assert!(e.contains("newer than this build knows"), "{e}");
    }
}
