//! Prometheus metrics (README "Operating it" and "Monitoring"), in one struct registered on one registry.
//! Label values come from small fixed sets (resource names, operations, reasons), never ids.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Buckets from 5 ms to 30 minutes: upstream calls take milliseconds, polls and exports minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0,
];

/// Retry reasons of `daftra_api_retries_total`.
pub const RETRY_REASONS: &[&str] = &[
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "malformed",
];
/// Failure reasons of `bridge_poll_failures_total`.
pub const POLL_FAILURE_REASONS: &[&str] = &["upstream", "malformed", "deadline", "store"];
/// Change operations.
pub const OPS: &[&str] = &["created", "updated", "deleted"];
/// Export formats.
pub const FORMATS: &[&str] = &["csv", "xlsx"];

/// Every metric of the bridge.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Seconds per Daftra request; labels `resource`, `operation` (`list|get|token`), `status`.
    pub api_request_duration: HistogramVec,
    pub api_pages_fetched: IntCounterVec,
    pub api_scan_pages: IntGaugeVec,
    pub api_scan_records: IntGaugeVec,
    pub api_retries: IntCounterVec,
    /// Records Daftra sent that could not be normalised (kept at their previous snapshot).
    pub api_invalid_records: IntCounterVec,
    /// Values that could not be read as their column's kind and were kept as text.
    pub api_unreadable_values: IntCounterVec,
    /// 1 while the account can read the resource, 0 after a 401/403/404 on its list.
    pub resource_available: IntGaugeVec,
    pub poll_duration: HistogramVec,
    pub poll_last_success: GaugeVec,
    pub poll_failures: IntCounterVec,
    pub changes_detected: IntCounterVec,
    pub events_published: IntCounterVec,
    pub events_unroutable: IntCounterVec,
    pub publish_failures: IntCounterVec,
    pub poll_incomplete_scans: IntCounterVec,
    pub outbox_pending: IntGauge,
    /// 1 while this replica leads (polls and publishes), 0 while it follows.
    pub leader: IntGauge,
    /// Times this replica took (`acquired`) or lost (`lost`) the leadership; label `change`.
    pub leadership_changes: IntCounterVec,
    /// 1 while the store answers, 0 while it is unreachable.
    pub store_up: IntGauge,
    /// 1 while the AMQP connection is up and not blocked.
    pub broker_connected: IntGauge,
    /// 1 while the broker blocks publishers.
    pub broker_blocked: IntGauge,
    pub export_rows: IntCounterVec,
    pub export_duration: HistogramVec,
    /// XLSX text cells cut at Excel's 32,767-unit limit.
    pub export_cells_truncated: IntCounterVec,
    /// HTTP requests served, by route template (never a raw path), method and status.
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    /// Webhook delivery attempts by endpoint id and outcome ([`WEBHOOK_OUTCOMES`]).
    pub webhook_deliveries: IntCounterVec,
    /// Seconds per webhook delivery attempt, by endpoint id.
    pub webhook_attempt_duration: HistogramVec,
    /// Events waiting for an endpoint (its queue and the outbox past its cursor).
    pub webhook_pending: IntGaugeVec,
    /// 1 while an endpoint is disabled (410 Gone, retries exhausted, or the operator).
    pub webhook_disabled: IntGaugeVec,
    pub build_info: Gauge,
}

/// Outcomes of `bridge_webhook_deliveries_total`: `delivered` (2xx), `rejected` (another
/// status), `timeout`, `connection` (no answer) and `refused` (a target address not allowed).
pub const WEBHOOK_OUTCOMES: &[&str] =
    &["delivered", "rejected", "timeout", "connection", "refused"];

