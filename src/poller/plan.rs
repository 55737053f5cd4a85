//! The plan of a poll: from what the scan found, what the snapshot held and which missing
//! records Daftra confirmed gone, the snapshot writes and the changes to announce. A pure
//! function: no store, no network, no clock.

use std::collections::{HashMap, HashSet};

use crate::diff::{diff, stored_image, Scanned};
use crate::events::{Change, Op};
use crate::store::SnapshotWrite;

/// What the plan is made from.
pub struct PlanInput<'a> {
    /// Records the scan found new or changed, as canonical JSON.
    pub scanned: Vec<Scanned>,
    /// The snapshot's canonical JSON of the changed records it holds (their `before` images).
    pub before: &'a HashMap<i64, String>,
    /// Keys present in Daftra whose record could not be read: never changed, never deleted.
    pub keep: &'a HashSet<i64>,
    /// Records missing from a complete scan that Daftra answered 404 for, in key order, with
    /// their last snapshot image when it could be read.
    pub gone: Vec<(i64, Option<&'a str>)>,
    /// Describe the changes (`false` on a silent first poll: writes and counts only).
    pub describe: bool,
    /// The resource's credential fields, dropped from stored images.
    pub withheld: &'a [String],
}

/// What a poll commits.
#[derive(Debug, Default)]
pub struct Plan {
    /// Snapshot writes, in the order they are applied.
    pub writes: Vec<SnapshotWrite>,
    /// The changes to announce, creates and updates in scan order then deletes in key order;
    /// empty when not described.
    pub changes: Vec<Change>,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Plan {
    /// The changes of kind `op`.
    pub fn count(&self, op: Op) -> usize {
        match op {
            Op::Created => self.created,
            Op::Updated => self.updated,
            Op::Deleted => self.deleted,
        }
    }
}

/// Plans a poll: creates and updates from the diff of the scanned records against their
/// `before` images, then a delete (with its last image) for each record confirmed gone.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let d = diff(
        input.before,
        input.scanned,
        input.keep,
        input.describe,
        input.withheld,
    );
    let mut plan = Plan {
        writes: d.writes,
        changes: d.changes,
        created: d.created,
        updated: d.updated,
        deleted: 0,
    };
    for (id, image) in input.gone {
        plan.deleted += 1;
        plan.writes.push(SnapshotWrite::Delete { id });
        if input.describe {
            plan.changes.push(Change {
                op: Op::Deleted,
                id,
                changed: vec![],
                before: image
                    .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
                    .map(|t| stored_image(t, input.withheld)),
                after: None,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> crate::record::Record {
        v.as_object().cloned().unwrap()
    }

    fn text(v: serde_json::Value) -> String {
        serde_json::to_string(&rec(v)).unwrap()
    }

    fn input<'a>(
        before: &'a HashMap<i64, String>,
        keep: &'a HashSet<i64>,
        gone: Vec<(i64, Option<&'a str>)>,
        describe: bool,
    ) -> PlanInput<'a> {
        PlanInput {
            scanned: vec![
                Scanned::new(1, &rec(json!({"id": 1, "status": 2}))),
                Scanned::new(2, &rec(json!({"id": 2}))),
                Scanned::new(1, &rec(json!({"id": 1, "status": 3}))),
            ],
            before,
            keep,
            gone,
            withheld: &[],
            describe,
        }
    }

    #[test]
    fn creates_updates_and_confirmed_deletes_in_order() {
        let before = HashMap::from([(1, text(json!({"id": 1, "status": 1})))]);
        let gone_image = text(json!({"id": 7, "status": 1}));
        let keep = HashSet::new();
        let p = plan(input(
            &before,
            &keep,
            vec![(7, Some(&gone_image)), (9, None)],
            true,
        ));
        let ops: Vec<_> = p.changes.iter().map(|c| (c.op, c.id)).collect();
        assert_eq!(
            ops,
            vec![
                (Op::Updated, 1),
                (Op::Created, 2),
                (Op::Deleted, 7),
                (Op::Deleted, 9)
            ],
            "a key scanned twice counts once, deletes come last"
        );
        assert_eq!(p.changes[0].changed, vec!["status".to_string()]);
        assert_eq!(p.changes[2].before.as_ref().unwrap()["status"], json!(1));
        assert!(
            p.changes[3].before.is_none(),
            "an unreadable image is no image"
        );
        assert_eq!((p.created, p.updated, p.deleted), (1, 1, 2));
        assert_eq!(p.count(Op::Deleted), 2);
        assert!(matches!(
            p.writes.last(),
            Some(SnapshotWrite::Delete { id: 9 })
        ));
        assert_eq!(p.writes.len(), 4);
    }

    #[test]
    fn a_silent_plan_writes_and_counts_without_describing() {
        let before = HashMap::new();
        let keep = HashSet::new();
        let p = plan(input(&before, &keep, vec![(5, None)], false));
        assert!(p.changes.is_empty());
        assert_eq!(
            (p.created, p.updated, p.deleted, p.writes.len()),
            (2, 0, 1, 3)
        );
    }

    #[test]
    fn an_unchanged_record_plans_nothing() {
        let before = HashMap::from([(1, text(json!({"id": 1, "status": 2})))]);
        let keep = HashSet::new();
        let p = plan(PlanInput {
            scanned: vec![Scanned::new(1, &rec(json!({"id": 1, "status": 2})))],
            before: &before,
            keep: &keep,
            gone: vec![],
            describe: true,
            withheld: &[],
        });
        assert!(p.changes.is_empty() && p.writes.is_empty());
    }
}
