//! What the rest of the bridge reports, as typed methods: each takes the observation's own
//! values (label enums, counts, durations) and updates every metric it concerns.

use std::time::Duration;

use super::labels::{
    AuthFailure, DeliveryOutcome, LeadershipChange, Operation, ParkReason, PollFailure, PollMode,
    PublishFailure, RetryReason, Sink,
};
use super::Metrics;
use crate::events::Op;
use crate::format::Format;

impl Metrics {
    /// Exports the series of each resource named in `resources` at zero, so dashboards see them
    /// before the first poll.
    pub fn init_resources(&self, resources: &[impl AsRef<str>]) {
        for n in resources {
            let n = n.as_ref();
            let (u, p) = (&self.upstream, &self.polls);
            u.unreadable_values.with_label_values(&[n]);
            self.exports.cells_truncated.with_label_values(&[n]);
            u.resource_available.with_label_values(&[n]).set(1);
            u.pages_fetched.with_label_values(&[n]);
            u.scan_pages.with_label_values(&[n]);
            u.scan_records.with_label_values(&[n]);
            u.invalid_records.with_label_values(&[n]);
            p.last_success.with_label_values(&[n]);
            self.publishing.events_unroutable.with_label_values(&[n]);
            p.incomplete_scans.with_label_values(&[n]);
            p.incremental_missed.with_label_values(&[n]);
            for mode in PollMode::ALL {
                p.requests.with_label_values(&[n, mode.as_str()]);
                p.records.with_label_values(&[n, mode.as_str()]);
            }
            for reason in RetryReason::ALL {
                u.retries.with_label_values(&[n, reason.as_str()]);
            }
            for reason in PollFailure::ALL {
                p.failures.with_label_values(&[n, reason.as_str()]);
            }
            for op in Op::ALL {
                p.changes_detected.with_label_values(&[n, op.as_str()]);
                self.publishing
                    .events_published
                    .with_label_values(&[n, op.as_str()]);
            }
            for f in Format::ALL {
                self.exports.rows.with_label_values(&[n, f.as_str()]);
                self.exports.duration.with_label_values(&[n, f.as_str()]);
            }
            p.duration.with_label_values(&[n]);
            // The status label is only known per answer; 200 is the one every healthy setup sees.
            for op in [Operation::List, Operation::Get] {
                u.request_duration
                    .with_label_values(&[n, op.as_str(), "200"]);
            }
        }
    }

    // Daftra.

    /// One answer (or transport failure, `status` "error") of a Daftra request.
    pub fn upstream_request(&self, resource: &str, op: Operation, status: &str, took: Duration) {
        self.upstream
            .request_duration
            .with_label_values(&[resource, op.as_str(), status])
            .observe(took.as_secs_f64());
    }

    /// A Daftra request about to be retried.
    pub fn upstream_retry(&self, resource: &str, reason: RetryReason) {
        self.upstream
            .retries
            .with_label_values(&[resource, reason.as_str()])
            .inc();
    }

    /// A list page read.
    pub fn page_fetched(&self, resource: &str) {
        self.upstream
            .pages_fetched
            .with_label_values(&[resource])
            .inc();
    }

    /// A record that could not be normalised (it keeps its previous snapshot).
    pub fn invalid_record(&self, resource: &str) {
        self.upstream
            .invalid_records
            .with_label_values(&[resource])
            .inc();
    }

    /// A value kept as text because it was not of its documented type.
    pub fn unreadable_value(&self, resource: &str) {
        self.upstream
            .unreadable_values
            .with_label_values(&[resource])
            .inc();
    }

    // Polls.

    /// A poll ended, either way, after `took`; `available` is whether the account could read the
    /// resource (not a 401, 403 or 404 on its list).
    pub fn poll_ended(&self, resource: &str, took: Duration, available: bool) {
        self.polls
            .duration
            .with_label_values(&[resource])
            .observe(took.as_secs_f64());
        self.upstream
            .resource_available
            .with_label_values(&[resource])
            .set(i64::from(available));
    }

    /// The last successful poll of `resource` ended at `unix_secs`.
    pub fn poll_succeeded_at(&self, resource: &str, unix_secs: f64) {
        self.polls
            .last_success
            .with_label_values(&[resource])
            .set(unix_secs);
    }

    /// A poll failed; it changed nothing.
    pub fn poll_failed(&self, resource: &str, reason: PollFailure) {
        self.polls
            .failures
            .with_label_values(&[resource, reason.as_str()])
            .inc();
    }

    /// A scan proved itself complete: its page count and records.
    pub fn scan_complete(&self, resource: &str, page_count: u64, records: usize) {
        self.upstream
            .scan_pages
            .with_label_values(&[resource])
            .set(page_count as i64);
        self.upstream
            .scan_records
            .with_label_values(&[resource])
            .set(records as i64);
    }

    /// A successful poll of `resource` in `mode` made `requests` Daftra requests and read
    /// `records` records.
    pub fn poll_read(&self, resource: &str, mode: PollMode, requests: u64, records: usize) {
        let labels = [resource, mode.as_str()];
        self.polls
            .requests
            .with_label_values(&labels)
            .inc_by(requests);
        self.polls
            .records
            .with_label_values(&labels)
            .inc_by(records as u64);
    }

    /// A full scan of `resource` found `n` changes the incremental polls before it missed.
    pub fn incremental_missed(&self, resource: &str, n: usize) {
        self.polls
            .incremental_missed
            .with_label_values(&[resource])
            .inc_by(n as u64);
    }

