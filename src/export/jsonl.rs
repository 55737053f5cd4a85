//! JSON Lines output (<https://jsonlines.org>): one record a line, the export's columns typed
//! (whole numbers as JSON numbers; exact decimals as strings, so no reader rounds a 20-digit
//! amount through a double; dates as `YYYY-MM-DD`; timestamps as RFC 3339 with the account's
//! offset; empty as `null`), and, when no `fields` were picked, each line-item group nested
//! as an array of items typed the same way. Streamed: memory holds one line.

use std::io::Write;

use serde_json::Value;

use super::{Cell, ExportError, Row, RowSink};
use crate::catalogue::{Column, LineItems};
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

/// The JSON value of one cell.
fn value(cell: Cell<'_>, clock: &Clock) -> Value {
    match cell {
        Cell::Empty => Value::Null,
        Cell::Int(i) => Value::from(i),
        Cell::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Cell::Decimal(d) => Value::String(d.to_string()),
        Cell::Text(t) | Cell::Date(t) => Value::String(t.to_string()),
        Cell::Timestamp(t) => Value::String(clock.rfc3339(t).unwrap_or_else(|| t.to_string())),
    }
}

/// The object of `columns` of `row`.
fn object(columns: &[&Column], row: &dyn Row, clock: &Clock) -> serde_json::Map<String, Value> {
    columns
        .iter()
        .map(|c| (c.name.clone(), value(row.cell(c), clock)))
        .collect()
}

impl<W: Write> RowSink for JsonlSink<W> {
    fn header(&mut self, _columns: &[&Column]) -> Result<(), ExportError> {
        Ok(())
    }

    fn row(&mut self, columns: &[&Column], row: &dyn Row) -> Result<(), ExportError> {
        let mut map = object(columns, row, &self.clock);
        for group in self.groups {
            let item_columns: Vec<&Column> = group.columns.iter().collect();
            let items: Vec<Value> = row
                .items(&group.key)
                .iter()
                .map(|item: &Record| Value::Object(object(&item_columns, item, &self.clock)))
                .collect();
            map.insert(group.key.clone(), Value::Array(items));
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, &map).map_err(std::io::Error::from)?;
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

    #[test]
    fn lines_are_typed_exact_and_nest_line_items() {
        let invoices = catalogue::by_name("invoices").unwrap();
        let raw = serde_json::json!({"id": "13", "no": "INV-٠١", "summary_total": "12345678901234567890.12",
            "created": "2026-03-05 14:21:35", "date": "2026-03-05",
            "InvoiceItem": [{"id": "1300", "quantity": "2.5", "item": "شاي"}]});
        let record = crate::record::normalise(invoices, raw.as_object().unwrap()).unwrap();
        let clock = Clock {
            zone: "Africa/Cairo".parse().unwrap(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut sink = JsonlSink::new(&mut out, clock, &invoices.line_items);
        let columns: Vec<&Column> = ["id", "no", "summary_total", "created", "date", "client_id"]
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
    }
}
