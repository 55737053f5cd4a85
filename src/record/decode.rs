//! Decoding a raw Daftra object straight into the slots of its [`Shape`]: keys are looked up
//! as they are read (borrowed from the page where they have no escapes), each value is read
//! by its column's kind as it is parsed, and no map of the raw record is ever built. Strings
//! that a column turns into a number or a date are read without a copy.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

use super::time::Clock;
use super::values::{canonical_extra, decimal, decimal_str, int, text};
use super::RecordError;
use crate::catalogue::{Column, ColumnKind, Field, LineItems, Shape};

/// A raw value: a string (borrowed from the input when it can be) or any other JSON value.
enum Raw<'de> {
    Str(Cow<'de, str>),
    Other(Value),
}

/// The columns, shape and groups of one kind of object (a record, or an item of a group).
#[derive(Clone, Copy)]
pub(super) struct Layout<'r> {
    pub columns: &'r [Column],
    pub shape: &'r Shape,
    pub groups: &'r [LineItems],
    pub clock: &'r Clock,
}

/// A canonical value as a slot holds it: text borrowed from the page where it can be (most
/// text, dates and times arrive canonical already), any other value as a JSON value.
#[derive(Clone, Debug)]
pub(super) enum Slot<'a> {
    Value(Value),
    Text(Cow<'a, str>),
}

impl Slot<'_> {
    pub const NULL: Slot<'static> = Slot::Value(Value::Null);

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Slot::Value(v) => v.as_i64(),
            Slot::Text(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Slot::Value(v) => v.as_str(),
            Slot::Text(t) => Some(t),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Slot::Value(Value::Null))
    }

    /// As a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            Slot::Value(v) => v,
            Slot::Text(t) => Value::String(t.into_owned()),
        }
    }

    /// Text as given, `null` when blank (as [`text`] reads a string).
    fn text(s: Cow<'_, str>) -> Slot<'_> {
        if s.trim().is_empty() {
            Slot::NULL
        } else {
            Slot::Text(s)
        }
    }
}

/// One item of a line-item group, normalised, with what orders it among its group.
pub(super) struct Item<'a> {
    pub object: Object<'a>,
    /// The item's key field, when it has one and it is a whole number.
    pub key: Option<i64>,
    /// The item's canonical text, where it has no key (content breaks ties then).
    pub text: String,
}

/// A decoded object: a value per column (label columns included once finished), the items of
/// each group with the values they could not read, and the undeclared fields.
pub(super) struct Object<'a> {
    pub slots: Vec<Slot<'a>>,
    /// Values that could not be read as their column's kind, by slot.
    errors: Vec<(usize, RecordError)>,
    pub groups: Vec<(Vec<Item<'a>>, Vec<RecordError>)>,
    /// Undeclared fields: as sent until [`Object::finish`], then canonical, sorted, none empty.
    pub extras: Vec<(String, Value)>,
}

impl<'a> Object<'a> {
    fn new(layout: &Layout<'_>) -> Object<'a> {
        Object {
            slots: vec![Slot::NULL; layout.columns.len()],
            errors: Vec::new(),
            groups: (0..layout.groups.len())
                .map(|_| (Vec::new(), Vec::new()))
                .collect(),
            extras: Vec::new(),
        }
    }

    /// Fills the label columns from their enum columns and puts the extras in canonical form:
    /// the last of repeated fields wins, then empty ones are dropped (as a JSON map reads them).
    pub fn finish(&mut self, layout: &Layout<'_>) {
        for &(label, source) in &layout.shape.labels {
            let source_slot = &self.slots[source];
            let value = match source_slot.is_null() {
                true => Some(None),
                false => source_slot.as_i64().map(Some),
            };
            self.slots[label] = value
                .and_then(|v| layout.columns[source].label(v))
                .map_or(Slot::NULL, |l| Slot::Value(Value::from(l)));
        }
        if self.extras.is_empty() {
            return;
        }
        self.extras.sort_by(|a, b| a.0.cmp(&b.0));
        let mut extras: Vec<(String, Value)> = Vec::with_capacity(self.extras.len());
        for (k, v) in std::mem::take(&mut self.extras) {
            match extras.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => extras.push((k, v)),
            }
        }
        self.extras = extras
            .into_iter()
            .map(|(k, v)| (k, canonical_extra(v)))
            .filter(|(_, v)| !v.is_null())
            .collect();
    }

