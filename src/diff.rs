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
        Scanned::from_canonical(id, serde_json::to_string(record).unwrap_or_default())
    }

    /// From a record's canonical text ([`crate::record::Decoded::canonical`]).
    pub fn from_canonical(id: i64, canonical: String) -> Self {
        Scanned {
            id,
            hash: crate::record::content_hash(&canonical),
            canonical,
        }
    }
}

/// The snapshot's content hashes, sorted by id (16 bytes per record, whatever its size), with a
/// bit per record that a scan sets for each id it sees: what a poll holds instead of records.
#[derive(Debug, Default)]
pub struct Known {
    entries: Vec<(i64, i64)>,
    seen: Vec<u64>,
}

impl Known {
    /// From `(id, hash)` pairs in any order.
    pub fn new(mut entries: Vec<(i64, i64)>) -> Self {
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        let seen = vec![0; entries.len().div_ceil(64)];
        Known { entries, seen }
    }

    /// Records in the snapshot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn index(&self, id: i64) -> Option<usize> {
        self.entries.binary_search_by_key(&id, |e| e.0).ok()
    }

    /// `true` when the snapshot holds `id`.
    pub fn contains(&self, id: i64) -> bool {
        self.index(id).is_some()
    }

    /// Marks `id` seen by the scan and returns its stored hash, when the snapshot holds it.
    pub fn see(&mut self, id: i64) -> Option<i64> {
        let i = self.index(id)?;
        self.seen[i / 64] |= 1 << (i % 64);
        Some(self.entries[i].1)
    }

    /// Whether `id` was seen, and so whether seeing it again is a repeat.
    pub fn was_seen(&self, id: i64) -> bool {
        self.index(id)
            .is_some_and(|i| self.seen[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Forgets what a scan saw (before a rescan).
    pub fn reset_seen(&mut self) {
        self.seen.iter_mut().for_each(|w| *w = 0);
    }

    /// Ids of the snapshot the scan saw.
    pub fn seen_count(&self) -> usize {
        self.seen.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Ids of the snapshot the scan did not see and that are not `keep` (present in Daftra but
    /// unreadable), in order: deleted only after a direct 404 check.
    pub fn missing(&self, keep: &HashSet<i64>) -> Vec<i64> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, (id, _))| self.seen[i / 64] & (1 << (i % 64)) == 0 && !keep.contains(id))
            .map(|(_, (id, _))| *id)
            .collect()
    }
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

pub use crate::record::changed_fields;

fn parse(text: &str) -> Record {
    serde_json::from_str(text).unwrap_or_default()
}

/// A stored image, without the `withheld` fields a snapshot made before they were withheld
/// may still hold: they are neither announced nor a change.
pub fn stored_image(text: &str, withheld: &[String]) -> Record {
    let mut record = parse(text);
    for field in withheld {
        record.remove(field);
    }
    record
}

/// Diffs `scan` against `snapshot` (id -> canonical JSON). `keep` are ids present in Daftra whose
/// record could not be read: never missing, never changed. `withheld` are the resource's
/// credential fields, dropped from stored images ([`stored_image`]). With `describe` false (a
/// silent baseline) only the writes and counts are produced.
pub fn diff(
    snapshot: &HashMap<i64, String>,
    scan: Vec<Scanned>,
    keep: &HashSet<i64>,
    describe: bool,
    withheld: &[String],
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
                let (before, after) = (stored_image(old, withheld), parse(&s.canonical));
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
    fn a_credential_an_older_snapshot_held_is_no_change_and_is_rewritten_away() {
        let snap: HashMap<i64, String> =
            [(1, text(json!({"id": 1, "name": "a", "password": "secret"})))].into();
        let scan = vec![Scanned::new(1, &rec(json!({"id": 1, "name": "a"})))];
        let withheld = ["password".to_string()];
        let d = diff(&snap, scan, &HashSet::new(), true, &withheld);
        assert!(d.changes.is_empty(), "{:?}", d.changes);
        assert_eq!(d.updated, 0);
        assert_eq!(d.writes.len(), 1, "the stored row is rewritten without it");
        let changed = vec![Scanned::new(1, &rec(json!({"id": 1, "name": "b"})))];
        let d = diff(&snap, changed, &HashSet::new(), true, &withheld);
        assert_eq!(d.changes[0].changed, vec!["name".to_string()]);
        let before = d.changes[0].before.as_ref().unwrap();
        assert!(!before.contains_key("password"), "never in an image");
    }

    #[test]
    fn known_hashes_mark_what_a_scan_saw() {
        let mut k = Known::new(vec![(9, 90), (3, 30), (5, 50), (3, 31)]);
        assert_eq!(k.len(), 3);
        assert_eq!(k.see(5), Some(50));
        assert_eq!(k.see(4), None);
        assert!(k.was_seen(5) && !k.was_seen(3));
        assert_eq!(k.seen_count(), 1);
        assert_eq!(k.missing(&HashSet::from([9])), vec![3]);
        k.reset_seen();
        assert_eq!(k.missing(&HashSet::new()), vec![3, 5, 9]);
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
        let d = diff(&snap, scan(), &HashSet::from([4]), true, &[]);
        let ops: Vec<_> = d.changes.iter().map(|c| (c.op, c.id)).collect();
        assert_eq!(ops, vec![(Op::Updated, 2), (Op::Created, 5)]);
        assert_eq!(d.changes[0].changed, vec!["status".to_string()]);
        assert_eq!(d.changes[0].before.as_ref().unwrap()["status"], json!(1));
        assert_eq!(d.missing, vec![3]);
        assert_eq!(d.writes.len(), 2);
        let silent = diff(&snap, scan(), &HashSet::from([4]), false, &[]);
        assert!(silent.changes.is_empty());
        assert_eq!(
            (silent.created, silent.updated, silent.writes.len()),
            (1, 1, 2)
        );
    }
}
