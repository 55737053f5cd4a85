//! The file formats of exports: a leaf, so that metrics can label by format without depending
//! on the exports that report to them.

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// Every format.
    pub const ALL: &'static [Format] = &[Format::Csv, Format::Xlsx];

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
