//! Line-item changes inside an event: a summary per group (ids added and removed, the fields of
//! each changed item), and an event over `EVENT_MAX_BYTES` that carries only the changed items
//! with the path where the whole record is read.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::helpers::{spawn_app, EventQueue, Options, TestApp};

fn as_id(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str()?.parse().ok())
        .expect("an item id")
}

fn items(app: &TestApp, id: i64) -> Vec<Value> {
    let raw = app.sim.state.records_of("invoices");
    let r = raw.iter().find(|r| as_id(&r["id"]) == id).unwrap();
    r["InvoiceItem"].as_array().unwrap().clone()
}

fn set_items(app: &TestApp, id: i64, list: Vec<Value>) {
    let fields = Map::from_iter([("InvoiceItem".to_string(), Value::Array(list))]);
    assert!(app.sim.state.update_in("invoices", id, fields));
}

fn line(id: i64) -> Value {
    json!({"id": id, "item": format!("Line {id}"), "unit_price": "10.00", "quantity": "1"})
}

#[tokio::test]
async fn item_changes_are_summarised_and_a_large_event_carries_only_the_changed_items() {
    let app = spawn_app(Options {
        resources: Some("invoices".into()),
        records: 3,
        extra: vec![("EVENT_MAX_BYTES", "16384".into())],
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "invoice.*").await;
    let many: Vec<Value> = (10_001..=10_300).map(line).collect();
    set_items(&app, 2, many.clone());
    app.poll_resource("invoices").await;

    // A small invoice: one item's quantity changes.
    let mut small = items(&app, 1);
    let edited = as_id(&small[0]["id"]);
    small[0]["quantity"] = json!("7");
    set_items(&app, 1, small);
    // A 300-item invoice: one item edited, one removed, one added.
    let mut large = many.clone();
    large[6]["quantity"] = json!("9");
    large.remove(0);
    large.push(line(20_000));
    set_items(&app, 2, large);
    app.poll_resource("invoices").await;
    let events = queue.take(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2);

    let small = events.iter().find(|e| e.body["subject"] == "1").unwrap();
    let summary = &small.body["data"]["items"]["InvoiceItem"];
    assert_eq!(summary["added"], json!([]));
    assert_eq!(summary["removed"], json!([]));
    assert_eq!(as_id(&summary["changed"][0]["id"]), edited);
    assert_eq!(summary["changed"][0]["fields"], json!(["quantity"]));
    assert!(summary.get("partial").is_none(), "whole lists: {summary}");
    assert_eq!(
        small.body["data"]["changed"],
        json!(["InvoiceItem", "modified"])
    );

    let large = events.iter().find(|e| e.body["subject"] == "2").unwrap();
    assert!(large.text.len() <= 16_384, "{} bytes", large.text.len());
    let summary = &large.body["data"]["items"]["InvoiceItem"];
    assert_eq!(summary["added"], json!([20_000]));
    assert_eq!(summary["removed"], json!([10_001]));
    assert_eq!(
        summary["changed"],
        json!([{"id": 10_007, "fields": ["quantity"]}])
    );
    assert_eq!(summary["partial"], true);
    assert_eq!(summary["url"], "/records/invoices/2");
    let ids = |image: &str| -> Vec<i64> {
        large.body["data"][image]["InvoiceItem"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| as_id(&i["id"]))
            .collect()
    };
    assert_eq!(ids("before"), [10_001, 10_007]);
    assert_eq!(ids("after"), [10_007, 20_000]);

    // The whole record where the event points.
    let r = app.get("/records/invoices/2").await;
    assert_eq!(r.status(), 200);
    let whole: Value = r.json().await.unwrap();
    assert_eq!(
        whole["record"]["InvoiceItem"].as_array().unwrap().len(),
        300
    );
    assert_eq!(app.get("/records/invoices/999").await.status(), 404);
    assert_eq!(app.get("/records/invoices/x").await.status(), 400);
    let unknown = app.get("/records/invoices/2?fields=id").await;
    assert_eq!(unknown.status(), 400);
    assert_eq!(unknown.json::<Value>().await.unwrap()["field"], "fields");
    let disabled = app.get("/records/journals/2").await;
    assert_eq!(disabled.status(), 404);
    assert!(disabled.text().await.unwrap().contains("DAFTRA_RESOURCES"));

    // Created with 300 items, most items replaced, deleted: still within the limit, the
    // images without the items, the summary naming every one of them.
    let created = app
        .sim
        .state
        .create_in(
            "invoices",
            Map::from_iter([("InvoiceItem".to_string(), json!(many))]),
        )
        .unwrap();
    set_items(&app, 2, (30_001..=30_150).map(line).collect());
    app.poll_resource("invoices").await;
    assert!(app.sim.state.delete_in("invoices", created));
    app.poll_resource("invoices").await;
    let events = queue.take(3, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 3);
    for e in &events {
        assert!(
            e.text.len() <= 16_384,
            "{}: {} bytes",
            e.routing_key,
            e.text.len()
        );
        let summary = &e.body["data"]["items"]["InvoiceItem"];
        assert_eq!(summary["partial"], true, "{}: {summary}", e.routing_key);
        let listed = summary["added"].as_array().unwrap().len()
            + summary["removed"].as_array().unwrap().len();
        assert!(listed >= 150, "{}: every item named", e.routing_key);
    }
    let deleted = events
        .iter()
        .find(|e| e.routing_key == "invoice.deleted")
        .unwrap();
    let summary = &deleted.body["data"]["items"]["InvoiceItem"];
    assert!(
        summary.get("url").is_none(),
        "a deleted record is not served: {summary}"
    );
    queue.close().await;
    app.stop().await;
}
