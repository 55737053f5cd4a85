//! Metrics, health, readiness and status.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{free_port, metric, spawn_app, tool, Options};

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
            "bridge_http_requests_total{key=\"anonymous\",method=\"GET\",route=\"/exports/{file}\",status=\"200\"} 1"
        ),
        "route templates, not raw paths"
    );
    app.stop().await;

    // The exposition format, checked by Prometheus's own linter.
    if !tool("promtool") {
        return;
    }
    let out = std::process::Command::new("promtool")
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
        .expect("promtool check metrics runs");
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

#[tokio::test]
async fn readiness_means_exports_can_be_served_and_status_reports_the_last_poll() {
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
    // The broker connection is made beside the poll, not before it: wait for it.
    let mut broker = status["broker"].clone();
    for _ in 0..100 {
        if broker == "connected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status: Value = app.get("/status").await.json().await.unwrap();
        broker = status["broker"].clone();
    }
    assert_eq!(broker, "connected");
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

    // A broker that does not answer: exports go on (ready), and the broker's state is named.
    let port = free_port();
    let app = spawn_app(Options {
        amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{port}/%2f")),
        ..Default::default()
    })
    .await;
    app.poll().await;
    let mut named = false;
    for _ in 0..50 {
        let resp = app.get("/readyz").await;
        assert_eq!(resp.status(), 200, "a broker outage does not stop exports");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["components"]["store"]["state"], "ok", "{body}");
        assert_eq!(body["components"]["daftra"]["snapshot"], true, "{body}");
        let broker = &body["components"]["broker"];
        assert_eq!(broker["state"], "disconnected", "{body}");
        if broker["message"].as_str().is_some_and(|m| !m.is_empty()) {
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
    let settings = Options::without_publisher()
        .env(&app.sim.base_url, app._db.path())
        .settings();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let again =
        daftra_bridge::startup::Application::build_with_listener(settings, listener).unwrap();
    let status = again.state.health.status.snapshot();
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

#[tokio::test]
async fn readiness_needs_a_snapshot_or_a_recent_answer_from_daftra() {
    // A key Daftra refuses: no snapshot and no answer, so exports cannot be served.
    let app = spawn_app(Options {
        auth: Some(daftra_bridge::config::DaftraAuth::ApiKey(
            daftra_bridge::config::Secret::new("a-key-daftra-refuses"),
        )),
        ..Options::without_publisher()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = app.get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["problems"][0]["component"], "daftra", "{body}");
    // Daftra answered 401: the account's credentials are refused (not "no answer").
    assert_eq!(body["components"]["daftra"]["state"], "refused", "{body}");
    assert_eq!(body["components"]["store"]["state"], "ok");
    app.stop().await;

    // The same bridge with the right key is ready once Daftra answered, before any snapshot.
    let app = spawn_app(Options::without_publisher()).await;
    let mut ready = false;
    for _ in 0..50 {
        let body: Value = app.get("/readyz").await.json().await.unwrap();
        if body["status"] == "ready" {
            assert_eq!(body["components"]["daftra"]["state"], "ok", "{body}");
            assert_eq!(body["components"]["daftra"]["snapshot"], false, "{body}");
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready once Daftra answers");
    app.stop().await;
}

async fn broker_state(app: &crate::helpers::TestApp, want: &str) -> (Value, Value) {
    for _ in 0..100 {
        let status: Value = app.get("/status").await.json().await.unwrap();
        if status["broker"] == want {
            let ready: Value = app.get("/readyz").await.json().await.unwrap();
            return (status, ready);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the broker never became {want}");
}

#[tokio::test]
async fn a_broker_that_refuses_is_reported_naming_the_variable_to_fix() {
    let wrong_password =
        crate::helpers::amqp_url().replace("guest:guest@", "guest:not-the-password@");
    let app = spawn_app(Options {
        amqp_url: Some(wrong_password),
        ..Default::default()
    })
    .await;
    let (status, ready) = broker_state(&app, "refused").await;
    let message = ready["components"]["broker"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("AMQP_URL") && message.contains("ACCESS_REFUSED"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-password") && !status.to_string().contains("not-the-password")
    );
    assert_eq!(ready["components"]["broker"]["state"], "refused");
    app.stop().await;

    // An exchange that exists with another type.
    let exchange = crate::helpers::unique("fanout");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    let conn = daftra_bridge::sinks::amqp::connect(&daftra_bridge::config::Secret::new(
        crate::helpers::amqp_url(),
    ))
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        &exchange,
        lapin::ExchangeKind::Fanout,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap();
    let app = spawn_app(Options {
        amqp_exchange: Some(exchange.clone()),
        ..Default::default()
    })
    .await;
    let (_, ready) = broker_state(&app, "refused").await;
    let message = ready["components"]["broker"]["message"].as_str().unwrap();
    assert!(
        message.contains("AMQP_EXCHANGE") && message.contains("PRECONDITION_FAILED"),
        "{message}"
    );
    app.stop().await;
    let _ = ch.exchange_delete(&exchange, Default::default()).await;
    let _ = conn.close(200, "done").await;
}
