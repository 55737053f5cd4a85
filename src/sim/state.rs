//! In-memory state of the simulated Daftra tenant: records of every served resource, OAuth
//! tokens, faults and counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::data;
use crate::catalogue::{Resource, DEFAULT_RESOURCE};

/// Form of the `Retry-After` header sent with injected 429 answers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterForm {
    /// `Retry-After: 1` (seconds).
    #[default]
    Seconds,
    /// `Retry-After: <HTTP date>` one second ahead (RFC 9110 section 10.2.3).
    HttpDate,
    /// No `Retry-After` header.
    Absent,
}

/// A change made to the records right after a given list page is served (page drift).
/// Written as `{"action": "delete", "after_page": 1, "id": 7}` or
/// `{"action": "insert", "after_page": 2}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "DriftSpec", into = "DriftSpec")]
pub enum Drift {
    /// Delete record `id` right after page `after_page` is served.
    Delete { after_page: u32, id: i64 },
    /// Insert a new seeded record right after page `after_page` is served.
    Insert { after_page: u32 },
}

/// The JSON form of [`Drift`], a plain struct, so that a delete without an id or an unknown
/// action is refused with a message saying which.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DriftSpec {
    action: String,
    after_page: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
}

impl TryFrom<DriftSpec> for Drift {
    type Error = String;
    fn try_from(d: DriftSpec) -> Result<Self, String> {
        match (d.action.as_str(), d.id) {
            ("delete", Some(id)) => Ok(Drift::Delete {
                after_page: d.after_page,
                id,
            }),
            ("delete", None) => Err("a delete drift needs an id".into()),
            ("insert", _) => Ok(Drift::Insert {
                after_page: d.after_page,
            }),
            (other, _) => Err(format!(
                "unknown drift action {other:?}; use delete or insert"
            )),
        }
    }
}

impl From<Drift> for DriftSpec {
    fn from(d: Drift) -> Self {
        match d {
            Drift::Delete { after_page, id } => DriftSpec {
                action: "delete".into(),
                after_page,
                id: Some(id),
            },
            Drift::Insert { after_page } => DriftSpec {
                action: "insert".into(),
                after_page,
                id: None,
            },
        }
    }
}

/// Faults the simulator injects; every counter counts down as requests consume it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// The next N API requests answer 429.
    pub rate_limited_next: u32,
    /// Share (0..1) of API requests that answer 429 at random.
    pub rate_limited_rate: f64,
    pub retry_after: RetryAfterForm,
    /// The next N API requests answer 503 (or 500 every other time).
    pub server_errors_next: u32,
    /// The next N API requests answer 408 Request Timeout.
    pub request_timeouts_next: u32,
    /// Share (0..1) of API requests that answer 500 at random.
    pub server_error_rate: f64,
    /// The next N list requests answer 200 with JSON cut in half.
    pub truncated_next: u32,
    /// The next N list requests answer 200 with an HTML error page.
    pub html_next: u32,
    /// The next N list requests answer 200 with `"result":"failed"`.
    pub failed_result_next: u32,
    /// The next N list requests answer without a `pagination` object.
    pub missing_pagination_next: u32,
    /// Page drift, applied once.
    pub drift: Option<Drift>,
    /// Added to the `total_results` every list answer reports (a count that never matches).
    pub total_results_offset: i64,
    /// Whole numbers alternate between number and numeric-string form on each list request.
    pub flip_number_forms: bool,
    /// Lifetime of issued OAuth access tokens, in seconds (default 3600).
    pub token_ttl_secs: Option<u64>,
    /// Leave `expires_in` out of token answers.
    pub omit_expires_in: bool,
    /// Revoke every access token now (they answer 401), keeping refresh tokens.
    pub expire_tokens_now: bool,
    /// Refuse every credential (401), as Daftra does with a wrong or revoked API key.
    pub refuse_credentials: bool,
    /// v1 lists ignore `sort` and `direction` (records come by key, as if unsupported).
    pub ignore_sort: bool,
    /// v2 entity lists ignore `filter[...]` (every record comes back).
    pub ignore_filter: bool,
    /// Every Nth update keeps the record's old `modified` (0: every update moves it), as a
    /// write that bypasses Daftra's timestamps would.
    pub skip_modified_every: u32,
    /// Seconds added to the clock that writes `modified` (a server clock off by that much).
    pub clock_shift_secs: i64,
    /// Resources whose list and records answer this status instead (403: the account may not
    /// read them; 404: the Daftra plugin is off), e.g. `{"invoices": 403}`.
    pub unavailable: std::collections::BTreeMap<String, u16>,
}

