//! At-least-once delivery: broker outages, nacks, shutdown and SIGKILL lose nothing.

use std::process::Command;
use std::time::Duration;

use daftra_bridge::config::Secret;
use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};

use crate::helpers::{
    amqp_url, fields, free_port, get_json, metric, spawn_app, sqlite_url, unique, wait_for,
    wait_polled_and_published, Bridge, BridgeEnv, EventQueue, Options, Running, SIM_API_KEY,
};
use crate::proxy::{broker_addr, Proxy};

/// How long a wait below may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_broker_outage_loses_no_event_and_readiness_follows_it() {
    let proxy = Proxy::start(broker_addr()).await;
    let app = spawn_app(Options {
        amqp_url: Some(proxy.amqp_url()),
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    wait_for(
        async || app.get("/readyz").await.status() == 200,
        WAIT,
        "ready",
    )
    .await;
    app.poll().await;

    proxy.cut();
    wait_for(
        async || {
            let r = app.get("/readyz").await;
            r.status() == 200
                && r.json::<Value>().await.unwrap()["components"]["broker"]["state"]
                    == "disconnected"
        },
        WAIT,
        "still ready (exports go on), with the broker shown disconnected",
    )
    .await;
    app.sim
        .state
        .update(1, fields(json!({"title": "during the outage"})));
    app.sim.state.delete(2);
    app.sim
        .state
        .create(fields(json!({"title": "new", "start_date": "2026-11-29"})));
    let connection_failures = async || {
        metric(
            &app.metrics().await,
            "bridge_publish_failures_total{reason=\"connection\"}",
        )
        .unwrap_or(0.0)
    };
    let o = app.poll().await;
    let failed_before = connection_failures().await;
    assert_eq!(o.events, 3);
    // The publisher had its chance: a connection attempt ended after the commit, and failed (one
    // that succeeded would have drained the outbox before anything else).
    wait_for(
        async || connection_failures().await > failed_before,
        WAIT,
        "a failed connection attempt after the poll committed",
    )
    .await;
    assert_eq!(
        app.state.store.outbox_len().unwrap(),
        3,
        "held in the outbox"
    );
    assert!(queue.take(1, Duration::from_millis(300)).await.is_empty());

    proxy.restore();
    let events = queue.take(4, Duration::from_secs(20)).await;
    let mut keys: Vec<_> = events.iter().map(|e| e.routing_key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "work_order.created",
            "work_order.deleted",
            "work_order.updated"
        ]
    );
    wait_for(
        async || {
            app.get("/readyz").await.json::<Value>().await.unwrap()["components"]["broker"]["state"]
                == "connected"
        },
        WAIT,
        "connected again",
    )
    .await;
    assert_eq!(app.state.store.outbox_len().unwrap(), 0);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_nacked_event_stays_in_the_outbox_until_it_is_confirmed() {
    let app = spawn_app(Options {
        records: 5,
        ..Default::default()
    })
    .await;
    // A full queue that rejects publishes makes the broker nack them.
    let conn = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url()))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let full = unique("full");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare(
        &full,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.queue_bind(
        &full,
        &app.exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    app.poll().await;
    app.sim
        .state
        .update(3, fields(json!({"title": "nacked first"})));
    app.poll().await;
    wait_for(
        async || {
            metric(
                &app.metrics().await,
                "bridge_publish_failures_total{reason=\"nack\"}",
            )
            .unwrap_or(0.0)
                >= 1.0
        },
        WAIT,
        "a nack",
    )
    .await;
    assert_eq!(app.state.store.outbox_len().unwrap(), 1);

    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    ch.queue_delete(&full, QueueDeleteOptions::default())
        .await
        .unwrap();
    let events = queue.take(1, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body["subject"], "3");
    wait_for(
        async || app.state.store.outbox_len().unwrap() == 0,
        WAIT,
        "outbox drained",
    )
    .await;
    let _ = conn.close(200, "done").await;
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_with_the_broker_away_keeps_the_outbox_and_returns() {
    let proxy = Proxy::start(broker_addr()).await;
    proxy.cut();
    let app = spawn_app(Options {
        amqp_url: Some(proxy.amqp_url()),
        records: 5,
        ..Default::default()
    })
    .await;
    app.poll().await;
    app.sim
        .state
        .update(1, fields(json!({"title": "pending at shutdown"})));
    app.poll().await;
    let store = app.state.store.clone();
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown keeps its deadline"
    );
    assert_eq!(
        store.outbox_len().unwrap(),
        1,
        "the event waits for the next start"
    );
}

/// `serve` against the simulator at `sim_url`, on the SQLite file `db` and HTTP `port`, polling
/// every second and publishing to `exchange` through `amqp`.
fn start_bridge(
    sim_url: &str,
    db: &std::path::Path,
    amqp: &str,
    exchange: &str,
    port: u16,
) -> Running {
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", sqlite_url(db))
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("RUST_LOG", "warn")
        .set("DAFTRA_PAGE_SIZE", "7")
        .set("AMQP_URL", amqp)
        .set("AMQP_EXCHANGE", exchange)
        .set("POLL_INTERVAL_SECS", "1")
        // Deletes within a second of being made: every poll a full scan.
        .set("POLL_STRATEGY", "full");
    Bridge::new(&["serve"], &env).spawn()
}

#[tokio::test]
async fn sigkill_after_a_commit_loses_nothing_and_invents_nothing() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 30,
        ..Default::default()
    })
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("bridge.sqlite3");
    let exchange = unique("crash");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    crate::helpers::declare_exchange(&exchange).await;
    let mut queue = EventQueue::bind(&exchange, "#").await;
    let proxy = Proxy::start(broker_addr()).await;
    proxy.cut();
    let port = free_port();

    let first = start_bridge(&sim.base_url, &db_path, &proxy.amqp_url(), &exchange, port);
    wait_for(
        async || {
            get_json(port, "/status")
                .await
                .is_some_and(|s| s["resources"]["work_orders"]["last_outcome"] == "baseline")
        },
        WAIT,
        "baseline",
    )
    .await;
    sim.state
        .update(4, fields(json!({"title": "changed before the crash"})));
    sim.state.delete(9);
    let created = sim.state.create(fields(
        json!({"title": "created before the crash", "start_date": "2026-11-29"}),
    ));
    wait_for(
        async || {
            get_json(port, "/status")
                .await
                .is_some_and(|s| s["outbox_pending"] == 3)
        },
        WAIT,
        "the poll committed three events",
    )
    .await;
    drop(first); // SIGKILL

    let _second = start_bridge(&sim.base_url, &db_path, &amqp_url(), &exchange, port);
    let events = queue.take(3, Duration::from_secs(30)).await;
    let mut got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.routing_key.clone(),
                e.body["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("work_order.created".to_string(), created.to_string()),
            ("work_order.deleted".to_string(), "9".to_string()),
            ("work_order.updated".to_string(), "4".to_string()),
        ]
    );
    // Several more polls of unchanged data (one a second), their events published: nothing new.
    wait_polled_and_published(port, 3, WAIT).await;
    assert!(
        queue.take(1, Duration::from_millis(500)).await.is_empty(),
        "no spurious events after restart"
    );
    queue.close().await;
    sim.stop().await;
}

