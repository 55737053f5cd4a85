//! The canonical form of a decoded object: its JSON text written straight from its slots in
//! key order (byte for byte what `serde_json` writes for the same [`super::Record`], so content
//! hashes stored before this writer existed still match), or the record itself.

use serde_json::{Map, Value};

use super::decode::{Item, Layout, Object, Slot};
use crate::catalogue::Field;

/// One key of the canonical object, in key order: a declared entry or an extra (an extra
/// named like a declared entry replaces it, as inserting it into a map would).
enum Member<'a> {
    Declared(&'a crate::catalogue::Entry),
    Extra(&'a str, &'a Value),
}

/// The members of `object` in canonical key order.
fn members<'a>(layout: &'a Layout<'_>, object: &'a Object<'_>) -> impl Iterator<Item = Member<'a>> {
    let mut declared = layout.shape.entries.iter().peekable();
    let mut extras = object.extras.iter().peekable();
    std::iter::from_fn(move || match (declared.peek(), extras.peek()) {
        (Some(d), Some((k, v))) => match d.name.as_str().cmp(k.as_str()) {
            std::cmp::Ordering::Less => declared.next().map(Member::Declared),
            std::cmp::Ordering::Equal => {
                declared.next();
                extras.next();
                Some(Member::Extra(k, v))
            }
            std::cmp::Ordering::Greater => {
                extras.next();
                Some(Member::Extra(k, v))
            }
        },
        (Some(_), None) => declared.next().map(Member::Declared),
        (None, Some((k, v))) => {
            extras.next();
            Some(Member::Extra(k, v))
        }
        (None, None) => None,
    })
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    serde_json::to_writer(&mut *out, v).expect("a Value writes to memory");
}

/// Writes a slot as `serde_json` writes the same value: text without a character to escape
/// (no `"`, `\\` or control character: almost all of it) is copied between quotes.
fn write_slot(out: &mut Vec<u8>, slot: &Slot<'_>) {
    match slot {
        Slot::Text(t) if !t.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') => {
            out.push(b'"');
            out.extend_from_slice(t.as_bytes());
            out.push(b'"');
        }
        Slot::Text(t) => write_value_str(out, t),
        Slot::Value(v) => write_value(out, v),
    }
}

fn write_value_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a str writes to memory");
}

/// Writes `object` as canonical JSON: `{"key":value,...}`, keys in byte order, no spaces.
pub(super) fn write_object(out: &mut Vec<u8>, layout: &Layout<'_>, object: &Object<'_>) {
    out.push(b'{');
    for (i, member) in members(layout, object).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match member {
            Member::Declared(entry) => {
                out.extend_from_slice(&entry.prefix);
                match entry.slot {
                    Field::Column(slot) => write_slot(out, &object.slots[slot]),
                    Field::Group(g) => write_items(out, layout, g, &object.groups[g].0),
                    Field::Withheld => out.extend_from_slice(b"null"),
                }
            }
            Member::Extra(k, v) => {
                write_value_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
        }
    }
    out.push(b'}');
}

fn item_layout<'a>(layout: &Layout<'a>, g: usize) -> Layout<'a> {
    let group = &layout.groups[g];
    Layout {
        columns: &group.columns,
        shape: &group.shape,
        groups: &[],
        clock: layout.clock,
    }
}

fn write_items(out: &mut Vec<u8>, layout: &Layout<'_>, g: usize, items: &[Item<'_>]) {
    let item_layout = item_layout(layout, g);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if item.text.is_empty() {
            write_object(out, &item_layout, &item.object);
        } else {
            out.extend_from_slice(item.text.as_bytes());
        }
    }
    out.push(b']');
}

/// The canonical text of `object`.
pub(super) fn object_text(layout: &Layout<'_>, object: &Object<'_>) -> String {
    let mut out = Vec::with_capacity(256);
    write_object(&mut out, layout, object);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// `object` as a record, its values moved out.
pub(super) fn into_map(layout: &Layout<'_>, mut object: Object<'_>) -> Map<String, Value> {
    let mut groups: Vec<Option<Vec<Item<'_>>>> = std::mem::take(&mut object.groups)
        .into_iter()
        .map(|(items, _)| Some(items))
        .collect();
    let mut slots = std::mem::take(&mut object.slots);
    let mut out: Vec<(String, Value)> = Vec::with_capacity(slots.len() + object.extras.len());
    for member in members(layout, &object) {
        match member {
            Member::Declared(entry) => {
                let value = match entry.slot {
                    Field::Column(slot) => {
                        std::mem::replace(&mut slots[slot], Slot::NULL).into_value()
                    }
                    Field::Group(g) => {
                        let items = groups[g].take().unwrap_or_default();
                        let item_layout = item_layout(layout, g);
                        Value::Array(
                            items
                                .into_iter()
                                .map(|i| Value::Object(into_map(&item_layout, i.object)))
                                .collect(),
                        )
                    }
                    Field::Withheld => Value::Null,
                };
                out.push((entry.name.clone(), value));
            }
            Member::Extra(k, v) => out.push((k.to_string(), v.clone())),
        }
    }
    out.into_iter().collect()
}