    /// The values that could not be read: the columns' in column order, then each group's.
    pub fn take_errors(&mut self) -> Vec<RecordError> {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by_key(|(slot, _)| *slot);
        let mut out: Vec<RecordError> = errors.into_iter().map(|(_, e)| e).collect();
        for (_, group_errors) in &mut self.groups {
            out.append(group_errors);
        }
        out
    }

    /// The value of field `name` as the canonical record has it (an extra, else a column).
    pub fn get(&self, layout: &Layout<'_>, name: &str) -> Option<Slot<'_>> {
        if let Ok(i) = self.extras.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            return Some(Slot::Value(self.extras[i].1.clone()));
        }
        let i = layout.columns.iter().position(|c| c.name == name)?;
        Some(match &self.slots[i] {
            Slot::Text(t) => Slot::Text(Cow::Borrowed(t)),
            Slot::Value(v) => Slot::Value(v.clone()),
        })
    }

    fn set(&mut self, slot: usize, column: &Column, clock: &Clock, raw: Raw<'a>) {
        if !self.errors.is_empty() {
            // A repeated field: the last one is the value, and only its error counts.
            self.errors.retain(|(s, _)| *s != slot);
        }
        self.slots[slot] = match column_value(column, clock, raw) {
            Ok(v) => v,
            Err((v, e)) => {
                self.errors.push((slot, e));
                v
            }
        };
    }
}

/// The canonical value of one column; an unreadable value comes back as text with its error.
#[allow(clippy::type_complexity)]
fn column_value<'a>(
    column: &Column,
    clock: &Clock,
    raw: Raw<'a>,
) -> Result<Slot<'a>, (Slot<'a>, RecordError)> {
    let name = column.name.as_str();
    let s = match raw {
        Raw::Other(v) => {
            return other_value(column, clock, v)
                .map(Slot::Value)
                .map_err(|(v, e)| (Slot::Value(v), e))
        }
        Raw::Str(s) => s,
    };
    let read = match column.kind {
        ColumnKind::Text | ColumnKind::Derived => Ok(None),
        ColumnKind::Int => match s.parse::<i64>() {
            Ok(i) => return Ok(Slot::Value(i.into())),
            Err(_) => {
                return other_value(column, clock, Value::String(s.into_owned()))
                    .map(Slot::Value)
                    .map_err(|(v, e)| (Slot::Value(v), e))
            }
        },
        ColumnKind::Decimal => decimal_str(name, &s).map(Some),
        ColumnKind::Date => clock.normalise_str(name, &s, false),
        ColumnKind::Timestamp => clock.normalise_str(name, &s, true),
    };
    match read {
        Ok(Some(v)) => Ok(Slot::Value(v)),
        Ok(None) => Ok(Slot::text(s)),
        Err(e) => Err((Slot::text(s), e)),
    }
}

