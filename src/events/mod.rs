//! Change events: the diff's changes, their stable ids and their CloudEvents 1.0 structured-mode
//! JSON (README "Consuming events"; <https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalogue::Resource;
use crate::catalogue::{Column, ColumnKind, LineItems};
use crate::record::{Clock, Record};

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Created,
    Updated,
    Deleted,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 3] = [Op::Created, Op::Updated, Op::Deleted];

    /// The operation named `created`, `updated` or `deleted` (as the outbox stores it).
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.as_str() == name)
    }

    /// `created`, `updated` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Created => "created",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
        }
    }
}

/// One change found by the diff: `before` is `None` for created, `after` is `None` for deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub op: Op,
    pub id: i64,
    /// Names of the fields whose normalised values differ (empty for created/deleted).
    pub changed: Vec<String>,
    pub before: Option<Record>,
    pub after: Option<Record>,
}

/// An event as stored in the outbox: everything the publisher needs, already serialised.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    pub resource: String,
    pub op: String,
    /// CloudEvents `id`, also the AMQP `message_id`.
    pub event_id: String,
    /// `work_order.created` and so on.
    pub routing_key: String,
    /// The CloudEvents JSON.
    pub body: String,
    /// The record's id (the CloudEvents `subject`): a sink keeps one record's events in order.
    pub record_id: i64,
}

pub mod asyncapi;
mod items;
pub mod schema;

pub use items::{GroupChanges, ItemChange};

#[derive(Serialize)]
struct Data<'a> {
    resource: &'a str,
    id: i64,
    op: Op,
    changed: &'a [String],
    /// By line-item group, what changed in its items (updates; every cut group when the
    /// event was too large).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    items: std::collections::BTreeMap<String, GroupChanges>,
    before: Option<Image<'a>>,
    after: Option<Image<'a>>,
}

/// A record as an event shows it: exact decimals (stored as their digits) written as JSON
/// numbers with every digit, in the record and in its line items.
struct Image<'a> {
    columns: &'a [Column],
    groups: &'a [LineItems],
    record: Record,
}

/// A canonical decimal's digits as a JSON number, not a string.
struct RawNumber<'a>(&'a str);

impl Serialize for RawNumber<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(self.0),
        }
    }
}

fn serialize_fields<S: serde::Serializer>(
    columns: &[Column],
    groups: &[LineItems],
    record: &Record,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(record.len()))?;
    for (k, v) in record {
        if let (Some(g), Value::Array(items)) = (groups.iter().find(|g| &g.key == k), v) {
            let items: Vec<_> = items
                .iter()
                .filter_map(Value::as_object)
                .map(|i| ItemImage(&g.columns, i))
                .collect();
            map.serialize_entry(k, &items)?;
            continue;
        }
        match (columns.iter().find(|c| &c.name == k), v) {
            (Some(c), Value::String(d)) if c.kind == ColumnKind::Decimal => {
                map.serialize_entry(k, &RawNumber(d))?
            }
            _ => map.serialize_entry(k, v)?,
        }
    }
    map.end()
}

struct ItemImage<'a>(&'a [Column], &'a Record);

impl Serialize for ItemImage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fields(self.0, &[], self.1, s)
    }
}

impl Serialize for Image<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fields(self.columns, self.groups, &self.record, s)
    }
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    time: &'a str,
    datacontenttype: &'static str,
    /// The JSON Schema of `data` (`GET /schemas/{type}.json`), when the bridge knows its address.
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<String>,
    data: Data<'a>,
}

/// The CloudEvents `type` of `op` on `resource`: `com.daftra.invoice.created`.
pub fn event_type(resource: &Resource, op: Op) -> String {
    format!("com.daftra.{}.{}", resource.singular, op.as_str())
}

/// The path where the bridge serves the schema of the `data` of events of `event_type`.
pub fn schema_path(event_type: &str) -> String {
    format!("/schemas/{event_type}.json")
}

