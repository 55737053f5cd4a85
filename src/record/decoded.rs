//! A record decoded straight from Daftra's JSON into its resource's [`Shape`]
//! (`crate::catalogue::Shape`): what a scan, an incremental poll and a live export read each
//! list item into. Its canonical text is written from the slots, and a [`Record`] map is built
//! only where one is needed (events, live exports).

use serde::de::{DeserializeSeed, Deserializer};

use super::canonical::{into_map, object_text, write_object};
use super::decode::{ItemSeed, Layout, Object, ObjectSeed};
use super::{bad, int, Clock, Record, RecordError};
use crate::catalogue::Resource;

/// A list item that could not be read as a record, with its key when that could be read.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub key: Option<i64>,
    pub error: RecordError,
}

/// One normalised record of `resource`, its key a whole number.
pub struct Decoded<'r> {
    layout: Layout<'r>,
    object: Object<'r>,
    key: i64,
    /// Values kept as text because they could not be read as their column's kind.
    unreadable: Vec<RecordError>,
}

fn layout<'r>(resource: &'r Resource, clock: &'r Clock) -> Layout<'r> {
    Layout {
        columns: &resource.columns,
        shape: &resource.shape,
        groups: &resource.line_items,
        clock,
    }
}

/// Normalises the raw record `raw` (the object under the model key: a `serde_json::Map`, by
/// value or by reference, or any other deserializer of one) of `resource` in `clock`'s zone.
///
/// Errors only when the record is not an object or its key is missing or unreadable; callers
/// keep the previous snapshot of such a record rather than treat it as missing.
pub fn decode<'a, D: Deserializer<'a>>(
    resource: &'a Resource,
    clock: &'a Clock,
    raw: D,
) -> Result<Decoded<'a>, Invalid> {
    let layout = layout(resource, clock);
    let not_object = |message: String| Invalid {
        key: None,
        error: bad(&resource.model_key, message),
    };
    match ObjectSeed(layout).deserialize(raw) {
        Ok(Some(object)) => Decoded::finish(layout, object, &resource.key),
        Ok(None) => Err(not_object(format!(
            "an item has no {} object",
            resource.model_key
        ))),
        Err(e) => Err(not_object(format!("an item of data is not an object: {e}"))),
    }
}

/// Normalises one list item, `{"Model": {...}}` as JSON text, of `resource`: the object under
/// the resource's model key, read straight from the text (see [`decode`]).
pub fn decode_item<'a>(
    resource: &'a Resource,
    clock: &'a Clock,
    item: &'a str,
) -> Result<Decoded<'a>, Invalid> {
    let layout = layout(resource, clock);
    let seed = ItemSeed {
        model_key: &resource.model_key,
        layout,
    };
    let mut de = serde_json::Deserializer::from_str(item);
    let not_object = |message: String| Invalid {
        key: None,
        error: bad(&resource.model_key, message),
    };
    match seed.deserialize(&mut de) {
        Ok(Some(Some(object))) => Decoded::finish(layout, object, &resource.key),
        Ok(_) => Err(not_object(format!(
            "an item has no {} object",
            resource.model_key
        ))),
        Err(e) => Err(not_object(format!("an item of data is not an object: {e}"))),
    }
}

impl<'r> Decoded<'r> {
    /// Checks the key (field `key_name`), then fills label columns and canonical extras.
    fn finish(
        layout: Layout<'r>,
        mut object: Object<'r>,
        key_name: &str,
    ) -> Result<Decoded<'r>, Invalid> {
        let key_value = layout.shape.key.map(|slot| &object.slots[slot]);
        let Some(key) = key_value.and_then(|v| v.as_i64()) else {
            let name = key_name;
            // What the raw value reads as, when the column kept it as text.
            let raw = key_value.map(|v| v.clone().into_value());
            let key = raw.and_then(|v| int(name, &v).ok()?.as_i64());
            return Err(Invalid {
                key,
                error: bad(name, "missing or unreadable key"),
            });
        };
        object.finish(&layout);
        let unreadable = object.take_errors();
        Ok(Decoded {
            layout,
            object,
            key,
            unreadable,
        })
    }

    /// The record's key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// The text of field `name` as the record has it (`None` for a value that is not text, a
    /// line-item group or a field it does not have).
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.object
            .get(&self.layout, name)?
            .as_str()
            .map(str::to_string)
    }

    /// The values that could not be read as their column's kind (kept as text in the record),
    /// taken out.
    pub fn take_unreadable(&mut self) -> Vec<RecordError> {
        std::mem::take(&mut self.unreadable)
    }

    /// The record's canonical JSON text: keys sorted, no spaces; what the snapshot stores and
    /// the content hash is taken of.
    pub fn canonical(&self) -> String {
        object_text(&self.layout, &self.object)
    }

    /// [`Decoded::canonical`] as bytes, written into `out` (cleared first), so one buffer
    /// serves a whole page.
    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        out.clear();
        write_object(out, &self.layout, &self.object);
    }

    /// The record as a map.
    pub fn into_record(self) -> Record {
        into_map(&self.layout, self.object)
    }
}
