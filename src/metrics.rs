//! Prometheus metrics (README "Operating it" and "Monitoring"), registered on one registry.
//! Every metric's name, help and labels are declared in this file; the rest of the bridge
//! reports what it observed through the typed methods of [`Metrics`] (in `metrics/`), whose label
//! values are enums ([`labels`]), never text spelled at the call site.
//! Label values come from small fixed sets (resource names, operations, reasons), never ids.

mod labels;
mod record;

pub use labels::{
    AuthFailure, DeliveryOutcome, LeadershipChange, Operation, ParkReason, PollFailure, PollMode,
    PublishFailure, RetryReason, Sink,
};

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Buckets from 5 ms to 30 minutes: upstream calls take milliseconds, polls and exports minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0,
];

/// Buckets of one webhook attempt: a local receiver answers in a millisecond, the timeout is
/// at most 300 s.
const WEBHOOK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric of the bridge, by area. Cheap to clone (the collectors are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    upstream: Upstream,
    polls: Polls,
    publishing: Publishing,
    leadership: Leadership,
    exports: Exports,
    http: Http,
    webhooks: Webhooks,
}

/// Requests to Daftra and what its answers held.
#[derive(Clone)]
struct Upstream {
    /// Seconds per Daftra request; labels `resource`, `operation` ([`Operation`]), `status`.
    request_duration: HistogramVec,
    pages_fetched: IntCounterVec,
    scan_pages: IntGaugeVec,
    scan_records: IntGaugeVec,
    retries: IntCounterVec,
    /// Records Daftra sent that could not be normalised (kept at their previous snapshot).
    invalid_records: IntCounterVec,
    /// Values that could not be read as their column's kind and were kept as text.
    unreadable_values: IntCounterVec,
    /// 1 while the account can read the resource, 0 after a 401/403/404 on its list.
    resource_available: IntGaugeVec,
}

/// Polls and the changes they found.
#[derive(Clone)]
struct Polls {
    duration: HistogramVec,
    last_success: GaugeVec,
    failures: IntCounterVec,
    changes_detected: IntCounterVec,
    incomplete_scans: IntCounterVec,
    /// Daftra requests of successful polls; labels `resource`, `mode` ([`PollMode`]).
    requests: IntCounterVec,
    /// Records read by successful polls; labels `resource`, `mode`.
    records: IntCounterVec,
    /// Changes a full scan found that the incremental polls since the last one missed.
    incremental_missed: IntCounterVec,
}

/// The outbox and the RabbitMQ sink.
#[derive(Clone)]
struct Publishing {
    events_published: IntCounterVec,
    events_unroutable: IntCounterVec,
    failures: IntCounterVec,
    outbox_pending: IntGauge,
    /// 1 while the AMQP connection is up and not blocked.
    broker_connected: IntGauge,
    /// 1 while the broker blocks publishers.
    broker_blocked: IntGauge,
    /// Events set aside because their sink refused them for good, by sink and reason.
    parked_total: IntCounterVec,
    /// Events parked now, by sink.
    parked: IntGaugeVec,
}

/// This replica's part and its store.
#[derive(Clone)]
struct Leadership {
    /// 1 while this replica leads (polls and publishes), 0 while it follows.
    leader: IntGauge,
    /// Times this replica took or lost the leadership; label `change` ([`LeadershipChange`]).
    changes: IntCounterVec,
    /// 1 while the store answers, 0 while it is unreachable.
    store_up: IntGauge,
}

/// Spreadsheet exports.
#[derive(Clone)]
struct Exports {
    rows: IntCounterVec,
    duration: HistogramVec,
    /// XLSX text cells cut at Excel's 32,767-unit limit.
    cells_truncated: IntCounterVec,
}

/// The HTTP API.
#[derive(Clone)]
struct Http {
    /// HTTP requests served, by route template (never a raw path), method, status and the
    /// caller's key name (bounded by the keys an operator makes).
    requests: IntCounterVec,
    request_duration: HistogramVec,
    /// Refused authentications by reason ([`AuthFailure`]).
    auth_failures: IntCounterVec,
}

