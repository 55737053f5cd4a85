//! Polls that read only what changed. A feed's strategy says where Daftra can name the records
//! changed since a time: its v1 list sorted by the change time, newest first, read until the
//! records are older ([`Strategy::SortedList`]); or its v2 list filtered by the change time,
//! read as an index of changed keys whose content comes from the v1 single GET, so a record
//! read this way is the very record a full scan stores ([`Strategy::FilteredIndex`]); or
//! neither ([`Strategy::Full`]). A strategy is used only once a probe showed Daftra honours it
//! ([`probe`]): the order really kept, the filter really applied, and the newest change the
//! bridge knows really among the answer.

use serde::{Deserialize, Serialize};

use crate::daftra::{FetchError, Page};
use crate::diff::Scanned;
use crate::feed::Feed;
use crate::record::{self, Decoded, Invalid, Record, RecordError};

/// How a feed finds what changed since its last poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The v1 list sorted by the change time, newest first (`sort`/`direction`).
    SortedList,
    /// The v2 list filtered by the change time (`filter[modified][gte]`), as an index of keys.
    FilteredIndex,
    /// Full scans only.
    #[default]
    Full,
}

impl Strategy {
    /// `sorted_list`, `filtered_index` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SortedList => "sorted_list",
            Strategy::FilteredIndex => "filtered_index",
            Strategy::Full => "full",
        }
    }
}

/// Rows of a probe's page: enough to see an order, cheap to read.
const PROBE_ROWS: u32 = 20;

/// The newest change of a feed a scan saw (its change time, in the account's wall clock, and
/// the record's key); change times in the future are left out (a zone mix-up or imported data
/// must not poison the watermark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Newest {
    pub changed_at: String,
    pub id: i64,
}

/// The account's wall clock now, plus a minute for clocks that differ: a change time past it
/// is in the future.
pub fn horizon(feed: &Feed) -> String {
    let now = chrono::Utc::now() + chrono::TimeDelta::seconds(60);
    now.with_timezone(&feed.account.clock.zone)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The change time of a normalised record of `feed`, when it has a readable one.
pub fn changed_at(feed: &Feed, record: &Record) -> Option<String> {
    change_time(
        feed.resource
            .changed_at
            .as_deref()
            .and_then(|c| record.get(c)),
    )
}

/// As [`changed_at`], of a record as decoded from a page.
pub fn decoded_changed_at(feed: &Feed, record: &Decoded<'_>) -> Option<String> {
    let at = record.get_str(feed.resource.changed_at.as_deref()?)?;
    change_time(Some(&serde_json::Value::String(at)))
}

/// A canonical timestamp's `YYYY-MM-DD HH:MM:SS`.
fn change_time(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if s.len() >= 19 && s.as_bytes()[4] == b'-' => {
            Some(s[..19].to_string())
        }
        _ => None,
    }
}

impl Newest {
    /// Keeps `(at, id)` when it is newer than what is kept and not past `horizon`.
    pub fn see(newest: &mut Option<Newest>, at: Option<String>, id: i64, horizon: &str) {
        let Some(at) = at.filter(|t| t.as_str() <= horizon) else {
            return;
        };
        if newest.as_ref().is_none_or(|n| at > n.changed_at) {
            *newest = Some(Newest { changed_at: at, id });
        }
    }
}

/// Rows of the first page of an incremental read: a handful of changes fit, and a page of
/// this size is cheap to read and normalise. When every row of it changed, the read goes on
/// with full pages (from page 1 again, so its first request is repeated once).
pub const FIRST_PAGE_ROWS: u32 = 100;

/// What an incremental read found.
#[derive(Default)]
pub struct Changed {
    /// The records changed at or after the threshold, normalised, each key once.
    pub records: Vec<Scanned>,
    /// Records read.
    pub read: usize,
    /// Requests made.
    pub requests: u64,
    /// The newest change among them.
    pub newest: Option<Newest>,
    /// Records that could not be normalised, with their key when it could be read.
    pub invalid: Vec<(Option<i64>, RecordError)>,
    /// Values kept as text, by record key.
    pub unreadable: Vec<(i64, RecordError)>,
    /// Set when Daftra stopped honouring the strategy during the read (an order not kept, a
    /// filter not applied): nothing read may be trusted to be complete.
    pub broken: Option<String>,
    keys: std::collections::HashSet<i64>,
}