/// Request counters, for tests and benchmarks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimStats {
    /// List pages answered with 200 and data (faulty answers excluded).
    pub pages_served: u64,
    pub list_requests: u64,
    pub get_requests: u64,
    pub token_requests: u64,
    pub unauthorized: u64,
    pub faults_injected: u64,
    /// List requests by resource name.
    pub list_requests_by_resource: std::collections::BTreeMap<String, u64>,
    /// Most API requests seen in flight at once.
    pub max_in_flight: u64,
    /// For each 429 answered, the milliseconds until the next API request arrived: how long
    /// clients held back after being told to.
    pub gaps_after_429_ms: Vec<u64>,
    #[serde(skip)]
    pub in_flight: u64,
}

/// OAuth client credentials the simulator accepts.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// The records of one simulated resource.
pub(crate) struct Table {
    pub resource: &'static Resource,
    pub records: BTreeMap<i64, Map<String, Value>>,
    /// List item text of each record, `{"Model":{...}}`, with and without line items, so a list
    /// page is a concatenation; every change to `records` removes the entry, and
    /// [`Table::item_json`] refills it.
    pub item_json: HashMap<(i64, bool), String>,
    /// `(changed_at value, id)` of every record, kept beside `records` (by [`Table::put`] and
    /// [`Table::take`]) for lists sorted by it.
    pub by_changed: BTreeSet<(String, i64)>,
    pub next_id: i64,
    /// Ids of line items created after seeding.
    pub next_item_id: i64,
}

impl Table {
    fn seeded(resource: &'static Resource, records: usize, seed: u64) -> Self {
        let records: BTreeMap<_, _> = (1..=records as i64)
            .map(|id| (id, data::seeded_record(resource, seed, id)))
            .collect();
        let next_id = records.keys().next_back().copied().unwrap_or(0) + 1;
        let by_changed = records
            .iter()
            .filter_map(|(id, r)| Some((changed_text(resource, r)?, *id)))
            .collect();
        Table {
            resource,
            records,
            item_json: HashMap::new(),
            by_changed,
            next_id,
            next_item_id: 1_000_000_000,
        }
    }

    /// The cached list item of record `id` (serialised on first use after a change);
    /// `with_items` false leaves the line-item groups out.
    pub fn item_json(&mut self, id: i64, with_items: bool) -> &str {
        let record = &self.records[&id];
        let resource = self.resource;
        self.item_json.entry((id, with_items)).or_insert_with(|| {
            let mut r = record.clone();
            if !with_items {
                for g in &resource.line_items {
                    r.remove(&g.key);
                }
            }
            item_json(resource, &r)
        })
    }

    /// Stores record `id` (replacing any), keeping the index by change time.
    pub fn put(&mut self, id: i64, record: Map<String, Value>) {
        if let Some(at) = changed_text(self.resource, &record) {
            self.by_changed.insert((at, id));
        }
        if let Some(old) = self.records.insert(id, record) {
            if let Some(at) = changed_text(self.resource, &old) {
                let now = changed_text(self.resource, &self.records[&id]);
                if now.as_deref() != Some(at.as_str()) {
                    self.by_changed.remove(&(at, id));
                }
            }
        }
        self.forget(id);
    }

    /// Removes record `id`, keeping the index by change time.
    pub fn take(&mut self, id: i64) -> Option<Map<String, Value>> {
        let old = self.records.remove(&id)?;
        if let Some(at) = changed_text(self.resource, &old) {
            self.by_changed.remove(&(at, id));
        }
        self.forget(id);
        Some(old)
    }

    fn forget(&mut self, id: i64) {
        self.item_json.remove(&(id, true));
        self.item_json.remove(&(id, false));
    }

    /// Gives every line item without an id a new one.
    fn number_items(&mut self, record: &mut Map<String, Value>) {
        for g in &self.resource.line_items {
            let Some(key) = g.item_key.as_deref() else {
                continue;
            };
            if let Some(Value::Array(items)) = record.get_mut(&g.key) {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    if item.get(key).is_none_or(|v| v.is_null() || v == "") {
                        item.insert(key.into(), Value::from(self.next_item_id));
                        self.next_item_id += 1;
                    }
                }
            }
        }
    }
}

