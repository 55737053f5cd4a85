//! Delivery: retries keep the event id and a record's order, 410 and a failed schedule disable an
//! endpoint, a dead endpoint holds back nothing else, and SIGKILL mid-retry loses nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    fields, free_port, metric, spawn_app, sqlite_url, unique, wait_for, Bridge, BridgeEnv,
    EventQueue, Options, Running, SIM_API_KEY,
};

use super::{admin_opts, Receiver, ADMIN, WAIT};

#[tokio::test]
async fn failed_attempts_are_retried_with_one_id_and_one_records_events_stay_in_order() {
    let app = spawn_app(admin_opts()).await;
    let rx = Receiver::start().await;
    let (id, _) = app
        .endpoint(&rx.url, Some(json!(["work_order.updated"])))
        .await;
    app.poll().await;
    rx.answer(&[500, 503]);
    app.sim.state.update(3, fields(json!({"title": "first"})));
    app.poll().await;
    // A second change of the same record while the first is still being retried.
    wait_for(async || !rx.log().is_empty(), WAIT, "the first attempt").await;
    app.sim.state.update(3, fields(json!({"title": "second"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 2,
        WAIT,
        "both events delivered",
    )
    .await;
    let log = rx.log();
    let first_id = &log[0].id;
    assert_eq!(
        log.iter()
            .map(|d| (d.id == *first_id, d.answered))
            .collect::<Vec<_>>(),
        [(true, 500), (true, 503), (true, 200), (false, 200)],
        "retries keep the id, and the record's second event waits behind its first"
    );
    assert!(log[3].body.contains("second"));
    let attempts = app.deliveries(&id).await;
    let mut seen: Vec<(u64, Value)> = attempts
        .iter()
        .filter(|a| a["event_id"] == first_id.as_str())
        .map(|a| (a["attempt"].as_u64().unwrap(), a["status"].clone()))
        .collect();
    seen.sort_by_key(|a| a.0);
    assert_eq!(seen, [(1, json!(500)), (2, json!(503)), (3, json!(200))]);
    assert!(attempts
        .iter()
        .any(|a| a["outcome"] == "retrying" && a["next_attempt_at"].is_string()));
    let m = app.metrics().await;
    let series = |o: &str| {
        metric(
            &m,
            &format!("bridge_webhook_deliveries_total{{endpoint=\"{id}\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(
        (series("rejected"), series("delivered")),
        (Some(2.0), Some(2.0))
    );
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_an_endpoint_and_re_enabling_resumes_it() {
    let app = spawn_app(admin_opts()).await;
    let rx = Receiver::start().await;
    let (id, _) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    rx.answer(&[410]);
    app.sim.state.update(5, fields(json!({"title": "gone"})));
    app.poll().await;
    let path = format!("/webhooks/endpoints/{id}");
    wait_for(
        async || app.admin(reqwest::Method::GET, &path, None).await.1["disabled"] == true,
        WAIT,
        "410 disables the endpoint",
    )
    .await;
    let (_, shown) = app.admin(reqwest::Method::GET, &path, None).await;
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    assert_eq!(shown["pending"], 1, "the event waits");
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(status["webhooks"][0]["disabled"], true, "{status}");
    assert!(status["webhooks"][0]["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    wait_for(
        async || {
            metric(
                &app.metrics().await,
                &format!("bridge_webhook_endpoint_disabled{{endpoint=\"{id}\"}}"),
            ) == Some(1.0)
        },
        WAIT,
        "the disabled gauge",
    )
    .await;
    // Bounded: nothing marks an attempt not made; 600 ms is three intervals of the 0.2 s schedule.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.log().len(), 1, "no attempt while disabled");
    let (status, _) = app
        .admin(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    wait_for(
        async || rx.accepted().len() == 1,
        WAIT,
        "the waiting event after re-enabling",
    )
    .await;
    assert_eq!(rx.accepted()[0].id, rx.log()[0].id);
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_the_whole_schedule_is_disabled() {
    let app = spawn_app(Options {
        webhook_schedule: Some("0.1,0.1".into()),
        ..admin_opts()
    })
    .await;
    let rx = Receiver::start().await;
    rx.answer(&[500; 10]);
    let (id, _) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    app.sim
        .state
        .update(2, fields(json!({"title": "never accepted"})));
    app.poll().await;
    let path = format!("/webhooks/endpoints/{id}");
    wait_for(
        async || app.admin(reqwest::Method::GET, &path, None).await.1["disabled"] == true,
        WAIT,
        "disabled after the schedule",
    )
    .await;
    assert_eq!(rx.log().len(), 3, "one attempt and two retries");
    let (_, shown) = app.admin(reqwest::Method::GET, &path, None).await;
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("retry schedule"),
        "{shown}"
    );
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dead_endpoint_holds_back_neither_a_healthy_one_nor_rabbitmq() {
    let app = spawn_app(admin_opts()).await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    let (dead, healthy) = (Receiver::start().await, Receiver::start().await);
    dead.hang(true);
    let (dead_id, _) = app.endpoint(&dead.url, None).await;
    let (_healthy_id, _) = app.endpoint(&healthy.url, None).await;
    app.poll().await;
    for id in 1..=20 {
        app.sim
            .state
            .update(id, fields(json!({"title": format!("burst {id}")})));
    }
    app.poll().await;
    let published = queue.take(20, Duration::from_secs(20)).await;
    assert_eq!(published.len(), 20, "RabbitMQ got every event");
    wait_for(
        async || healthy.accepted().len() == 20,
        WAIT,
        "the healthy endpoint got every event",
    )
    .await;
    assert!(dead.log().is_empty(), "the dead endpoint answered nothing");
    let (_, shown) = app
        .admin(
            reqwest::Method::GET,
            &format!("/webhooks/endpoints/{dead_id}"),
            None,
        )
        .await;
    assert_eq!(shown["pending"], 20, "{shown}");
    assert_eq!(
        app.state.store.outbox_len().unwrap(),
        0,
        "RabbitMQ confirmed its part"
    );
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            &format!("bridge_webhook_pending{{endpoint=\"{dead_id}\"}}")
        ),
        Some(20.0)
    );
    queue.close().await;
    healthy.stop().await;
    app.stop().await;
}

/// `serve` against the simulator at `sim_url`, on the SQLite file `db` and HTTP `port`, with the
/// admin API, loopback targets allowed and retries every half second; polls only on demand.
fn start_bridge(sim_url: &str, db: &std::path::Path, exchange: &str, port: u16) -> Running {
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", sqlite_url(db))
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("RUST_LOG", "warn")
        .set("AMQP_URL", crate::helpers::amqp_url())
        .set("AMQP_EXCHANGE", exchange)
        .set("POLL_INTERVAL_SECS", "3600")
        .set("ADMIN_TOKEN", ADMIN)
        .set("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        .set(
            "WEBHOOK_RETRY_SCHEDULE_SECS",
            "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
        );
    Bridge::new(&["serve"], &env).spawn()
}

#[tokio::test]
async fn sigkill_mid_retry_loses_nothing_and_the_restart_resumes() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 12,
        ..Default::default()
    })
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("bridge.sqlite3");
    let exchange = unique("webhook-crash");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    crate::helpers::declare_exchange(&exchange).await;
    let rx = Receiver::start().await;
    rx.answer(&[500; 1000]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let status = async || -> Option<Value> {
        http.get(format!("{base}/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    };

    let first = start_bridge(&sim.base_url, &db_path, &exchange, port);
    wait_for(
        async || {
            status()
                .await
                .is_some_and(|s| s["resources"]["work_orders"]["last_outcome"] == "baseline")
        },
        WAIT,
        "baseline",
    )
    .await;
    let created: Value = http
        .post(format!("{base}/webhooks/endpoints"))
        .bearer_auth(ADMIN)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    sim.state
        .update(4, fields(json!({"title": "changed before the crash"})));
    let r = http
        .post(format!("{base}/poll/work_orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for(async || rx.log().len() >= 2, WAIT, "two failed attempts").await;
    drop(first); // SIGKILL, with the event between two retries
    let failed_id = rx.log()[0].id.clone();
    rx.answer_ok();

    let _second = start_bridge(&sim.base_url, &db_path, &exchange, port);
    wait_for(
        async || !rx.accepted().is_empty(),
        WAIT,
        "the delivery after the restart",
    )
    .await;
    assert_eq!(
        rx.accepted()[0].id,
        failed_id,
        "the same event, with its id"
    );
    let deliveries: Value = http
        .get(format!("{base}/webhooks/endpoints/{id}/deliveries"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = &deliveries["deliveries"][0];
    assert_eq!(last["status"], 200, "{deliveries}");
    assert!(
        last["attempt"].as_u64().unwrap() >= 3,
        "the attempt count survived: {deliveries}"
    );
    // Nothing is left in the endpoint's queue: a second delivery would have been sent by then.
    wait_for(
        async || {
            let shown: Option<Value> = async {
                let r = http
                    .get(format!("{base}/webhooks/endpoints/{id}"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .ok()?;
                r.json().await.ok()
            }
            .await;
            shown.is_some_and(|e| e["pending"] == 0)
        },
        WAIT,
        "nothing pending for the endpoint",
    )
    .await;
    assert_eq!(rx.accepted().len(), 1, "delivered once it was accepted");
    rx.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn at_most_webhook_max_in_flight_requests_reach_one_endpoint_at_once() {
    let receiver = Receiver::start().await;
    receiver.slow(200);
    let app = spawn_app(Options {
        records: 45,
        extra: vec![("WEBHOOK_MAX_IN_FLIGHT", "3".into())],
        ..admin_opts()
    })
    .await;
    app.endpoint(&receiver.url, None).await;
    app.poll().await;
    for id in 1..=20 {
        app.sim
            .state
            .update(id, fields(json!({"title": format!("in flight {id}")})));
    }
    app.poll().await;
    wait_for(
        async || receiver.accepted().len() == 20,
        WAIT,
        "20 deliveries",
    )
    .await;
    let most = receiver.most_in_flight();
    assert!(most <= 3, "{most} requests at once to one endpoint");
    assert!(most >= 2, "deliveries still go out in parallel ({most})");
    app.stop().await;
}