/// Outgoing webhooks, by endpoint id.
#[derive(Clone)]
struct Webhooks {
    /// Delivery attempts by endpoint id and outcome ([`DeliveryOutcome`]).
    deliveries: IntCounterVec,
    /// Seconds per delivery attempt.
    attempt_duration: HistogramVec,
    /// Events waiting for an endpoint (its queue and the outbox past its cursor).
    pending: IntGaugeVec,
    /// 1 while an endpoint is disabled (410 Gone, retries exhausted, or the operator).
    disabled: IntGaugeVec,
}

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

impl Upstream {
    fn register(r: &Registry) -> Self {
        Upstream {
            request_duration: histogram(
                r,
                "daftra_api_request_duration_seconds",
                "Duration in seconds of requests to the Daftra API.",
                &["resource", "operation", "status"],
            ),
            pages_fetched: counter(r, "daftra_api_pages_fetched_total", "List pages read from Daftra.", &["resource"]),
            scan_pages: int_gauge_vec(r, "daftra_api_scan_pages", "page_count of the last complete scan.", &["resource"]),
            scan_records: int_gauge_vec(r, "daftra_api_scan_records", "Records in the last complete scan.", &["resource"]),
            retries: counter(r, "daftra_api_retries_total", "Retried Daftra requests by reason.", &["resource", "reason"]),
            invalid_records: counter(
                r,
                "daftra_api_invalid_records_total",
                "Records that could not be normalised and kept their previous snapshot.",
                &["resource"],
            ),
            unreadable_values: counter(
                r,
                "daftra_api_unreadable_values_total",
                "Field values Daftra sent that could not be read as their documented type; kept as text.",
                &["resource"],
            ),
            resource_available: int_gauge_vec(
                r,
                "bridge_resource_available",
                "1 while the Daftra account can read the resource, 0 while its list answers 401, 403 or 404.",
                &["resource"],
            ),
        }
    }
}

impl Polls {
    fn register(r: &Registry) -> Self {
        Polls {
            duration: histogram(
                r,
                "bridge_poll_duration_seconds",
                "Duration in seconds of one poll.",
                &["resource"],
            ),
            last_success: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "bridge_poll_last_success_timestamp_seconds",
                        "Unix time in seconds of the last successful poll.",
                    ),
                    &["resource"],
                )
                .expect("valid metric"),
            ),
            failures: counter(
                r,
                "bridge_poll_failures_total",
                "Failed polls by reason.",
                &["resource", "reason"],
            ),
            changes_detected: counter(
                r,
                "bridge_changes_detected_total",
                "Changes found by the diff.",
                &["resource", "op"],
            ),
            incomplete_scans: counter(
                r,
                "bridge_poll_incomplete_scans_total",
                "Scans that could not prove completeness; no deletes were applied.",
                &["resource"],
            ),
            requests: counter(
                r,
                "bridge_poll_requests_total",
                "Daftra requests made by successful polls, by mode (full scan or incremental).",
                &["resource", "mode"],
            ),
            records: counter(
                r,
                "bridge_poll_records_total",
                "Records read from Daftra by successful polls, by mode (full scan or incremental).",
                &["resource", "mode"],
            ),
            incremental_missed: counter(
                r,
                "bridge_incremental_missed_total",
                "Changes a full scan found that the incremental polls since the previous full scan missed.",
                &["resource"],
            ),
        }
    }
}

impl Publishing {
    fn register(r: &Registry) -> Self {
        let p = Publishing {
            events_published: counter(
                r,
                "bridge_events_published_total",
                "Events confirmed by the broker and routed.",
                &["resource", "op"],
            ),
            events_unroutable: counter(
                r,
                "bridge_events_unroutable_total",
                "Events the broker returned as unroutable (no queue bound).",
                &["resource"],
            ),
            failures: counter(
                r,
                "bridge_publish_failures_total",
                "Publish attempts that failed (nack, confirm timeout, connection); the event stays in the outbox.",
                &["reason"],
            ),
            outbox_pending: int_gauge(r, "bridge_outbox_pending", "Events in the outbox awaiting a publisher confirm."),
            broker_connected: int_gauge(
                r,
                "bridge_broker_connected",
                "1 while the AMQP connection is open and not blocked by the broker, else 0.",
            ),
            broker_blocked: int_gauge(
                r,
                "bridge_broker_blocked",
                "1 while RabbitMQ blocks publishers (memory or disk alarm), else 0.",
            ),
            parked_total: counter(
                r,
                "bridge_events_parked_total",
                "Events set aside because their sink refused them for good (kept; retry or drop them through /outbox/parked).",
                &["sink", "reason"],
            ),
            parked: int_gauge_vec(
                r,
                "bridge_events_parked",
                "Events parked now, by sink: kept, not delivered, waiting for an operator.",
                &["sink"],
            ),
        };
        for reason in PublishFailure::ALL {
            p.failures.with_label_values(&[reason.as_str()]);
        }
        for sink in Sink::ALL {
            p.parked.with_label_values(&[sink.as_str()]);
            for reason in ParkReason::ALL {
                p.parked_total
                    .with_label_values(&[sink.as_str(), reason.as_str()]);
            }
        }
        p
    }
}

