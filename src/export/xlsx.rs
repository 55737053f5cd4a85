//! XLSX output through rust_xlsxwriter in constant-memory mode: a bold, frozen, filterable header;
//! numbers as numbers; dates and timestamps as Excel dates; every text a string cell (never a
//! formula); long sheets continue on further sheets.

use std::path::Path;

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet};

use super::{Cell, ExportError, Row, RowSink};
use crate::catalogue::{Column, ColumnKind};

/// Rows per sheet, header included (Excel's limit, 2^20).
pub const MAX_SHEET_ROWS: u32 = 1_048_576;
/// Characters a cell holds, in UTF-16 code units (Excel's limit).
pub const MAX_CELL_UTF16: usize = 32_767;

/// `text` cut to at most [`MAX_CELL_UTF16`] UTF-16 units, never inside a character.
pub fn truncate_cell(text: &str) -> &str {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > MAX_CELL_UTF16 {
            return &text[..i];
        }
    }
    text
}

/// Replaces U+FFFE and U+FFFF, which XML 1.0 cannot carry, by U+FFFD. C0 control characters
/// need nothing here: rust_xlsxwriter writes them as Excel's `_xHHHH_` escapes.
pub fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '\u{FFFE}' | '\u{FFFF}');
    // Excel's line break inside a cell is LF; a CR would show as `_x000D_` in many readers.
    let text: std::borrow::Cow<'_, str> = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        text.into()
    };
    if text.chars().any(bad) {
        text.chars()
            .map(|c| if bad(c) { '\u{FFFD}' } else { c })
            .collect::<String>()
            .into()
    } else {
        text
    }
}

/// The Excel date of a normalised `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, read by byte offsets
/// (the generic text parser cost a third of the XLSX time); `None` for other forms or dates
/// Excel cannot hold (before 1900).
pub fn excel_datetime(s: &str) -> Option<ExcelDateTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u16>().ok();
    let b = s.as_bytes();
    if !(b.len() == 10 || b.len() == 19) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = ExcelDateTime::from_ymd(num(0..4)?, num(5..7)? as u8, num(8..10)? as u8).ok()?;
    if b.len() == 10 {
        return Some(date);
    }
    date.and_hms(num(11..13)?, num(14..16)? as u8, num(17..19)?)
        .ok()
}

fn width(column: &Column) -> f64 {
    match (column.kind, column.name.as_str()) {
        (_, "title" | "description") => 40.0,
        (ColumnKind::Timestamp, _) => 20.0,
        (ColumnKind::Date, _) => 12.0,
        (ColumnKind::Decimal, _) => 14.0,
        (ColumnKind::Int, _) => 10.0,
        _ => 16.0,
    }
}

/// Writes rows to an XLSX workbook, saved to a file by [`RowSink::finish`].
pub struct XlsxSink<'p> {
    workbook: Workbook,
    path: &'p Path,
    sheet_name: String,
    sheets: usize,
    row: u32,
    max_rows: u32,
    header: Format,
    date: Format,
    timestamp: Format,
    /// Text cells cut at Excel's 32,767-unit limit so far.
    pub truncated: u64,
}

impl<'p> XlsxSink<'p> {
    /// A sink that saves to `path`; sheets are named after `sheet_name`.
    pub fn new(path: &'p Path, sheet_name: &str) -> Self {
        XlsxSink {
            workbook: Workbook::new(),
            path,
            sheet_name: sheet_name.chars().take(25).collect(),
            sheets: 0,
            row: 0,
            max_rows: MAX_SHEET_ROWS,
            header: Format::new().set_bold(),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            timestamp: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            truncated: 0,
        }
    }

    /// Rows per sheet, header included (at most [`MAX_SHEET_ROWS`]); for tests of the overflow.
    pub fn with_max_sheet_rows(mut self, rows: u32) -> Self {
        self.max_rows = rows.clamp(2, MAX_SHEET_ROWS);
        self
    }

    fn sheet(&mut self) -> Result<&mut Worksheet, ExportError> {
        Ok(self.workbook.worksheet_from_index(self.sheets - 1)?)
    }

    fn new_sheet(&mut self, columns: &[&Column]) -> Result<(), ExportError> {
        self.close_sheet(columns.len())?;
        self.sheets += 1;
        let name = if self.sheets == 1 {
            self.sheet_name.clone()
        } else {
            format!("{} ({})", self.sheet_name, self.sheets)
        };
        let header = self.header.clone();
        let ws = self.workbook.add_worksheet_with_constant_memory();
        ws.set_name(&name)?;
        for (i, c) in columns.iter().enumerate() {
            ws.set_column_width(i as u16, width(c))?;
            // Dates take their column's format: a format passed with every cell is hashed
            // per cell to find its index (a tenth of a large export's time).
            match c.kind {
                ColumnKind::Date => ws.set_column_format(i as u16, &self.date)?,
                ColumnKind::Timestamp => ws.set_column_format(i as u16, &self.timestamp)?,
                _ => ws,
            };
            ws.write_string_with_format(0, i as u16, &c.name, &header)?;
        }
        ws.set_freeze_panes(1, 0)?;
        self.row = 1;
        Ok(())
    }

