//! Change events on the real RabbitMQ: routing keys, CloudEvents bodies, changed lists.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{fields, metric, spawn_app, EventQueue, Options};

#[tokio::test]
async fn two_creates_two_updates_one_delete_give_exactly_five_events() {
    let app = spawn_app(Options::default()).await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.*").await;
    let baseline = app.poll().await;
    assert!(baseline.baseline && baseline.events == 0);

    let a = app.sim.state.create(fields(
        json!({"title": "صيانة عاجلة", "start_date": "2026-11-01", "status": 1}),
    ));
    let b = app.sim.state.create(fields(
        json!({"title": "New pump", "start_date": "2026-11-02", "status": "4", "budget": "99.50"}),
    ));
    let status_of_3 = app.sim.state.records()[2]["status"]
        .to_string()
        .trim_matches('"')
        .parse::<i64>()
        .unwrap();
    let new_status = if status_of_3 == 2 { 3 } else { 2 };
    assert!(app
        .sim
        .state
        .update(3, fields(json!({"status": new_status}))));
    assert!(app.sim.state.update(7, fields(json!({"title": "Renamed"}))));
    assert!(app.sim.state.delete(11));
    let outcome = app.poll().await;
    assert_eq!(
        (
            outcome.created,
            outcome.updated,
            outcome.deleted,
            outcome.events
        ),
        (2, 2, 1, 5)
    );

    let events = queue.take(6, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 5, "exactly five events: {events:?}");
    let mut seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.routing_key.clone(),
                e.body["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        ("work_order.created".to_string(), a.to_string()),
        ("work_order.created".to_string(), b.to_string()),
        ("work_order.updated".to_string(), "3".to_string()),
        ("work_order.updated".to_string(), "7".to_string()),
        ("work_order.deleted".to_string(), "11".to_string()),
    ];
    want.sort();
    assert_eq!(seen, want);
    for e in &events {
        let body = &e.body;
        assert_eq!(
            e.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(e.delivery_mode, Some(2));
        assert_eq!(e.message_id.as_deref(), body["id"].as_str());
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(
            body["source"],
            format!("{}/api2/work_orders", app.sim.base_url)
        );
        assert_eq!(body["type"], format!("com.daftra.{}", e.routing_key));
        assert_eq!(body["datacontenttype"], "application/json");
        let data = &body["data"];
        assert_eq!(data["resource"], "work_orders");
        assert_eq!(data["id"].to_string(), body["subject"].as_str().unwrap());
        match data["op"].as_str().unwrap() {
            "created" => {
                assert!(data["before"].is_null() && data["after"].is_object());
                assert_eq!(data["changed"], json!([]));
            }
            "deleted" => {
                assert!(data["after"].is_null());
                assert_eq!(data["before"]["id"], 11);
                assert_eq!(data["changed"], json!([]));
            }
            "updated" => {
                let changed: Vec<&str> = data["changed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                if data["id"] == 3 {
                    assert_eq!(changed, ["modified", "status", "status_label"]);
                    assert_eq!(data["before"]["status"], status_of_3);
                    assert_eq!(data["after"]["status"], new_status);
                    assert_eq!(
                        data["after"]["status_label"],
                        if new_status == 2 {
                            "Closed"
                        } else {
                            "Cancelled"
                        }
                    );
                } else {
                    assert!(changed.contains(&"title"));
                    assert!(!changed.contains(&"status"));
                    assert_eq!(data["after"]["title"], "Renamed");
                }
            }
            other => panic!("unexpected op {other}"),
        }
    }
    // Numbers arrive as JSON numbers whatever form Daftra used.
    let created_b = events
        .iter()
        .find(|e| e.body["subject"].as_str() == Some(b.to_string().as_str()))
        .unwrap();
    assert_eq!(created_b.body["data"]["after"]["status"], 4);
    assert_eq!(created_b.body["data"]["after"]["budget"], 99.5);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bridge_events_published_total{op=\"created\",resource=\"work_orders\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            "bridge_events_published_total{op=\"deleted\",resource=\"work_orders\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "bridge_changes_detected_total{op=\"updated\",resource=\"work_orders\"}"
        ),
        Some(2.0)
    );
    assert_eq!(metric(&m, "bridge_outbox_pending"), Some(0.0));
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_change_of_representation_only_is_no_event() {
    let app = spawn_app(Options::default()).await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    app.poll().await;
    app.sim.state.set_faults(daftra_bridge::sim::Faults {
        flip_number_forms: true,
        ..Default::default()
    });
    for _ in 0..2 {
        let o = app.poll().await;
        assert_eq!((o.created, o.updated, o.deleted), (0, 0, 0));
    }
    assert!(queue.take(1, Duration::from_millis(800)).await.is_empty());
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_first_poll_emits_created_for_every_record_when_asked() {
    let app = spawn_app(Options {
        records: 12,
        emit_initial: true,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.created").await;
    let o = app.poll().await;
    assert!(o.baseline);
    assert_eq!(o.events, 12);
    assert_eq!(queue.take(13, Duration::from_secs(5)).await.len(), 12);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unroutable_event_is_counted_and_not_retried() {
    let app = spawn_app(Options {
        records: 5,
        ..Default::default()
    })
    .await;
    app.poll().await;
    app.sim
        .state
        .update(1, fields(json!({"title": "nobody listens"})));
    app.poll().await;
    let mut m = String::new();
    for _ in 0..50 {
        m = app.metrics().await;
        let unroutable = metric(
            &m,
            "bridge_events_unroutable_total{resource=\"work_orders\"}",
        );
        if unroutable == Some(1.0) && metric(&m, "bridge_outbox_pending") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(
            &m,
            "bridge_events_unroutable_total{resource=\"work_orders\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "bridge_events_published_total{op=\"updated\",resource=\"work_orders\"}"
        ),
        Some(0.0)
    );
    assert_eq!(metric(&m, "bridge_outbox_pending"), Some(0.0));
    assert_eq!(app.state.store.outbox_len().unwrap(), 0);
    app.stop().await;
}
