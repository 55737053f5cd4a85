//! Normalisation of Daftra records: numbers or numeric strings, exact decimals, dates and
//! timestamps in any form in the account's zone, Arabic-Indic digits, `[]` for empty objects.
//! The normalised form is what the snapshot stores, what the diff compares and what events
//! carry, so a change of representation alone (`"42"` to `42`) is no change.

mod canonical;
mod decode;
mod decoded;
#[cfg(test)]
mod reference;
mod time;
mod values;

use serde_json::{Map, Value};

use crate::catalogue::Resource;
pub use decoded::{decode, decode_item, Decoded, Invalid};
pub use time::{Clock, DayOrder};
use values::int;
pub use values::{ascii_digits, canonical_decimal, canonical_extra};

/// A normalised record: known columns with normalised values (derived ones included), plus any
/// extra field Daftra sent, kept as sent. Keys are sorted, so its JSON text is canonical.
pub type Record = Map<String, Value>;

/// Why a record could not be normalised.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("field {field}: {message}")]
pub struct RecordError {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> RecordError {
    RecordError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A record normalised by [`normalise_owned`], with the values that could not be read as their
/// column's kind: those are kept as text in their field, so the record is never dropped and its
/// other fields still diff.
#[derive(Debug, Default, PartialEq)]
pub struct Normalised {
    pub record: Record,
    pub unreadable: Vec<RecordError>,
}

/// Normalises one raw record (the object under the model key) of `resource`, in UTC.
///
/// Errors only when the key is missing or unreadable; callers keep the previous snapshot of
/// such a record rather than treat it as missing. A value of the wrong type in another field is
/// kept as text.
pub fn normalise(resource: &Resource, raw: &Map<String, Value>) -> Result<Record, RecordError> {
    let clock = Clock::default();
    let decoded = decode(resource, &clock, raw).map_err(|i| i.error)?;
    Ok(decoded.into_record())
}

/// As [`normalise`], in the account's zone, telling which values could not be read.
pub fn normalise_owned(
    resource: &Resource,
    raw: Map<String, Value>,
    clock: &Clock,
) -> Result<Normalised, RecordError> {
    let mut decoded = decode(resource, clock, raw).map_err(|i| i.error)?;
    let unreadable = decoded.take_unreadable();
    Ok(Normalised {
        record: decoded.into_record(),
        unreadable,
    })
}

/// The key of a raw record, when it can be read even though the record is otherwise invalid.
pub fn raw_key(resource: &Resource, raw: &Map<String, Value>) -> Option<i64> {
    int(&resource.key, raw.get(&resource.key)?).ok()?.as_i64()
}

/// A stable 64-bit hash of a record's canonical JSON text (XXH3), stored beside each snapshot
/// row so a poll compares hashes and reads in full only the records that changed.
pub fn content_hash(canonical: &str) -> i64 {
    content_hash_bytes(canonical.as_bytes())
}

/// [`content_hash`] of canonical text given as bytes.
pub fn content_hash_bytes(canonical: &[u8]) -> i64 {
    xxhash_rust::xxh3::xxh3_64(canonical) as i64
}

/// The key of a normalised record.
pub fn key(resource: &Resource, record: &Record) -> i64 {
    record
        .get(&resource.key)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

/// The rows of a line-item export taken from one normalised parent record: each item with the
/// parent's key in the export's first column.
pub fn line_item_rows(export: &Resource, parent: &Resource, record: &Record) -> Vec<Record> {
    let Some((_, group)) = &export.parent else {
        return Vec::new();
    };
    let parent_key = record.get(&parent.key).cloned().unwrap_or(Value::Null);
    let first = export
        .columns
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    match record.get(group) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .map(|item| {
                let mut row = item.clone();
                row.insert(first.clone(), parent_key.clone());
                row
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Names of fields whose values differ between two images, in key order.
pub fn changed_fields(before: &Record, after: &Record) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::default_resource;
    use serde_json::json;

    fn n(v: Value) -> Record {
        normalise(default_resource(), v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn representation_does_not_matter() {
        let a = n(
            json!({"id": 42, "status": "1", "budget": "1500.50", "client_id": "٣٠٠",
                          "start_date": "2026-10-01", "created": "2026-10-01 08:57:07"}),
        );
        let b = n(
            json!({"id": "42", "status": 1, "budget": 1500.5, "client_id": 300,
                          "start_date": "01/10/2026", "created": "2026-10-01 08:57:07"}),
        );
        assert_eq!(a, b);
        assert_eq!(a["client_id"], json!(300));
        assert_eq!(a["status_label"], json!("Open"));
        assert_eq!(a["budget"], json!("1500.5"));
    }

    #[test]
    fn credentials_are_dropped_as_a_record_is_read() {
        for name in ["clients", "suppliers", "staff"] {
            let r = crate::catalogue::by_name(name).unwrap();
            assert_eq!(r.withheld, vec!["password".to_string()], "{name}");
            assert!(r.column("password").is_none(), "{name}: not a column");
            let raw = json!({"id": 7, "password": "hunter2", "name": "x"});
            let out = normalise(r, raw.as_object().unwrap()).unwrap();
            assert!(!out.contains_key("password"), "{name}: {out:?}");
            assert!(!serde_json::to_string(&out).unwrap().contains("hunter2"));
        }
    }

    #[test]
    fn empty_and_zero_values_mean_none() {
        let r = n(
            json!({"id": 1, "delivery_date": "0000-00-00", "created": "0000-00-00 00:00:00",
                          "delivery_appointment_id": "", "follow_up_status_id": null,
                          "description": "", "budget": [] }),
        );
        for f in [
            "delivery_date",
            "created",
            "delivery_appointment_id",
            "follow_up_status_id",
            "description",
            "budget",
            "modified",
        ] {
            assert_eq!(r[f], Value::Null, "{f}");
        }
    }

    #[test]
    fn integral_amounts_compare_equal() {
        assert_eq!(
            n(json!({"id": 1, "budget": "0.00"}))["budget"],
            n(json!({"id": 1, "budget": 0}))["budget"]
        );
        assert_eq!(
            n(json!({"id": 1, "budget": "-250.00"}))["budget"],
            json!(-250)
        );
    }

    #[test]
    fn extras_are_kept_and_bad_values_stay_as_text() {
        let r = n(json!({"id": 7, "custom_field": {"a": 1}}));
        assert_eq!(r["custom_field"], json!({"a": 1}));
        let odd = normalise_owned(
            default_resource(),
            json!({"id": 7, "status": "open", "title": "t"})
                .as_object()
                .cloned()
                .unwrap(),
            &Clock::default(),
        )
        .unwrap();
        assert_eq!(odd.record["status"], json!("open"), "kept as text");
        assert_eq!(odd.record["title"], json!("t"), "the other fields are read");
        assert_eq!(odd.record["status_label"], Value::Null);
        assert_eq!(odd.unreadable.len(), 1);
        assert_eq!(odd.unreadable[0].field, "status");
        assert!(normalise(
            default_resource(),
            json!({"title": "x"}).as_object().unwrap()
        )
        .is_err());
        assert_eq!(
            raw_key(
                default_resource(),
                json!({"id": "9", "status": "x"}).as_object().unwrap()
            ),
            Some(9)
        );
    }

    #[test]
    fn line_items_are_normalised_and_ordered_by_key() {
        let inv = crate::catalogue::by_name("invoices").unwrap();
        let a = normalise(
            inv,
            json!({"id": 1, "InvoiceItem": [{"id": "12", "unit_price": "5.50", "quantity": "2"},
                                            {"id": 11, "unit_price": 3}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        let b = normalise(
            inv,
            json!({"id": "1", "InvoiceItem": {"0": {"id": 11, "unit_price": "3.00"},
                                              "1": {"id": 12, "unit_price": 5.5, "quantity": 2}}})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(a, b, "order and number forms do not matter");
        assert_eq!(a["InvoiceItem"][0]["id"], json!(11));
        assert_eq!(a["InvoicePayment"], json!([]), "a missing group is empty");
        let items = crate::catalogue::export_by_name("invoices_invoice_item").unwrap();
        let rows = line_item_rows(items, inv, &a);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["invoice_id"], json!(1));
        assert_eq!(
            rows[1]["unit_price"],
            json!("5.5"),
            "exact decimals keep their digits"
        );
    }

    #[test]
    fn number_keeps_leading_zeros() {
        assert_eq!(
            n(json!({"id": 1, "number": "000101"}))["number"],
            json!("000101")
        );
        assert_eq!(n(json!({"id": 1, "number": 7}))["number"], json!("7"));
    }
}
