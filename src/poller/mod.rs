//! The poller. A poll of a feed is a sequence of stages: what the snapshot knows -> scan until
//! consistent -> confirm deletes -> a pure plan of writes and events ([`plan`]) -> commit (the
//! snapshot changes with their outbox events in one transaction) -> report. Deletes only follow
//! a complete, consistent scan and a direct 404. A strategy that reads only changed records
//! slots in as another scan stage.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::daftra::FetchError;
use crate::diff::Known;
use crate::events::{to_outbox_within, Op, OutboxEvent};
use crate::feed::Feed;
use crate::metrics::{Metrics, PollFailure};
use crate::record::RecordError;
use crate::scan::{scan, Keep, Scan, ScanError};
use crate::sinks::OutboxSignal;
use crate::status::{now_rfc3339, StatusBoard};
use crate::store::{Store, StoreError};

pub mod changes;
pub mod plan;
mod report;
mod schedule;

use plan::{Plan, PlanInput};
pub use schedule::PollTrigger;

/// Scans repeated when a scan is inconsistent, before applying it without deletes.
pub const MAX_RESCANS: u32 = 2;
/// Direct `GET` checks of missing records in flight at once.
const DELETE_CHECKS_IN_FLIGHT: usize = 4;

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
}

/// What one successful poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// The account cannot read this resource: 403 for its path, or 404 (a Daftra plugin is
    /// off). Such a resource is retried rarely and never holds up the others.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PollError::Upstream(FetchError::Status {
                status: 403 | 404,
                ..
            })
        )
    }

    /// Daftra refuses the account's credentials (401, or the OAuth token endpoint refusing
    /// them): an account-level fact, not this resource's; polls wait for the credentials.
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

/// What the snapshot knows of a feed before its poll.
struct Before {
    known: Known,
    /// No baseline yet: this is the feed's first poll.
    first: bool,
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
    /// Polls `feed` once, within the deadline, and reports how it went.
    pub async fn poll_once(&self, feed: &Feed) -> Result<PollOutcome, PollError> {
        // Scans of different feeds would add their memory peaks: a few at a time.
        let _turn = self.parallel.acquire().await.expect("never closed");
        let started = Instant::now();
        report::started(&self.status, feed);
        let result = match tokio::time::timeout(self.deadline, self.stages(feed)).await {
            Ok(r) => r,
            Err(_) => Err(PollError::Deadline(self.deadline)),
        };
        let took = started.elapsed();
        crate::memory::release();
        let key = feed.key().to_string();
        let records = on_store(&self.store, move |s| s.snapshot_len(&key))
            .await
            .unwrap_or_default();
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

    /// The stages of one poll.
    async fn stages(&self, feed: &Feed) -> Result<PollOutcome, PollError> {
        let Before { mut known, first } = self.before(feed).await?;
        let emit = !first || self.emit_initial;
        let scan = self
            .scan_until_consistent(feed, &mut known, first && !self.emit_initial)
            .await?;
        self.note_unreadable(feed, &scan.unreadable);
        self.note_invalid(feed, &scan.invalid);
        let keep = scan.invalid_keys();
        let missing = known.missing(&keep);
        // Only the changed records are read back in full, for their `before` image.
        let changed: Vec<i64> = scan
            .records
            .iter()
            .map(|s| s.id)
            .filter(|id| known.contains(*id))
            .collect();
        drop(known);
        let before = self.load_many(feed, changed).await?;
        let gone = match scan.consistent {
            true => self.confirm_deletes(feed, missing).await,
            false => {
                self.metrics.scan_incomplete(feed.name());
                tracing::warn!(
                    resource = feed.name(),
                    missing = missing.len(),
                    "Scan could not prove completeness; no deletes applied"
                );
                Vec::new()
            }
        };
        let images = self.load_many(feed, gone.clone()).await?;
        let Scan {
            records,
            read,
            pages,
            page_count,
            consistent,
            invalid,
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
        });
        drop(before);
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
        };
        self.commit(feed, plan, events, emit).await?;
        if consistent {
            self.metrics.scan_complete(feed.name(), page_count, read);
        }
        Ok(outcome)
    }

    /// Stage 1: the snapshot's content hashes and whether it has a baseline.
    async fn before(&self, feed: &Feed) -> Result<Before, StoreError> {
        let key = feed.key().to_string();
        on_store(&self.store, move |s| {
            Ok(Before {
                known: Known::new(s.load_hashes(&key)?),
                first: !s.has_baseline(&key)?,
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

    /// The outbox events of the plan's changes, detected now.
    fn events(&self, feed: &Feed, plan: &Plan) -> Vec<OutboxEvent> {
        let time = now_rfc3339();
        let account = &feed.account;
        plan.changes
            .iter()
            .map(|c| {
                let (base, clock) = (&account.base_url, &account.clock);
                to_outbox_within(feed.resource, base, &time, c, clock, self.event_max_bytes)
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