/// As [`column_value`], for a value that is not a string.
fn other_value(column: &Column, clock: &Clock, v: Value) -> Result<Value, (Value, RecordError)> {
    let name = column.name.as_str();
    let read = match column.kind {
        ColumnKind::Text | ColumnKind::Derived => Ok(None),
        ColumnKind::Int => int(name, &v).map(Some),
        ColumnKind::Decimal => decimal(name, &v).map(Some),
        ColumnKind::Date => clock.normalise(name, &v, false),
        ColumnKind::Timestamp => clock.normalise(name, &v, true),
    };
    match read {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Ok(text(v)),
        Err(e) => Err((text(v), e)),
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Any value, strings kept apart so a column can read them without a copy. Other values are
/// built exactly as `serde_json::Value` builds them.
struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Raw::Other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Raw::Other(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Raw::Other(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Raw::Other(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Other(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Other(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Raw::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Raw::Other)
    }
}

/// An object of `layout` (`None` when the value is not an object), not yet finished.
pub(super) struct ObjectSeed<'r>(pub Layout<'r>);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Option<Object<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Visitor methods for a value that is not what was hoped for: read to its end, and `$none`.
macro_rules! anything_else {
    ($none:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Option<Object<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    anything_else!(None);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let layout = self.0;
        let mut object = Object::new(&layout);
        while let Some(key) = map.next_key_seed(Key)? {
            match layout.shape.field(&key) {
                Some(Field::Column(i)) => {
                    let raw = map.next_value_seed(RawSeed)?;
                    object.set(i, &layout.columns[i], layout.clock, raw);
                }
                Some(Field::Group(g)) => {
                    let group = &layout.groups[g];
                    object.groups[g] = map.next_value_seed(GroupSeed(group, layout.clock))?;
                }
                Some(Field::Withheld) => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    let v: Value = map.next_value()?;
                    object.extras.push((key.into_owned(), v));
                }
            }
        }
        Ok(Some(object))
    }
}

/// The items of one line-item group, in canonical order, with the values they could not read:
/// an array, a PHP map of index to item (read in its keys' order, the last of a repeated key
/// winning), or nothing. Elements that are not objects are no items.
struct GroupSeed<'r>(&'r LineItems, &'r Clock);

impl<'de> DeserializeSeed<'de> for GroupSeed<'_> {
    type Value = (Vec<Item<'de>>, Vec<RecordError>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl GroupSeed<'_> {
    fn layout(&self) -> Layout<'_> {
        Layout {
            columns: &self.0.columns,
            shape: &self.0.shape,
            groups: &[],
            clock: self.1,
        }
    }

    /// Finishes each item, then orders them by key, then by content.
    fn items<'a>(&self, objects: Vec<Object<'a>>) -> (Vec<Item<'a>>, Vec<RecordError>) {
        let layout = self.layout();
        let mut errors = Vec::new();
        let mut items: Vec<Item> = objects
            .into_iter()
            .map(|mut object| {
                object.finish(&layout);
                errors.extend(object.take_errors());
                let key = match layout.shape.key {
                    Some(slot) => object.get(&layout, &layout.columns[slot].name),
                    None => (self.0.item_key.as_deref()).and_then(|k| object.get(&layout, k)),
                }
                .and_then(|v| v.as_i64());
                let text = if key.is_none() {
                    super::canonical::object_text(&layout, &object)
                } else {
                    String::new()
                };
                Item { object, key, text }
            })
            .collect();
        items.sort_by(|a, b| (a.key, &a.text).cmp(&(b.key, &b.text)));
        (items, errors)
    }
}

impl<'de> Visitor<'de> for GroupSeed<'_> {
    type Value = (Vec<Item<'de>>, Vec<RecordError>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("line items")
    }
    anything_else!((Vec::new(), Vec::new()));
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut objects = Vec::new();
        while let Some(item) = seq.next_element_seed(ObjectSeed(self.layout()))? {
            objects.extend(item);
        }
        Ok(self.items(objects))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Option<Object<'de>>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            entries.push((key, map.next_value_seed(ObjectSeed(self.layout()))?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut objects: Vec<(Cow<'de, str>, Option<Object<'de>>)> =
            Vec::with_capacity(entries.len());
        for (k, o) in entries {
            match objects.last_mut() {
                Some(last) if last.0 == k => last.1 = o,
                _ => objects.push((k, o)),
            }
        }
        Ok(self.items(objects.into_iter().filter_map(|(_, o)| o).collect()))
    }
}

/// A list item, `{"Model": {...}}`: the object under `model_key` (`Some(None)` when that is
/// not an object, `None` when it is missing); other members are skipped.
pub(super) struct ItemSeed<'r> {
    pub model_key: &'r str,
    pub layout: Layout<'r>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Option<Option<Object<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Option<Option<Object<'de>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if key == self.model_key {
                found = Some(map.next_value_seed(ObjectSeed(self.layout))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}