impl Leadership {
    fn register(r: &Registry) -> Self {
        let l = Leadership {
            leader: int_gauge(
                r,
                "bridge_leader",
                "1 while this replica is the leader (polls and publishes), 0 while it follows.",
            ),
            changes: counter(
                r,
                "bridge_leadership_changes_total",
                "Times this replica took (change=acquired) or lost (change=lost) the leadership.",
                &["change"],
            ),
            store_up: int_gauge(
                r,
                "bridge_store_up",
                "1 while the store (SQLite or PostgreSQL) answers, 0 while it cannot be reached.",
            ),
        };
        for change in LeadershipChange::ALL {
            l.changes.with_label_values(&[change.as_str()]);
        }
        l
    }
}

impl Exports {
    fn register(r: &Registry) -> Self {
        Exports {
            rows: counter(
                r,
                "bridge_export_rows_total",
                "Rows written to exports.",
                &["resource", "format"],
            ),
            duration: histogram(
                r,
                "bridge_export_duration_seconds",
                "Duration in seconds of one export.",
                &["resource", "format"],
            ),
            cells_truncated: counter(
                r,
                "bridge_export_cells_truncated_total",
                "XLSX text cells cut at Excel's limit of 32,767 UTF-16 units per cell.",
                &["resource"],
            ),
        }
    }
}

impl Http {
    fn register(r: &Registry) -> Self {
        let http = Http {
            requests: counter(
                r,
                "bridge_http_requests_total",
                "HTTP requests served, by route template and caller: an access key's name, `export_token`, `link` (a signed link) or `anonymous`.",
                &["route", "method", "status", "key"],
            ),
            auth_failures: counter(
                r,
                "bridge_http_auth_failures_total",
                "Requests refused for their credentials (401, 403, 410), by reason.",
                &["reason"],
            ),
            request_duration: histogram(
                r,
                "bridge_http_request_duration_seconds",
                "Duration in seconds of HTTP requests, by route template.",
                &["route", "method"],
            ),
        };
        for reason in AuthFailure::ALL {
            http.auth_failures.with_label_values(&[reason.as_str()]);
        }
        http
    }
}

impl Webhooks {
    fn register(r: &Registry) -> Self {
        let attempt_duration = HistogramOpts::new(
            "bridge_webhook_attempt_duration_seconds",
            "Duration in seconds of one webhook delivery attempt.",
        )
        .buckets(WEBHOOK_BUCKETS.to_vec());
        Webhooks {
            deliveries: counter(
                r,
                "bridge_webhook_deliveries_total",
                "Webhook delivery attempts by endpoint and outcome.",
                &["endpoint", "outcome"],
            ),
            attempt_duration: register(
                r,
                HistogramVec::new(attempt_duration, &["endpoint"]).expect("valid metric"),
            ),
            pending: int_gauge_vec(
                r,
                "bridge_webhook_pending",
                "Events waiting for a webhook endpoint.",
                &["endpoint"],
            ),
            disabled: int_gauge_vec(
                r,
                "bridge_webhook_endpoint_disabled",
                "1 while a webhook endpoint is disabled, else 0.",
                &["endpoint"],
            ),
        }
    }
}

fn build_info(r: &Registry) {
    let info = register(
        r,
        Gauge::with_opts(
            Opts::new("bridge_build_info", "Always 1; the version is a label.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric"),
    );
    info.set(1.0);
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
        build_info(&r);
        Metrics {
            upstream: Upstream::register(&r),
            polls: Polls::register(&r),
            publishing: Publishing::register(&r),
            leadership: Leadership::register(&r),
            exports: Exports::register(&r),
            http: Http::register(&r),
            webhooks: Webhooks::register(&r),
            registry: r,
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
