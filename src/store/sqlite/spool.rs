//! A spool: rows set aside to be read back in another order, in a temporary SQLite file that is
//! deleted when the spool drops. Sorting any number of rows holds only SQLite's page cache in
//! memory. Live exports sort Daftra's pages through it; so does PostgreSQL's sorted snapshot scan.

use rusqlite::{params, Connection};

use super::order::{order_by, stream};
use crate::store::{RowOrder, StoreError};

/// Rows waiting to be read back in order. Not shared: one export owns it.
pub struct Spool {
    conn: Connection,
    _file: tempfile::NamedTempFile,
}

impl Spool {
    /// An empty spool in a new temporary file.
    pub fn new() -> Result<Spool, StoreError> {
        let file = tempfile::NamedTempFile::new()
            .map_err(|e| StoreError::Spool(format!("creating a temporary file: {e}")))?;
        let conn = Connection::open(file.path())?;
        // Scratch data: nothing to recover after a crash.
        conn.pragma_update(None, "journal_mode", "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.execute_batch(
            "CREATE TABLE spool (id INTEGER NOT NULL, record TEXT NOT NULL); BEGIN",
        )?;
        Ok(Spool { conn, _file: file })
    }

    /// Sets aside the row with key `id` and canonical JSON `record`.
    pub fn push(&mut self, id: i64, record: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO spool (id, record) VALUES (?1, ?2)")?
            .execute(params![id, record])?;
        Ok(())
    }

    /// Hands every row to `each` in `order` (until it returns `false`), then deletes the file.
    pub fn drain(
        self,
        order: RowOrder<'_>,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        let sql = format!("SELECT record FROM spool ORDER BY {}", order_by(order));
        stream(&self.conn, &sql, [], each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_the_order_asked() {
        let mut spool = Spool::new().unwrap();
        for (id, amount) in [(1, "10.5"), (2, "-3"), (3, "9"), (4, "-3.25")] {
            spool
                .push(id, &format!("{{\"id\":{id},\"amount\":\"{amount}\"}}"))
                .unwrap();
        }
        let mut ids = Vec::new();
        let order = RowOrder {
            column: Some("amount"),
            decimal: true,
            descending: false,
        };
        spool
            .drain(order, &mut |t| {
                let v: serde_json::Value = serde_json::from_str(t).unwrap();
                ids.push(v["id"].as_i64().unwrap());
                true
            })
            .unwrap();
        assert_eq!(ids, vec![4, 2, 3, 1]);
    }
}
