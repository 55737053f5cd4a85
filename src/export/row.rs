//! Rows of an export: typed cells read from a normalised [`Record`] (live exports) or straight
//! from the snapshot's JSON text without building a map of owned strings (snapshot exports, the
//! hot path: about half the per-row cost was allocating `Record`s only to read them once).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::catalogue::{Column, ColumnKind, LineItems};
use crate::record::Record;

/// A typed cell value of one column of one row.
#[derive(Debug, PartialEq)]
pub enum Cell<'a> {
    Empty,
    Int(i64),
    /// An exact decimal, as its canonical text (`1500.5`, `12345678901234567.89`).
    Decimal(&'a str),
    /// A number of an undeclared or text field that is not whole.
    Float(f64),
    Text(&'a str),
    /// `YYYY-MM-DD`.
    Date(&'a str),
    /// `YYYY-MM-DD HH:MM:SS`.
    Timestamp(&'a str),
}

/// Anything an export can read cells from.
pub trait Row {
    /// The cell of `column`; [`Cell::Empty`] when the row has no value.
    fn cell(&self, column: &Column) -> Cell<'_>;
    /// The line items of each of `groups` (`InvoiceItem`, ...), in that order: each item's
    /// canonical fields; empty when the row has none. Only the JSON Lines export, which nests
    /// them, asks.
    fn items(&self, groups: &[LineItems]) -> Vec<Vec<Record>>;
}

fn text_cell<'a>(kind: ColumnKind, s: &'a str) -> Cell<'a> {
    match kind {
        // Exact decimals are stored as their canonical digits.
        ColumnKind::Decimal => Cell::Decimal(s),
        ColumnKind::Date => Cell::Date(s),
        ColumnKind::Timestamp => Cell::Timestamp(s),
        _ => Cell::Text(s),
    }
}

/// The items of each of `groups` in a canonical record.
fn items_of(record: &Record, groups: &[LineItems]) -> Vec<Vec<Record>> {
    let one = |key: &str| match record.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_object().cloned())
            .collect(),
        _ => Vec::new(),
    };
    groups.iter().map(|g| one(&g.key)).collect()
}

impl Row for Record {
    fn items(&self, groups: &[LineItems]) -> Vec<Vec<Record>> {
        items_of(self, groups)
    }

    fn cell(&self, column: &Column) -> Cell<'_> {
        match self.get(&column.name) {
            None | Some(Value::Null) => Cell::Empty,
            Some(Value::String(s)) => text_cell(column.kind, s),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Float(n.as_f64().unwrap_or_default()),
            },
            Some(_) => Cell::Empty,
        }
    }
}

/// A scalar of the snapshot JSON, borrowing its text where no unescaping was needed.
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Null,
    Int(i64),
    /// A number that is not an `i64`.
    Float(f64),
    Str(Cow<'a, str>),
    /// Objects, arrays and booleans: extra fields no export column shows.
    Other,
}

struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v)
                    .map(Scalar::Int)
                    .unwrap_or(Scalar::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// One snapshot record read in place from its JSON text.
pub struct StoredRow<'a> {
    fields: Vec<(Cow<'a, str>, Scalar<'a>)>,
    /// The JSON text it was read from (line items are read from it when asked).
    text: &'a str,
}

impl<'de> Deserialize<'de> for StoredRow<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StoredRow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a record object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Text(k), v)) = map.next_entry::<Text, Scalar>()? {
                    fields.push((k, v));
                }
                Ok(StoredRow { fields, text: "" })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> StoredRow<'a> {
    /// Reads a record from the snapshot's canonical JSON.
    pub fn parse(text: &'a str) -> serde_json::Result<Self> {
        let mut row: StoredRow<'a> = serde_json::from_str(text)?;
        row.text = text;
        Ok(row)
    }
}

impl Row for StoredRow<'_> {
    fn items(&self, groups: &[LineItems]) -> Vec<Vec<Record>> {
        // One parse of the record for all its groups.
        match serde_json::from_str::<Record>(self.text) {
            Ok(r) => items_of(&r, groups),
            Err(_) => vec![Vec::new(); groups.len()],
        }
    }

    fn cell(&self, column: &Column) -> Cell<'_> {
        match self
            .fields
            .iter()
            .find(|(k, _)| *k == column.name)
            .map(|(_, v)| v)
        {
            None | Some(Scalar::Null | Scalar::Other) => Cell::Empty,
            Some(Scalar::Int(i)) => Cell::Int(*i),
            Some(Scalar::Float(f)) => Cell::Float(*f),
            Some(Scalar::Str(s)) => text_cell(column.kind, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::default_resource;
    use serde_json::json;

    #[test]
    fn stored_rows_read_the_same_cells_as_records() {
        let raw = json!({"id": "7", "title": "قال \"مرحبا\"\nثم", "budget": "-2.5", "status": 2, "start_date": "2026-01-02",
            "created": "2026-01-02 03:04:05", "delivery_date": "0000-00-00", "extra": {"nested": [1, 2]}, "flag": true});
        let record =
            crate::record::normalise(default_resource(), raw.as_object().unwrap()).unwrap();
        let text = serde_json::to_string(&record).unwrap();
        let stored = StoredRow::parse(&text).unwrap();
        for column in default_resource().columns.iter() {
            assert_eq!(stored.cell(column), record.cell(column), "{}", column.name);
        }
        assert_eq!(
            stored.cell(default_resource().column("title").unwrap()),
            Cell::Text("قال \"مرحبا\"\nثم")
        );
        assert_eq!(
            stored.cell(default_resource().column("created").unwrap()),
            Cell::Timestamp("2026-01-02 03:04:05")
        );
    }
}
