//! The full scan: every page of a feed read and diffed against the snapshot's hashes, deletes
//! applied only after a complete, consistent scan and a direct 404, then the audit of the
//! incremental polls since the last full scan, the new watermark and the strategy decision.

use futures::StreamExt;

use super::plan::{self, PlanInput};
use super::{audit, on_store, PollError, PollOutcome, Poller, MAX_RESCANS};
use crate::changes::{self, Newest, Strategy};
use crate::diff::Known;
use crate::feed::Feed;
use crate::metrics::PollMode;
use crate::scan::{scan, Keep, Scan, ScanError};
use crate::status::now_rfc3339;
use crate::store::{StoreError, Watermark};

/// Direct `GET` checks of missing records in flight at once.
const DELETE_CHECKS_IN_FLIGHT: usize = 4;

/// What the snapshot knows of a feed before its full scan.
struct Before {
    known: Known,
    /// No baseline yet: this is the feed's first poll.
    first: bool,
    watermark: Option<Watermark>,
}

impl Poller {
    /// A full scan: every page, deletes proven by a complete scan and a direct 404, the audit
    /// of the incremental polls since the last full scan, a new watermark and, when due, a
    /// probe of the strategies.
    pub(super) async fn full_scan(&self, feed: &Feed) -> Result<PollOutcome, PollError> {
        let Before {
            mut known,
            first,
            watermark,
        } = self.before(feed).await?;
        let emit = !first || self.emit_initial;
        let scan = self
            .scan_until_consistent(feed, &mut known, first && !self.emit_initial)
            .await?;
        self.note_unreadable(feed, &scan.unreadable);
        self.note_invalid(feed, &scan.invalid);
        let keep = scan.invalid_keys();
        let missing = known.missing(&keep);
        let checks = missing.len() as u64;
        // Only the changed records are read back in full, for their `before` image.
        let changed: Vec<i64> = scan
            .records
            .iter()
            .map(|s| s.id)
            .filter(|id| known.contains(*id))
            .collect();
        drop(known);
        let before = self.load_many(feed, changed).await?;
        let gone = self.gone(feed, scan.consistent, missing).await;
        let images = self.load_many(feed, gone.clone()).await?;
        let Scan {
            records,
            read,
            pages,
            page_count,
            consistent,
            invalid,
            newest,
            ..
        } = scan;
        let plan = plan::plan(PlanInput {
            scanned: records,
            before: &before,
            keep: &keep,
            gone: gone
                .iter()
                .map(|id| (*id, images.get(id).map(String::as_str)))
                .collect(),
            describe: emit,
            withheld: &feed.resource.withheld,
        });
        drop(before);
        let missed = audit::missed(
            &plan.changes,
            watermark.as_ref(),
            self.changes.overlap,
            |c| changes::changed_at(feed, c.after.as_ref()?),
        );
        let missed_ids: Vec<i64> = missed.iter().map(|c| c.id).collect();
        let events = self.events(feed, &plan);
        // A silent baseline reports no changes: nothing was announced.
        let announced = |n: usize| if emit { n } else { 0 };
        let outcome = PollOutcome {
            records: read,
            pages,
            baseline: first,
            complete: consistent,
            created: announced(plan.created),
            updated: announced(plan.updated),
            deleted: announced(plan.deleted),
            events: events.len(),
            invalid: invalid.len(),
            mode: PollMode::Full,
            requests: pages + checks,
            missed: missed_ids.len(),
            strategy: None,
        };
        self.commit(feed, plan, events, emit).await?;
        if consistent {
            self.metrics.scan_complete(feed.name(), page_count, read);
        }
        self.after_full_scan(feed, outcome, watermark, newest, &missed_ids)
            .await
    }

    /// The records missing from the scan that are gone: none unless the scan is `consistent`,
    /// then those Daftra answers 404 for.
    async fn gone(&self, feed: &Feed, consistent: bool, missing: Vec<i64>) -> Vec<i64> {
        if consistent {
            return self.confirm_deletes(feed, missing).await;
        }
        self.metrics.scan_incomplete(feed.name());
        tracing::warn!(
            resource = feed.name(),
            missing = missing.len(),
            "Scan could not prove completeness; no deletes applied"
        );
        Vec::new()
    }

