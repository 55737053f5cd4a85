//! A scan: every list page of a resource read once, with the proof of completeness the poller
//! needs before it may apply deletes.

use std::collections::HashSet;

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::daftra::{DaftraClient, FetchError};
use crate::record;
use crate::resource::Resource;

/// Every page of one resource, read once.
pub struct Scan {
    /// Raw records under the model key, in page order.
    pub raw: Vec<Map<String, Value>>,
    /// Pages read.
    pub pages: u64,
    /// `page_count` reported by the last page.
    pub page_count: u64,
    /// Every page reported the same `total_results`, every record has a readable key, and the
    /// distinct keys equal `total_results`. Only such a scan may prove a record gone.
    pub consistent: bool,
}

/// Reads every page (see [`DaftraClient::pages`]); the first failed page fails the scan.
pub async fn scan(client: &DaftraClient, resource: &'static Resource) -> Result<Scan, FetchError> {
    let mut pages = client.pages(resource);
    let (mut raw, mut count, mut page_count) = (Vec::new(), 0u64, 0u64);
    let mut totals = HashSet::new();
    while let Some(page) = pages.next().await {
        let page = page?;
        count += 1;
        page_count = page.pagination.page_count;
        totals.insert(page.pagination.total_results);
        raw.extend(page.records);
    }
    let ids: HashSet<Option<i64>> = raw.iter().map(|r| record::raw_key(resource, r)).collect();
    let total = totals.iter().next().copied().unwrap_or(0);
    let consistent = totals.len() == 1 && !ids.contains(&None) && ids.len() as u64 == total;
    Ok(Scan {
        raw,
        pages: count,
        page_count,
        consistent,
    })
}
