//! Exports of a resource as CSV, XLSX, JSON Lines or Parquet: rows from the snapshot or read live from Daftra
//! ([`Rows`]), filtered and ordered by an [`ExportQuery`], written through a [`RowSink`] by one
//! [`ExportJob`] for the HTTP API and the command line alike.

pub mod csv;
mod job;
pub mod jsonl;
pub mod parquet;
pub mod query;
pub mod row;
mod rows;
pub mod xlsx;

use crate::catalogue::{Column, Resource};
use crate::daftra::FetchError;
pub use crate::format::Format;
use crate::store::StoreError;
pub use job::{ExportJob, Observer, Output, Report};
pub use query::{ExportQuery, QueryError, Source};
pub use row::{Cell, Row, StoredRow};
pub use rows::{live_pages, write_rows, LivePages, Rows};

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

/// `work_orders-2026-11-29.csv`: the download name of an export made today (UTC).
pub fn file_name(resource: &Resource, format: Format) -> String {
    format!(
        "{}-{}.{}",
        resource.name,
        chrono::Utc::now().format("%Y-%m-%d"),
        format.as_str()
    )
}
