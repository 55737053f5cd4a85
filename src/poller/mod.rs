//! The poller. A poll of a feed is either a full scan ([`full`]: what the snapshot knows ->
//! scan until consistent -> confirm deletes -> plan -> commit -> audit, watermark, probe) or an
//! incremental poll ([`incremental`]: the watermark -> the records changed since it, by the
//! feed's proven strategy -> plan -> commit -> watermark); [`cursor`] says which. The plan is
//! pure ([`plan`]); a commit writes the snapshot changes with their outbox events in one
//! transaction. Deletes only follow a complete, consistent full scan and a direct 404.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::changes::Strategy;
use crate::daftra::FetchError;
use crate::events::{to_outbox_within, Op, Origin, OutboxEvent};
use crate::feed::Feed;
use crate::metrics::{Metrics, PollFailure, PollMode};
use crate::record::RecordError;
use crate::scan::ScanError;
use crate::sinks::OutboxSignal;
use crate::status::{now_rfc3339, StatusBoard};
use crate::store::{Store, StoreError, Watermark};

pub mod audit;
pub mod cursor;
mod full;
mod incremental;
pub mod plan;
mod report;
mod schedule;

pub use cursor::{ChangePolicy, Mode};
use plan::Plan;
pub use schedule::PollTrigger;

/// Scans repeated when a scan is inconsistent, before applying it without deletes.
pub const MAX_RESCANS: u32 = 2;

/// Everything a poll needs besides its feed; cheap to clone.
#[derive(Clone)]
pub struct Poller {
    pub store: Store,
    pub metrics: Metrics,
    pub status: Arc<StatusBoard>,
    /// Told of every commit that appended events.
    pub outbox: Arc<OutboxSignal>,
    /// On the very first poll of a feed, announce every record (`POLL_EMIT_INITIAL`).
    pub emit_initial: bool,
    /// Overall deadline of one poll.
    pub deadline: Duration,
    /// Largest event before its line-item lists are cut (`EVENT_MAX_BYTES`), in bytes.
    pub event_max_bytes: usize,
    /// Polls holding a scan in memory at once (`POLL_MAX_PARALLEL`); the others wait.
    pub parallel: Arc<Semaphore>,
    /// (feed key, record, field) of unreadable values already logged and counted.
    pub unreadable_seen: Arc<Mutex<HashSet<(String, i64, String)>>>,
    /// How polls find what changed, and where each feed stands.
    pub changes: Arc<ChangePolicy>,
    /// The bridge's public address (`PUBLIC_URL`), for events' `dataschema`.
    pub schema_base: Option<Arc<str>>,
}

/// What one successful poll did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollOutcome {
    /// Records read from Daftra.
    pub records: usize,
    pub pages: u64,
    /// The first poll: the baseline was recorded.
    pub baseline: bool,
    /// The scan proved completeness; `false` means no deletes were applied.
    pub complete: bool,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Events appended to the outbox.
    pub events: usize,
    /// Records that could not be normalised and kept their previous snapshot.
    pub invalid: usize,
    /// How Daftra was read: every page, or only what changed.
    pub mode: PollMode,
    /// Daftra requests made (pages, delete checks, single reads, probes).
    pub requests: u64,
    /// Changes this full scan found that the incremental polls before it missed.
    pub missed: usize,
    /// After a full scan: the feed's strategy from now on, and why.
    pub strategy: Option<(Strategy, String)>,
}

/// Why a poll failed; it changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Upstream(#[from] FetchError),
    #[error("poll deadline of {0:?} passed")]
    Deadline(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ScanError> for PollError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Upstream(e) => PollError::Upstream(e),
            ScanError::Store(e) => PollError::Store(e),
        }
    }
}

impl PollError {
    /// The account cannot read this resource: 401 or 403 for its path (while Site Info
    /// answers, so the credentials themselves pass), or 404 (a Daftra plugin is off). Such a
    /// resource is retried rarely and never holds up the others.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PollError::Upstream(FetchError::Status {
                status: 401 | 403 | 404,
                ..
            })
        )
    }

    /// Daftra refused the credentials (a 401, or the OAuth token endpoint refusing them):
    /// account-level when the account's credentials gate says so
    /// ([`crate::daftra::credentials::Credentials::refusal`]); polls then wait for them.
    pub fn is_unauthorized(&self) -> bool {
        match self {
            PollError::Upstream(FetchError::Status { status: 401, .. }) => true,
            PollError::Upstream(FetchError::Auth(e)) => e.refused,
            _ => false,
        }
    }

    /// Label `reason` of `bridge_poll_failures_total`.
    pub fn reason(&self) -> PollFailure {
        match self {
            PollError::Upstream(FetchError::Malformed(_)) => PollFailure::Malformed,
            PollError::Upstream(_) => PollFailure::Upstream,
            PollError::Deadline(_) => PollFailure::Deadline,
            PollError::Store(_) => PollFailure::Store,
        }
    }
}

/// Runs `f` on the store off the async executor.
async fn on_store<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .expect("store task")
}

impl Poller {
    /// Polls `feed` once as its policy says (see [`ChangePolicy::next`]), within the deadline,
    /// and reports how it went.
    pub async fn poll_once(&self, feed: &Feed) -> Result<PollOutcome, PollError> {
        self.poll(feed, false).await
    }