    /// After a full scan committed: the new watermark, then the strategy from now on.
    async fn after_full_scan(
        &self,
        feed: &Feed,
        outcome: PollOutcome,
        watermark: Option<Watermark>,
        newest: Option<Newest>,
        missed: &[i64],
    ) -> Result<PollOutcome, PollError> {
        let newest_at = newest.as_ref().map(|n| n.changed_at.as_str());
        if let Some(w) = audit::after_full(watermark.as_ref(), newest_at) {
            self.save_watermark(feed, w).await?;
        }
        let (requests, strategy) = self.decide_strategy(feed, newest.as_ref(), missed).await;
        Ok(PollOutcome {
            requests: outcome.requests + requests,
            strategy: Some(strategy),
            ..outcome
        })
    }

    /// After a full scan: the feed's strategy and why, and the requests a probe made. Misses
    /// turn the strategy off until a probe passes at a later full scan; a probe runs at most
    /// once per `POLL_FULL_SCAN_SECS` while no strategy is proven.
    async fn decide_strategy(
        &self,
        feed: &Feed,
        newest: Option<&Newest>,
        missed: &[i64],
    ) -> (u64, (Strategy, String)) {
        let policy = &self.changes;
        let (decided, requests, probed) = if !policy.auto(feed) {
            (
                (Strategy::Full, "POLL_STRATEGY is full".to_string()),
                0,
                false,
            )
        } else if !missed.is_empty() {
            let (strategy, _) = policy.strategy(feed);
            let shown: Vec<String> = missed.iter().take(10).map(i64::to_string).collect();
            tracing::warn!(resource = feed.name(), missed = missed.len(), strategy = strategy.as_str(), ids = %shown.join(","),
                "The full scan found changes the incremental polls missed; published now, full scans until a later probe passes");
            self.metrics.incremental_missed(feed.name(), missed.len());
            let why = format!(
                "the full scan at {} found {} change(s) the {} polls missed (records {}); full scans until a probe passes after POLL_FULL_SCAN_SECS",
                now_rfc3339(),
                missed.len(),
                strategy.as_str(),
                shown.join(", ")
            );
            ((Strategy::Full, why), 0, true)
        } else if policy.probe_due(feed) {
            let (strategy, why, requests) = changes::probe(feed, newest).await;
            ((strategy, why), requests, true)
        } else {
            (policy.strategy(feed), 0, false)
        };
        policy.full_scanned(feed, decided.0, decided.1.clone(), probed);
        (requests, decided)
    }

    /// Stage 1: the snapshot's content hashes, whether it has a baseline, and the watermark.
    async fn before(&self, feed: &Feed) -> Result<Before, StoreError> {
        let key = feed.key().to_string();
        on_store(&self.store, move |s| {
            Ok(Before {
                known: Known::new(s.load_hashes(&key)?),
                first: !s.has_baseline(&key)?,
                watermark: s.watermark(&key)?,
            })
        })
        .await
    }

    /// Stage 2: scans until a scan is consistent, at most [`MAX_RESCANS`] times more. A silent
    /// first poll (`spill`) writes its pages as they come; later polls keep only the records
    /// whose hash changed: memory is a few pages plus an id and a hash per record.
    async fn scan_until_consistent(
        &self,
        feed: &Feed,
        known: &mut Known,
        spill: bool,
    ) -> Result<Scan, ScanError> {
        let mut attempt = 0;
        loop {
            let keep = match spill {
                true => Keep::Baseline(&self.store, known),
                false => Keep::Changed(known),
            };
            let s = scan(feed, keep).await?;
            if s.consistent || attempt >= MAX_RESCANS {
                return Ok(s);
            }
            attempt += 1;
            tracing::info!(
                resource = feed.name(),
                attempt,
                "Scan inconsistent (records moved while paging); rescanning"
            );
        }
    }

    /// Stage 3: asks Daftra for each record missing from a complete scan; those it answers 404
    /// for are gone (in key order). One that still exists, or cannot be checked, is kept.
    async fn confirm_deletes(&self, feed: &Feed, missing: Vec<i64>) -> Vec<i64> {
        let client = &feed.account.client;
        let checks = futures::stream::iter(missing)
            .map(|id| async move { (id, client.get_record(feed.resource, id).await) })
            .buffer_unordered(DELETE_CHECKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let name = feed.name();
        let mut gone = Vec::new();
        for (id, answer) in checks {
            match answer {
                Ok(None) => gone.push(id),
                Ok(Some(_)) => {
                    tracing::info!(
                        resource = name,
                        id,
                        "Record missing from the scan still exists; kept"
                    )
                }
                Err(e) => {
                    tracing::warn!(resource = name, id, error = %e, "Could not confirm a delete; kept")
                }
            }
        }
        gone.sort_unstable();
        gone
    }
}
