//! What every backend stores, as four traits (snapshot, outbox, webhook endpoints, attempt log)
//! and the shapes they exchange. Times are Unix seconds unless a name ends in `_ms`.
//!
//! Writes marked *leader only* prove the fencing token in their own transaction on PostgreSQL
//! and fail with [`StoreError::Fenced`] on a replica that no longer leads.

use std::collections::HashMap;

use super::StoreError;
use crate::events::OutboxEvent;
use crate::secret::Secret;

/// One snapshot write of a poll.
#[derive(Debug)]
pub enum SnapshotWrite {
    /// Insert or replace record `id` with its canonical JSON.
    Upsert {
        id: i64,
        record: String,
    },
    Delete {
        id: i64,
    },
}

/// Whether a poll's commit raises the snapshot version (what `ETag` and `Last-Modified` of
/// snapshot exports are made of): the first baseline of a resource, or any snapshot write. A
/// poll that found nothing changed keeps the version, so conditional requests answer 304.
pub(super) fn raises_version(first_baseline: bool, writes: &[SnapshotWrite]) -> bool {
    first_baseline || !writes.is_empty()
}

/// The order in which an export reads rows: by the record key, or by one column's value with
/// ties broken by the key. Column names come from the catalogue, never from request text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowOrder<'a> {
    /// The column ordered by; `None` is the record key.
    pub column: Option<&'a str>,
    /// The column holds exact decimals (stored as their digits): ordered as numbers, exactly.
    pub decimal: bool,
    pub descending: bool,
}

impl RowOrder<'_> {
    /// Ascending by the record key.
    pub const KEY: RowOrder<'static> = RowOrder {
        column: None,
        decimal: false,
        descending: false,
    };
}

/// Where a feed's polls that read only what changed have got to. Times are the account's wall
/// clock as the snapshot holds them (`YYYY-MM-DD HH:MM:SS`, so text order is time order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    /// The newest change time committed (never one in the future).
    pub changed_at: String,
    /// The change time up to which incremental polls since the last full scan have read, if
    /// any did: a change older than it (less the overlap) that the next full scan finds was
    /// missed.
    pub audited_to: Option<String>,
}

