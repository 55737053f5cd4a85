//! Change events: the diff's changes, their stable ids and their CloudEvents 1.0 structured-mode
//! JSON (CONTRACT section 4; <https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md>).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalogue::ColumnKind;
use crate::catalogue::Resource;
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
}

#[derive(Serialize)]
struct Data<'a> {
    resource: &'a str,
    id: i64,
    op: Op,
    changed: &'a [String],
    before: &'a Option<Record>,
    after: &'a Option<Record>,
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
    data: Data<'a>,
}

/// A stable id for a change, derived from the change itself (resource, record id, operation and
/// both images), so the same change detected again after a crash keeps its id.
pub fn event_id(resource: &Resource, change: &Change) -> String {
    let mut h = Sha256::new();
    for part in [
        resource.name.as_str(),
        &change.id.to_string(),
        change.op.as_str(),
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
/// with its offset (CONTRACT section 4).
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
/// RFC 3339 with the account's offset.
fn image(resource: &Resource, clock: &Clock, record: &Option<Record>) -> Option<Record> {
    let mut r = record.clone()?;
    with_offsets(&resource.columns, clock, &mut r);
    for g in &resource.line_items {
        if let Some(Value::Array(items)) = r.get_mut(&g.key) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                with_offsets(&g.columns, clock, item);
            }
        }
    }
    Some(r)
}

/// Builds the outbox row of `change`. `source_base` is the Daftra site root; `time` an RFC 3339
/// UTC timestamp of detection; `clock` the account's zone, for the images' timestamps.
pub fn to_outbox(
    resource: &Resource,
    source_base: &str,
    time: &str,
    change: &Change,
    clock: &Clock,
) -> OutboxEvent {
    let id = event_id(resource, change);
    let (before, after) = (
        image(resource, clock, &change.before),
        image(resource, clock, &change.after),
    );
    let source = format!("{source_base}/{}", resource.list_path);
    let event = CloudEvent {
        specversion: "1.0",
        id: &id,
        source: &source,
        kind: format!("com.daftra.{}.{}", resource.singular, change.op.as_str()),
        subject: change.id.to_string(),
        time,
        datacontenttype: "application/json",
        data: Data {
            resource: &resource.name,
            id: change.id,
            op: change.op,
            changed: &change.changed,
            before: &before,
            after: &after,
        },
    };
    OutboxEvent {
        resource: resource.name.to_string(),
        op: change.op.as_str().to_string(),
        routing_key: format!("{}.{}", resource.singular, change.op.as_str()),
        body: serde_json::to_string(&event).unwrap_or_else(|_| Value::Null.to_string()),
        event_id: id,
    }
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
        assert_eq!(e.event_id, event_id(default_resource(), &c));
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
        assert_eq!(a.event_id, b.event_id);
        let mut other = change();
        other
            .after
            .as_mut()
            .unwrap()
            .insert("status".into(), json!(3));
        assert_ne!(event_id(default_resource(), &other), a.event_id);
    }
}