    /// Polls `feed` once, a full scan when `ask_full`, within the deadline, and reports how it
    /// went.
    pub async fn poll(&self, feed: &Feed, ask_full: bool) -> Result<PollOutcome, PollError> {
        // Scans of different feeds would add their memory peaks: a few at a time.
        let _turn = self.parallel.acquire().await.expect("never closed");
        let started = Instant::now();
        report::started(&self.status, feed);
        let result = match tokio::time::timeout(self.deadline, self.stages(feed, ask_full)).await {
            Ok(r) => r,
            Err(_) => Err(PollError::Deadline(self.deadline)),
        };
        let took = started.elapsed();
        crate::memory::release();
        let records = self.records_after(feed, &result).await;
        let finished = report::PollFinished {
            feed,
            result: &result,
            took,
            records,
        };
        finished
            .report(&self.status, &self.store, &self.metrics)
            .await;
        result
    }

    /// One poll: incremental when the feed's strategy allows it, else (or when the
    /// incremental read found Daftra no longer honours the strategy) a full scan.
    async fn stages(&self, feed: &Feed, ask_full: bool) -> Result<PollOutcome, PollError> {
        let mode = self.changes.next(feed, ask_full);
        if let Mode::Incremental(strategy) = mode {
            if let Some(outcome) = self.incremental(feed, strategy).await? {
                return Ok(outcome);
            }
        }
        if let Mode::Full(why) = mode {
            tracing::debug!(resource = feed.name(), why, "Full scan");
        }
        self.full_scan(feed).await
    }

    /// The outbox events of the plan's changes, detected now.
    fn events(&self, feed: &Feed, plan: &Plan) -> Vec<OutboxEvent> {
        let time = now_rfc3339();
        let account = &feed.account;
        plan.changes
            .iter()
            .map(|c| {
                let origin = Origin {
                    source: &account.base_url,
                    schemas: self.schema_base.as_deref(),
                };
                let clock = &account.clock;
                to_outbox_within(
                    feed.resource,
                    &origin,
                    &time,
                    c,
                    clock,
                    self.event_max_bytes,
                )
            })
            .collect()
    }

    /// Stage 5: the plan's writes and its events in one transaction, then the sinks are told.
    async fn commit(
        &self,
        feed: &Feed,
        plan: Plan,
        events: Vec<OutboxEvent>,
        emit: bool,
    ) -> Result<(), StoreError> {
        let counts = Op::ALL.map(|op| (op, plan.count(op)));
        let (key, writes, n_events) = (feed.key().to_string(), plan.writes, events.len());
        on_store(&self.store, move |s| s.commit_poll(&key, &writes, &events)).await?;
        if emit {
            for (op, n) in counts {
                self.metrics.changes_detected(feed.name(), op, n);
            }
        }
        self.outbox.appended(n_events);
        Ok(())
    }

    /// Records in the feed's snapshot after a poll: counted after a full scan; after an
    /// incremental poll, the count before plus what it created (counting a million rows would
    /// cost more than the poll).
    async fn records_after(&self, feed: &Feed, result: &Result<PollOutcome, PollError>) -> u64 {
        let before = self.status.get(feed.key()).map(|s| s.records);
        match (result, before) {
            (Ok(o), Some(n)) if o.mode == PollMode::Incremental => n + o.created as u64,
            _ => {
                let key = feed.key().to_string();
                on_store(&self.store, move |s| s.snapshot_len(&key))
                    .await
                    .unwrap_or_default()
            }
        }
    }

    /// Keeps the feed's watermark (after the poll that reached it committed).
    async fn save_watermark(&self, feed: &Feed, w: Watermark) -> Result<(), StoreError> {
        let key = feed.key().to_string();
        on_store(&self.store, move |s| s.save_watermark(&key, &w)).await
    }

    /// The snapshot's canonical text of `ids`, off the async executor.
    async fn load_many(
        &self,
        feed: &Feed,
        ids: Vec<i64>,
    ) -> Result<HashMap<i64, String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let key = feed.key().to_string();
        on_store(&self.store, move |s| s.load_many(&key, &ids)).await
    }

    /// Logs and counts the records that could not be read (they keep their snapshot).
    fn note_invalid(&self, feed: &Feed, invalid: &[(Option<i64>, RecordError)]) {
        let resource = feed.name();
        for (key, e) in invalid {
            self.metrics.invalid_record(resource);
            match key {
                Some(id) => {
                    tracing::warn!(resource, id, error = %e, "Record could not be read; keeping its previous snapshot")
                }
                None => {
                    tracing::warn!(resource, error = %e, "Record without a readable key; no deletes this poll")
                }
            }
        }
    }

    /// Logs and counts each unreadable value once per record and field, not on every poll.
    fn note_unreadable(&self, feed: &Feed, unreadable: &[(i64, RecordError)]) {
        if unreadable.is_empty() {
            return;
        }
        let resource = feed.name();
        let mut seen = self
            .unreadable_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (id, e) in unreadable {
            if seen.insert((feed.key().to_string(), *id, e.field.clone())) {
                self.metrics.unreadable_value(resource);
                tracing::warn!(resource, id, field = %e.field, error = %e, "Value kept as text: it is not of the documented type");
            }
        }
    }
}
