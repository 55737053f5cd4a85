//! A scan: every list page of a resource read once and normalised page by page, compared with
//! the snapshot's content hashes as it goes, with the proof of completeness the poller needs
//! before it may apply deletes. A scan holds a few pages, the ids it saw and the records that
//! changed; unchanged records are dropped as soon as their hash matches.

use std::collections::HashSet;
use std::sync::Arc;

use crate::catalogue::Resource;
use crate::daftra::{DaftraClient, FetchError};
use crate::diff::{Known, Scanned};
use crate::record::{self, RecordError};
use crate::store::{Store, StoreError};

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Upstream(#[from] FetchError),
    /// A first poll's page could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every page of one resource, read once.
pub struct Scan {
    /// Normalised records as canonical JSON, in page order: those whose content hash differs
    /// from the snapshot's (new or changed), or all of them when no hashes were given.
    pub records: Vec<Scanned>,
    /// Distinct keys seen, changed or not.
    pub distinct: usize,
    /// Records read, valid or not.
    pub read: usize,
    /// Records that could not be normalised, with their key when it could be read.
    pub invalid: Vec<(Option<i64>, RecordError)>,
    /// Values kept as text because they could not be read as their column's kind, by record key.
    pub unreadable: Vec<(i64, RecordError)>,
    /// Pages read.
    pub pages: u64,
    /// `page_count` reported by the last page.
    pub page_count: u64,
    /// Every page reported the same `total_results`, every record has a readable key, and the
    /// distinct keys equal `total_results`. Only such a scan may prove a record gone.
    pub consistent: bool,
}

impl Scan {
    /// Records read from Daftra, valid or not.
    pub fn len(&self) -> usize {
        self.read
    }

    /// `true` when Daftra sent no record.
    pub fn is_empty(&self) -> bool {
        self.read == 0
    }

    /// Keys of the records that could not be normalised: present in Daftra, so never deleted.
    pub fn invalid_keys(&self) -> HashSet<i64> {
        self.invalid.iter().filter_map(|(k, _)| *k).collect()
    }
}

/// Pages waiting between the fetching task and the normalisation, per page in flight.
const PAGES_BUFFERED_PER_REQUEST: usize = 2;

/// Where a scan puts the records it reads.
pub enum Keep<'a> {
    /// Every record, whatever the snapshot holds (the benchmarks measure a bare scan with it).
    All,
    /// Only records whose content hash differs from the snapshot's; the scan marks in `known`
    /// every id it sees.
    Changed(&'a mut Known),
    /// None: pages go to the snapshot as they arrive, [`BASELINE_BATCH_ROWS`] at a time (a
    /// silent first poll), so memory stays a few pages whatever the resource's size; ids are
    /// marked in `known` (rows a failed earlier first poll left) as for `Changed`.
    Baseline(&'a Store, &'a mut Known),
}

/// Records a silent first poll writes to the snapshot per transaction: each transaction costs
/// a few round trips and a commit, so 5,000 rows (a few MB) rather than one page of 1,000 halve
/// PostgreSQL's first-poll commit time (BENCHMARKS.md).
pub const BASELINE_BATCH_ROWS: usize = 5_000;

/// Reads every page (see [`DaftraClient::pages`]) in a task of its own and normalises each page
/// as it arrives, so requests stay in flight while a page is normalised and only a few pages of
/// raw JSON are held at a time. The first failed page fails the scan.
pub async fn scan(
    client: &Arc<DaftraClient>,
    resource: &'static Resource,
    mut keep: Keep<'_>,
) -> Result<Scan, ScanError> {
    if let Keep::Changed(known) | Keep::Baseline(_, known) = &mut keep {
        known.reset_seen();
    }
    // Keys not in the snapshot, to count distinct keys and skip repeats.
    let mut new_ids = HashSet::new();
    // A silent first poll's pages go to the store on a thread of their own, two pages queued
    // at most, so writing overlaps reading and normalising.
    let writer = match &keep {
        Keep::Baseline(store, _) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, String)>>(2);
            let (store, name) = ((*store).clone(), resource.name.clone());
            let handle = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                let mut batch: Vec<(i64, String)> = Vec::new();
                while let Some(rows) = rx.blocking_recv() {
                    batch.extend(rows);
                    if batch.len() >= BASELINE_BATCH_ROWS {
                        store.write_baseline_page(&name, &batch)?;
                        batch.clear();
                    }
                }
                if !batch.is_empty() {
                    store.write_baseline_page(&name, &batch)?;
                }
                Ok(())
            });
            Some((tx, handle))
        }
        _ => None,
    };
    let buffer = PAGES_BUFFERED_PER_REQUEST * client.concurrency();
    let mut pages = crate::daftra::spawn_pages(client.clone(), resource, buffer);
    let mut scan = Scan {
        records: Vec::new(),
        distinct: 0,
        read: 0,
        invalid: Vec::new(),
        unreadable: Vec::new(),
        pages: 0,
        page_count: 0,
        consistent: false,
    };
    let mut totals = HashSet::new();
    while let Some(page) = pages.recv().await {
        let page = page?;
        scan.pages += 1;
        scan.page_count = page.pagination.page_count;
        totals.insert(page.pagination.total_results);
        scan.read += page.len();
        let mut baseline_rows = Vec::new();
        for raw in page.into_records(resource) {
            let raw = match raw {
                Ok(raw) => raw,
                Err(message) => {
                    let field = resource.model_key.clone();
                    scan.invalid.push((None, RecordError { field, message }));
                    continue;
                }
            };
            let key = record::raw_key(resource, &raw);
            match record::normalise_owned(resource, raw, client.clock()) {
                Ok(n) => {
                    let id = record::key(resource, &n.record);
                    scan.unreadable
                        .extend(n.unreadable.into_iter().map(|e| (id, e)));
                    let s = Scanned::new(id, &n.record);
                    let stored = match &mut keep {
                        Keep::Changed(known) | Keep::Baseline(_, known) if known.was_seen(id) => {
                            continue
                        }
                        Keep::Changed(known) | Keep::Baseline(_, known) => known.see(id),
                        Keep::All => None,
                    };
                    if stored.is_none() && !new_ids.insert(id) {
                        continue;
                    }
                    match &keep {
                        Keep::All => scan.records.push(s),
                        Keep::Changed(_) if stored == Some(s.hash) => {}
                        Keep::Changed(_) => scan.records.push(s),
                        Keep::Baseline(..) => baseline_rows.push((s.id, s.canonical)),
                    }
                }
                Err(e) => scan.invalid.push((key, e)),
            }
        }
        if let (Some(w), false) = (&writer, baseline_rows.is_empty()) {
            // A failed write ends the writer; its error is taken below.
            let _ = w.0.send(baseline_rows).await;
        }
    }
    let unkeyed = scan.invalid.iter().filter(|(k, _)| k.is_none()).count();
    if let Some((tx, handle)) = writer {
        drop(tx);
        handle.await.expect("baseline write task")?;
    }
    let known_seen = match &keep {
        Keep::Changed(known) | Keep::Baseline(_, known) => known.seen_count(),
        Keep::All => 0,
    };
    scan.distinct = known_seen + new_ids.len();
    let seen = |k: &i64| {
        new_ids.contains(k)
            || matches!(&keep, Keep::Changed(known) | Keep::Baseline(_, known) if known.was_seen(*k))
    };
    let distinct = scan.distinct + scan.invalid_keys().iter().filter(|k| !seen(k)).count();
    let total = totals.iter().next().copied().unwrap_or(0);
    scan.consistent = totals.len() == 1 && unkeyed == 0 && distinct as u64 == total;
    Ok(scan)
}
