//! What a finished poll tells: its status on the board (kept in the store, so it survives a
//! restart and reaches followers), its metrics and its log line, in one place.

use std::sync::Arc;
use std::time::Duration;

use super::{PollError, PollOutcome};
use crate::feed::Feed;
use crate::metrics::{Metrics, PollMode};
use crate::status::{now_rfc3339, PollResult, PollStatus, StatusBoard};
use crate::store::Store;

/// A poll that ended, either way.
pub(super) struct PollFinished<'a> {
    pub feed: &'a Feed,
    pub result: &'a Result<PollOutcome, PollError>,
    pub took: Duration,
    /// Records in the snapshot after the poll.
    pub records: u64,
}

impl PollFinished<'_> {
    /// How the poll ended, as `/status` shows it.
    fn outcome(&self) -> PollResult {
        match self.result {
            Ok(o) if o.baseline => PollResult::Baseline,
            Ok(o) if o.complete => PollResult::Success,
            Ok(_) => PollResult::Incomplete,
            Err(_) => PollResult::Failed,
        }
    }

    fn available(&self) -> bool {
        let refused = self.feed.account.client.credentials().refusal().is_some();
        !matches!(self.result, Err(e) if e.is_unavailable() && !refused)
    }

    /// Applies the poll to its status on the board.
    fn update(&self, s: &mut PollStatus) {
        s.polling = false;
        s.last_poll_ended = Some(now_rfc3339());
        s.last_duration_seconds = Some(self.took.as_secs_f64());
        s.records = self.records;
        s.last_outcome = Some(self.outcome());
        s.available = self.available();
        match self.result {
            Ok(o) => {
                s.last_error = None;
                s.last_success = s.last_poll_ended.clone();
                s.pages = o.pages;
                s.changes = [
                    ("created", o.created),
                    ("updated", o.updated),
                    ("deleted", o.deleted),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v as u64))
                .collect();
                s.last_mode = Some(o.mode);
                s.requests = o.requests;
                s.incremental_missed += o.missed as u64;
                match o.mode {
                    PollMode::Full => {
                        s.last_full_scan = s.last_poll_ended.clone();
                        s.full_scan_records = o.records as u64;
                    }
                    PollMode::Incremental => {
                        s.last_incremental_poll = s.last_poll_ended.clone();
                        s.incremental_records = o.records as u64;
                    }
                }
                if let Some((strategy, why)) = &o.strategy {
                    s.strategy = Some(*strategy);
                    s.strategy_reason = Some(why.clone());
                }
            }
            Err(e) => s.last_error = Some(e.to_string()),
        }
    }

    /// Updates the status board, keeps the status in the store, counts and logs the poll.
    pub async fn report(&self, board: &StatusBoard, store: &Store, metrics: &Metrics) {
        let (key, name) = (self.feed.key(), self.feed.name());
        board.update(key, |s| self.update(s));
        if let Some(saved) = board.get(key).and_then(|s| serde_json::to_string(&s).ok()) {
            let (store, owned) = (store.clone(), key.to_string());
            let kept = tokio::task::spawn_blocking(move || store.save_poll_status(&owned, &saved));
            if let Ok(Err(e)) = kept.await {
                tracing::warn!(resource = name, error = %e, "Could not keep the poll status");
            }
        }
        metrics.poll_ended(name, self.took, self.available());
        let duration_ms = self.took.as_millis() as u64;
        match self.result {
            Ok(o) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics.poll_succeeded_at(name, now.as_secs_f64());
                metrics.poll_read(name, o.mode, o.requests, o.records);
                tracing::info!(
                    resource = name,
                    records = o.records,
                    pages = o.pages,
                    mode = o.mode.as_str(),
                    requests = o.requests,
                    created = o.created,
                    updated = o.updated,
                    deleted = o.deleted,
                    invalid = o.invalid,
                    complete = o.complete,
                    baseline = o.baseline,
                    duration_ms,
                    "Poll finished"
                );
            }
            Err(e) => {
                metrics.poll_failed(name, e.reason());
                tracing::warn!(resource = name, reason = e.reason().as_str(), error = %e, duration_ms, "Poll failed; nothing changed");
            }
        }
    }
}

/// Marks `feed` as polling on the board.
pub(super) fn started(board: &Arc<StatusBoard>, feed: &Feed) {
    board.update(feed.key(), |s| {
        s.last_poll_started = Some(now_rfc3339());
        s.polling = true;
    });
}
