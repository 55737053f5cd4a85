//! The file formats of exports: a leaf, so that metrics can label by format without depending
//! on the exports that report to them.

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    /// JSON Lines: one record a line, line items nested.
    Jsonl,
    /// Apache Parquet: typed columns.
    Parquet,
}

impl Format {
    /// Every format.
    pub const ALL: &'static [Format] = &[Format::Csv, Format::Xlsx, Format::Jsonl, Format::Parquet];

    /// `csv`, `xlsx`, `jsonl` or `parquet`: the file extension and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// Parses an extension of [`Format::as_str`].
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.as_str() == s)
    }

    /// The media type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Jsonl => "application/jsonl; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Whether the file is streamed as it is written (CSV, JSON Lines) rather than built whole
    /// in a temporary file first (XLSX and Parquet end with an index of what precedes).
    pub fn streams(self) -> bool {
        matches!(self, Format::Csv | Format::Jsonl)
    }
}
