//! JSON Schemas (draft 2020-12) of the events' `data`, generated from the catalogue: each
//! column with its type (whole numbers, exact decimals as numbers, text, dates, timestamps with
//! their offset) and the values Daftra's docs give for it, each line-item group as an array of
//! items, `before`/`after` (null where the operation has none), `changed`, and `items` (what
//! changed in line items). Served at `GET /schemas/{type}.json`; every event's `dataschema`
//! points there. Fields Daftra sends beyond its docs are allowed (`additionalProperties`).

use serde_json::{json, Map, Value};

use super::{event_type, Op};
use crate::catalogue::{Column, ColumnKind, Resource};

/// The schema of one column's value (always nullable: Daftra leaves any field empty).
fn column_schema(column: &Column) -> Value {
    let (kind, format) = match column.kind {
        ColumnKind::Int => ("integer", None),
        ColumnKind::Decimal => ("number", None),
        ColumnKind::Text | ColumnKind::Derived => ("string", None),
        ColumnKind::Date => ("string", Some("date")),
        ColumnKind::Timestamp => ("string", Some("date-time")),
    };
    let mut s = json!({"type": [kind, "null"]});
    if let Some(f) = format {
        s["format"] = json!(f);
    }
    let documented: Vec<(Value, &str)> = column
        .labels
        .iter()
        .map(|(v, label)| (v.map_or(Value::Null, Value::from), label.as_str()))
        .collect();
    if !documented.is_empty() {
        // The values and labels of Daftra's docs, as documentation: a value the docs do not
        // list still arrives (and is labelled null), so it is not refused here.
        let values: Vec<String> = documented
            .iter()
            .map(|(v, l)| format!("{v} = {l}"))
            .collect();
        s["description"] = json!(format!("Documented values: {}.", values.join(", ")));
        s["examples"] = Value::Array(documented.iter().map(|(v, _)| v.clone()).collect());
    }
    if column.kind == ColumnKind::Derived {
        s["description"] = json!("The label of the enum column beside it, from Daftra's docs (null for a value they do not list).");
        let labels: Vec<Value> = column.labels.iter().map(|(_, l)| json!(l)).collect();
        if !labels.is_empty() {
            s["examples"] = Value::Array(labels);
        }
    }
    s
}

/// The properties of `columns`.
fn properties(columns: &[Column]) -> Map<String, Value> {
    columns
        .iter()
        .map(|c| (c.name.clone(), column_schema(c)))
        .collect()
}

/// The image of a record: its columns and its line-item groups.
fn image(resource: &Resource) -> Value {
    let mut props = properties(&resource.columns);
    for g in &resource.line_items {
        props.insert(
            g.key.clone(),
            json!({
                "type": "array",
                "description": format!("The record's {} line items (only those named in `items` when the event was cut to EVENT_MAX_BYTES; absent when none fit).", g.key),
                "items": {"type": "object", "properties": properties(&g.columns), "additionalProperties": true},
            }),
        );
    }
    json!({
        "type": "object",
        "description": format!("A {} record: its documented fields (timestamps with the account's offset, exact decimals as JSON numbers with every digit) and any other field Daftra sent.", resource.singular),
        "required": [resource.key.as_str()],
        "properties": props,
        "additionalProperties": true,
    })
}

const GROUP_CHANGES: &str = r#"{
  "type": "object",
  "required": ["added", "removed", "changed"],
  "properties": {
    "added": {"type": "array", "description": "Ids of the items only `after` has."},
    "removed": {"type": "array", "description": "Ids of the items only `before` has."},
    "changed": {"type": "array", "items": {"type": "object", "required": ["id", "fields"],
      "properties": {"id": {}, "fields": {"type": "array", "items": {"type": "string"}}}}},
    "partial": {"type": "boolean", "description": "The images' lists hold only the items named here (the event was over EVENT_MAX_BYTES)."},
    "url": {"type": "string", "description": "Where the whole record is read (GET /records/{resource}/{id})."}
  }
}"#;

/// The schema of the `data` of events of `op` on `resource`, with `id` as its `$id`.
pub fn data_schema(resource: &Resource, op: Op, id: &str) -> Value {
    // Written out in place rather than under `$defs`: the schema is also embedded in the
    // AsyncAPI document, where a `#/$defs/...` reference would resolve against that document.
    let (before, after) = match op {
        Op::Created => (json!({"type": "null"}), image(resource)),
        Op::Updated => (image(resource), image(resource)),
        Op::Deleted => (image(resource), json!({"type": "null"})),
    };
    let group_changes: Value = serde_json::from_str(GROUP_CHANGES).expect("a JSON literal");
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": id,
        "title": format!("data of {}", event_type(resource, op)),
        "type": "object",
        "required": ["resource", "id", "op", "changed", "before", "after"],
        "properties": {
            "resource": {"const": resource.name},
            "id": {"type": "integer", "description": "The record's key; also the CloudEvents subject."},
            "op": {"const": op.as_str()},
            "changed": {"type": "array", "items": {"type": "string"},
                "description": "The fields (and line-item groups) whose values differ; empty for created and deleted."},
            "items": {"type": "object", "additionalProperties": group_changes,
                "description": "By line-item group, what changed in its items."},
            "before": before,
            "after": after,
        },
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;

    #[test]
    fn schemas_follow_the_catalogue() {
        let invoices = catalogue::by_name("invoices").unwrap();
        let s = data_schema(invoices, Op::Created, "x");
        assert_eq!(s["properties"]["before"], json!({"type": "null"}));
        let image = &s["properties"]["after"]["properties"];
        assert_eq!(image["summary_total"]["type"], json!(["number", "null"]));
        assert_eq!(image["created"]["format"], "date-time");
        assert_eq!(image["InvoiceItem"]["type"], "array");
        assert!(image["payment_status"]["description"]
            .as_str()
            .unwrap()
            .contains("Unpaid"));
    }
}
