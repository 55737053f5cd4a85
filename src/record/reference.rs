//! The normalisation as it was before records were decoded straight from the page (maps of
//! `serde_json` values all the way): kept as the oracle the decoder is tested against, so
//! every canonical text, and so every stored content hash, stays the same.

use serde_json::{Map, Value};

use super::values::{canonical_extra, decimal, int, text};
use super::{bad, Clock, Normalised, Record, RecordError};
use crate::catalogue::{Column, ColumnKind, LineItems, Resource};

/// The undeclared fields in canonical form; an empty one (`null`, `""`, `[]`, `{}`) is left
/// out, so a field going from absent to empty is no change.
fn canonical_extras(raw: Map<String, Value>) -> impl Iterator<Item = (String, Value)> {
    raw.into_iter()
        .map(|(k, v)| (k, canonical_extra(v)))
        .filter(|(_, v)| !v.is_null())
}

/// Normalises the declared columns of `raw` into `out`, keeping an unreadable value as text and
/// noting it in `unreadable`; what is left in `raw` are the fields beyond the columns.
fn normalise_columns(
    columns: &[Column],
    clock: &Clock,
    raw: &mut Map<String, Value>,
    out: &mut Record,
    unreadable: &mut Vec<RecordError>,
) {
    for column in columns {
        if column.kind == ColumnKind::Derived {
            continue;
        }
        // The key moves over with its value: no copy of the name per field and record.
        let (name, v) = raw
            .remove_entry(&column.name)
            .unwrap_or_else(|| (column.name.clone(), Value::Null));
        // The raw value moves into the record when it is already canonical; only a value that
        // cannot be read falls back to its text.
        let value = match column.kind {
            ColumnKind::Text => Ok(None),
            ColumnKind::Int => int(&column.name, &v).map(Some),
            ColumnKind::Decimal => decimal(&column.name, &v).map(Some),
            ColumnKind::Date => clock.normalise(&column.name, &v, false),
            ColumnKind::Timestamp => clock.normalise(&column.name, &v, true),
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
        out.insert(name, value);
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
fn normalise_group(
    group: &LineItems,
    clock: &Clock,
    v: Value,
    unreadable: &mut Vec<RecordError>,
) -> Value {
    let mut items: Vec<(Option<i64>, String, Record)> = items_of(v)
        .into_iter()
        .map(|mut raw| {
            let mut item = Record::new();
            normalise_columns(&group.columns, clock, &mut raw, &mut item, unreadable);
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
            item.extend(canonical_extras(raw));
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

/// Normalises one raw record (the object under the model key) of `resource`, as the bridge did
/// before records were decoded from the page: errors only when the key is missing or
/// unreadable; a value of the wrong type is kept as text and listed as unreadable.
pub fn normalise_owned(
    resource: &Resource,
    mut raw: Map<String, Value>,
    clock: &Clock,
) -> Result<Normalised, RecordError> {
    for field in &resource.withheld {
        raw.remove(field);
    }
    let mut out = Record::new();
    let mut unreadable = Vec::new();
    normalise_columns(
        &resource.columns,
        clock,
        &mut raw,
        &mut out,
        &mut unreadable,
    );
    if !out.get(&resource.key).is_some_and(Value::is_i64) {
        return Err(bad(&resource.key, "missing or unreadable key"));
    }
    derive_labels(&resource.columns, resource, &mut out);
    for group in &resource.line_items {
        let v = raw.remove(&group.key).unwrap_or(Value::Null);
        out.insert(
            group.key.clone(),
            normalise_group(group, clock, v, &mut unreadable),
        );
    }
    // What is left are the fields Daftra sent beyond the known columns.
    // Compared after the same canonical form as the declared columns.
    out.extend(canonical_extras(raw));
    Ok(Normalised {
        record: out,
        unreadable,
    })
}

/// The key of a raw record as the reference reads it.
fn raw_key(resource: &Resource, raw: &Map<String, Value>) -> Option<i64> {
    int(&resource.key, raw.get(&resource.key)?).ok()?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{all, by_name};
    use crate::record::{decode, decode_item, DayOrder};
    use proptest::prelude::*;
    use serde_json::json;

    /// Decodes `raw` of `resource` from the map and from its text, and checks both against the
    /// reference: same error and key, or same canonical text, record and unreadable values.
    fn agree(resource: &Resource, clock: &Clock, raw: &Map<String, Value>) {
        agree_one("map", resource, raw, decode(resource, clock, raw), clock);
        // From text, as pages arrive; the reference reads the same text (a double written out
        // and read back is not always the same double).
        let item = json!({ &resource.model_key: raw }).to_string();
        let reread: Value = serde_json::from_str(&item).unwrap();
        let reread = reread[&resource.model_key].as_object().unwrap();
        let got = decode_item(resource, clock, &item);
        agree_one("text", resource, reread, got, clock);
    }

    fn agree_one(
        how: &str,
        resource: &Resource,
        raw: &Map<String, Value>,
        got: Result<crate::record::Decoded<'_>, crate::record::Invalid>,
        clock: &Clock,
    ) {
        match (normalise_owned(resource, raw.clone(), clock), got) {
            (Ok(want), Ok(mut got)) => {
                let text = serde_json::to_string(&want.record).unwrap();
                assert_eq!(got.canonical(), text, "{how}: {raw:?}");
                assert_eq!(got.key(), want.record[&resource.key].as_i64().unwrap());
                assert_eq!(got.take_unreadable(), want.unreadable, "{how}: {raw:?}");
                assert_eq!(got.into_record(), want.record, "{how}: {raw:?}");
            }
            (Err(want), Err(got)) => {
                assert_eq!(got.error, want, "{how}: {raw:?}");
                assert_eq!(got.key, raw_key(resource, raw), "{how}: {raw:?}");
            }
            (want, Err(got)) => panic!("{how}: {raw:?}: want {want:?}, got {got:?}"),
            (want, Ok(got)) => panic!("{how}: {raw:?}: want {want:?}, got {}", got.canonical()),
        }
    }

    /// Every odd form a value was seen in or could take, whatever its column's kind.
    fn odd_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(null)),
            Just(json!("")),
            Just(json!("  ")),
            Just(json!([])),
            Just(json!({})),
            Just(json!(true)),
            Just(json!("٤٢")),
            Just(json!(" 7 ")),
            Just(json!("+3")),
            Just(json!("1e3")),
            Just(json!(42.0)),
            Just(json!(9_300_000_000_000_000_000u64)),
            Just(json!(-0.0)),
            Just(json!("1,500.50")),
            Just(json!("١٥٠٠٫٥")),
            Just(json!("-0.00")),
            Just(json!("12345678901234567.89")),
            Just(json!("0000-00-00")),
            Just(json!("0000-00-00 00:00:00")),
            Just(json!("01/10/2026")),
            Just(json!("2026-10-01T08:57:07Z")),
            Just(json!("2026-10-01 08:57:07+02:00")),
            Just(json!("2026-03-29 02:30:00")),
            Just(json!("yesterday")),
            Just(json!("نص عربي \"مقتبس\"\n")),
            Just(json!({"b": "1", "a": {"c": []}, "d": 2.50})),
            Just(json!([1, "007", {}])),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (0u32..100_000, 0u32..1000).prop_map(|(a, b)| json!(format!("{a}.{b:03}"))),
            "[0-9 .,/:-]{0,20}".prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    /// A raw record of `resource`: any of its fields (line-item groups and credentials
    /// included), label names, unknown fields, each holding a typical or an odd value.
    fn raw_record(resource: &'static Resource) -> impl Strategy<Value = Map<String, Value>> {
        let mut names: Vec<String> = resource.columns.iter().map(|c| c.name.clone()).collect();
        names.extend(resource.withheld.iter().cloned());
        names.extend(["custom_x".to_string(), "Zeta".into(), "_a".into()]);
        let groups = resource.line_items.clone();
        let fields =
            proptest::collection::vec((proptest::sample::select(names), odd_value()), 0..24);
        let items = proptest::collection::vec(
            (
                any::<bool>(),
                proptest::collection::vec((0usize..64, odd_value()), 0..12),
                any::<bool>(),
            ),
            0..4,
        );
        let key = prop_oneof![
            4 => (1i64..1_000_000).prop_map(Value::from),
            2 => (1i64..1_000_000).prop_map(|k| Value::from(k.to_string())),
            1 => odd_value(),
        ];
        (fields, key, any::<bool>(), items).prop_map(move |(fields, key, with_key, items)| {
            let mut raw: Map<String, Value> = fields.into_iter().collect();
            if with_key {
                raw.insert(resource.key.clone(), key);
            }
            for (g, group) in groups.iter().enumerate() {
                let made: Vec<Value> = items
                    .iter()
                    .map(|(keyed, fields, _)| {
                        let mut item: Map<String, Value> = fields
                            .iter()
                            .map(|(i, v)| {
                                let c = &group.columns[(i + g) % group.columns.len()];
                                (c.name.clone(), v.clone())
                            })
                            .collect();
                        if *keyed {
                            if let Some(k) = &group.item_key {
                                item.insert(k.clone(), json!(fields.len() % 3));
                            }
                        }
                        Value::Object(item)
                    })
                    .collect();
                let as_map = items.first().is_some_and(|(_, _, m)| *m);
                let value = if as_map {
                    let entries = made.into_iter().enumerate();
                    Value::Object(
                        entries
                            .map(|(i, v)| ((i * 7 % 11).to_string(), v))
                            .collect(),
                    )
                } else {
                    Value::Array(made)
                };
                raw.insert(group.key.clone(), value);
            }
            raw
        })
    }

    fn clocks() -> [Clock; 3] {
        let cairo = Clock {
            zone: "Africa/Cairo".parse().unwrap(),
            day_order: DayOrder::DayFirst,
        };
        let us = Clock {
            zone: "America/New_York".parse().unwrap(),
            day_order: DayOrder::MonthFirst,
        };
        [Clock::default(), cairo, us]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn the_decoder_agrees_with_the_reference(
            (index, raw) in (0..all().len()).prop_flat_map(|i| (Just(i), raw_record(&all()[i]))),
            clock in 0usize..3,
        ) {
            agree(&all()[index], &clocks()[clock], &raw);
        }
    }

    #[test]
    fn the_fixture_page_and_odd_items_agree() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/work_orders_page.json"
        ))
        .unwrap();
        let page: Value = serde_json::from_str(&body).unwrap();
        let work_orders = by_name("work_orders").unwrap();
        let mut seen = 0;
        for item in page["data"].as_array().unwrap() {
            for clock in clocks() {
                agree(work_orders, &clock, item["WorkOrder"].as_object().unwrap());
                seen += 1;
            }
        }
        assert_eq!(seen, 9);
        let invoices = by_name("invoices").unwrap();
        for raw in [
            json!({"id": 1, "InvoiceItem": {"1": {"id": 2}, "0": {"id": 1}, "x": 5}}),
            json!({"id": 1, "InvoiceItem": [{"unit_price": "2"}, {"unit_price": "1"}, 7, null]}),
            json!({"id": 1, "InvoiceItem": "none", "InvoicePayment": {}, "status_label": "x"}),
            json!({"id": "x"}),
            json!({"id": ""}),
            json!({}),
        ] {
            agree(invoices, &Clock::default(), raw.as_object().unwrap());
        }
    }

    #[test]
    fn repeated_fields_and_items_that_are_no_records() {
        let work_orders = by_name("work_orders").unwrap();
        let clock = Clock::default();
        // The last of a repeated field wins, as a JSON map reads it, and only its error counts.
        let text = r#"{"WorkOrder": {"id": 1, "status": "x", "status": 2, "z": 1, "z": null}}"#;
        let mut d = decode_item(work_orders, &clock, text).unwrap();
        assert!(d.take_unreadable().is_empty());
        let want = normalise_owned(
            work_orders,
            json!({"id": 1, "status": 2}).as_object().cloned().unwrap(),
            &clock,
        )
        .unwrap();
        assert_eq!(d.canonical(), serde_json::to_string(&want.record).unwrap());
        for (text, message) in [
            (r#"{"Other": {"id": 1}}"#, "an item has no WorkOrder object"),
            (r#"{"WorkOrder": [1]}"#, "an item has no WorkOrder object"),
            (
                r#"{"WorkOrder": {"title": "t"}}"#,
                "missing or unreadable key",
            ),
        ] {
            let e = decode_item(work_orders, &clock, text).err().unwrap();
            assert_eq!(e.error.message, message, "{text}");
        }
    }

    #[test]
    fn every_key_is_a_whole_number_column() {
        for r in all() {
            let slot = r
                .shape
                .key
                .unwrap_or_else(|| panic!("{}: key column", r.name));
            assert_eq!(
                r.columns[slot].kind,
                crate::catalogue::ColumnKind::Int,
                "{}",
                r.name
            );
            for g in &r.line_items {
                assert!(
                    r.column(&g.key).is_none(),
                    "{}: {} is a group and a column",
                    r.name,
                    g.key
                );
            }
        }
    }
}
