//! The poller: scan every page, diff against the snapshot, and commit the snapshot changes with
//! their outbox events in one transaction. Deletes only follow a complete, consistent scan and a
//! direct 404.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::catalogue::Resource;
use crate::daftra::{DaftraClient, FetchError};
use crate::diff::{diff, Known};
use crate::events::{to_outbox, Change, Op};
use crate::metrics::Metrics;
use crate::scan::{scan, Keep, ScanError};
use crate::status::{now_rfc3339, StatusBoard};

mod schedule;
use crate::store::{SnapshotWrite, Store, StoreError};
pub use schedule::PollTrigger;

/// Scans repeated when a scan is inconsistent, before applying it without deletes.
pub const MAX_RESCANS: u32 = 2;
/// Direct `GET` checks of missing records in flight at once.
const DELETE_CHECKS_IN_FLIGHT: usize = 4;

/// Everything a poll needs; cheap to clone.
#[derive(Clone)]
pub struct Poller {
    pub store: Store,
    pub client: Arc<DaftraClient>,
    pub metrics: Metrics,
    pub status: Arc<StatusBoard>,
    /// Woken after a commit that appended events.
    pub outbox_notify: Arc<crate::sinks::OutboxSignal>,
    pub emit_initial: bool,
    /// Overall deadline of one poll.
    pub deadline: Duration,
    /// Polls holding a scan in memory at once (`POLL_MAX_PARALLEL`); the others wait.
    pub parallel: Arc<Semaphore>,
    /// (resource, record, field) of unreadable values already logged and counted.
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
    /// The account cannot read this resource: 401 or 403 for its path, or 404 (a Daftra
    /// plugin is off). Such a resource is retried rarely and never holds up the others.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PollError::Upstream(FetchError::Status {
                status: 401 | 403 | 404,
                ..
            })
        )
    }

    /// Label `reason` of `bridge_poll_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Upstream(e) => e.poll_reason(),
            PollError::Deadline(_) => "deadline",
            PollError::Store(_) => "store",
        }
    }
}

