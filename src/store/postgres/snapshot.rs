//! The snapshot in PostgreSQL: pages and polls are written with one statement per kind of
//! change (arrays through `unnest`), not one round trip per row.

use std::collections::HashMap;

use super::Postgres;
use crate::events::OutboxEvent;
use crate::record::content_hash;
use crate::store::interface::raises_version;
use crate::store::{RowOrder, SnapshotWrite, Snapshots, Spool, StoreError, Watermark};

/// Rows an export scan reads from its portal per round trip.
const SCAN_BATCH: i32 = 1000;

/// Rows at or above which an upsert goes through `COPY ... BINARY` into a staging table
/// instead of one `unnest` statement (both one round trip; COPY avoids decoding large arrays).
const COPY_AT: usize = 5000;

const UPSERT: &str = "INSERT INTO snapshot (resource, id, record, hash)
    SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[])
    ON CONFLICT (resource, id) DO UPDATE SET record = excluded.record, hash = excluded.hash";

fn upsert(
    tx: &mut postgres::Client,
    resource: &str,
    rows: &[(i64, &str)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    if rows.len() < COPY_AT {
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let records: Vec<&str> = rows.iter().map(|r| r.1).collect();
        let hashes: Vec<i64> = rows.iter().map(|r| content_hash(r.1)).collect();
        tx.execute(UPSERT, &[&resource, &ids, &records, &hashes])?;
        return Ok(());
    }
    use postgres::types::Type;
    // A session's own staging table, emptied by every commit.
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS snapshot_load (id BIGINT, record TEXT, hash BIGINT) ON COMMIT DELETE ROWS",
    )?;
    let sink = tx.copy_in("COPY snapshot_load (id, record, hash) FROM STDIN BINARY")?;
    let mut writer =
        postgres::binary_copy::BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT8]);
    for (id, record) in rows {
        writer.write(&[id, record, &content_hash(record)])?;
    }
    writer.finish()?;
    tx.execute(
        "INSERT INTO snapshot (resource, id, record, hash) SELECT $1, id, record, hash FROM snapshot_load
         ON CONFLICT (resource, id) DO UPDATE SET record = excluded.record, hash = excluded.hash",
        &[&resource],
    )?;
    Ok(())
}

/// COPYs `rows` of `resource` into the snapshot; fails with a unique violation when one exists.
fn copy_new(
    tx: &mut postgres::Client,
    resource: &str,
    rows: &[(i64, &str)],
) -> Result<(), postgres::Error> {
    use postgres::types::Type;
    let sink = tx.copy_in("COPY snapshot (resource, id, record, hash) FROM STDIN BINARY")?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::INT8, Type::TEXT, Type::INT8],
    );
    for (id, record) in rows {
        writer.write(&[&resource, id, record, &content_hash(record)])?;
    }
    writer.finish()?;
    Ok(())
}

