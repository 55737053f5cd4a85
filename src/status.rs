//! In-memory poll status per resource, served by `GET /status`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::changes::Strategy;
use crate::metrics::{PollMode, PublishFailure};

/// How a poll ended, as `/status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollResult {
    /// A complete scan, its changes committed.
    Success,
    /// The first poll: the snapshot's baseline was recorded.
    Baseline,
    /// Committed without deletes: the scan could not prove itself complete.
    Incomplete,
    /// Nothing changed: the poll failed (`last_error` says why).
    Failed,
}

impl PollResult {
    /// `success`, `baseline`, `incomplete` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PollResult::Success => "success",
            PollResult::Baseline => "baseline",
            PollResult::Incomplete => "incomplete",
            PollResult::Failed => "failed",
        }
    }
}

/// Reads as its `/status` text, so `status.last_outcome.as_deref() == Some("success")`.
impl std::ops::Deref for PollResult {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Last poll of one resource.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PollStatus {
    /// RFC 3339 UTC start and end of the last poll.
    pub last_poll_started: Option<String>,
    pub last_poll_ended: Option<String>,
    /// How the last poll ended.
    pub last_outcome: Option<PollResult>,
    pub last_error: Option<String>,
    pub last_duration_seconds: Option<f64>,
    pub last_success: Option<String>,
    /// Records in the snapshot after the last poll.
    pub records: u64,
    /// Pages read by the last poll.
    pub pages: u64,
    /// Changes of the last poll by op.
    pub changes: BTreeMap<String, u64>,
    pub polling: bool,
    /// `false` while the account cannot read the resource (its list answered 401, 403 or 404):
    /// it is retried every `POLL_UNAVAILABLE_RETRY_SECS` and holds up no other resource.
    pub available: bool,
    /// How the last successful poll read Daftra: `full` (every page) or `incremental` (only
    /// what changed since the watermark).
    pub last_mode: Option<PollMode>,
    /// Daftra requests the last successful poll made.
    pub requests: u64,
    /// How polls find what changed: `sorted_list`, `filtered_index` or `full` (full scans
    /// only), and why (the probe's finding, an audit's misses, or the configuration).
    pub strategy: Option<Strategy>,
    pub strategy_reason: Option<String>,
    /// RFC 3339 UTC end of the last full scan and of the last incremental poll.
    pub last_full_scan: Option<String>,
    pub last_incremental_poll: Option<String>,
    /// Records read by the last full scan and by the last incremental poll.
    pub full_scan_records: u64,
    pub incremental_records: u64,
    /// Changes full scans found that the incremental polls before them had missed, in total
    /// (`bridge_incremental_missed_total`).
    pub incremental_missed: u64,
}

/// State of the AMQP connection, shared by the publisher, `/readyz`, `/status` and metrics: the
/// connection, the last error, and the failed publish attempts since start by reason.
#[derive(Debug, Default)]
pub struct BrokerState(
    AtomicU8,
    Mutex<Option<String>>,
    Mutex<BTreeMap<&'static str, u64>>,
);

/// Connection state values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerConnection {
    Disconnected,
    Connected,
    /// Connected, but the broker blocks publishers (memory or disk alarm).
    Blocked,
    /// The broker answers but refuses us (wrong credentials or permissions, or an exchange of
    /// another type); the error names the variable to fix.
    Refused,
}

impl BrokerState {
    pub fn set(&self, c: BrokerConnection) {
        self.0.store(c as u8, Ordering::SeqCst);
        if c == BrokerConnection::Connected {
            self.set_error(None);
        }
    }

