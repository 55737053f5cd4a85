//! Normalisation of Daftra records: numbers or numeric strings, empty or zero dates, Arabic-Indic
//! digits, `[]` for empty objects. The normalised form is what the snapshot stores, what the diff
//! compares and what events carry, so a change of representation alone (`"42"` to `42`) is no change.

use serde_json::{Map, Number, Value};

use crate::catalogue::{Column, ColumnKind, LineItems, Resource};

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

/// Replaces Arabic-Indic (U+0660..) and Extended Arabic-Indic (U+06F0..) digits by ASCII digits,
/// and the Arabic decimal separator (U+066B) by `.`; Daftra tenants were seen sending `٣٠٠`.
pub fn ascii_digits(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            '\u{066B}' => '.',
            _ => c,
        })
        .collect::<String>()
        .into()
}

/// `true` for the values Daftra uses to say "nothing": `null`, `""`, `[]`, `{}`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn int(field: &str, v: &Value) -> Result<Value, RecordError> {
    if is_empty(v) {
        return Ok(Value::Null);
    }
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i.into())
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).into()),
                    _ => Err(bad(field, format!("expected a whole number, got {n}"))),
                }
            }
        }
        Value::String(s) => {
            let t = ascii_digits(s.trim());
            if let Ok(i) = t.parse::<i64>() {
                return Ok(i.into());
            }
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).into()),
                _ => Err(bad(field, format!("expected a whole number, got {s:?}"))),
            }
        }
        Value::Bool(b) => Ok(i64::from(*b).into()),
        other => Err(bad(field, format!("expected a whole number, got {other}"))),
    }
}

fn decimal(field: &str, v: &Value) -> Result<Value, RecordError> {
    if is_empty(v) {
        return Ok(Value::Null);
    }
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => ascii_digits(s.trim()).replace(',', "").parse::<f64>().ok(),
        _ => None,
    };
    match f.filter(|f| f.is_finite()).and_then(Number::from_f64) {
        // Integral amounts are stored as integers so that 0 and "0.00" compare equal.
        Some(n)
            if n.as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.0e15) =>
        {
            Ok(Value::from(n.as_f64().unwrap_or_default() as i64))
        }
        Some(n) => Ok(Value::Number(n)),
        None => Err(bad(field, format!("expected a number, got {v}"))),
    }
}

fn text(v: Value) -> Value {
    match v {
        _ if is_empty(&v) => Value::Null,
        Value::String(s) => Value::String(s),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => Value::String(other.to_string()),
    }
}

fn valid_date(y: &str, m: &str, d: &str) -> Option<String> {
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    chrono::NaiveDate::from_ymd_opt(y, m, d).map(|date| date.format("%Y-%m-%d").to_string())
}

/// `YYYY-MM-DD` from `YYYY-MM-DD`, `DD/MM/YYYY` or the date part of a timestamp.
fn parse_date(s: &str) -> Option<String> {
    let s = ascii_digits(s.trim());
    let day = s.split([' ', 'T']).next()?;
    if let [y, m, d] = day.split('-').collect::<Vec<_>>()[..] {
        return valid_date(y, m, d);
    }
    if let [d, m, y] = day.split('/').collect::<Vec<_>>()[..] {
        return valid_date(y, m, d);
    }
    None
}

fn is_zero_date(s: &str) -> bool {
    s.trim()
        .chars()
        .all(|c| matches!(c, '0' | '-' | ':' | ' ' | '/' | 'T'))
}

/// `true` when `s` is exactly `YYYY-MM-DD` (with ` HH:MM:SS` when `with_time`) and valid: the
/// form Daftra documents, kept as is without reformatting.
fn is_canonical_date(s: &str, with_time: bool) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| s[r].parse::<u32>().ok())
            .flatten()
    };
    let date_ok = b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && {
        match (digits(0..4), digits(5..7), digits(8..10)) {
            (Some(y), Some(m), Some(d)) => {
                chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
            }
            _ => false,
        }
    };
    if !with_time {
        return date_ok && b.len() == 10;
    }
    date_ok
        && b.len() == 19
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && matches!((digits(11..13), digits(14..16), digits(17..19)), (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60)
}

/// The normalised form of a date or timestamp: `Ok(None)` when `v` is already canonical (kept
/// as it is, without a copy).
fn date(field: &str, v: &Value, with_time: bool) -> Result<Option<Value>, RecordError> {
    if is_empty(v) {
        return Ok(Some(Value::Null));
    }
    let Value::String(s) = v else {
        return Err(bad(field, format!("expected a date, got {v}")));
    };
    if is_canonical_date(s, with_time) {
        return Ok(None);
    }
    if is_zero_date(s) {
        return Ok(Some(Value::Null));
    }
    let day = parse_date(s).ok_or_else(|| bad(field, format!("expected YYYY-MM-DD, got {s:?}")))?;
    if !with_time {
        return Ok(Some(Value::String(day)));
    }
    let time = ascii_digits(s.trim())
        .split_once([' ', 'T'])
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| "00:00:00".into());
    let time = chrono::NaiveTime::parse_from_str(time.trim_end_matches('Z'), "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(time.trim_end_matches('Z'), "%H:%M"))
        .map_err(|_| bad(field, format!("expected YYYY-MM-DD HH:MM:SS, got {s:?}")))?;
    Ok(Some(Value::String(format!(
        "{day} {}",
        time.format("%H:%M:%S")
    ))))
}