impl Snapshots for Postgres {
    fn has_baseline(&self, resource: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT 1 FROM baseline WHERE resource = $1", &[&resource])?
                    .is_some(),
            )
        })
    }

    fn snapshot_version(&self, resource: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT version, modified_at FROM snapshot_version WHERE resource = $1",
                &[&resource],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn any_baseline(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.query_opt("SELECT 1 FROM baseline LIMIT 1", &[])?
                .is_some())
        })
    }

    fn load_hashes(&self, resource: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, hash FROM snapshot WHERE resource = $1 ORDER BY id",
                &[&resource],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn load_many(&self, resource: &str, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, record FROM snapshot WHERE resource = $1 AND id = ANY($2)",
                &[&resource, &ids],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn load_one(&self, resource: &str, id: i64) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT record FROM snapshot WHERE resource = $1 AND id = $2",
                &[&resource, &id],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn load_snapshot(&self, resource: &str) -> Result<HashMap<i64, String>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, record FROM snapshot WHERE resource = $1",
                &[&resource],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn snapshot_len(&self, resource: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM snapshot WHERE resource = $1",
                    &[&resource],
                )?
                .get(0);
            Ok(n as u64)
        })
    }

    fn scan_snapshot(
        &self,
        resource: &str,
        descending: bool,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        self.scan_rows(resource, descending, &mut |_, text| each(text))
    }

    fn scan_snapshot_ordered(
        &self,
        resource: &str,
        order: RowOrder<'_>,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError> {
        if order.column.is_none() {
            return self.scan_snapshot(resource, order.descending, each);
        }
        // PostgreSQL's collations and jsonb ordering differ from SQLite's: the rows are sorted
        // where every export's order is decided, in a spool.
        let mut spool = Spool::new()?;
        let mut failed = None;
        self.scan_rows(
            resource,
            false,
            &mut |id, text| match spool.push(id, text) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
        )?;
        failed.map_or(Ok(()), Err)?;
        spool.drain(order, each)
    }
    fn write_baseline_page(
        &self,
        resource: &str,
        records: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let rows: Vec<(i64, &str)> = records.iter().map(|(id, r)| (*id, r.as_str())).collect();
        // Pages are not announced, and the poll's final commit is synchronous, which makes
        // every earlier page durable with it: no WAL flush per page. A first poll usually
        // writes new rows: they are COPYed straight in, and only when one already exists (a
        // first poll tried again, a record seen on two pages) is the page upserted instead.
        match self.fenced(false, |c| Ok(copy_new(c, resource, &rows)?)) {
            Err(StoreError::Conflict(_)) => self.fenced(false, |c| upsert(c, resource, &rows)),
            other => other,
        }
    }

    fn commit_poll(
        &self,
        resource: &str,
        writes: &[SnapshotWrite],
        events: &[OutboxEvent],
    ) -> Result<(), StoreError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for w in writes {
            match w {
                SnapshotWrite::Upsert { id, record } => upserts.push((*id, record.as_str())),
                SnapshotWrite::Delete { id } => deletes.push(*id),
            }
        }
        self.fenced(true, |tx| {
            upsert(tx, resource, &upserts)?;
            if !deletes.is_empty() {
                tx.execute(
                    "DELETE FROM snapshot WHERE resource = $1 AND id = ANY($2)",
                    &[&resource, &deletes],
                )?;
            }
            if !events.is_empty() {
                let column = |f: fn(&OutboxEvent) -> &str| -> Vec<&str> { events.iter().map(f).collect() };
                let ids: Vec<i64> = events.iter().map(|e| e.record_id).collect();
                // WITH ORDINALITY keeps the poll's order in the sequence numbers.
                tx.execute(
                    "INSERT INTO outbox (resource, op, event_id, routing_key, body, record_id, created_at)
                     SELECT r, o, e, k, b, i, floor(extract(epoch FROM now()))::bigint
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                          WITH ORDINALITY AS t(r, o, e, k, b, i, n) ORDER BY n",
                    &[
                        &column(|e| &e.resource),
                        &column(|e| &e.op),
                        &column(|e| &e.event_id),
                        &column(|e| &e.routing_key),
                        &column(|e| &e.body),
                        &ids,
                    ],
                )?;
            }
            let first = tx.execute(
                "INSERT INTO baseline (resource) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&resource],
            )?;
            if raises_version(first > 0, writes) {
                tx.execute(
                    "INSERT INTO snapshot_version (resource, version, modified_at) VALUES ($1, 1, floor(extract(epoch FROM now()))::bigint)
                     ON CONFLICT (resource) DO UPDATE SET version = snapshot_version.version + 1, modified_at = excluded.modified_at",
                    &[&resource],
                )?;
            }
            Ok(())
        })
    }

    fn watermark(&self, resource: &str) -> Result<Option<Watermark>, StoreError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT changed_at, audited_to FROM watermark WHERE resource = $1",
                &[&resource],
            )?;
            Ok(row.map(|r| Watermark {
                changed_at: r.get(0),
                audited_to: r.get(1),
            }))
        })
    }

    fn save_watermark(&self, resource: &str, watermark: &Watermark) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute(
                "INSERT INTO watermark (resource, changed_at, audited_to) VALUES ($1, $2, $3)
                 ON CONFLICT (resource) DO UPDATE SET changed_at = excluded.changed_at, audited_to = excluded.audited_to",
                &[&resource, &watermark.changed_at, &watermark.audited_to],
            )?;
            Ok(())
        })
    }

    fn save_poll_status(&self, resource: &str, status: &str) -> Result<(), StoreError> {
        self.fenced(true, |tx| {
            tx.execute(
                "INSERT INTO poll_status (resource, status) VALUES ($1, $2)
                 ON CONFLICT (resource) DO UPDATE SET status = excluded.status",
                &[&resource, &status],
            )?;
            Ok(())
        })
    }

    fn poll_statuses(&self) -> Result<HashMap<String, String>, StoreError> {
        self.with(|c| {
            let rows = c.query("SELECT resource, status FROM poll_status", &[])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl Postgres {
    /// Streams `(id, canonical JSON)` of every snapshot record of `resource` in key order.
    fn scan_rows(
        &self,
        resource: &str,
        descending: bool,
        each: &mut dyn FnMut(i64, &str) -> bool,
    ) -> Result<(), StoreError> {
        // The portal is read on a thread of its own (see `off_runtime`) and handed over a
        // batch at a time through a channel of two: bounded memory, whatever the caller does.
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<(i64, String)>>(2);
        let dir = if descending { "DESC" } else { "ASC" };
        let sql = format!("SELECT id, record FROM snapshot WHERE resource = $1 ORDER BY id {dir}");
        std::thread::scope(|s| {
            let reader = s.spawn(move || -> Result<(), StoreError> {
                let mut client = self.new_client()?;
                let mut tx = client
                    .build_transaction()
                    .read_only(true)
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .start()?;
                let portal = tx.bind(&sql, &[&resource])?;
                loop {
                    let rows = tx.query_portal(&portal, SCAN_BATCH)?;
                    let full = rows.len() == SCAN_BATCH as usize;
                    let batch: Vec<(i64, String)> =
                        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                    if batches.send(batch).is_err() || !full {
                        return Ok(());
                    }
                }
            });
            'read: for batch in received.iter() {
                for (id, text) in &batch {
                    if !each(*id, text) {
                        break 'read;
                    }
                }
            }
            drop(received);
            reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}