    /// Records why the broker cannot be used (never holding a password), for `/readyz`.
    pub fn set_error(&self, error: Option<String>) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Counts a failed publish (or connection) attempt.
    pub fn count_failure(&self, reason: PublishFailure) {
        *self
            .2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason.as_str())
            .or_default() += 1;
    }

    /// Failed publish attempts since start by reason, every reason listed (`/status`).
    pub fn failures(&self) -> BTreeMap<&'static str, u64> {
        let counted = self.2.lock().unwrap_or_else(|e| e.into_inner());
        PublishFailure::ALL
            .iter()
            .map(|r| (r.as_str(), counted.get(r.as_str()).copied().unwrap_or(0)))
            .collect()
    }

    /// The last connection or publish error, until the next successful connection.
    pub fn error(&self) -> Option<String> {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn get(&self) -> BrokerConnection {
        match self.0.load(Ordering::SeqCst) {
            1 => BrokerConnection::Connected,
            2 => BrokerConnection::Blocked,
            3 => BrokerConnection::Refused,
            _ => BrokerConnection::Disconnected,
        }
    }
}

/// Status of every resource, by name.
#[derive(Debug, Default)]
pub struct StatusBoard {
    polls: Mutex<BTreeMap<String, PollStatus>>,
    /// What Daftra's Site Info says of the account's zone, once read (or why it could not be).
    site_zone: Mutex<Option<Result<crate::daftra::SiteZone, String>>>,
}

impl StatusBoard {
    /// A board listing `resources`, each with no poll yet and zero changes.
    pub fn new(resources: &[&str]) -> Self {
        let zero = || {
            ["created", "updated", "deleted"]
                .into_iter()
                .map(|op| (op.to_string(), 0))
                .collect()
        };
        let polls = resources
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    PollStatus {
                        changes: zero(),
                        available: true,
                        ..Default::default()
                    },
                )
            })
            .collect();
        StatusBoard {
            polls: Mutex::new(polls),
            site_zone: Mutex::new(None),
        }
    }

    /// Applies `f` to the status of `resource`.
    pub fn update(&self, resource: &str, f: impl FnOnce(&mut PollStatus)) {
        let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
        f(polls.entry(resource.to_string()).or_default());
    }

    /// Records what Site Info said of the account's zone.
    pub fn set_site_zone(&self, zone: Result<crate::daftra::SiteZone, String>) {
        *self.site_zone.lock().unwrap_or_else(|e| e.into_inner()) = Some(zone);
    }

    /// `{"in_use", "daftra_reports", "daftra_zone", "matches", "error"}`: the zone the bridge
    /// reads timestamps in (`DAFTRA_TIMEZONE`) beside the one Daftra reports, so an operator sees
    /// a mismatch; `matches` is `null` while Daftra's is unknown.
    pub fn timezone(&self, in_use: &str) -> serde_json::Value {
        let site = self
            .site_zone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (reported, zone, error) = match site {
            None => (None, None, None),
            Some(Ok(z)) => (z.reported, z.zone, None),
            Some(Err(e)) => (None, None, Some(e)),
        };
        let matches = zone.as_deref().map(|z| z == in_use);
        serde_json::json!({"in_use": in_use, "daftra_reports": reported, "daftra_zone": zone,
            "matches": matches, "error": error})
    }

    /// The status of one resource.
    pub fn get(&self, resource: &str) -> Option<PollStatus> {
        self.polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(resource)
            .cloned()
    }

    /// A copy of every resource's status.
    /// Takes in poll statuses saved in the store (JSON by resource name; unknown names and
    /// unreadable entries are skipped): the previous run's at start-up, the leader's on a
    /// follower. Returns the resources updated.
    pub fn merge_saved(
        &self,
        saved: &std::collections::HashMap<String, String>,
    ) -> Vec<(String, PollStatus)> {
        let mut merged = Vec::new();
        for (name, text) in saved {
            let Ok(mut s) = serde_json::from_str::<PollStatus>(text) else {
                continue;
            };
            s.polling = false;
            let mut polls = self.polls.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = polls.get_mut(name) {
                *slot = s.clone();
                merged.push((name.clone(), s));
            }
        }
        merged
    }

    pub fn snapshot(&self) -> BTreeMap<String, PollStatus> {
        self.polls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Now as RFC 3339 UTC with seconds, as CloudEvents `time` wants it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