/// A record normalised by [`normalise_owned`], with the values that could not be read as their
/// column's kind: those are kept as text in their field, so the record is never dropped and its
/// other fields still diff.
#[derive(Debug, Default, PartialEq)]
pub struct Normalised {
    pub record: Record,
    pub unreadable: Vec<RecordError>,
}

/// Normalises the declared columns of `raw` into `out`, keeping an unreadable value as text and
/// noting it in `unreadable`; what is left in `raw` are the fields beyond the columns.
fn normalise_columns(
    columns: &[Column],
    raw: &mut Map<String, Value>,
    out: &mut Record,
    unreadable: &mut Vec<RecordError>,
) {
    for column in columns {
        let v = raw.remove(&column.name).unwrap_or(Value::Null);
        // The raw value moves into the record when it is already canonical; only a value that
        // cannot be read falls back to its text.
        let value = match column.kind {
            ColumnKind::Text => Ok(None),
            ColumnKind::Int => int(&column.name, &v).map(Some),
            ColumnKind::Decimal => decimal(&column.name, &v).map(Some),
            ColumnKind::Date => date(&column.name, &v, false),
            ColumnKind::Timestamp => date(&column.name, &v, true),
            ColumnKind::Derived => continue,
        };
        let value = match value {
            Ok(Some(normalised)) => normalised,
            Ok(None) => text(v),
            Err(e) => {
                unreadable.push(e);
                text(v)
            }
        };
        out.insert(column.name.clone(), value);
    }
}

fn derive_labels(resource_columns: &[Column], label_source: &Resource, out: &mut Record) {
    for column in resource_columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Derived)
    {
        let value = label_source.derive(column, out);
        out.insert(column.name.clone(), value);
    }
}

/// The items of a line-item group as Daftra sends them: an array, a PHP map of index to item,
/// or nothing (`null`, `[]`, `{}`, absent).
fn items_of(v: Value) -> Vec<Map<String, Value>> {
    let items: Vec<Value> = match v {
        Value::Array(a) => a,
        Value::Object(o) => o.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|i| match i {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Normalises one line-item group: each item by the group's columns, then sorted by the item's
/// key (then by content), so a reorder alone is no change.
fn normalise_group(group: &LineItems, v: Value, unreadable: &mut Vec<RecordError>) -> Value {
    let mut items: Vec<(Option<i64>, String, Record)> = items_of(v)
        .into_iter()
        .map(|mut raw| {
            let mut item = Record::new();
            normalise_columns(&group.columns, &mut raw, &mut item, unreadable);
            for column in group
                .columns
                .iter()
                .filter(|c| c.kind == ColumnKind::Derived)
            {
                let value = column
                    .label_of
                    .as_deref()
                    .and_then(|n| group.columns.iter().find(|c| c.name == n))
                    .and_then(|src| {
                        let v = match item.get(&src.name) {
                            None | Some(Value::Null) => None,
                            Some(v) => Some(v.as_i64()?),
                        };
                        src.label(v).map(Value::from)
                    })
                    .unwrap_or(Value::Null);
                item.insert(column.name.clone(), value);
            }
            item.extend(raw);
            let key = group
                .item_key
                .as_deref()
                .and_then(|k| item.get(k))
                .and_then(Value::as_i64);
            // Content breaks ties only where the docs give no item key.
            let text = if key.is_none() {
                serde_json::to_string(&item).unwrap_or_default()
            } else {
                String::new()
            };
            (key, text, item)
        })
        .collect();
    items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Value::Array(
        items
            .into_iter()
            .map(|(_, _, i)| Value::Object(i))
            .collect(),
    )
}

/// Normalises one raw record (the object under the model key) of `resource`.
///
/// Errors only when the key is missing or unreadable; callers keep the previous snapshot of
/// such a record rather than treat it as missing. A value of the wrong type in another field is
/// kept as text and listed in [`Normalised::unreadable`].
pub fn normalise(resource: &Resource, raw: &Map<String, Value>) -> Result<Record, RecordError> {
    normalise_owned(resource, raw.clone()).map(|n| n.record)
}

/// As [`normalise`], taking the raw record by value so its text moves instead of being copied
/// (the poller's hot path), and telling which values could not be read.
pub fn normalise_owned(
    resource: &Resource,
    mut raw: Map<String, Value>,
) -> Result<Normalised, RecordError> {
    let mut out = Record::new();
    let mut unreadable = Vec::new();
    normalise_columns(&resource.columns, &mut raw, &mut out, &mut unreadable);
    if !out.get(&resource.key).is_some_and(Value::is_i64) {
        return Err(bad(&resource.key, "missing or unreadable key"));
    }
    derive_labels(&resource.columns, resource, &mut out);
    for group in &resource.line_items {
        let v = raw.remove(&group.key).unwrap_or(Value::Null);
        out.insert(
            group.key.clone(),
            normalise_group(group, v, &mut unreadable),
        );
    }
    // What is left are the fields Daftra sent beyond the known columns.
    out.extend(raw);
    Ok(Normalised {
        record: out,
        unreadable,
    })
}

/// The key of a raw record, when it can be read even though the record is otherwise invalid.
pub fn raw_key(resource: &Resource, raw: &Map<String, Value>) -> Option<i64> {
    int(&resource.key, raw.get(&resource.key)?).ok()?.as_i64()
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
        assert_eq!(a["budget"], json!(1500.5));
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
        assert_eq!(rows[1]["unit_price"], json!(5.5));
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
