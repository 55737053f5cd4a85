//! The incremental poll: the records changed since the watermark (less the overlap), read by
//! the feed's proven strategy, diffed against their snapshot rows alone, committed with their
//! `created`/`updated` events; then the watermark moves. It never deletes, and never loads the
//! snapshot's hashes: its cost is what changed, not what exists.

use super::plan::{self, PlanInput};
use super::{audit, on_store, PollError, PollOutcome, Poller};
use crate::changes::{self, Changed, Strategy};
use crate::feed::Feed;
use crate::metrics::PollMode;

impl Poller {
    /// An incremental poll of `feed` by `strategy`; `None` when a full scan must run instead
    /// (no watermark yet, or Daftra stopped honouring the strategy, which is then off until a
    /// later probe passes).
    pub(super) async fn incremental(
        &self,
        feed: &Feed,
        strategy: Strategy,
    ) -> Result<Option<PollOutcome>, PollError> {
        let key = feed.key().to_string();
        let Some(watermark) = on_store(&self.store, move |s| s.watermark(&key)).await? else {
            return Ok(None);
        };
        let since = audit::step_back(&watermark.changed_at, self.changes.overlap);
        let page_size = feed.account.client.page_size();
        let read = changes::read_changed(feed, strategy, &since, page_size).await?;
        if let Some(broken) = &read.broken {
            self.metrics
                .poll_read(feed.name(), PollMode::Incremental, read.requests, read.read);
            tracing::warn!(resource = feed.name(), strategy = strategy.as_str(), why = %broken,
                "Daftra no longer honours the change strategy; full scans until a later probe passes");
            let why =
                format!("{broken}; full scans until a probe passes after POLL_FULL_SCAN_SECS");
            self.changes.fail(feed, why);
            return Ok(None);
        }
        let Changed {
            records,
            read: n_read,
            requests,
            newest,
            invalid,
            unreadable,
            ..
        } = read;
        self.note_unreadable(feed, &unreadable);
        self.note_invalid(feed, &invalid);
        let keep = invalid.iter().filter_map(|(k, _)| *k).collect();
        let before = self
            .load_many(feed, records.iter().map(|r| r.id).collect())
            .await?;
        let plan = plan::plan(PlanInput {
            scanned: records,
            before: &before,
            keep: &keep,
            gone: Vec::new(),
            describe: true,
            withheld: &feed.resource.withheld,
        });
        drop(before);
        let events = self.events(feed, &plan);
        let outcome = PollOutcome {
            records: n_read,
            pages: requests,
            baseline: false,
            complete: true,
            created: plan.created,
            updated: plan.updated,
            deleted: 0,
            events: events.len(),
            invalid: invalid.len(),
            mode: PollMode::Incremental,
            requests,
            missed: 0,
            strategy: None,
        };
        self.commit(feed, plan, events, true).await?;
        let newest_at = newest.as_ref().map(|n| n.changed_at.as_str());
        self.save_watermark(feed, audit::after_incremental(&watermark, newest_at))
            .await?;
        Ok(Some(outcome))
    }
}
