//! A scan: every list page of a feed read once and normalised page by page, compared with the
//! snapshot's content hashes as it goes, with the proof of completeness the poller needs before
//! it may apply deletes. A scan holds a few pages, the ids it saw and the records that changed;
//! unchanged records are dropped as soon as their hash matches.

use std::collections::HashSet;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::changes::{self, Newest};
use crate::daftra::{FetchError, Page};
use crate::diff::{Known, Scanned};
use crate::feed::Feed;
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

/// Every page of one feed, read once.
#[derive(Default)]
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
    /// The newest change time among the records read (none in the future), with its key: where
    /// polls that read only what changed start from.
    pub newest: Option<Newest>,
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

impl Keep<'_> {
    fn known(&mut self) -> Option<&mut Known> {
        match self {
            Keep::Changed(known) | Keep::Baseline(_, known) => Some(known),
            Keep::All => None,
        }
    }

    fn was_seen(&self, id: i64) -> bool {
        matches!(self, Keep::Changed(known) | Keep::Baseline(_, known) if known.was_seen(id))
    }
}

/// Records a silent first poll writes to the snapshot per transaction: each transaction costs
/// a few round trips and a commit, so 5,000 rows (a few MB) rather than one page of 1,000 halve
/// PostgreSQL's first-poll commit time (BENCHMARKS.md).
pub const BASELINE_BATCH_ROWS: usize = 5_000;

/// A silent first poll's pages, written to the store on a thread of their own with two pages
/// queued at most, so writing overlaps reading and normalising.
struct BaselineWriter {
    pages: mpsc::Sender<Vec<(i64, String)>>,
    task: JoinHandle<Result<(), StoreError>>,
}

impl BaselineWriter {
    fn start(store: Store, key: String) -> BaselineWriter {
        let (pages, mut rx) = mpsc::channel::<Vec<(i64, String)>>(2);
        let task = tokio::task::spawn_blocking(move || {
            let mut batch: Vec<(i64, String)> = Vec::new();
            while let Some(rows) = rx.blocking_recv() {
                batch.extend(rows);
                if batch.len() >= BASELINE_BATCH_ROWS {
                    store.write_baseline_page(&key, &batch)?;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                store.write_baseline_page(&key, &batch)?;
            }
            Ok(())
        });
        BaselineWriter { pages, task }
    }

    async fn write(&self, rows: Vec<(i64, String)>) {
        if !rows.is_empty() {
            // A failed write ends the writer; its error is taken by `finish`.
            let _ = self.pages.send(rows).await;
        }
    }

    async fn finish(self) -> Result<(), StoreError> {
        drop(self.pages);
        self.task.await.expect("baseline write task")
    }
}

/// A scan in progress: what it has read so far.
struct Scanning<'f> {
    feed: &'f Feed,
    scan: Scan,
    /// Keys not in the snapshot, to count distinct keys and skip repeats.
    new_ids: HashSet<i64>,
    /// Every `total_results` the pages reported.
    totals: HashSet<u64>,
    /// Change times past it are in the future ([`changes::horizon`]).
    horizon: String,
}

impl Scanning<'_> {
    /// Normalises one page; returns the rows a silent first poll writes.
    fn take_page(&mut self, page: Page, keep: &mut Keep<'_>) -> Vec<(i64, String)> {
        let resource = self.feed.resource;
        self.scan.pages += 1;
        self.scan.page_count = page.pagination.page_count;
        self.totals.insert(page.pagination.total_results);
        self.scan.read += page.len();
        let mut baseline_rows = Vec::new();
        let clock = self.feed.account.clock;
        let mut canonical = Vec::new();
        for decoded in page.decode(resource, &clock) {
            let mut n = match decoded {
                Ok(n) => n,
                Err(invalid) => {
                    self.scan.invalid.push((invalid.key, invalid.error));
                    continue;
                }
            };
            let id = n.key();
            let at = changes::decoded_changed_at(self.feed, &n);
            Newest::see(&mut self.scan.newest, at, id, &self.horizon);
            let unreadable = n.take_unreadable().into_iter().map(|e| (id, e));
            self.scan.unreadable.extend(unreadable);
            // Into one buffer for the page: an unchanged record's text is hashed, never kept.
            n.canonical_into(&mut canonical);
            let hash = record::content_hash_bytes(&canonical);
            self.keep_record((id, hash, &canonical), keep, &mut baseline_rows);
        }
        baseline_rows
    }

    /// Keeps one normalised record (key, content hash, canonical text) as `keep` says,
    /// skipping repeats of a key already seen; its text is copied only when it is kept.
    fn keep_record(
        &mut self,
        (id, hash, canonical): (i64, i64, &[u8]),
        keep: &mut Keep<'_>,
        baseline: &mut Vec<(i64, String)>,
    ) {
        if keep.was_seen(id) {
            return;
        }
        let stored = keep.known().and_then(|known| known.see(id));
        if stored.is_none() && !self.new_ids.insert(id) {
            return;
        }
        if matches!(keep, Keep::Changed(_)) && stored == Some(hash) {
            return;
        }
        let text = String::from_utf8(canonical.to_vec()).expect("canonical text is UTF-8");
        match keep {
            Keep::Baseline(..) => baseline.push((id, text)),
            _ => self.scan.records.push(Scanned {
                id,
                hash,
                canonical: text,
            }),
        }
    }

    /// The scan with its distinct keys counted and its completeness decided.
    fn finish(mut self, keep: &mut Keep<'_>) -> Scan {
        let unkeyed = self
            .scan
            .invalid
            .iter()
            .filter(|(k, _)| k.is_none())
            .count();
        let known_seen = keep.known().map_or(0, |k| k.seen_count());
        self.scan.distinct = known_seen + self.new_ids.len();
        let invalid_unseen = self
            .scan
            .invalid_keys()
            .into_iter()
            .filter(|k| !self.new_ids.contains(k) && !keep.was_seen(*k))
            .count();
        let distinct = self.scan.distinct + invalid_unseen;
        let total = self.totals.iter().next().copied().unwrap_or(0);
        self.scan.consistent = self.totals.len() == 1 && unkeyed == 0 && distinct as u64 == total;
        self.scan
    }
}

/// Reads every page of `feed` (see [`crate::daftra::DaftraClient::pages`]) in a task of its own
/// and normalises each page as it arrives, so requests stay in flight while a page is
/// normalised and only a few pages of raw JSON are held at a time. The first failed page fails
/// the scan.
pub async fn scan(feed: &Feed, mut keep: Keep<'_>) -> Result<Scan, ScanError> {
    if let Some(known) = keep.known() {
        known.reset_seen();
    }
    let writer = match &keep {
        Keep::Baseline(store, _) => Some(BaselineWriter::start(
            (*store).clone(),
            feed.key().to_string(),
        )),
        _ => None,
    };
    let client = &feed.account.client;
    let buffer = PAGES_BUFFERED_PER_REQUEST * client.concurrency();
    let mut pages = crate::daftra::spawn_pages(client.clone(), feed.resource, buffer);
    let mut scanning = Scanning {
        feed,
        scan: Scan::default(),
        new_ids: HashSet::new(),
        totals: HashSet::new(),
        horizon: changes::horizon(feed),
    };
    while let Some(page) = pages.recv().await {
        let rows = scanning.take_page(page?, &mut keep);
        if let Some(w) = &writer {
            w.write(rows).await;
        }
    }
    if let Some(w) = writer {
        w.finish().await?;
    }
    Ok(scanning.finish(&mut keep))
}