/// The snapshot and what polls keep beside it.
pub trait Snapshots {
    /// Whether the first poll of `resource` has recorded its baseline.
    fn has_baseline(&self, resource: &str) -> Result<bool, StoreError>;
    /// The snapshot version of `resource` (raised by every commit that changes its snapshot)
    /// and when that commit happened (Unix seconds): what `ETag` and `Last-Modified` of
    /// snapshot exports are made of. `None` before the first baseline.
    fn snapshot_version(&self, resource: &str) -> Result<Option<(i64, i64)>, StoreError>;
    /// Whether any resource has a snapshot, so exports can be served without Daftra.
    fn any_baseline(&self) -> Result<bool, StoreError>;
    /// `(id, content hash)` of every snapshot record of `resource`, by id: what a poll compares
    /// against (16 bytes per record, whatever their size).
    fn load_hashes(&self, resource: &str) -> Result<Vec<(i64, i64)>, StoreError>;
    /// The canonical JSON of the snapshot records `ids` of `resource` that exist.
    fn load_many(&self, resource: &str, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError>;
    /// The canonical JSON of one snapshot record.
    fn load_one(&self, resource: &str, id: i64) -> Result<Option<String>, StoreError>;
    /// The snapshot of `resource` as id -> canonical JSON text.
    fn load_snapshot(&self, resource: &str) -> Result<HashMap<i64, String>, StoreError>;
    /// Records in the snapshot of `resource`.
    fn snapshot_len(&self, resource: &str) -> Result<u64, StoreError>;
    /// Streams the canonical JSON of every snapshot record of `resource` in id order
    /// (`descending` reverses it) to `each`, on a connection of its own and in bounded memory
    /// (SQLite's statement, PostgreSQL's portal read 1,000 rows at a time). `each` returns
    /// `false` to stop early.
    fn scan_snapshot(
        &self,
        resource: &str,
        descending: bool,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError>;
    /// Streams the canonical JSON of every snapshot record of `resource` in `order` to `each`
    /// (which filters, and returns `false` to stop early), in bounded memory: SQLite sorts in
    /// its file; PostgreSQL reads in key order and sorts the rest through a [`super::Spool`].
    fn scan_snapshot_ordered(
        &self,
        resource: &str,
        order: RowOrder<'_>,
        each: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), StoreError>;
    /// *Leader only.* Writes snapshot records of a first poll as its pages arrive, in a
    /// transaction of their own and without the baseline mark: a poll that fails later leaves
    /// a baseline still to be recorded, so nothing is announced from these rows.
    fn write_baseline_page(
        &self,
        resource: &str,
        records: &[(i64, String)],
    ) -> Result<(), StoreError>;
    /// *Leader only.* Applies a poll in ONE transaction: snapshot writes, outbox appends and
    /// the baseline mark.
    fn commit_poll(
        &self,
        resource: &str,
        writes: &[SnapshotWrite],
        events: &[OutboxEvent],
    ) -> Result<(), StoreError>;
    /// Where the polls of `resource` that read only what changed have got to.
    fn watermark(&self, resource: &str) -> Result<Option<Watermark>, StoreError>;
    /// *Leader only.* Keeps `watermark` for `resource` (after the poll that reached it
    /// committed).
    fn save_watermark(&self, resource: &str, watermark: &Watermark) -> Result<(), StoreError>;
    /// *Leader only.* Keeps the last poll's status of `resource` (JSON), so `/status` shows it
    /// after a restart and on every replica.
    fn save_poll_status(&self, resource: &str, status: &str) -> Result<(), StoreError>;
    /// The saved poll status of every resource, as JSON by name.
    fn poll_statuses(&self) -> Result<HashMap<String, String>, StoreError>;
}

/// The RabbitMQ sink's name in `sink_cursor`.
pub const AMQP_SINK: &str = "amqp";

/// The setting holding the highest outbox position ever pruned ([`Outbox::event_log_start`]).
pub const PRUNED_THROUGH: &str = "event_log_pruned_through";

/// A row of the outbox.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    /// Position in the outbox; rows are published in this order.
    pub seq: i64,
    pub event: OutboxEvent,
}

/// The outbox as the event log: appended by polls (in `commit_poll`), read in order by each
/// sink past its own cursor, and pruned once every sink is past a row and its retention ended.
pub trait Outbox {
    /// Up to `limit` outbox rows after `after_seq`, oldest first.
    fn outbox_batch(&self, after_seq: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// The outbox position `sink` has confirmed: every row up to it is done for that sink.
    fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError>;
    /// *Leader only.* Records that `sink` has confirmed every row up to `seq` (never moves
    /// backwards).
    fn confirm_sink(&self, sink: &str, seq: i64) -> Result<(), StoreError>;
    /// Events RabbitMQ has not confirmed yet (`bridge_outbox_pending`).
    fn outbox_len(&self) -> Result<u64, StoreError>;
    /// *Leader only.* Deletes the event log rows that every sink has confirmed (RabbitMQ, and
    /// every enabled webhook endpoint with nothing pending for them) and that are older than
    /// `retention` (the window a replay can reach back). Returns rows deleted.
    fn prune_event_log(&self, retention: std::time::Duration) -> Result<usize, StoreError>;
    /// The newest outbox position (0 when nothing was ever appended).
    fn outbox_head(&self) -> Result<i64, StoreError>;
    /// The highest position ever pruned (0 when nothing was): every event after it is still
    /// in the log, so a reader whose cursor is at or past it misses nothing.
    fn event_log_start(&self) -> Result<i64, StoreError>;
}

/// An endpoint as given to `POST /webhooks/endpoints`, validated.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    /// AMQP topic patterns over the routing keys (`work_order.*`, `#`).
    pub events: Vec<String>,
    pub description: String,
}

/// The fields `PATCH /webhooks/endpoints/{id}` may change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub disabled: Option<bool>,
}

