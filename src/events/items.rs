//! What changed in an event's line items, group by group: the ids of the items added and
//! removed, and each changed item's changed fields; and the cut of the images to those items
//! when the whole event would be too large.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::catalogue::{LineItems, Resource};
use crate::record::Record;

/// The item changes of one line-item group (`data.items.{group}` of an event).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupChanges {
    /// Ids of the items only `after` has.
    pub added: Vec<Value>,
    /// Ids of the items only `before` has.
    pub removed: Vec<Value>,
    /// The items both have whose content differs, with the fields that differ.
    pub changed: Vec<ItemChange>,
    /// The images' lists of this group hold only the items named here (the whole event was
    /// over `EVENT_MAX_BYTES`); `url` reads the whole record.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Where the whole record can be read from the bridge (a path on its HTTP API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One changed item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemChange {
    pub id: Value,
    pub fields: Vec<String>,
}

/// The items of `group` in `image`, by their id's text (items without an id are left out).
fn items_by_id<'a>(
    group: &LineItems,
    image: Option<&'a Record>,
) -> BTreeMap<String, (&'a Value, &'a Record)> {
    let key = group.item_key.as_deref().unwrap_or("id");
    let Some(Value::Array(items)) = image.and_then(|r| r.get(&group.key)) else {
        return BTreeMap::new();
    };
    items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|item| {
            let id = item.get(key).filter(|v| !v.is_null())?;
            Some((id.to_string(), (id, item)))
        })
        .collect()
}

/// The changes of `group` between `before` and `after` (either may be absent, an empty list).
fn group_changes(
    group: &LineItems,
    before: Option<&Record>,
    after: Option<&Record>,
) -> GroupChanges {
    let (old, new) = (items_by_id(group, before), items_by_id(group, after));
    let mut out = GroupChanges::default();
    for (text, (id, item)) in &new {
        match old.get(text) {
            None => out.added.push((*id).clone()),
            Some((_, was)) if was != item => out.changed.push(ItemChange {
                id: (*id).clone(),
                fields: crate::record::changed_fields(was, item),
            }),
            Some(_) => {}
        }
    }
    for (text, (id, _)) in &old {
        if !new.contains_key(text) {
            out.removed.push((*id).clone());
        }
    }
    out
}

impl GroupChanges {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The ids (as text) an image keeps when cut: `added` and `changed` in `after`,
    /// `removed` and `changed` in `before`.
    fn kept(&self, in_after: bool) -> HashSet<String> {
        let listed = if in_after { &self.added } else { &self.removed };
        listed
            .iter()
            .chain(self.changed.iter().map(|c| &c.id))
            .map(Value::to_string)
            .collect()
    }
}

/// The groups of `resource` whose items differ between `before` and `after`, with their
/// changes; with `every`, the groups present in either image even when unchanged.
pub fn summarise(
    resource: &Resource,
    before: Option<&Record>,
    after: Option<&Record>,
    every: bool,
) -> BTreeMap<String, GroupChanges> {
    resource
        .line_items
        .iter()
        .filter_map(|g| {
            let present = [before, after]
                .iter()
                .flatten()
                .any(|r| r.contains_key(&g.key));
            let changes = group_changes(g, before, after);
            (!changes.is_empty() || (every && present)).then(|| (g.key.clone(), changes))
        })
        .collect()
}

/// Cuts the lists of `image` to the items `summary` names (for `after` when `in_after`), or to
/// none with `drop_all`; a group that lost items is marked partial, with `url` (where the whole
/// record can be read, when it still can).
pub fn cut(
    resource: &Resource,
    image: &mut Record,
    summary: &mut BTreeMap<String, GroupChanges>,
    (in_after, drop_all): (bool, bool),
    url: Option<&str>,
) {
    for g in &resource.line_items {
        let Some(changes) = summary.get_mut(&g.key) else {
            continue;
        };
        let kept = changes.kept(in_after);
        let key = g.item_key.as_deref().unwrap_or("id");
        let Some(Value::Array(items)) = image.get_mut(&g.key) else {
            continue;
        };
        let was = items.len();
        items.retain(|item| {
            !drop_all
                && item
                    .get(key)
                    .is_some_and(|id| kept.contains(&id.to_string()))
        });
        if items.len() < was {
            changes.partial = true;
            changes.url = url.map(str::to_string);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoices() -> &'static Resource {
        crate::catalogue::by_name("invoices").unwrap()
    }

    fn invoice(items: Value) -> Record {
        json!({"id": 13, "InvoiceItem": items})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn added_removed_and_changed_items_are_named() {
        let before =
            invoice(json!([{"id": 1, "quantity": 2}, {"id": 2, "quantity": 1}, {"id": 3}]));
        let after = invoice(json!([{"id": 1, "quantity": 5}, {"id": 3}, {"id": 4}]));
        let s = summarise(invoices(), Some(&before), Some(&after), false);
        let items = &s["InvoiceItem"];
        assert_eq!(items.added, vec![json!(4)]);
        assert_eq!(items.removed, vec![json!(2)]);
        assert_eq!(
            items.changed,
            vec![ItemChange {
                id: json!(1),
                fields: vec!["quantity".into()]
            }]
        );
        assert!(
            !s.contains_key("InvoicePayment"),
            "an unchanged group is left out"
        );
        let every = summarise(invoices(), Some(&before), Some(&before), true);
        assert!(
            every["InvoiceItem"].is_empty(),
            "listed, with nothing changed"
        );
    }

    #[test]
    fn a_cut_keeps_only_the_items_named() {
        let before = invoice(json!([{"id": 1, "quantity": 2}, {"id": 2}, {"id": 3}]));
        let mut after = invoice(json!([{"id": 1, "quantity": 5}, {"id": 3}, {"id": 4}]));
        let mut s = summarise(invoices(), Some(&before), Some(&after), true);
        let url = Some("/records/invoices/13");
        cut(invoices(), &mut after, &mut s, (true, false), url);
        assert_eq!(
            after["InvoiceItem"],
            json!([{"id": 1, "quantity": 5}, {"id": 4}])
        );
        assert!(s["InvoiceItem"].partial);
        assert_eq!(
            s["InvoiceItem"].url.as_deref(),
            Some("/records/invoices/13")
        );
    }

    #[test]
    fn a_group_is_partial_only_when_items_were_left_out() {
        let created = invoice(json!([{"id": 1}, {"id": 2}]));
        let mut s = summarise(invoices(), None, Some(&created), true);
        let mut kept = created.clone();
        cut(invoices(), &mut kept, &mut s, (true, false), None);
        assert_eq!(kept, created, "a created record's items are all added");
        assert!(!s["InvoiceItem"].partial);
        cut(invoices(), &mut kept, &mut s, (true, true), None);
        assert_eq!(kept["InvoiceItem"], json!([]));
        assert!(s["InvoiceItem"].partial);
        assert_eq!(s["InvoiceItem"].added, vec![json!(1), json!(2)]);
        assert_eq!(s["InvoiceItem"].url, None);
    }
}