/// The id of a change: a hash of the resource, record id, operation, both images and the time
/// it was detected (RFC 3339). It is stored in the outbox with the event, so every republish
/// keeps it; a record that later flips back and forth between the same two images gets a new id
/// each time, so a consumer's dedupe never drops a real change. (A change is committed with its
/// outbox row in one transaction, so it is never detected twice.)
pub fn event_id(resource: &Resource, change: &Change, time: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        resource.name.as_str(),
        &change.id.to_string(),
        change.op.as_str(),
        time,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for image in [&change.before, &change.after] {
        match image {
            Some(r) => h.update(serde_json::to_vec(r).unwrap_or_default()),
            None => h.update(b"null"),
        }
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites the timestamps of `columns` in `record` from the account's wall clock to RFC 3339
/// with its offset (README "Consuming events").
fn with_offsets(columns: &[crate::catalogue::Column], clock: &Clock, record: &mut Record) {
    for c in columns.iter().filter(|c| c.kind == ColumnKind::Timestamp) {
        if let Some(Value::String(s)) = record.get_mut(&c.name) {
            if let Some(at) = clock.rfc3339(s) {
                *s = at;
            }
        }
    }
}

/// An event image: the normalised record with every timestamp, line items' included, as
/// RFC 3339 with the account's offset, and amounts as JSON numbers.
fn image<'a>(resource: &'a Resource, clock: &Clock, record: &Option<Record>) -> Option<Image<'a>> {
    let mut r = record.clone()?;
    with_offsets(&resource.columns, clock, &mut r);
    for g in &resource.line_items {
        if let Some(Value::Array(items)) = r.get_mut(&g.key) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                with_offsets(&g.columns, clock, item);
            }
        }
    }
    Some(Image {
        columns: &resource.columns,
        groups: &resource.line_items,
        record: r,
    })
}

/// Builds the outbox row of `change`, whatever its size. `source_base` is the Daftra site
/// root; `time` an RFC 3339 UTC timestamp of detection; `clock` the account's zone, for the
/// images' timestamps.
pub fn to_outbox(
    resource: &Resource,
    source_base: &str,
    time: &str,
    change: &Change,
    clock: &Clock,
) -> OutboxEvent {
    let origin = Origin {
        source: source_base,
        schemas: None,
    };
    to_outbox_within(resource, &origin, time, change, clock, usize::MAX)
}

/// Where an event comes from, and where the bridge serves the schema of its `data`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The Daftra site root: the CloudEvents `source` is it and the resource's list path.
    pub source: &'a str,
    /// The bridge's public address (`PUBLIC_URL`): `dataschema` is
    /// `{schemas}/schemas/{type}.json`; `None` leaves `dataschema` out.
    pub schemas: Option<&'a str>,
}

/// The path where the bridge serves record `id` of `resource` whole (`GET /records/...`).
pub fn record_path(resource: &Resource, id: i64) -> String {
    format!("/records/{}/{id}", resource.name)
}

/// As [`to_outbox`], at most `max_bytes` of CloudEvents JSON where line items allow it: a
/// larger event carries in its images only the items that changed, or, when that is still too
/// large, none; each group that lost items is marked partial in `data.items` (which still
/// names every item added, removed or changed) with the path of the whole record (not for a
/// delete). The event's id is that of the whole change.
pub fn to_outbox_within(
    resource: &Resource,
    origin: &Origin<'_>,
    time: &str,
    change: &Change,
    clock: &Clock,
    max_bytes: usize,
) -> OutboxEvent {
    let id = event_id(resource, change, time);
    let (old, new) = (change.before.as_ref(), change.after.as_ref());
    let summary = match change.op {
        Op::Updated => items::summarise(resource, old, new, false),
        _ => Default::default(),
    };
    let mut body = event_body(resource, origin, time, change, clock, (&id, summary));
    // Too large: first the images keep only the items that changed; still too large (a record
    // created or deleted with hundreds of items, or most items replaced), none, the summary
    // naming them. A deleted record is no longer served whole, so it gets no `url`.
    let url = (change.op != Op::Deleted).then(|| record_path(resource, change.id));
    for drop_all in [false, true] {
        if body.len() <= max_bytes || resource.line_items.is_empty() {
            break;
        }
        let mut summary = items::summarise(resource, old, new, true);
        let mut cut = change.clone();
        if let Some(before) = cut.before.as_mut() {
            items::cut(
                resource,
                before,
                &mut summary,
                (false, drop_all),
                url.as_deref(),
            );
        }
        if let Some(after) = cut.after.as_mut() {
            items::cut(
                resource,
                after,
                &mut summary,
                (true, drop_all),
                url.as_deref(),
            );
        }
        body = event_body(resource, origin, time, &cut, clock, (&id, summary));
    }
    OutboxEvent {
        resource: resource.name.to_string(),
        op: change.op.as_str().to_string(),
        routing_key: format!("{}.{}", resource.singular, change.op.as_str()),
        body,
        event_id: id,
        record_id: change.id,
    }
}