/// A stored endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `ep_` and 16 hex digits.
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    /// `whsec_` and the base64 key.
    pub secret: Secret,
    /// Secrets replaced by rotations that still sign, each with the Unix second it stops at
    /// (a receiver may hold any of them during the overlaps).
    pub previous_secrets: Vec<(Secret, i64)>,
    pub disabled: bool,
    /// Why it was disabled (`410 Gone`, the retry schedule exhausted, or the operator).
    pub disabled_reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Outbox position up to which every event was queued for this endpoint.
    pub cursor: i64,
}

/// `previous_secret` holds a JSON list of `[secret, until]` pairs (one plain secret, with
/// `previous_secret_until`, in stores written before several overlaps were kept).
pub(super) fn previous_secrets(column: Option<String>, until: Option<i64>) -> Vec<(Secret, i64)> {
    match column {
        None => Vec::new(),
        Some(text) if text.starts_with('[') => serde_json::from_str::<Vec<(String, i64)>>(&text)
            .unwrap_or_default()
            .into_iter()
            .map(|(s, u)| (Secret::new(s), u))
            .collect(),
        Some(plain) => until.map(|u| (Secret::new(plain), u)).into_iter().collect(),
    }
}

/// The `previous_secret` column holding `previous` (`[secret, until]` pairs), and the
/// `previous_secret_until` beside it (the latest).
pub(super) fn previous_column(previous: &[(Secret, i64)]) -> (Option<String>, Option<i64>) {
    if previous.is_empty() {
        return (None, None);
    }
    let pairs: Vec<(&str, i64)> = previous.iter().map(|(s, u)| (s.expose(), *u)).collect();
    let until = previous.iter().map(|(_, u)| *u).max();
    (serde_json::to_string(&pairs).ok(), until)
}

/// The `previous_secret` column after a rotation: the overlaps still running and the secret
/// being replaced, which signs until `old_until`.
pub(super) fn rotated_secrets(old: &Endpoint, old_until: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut kept: Vec<(String, i64)> = old
        .previous_secrets
        .iter()
        .filter(|(_, until)| *until > now)
        .map(|(s, until)| (s.expose().to_string(), *until))
        .collect();
    kept.push((old.secret.expose().to_string(), old_until));
    serde_json::to_string(&kept).unwrap_or_default()
}