/// Opt-in (it stops the shared broker for a few seconds): `./tests/run.sh -- --ignored real_broker_restart`.
#[tokio::test]
#[ignore = "restarts the local RabbitMQ with rabbitmqctl; run on purpose"]
async fn a_real_broker_restart_loses_no_event() {
    let app = spawn_app(Options::default()).await;
    let mut queue_name = None;
    {
        // A durable queue, so it survives the restart and holds what is published after it.
        let conn = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url()))
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = unique("restart");
        ch.queue_declare(
            &q,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            &q,
            &app.exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        queue_name.replace(q);
        let _ = conn.close(200, "bound").await;
    }
    app.poll().await;
    assert!(Command::new("rabbitmqctl")
        .arg("stop_app")
        .status()
        .unwrap()
        .success());
    app.sim
        .state
        .update(2, fields(json!({"title": "while the broker was stopped"})));
    app.poll().await;
    assert!(Command::new("rabbitmqctl")
        .arg("start_app")
        .status()
        .unwrap()
        .success());
    wait_for(
        async || app.state.store.outbox_len().unwrap() == 0,
        WAIT,
        "the outbox drained after the restart",
    )
    .await;
    let conn = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url()))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = queue_name.unwrap();
    let got = ch
        .basic_get(&q, lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the event");
    let body: Value = serde_json::from_slice(&got.delivery.data).unwrap();
    assert_eq!(body["subject"], "2");
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
    app.stop().await;
}

/// Opt-in (it raises a memory alarm on the shared broker): `./tests/run.sh -- --ignored blocked`.
#[tokio::test]
#[ignore = "sets a memory alarm on the local RabbitMQ; run on purpose"]
async fn a_blocked_broker_pauses_publishing_without_blocking_http_or_polls() {
    let app = spawn_app(Options::default()).await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    wait_for(
        async || app.get("/readyz").await.status() == 200,
        WAIT,
        "ready",
    )
    .await;
    app.poll().await;
    let alarm = |on: bool| {
        let watermark = if on { "0.0000001" } else { "0.4" };
        assert!(Command::new("rabbitmqctl")
            .args(["set_vm_memory_high_watermark", watermark])
            .status()
            .unwrap()
            .success());
    };
    struct ClearAlarm;
    impl Drop for ClearAlarm {
        fn drop(&mut self) {
            let _ = Command::new("rabbitmqctl")
                .args(["set_vm_memory_high_watermark", "0.4"])
                .status();
        }
    }
    let _clear = ClearAlarm;
    alarm(true);
    app.sim
        .state
        .update(3, fields(json!({"title": "while blocked"})));
    // Connection.Blocked arrives with the next publish.
    assert_eq!(app.poll().await.events, 1, "polling goes on");
    let blocked = async || {
        let r = app.get("/readyz").await;
        r.status() == 200 && r.text().await.unwrap().contains("blocks")
    };
    wait_for(blocked, WAIT, "readiness names the alarm").await;
    assert_eq!(
        metric(&app.metrics().await, "bridge_broker_blocked"),
        Some(1.0)
    );
    assert_eq!(
        app.get("/exports/work_orders.csv?fields=id").await.status(),
        200,
        "HTTP goes on"
    );
    alarm(false);
    assert_eq!(queue.take(1, Duration::from_secs(30)).await.len(), 1);
    wait_for(
        async || app.get("/readyz").await.status() == 200,
        WAIT,
        "ready again",
    )
    .await;
    queue.close().await;
    app.stop().await;
}
