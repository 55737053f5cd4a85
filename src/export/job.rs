//! One export job, as `GET /exports/...` and `daftra-bridge export` both run it: a validated
//! query and a format, written from [`Rows`] to an [`Output`], measured and reported once.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::csv::CsvSink;
use super::jsonl::JsonlSink;
use super::parquet::ParquetSink;
use super::xlsx::XlsxSink;
use super::{write_rows, ExportError, ExportQuery, Format, QueryError, Rows};
use crate::record::Clock;

/// Where an export writes.
pub enum Output {
    /// CSV text to any writer (a file, standard output, an HTTP body).
    Csv(Box<dyn Write + Send>),
    /// A workbook saved at this path (XLSX is a zip: it needs a file, not a stream).
    Xlsx(PathBuf),
    /// JSON Lines to any writer.
    Jsonl(Box<dyn Write + Send>),
    /// A Parquet file saved at this path (its footer indexes what precedes).
    Parquet(PathBuf),
}

impl Output {
    /// The output of `format`: to `stream` for the streamed formats, else to a file at `path`.
    pub fn of(format: Format, stream: Box<dyn Write + Send>, path: PathBuf) -> Output {
        match format {
            Format::Csv => Output::Csv(stream),
            Format::Jsonl => Output::Jsonl(stream),
            Format::Xlsx => Output::Xlsx(path),
            Format::Parquet => Output::Parquet(path),
        }
    }
}

/// What an export did, as reported when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The export's name (a resource or a line-item export).
    pub export: &'static str,
    pub format: Format,
    /// Rows written (0 when it failed).
    pub rows: u64,
    /// XLSX text cells cut at Excel's 32,767-unit limit.
    pub truncated: u64,
    pub took: Duration,
}

/// Who hears what exports do: the bridge's metrics in `serve`, nobody on the command line.
pub trait Observer: Send + Sync {
    /// A record Daftra sent during a live export could not be read; it was left out.
    fn invalid_record(&self, resource: &str);
    /// An export ended, either way.
    fn export_finished(&self, report: &Report);
}

/// Nobody listens (the command line).
impl Observer for () {
    fn invalid_record(&self, _: &str) {}
    fn export_finished(&self, _: &Report) {}
}

/// Exports report to the bridge's metrics: rows and duration by export and format, cells cut.
impl Observer for crate::metrics::Metrics {
    fn invalid_record(&self, resource: &str) {
        crate::metrics::Metrics::invalid_record(self, resource);
    }

    fn export_finished(&self, r: &Report) {
        crate::metrics::Metrics::export_finished(
            self,
            r.export,
            r.format,
            (r.rows, r.truncated),
            r.took,
        );
    }
}

/// A validated export: which rows, which columns, in what order and format.
#[derive(Clone, Debug)]
pub struct ExportJob {
    pub query: ExportQuery,
    pub format: Format,
    /// The account's clock: JSON Lines and Parquet write timestamps as instants.
    pub clock: Clock,
}

impl ExportJob {
    /// The job of `query` in `format`, timestamps in `clock`'s zone; `bom` is refused but for
    /// CSV, naming the parameter.
    pub fn new(query: ExportQuery, format: Format, clock: Clock) -> Result<ExportJob, QueryError> {
        if format != Format::Csv && query.bom {
            return Err(QueryError {
                field: "bom".into(),
                message: "applies to CSV only".into(),
            });
        }
        Ok(ExportJob {
            query,
            format,
            clock,
        })
    }

    /// Writes every matching row of `rows` to `output` (blocking: run it off the async
    /// executor), hands freed memory back, logs and reports the outcome to `observer`, and
    /// returns the rows written. The caller picks the output by [`ExportJob::format`].
    pub fn run(
        &self,
        rows: Rows,
        output: Output,
        observer: &dyn Observer,
    ) -> Result<u64, ExportError> {
        let started = Instant::now();
        let q = &self.query;
        let mut truncated = 0;
        let result = match output {
            Output::Csv(out) => CsvSink::new(out, q.bom)
                .map_err(ExportError::from)
                .and_then(|mut sink| write_rows(rows, q, &mut sink)),
            Output::Xlsx(path) => {
                let mut sink = XlsxSink::new(&path, &q.resource.name);
                let written = write_rows(rows, q, &mut sink);
                truncated = sink.truncated;
                written.and_then(|n| sink.save(q.columns.len()).map(|_| n))
            }
            Output::Jsonl(out) => {
                // Line items are nested unless `fields` picked the columns.
                let groups = match q.fields_given {
                    true => &[][..],
                    false => &q.resource.line_items[..],
                };
                write_rows(rows, q, &mut JsonlSink::new(out, self.clock, groups))
            }
            Output::Parquet(path) => write_rows(rows, q, &mut ParquetSink::new(&path, self.clock)),
        };
        // The export's buffers are free now: hand them back, so a burst does not stay in RSS.
        crate::memory::release();
        let report = Report {
            export: q.resource.name.as_str(),
            format: self.format,
            rows: *result.as_ref().unwrap_or(&0),
            truncated,
            took: started.elapsed(),
        };
        report.log(result.as_ref().err());
        observer.export_finished(&report);
        result
    }
}

impl Report {
    fn log(&self, failed: Option<&ExportError>) {
        let (resource, format) = (self.export, self.format.as_str());
        if self.truncated > 0 {
            tracing::warn!(
                resource,
                cells = self.truncated,
                "XLSX cells cut at Excel's 32,767-character limit (the CSV has them whole)"
            );
        }
        match failed {
            None => tracing::info!(
                resource,
                format,
                rows = self.rows,
                duration_ms = self.took.as_millis() as u64,
                "Export served"
            ),
            Some(e) => tracing::warn!(resource, format, error = %e, "Export stopped"),
        }
    }
}