/// The reason stored by `update_endpoint`: cleared when enabled, named when the operator
/// disables, kept otherwise.
pub(super) fn patched_reason(old: &Endpoint, patch: &EndpointPatch) -> (bool, Option<String>) {
    let disabled = patch.disabled.unwrap_or(old.disabled);
    let reason = match (patch.disabled, disabled) {
        (_, false) => None,
        (Some(true), true) if !old.disabled => Some("disabled by the operator".to_string()),
        _ => old.disabled_reason.clone(),
    };
    (disabled, reason)
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A message whose attempt is due: the outbox row and how many attempts came before.
#[derive(Debug, Clone)]
pub struct DueMessage {
    pub seq: i64,
    pub attempt: u32,
    pub event_id: String,
    pub body: String,
}

/// `(seq, routing_key, resource, record id)` of an outbox row.
pub type OutboxKey = (i64, String, String, i64);

/// Webhook endpoints and their delivery state: one queue of messages per endpoint (an outbox
/// position and its attempt count), filled from the outbox past the endpoint's cursor. A
/// message leaves its queue only when the endpoint answered 2xx.
pub trait Webhooks {
    /// Stores a new endpoint; it receives the events appended from now on.
    fn create_endpoint(
        &self,
        id: &str,
        new: &NewEndpoint,
        secret: &Secret,
    ) -> Result<Endpoint, StoreError>;
    /// Every endpoint, oldest first.
    fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError>;
    /// One endpoint.
    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError>;
    /// Applies `patch`; re-enabling an endpoint makes its waiting messages due at once.
    fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
    ) -> Result<Option<Endpoint>, StoreError>;
    /// Disables an endpoint, saying why (shown in `/status` and the admin API).
    fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError>;
    /// Deletes an endpoint with its queue and attempt log; `false` when there was none.
    fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the secret; the old one keeps signing until `old_until` (Unix seconds), beside
    /// earlier ones whose overlap has not ended. `false` when there is no such endpoint.
    fn rotate_secret(&self, id: &str, secret: &Secret, old_until: i64) -> Result<bool, StoreError>;
    /// Writes endpoint `id`'s secrets as given, opaque (the [`super::Store`] handle seals
    /// them): the current one, and the previous ones with the Unix second each stops signing.
    fn replace_secrets(
        &self,
        id: &str,
        secret: &Secret,
        previous: &[(Secret, i64)],
    ) -> Result<(), StoreError>;
    /// Up to `limit` outbox rows after `after`.
    fn outbox_keys(&self, after: i64, limit: usize) -> Result<Vec<OutboxKey>, StoreError>;
    /// Queues `messages` (`(seq, record key)`) for endpoint `id` and moves its cursor to
    /// `cursor` (never back), in one transaction; queueing a message twice keeps one.
    /// Returns `false` when the endpoint no longer exists.
    fn enqueue_messages(
        &self,
        id: &str,
        messages: &[(i64, String)],
        cursor: i64,
    ) -> Result<bool, StoreError>;
    /// Up to `limit` messages of endpoint `id` due at `now_ms`, oldest first, each the oldest
    /// waiting message of its record (so one record's events arrive in order).
    fn due_messages(
        &self,
        id: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueMessage>, StoreError>;
    /// When the next message of endpoint `id` is due (Unix milliseconds), if any is waiting.
    fn next_due(&self, id: &str) -> Result<Option<i64>, StoreError>;
    /// Events waiting for endpoint `id`: its queue plus the outbox rows past its cursor (an
    /// upper bound: its filter may skip some of those).
    fn endpoint_pending(&self, id: &str) -> Result<u64, StoreError>;
    /// The logged events appended at or after `since` (Unix seconds) up to outbox position
    /// `up_to`: what a replay queues again.
    fn events_since(&self, since: i64, up_to: i64) -> Result<Vec<OutboxKey>, StoreError>;
}

/// An event a sink refused for good (too large, or refused outright), set aside so the stream
/// moves on: kept with its outbox row, which is never pruned while it is parked, until an
/// operator retries or drops it (`/outbox/parked`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parked {
    /// Its id in the admin API.
    pub id: i64,
    /// `amqp` or `webhook`.
    pub sink: String,
    /// The webhook endpoint, for the webhook sink.
    pub endpoint: Option<String>,
    /// The outbox position of the event.
    pub seq: i64,
    pub event_id: String,
    pub resource: String,
    pub record_id: i64,
    pub routing_key: String,
    /// Size of the event's CloudEvents JSON, in bytes.
    pub bytes: i64,
    /// `too_large` or `refused`.
    pub reason: String,
    /// What the sink answered, without secrets.
    pub error: String,
    /// Unix seconds.
    pub parked_at: i64,
    /// An operator asked for a retry that the sink has not made yet.
    pub retry_requested: bool,
}

