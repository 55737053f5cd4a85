//! Diff of a scan against the stored snapshot, by key, on canonical JSON of normalised records:
//! the scan already dropped records whose content hash matches the snapshot's, equal text is no
//! change, and only changed records are parsed back to list their fields.

use std::collections::{HashMap, HashSet};

use crate::events::{Change, Op};
use crate::record::Record;
use crate::store::SnapshotWrite;

/// A scanned record: its key, canonical JSON text (what the snapshot stores) and that text's
/// content hash ([`crate::record::content_hash`]).
pub struct Scanned {
    pub id: i64,
    pub canonical: String,
    pub hash: i64,
}

impl Scanned {
    /// The canonical text of a normalised record (keys sorted, so equal records give equal text).
    pub fn new(id: i64, record: &Record) -> Self {
        let canonical = serde_json::to_string(record).unwrap_or_default();
        Scanned {
            id,
            hash: crate::record::content_hash(&canonical),
            canonical,
        }
    }
}

/// Ids of the snapshot (`known`, id -> hash) that the scan did not see and that are not
/// `keep` (present in Daftra but unreadable), in order: deleted only after a direct 404 check.
pub fn missing<V>(known: &HashMap<i64, V>, seen: &HashSet<i64>, keep: &HashSet<i64>) -> Vec<i64> {
    let mut missing: Vec<i64> = known
        .keys()
        .filter(|id| !seen.contains(id) && !keep.contains(id))
        .copied()
        .collect();
    missing.sort_unstable();
    missing
}

/// Creates and updates found, plus the ids that the scan no longer contains.
#[derive(Debug, Default)]
pub struct Diff {
    /// The changes with their images; empty when the diff was asked not to describe them.
    pub changes: Vec<Change>,
    pub created: usize,
    pub updated: usize,
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

fn parse(text: &str) -> Record {
    serde_json::from_str(text).unwrap_or_default()
}

/// Diffs `scan` against `snapshot` (id -> canonical JSON). `keep` are ids present in Daftra whose
/// record could not be read: never missing, never changed. With `describe` false (a silent
/// baseline) only the writes and counts are produced.
pub fn diff(
    snapshot: &HashMap<i64, String>,
    scan: Vec<Scanned>,
    keep: &HashSet<i64>,
    describe: bool,
) -> Diff {
    let mut out = Diff::default();
    let mut seen = HashSet::with_capacity(scan.len());
    for s in scan {
        if !seen.insert(s.id) {
            continue;
        }
        match snapshot.get(&s.id) {
            Some(old) if *old == s.canonical => continue,
            Some(old) => {
                let (before, after) = (parse(old), parse(&s.canonical));
                let changed = changed_fields(&before, &after);
                // No changed field: the same content stored in another key order; the stored
                // text is refreshed, nothing is announced.
                if !changed.is_empty() {
                    out.updated += 1;
                    if describe {
                        out.changes.push(Change {
                            op: Op::Updated,
                            id: s.id,
                            changed,
                            before: Some(before),
                            after: Some(after),
                        });
                    }
                }
            }
            None => {
                out.created += 1;
                if describe {
                    out.changes.push(Change {
                        op: Op::Created,
                        id: s.id,
                        changed: vec![],
                        before: None,
                        after: Some(parse(&s.canonical)),
                    });
                }
            }
        }
        out.writes.push(SnapshotWrite::Upsert {
            id: s.id,
            record: s.canonical,
        });
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

    fn text(v: serde_json::Value) -> String {
        serde_json::to_string(&rec(v)).unwrap()
    }

    #[test]
    fn finds_created_updated_and_missing() {
        let snap: HashMap<i64, String> = [
            (1, text(json!({"id": 1, "status": 1}))),
            (2, text(json!({"id": 2, "status": 1}))),
            (3, text(json!({"id": 3, "status": 1}))),
            (4, text(json!({"id": 4}))),
        ]
        .into();
        let scan = || {
            vec![
                Scanned::new(1, &rec(json!({"id": 1, "status": 1}))),
                Scanned::new(2, &rec(json!({"id": 2, "status": 2}))),
                Scanned::new(5, &rec(json!({"id": 5}))),
            ]
        };
        let d = diff(&snap, scan(), &HashSet::from([4]), true);
        let ops: Vec<_> = d.changes.iter().map(|c| (c.op, c.id)).collect();
        assert_eq!(ops, vec![(Op::Updated, 2), (Op::Created, 5)]);
        assert_eq!(d.changes[0].changed, vec!["status".to_string()]);
        assert_eq!(d.changes[0].before.as_ref().unwrap()["status"], json!(1));
        assert_eq!(d.missing, vec![3]);
        assert_eq!(d.writes.len(), 2);
        let silent = diff(&snap, scan(), &HashSet::from([4]), false);
        assert!(silent.changes.is_empty());
        assert_eq!(
            (silent.created, silent.updated, silent.writes.len()),
            (1, 1, 2)
        );
    }
}
