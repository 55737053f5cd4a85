//! Metrics, health, readiness and status.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{metric, spawn_app, Options};

const CONTRACT_METRICS: &[&str] = &[
    "daftra_api_request_duration_seconds",
    "daftra_api_pages_fetched_total",
    "daftra_api_scan_pages",
    "daftra_api_scan_records",
    "daftra_api_retries_total",
    "bridge_poll_duration_seconds",
    "bridge_poll_last_success_timestamp_seconds",
    "bridge_poll_failures_total",
    "bridge_changes_detected_total",
    "bridge_events_published_total",
    "bridge_events_unroutable_total",
    "bridge_poll_incomplete_scans_total",
    "bridge_outbox_pending",
    "bridge_export_rows_total",
    "bridge_export_duration_seconds",
];

#[tokio::test]
async fn metrics_count_the_pages_the_simulator_served() {
    let app = spawn_app(Options {
        records: 45,
        page_size: 10,
        publisher: false,
        ..Default::default()
    })
    .await;
    let before = app.metrics().await;
    for name in CONTRACT_METRICS {
        assert!(
            before.contains(&format!("# TYPE {name} ")),
            "{name} is exported from start-up"
        );
    }
    assert_eq!(
        metric(
            &before,
            "daftra_api_pages_fetched_total{resource=\"work_orders\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &before,
            "daftra_api_retries_total{reason=\"rate_limited\",resource=\"work_orders\"}"
        ),
        Some(0.0)
    );
    app.poll().await;
    app.poll().await;
    app.get("/exports/work_orders.csv")
        .await
        .bytes()
        .await
        .unwrap();
    let m = app.metrics().await;
    let served = app.sim.state.stats().pages_served as f64;
    assert_eq!(served, 10.0, "two scans of five pages");
    assert_eq!(
        metric(
            &m,
            "daftra_api_pages_fetched_total{resource=\"work_orders\"}"
        ),
        Some(served)
    );
    assert_eq!(
        metric(&m, "daftra_api_scan_pages{resource=\"work_orders\"}"),
        Some(5.0)
    );
    assert_eq!(
        metric(&m, "daftra_api_scan_records{resource=\"work_orders\"}"),
        Some(45.0)
    );
    assert_eq!(
        metric(
            &m,
            "bridge_export_rows_total{format=\"csv\",resource=\"work_orders\"}"
        ),
        Some(45.0)
    );
    assert_eq!(
        metric(
            &m,
            "bridge_poll_duration_seconds_count{resource=\"work_orders\"}"
        ),
        Some(2.0)
    );
    assert!(
        metric(
            &m,
            "bridge_poll_last_success_timestamp_seconds{resource=\"work_orders\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(m.contains("daftra_api_request_duration_seconds_bucket{operation=\"list\",resource=\"work_orders\",status=\"200\",le=\"60\"}"));
    assert!(
        m.contains(
            "bridge_http_requests_total{method=\"GET\",route=\"/exports/{file}\",status=\"200\"} 1"
        ),
        "route templates, not raw paths"
    );
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(m.as_bytes())?;
            child.wait_with_output()
        })
    {
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics: {report}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_broker_and_status_reports_the_last_poll() {
    let app = spawn_app(Options::default()).await;
    let mut ready = 0;
    for _ in 0..50 {
        ready = app.get("/readyz").await.status().as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200);
    app.poll().await;
    let status: Value = app.get("/status").await.json().await.unwrap();
    let wo = &status["resources"]["work_orders"];
    assert_eq!(wo["last_outcome"], "baseline");
    assert_eq!(wo["records"], 45);
    assert_eq!(wo["pages"], 5);
    assert_eq!(status["broker"], "connected");
    assert_eq!(
        app.http
            .post(format!("{}/poll/work_orders", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        app.http
            .post(format!("{}/poll/nothing", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.get("/poll/work_orders").await.status(),
        405,
        "wrong method"
    );
    assert_eq!(
        app.http
            .head(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;

    // A broker that does not answer: not ready, and the reason is named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = spawn_app(Options {
        amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{port}/%2f")),
        ..Default::default()
    })
    .await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["problems"][0]["component"], "broker");
    let mut named = false;
    for _ in 0..50 {
        let body: Value = app.get("/readyz").await.json().await.unwrap();
        let message = body["problems"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if message.starts_with("not connected to RabbitMQ: ") {
            named = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(named, "readiness says why the broker is unusable");
    let mut counted = 0.0;
    for _ in 0..30 {
        counted = metric(
            &app.metrics().await,
            "bridge_publish_failures_total{reason=\"connection\"}",
        )
        .unwrap_or(0.0);
        if counted >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        counted >= 2.0,
        "every failed connection attempt is counted ({counted})"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn head_works_on_every_read_route_and_a_405_says_what_is_allowed() {
    let app = spawn_app(Options::without_publisher()).await;
    // Before any poll: an explicit snapshot is refused rather than served live.
    let refused = app.get("/exports/work_orders.csv?source=snapshot").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        app.get("/exports/work_orders.csv").await.status(),
        200,
        "the default falls back to live"
    );
    app.poll().await;
    for path in [
        "/",
        "/exports",
        "/exports/work_orders.csv",
        "/exports/work_orders.xlsx",
        "/status",
        "/metrics",
        "/healthz",
    ] {
        let head = app
            .http
            .head(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
    let head = app
        .http
        .head(format!("{}/exports/work_orders.csv", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["x-data-source"], "snapshot");
    assert!(head.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let bad = app
        .http
        .head(format!("{}/exports/work_orders.csv?stauts=1", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "HEAD checks the query as GET does");
    let wrong = app
        .http
        .delete(format!("{}/exports/work_orders.csv", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET, HEAD");
    let wrong = app.get("/poll/work_orders").await;
    assert_eq!(wrong.headers()["allow"], "POST");
    app.stop().await;
}

#[tokio::test]
async fn status_after_a_restart_shows_the_last_poll_from_the_store() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    // A second bridge on the same database, as after a restart.
    let settings = crate::helpers::settings_for(&app.sim, &Options::without_publisher(), &app._db);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let again =
        daftra_bridge::startup::Application::build_with_listener(settings, listener).unwrap();
    let status = again.state.status.snapshot();
    let wo = &status["work_orders"];
    assert_eq!(wo.records, 45);
    assert_eq!(wo.last_outcome.as_deref(), Some("baseline"));
    assert!(wo.last_success.is_some());
    assert!(!wo.polling);
    let m = again.state.metrics.render();
    let at = metric(
        &m,
        "bridge_poll_last_success_timestamp_seconds{resource=\"work_orders\"}",
    )
    .unwrap();
    assert!(at > 1.0e9, "the freshness gauge survives too ({at})");
    app.stop().await;
}