/// The parked events of every sink. A webhook sink parks through
/// [`AttemptLog::record_attempts`] (an [`AttemptOutcome::Parked`] attempt).
pub trait Parking {
    /// *Leader only.* Parks outbox row `seq` for the RabbitMQ sink and moves that sink's cursor
    /// past it, in one transaction (every row before it is confirmed).
    fn park_for_amqp(&self, seq: i64, reason: &str, error: &str) -> Result<(), StoreError>;
    /// Up to `limit` parked events, newest first.
    fn parked(&self, limit: usize) -> Result<Vec<Parked>, StoreError>;
    /// One parked event.
    fn parked_one(&self, id: i64) -> Result<Option<Parked>, StoreError>;
    /// Parked events by sink (`amqp`, `webhook`).
    fn parked_counts(&self) -> Result<HashMap<String, u64>, StoreError>;
    /// Asks for a retry of parked event `id`: a webhook message goes back into its endpoint's
    /// queue, due now, and leaves the parked events; a RabbitMQ event is marked for the sink to
    /// publish again. `false` when there is no such parked event.
    fn retry_parked(&self, id: i64) -> Result<bool, StoreError>;
    /// Drops parked event `id` for good (its outbox row is then pruned as usual). `false` when
    /// there is no such parked event.
    fn drop_parked(&self, id: i64) -> Result<bool, StoreError>;
    /// Up to `limit` RabbitMQ events marked for a retry, oldest first, with their parked id.
    fn amqp_retries(&self, limit: usize) -> Result<Vec<(i64, OutboxRow)>, StoreError>;
    /// *Leader only.* A retried RabbitMQ event was confirmed: it is no longer parked.
    fn unpark(&self, id: i64) -> Result<(), StoreError>;
    /// *Leader only.* A retried RabbitMQ event was refused again: it stays parked with `error`.
    fn repark(&self, id: i64, error: &str) -> Result<(), StoreError>;
}

/// Attempts kept in the log per endpoint (`GET /webhooks/endpoints/{id}/deliveries`).
pub const ATTEMPTS_KEPT: i64 = 1000;

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// 2xx: the message leaves the queue.
    Delivered,
    /// Tried again at this time (Unix milliseconds).
    RetryAt(i64),
    /// Not tried again while the endpoint stays disabled (re-enabling it resumes).
    Stopped,
    /// Refused for good (a 4xx no retry changes): the message leaves the queue and is parked
    /// with this reason (`too_large`, `refused`).
    Parked(String),
}

impl AttemptOutcome {
    /// The outcome a logged attempt had, from its status and next attempt time.
    pub(super) fn from_log(status: Option<u16>, next: Option<i64>) -> AttemptOutcome {
        let parked = status.and_then(crate::metrics::ParkReason::for_http_status);
        match (next, parked) {
            (Some(t), _) => AttemptOutcome::RetryAt(t),
            (None, _) if status.is_some_and(|s| (200..300).contains(&s)) => {
                AttemptOutcome::Delivered
            }
            (None, Some(reason)) => AttemptOutcome::Parked(reason.as_str().to_string()),
            (None, None) => AttemptOutcome::Stopped,
        }
    }

    /// The parking reason of a parked attempt.
    pub(super) fn parked_reason(&self) -> Option<&str> {
        match self {
            AttemptOutcome::Parked(reason) => Some(reason),
            _ => None,
        }
    }

    /// The next attempt time kept for a message that is tried again (`i64::MAX`: not while
    /// disabled), or `None` when it leaves the queue.
    pub(super) fn queue_time(&self) -> Option<i64> {
        match self {
            AttemptOutcome::Delivered | AttemptOutcome::Parked(_) => None,
            AttemptOutcome::RetryAt(t) => Some(*t),
            AttemptOutcome::Stopped => Some(i64::MAX),
        }
    }

    /// The `next_attempt_at` logged with the attempt.
    pub(super) fn logged_next(&self) -> Option<i64> {
        match self {
            AttemptOutcome::RetryAt(t) => Some(*t),
            _ => None,
        }
    }
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub seq: i64,
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix milliseconds when it started.
    pub at_ms: i64,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// Why it failed, without secrets.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// The webhook attempt log: each attempt's outcome committed with the queue change it implies.
pub trait AttemptLog {
    /// *Leader only.* Commits a batch of attempts of endpoint `id`: the log, the queue
    /// (delivered messages leave it, failed ones wait for their next attempt) and, with
    /// `disable`, the endpoint's disabling, all in one transaction.
    fn record_attempts(
        &self,
        id: &str,
        attempts: &[AttemptRecord],
        disable: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The newest `limit` attempts of endpoint `id`, newest first.
    fn attempts(&self, id: &str, limit: usize) -> Result<Vec<AttemptRecord>, StoreError>;
    /// *Leader only.* Keeps the newest [`ATTEMPTS_KEPT`] attempts of each endpoint.
    fn prune_attempts(&self) -> Result<usize, StoreError>;
}
