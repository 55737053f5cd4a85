//! CSV output: RFC 4180 through the csv crate, CRLF line ends, optional UTF-8 BOM, and text
//! cells that a spreadsheet would run as a formula prefixed with `'` (OWASP "CSV injection").

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Cell, ExportError, Row, RowSink};
use crate::catalogue::Column;

/// The UTF-8 byte order mark that makes Excel read a CSV as UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// C0 control characters other than tab, CR and LF, and DEL: they have no meaning in a cell,
/// and some readers stop at NUL or show them as boxes.
fn is_stray_control(c: char) -> bool {
    (c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n')) || c == '\u{7f}'
}

/// A text cell made safe for spreadsheets: stray control characters (C0 other than tab, CR and
/// LF, and DEL) removed, then text that a spreadsheet would evaluate prefixed with `'`; other
/// text unchanged.
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    // A byte scan: every stray control is ASCII, and this runs for every text cell.
    let stray = text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f);
    let text: std::borrow::Cow<'_, str> = if stray {
        text.chars()
            .filter(|c| !is_stray_control(*c))
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text,
    }
}

/// Writes rows as CSV to any writer.
pub struct CsvSink<W: Write> {
    writer: ::csv::Writer<W>,
    line: Vec<String>,
}

impl<W: Write> CsvSink<W> {
    /// A sink over `out`; with `bom`, the file starts with a UTF-8 byte order mark.
    pub fn new(mut out: W, bom: bool) -> io::Result<Self> {
        if bom {
            out.write_all(BOM)?;
        }
        let writer = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .from_writer(out);
        Ok(CsvSink {
            writer,
            line: Vec::new(),
        })
    }
}

fn csv_err(e: ::csv::Error) -> ExportError {
    match e.into_kind() {
        ::csv::ErrorKind::Io(e) if e.kind() == io::ErrorKind::BrokenPipe => ExportError::Closed,
        ::csv::ErrorKind::Io(e) => ExportError::Io(e),
        other => ExportError::Io(io::Error::other(format!("{other:?}"))),
    }
}

impl<W: Write> RowSink for CsvSink<W> {
    fn header(&mut self, columns: &[&Column]) -> Result<(), ExportError> {
        self.writer
            .write_record(columns.iter().map(|c| c.name.as_str()))
            .map_err(csv_err)
    }

    fn row(&mut self, columns: &[&Column], record: &dyn Row) -> Result<(), ExportError> {
        self.line.resize(columns.len(), String::new());
        for (slot, column) in self.line.iter_mut().zip(columns) {
            slot.clear();
            match record.cell(column) {
                Cell::Empty => {}
                Cell::Int(i) => slot.push_str(itoa::Buffer::new().format(i)),
                Cell::Decimal(d) => slot.push_str(d),
                Cell::Float(f) => slot.push_str(ryu::Buffer::new().format(f)),
                Cell::Text(t) => slot.push_str(&neutralise(t)),
                Cell::Date(d) | Cell::Timestamp(d) => slot.push_str(d),
            }
        }
        self.writer.write_record(&self.line).map_err(csv_err)
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.writer.flush().map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => ExportError::Closed,
            _ => ExportError::Io(e),
        })
    }
}

/// Bytes of at least this size are sent to the HTTP body at once.
const CHUNK: usize = 64 * 1024;

/// A blocking writer that sends its bytes to an async HTTP body in chunks; the bounded channel
/// holds memory to a few chunks whatever the row count.
pub struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Result<Bytes, io::Error>>) -> Self {
        ChannelWriter {
            buf: Vec::with_capacity(CHUNK * 2),
            tx,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK * 2),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "download closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_text_is_neutralised() {
        for t in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(t), format!("'{t}"));
        }
        assert_eq!(neutralise("صيانة"), "صيانة");
        assert_eq!(neutralise(""), "");
        // Stray controls go; tab, CR and LF inside a cell stay (the csv crate quotes them).
        assert_eq!(neutralise("a\u{0}b\u{7}c\u{1b}\u{7f}"), "abc");
        assert_eq!(neutralise("a\tb\r\nc"), "a\tb\r\nc");
        assert_eq!(
            neutralise("\u{1}=1+1"),
            "'=1+1",
            "removed before the formula check"
        );
    }
}