/// The CloudEvents JSON of `change` with the event `id` and the line-item `summary`.
fn event_body(
    resource: &Resource,
    origin: &Origin<'_>,
    time: &str,
    change: &Change,
    clock: &Clock,
    (id, summary): (&str, std::collections::BTreeMap<String, GroupChanges>),
) -> String {
    let source = format!("{}/{}", origin.source, resource.list_path);
    let kind = event_type(resource, change.op);
    let event = CloudEvent {
        specversion: "1.0",
        id,
        source: &source,
        dataschema: origin
            .schemas
            .map(|base| format!("{base}{}", schema_path(&kind))),
        kind,
        subject: change.id.to_string(),
        time,
        datacontenttype: "application/json",
        data: Data {
            resource: &resource.name,
            id: change.id,
            op: change.op,
            changed: &change.changed,
            items: summary,
            before: image(resource, clock, &change.before),
            after: image(resource, clock, &change.after),
        },
    };
    serde_json::to_string(&event).unwrap_or_else(|_| Value::Null.to_string())
}

/// A record as events show it (timestamps with the account's offset, amounts as JSON numbers,
/// line items included), as JSON text: what `GET /records/...` answers.
pub fn record_json(resource: &Resource, clock: &Clock, record: Record) -> String {
    serde_json::to_string(&image(resource, clock, &Some(record)))
        .unwrap_or_else(|_| Value::Null.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::default_resource;
    use serde_json::json;

    fn change() -> Change {
        let before = json!({"id": 42, "status": 1}).as_object().cloned();
        let after = json!({"id": 42, "status": 2}).as_object().cloned();
        Change {
            op: Op::Updated,
            id: 42,
            changed: vec!["status".into()],
            before,
            after,
        }
    }

    #[test]
    fn cloudevent_shape() {
        let cairo = Clock {
            zone: "Africa/Cairo".parse().unwrap(),
            ..Clock::default()
        };
        let mut c = change();
        for image in [c.before.as_mut().unwrap(), c.after.as_mut().unwrap()] {
            image.insert("modified".into(), json!("2024-03-05 14:21:35"));
            image.insert("budget".into(), json!("12345678901234567.89"));
        }
        let e = to_outbox(
            default_resource(),
            "https://acme.daftra.com",
            "2026-11-29T13:00:00Z",
            &c,
            &cairo,
        );
        let v: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(e.routing_key, "work_order.updated");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "com.daftra.work_order.updated");
        assert_eq!(v["source"], "https://acme.daftra.com/api2/work_orders");
        assert_eq!(v["subject"], "42");
        assert_eq!(v["id"], e.event_id.as_str());
        assert_eq!(v["data"]["changed"], json!(["status"]));
        assert_eq!(v["data"]["before"]["status"], 1);
        assert_eq!(v["data"]["after"]["status"], 2);
        assert_eq!(
            v["data"]["after"]["modified"], "2024-03-05T14:21:35+02:00",
            "timestamps carry the account's offset"
        );
        assert_eq!(
            e.event_id,
            event_id(default_resource(), &c, "2026-11-29T13:00:00Z")
        );
        assert!(
            e.body.contains(r#""budget":12345678901234567.89"#),
            "an amount is a JSON number with every digit: {}",
            e.body
        );
    }

    #[test]
    fn ids_are_stable_per_change() {
        let a = to_outbox(
            default_resource(),
            "x",
            "2026-11-29T13:00:00Z",
            &change(),
            &Clock::default(),
        );
        let b = to_outbox(
            default_resource(),
            "x",
            "2026-11-30T00:00:00Z",
            &change(),
            &Clock::default(),
        );
        assert_ne!(
            a.event_id, b.event_id,
            "the same images changing again later is another change, with another id"
        );
        let again = to_outbox(
            default_resource(),
            "x",
            "2026-11-29T13:00:00Z",
            &change(),
            &Clock::default(),
        );
        assert_eq!(a.event_id, again.event_id, "one change, one id");
        let mut other = change();
        other
            .after
            .as_mut()
            .unwrap()
            .insert("status".into(), json!(3));
        assert_ne!(
            event_id(default_resource(), &other, "2026-11-29T13:00:00Z"),
            a.event_id
        );
    }
}