/// Buckets of one webhook attempt: a local receiver answers in a millisecond, the timeout is
/// at most 300 s.
const WEBHOOK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Registers `metric` on `r` and hands it back; names are fixed here, so a clash is a bug.
fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: T) -> T {
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    /// Builds and registers every metric, with the series whose labels are known set to zero.
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector");
        let poll_last_success = register(
            &r,
            GaugeVec::new(
                Opts::new(
                    "bridge_poll_last_success_timestamp_seconds",
                    "Unix time in seconds of the last successful poll.",
                ),
                &["resource"],
            )
            .expect("valid metric"),
        );
        let outbox_pending = int_gauge(
            &r,
            "bridge_outbox_pending",
            "Events in the outbox awaiting a publisher confirm.",
        );
        let leader = int_gauge(
            &r,
            "bridge_leader",
            "1 while this replica is the leader (polls and publishes), 0 while it follows.",
        );
        let leadership_changes = IntCounterVec::new(
            Opts::new(
                "bridge_leadership_changes_total",
                "Times this replica took (change=acquired) or lost (change=lost) the leadership.",
            ),
            &["change"],
        )
        .expect("valid metric");
        r.register(Box::new(leadership_changes.clone()))
            .expect("unique metric");
        for change in ["acquired", "lost"] {
            leadership_changes.with_label_values(&[change]);
        }
        let store_up = int_gauge(
            &r,
            "bridge_store_up",
            "1 while the store (SQLite or PostgreSQL) answers, 0 while it cannot be reached.",
        );
        let broker_connected = int_gauge(
            &r,
            "bridge_broker_connected",
            "1 while the AMQP connection is open and not blocked by the broker, else 0.",
        );
        let broker_blocked = int_gauge(
            &r,
            "bridge_broker_blocked",
            "1 while RabbitMQ blocks publishers (memory or disk alarm), else 0.",
        );
        let build_info = register(
            &r,
            Gauge::with_opts(
                Opts::new("bridge_build_info", "Always 1; the version is a label.")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            )
            .expect("valid metric"),
        );
        build_info.set(1.0);

        let m = Metrics {
            api_request_duration: histogram(
                &r,
                "daftra_api_request_duration_seconds",
                "Duration in seconds of requests to the Daftra API.",
                &["resource", "operation", "status"],
            ),
            api_pages_fetched: counter(&r, "daftra_api_pages_fetched_total", "List pages read from Daftra.", &["resource"]),
            api_scan_pages: int_gauge_vec(&r, "daftra_api_scan_pages", "page_count of the last complete scan.", &["resource"]),
            api_scan_records: int_gauge_vec(&r, "daftra_api_scan_records", "Records in the last complete scan.", &["resource"]),
            api_retries: counter(&r, "daftra_api_retries_total", "Retried Daftra requests by reason.", &["resource", "reason"]),
            api_invalid_records: counter(
                &r,
                "daftra_api_invalid_records_total",
                "Records that could not be normalised and kept their previous snapshot.",
                &["resource"],
            ),
            api_unreadable_values: counter(
                &r,
                "daftra_api_unreadable_values_total",
                "Field values Daftra sent that could not be read as their documented type; kept as text.",
                &["resource"],
            ),
            resource_available: int_gauge_vec(
                &r,
                "bridge_resource_available",
                "1 while the Daftra account can read the resource, 0 while its list answers 401, 403 or 404.",
                &["resource"],
            ),
            poll_duration: histogram(&r, "bridge_poll_duration_seconds", "Duration in seconds of one poll.", &["resource"]),
            poll_last_success,
            poll_failures: counter(&r, "bridge_poll_failures_total", "Failed polls by reason.", &["resource", "reason"]),
            changes_detected: counter(&r, "bridge_changes_detected_total", "Changes found by the diff.", &["resource", "op"]),
            events_published: counter(
                &r,
                "bridge_events_published_total",
                "Events confirmed by the broker and routed.",
                &["resource", "op"],
            ),
            events_unroutable: counter(
                &r,
                "bridge_events_unroutable_total",
                "Events the broker returned as unroutable (no queue bound).",
                &["resource"],
            ),
            publish_failures: counter(
                &r,
                "bridge_publish_failures_total",
                "Publish attempts that failed (nack, confirm timeout, connection); the event stays in the outbox.",
                &["reason"],
            ),
            poll_incomplete_scans: counter(
                &r,
                "bridge_poll_incomplete_scans_total",
                "Scans that could not prove completeness; no deletes were applied.",
                &["resource"],
            ),
            outbox_pending,
            leader,
            leadership_changes,
            store_up,
            broker_connected,
            broker_blocked,
            export_rows: counter(&r, "bridge_export_rows_total", "Rows written to exports.", &["resource", "format"]),
            export_duration: histogram(
                &r,
                "bridge_export_duration_seconds",
                "Duration in seconds of one export.",
                &["resource", "format"],
            ),
            export_cells_truncated: counter(
                &r,
                "bridge_export_cells_truncated_total",
                "XLSX text cells cut at Excel's limit of 32,767 UTF-16 units per cell.",
                &["resource"],
            ),
            http_requests: counter(
                &r,
                "bridge_http_requests_total",
                "HTTP requests served, by route template.",
                &["route", "method", "status"],
            ),
            http_request_duration: histogram(
                &r,
                "bridge_http_request_duration_seconds",
                "Duration in seconds of HTTP requests, by route template.",
                &["route", "method"],
            ),
            webhook_deliveries: counter(
                &r,
                "bridge_webhook_deliveries_total",
                "Webhook delivery attempts by endpoint and outcome.",
                &["endpoint", "outcome"],
            ),
            webhook_attempt_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "bridge_webhook_attempt_duration_seconds",
                        "Duration in seconds of one webhook delivery attempt.",
                    )
                    .buckets(WEBHOOK_BUCKETS.to_vec()),
                    &["endpoint"],
                )
                .expect("valid metric"),
            ),
            webhook_pending: int_gauge_vec(
                &r,
                "bridge_webhook_pending",
                "Events waiting for a webhook endpoint.",
                &["endpoint"],
            ),
            webhook_disabled: int_gauge_vec(
                &r,
                "bridge_webhook_endpoint_disabled",
                "1 while a webhook endpoint is disabled, else 0.",
                &["endpoint"],
            ),
            build_info,
            registry: r,
        };
        for reason in ["nack", "timeout", "connection"] {
            m.publish_failures.with_label_values(&[reason]);
        }
        m
    }

    /// Exports the series of webhook endpoint `id` at zero.
    pub fn init_endpoint(&self, id: &str) {
        for outcome in WEBHOOK_OUTCOMES {
            self.webhook_deliveries.with_label_values(&[id, outcome]);
        }
        self.webhook_attempt_duration.with_label_values(&[id]);
        self.webhook_pending.with_label_values(&[id]);
        self.webhook_disabled.with_label_values(&[id]);
    }

    /// Drops the series of a deleted endpoint.
    pub fn forget_endpoint(&self, id: &str) {
        for outcome in WEBHOOK_OUTCOMES {
            let _ = self.webhook_deliveries.remove_label_values(&[id, outcome]);
        }
        let _ = self.webhook_attempt_duration.remove_label_values(&[id]);
        let _ = self.webhook_pending.remove_label_values(&[id]);
        let _ = self.webhook_disabled.remove_label_values(&[id]);
    }

    /// Exports the series of each resource named in `resources` at zero, so dashboards see them
    /// before the first poll.
    pub fn init_resources(&self, resources: &[impl AsRef<str>]) {
        for n in resources {
            let n = n.as_ref();
            self.api_unreadable_values.with_label_values(&[n]);
            self.export_cells_truncated.with_label_values(&[n]);
            self.resource_available.with_label_values(&[n]).set(1);
            self.api_pages_fetched.with_label_values(&[n]);
            self.api_scan_pages.with_label_values(&[n]);
            self.api_scan_records.with_label_values(&[n]);
            self.api_invalid_records.with_label_values(&[n]);
            self.poll_last_success.with_label_values(&[n]);
            self.events_unroutable.with_label_values(&[n]);
            self.poll_incomplete_scans.with_label_values(&[n]);
            for reason in RETRY_REASONS {
                self.api_retries.with_label_values(&[n, reason]);
            }
            for reason in POLL_FAILURE_REASONS {
                self.poll_failures.with_label_values(&[n, reason]);
            }
            for op in OPS {
                self.changes_detected.with_label_values(&[n, op]);
                self.events_published.with_label_values(&[n, op]);
            }
            for f in FORMATS {
                self.export_rows.with_label_values(&[n, f]);
                self.export_duration.with_label_values(&[n, f]);
            }
            self.poll_duration.with_label_values(&[n]);
            // The status label is only known per answer; 200 is the one every healthy setup sees.
            for op in ["list", "get"] {
                self.api_request_duration.with_label_values(&[n, op, "200"]);
            }
        }
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
