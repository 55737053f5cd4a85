//! An event RabbitMQ refuses for good is parked: kept, visible (metrics, `/status`, the admin
//! API), retried or dropped by an operator, and never in the way of the events after it. (The
//! webhook sink's parking is tested in `webhooks/parked.rs`.)

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    fields, get_json, metric, spawn_app, tool, wait_for, EventQueue, Options, TestApp,
};

const ADMIN: &str = "parked-admin-token";

/// RabbitMQ's `max_message_size` while a test needs it low, put back to RabbitMQ 3's default
/// (128 MiB) when dropped, a panic included. The broker is shared by every test: 256 KiB is far
/// above any other test's events.
struct BrokerLimit;

const LIMIT: u64 = 256 * 1024;

fn rabbitmqctl_eval(expr: &str) -> bool {
    Command::new("rabbitmqctl")
        .args(["eval", expr])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

impl BrokerLimit {
    /// `None` (and one skipped line, or a failure under CI) without `rabbitmqctl`.
    fn lower() -> Option<BrokerLimit> {
        if !tool("rabbitmqctl") {
            return None;
        }
        assert!(
            rabbitmqctl_eval(&format!(
                "application:set_env(rabbit, max_message_size, {LIMIT})."
            )),
            "rabbitmqctl eval sets max_message_size"
        );
        Some(BrokerLimit)
    }

    /// Back to the default, for a retry that must now pass.
    fn raise(&self) {
        assert!(rabbitmqctl_eval(
            "application:set_env(rabbit, max_message_size, 134217728)."
        ));
    }
}

impl Drop for BrokerLimit {
    fn drop(&mut self) {
        self.raise();
    }
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::Response {
    app.http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

async fn parked(app: &TestApp) -> Vec<Value> {
    let r = admin(app, reqwest::Method::GET, "/outbox/parked").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["parked"].as_array().unwrap().clone()
}

fn huge(title: &str) -> serde_json::Map<String, Value> {
    fields(json!({"title": title, "description": "ض".repeat(LIMIT as usize)}))
}

#[tokio::test]
async fn an_event_too_large_for_rabbitmq_is_parked_and_the_next_one_delivered() {
    let Some(limit) = BrokerLimit::lower() else {
        return;
    };
    let app = spawn_app(Options {
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    app.poll().await;
    app.sim.state.update(4, huge("too large"));
    app.sim.state.update(5, fields(json!({"title": "small"})));
    let o = app.poll().await;
    assert_eq!(o.events, 2);

    // The small event behind the large one is delivered; the large one is parked.
    let got = queue.take(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "the next event is delivered");
    assert_eq!(got[0].body["subject"], "5");
    wait_for(
        async || parked(&app).await.len() == 1,
        Duration::from_secs(10),
        "parked",
    )
    .await;
    let p = &parked(&app).await[0];
    assert_eq!(
        (p["sink"].as_str(), p["reason"].as_str()),
        (Some("amqp"), Some("too_large"))
    );
    assert_eq!(
        (p["resource"].as_str(), p["record_id"].as_i64()),
        (Some("work_orders"), Some(4))
    );
    assert_eq!(p["type"], "work_order.updated");
    assert!(p["bytes"].as_i64().unwrap() > LIMIT as i64);
    assert!(p["error"].as_str().unwrap().contains("max size"), "{p}");
    let m = app.metrics().await;
    let parked_total = "bridge_events_parked_total{reason=\"too_large\",sink=\"amqp\"}";
    assert_eq!(metric(&m, parked_total), Some(1.0));
    assert_eq!(metric(&m, "bridge_events_parked{sink=\"amqp\"}"), Some(1.0));
    assert_eq!(
        metric(&m, "bridge_publish_failures_total{reason=\"connection\"}"),
        Some(0.0),
        "a refusal is not a connection failure"
    );
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(status["broker"], "connected");
    assert_eq!(status["parked"]["count"], 1);
    assert_eq!(
        status["parked"]["events"][0]["record_id"], 4,
        "the record that misses an event"
    );
    assert_eq!(status["outbox_pending"], 0);

    // Retried once the broker takes it: delivered, and no longer parked.
    limit.raise();
    let id = p["id"].as_i64().unwrap();
    let r = admin(
        &app,
        reqwest::Method::POST,
        &format!("/outbox/parked/{id}/retry"),
    )
    .await;
    assert_eq!(r.status(), 202);
    let got = queue.take(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "the parked event is published on retry");
    assert_eq!(got[0].message_id.as_deref(), p["event_id"].as_str());
    wait_for(
        async || parked(&app).await.is_empty(),
        Duration::from_secs(10),
        "unparked",
    )
    .await;
    let r = admin(&app, reqwest::Method::POST, "/outbox/parked/999/retry").await;
    assert_eq!(r.status(), 404);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_parked_event_survives_a_restart_and_can_be_dropped() {
    let Some(_limit) = BrokerLimit::lower() else {
        return;
    };
    let opts = Options {
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    };
    let app = spawn_app(opts).await;
    app.poll().await;
    app.sim.state.update(7, huge("parked across a restart"));
    app.poll().await;
    wait_for(
        async || parked(&app).await.len() == 1,
        Duration::from_secs(20),
        "parked",
    )
    .await;
    let db = app._db.path().to_path_buf();
    let sim_url = app.sim.base_url.clone();
    let cancel = app.cancel.clone();
    cancel.cancel();

    // The same database under a new bridge: still parked, listed the same way.
    let port = crate::helpers::free_port();
    let again = Options {
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    }
    .env(&sim_url, &db)
    .set("BIND_ADDR", format!("127.0.0.1:{port}"));
    let _running = crate::helpers::Bridge::new(&["serve"], &again).spawn();
    wait_for(
        async || {
            get_json(port, "/status")
                .await
                .is_some_and(|s| s["parked"]["count"] == 1)
        },
        Duration::from_secs(20),
        "the parked event after a restart",
    )
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let list: Value = client
        .get(url("/outbox/parked"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["parked"][0]["id"].as_i64().unwrap();
    assert_eq!(list["parked"][0]["record_id"], 7);
    let unauthorized = client
        .delete(url(&format!("/outbox/parked/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let dropped = client
        .delete(url(&format!("/outbox/parked/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), 204);
    let status = get_json(port, "/status").await.unwrap();
    assert_eq!(status["parked"]["count"], 0);
    app.stop().await;
}
