//! Diff of a scan against the stored snapshot, by key, on normalised records.

use std::collections::{HashMap, HashSet};

use crate::events::{Change, Op};
use crate::record::Record;
use crate::store::SnapshotWrite;

/// A scanned record with its canonical JSON text (what the snapshot stores).
pub struct Scanned {
    pub id: i64,
    pub record: Record,
    pub canonical: String,
}

impl Scanned {
    /// Wraps a normalised record.
    pub fn new(id: i64, record: Record) -> Self {
        let canonical = serde_json::to_string(&record).unwrap_or_default();
        Scanned {
            id,
            record,
            canonical,
        }
    }
}

/// Creates and updates found, plus the ids that the scan no longer contains.
#[derive(Debug, Default)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub writes: Vec<SnapshotWrite>,
    /// In the snapshot but not in the scan: deleted only after a direct 404 check.
    pub missing: Vec<i64>,
}

/// Names of fields whose values differ between two images, in key order.
pub fn changed_fields(before: &Record, after: &Record) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Diffs `scan` against `snapshot` (id -> canonical JSON). `keep` are ids present in Daftra whose
/// record could not be read: never missing, never changed.
pub fn diff(snapshot: &HashMap<i64, String>, scan: Vec<Scanned>, keep: &HashSet<i64>) -> Diff {
    let mut out = Diff::default();
    let mut seen = HashSet::with_capacity(scan.len());
    for s in scan {
        if !seen.insert(s.id) {
            continue;
        }
        let (op, changed, before) = match snapshot.get(&s.id) {
            Some(old) if *old == s.canonical => continue,
            Some(old) => {
                let before: Record = serde_json::from_str(old).unwrap_or_default();
                (
                    Op::Updated,
                    changed_fields(&before, &s.record),
                    Some(before),
                )
            }
            None => (Op::Created, Vec::new(), None),
        };
        out.writes.push(SnapshotWrite::Upsert {
            id: s.id,
            record: s.canonical,
        });
        // An update with no changed field is the same content in another key order: the stored
        // text is refreshed, nothing is announced.
        if op == Op::Created || !changed.is_empty() {
            out.changes.push(Change {
                op,
                id: s.id,
                changed,
                before,
                after: Some(s.record),
            });
        }
    }
    let mut missing: Vec<i64> = snapshot
        .keys()
        .filter(|id| !seen.contains(id) && !keep.contains(id))
        .copied()
        .collect();
    missing.sort_unstable();
    out.missing = missing;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn finds_created_updated_and_missing() {
        let snap: HashMap<i64, String> = [
            (
                1,
                serde_json::to_string(&rec(json!({"id": 1, "status": 1}))).unwrap(),
            ),
            (
                2,
                serde_json::to_string(&rec(json!({"id": 2, "status": 1}))).unwrap(),
            ),
            (
                3,
                serde_json::to_string(&rec(json!({"id": 3, "status": 1}))).unwrap(),
            ),
            (4, serde_json::to_string(&rec(json!({"id": 4}))).unwrap()),
        ]
        .into();
        let scan = vec![
            Scanned::new(1, rec(json!({"id": 1, "status": 1}))),
            Scanned::new(2, rec(json!({"id": 2, "status": 2}))),
            Scanned::new(5, rec(json!({"id": 5}))),
        ];
        let d = diff(&snap, scan, &HashSet::from([4]));
        let ops: Vec<_> = d.changes.iter().map(|c| (c.op, c.id)).collect();
        assert_eq!(ops, vec![(Op::Updated, 2), (Op::Created, 5)]);
        assert_eq!(d.changes[0].changed, vec!["status".to_string()]);
        assert_eq!(d.missing, vec![3]);
        assert_eq!(d.writes.len(), 2);
    }
}
