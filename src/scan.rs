//! A scan: every list page of a resource read once and normalised page by page, with the proof
//! of completeness the poller needs before it may apply deletes.

use std::collections::HashSet;
use std::sync::Arc;

use crate::catalogue::Resource;
use crate::daftra::{DaftraClient, FetchError};
use crate::diff::Scanned;
use crate::record::{self, RecordError};

/// Every page of one resource, read once.
pub struct Scan {
    /// Normalised records as canonical JSON, in page order.
    pub records: Vec<Scanned>,
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
        self.records.len() + self.invalid.len()
    }

    /// `true` when Daftra sent no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of the records that could not be normalised: present in Daftra, so never deleted.
    pub fn invalid_keys(&self) -> HashSet<i64> {
        self.invalid.iter().filter_map(|(k, _)| *k).collect()
    }
}

/// Pages waiting between the fetching task and the normalisation, per page in flight.
const PAGES_BUFFERED_PER_REQUEST: usize = 2;

/// Reads every page (see [`DaftraClient::pages`]) in a task of its own and normalises each page
/// as it arrives, so requests stay in flight while a page is normalised and only a few pages of
/// raw JSON are held at a time. The first failed page fails the scan.
pub async fn scan(
    client: &Arc<DaftraClient>,
    resource: &'static Resource,
) -> Result<Scan, FetchError> {
    let buffer = PAGES_BUFFERED_PER_REQUEST * client.concurrency();
    let mut pages = crate::daftra::spawn_pages(client.clone(), resource, buffer);
    let mut scan = Scan {
        records: Vec::new(),
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
        scan.records.reserve(page.len());
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
                    scan.records.push(Scanned::new(id, &n.record));
                }
                Err(e) => scan.invalid.push((key, e)),
            }
        }
    }
    let mut ids: HashSet<i64> = scan.records.iter().map(|s| s.id).collect();
    let unkeyed = scan.invalid.iter().filter(|(k, _)| k.is_none()).count();
    ids.extend(scan.invalid_keys());
    let total = totals.iter().next().copied().unwrap_or(0);
    scan.consistent = totals.len() == 1 && unkeyed == 0 && ids.len() as u64 == total;
    Ok(scan)
}
