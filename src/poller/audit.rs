//! Watermark arithmetic and the audit of incremental polls. Pure: no store, no network, no
//! clock. Times are the account's wall clock, `YYYY-MM-DD HH:MM:SS` (text order is time order).

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::events::{Change, Op};
use crate::store::Watermark;

const FORM: &str = "%Y-%m-%d %H:%M:%S";

/// `at` less `overlap`: where an incremental poll starts reading. A time that cannot be read
/// is returned as it is (text order still holds for it).
pub fn step_back(at: &str, overlap: Duration) -> String {
    match NaiveDateTime::parse_from_str(at, FORM) {
        Ok(t) => {
            let back = chrono::TimeDelta::from_std(overlap).unwrap_or_default();
            (t - back).format(FORM).to_string()
        }
        Err(_) => at.to_string(),
    }
}

/// The later of two optional times.
pub fn later(a: Option<&str>, b: Option<&str>) -> Option<String> {
    a.into_iter().chain(b).max().map(str::to_string)
}

/// The changes a full scan found that the incremental polls before it should have read: those
/// created or updated with a change time older than where those polls had read to
/// (`watermark.audited_to`) less `overlap`. `changed_at` gives a change's time. No incremental
/// poll since the last full scan (`audited_to` unset): nothing can have been missed.
pub fn missed<'c>(
    changes: &'c [Change],
    watermark: Option<&Watermark>,
    overlap: Duration,
    changed_at: impl Fn(&Change) -> Option<String>,
) -> Vec<&'c Change> {
    let Some(audited_to) = watermark.and_then(|w| w.audited_to.as_deref()) else {
        return Vec::new();
    };
    let threshold = step_back(audited_to, overlap);
    changes
        .iter()
        .filter(|c| c.op != Op::Deleted)
        .filter(|c| {
            // A change without a readable time cannot be placed: not counted.
            changed_at(c).is_some_and(|t| t < threshold)
        })
        .collect()
}

/// The watermark after an incremental poll that started reading at its `since` and saw
/// `newest`: the newest change committed, and read up to it.
pub fn after_incremental(before: &Watermark, newest: Option<&str>) -> Watermark {
    let changed_at = later(Some(&before.changed_at), newest).unwrap_or_default();
    Watermark {
        audited_to: Some(changed_at.clone()),
        changed_at,
    }
}

/// The watermark after a full scan that saw `newest`: nothing left to audit.
pub fn after_full(before: Option<&Watermark>, newest: Option<&str>) -> Option<Watermark> {
    let changed_at = later(before.map(|w| w.changed_at.as_str()), newest)?;
    Some(Watermark {
        changed_at,
        audited_to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: Op, id: i64) -> Change {
        Change {
            op,
            id,
            changed: vec![],
            before: None,
            after: None,
        }
    }

    #[test]
    fn steps_back_across_midnight_and_keeps_unreadable_times() {
        let five = Duration::from_secs(300);
        assert_eq!(
            step_back("2026-01-01 00:02:00", five),
            "2025-12-31 23:57:00"
        );
        assert_eq!(step_back("garbage", five), "garbage");
        assert_eq!(
            step_back("2026-01-01 00:02:00", Duration::ZERO),
            "2026-01-01 00:02:00"
        );
    }

    #[test]
    fn a_miss_is_an_old_create_or_update_after_incremental_polls() {
        let changes = [
            change(Op::Updated, 1),
            change(Op::Updated, 2),
            change(Op::Created, 3),
            change(Op::Deleted, 4),
            change(Op::Updated, 5),
        ];
        let times = |c: &Change| match c.id {
            1 => Some("2026-01-01 09:00:00".to_string()),
            2 => Some("2026-01-01 11:58:00".to_string()),
            3 => Some("2026-01-01 08:00:00".to_string()),
            4 => Some("2000-01-01 00:00:00".to_string()),
            _ => None,
        };
        let w = Watermark {
            changed_at: "2026-01-01 12:00:00".into(),
            audited_to: Some("2026-01-01 12:00:00".into()),
        };
        let five = Duration::from_secs(300);
        let ids: Vec<i64> = missed(&changes, Some(&w), five, times)
            .iter()
            .map(|c| c.id)
            .collect();
        // 2 is inside the overlap, 4 a delete, 5 has no time.
        assert_eq!(ids, vec![1, 3]);
        let unaudited = Watermark {
            audited_to: None,
            ..w
        };
        assert!(missed(&changes, Some(&unaudited), five, times).is_empty());
        assert!(missed(&changes, None, five, times).is_empty());
    }

    #[test]
    fn watermarks_only_move_forward() {
        let w = Watermark {
            changed_at: "2026-01-01 12:00:00".into(),
            audited_to: None,
        };
        let older = after_incremental(&w, Some("2026-01-01 11:00:00"));
        assert_eq!(older.changed_at, "2026-01-01 12:00:00");
        assert_eq!(older.audited_to.as_deref(), Some("2026-01-01 12:00:00"));
        let newer = after_incremental(&w, Some("2026-01-01 13:00:00"));
        assert_eq!(newer.changed_at, "2026-01-01 13:00:00");
        let full = after_full(Some(&newer), None).unwrap();
        assert_eq!(full.changed_at, "2026-01-01 13:00:00");
        assert_eq!(full.audited_to, None);
        assert_eq!(after_full(None, None), None);
    }
}
