//! Where an export's rows come from (the snapshot, or Daftra read live page by page) and how
//! they reach a [`RowSink`]: filtered, and ordered in bounded memory.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::job::Observer;
use super::{ExportError, ExportQuery, RowSink, StoredRow};
use crate::account::Account;
use crate::catalogue::Resource;
use crate::daftra::FetchError;
use crate::record::{self, Record};
use crate::store::{Spool, Store, StoreError};

/// Records of a live scan, a page at a time, as normalised by [`live_pages`].
pub type LivePages = mpsc::Receiver<Result<Vec<Record>, FetchError>>;

/// Reads Daftra page by page in a task and sends each page's normalised records (for a
/// line-item export, the items of the parent's records); records without a readable key are
/// skipped (and counted). At most two pages wait in the channel.
pub fn live_pages(
    account: &Account,
    export: &'static Resource,
    observer: Arc<dyn Observer>,
) -> LivePages {
    let resource = export.source();
    let clock = account.clock;
    let (tx, rx) = mpsc::channel(2);
    let mut pages = crate::daftra::spawn_pages(account.client.clone(), resource, 2);
    tokio::spawn(async move {
        while let Some(page) = pages.recv().await {
            let msg = page.map(|p| {
                p.decode(resource, &clock)
                    .filter_map(|decoded| match decoded {
                        Ok(n) => Some(n.into_record()),
                        Err(_) => {
                            observer.invalid_record(&resource.name);
                            None
                        }
                    })
                    .flat_map(|r| match export.parent {
                        Some(_) => record::line_item_rows(export, resource, &r),
                        None => vec![r],
                    })
                    .collect()
            });
            let failed = msg.is_err();
            if tx.send(msg).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// Where an export's rows come from.
pub enum Rows {
    /// The snapshot of the feed keyed `key` (the export's source resource).
    Snapshot { store: Store, key: String },
    /// A live scan; the first page may already have been taken off the channel.
    Live {
        first: Option<Vec<Record>>,
        rest: LivePages,
    },
}

impl Rows {
    /// Starts reading `export` live from `account` and waits for the first page, so a Daftra
    /// that cannot be read fails here, before anything is written.
    pub async fn live(
        account: &Account,
        export: &'static Resource,
        observer: Arc<dyn Observer>,
    ) -> Result<Rows, FetchError> {
        let mut rest = live_pages(account, export, observer);
        let first = rest.recv().await.transpose()?;
        Ok(Rows::Live { first, rest })
    }
}

/// The normalised records of the snapshot keyed `key`, streamed in key order.
fn snapshot_records(
    store: &Store,
    key: &str,
    mut each: impl FnMut(Record) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut failed = None;
    store.scan_snapshot(
        key,
        false,
        &mut |text| match serde_json::from_str::<Record>(text) {
            Ok(r) => match each(r) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
            Err(_) => true,
        },
    )?;
    failed.map_or(Ok(()), Err)
}

/// Hands each row of `rows` that parses and matches `q` to `sink`, counting them; stops at the
/// first failed write. The rows come from one of the store's ordered streams.
fn write_matching(
    q: &ExportQuery,
    sink: &mut dyn RowSink,
    rows: impl FnOnce(&mut dyn FnMut(&str) -> bool) -> Result<(), StoreError>,
) -> Result<u64, ExportError> {
    let mut n = 0;
    let mut failed = None;
    rows(&mut |text| {
        let Ok(stored) = StoredRow::parse(text) else {
            return true;
        };
        if !q.matches(&stored) {
            return true;
        }
        match sink.row(&q.columns, &stored) {
            Ok(()) => {
                n += 1;
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    failed.map_or(Ok(n), Err)
}

/// Streams `rows` (pages of records) to `sink` or, when the query is sorted, through a
/// [`Spool`] of the matching rows, so memory stays bounded either way.
fn write_records(
    q: &ExportQuery,
    sink: &mut dyn RowSink,
    feed: impl FnOnce(&mut dyn FnMut(&Record) -> Result<(), ExportError>) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    if !q.sort_given {
        let mut n = 0u64;
        feed(&mut |r| {
            if q.matches(r) {
                sink.row(&q.columns, r)?;
                n += 1;
            }
            Ok(())
        })?;
        return Ok(n);
    }
    let mut spool = Spool::new()?;
    feed(&mut |r| {
        if q.matches(r) {
            let text = serde_json::to_string(r).unwrap_or_default();
            spool.push(record::key(q.resource, r), &text)?;
        }
        Ok(())
    })?;
    write_matching(q, sink, |each| spool.drain(q.order(), each))
}

/// Writes every matching row to `sink` (blocking: run it off the async executor) and returns
/// the number of rows written.
pub fn write_rows(rows: Rows, q: &ExportQuery, sink: &mut dyn RowSink) -> Result<u64, ExportError> {
    sink.header(&q.columns)?;
    let export = q.resource;
    let n = match rows {
        Rows::Snapshot { store, key } if export.parent.is_none() => {
            write_matching(q, sink, |each| {
                store.scan_snapshot_ordered(&key, q.order(), each)
            })?
        }
        Rows::Snapshot { store, key } => {
            let parent = export.source();
            write_records(q, sink, |each| {
                snapshot_records(&store, &key, |r| {
                    for row in record::line_item_rows(export, parent, &r) {
                        each(&row)?;
                    }
                    Ok(())
                })
            })?
        }
        Rows::Live { first, mut rest } => write_records(q, sink, |each| {
            let mut first = first;
            loop {
                let page = match first.take() {
                    Some(p) => p,
                    None => match rest.blocking_recv() {
                        None => break,
                        Some(page) => page?,
                    },
                };
                for r in &page {
                    each(r)?;
                }
            }
            Ok(())
        })?,
    };
    sink.finish()?;
    Ok(n)
}