    /// A scan could not prove itself complete: no deletes were applied.
    pub fn scan_incomplete(&self, resource: &str) {
        self.polls
            .incomplete_scans
            .with_label_values(&[resource])
            .inc();
    }

    /// `n` changes of kind `op` found by a poll.
    pub fn changes_detected(&self, resource: &str, op: Op, n: usize) {
        self.polls
            .changes_detected
            .with_label_values(&[resource, op.as_str()])
            .inc_by(n as u64);
    }

    // The outbox and RabbitMQ.

    /// Events awaiting a publisher confirm (`bridge_outbox_pending`), as the outbox counts them.
    pub fn set_outbox_pending(&self, n: i64) {
        self.publishing.outbox_pending.set(n);
    }

    /// `n` events appended to (positive) or confirmed out of (negative) the outbox.
    pub fn outbox_moved(&self, n: i64) {
        self.publishing.outbox_pending.add(n);
    }

    /// Events awaiting a publisher confirm, as last counted.
    pub fn outbox_pending(&self) -> i64 {
        self.publishing.outbox_pending.get()
    }

    /// An event confirmed by the broker and routed to a queue.
    pub fn event_published(&self, resource: &str, op: Op) {
        self.publishing
            .events_published
            .with_label_values(&[resource, op.as_str()])
            .inc();
    }

    /// An event the broker returned as unroutable (no queue bound).
    pub fn event_unroutable(&self, resource: &str) {
        self.publishing
            .events_unroutable
            .with_label_values(&[resource])
            .inc();
    }

    /// A publish attempt, or a connection attempt, that failed.
    pub fn publish_failed(&self, reason: PublishFailure) {
        self.publishing
            .failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The AMQP connection's state: open and usable, and whether the broker blocks publishers.
    pub fn broker_state(&self, connected: bool, blocked: bool) {
        self.publishing.broker_connected.set(i64::from(connected));
        self.publishing.broker_blocked.set(i64::from(blocked));
    }

    /// An event was parked by `sink` for `reason`.
    pub fn event_parked(&self, sink: Sink, reason: ParkReason) {
        self.publishing
            .parked_total
            .with_label_values(&[sink.as_str(), reason.as_str()])
            .inc();
    }

    /// Events parked now for `sink`, as the store counts them.
    pub fn set_parked(&self, sink: Sink, n: u64) {
        self.publishing
            .parked
            .with_label_values(&[sink.as_str()])
            .set(n as i64);
    }

    // Leadership and the store.

    /// Whether this replica leads, as it starts or stops leading without a contest (SQLite).
    pub fn set_leader(&self, leading: bool) {
        self.leadership.leader.set(i64::from(leading));
    }

    /// This replica took or lost the leadership.
    pub fn leadership_changed(&self, change: LeadershipChange) {
        self.set_leader(change == LeadershipChange::Acquired);
        self.leadership
            .changes
            .with_label_values(&[change.as_str()])
            .inc();
    }

    /// Whether the store answered its last check.
    pub fn set_store_up(&self, up: bool) {
        self.leadership.store_up.set(i64::from(up));
    }

    // Exports.

    /// An export ended after writing `rows` rows in `took`, with `truncated` XLSX cells cut at
    /// Excel's limit.
    pub fn export_finished(
        &self,
        export: &str,
        format: Format,
        (rows, truncated): (u64, u64),
        took: Duration,
    ) {
        let labels = [export, format.as_str()];
        self.exports.rows.with_label_values(&labels).inc_by(rows);
        self.exports
            .duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        if truncated > 0 {
            self.exports
                .cells_truncated
                .with_label_values(&[export])
                .inc_by(truncated);
        }
    }

    // HTTP.

    /// One HTTP request served: its route template (never a raw path), method and status.
    pub fn http_request(&self, route: &str, method: &str, status: u16, key: &str, took: Duration) {
        self.http
            .requests
            .with_label_values(&[route, method, &status.to_string(), key])
            .inc();
        self.http
            .request_duration
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }

    /// A request refused for its credentials.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.http
            .auth_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    // Webhooks.

    /// Exports the series of webhook endpoint `id` (at zero when new) with its disabled state.
    pub fn endpoint_seen(&self, id: &str, disabled: bool) {
        for outcome in DeliveryOutcome::ALL {
            self.webhooks
                .deliveries
                .with_label_values(&[id, outcome.as_str()]);
        }
        self.webhooks.attempt_duration.with_label_values(&[id]);
        self.webhooks.pending.with_label_values(&[id]);
        self.webhooks
            .disabled
            .with_label_values(&[id])
            .set(i64::from(disabled));
    }

    /// Drops the series of a deleted endpoint.
    pub fn forget_endpoint(&self, id: &str) {
        for outcome in DeliveryOutcome::ALL {
            let _ = self
                .webhooks
                .deliveries
                .remove_label_values(&[id, outcome.as_str()]);
        }
        let _ = self.webhooks.attempt_duration.remove_label_values(&[id]);
        let _ = self.webhooks.pending.remove_label_values(&[id]);
        let _ = self.webhooks.disabled.remove_label_values(&[id]);
    }

    /// Events waiting for endpoint `id`.
    pub fn endpoint_pending(&self, id: &str, n: u64) {
        self.webhooks.pending.with_label_values(&[id]).set(n as i64);
    }

    /// One delivery attempt to endpoint `id`.
    pub fn delivery_attempted(&self, id: &str, outcome: DeliveryOutcome, took: Duration) {
        self.webhooks
            .deliveries
            .with_label_values(&[id, outcome.as_str()])
            .inc();
        self.webhooks
            .attempt_duration
            .with_label_values(&[id])
            .observe(took.as_secs_f64());
    }
}
