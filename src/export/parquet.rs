//! Apache Parquet output through the `parquet` crate's column writers (no Arrow): one optional
//! column per export column, typed from the catalogue: whole numbers as INT64, dates as DATE,
//! timestamps (Daftra's wall clock in the account's zone) as TIMESTAMP(MICROS) adjusted to UTC,
//! text and enum labels as UTF-8 strings, and exact decimals as their exact text: Daftra's
//! documentation gives no precision or scale for any amount, and a fixed DECIMAL(p, s) would
//! round or refuse some value (README "Exports"). Rows are buffered into row groups of at most
//! [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_BYTES`] bytes, so memory stays bounded; snappy pages.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::{Cell, ExportError, Row, RowSink};
use crate::catalogue::{Column, ColumnKind};
use crate::record::Clock;

/// Rows of one row group at most.
pub const ROW_GROUP_ROWS: usize = 65_536;
/// Buffered bytes (about) of one row group at most.
pub const ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

/// The values of one column of the row group being filled; `levels` is 1 for a value, 0 for
/// null (Parquet's definition levels of an optional column).
enum Values {
    Int64(Vec<i64>),
    /// Microseconds since the Unix epoch, UTC.
    Micros(Vec<i64>),
    Int32(Vec<i32>),
    Text(Vec<ByteArray>),
}

struct Buffer {
    values: Values,
    levels: Vec<i16>,
}

/// How a catalogue column is stored.
fn physical(kind: ColumnKind) -> (Physical, LogicalType) {
    match kind {
        ColumnKind::Int => (Physical::INT64, LogicalType::integer(64, true)),
        ColumnKind::Date => (Physical::INT32, LogicalType::Date),
        ColumnKind::Timestamp => (
            Physical::INT64,
            LogicalType::timestamp(true, TimeUnit::MICROS),
        ),
        ColumnKind::Decimal | ColumnKind::Text | ColumnKind::Derived => {
            (Physical::BYTE_ARRAY, LogicalType::String)
        }
    }
}

fn parquet_error(e: parquet::errors::ParquetError) -> ExportError {
    ExportError::Io(std::io::Error::other(e.to_string()))
}

/// Writes rows as a Parquet file.
pub struct ParquetSink {
    writer: Option<SerializedFileWriter<File>>,
    path: std::path::PathBuf,
    clock: Clock,
    buffers: Vec<Buffer>,
    rows: usize,
    bytes: usize,
}

impl ParquetSink {
    /// A sink writing to `path`, timestamps read in `clock`'s zone.
    pub fn new(path: &Path, clock: Clock) -> ParquetSink {
        ParquetSink {
            writer: None,
            path: path.to_path_buf(),
            clock,
            buffers: Vec::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ExportError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = writer.next_row_group().map_err(parquet_error)?;
        for buffer in &mut self.buffers {
            let mut column = group
                .next_column()
                .map_err(parquet_error)?
                .expect("one column writer per buffer");
            let levels = Some(buffer.levels.as_slice());
            match &mut buffer.values {
                Values::Int64(v) | Values::Micros(v) => {
                    column.typed::<Int64Type>().write_batch(v, levels, None)
                }
                Values::Int32(v) => column.typed::<Int32Type>().write_batch(v, levels, None),
                Values::Text(v) => column.typed::<ByteArrayType>().write_batch(v, levels, None),
            }
            .map_err(parquet_error)?;
            column.close().map_err(parquet_error)?;
            match &mut buffer.values {
                Values::Int64(v) | Values::Micros(v) => v.clear(),
                Values::Int32(v) => v.clear(),
                Values::Text(v) => v.clear(),
            }
            buffer.levels.clear();
        }
        group.close().map_err(parquet_error)?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Appends one cell to `buffer`; a value the column's type cannot hold is null (the record
    /// stays, the odd value shows in CSV and JSON Lines).
    fn push(buffer: &mut Buffer, cell: Cell<'_>, clock: &Clock) -> usize {
        let (present, bytes) = match (&mut buffer.values, cell) {
            (_, Cell::Empty) => (false, 0),
            (Values::Int64(v), Cell::Int(i)) => {
                v.push(i);
                (true, 8)
            }
            (Values::Micros(v), Cell::Timestamp(t)) => match clock.utc_micros(t) {
                Some(us) => {
                    v.push(us);
                    (true, 8)
                }
                None => (false, 0),
            },
            (Values::Int32(v), Cell::Date(d)) => match days_since_epoch(d) {
                Some(days) => {
                    v.push(days);
                    (true, 4)
                }
                None => (false, 0),
            },
            (Values::Text(v), cell) => {
                let text = match cell {
                    Cell::Int(i) => i.to_string(),
                    Cell::Float(f) => f.to_string(),
                    Cell::Decimal(s) | Cell::Text(s) | Cell::Date(s) | Cell::Timestamp(s) => {
                        s.to_string()
                    }
                    Cell::Empty => unreachable!("matched above"),
                };
                let n = text.len();
                v.push(ByteArray::from(text.into_bytes()));
                (true, n + 16)
            }
            _ => (false, 0),
        };
        buffer.levels.push(i16::from(present));
        bytes + 2
    }
}

/// Days from 1970-01-01 of a `YYYY-MM-DD` date.
fn days_since_epoch(date: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

impl RowSink for ParquetSink {
    fn header(&mut self, columns: &[&Column]) -> Result<(), ExportError> {
        let fields = columns
            .iter()
            .map(|c| {
                let (physical, logical) = physical(c.kind);
                Type::primitive_type_builder(&c.name, physical)
                    .with_repetition(Repetition::OPTIONAL)
                    .with_logical_type(Some(logical))
                    .build()
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(parquet_error)?;
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(parquet_error)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("daftra-bridge {}", env!("CARGO_PKG_VERSION")))
            .build();
        let file = File::create(&self.path)?;
        self.writer = Some(
            SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
                .map_err(parquet_error)?,
        );
        self.buffers = columns
            .iter()
            .map(|c| Buffer {
                values: match c.kind {
                    ColumnKind::Int => Values::Int64(Vec::new()),
                    ColumnKind::Timestamp => Values::Micros(Vec::new()),
                    ColumnKind::Date => Values::Int32(Vec::new()),
                    _ => Values::Text(Vec::new()),
                },
                levels: Vec::new(),
            })
            .collect();
        Ok(())
    }

    fn row(&mut self, columns: &[&Column], row: &dyn Row) -> Result<(), ExportError> {
        for (buffer, column) in self.buffers.iter_mut().zip(columns) {
            self.bytes += ParquetSink::push(buffer, row.cell(column), &self.clock);
        }
        self.rows += 1;
        if self.rows >= ROW_GROUP_ROWS || self.bytes >= ROW_GROUP_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            writer.close().map_err(parquet_error)?;
        }
        Ok(())
    }
}