pub(crate) struct Inner {
    /// Records by resource name.
    pub tables: BTreeMap<String, Table>,
    pub faults: Faults,
    pub stats: SimStats,
    /// access token -> expiry
    pub access_tokens: HashMap<String, Instant>,
    pub refresh_tokens: HashMap<String, ()>,
    pub flip: bool,
    pub token_seq: u64,
    /// When the last 429 was answered, until the next request arrives.
    pub last_429: Option<Instant>,
    /// Updates made, for `skip_modified_every`.
    pub updates: u64,
}

/// Shared state of one simulated tenant.
pub struct SimState {
    pub(crate) inner: Mutex<Inner>,
    pub api_key: String,
    pub oauth: Option<OAuthClient>,
    pub seed: u64,
    /// The IANA zone Site Info reports for the tenant.
    pub timezone: String,
}

impl SimState {
    /// A tenant seeded with `records` records (ids 1..=records) of each of `resources`.
    pub fn new(
        resources: &[&'static Resource],
        records: usize,
        api_key: String,
        oauth: Option<OAuthClient>,
        seed: u64,
    ) -> Self {
        let tables = resources
            .iter()
            .map(|r| (r.name.clone(), Table::seeded(r, records, seed)))
            .collect();
        SimState {
            inner: Mutex::new(Inner {
                tables,
                faults: Faults::default(),
                stats: SimStats::default(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                flip: false,
                token_seq: 0,
                last_429: None,
                updates: 0,
            }),
            api_key,
            oauth,
            seed,
            timezone: "Africa/Cairo".into(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resources this tenant serves.
    pub fn resources(&self) -> Vec<&'static Resource> {
        self.lock().tables.values().map(|t| t.resource).collect()
    }

    /// Creates a record of `resource` from raw fields (line-item groups included, as arrays
    /// inside the record): assigns `id`, `number`, `created`, `modified` and line-item ids;
    /// fields not given are seeded. `None` when the tenant does not serve `resource`.
    pub fn create_in(&self, resource: &str, mut fields: Map<String, Value>) -> Option<i64> {
        let mut inner = self.lock();
        let now = shifted_wall_clock(inner.faults.clock_shift_secs);
        let table = inner.tables.get_mut(resource)?;
        let id = table.next_id;
        table.next_id += 1;
        let mut record = data::seeded_record(table.resource, self.seed, id);
        // A new record carries only the line items it was created with.
        for g in &table.resource.line_items {
            record.insert(g.key.clone(), Value::Array(Vec::new()));
        }
        fields.insert(table.resource.key.clone(), Value::from(id));
        for (k, v) in [("created", now.clone()), ("modified", now)] {
            if table.resource.column(k).is_some() {
                fields.insert(k.into(), Value::from(v));
            }
        }
        record.extend(fields);
        table.number_items(&mut record);
        table.put(id, record);
        Some(id)
    }

    /// Stores a raw record of `resource` exactly as given (its key included), replacing any
    /// with that key.
    pub fn insert_raw_in(&self, resource: &str, record: Map<String, Value>) -> Option<i64> {
        let mut inner = self.lock();
        let table = inner.tables.get_mut(resource)?;
        let id = record
            .get(&table.resource.key)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))?;
        table.put(id, record);
        table.next_id = table.next_id.max(id + 1);
        Some(id)
    }

    /// Merges `fields` into record `id` of `resource` (a line-item group given replaces the
    /// group) and bumps `modified`; `false` when it does not exist.
    pub fn update_in(&self, resource: &str, id: i64, fields: Map<String, Value>) -> bool {
        let mut inner = self.lock();
        inner.updates += 1;
        let (skip, shift) = (
            inner.faults.skip_modified_every,
            inner.faults.clock_shift_secs,
        );
        let bump = skip == 0 || inner.updates % u64::from(skip) != 0;
        let Some(table) = inner.tables.get_mut(resource) else {
            return false;
        };
        let Some(mut record) = table.records.get(&id).cloned() else {
            return false;
        };
        let key = table.resource.key.clone();
        for (k, v) in fields {
            if k != key {
                record.insert(k, v);
            }
        }
        if let (Some(at), true) = (&table.resource.changed_at, bump) {
            let now = chrono::Utc::now() + chrono::TimeDelta::seconds(shift);
            record.insert(
                at.clone(),
                Value::from(now.format("%Y-%m-%d %H:%M:%S").to_string()),
            );
        }
        table.number_items(&mut record);
        table.put(id, record);
        true
    }

    /// Deletes record `id` of `resource`; `false` when it did not exist.
    pub fn delete_in(&self, resource: &str, id: i64) -> bool {
        let mut inner = self.lock();
        let Some(table) = inner.tables.get_mut(resource) else {
            return false;
        };
        table.take(id).is_some()
    }

    /// Every record of `resource` in raw form, by key.
    pub fn records_of(&self, resource: &str) -> Vec<Map<String, Value>> {
        self.lock()
            .tables
            .get(resource)
            .map(|t| t.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// [`SimState::create_in`] of the default resource (work orders).
    pub fn create(&self, fields: Map<String, Value>) -> i64 {
        self.create_in(DEFAULT_RESOURCE, fields).unwrap_or_default()
    }

    /// [`SimState::insert_raw_in`] of the default resource (work orders).
    pub fn insert_raw(&self, record: Map<String, Value>) -> Option<i64> {
        self.insert_raw_in(DEFAULT_RESOURCE, record)
    }

    /// [`SimState::update_in`] of the default resource (work orders).
    pub fn update(&self, id: i64, fields: Map<String, Value>) -> bool {
        self.update_in(DEFAULT_RESOURCE, id, fields)
    }

    /// [`SimState::delete_in`] of the default resource (work orders).
    pub fn delete(&self, id: i64) -> bool {
        self.delete_in(DEFAULT_RESOURCE, id)
    }

    /// [`SimState::records_of`] the default resource (work orders).
    pub fn records(&self) -> Vec<Map<String, Value>> {
        self.records_of(DEFAULT_RESOURCE)
    }

    /// Revokes every access token (they answer 401 from now on); refresh tokens stay valid.
    pub fn lock_clear_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Serialises every record's list item (line items included) ahead of the first request
    /// for it, as a real Daftra answers from its database without that cost: a benchmark's
    /// first round then times the bridge, not the simulator's first serialisation.
    pub fn render_list_items(&self) {
        let mut inner = self.lock();
        for table in inner.tables.values_mut() {
            let ids: Vec<i64> = table.records.keys().copied().collect();
            for id in ids {
                table.item_json(id, true);
            }
        }
    }

    /// Invalidates every refresh token (a refresh answers `invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        self.lock().refresh_tokens.clear();
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Request counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    pub(crate) fn issue_token(&self, inner: &mut Inner) -> (String, String, u64) {
        inner.token_seq += 1;
        let ttl = inner.faults.token_ttl_secs.unwrap_or(3600);
        let access = format!("at-{}-{}", inner.token_seq, rand::random::<u64>());
        let refresh = format!("rt-{}-{}", inner.token_seq, rand::random::<u64>());
        inner
            .access_tokens
            .insert(access.clone(), Instant::now() + Duration::from_secs(ttl));
        inner.refresh_tokens.insert(refresh.clone(), ());
        (access, refresh, ttl)
    }
}

/// The list item of a record, `{"Model":{...}}`.
pub fn item_json(resource: &Resource, record: &Map<String, Value>) -> String {
    let mut item = Map::new();
    item.insert(resource.model_key.clone(), Value::Object(record.clone()));
    serde_json::to_string(&item).unwrap_or_default()
}

/// The value of `resource`'s change-time column in `record`, as text (timestamps here are all
/// `YYYY-MM-DD HH:MM:SS`, so text order is time order).
pub(crate) fn changed_text(resource: &Resource, record: &Map<String, Value>) -> Option<String> {
    match record.get(resource.changed_at.as_deref()?)? {
        Value::String(s) => Some(s.clone()),
        // Listed too: sorted lists hold every record, empty ones last when descending.
        Value::Null => Some(String::new()),
        other => Some(other.to_string()),
    }
}

/// The simulated server's clock, `shift` seconds off, in Daftra's wall-clock form.
fn shifted_wall_clock(shift: i64) -> String {
    let now = chrono::Utc::now() + chrono::TimeDelta::seconds(shift);
    now.format("%Y-%m-%d %H:%M:%S").to_string()
}
