//! JSON Lines output (<https://jsonlines.org>): one record a line, the export's columns typed
//! (whole numbers as JSON numbers; exact decimals as strings, so no reader rounds a 20-digit
//! amount through a double; dates as `YYYY-MM-DD`; timestamps as RFC 3339 with the account's
//! offset; empty as `null`), and, when no `fields` were picked, each line-item group nested
//! as an array of items typed the same way. Streamed: memory holds one line.

use std::io::Write;

use super::{Cell, ExportError, Row, RowSink};
use crate::catalogue::{Column, ColumnKind, LineItems};
use crate::record::{Clock, Record};

/// Writes rows as JSON Lines to any writer.
pub struct JsonlSink<W: Write> {
    out: W,
    clock: Clock,
    /// The groups nested in each line (none when `fields` picked the columns).
    groups: &'static [LineItems],
    line: Vec<u8>,
}

impl<W: Write> JsonlSink<W> {
    /// A sink over `out`, timestamps read in `clock`'s zone, nesting `groups`.
    pub fn new(out: W, clock: Clock, groups: &'static [LineItems]) -> Self {
        JsonlSink {
            out,
            clock,
            groups,
            line: Vec::with_capacity(1024),
        }
    }
}

/// Writes the JSON of one cell to `out`.
fn write_value(out: &mut Vec<u8>, column: &Column, cell: Cell<'_>, clock: &Clock) {
    let text = |out: &mut Vec<u8>, s: &str| {
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
    // An exact decimal is a string even when it is whole, so a reader types the column once.
    if column.kind == ColumnKind::Decimal {
        match cell {
            Cell::Int(i) => return text(out, &i.to_string()),
            Cell::Float(f) => return text(out, &f.to_string()),
            _ => {}
        }
    }
    match cell {
        Cell::Empty => out.extend_from_slice(b"null"),
        Cell::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Cell::Float(f) => match serde_json::Number::from_f64(f) {
            Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        },
        Cell::Decimal(d) => text(out, d),
        Cell::Text(t) | Cell::Date(t) => text(out, t),
        Cell::Timestamp(t) => match clock.rfc3339(t) {
            Some(at) => text(out, &at),
            None => text(out, t),
        },
    }
}

/// Writes the object of `columns` of `row` to `out`, leaving it open when `open` (more keys
/// follow).
fn write_object(out: &mut Vec<u8>, columns: &[&Column], row: &dyn Row, clock: &Clock, open: bool) {
    out.push(b'{');
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, &c.name);
        out.push(b':');
        write_value(out, c, row.cell(c), clock);
    }
    if !open {
        out.push(b'}');
    }
}

impl<W: Write> RowSink for JsonlSink<W> {
    fn header(&mut self, _columns: &[&Column]) -> Result<(), ExportError> {
        Ok(())
    }

    fn row(&mut self, columns: &[&Column], row: &dyn Row) -> Result<(), ExportError> {
        self.line.clear();
        let nested = !self.groups.is_empty();
        write_object(&mut self.line, columns, row, &self.clock, nested);
        let items = match nested {
            true => row.items(self.groups),
            false => Vec::new(),
        };
        for (group, items) in self.groups.iter().zip(items) {
            let item_columns: Vec<&Column> = group.columns.iter().collect();
            if !self.line.ends_with(b"{") {
                self.line.push(b',');
            }
            let _ = serde_json::to_writer(&mut self.line, &group.key);
            self.line.extend_from_slice(b":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.line.push(b',');
                }
                let item: &Record = item;
                write_object(&mut self.line, &item_columns, item, &self.clock, false);
            }
            self.line.push(b']');
        }
        if nested {
            self.line.push(b'}');
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;
    use serde_json::Value;

    #[test]
    fn lines_are_typed_exact_and_nest_line_items() {
        let invoices = catalogue::by_name("invoices").unwrap();
        let raw = serde_json::json!({"id": "13", "no": "INV-٠١", "summary_total": "12345678901234567890.12",
            "created": "2026-03-05 14:21:35", "date": "2026-03-05",
            "summary_paid": 46581,
            "InvoiceItem": [{"id": "1300", "quantity": "2.5", "item": "شاي"}, {"id": "1301", "quantity": 2}]});
        let record = crate::record::normalise(invoices, raw.as_object().unwrap()).unwrap();
        let clock = Clock {
            zone: "Africa/Cairo".parse().unwrap(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut sink = JsonlSink::new(&mut out, clock, &invoices.line_items);
        let columns: Vec<&Column> = [
            "id",
            "no",
            "summary_total",
            "summary_paid",
            "created",
            "date",
            "client_id",
        ]
        .iter()
        .map(|n| invoices.column(n).unwrap())
        .collect();
        sink.row(&columns, &record).unwrap();
        sink.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["id"], 13);
        assert_eq!(line["no"], "INV-٠١");
        assert_eq!(line["summary_total"], "12345678901234567890.12");
        assert_eq!(line["created"], "2026-03-05T14:21:35+02:00");
        assert_eq!(line["date"], "2026-03-05");
        assert_eq!(line["client_id"], Value::Null);
        assert_eq!(line["InvoiceItem"][0]["quantity"], "2.5");
        assert_eq!(line["InvoiceItem"][0]["item"], "شاي");
        assert_eq!(
            line["summary_paid"], "46581",
            "a whole decimal is a string too"
        );
        assert_eq!(line["InvoiceItem"][1]["quantity"], "2");
    }
}