    fn close_sheet(&mut self, columns: usize) -> Result<(), ExportError> {
        if self.sheets == 0 || columns == 0 {
            return Ok(());
        }
        let last = self.row.saturating_sub(1);
        self.sheet()?.autofilter(0, 0, last, (columns - 1) as u16)?;
        Ok(())
    }
}

impl RowSink for XlsxSink<'_> {
    fn header(&mut self, columns: &[&Column]) -> Result<(), ExportError> {
        self.new_sheet(columns)
    }

    fn row(&mut self, columns: &[&Column], record: &dyn Row) -> Result<(), ExportError> {
        if self.row >= self.max_rows {
            self.new_sheet(columns)?;
        }
        let row = self.row;
        let mut cut_cells = 0;
        let ws = self.sheet()?;
        for (i, column) in columns.iter().enumerate() {
            let col = i as u16;
            match record.cell(column) {
                Cell::Empty => {}
                Cell::Int(n) => {
                    ws.write_number(row, col, n as f64)?;
                }
                // Excel holds numbers as doubles: a number cell shows up to 15 digits, as
                // Excel itself would.
                Cell::Float(f) => {
                    ws.write_number(row, col, f)?;
                }
                Cell::Decimal(d) => match d.parse::<f64>() {
                    Ok(f) if f.is_finite() => {
                        ws.write_number(row, col, f)?;
                    }
                    _ => {
                        ws.write_string(row, col, d)?;
                    }
                },
                Cell::Text(t) => {
                    let cut = truncate_cell(t);
                    if cut.len() < t.len() {
                        cut_cells += 1;
                    }
                    ws.write_string(row, col, xml_safe(cut))?;
                }
                Cell::Date(d) | Cell::Timestamp(d) => {
                    match excel_datetime(d) {
                        // Formatted as a date by its column's format.
                        Some(dt) => ws.write_datetime(row, col, &dt)?,
                        // Dates Excel cannot represent (before 1900) stay readable as text.
                        None => ws.write_string(row, col, d)?,
                    };
                }
            }
        }
        self.truncated += cut_cells;
        self.row += 1;
        Ok(())
    }

    /// Nothing to flush: [`XlsxSink::save`] writes the file.
    fn finish(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

impl XlsxSink<'_> {
    /// Sets the header filter of the last sheet and saves the workbook to the path.
    pub fn save(mut self, columns: usize) -> Result<(), ExportError> {
        self.close_sheet(columns)?;
        self.workbook.save(self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_never_splits_a_character() {
        let long = "😀".repeat(20_000);
        let cut = truncate_cell(&long);
        assert!(cut.encode_utf16().count() <= MAX_CELL_UTF16);
        assert_eq!(cut.chars().count(), MAX_CELL_UTF16 / 2);
        assert_eq!(truncate_cell("short"), "short");
    }

    #[test]
    fn rows_past_the_sheet_limit_continue_on_further_sheets() {
        use crate::catalogue::default_resource;
        use calamine::Reader;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xlsx");
        let q = crate::export::ExportQuery::all(default_resource());
        let mut sink = XlsxSink::new(&path, "work_orders").with_max_sheet_rows(4);
        sink.header(&q.columns).unwrap();
        for id in 1..=7 {
            let r = crate::record::normalise(
                default_resource(),
                serde_json::json!({"id": id}).as_object().unwrap(),
            )
            .unwrap();
            sink.row(&q.columns, &r).unwrap();
        }
        sink.save(q.columns.len()).unwrap();
        let mut book: calamine::Xlsx<_> = calamine::open_workbook(&path).unwrap();
        assert_eq!(
            book.sheet_names(),
            ["work_orders", "work_orders (2)", "work_orders (3)"]
        );
        let ids: Vec<String> = book
            .worksheets()
            .iter()
            .flat_map(|(_, range)| {
                range
                    .rows()
                    .skip(1)
                    .map(|r| r[0].to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7"]);
        for (_, range) in book.worksheets() {
            assert_eq!(
                range.rows().next().unwrap()[0].to_string(),
                "id",
                "every sheet has the header"
            );
        }
    }

    #[test]
    fn dates_become_excel_serials() {
        let serial = |s| excel_datetime(s).map(|d| d.to_excel());
        assert_eq!(serial("1900-03-01"), Some(61.0));
        assert_eq!(
            serial("2026-11-29"),
            ExcelDateTime::parse_from_str("2026-11-29")
                .ok()
                .map(|d| d.to_excel())
        );
        let t = serial("2026-11-29 12:00:00").unwrap();
        assert_eq!(t.fract(), 0.5);
        assert_eq!(serial("1800-01-01"), None);
        assert_eq!(serial("29/11/2026"), None);
    }

    #[test]
    fn xml_unsafe_characters_are_replaced() {
        assert_eq!(xml_safe("a\u{FFFF}b\u{1}\tc\n"), "a\u{FFFD}b\u{1}\tc\n");
        assert_eq!(xml_safe("fine"), "fine");
        assert_eq!(xml_safe("one\r\ntwo\rthree\nfour"), "one\ntwo\nthree\nfour");
    }
}
