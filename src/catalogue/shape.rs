//! The shape of a record of one resource (or of one item of a line-item group), worked out once
//! from its columns so a record is decoded without maps: the slot of each field Daftra sends,
//! and the order of the canonical record's keys with their JSON text ready to write.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxBuildHasher;

use super::{Column, ColumnKind, LineItems};

/// What a field of a raw record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A declared, non-derived column: its index in the columns (its slot).
    Column(usize),
    /// A line-item group: its index in the resource's groups.
    Group(usize),
    /// A credential, dropped as it is read.
    Withheld,
}

/// One key of the canonical record, in key order.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub name: String,
    /// The key as JSON followed by `:` (`"status":`), written as it is.
    pub prefix: Box<[u8]>,
    pub slot: Field,
}

/// A record's layout: slots by field name, label columns with their source, and the canonical
/// key order (byte order, as a `serde_json::Map` sorts). Fields not found here are the
/// undeclared extras a record keeps as sent. Where a name is both a column and a group key, the
/// column reads the field and the group's (empty) items fill the record's key, as the
/// normalisation has always done.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    fields: HashMap<String, Field, FxBuildHasher>,
    /// The canonical record's declared keys, in order.
    pub entries: Vec<Entry>,
    /// Each label column's slot with the slot of the enum column it labels.
    pub labels: Vec<(usize, usize)>,
    /// Slot of the key column (the record's key, or the item's key field).
    pub key: Option<usize>,
}

impl Shape {
    /// The shape of records with `columns` (label columns included), line-item `groups`, `key`
    /// field and `withheld` fields.
    pub fn new(
        columns: &[Column],
        groups: &[LineItems],
        key: Option<&str>,
        withheld: &[String],
    ) -> Self {
        let mut fields: HashMap<String, Field, FxBuildHasher> = HashMap::default();
        let mut order: BTreeMap<String, Field> = BTreeMap::new();
        for (i, c) in columns.iter().enumerate() {
            order.insert(c.name.clone(), Field::Column(i));
            if c.kind != ColumnKind::Derived {
                fields.entry(c.name.clone()).or_insert(Field::Column(i));
            }
        }
        for (g, group) in groups.iter().enumerate() {
            order.insert(group.key.clone(), Field::Group(g));
            fields.entry(group.key.clone()).or_insert(Field::Group(g));
        }
        for w in withheld {
            fields.insert(w.clone(), Field::Withheld);
        }
        let entries = order
            .into_iter()
            .map(|(name, slot)| {
                let mut prefix = serde_json::to_vec(&name).expect("a name is JSON");
                prefix.push(b':');
                Entry {
                    name,
                    prefix: prefix.into(),
                    slot,
                }
            })
            .collect();
        let slot_of = |name: &str| {
            columns
                .iter()
                .position(|c| c.name == name && c.kind != ColumnKind::Derived)
        };
        let labels = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == ColumnKind::Derived)
            .filter_map(|(i, c)| Some((i, slot_of(c.label_of.as_deref()?)?)))
            .collect();
        let key = key.and_then(slot_of);
        Shape {
            fields,
            entries,
            labels,
            key,
        }
    }

    /// What the raw field `name` is; `None` for an undeclared field (or a label column's name,
    /// which Daftra never sends and which, if it did, would be kept as an extra).
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }

    /// The slot of column `name`.
    pub fn slot(&self, name: &str) -> Option<usize> {
        match self.field(name) {
            Some(Field::Column(i)) => Some(i),
            _ => None,
        }
    }
}
