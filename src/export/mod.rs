//! Exports of a resource as CSV or XLSX: rows from the snapshot or read live from Daftra,
//! filtered and ordered by an [`ExportQuery`], written through a [`RowSink`] on a blocking thread.

pub mod csv;
pub mod query;
pub mod row;
pub mod xlsx;

use tokio::sync::mpsc;

use crate::catalogue::{Column, Resource};
use crate::daftra::{DaftraClient, FetchError};
use crate::record::{self, Record};
use crate::store::{Spool, Store, StoreError};
pub use query::{ExportQuery, QueryError, Source};
pub use row::{Cell, Row, StoredRow};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// `csv` or `xlsx`: the file extension and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
    /// Parses `csv` or `xlsx`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            _ => None,
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] FetchError),
    #[error("writing the file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("building the XLSX failed: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// The reader of a streamed export went away.
    #[error("the client closed the download")]
    Closed,
}

/// Receives the rows of an export.
pub trait RowSink {
    /// Called once before any row, with the columns in output order.
    fn header(&mut self, columns: &[&Column]) -> Result<(), ExportError>;
    fn row(&mut self, columns: &[&Column], row: &dyn Row) -> Result<(), ExportError>;
    /// Called once after the last row.
    fn finish(&mut self) -> Result<(), ExportError>;
}

/// Records of a live scan, a page at a time, as normalised by [`live_pages`].
pub type LivePages = mpsc::Receiver<Result<Vec<Record>, FetchError>>;

/// Reads Daftra page by page in a task and sends each page's normalised records (for a
/// line-item export, the items of the parent's records); records without a readable key are
/// skipped (and counted). At most two pages wait in the channel.
pub fn live_pages(
    client: std::sync::Arc<DaftraClient>,
    export: &'static Resource,
    metrics: crate::metrics::Metrics,
) -> LivePages {
    let resource = export.source();
    let clock = *client.clock();
    let (tx, rx) = mpsc::channel(2);
    let mut pages = crate::daftra::spawn_pages(client, resource, 2);
    tokio::spawn(async move {
        while let Some(page) = pages.recv().await {
            let msg = page.map(|p| {
                p.into_records(resource)
                    .filter_map(|raw| {
                        match raw.map(|raw| record::normalise_owned(resource, raw, &clock)) {
                            Ok(Ok(n)) => Some(n.record),
                            Ok(Err(_)) | Err(_) => {
                                metrics
                                    .api_invalid_records
                                    .with_label_values(&[&resource.name])
                                    .inc();
                                None
                            }
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
    Snapshot(Store),
    /// A live scan; the first page may already have been taken off the channel.
    Live {
        first: Option<Vec<Record>>,
        rest: LivePages,
    },
}

/// The normalised records of `parent`'s snapshot, streamed in key order.
fn snapshot_records(
    store: &Store,
    parent: &'static Resource,
    mut each: impl FnMut(Record) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut failed = None;
    store.scan_snapshot(
        &parent.name,
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
        Rows::Snapshot(store) if export.parent.is_none() => write_matching(q, sink, |each| {
            store.scan_snapshot_ordered(&export.name, q.order(), each)
        })?,
        Rows::Snapshot(store) => {
            let parent = export.source();
            write_records(q, sink, |each| {
                snapshot_records(&store, parent, |r| {
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

/// `work_orders-2026-11-29.csv`: the download name of an export made today (UTC).
pub fn file_name(resource: &Resource, format: Format) -> String {
    format!(
        "{}-{}.{}",
        resource.name,
        chrono::Utc::now().format("%Y-%m-%d"),
        format.as_str()
    )
}