impl Changed {
    /// Normalises `raw` and keeps it when it changed at or after `since`; returns its change
    /// time (`None` when unreadable).
    fn take(
        &mut self,
        feed: &Feed,
        decoded: Result<Decoded<'_>, Invalid>,
        since: &str,
        horizon: &str,
    ) -> Option<String> {
        self.read += 1;
        let mut n = match decoded {
            Ok(n) => n,
            Err(invalid) => {
                self.invalid.push((invalid.key, invalid.error));
                return None;
            }
        };
        let id = n.key();
        let at = decoded_changed_at(feed, &n);
        if at.as_deref().is_some_and(|t| t >= since) && self.keys.insert(id) {
            let unreadable = n.take_unreadable().into_iter().map(|e| (id, e));
            self.unreadable.extend(unreadable);
            Newest::see(&mut self.newest, at.clone(), id, horizon);
            self.records
                .push(Scanned::from_canonical(id, n.canonical()));
        }
        at
    }
}

/// Reads the records of `feed` changed at or after `since` by `strategy` (not `Full`), with
/// pages of up to `page_size` rows.
pub async fn read_changed(
    feed: &Feed,
    strategy: Strategy,
    since: &str,
    page_size: u32,
) -> Result<Changed, FetchError> {
    match strategy {
        Strategy::SortedList => read_sorted(feed, since, page_size).await,
        Strategy::FilteredIndex => read_indexed(feed, since, page_size).await,
        Strategy::Full => Ok(Changed::default()),
    }
}

/// The sorted list, page after page, until a page reaches a record older than `since` (or the
/// list ends). A change time newer than the one before it means Daftra no longer keeps the
/// order: the read is `broken`.
async fn read_sorted(feed: &Feed, since: &str, page_size: u32) -> Result<Changed, FetchError> {
    let column = feed.resource.changed_at.as_deref().unwrap_or("modified");
    let (client, horizon) = (&feed.account.client, horizon(feed));
    let mut out = Changed::default();
    let first = FIRST_PAGE_ROWS.min(page_size);
    let mut requests = vec![(1, first)];
    let mut previous: Option<String> = None;
    while let Some((number, limit)) = requests.pop() {
        let page: Page = client
            .list_page_ordered(feed.resource, number, limit, Some((column, true)))
            .await?;
        out.requests += 1;
        let (last, rows) = (page.pagination.page_count, page.len());
        let mut older = false;
        if number == 1 {
            previous = None; // a new run of pages: the order is checked within it
        }
        let clock = feed.account.clock;
        for decoded in page.decode(feed.resource, &clock) {
            let Some(at) = out.take(feed, decoded, since, &horizon) else {
                continue;
            };
            if previous.as_deref().is_some_and(|p| at.as_str() > p) {
                out.broken = Some(format!(
                    "the list sorted by {column} descending answered {at} after {}",
                    previous.unwrap_or_default()
                ));
                return Ok(out);
            }
            older |= at.as_str() < since;
            previous = Some(at);
        }
        if older || number >= last || rows < limit as usize {
            break;
        }
        requests.push(match limit == first && first < page_size {
            true => (1, page_size),
            false => (number + 1, limit),
        });
    }
    Ok(out)
}

/// The v2 index of keys changed since `since`, then each record by the v1 single GET. A v2
/// row older than `since` means Daftra no longer applies the filter: the read is `broken`.
async fn read_indexed(feed: &Feed, since: &str, page_size: u32) -> Result<Changed, FetchError> {
    let (client, resource, horizon) = (&feed.account.client, feed.resource, horizon(feed));
    let entity = resource.v2_entity.as_deref().unwrap_or_default();
    let column = resource.changed_at.as_deref().unwrap_or("modified");
    let mut out = Changed::default();
    let mut keys = Vec::new();
    for number in 1.. {
        let page = client
            .v2_changed_since(resource, (entity, column, since), number, page_size)
            .await?;
        out.requests += 1;
        let early = page
            .data
            .iter()
            .find_map(|r| v2_time(r, column).filter(|t| t.as_str() < since));
        if let Some(early) = early {
            out.broken = Some(format!(
                "the v2 list filtered on {column} >= {since} answered {early}"
            ));
            return Ok(out);
        }
        keys.extend(
            page.data
                .iter()
                .filter_map(|r| record::raw_key(resource, r)),
        );
        if number >= page.last_page {
            break;
        }
    }
    for id in keys {
        out.requests += 1;
        // Gone since the index was read: a full scan proves deletes.
        if let Some(raw) = client.get_record(resource, id).await? {
            let clock = feed.account.clock;
            out.take(feed, record::decode(resource, &clock, raw), since, &horizon);
        }
    }
    Ok(out)
}

