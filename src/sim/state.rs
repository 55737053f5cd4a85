//! In-memory state of the simulated Daftra tenant: records, OAuth tokens, faults and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::data;

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
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Drift {
    /// Delete record `id` right after page `after_page` is served.
    Delete { after_page: u32, id: i64 },
    /// Insert a new seeded record right after page `after_page` is served.
    Insert { after_page: u32 },
}

/// Faults the simulator injects; every counter counts down as requests consume it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request, in milliseconds.
    pub latency_ms: u64,
    /// The next N API requests answer 429.
    pub rate_limited_next: u32,
    pub retry_after: RetryAfterForm,
    /// The next N API requests answer 503 (or 500 every other time).
    pub server_errors_next: u32,
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
}

/// OAuth client credentials the simulator accepts.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

pub(crate) struct Inner {
    pub records: BTreeMap<i64, Map<String, Value>>,
    /// `{"WorkOrder":{...}}` text of each record, so a list page is a concatenation; every
    /// change to `records` removes the entry, and [`Inner::item_json`] refills it.
    pub item_json: HashMap<i64, String>,
    pub next_id: i64,
    pub faults: Faults,
    pub stats: SimStats,
    /// access token -> expiry
    pub access_tokens: HashMap<String, Instant>,
    pub refresh_tokens: HashMap<String, ()>,
    pub flip: bool,
    pub token_seq: u64,
}

/// Shared state of one simulated tenant.
pub struct SimState {
    pub(crate) inner: Mutex<Inner>,
    pub api_key: String,
    pub oauth: Option<OAuthClient>,
    pub seed: u64,
}

impl SimState {
    /// A tenant seeded with `records` work orders, ids 1..=records.
    pub fn new(records: usize, api_key: String, oauth: Option<OAuthClient>, seed: u64) -> Self {
        let records: BTreeMap<_, _> = (1..=records as i64)
            .map(|id| (id, data::seeded_work_order(seed, id)))
            .collect();
        let next_id = records.keys().next_back().copied().unwrap_or(0) + 1;
        SimState {
            inner: Mutex::new(Inner {
                item_json: records.iter().map(|(id, r)| (*id, item_json(r))).collect(),
                records,
                next_id,
                faults: Faults::default(),
                stats: SimStats::default(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                flip: false,
                token_seq: 0,
            }),
            api_key,
            oauth,
            seed,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a work order from raw fields; assigns `id`, `number`, `created`, `modified`.
    pub fn create(&self, mut fields: Map<String, Value>) -> i64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let now = now_wall_clock();
        fields.insert("id".into(), Value::from(id));
        fields
            .entry("number")
            .or_insert_with(|| Value::from(format!("{id:06}")));
        fields.insert("created".into(), Value::from(now.clone()));
        fields.insert("modified".into(), Value::from(now));
        let mut record = data::seeded_work_order(self.seed, id);
        for k in [
            "description",
            "delivery_date",
            "budget",
            "follow_up_status_id",
            "delivery_appointment_id",
        ] {
            if !fields.contains_key(k) {
                record.insert(k.into(), Value::Null);
            }
        }
        record.extend(fields);
        inner.records.insert(id, record);
        inner.item_json.remove(&id);
        id
    }

    /// Stores a raw record exactly as given (its `id` included), replacing any with that id.
    pub fn insert_raw(&self, record: Map<String, Value>) -> Option<i64> {
        let id = record
            .get("id")
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))?;
        let mut inner = self.lock();
        inner.records.insert(id, record);
        inner.item_json.remove(&id);
        inner.next_id = inner.next_id.max(id + 1);
        Some(id)
    }

    /// Merges `fields` into record `id` and bumps `modified`; `false` when it does not exist.
    pub fn update(&self, id: i64, fields: Map<String, Value>) -> bool {
        let mut inner = self.lock();
        inner.item_json.remove(&id);
        let Some(record) = inner.records.get_mut(&id) else {
            return false;
        };
        for (k, v) in fields {
            if k != "id" {
                record.insert(k, v);
            }
        }
        record.insert("modified".into(), Value::from(now_wall_clock()));
        true
    }

    /// Deletes record `id`; `false` when it did not exist.
    pub fn delete(&self, id: i64) -> bool {
        let mut inner = self.lock();
        inner.item_json.remove(&id);
        inner.records.remove(&id).is_some()
    }

    /// Every record in raw form, by id.
    pub fn records(&self) -> Vec<Map<String, Value>> {
        self.lock().records.values().cloned().collect()
    }

    /// Revokes every access token (they answer 401 from now on); refresh tokens stay valid.
    pub fn lock_clear_tokens(&self) {
        self.lock().access_tokens.clear();
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

/// The list item of a record, `{"WorkOrder":{...}}`.
pub fn item_json(record: &Map<String, Value>) -> String {
    serde_json::to_string(&serde_json::json!({ "WorkOrder": record })).unwrap_or_default()
}

impl Inner {
    /// The cached list item of record `id` (serialised on first use after a change).
    pub fn item_json(&mut self, id: i64) -> &str {
        let record = &self.records[&id];
        self.item_json
            .entry(id)
            .or_insert_with(|| item_json(record))
    }
}

/// Daftra's wall-clock timestamp form, `YYYY-MM-DD HH:MM:SS`.
pub fn now_wall_clock() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}