impl Poller {
    /// Polls `resource` once, within the deadline.
    pub async fn poll_once(&self, resource: &'static Resource) -> Result<PollOutcome, PollError> {
        // Scans of different resources would add their memory peaks: a few at a time.
        let _turn = self.parallel.acquire().await.expect("never closed");
        let started = Instant::now();
        self.status.update(&resource.name, |s| {
            s.last_poll_started = Some(now_rfc3339());
            s.polling = true;
        });
        let result = match tokio::time::timeout(self.deadline, self.poll_inner(resource)).await {
            Ok(r) => r,
            Err(_) => Err(PollError::Deadline(self.deadline)),
        };
        let elapsed = started.elapsed();
        crate::memory::release();
        let n = resource.name.as_str();
        self.metrics
            .poll_duration
            .with_label_values(&[n])
            .observe(elapsed.as_secs_f64());
        // A COUNT over the snapshot: off the async executor like every other store access.
        let store = self.store.clone();
        let records = tokio::task::spawn_blocking(move || store.snapshot_len(n))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        self.status.update(n, |s| {
            s.polling = false;
            s.last_poll_ended = Some(now_rfc3339());
            s.last_duration_seconds = Some(elapsed.as_secs_f64());
            s.records = records;
            match &result {
                Ok(o) => {
                    s.last_outcome = Some(
                        if o.baseline {
                            "baseline"
                        } else if o.complete {
                            "success"
                        } else {
                            "incomplete"
                        }
                        .into(),
                    );
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
                }
                Err(e) => {
                    s.last_outcome = Some("failed".into());
                    s.last_error = Some(e.to_string());
                }
            }
            s.available = !matches!(&result, Err(e) if e.is_unavailable());
        });
        if let Some(saved) = self
            .status
            .get(n)
            .and_then(|s| serde_json::to_string(&s).ok())
        {
            let (store, name) = (self.store.clone(), n.to_string());
            let kept =
                tokio::task::spawn_blocking(move || store.save_poll_status(&name, &saved)).await;
            if let Ok(Err(e)) = kept {
                tracing::warn!(resource = n, error = %e, "Could not keep the poll status");
            }
        }
        let available = !matches!(&result, Err(e) if e.is_unavailable());
        self.metrics
            .resource_available
            .with_label_values(&[n])
            .set(i64::from(available));
        match &result {
            Ok(o) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                self.metrics
                    .poll_last_success
                    .with_label_values(&[n])
                    .set(now.as_secs_f64());
                tracing::info!(
                    resource = n,
                    records = o.records,
                    pages = o.pages,
                    created = o.created,
                    updated = o.updated,
                    deleted = o.deleted,
                    invalid = o.invalid,
                    complete = o.complete,
                    baseline = o.baseline,
                    duration_ms = elapsed.as_millis() as u64,
                    "Poll finished"
                );
            }
            Err(e) => {
                self.metrics
                    .poll_failures
                    .with_label_values(&[n, e.reason()])
                    .inc();
                tracing::warn!(resource = n, reason = e.reason(), error = %e, duration_ms = elapsed.as_millis() as u64, "Poll failed; nothing changed");
            }
        }
        result
    }

    async fn poll_inner(&self, resource: &'static Resource) -> Result<PollOutcome, PollError> {
        let n = resource.name.as_str();
        let store = self.store.clone();
        let (mut known, has_baseline) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((Known::new(store.load_hashes(n)?), store.has_baseline(n)?))
        })
        .await
        .expect("snapshot load task")?;
        let baseline = !has_baseline;
        let emit = !baseline || self.emit_initial;
        // A silent first poll writes its pages as they come; later polls keep only the
        // records whose hash changed: memory is a few pages plus an id and a hash per record.
        let spill = baseline && !self.emit_initial;
        let mut attempt = 0;
        let scan = loop {
            let keep_mode = if spill {
                Keep::Baseline(&self.store, &mut known)
            } else {
                Keep::Changed(&mut known)
            };
            let s = scan(&self.client, resource, keep_mode).await?;
            if s.consistent || attempt >= MAX_RESCANS {
                break s;
            }
            attempt += 1;
            tracing::info!(
                resource = n,
                attempt,
                "Scan inconsistent (records moved while paging); rescanning"
            );
        };
        for (key, e) in &scan.invalid {
            self.metrics
                .api_invalid_records
                .with_label_values(&[n])
                .inc();
            match key {
                Some(id) => {
                    tracing::warn!(resource = n, id, error = %e, "Record could not be read; keeping its previous snapshot")
                }
                None => {
                    tracing::warn!(resource = n, error = %e, "Record without a readable key; no deletes this poll")
                }
            }
        }
        self.note_unreadable(n, &scan.unreadable);
        let complete = scan.consistent;
        let records = scan.len();
        let keep = scan.invalid_keys();
        let invalid = scan.invalid.len();
        let missing = known.missing(&keep);
        // Only the changed records are read back in full, for their `before` image.
        let changed: Vec<i64> = scan
            .records
            .iter()
            .map(|s| s.id)
            .filter(|id| known.contains(*id))
            .collect();
        drop(known);
        let snapshot = self.load_many(n, changed).await?;
        let mut d = diff(&snapshot, scan.records, &keep, emit);
        drop(snapshot);
        let mut deleted = 0;
        if complete {
            let mut gone = Vec::new();
            let checks = futures::stream::iter(missing.clone())
                .map(|id| async move { (id, self.client.get_record(resource, id).await) })
                .buffer_unordered(DELETE_CHECKS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            for (id, answer) in checks {
                match answer {
                    Ok(None) => gone.push(id),
                    Ok(Some(_)) => tracing::info!(
                        resource = n,
                        id,
                        "Record missing from the scan still exists; kept"
                    ),
                    Err(e) => {
                        tracing::warn!(resource = n, id, error = %e, "Could not confirm a delete; kept")
                    }
                }
            }
            gone.sort_unstable();
            let images = self.load_many(n, gone.clone()).await?;
            for id in gone {
                deleted += 1;
                d.writes.push(SnapshotWrite::Delete { id });
                let before = images.get(&id).and_then(|t| serde_json::from_str(t).ok());
                d.changes.push(Change {
                    op: Op::Deleted,
                    id,
                    changed: vec![],
                    before,
                    after: None,
                });
            }
        } else {
            self.metrics
                .poll_incomplete_scans
                .with_label_values(&[n])
                .inc();
            tracing::warn!(
                resource = n,
                missing = missing.len(),
                "Scan could not prove completeness; no deletes applied"
            );
        }
        let time = now_rfc3339();
        let events: Vec<_> = if emit {
            d.changes
                .iter()
                .map(|c| {
                    to_outbox(
                        resource,
                        self.client.base_url(),
                        &time,
                        c,
                        self.client.clock(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        // A silent baseline reports no changes: nothing was announced.
        let announced = |n: usize| if emit { n } else { 0 };
        let outcome = PollOutcome {
            records,
            pages: scan.pages,
            baseline,
            complete,
            created: announced(d.created),
            updated: announced(d.updated),
            deleted: announced(deleted),
            events: events.len(),
            invalid,
        };
        let store = self.store.clone();
        let writes = std::mem::take(&mut d.writes);
        let n_events = events.len();
        tokio::task::spawn_blocking(move || store.commit_poll(n, &writes, &events))
            .await
            .expect("commit task")?;
        if complete {
            self.metrics
                .api_scan_pages
                .with_label_values(&[n])
                .set(scan.page_count as i64);
            self.metrics
                .api_scan_records
                .with_label_values(&[n])
                .set(records as i64);
        }
        if emit {
            for c in &d.changes {
                self.metrics
                    .changes_detected
                    .with_label_values(&[n, c.op.as_str()])
                    .inc();
            }
        }
        if n_events > 0 {
            self.metrics.outbox_pending.add(n_events as i64);
            self.outbox_notify.notify();
        }
        Ok(outcome)
    }

    /// The snapshot's canonical text of `ids`, off the async executor.
    async fn load_many(
        &self,
        resource: &str,
        ids: Vec<i64>,
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let (store, name) = (self.store.clone(), resource.to_string());
        tokio::task::spawn_blocking(move || store.load_many(&name, &ids))
            .await
            .expect("snapshot read task")
    }

    /// Logs and counts each unreadable value once per record and field, not on every poll.
    fn note_unreadable(&self, resource: &str, unreadable: &[(i64, crate::record::RecordError)]) {
        if unreadable.is_empty() {
            return;
        }
        let mut seen = self
            .unreadable_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (id, e) in unreadable {
            if seen.insert((resource.to_string(), *id, e.field.clone())) {
                self.metrics
                    .api_unreadable_values
                    .with_label_values(&[resource])
                    .inc();
                tracing::warn!(resource, id, field = %e.field, error = %e, "Value kept as text: it is not of the documented type");
            }
        }
    }
}