/// The change time of a v2 row as `YYYY-MM-DD HH:MM:SS`, when it has one (an ISO 8601 `T`
/// between date and time, as Laravel may write it, reads as the space).
fn v2_time(row: &serde_json::Map<String, serde_json::Value>, column: &str) -> Option<String> {
    let at = row.get(column)?.as_str()?.get(..19)?;
    Some(at.replacen('T', " ", 1))
}

/// Why a strategy is not used.
type Refusal = String;

/// Whether the sorted list is really sorted: its first page, newest first, non-increasing, and
/// starting at or after the newest change the bridge knows.
async fn probe_sorted(feed: &Feed, known: &Newest) -> Result<(), Refusal> {
    let column = feed
        .resource
        .changed_at
        .as_deref()
        .ok_or("no change-time column")?;
    let page = feed
        .account
        .client
        .list_page_ordered(feed.resource, 1, PROBE_ROWS, Some((column, true)))
        .await
        .map_err(|e| format!("the sorted list failed: {e}"))?;
    let mut times = Vec::new();
    let clock = feed.account.clock;
    for n in page.decode(feed.resource, &clock).flatten() {
        times.extend(decoded_changed_at(feed, &n));
    }
    if times.len() < 2 {
        return Err("too few records to see an order".into());
    }
    if times.windows(2).any(|w| w[0] < w[1]) {
        return Err(format!(
            "the list ignores sort={column}&direction=DESC (its records are not newest first)"
        ));
    }
    if times[0] < known.changed_at {
        return Err(format!(
            "the newest change known ({}) is not at the top",
            known.changed_at
        ));
    }
    Ok(())
}

/// Whether the v2 filter is really applied: every record it answers changed at or after the
/// newest change the bridge knows, and that record is among them.
async fn probe_filtered(feed: &Feed, known: &Newest) -> Result<(), Refusal> {
    let resource = feed.resource;
    let entity = resource.v2_entity.as_deref().ok_or("no v2 list")?;
    let column = resource
        .changed_at
        .as_deref()
        .ok_or("no change-time column")?;
    let page = feed
        .account
        .client
        .v2_changed_since(resource, (entity, column, &known.changed_at), 1, PROBE_ROWS)
        .await
        .map_err(|e| format!("the v2 list failed: {e}"))?;
    let early = page
        .data
        .iter()
        .any(|r| v2_time(r, column).is_some_and(|t| t < known.changed_at));
    if early {
        return Err(format!(
            "the v2 list ignores filter[{column}][gte] (it answers older records)"
        ));
    }
    let keys: Vec<i64> = page
        .data
        .iter()
        .filter_map(|r| record::raw_key(resource, r))
        .collect();
    if !keys.contains(&known.id) && page.last_page <= 1 {
        return Err(format!(
            "the newest change known (record {}) is missing from its answer",
            known.id
        ));
    }
    Ok(())
}

/// The strategy Daftra proves for `feed`, with why, and the requests the probe made: the
/// sorted list first (one request finds up to a page of changes, in the very form a full scan
/// reads), then the v2 index (one request plus one per change), else full scans. `known` is
/// the newest change a full scan just saw; without one nothing can be proven.
pub async fn probe(feed: &Feed, known: Option<&Newest>) -> (Strategy, String, u64) {
    let Some(known) = known else {
        return (
            Strategy::Full,
            "no change time known to probe with".into(),
            0,
        );
    };
    let has = |c: &Option<String>| c.is_some();
    let requests = u64::from(has(&feed.resource.changed_at));
    let sorted = match probe_sorted(feed, known).await {
        Ok(()) => {
            let why = "the list sorted by its change time proved newest first".into();
            return (Strategy::SortedList, why, requests);
        }
        Err(why) => why,
    };
    let v2 = has(&feed.resource.v2_entity) && has(&feed.resource.changed_at);
    let requests = requests + u64::from(v2);
    match probe_filtered(feed, known).await {
        Ok(()) => (
            Strategy::FilteredIndex,
            format!("the v2 filter proved applied ({sorted})"),
            requests,
        ),
        Err(why) => (Strategy::Full, format!("{sorted}; {why}"), requests),
    }
}
