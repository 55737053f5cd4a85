//! Every value as Daftra means it, reproduced against the simulator: offsets, `Z` and fractions
//! never hide a record, the account's zone, exact amounts, day-first dates, Arabic-Indic digits,
//! and representation-only changes of undeclared fields that announce nothing.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::helpers::{metric, spawn_app, Bridge, BridgeEnv, EventQueue, Options};

/// Stores `fields` over seeded work order `id`'s raw form in the simulator, exactly as given
/// (`PUT /__sim/records/...`, no `modified` bump).
async fn put_raw(app: &crate::helpers::TestApp, id: i64, fields: Value) {
    let mut raw = app
        .sim
        .state
        .records()
        .into_iter()
        .find(|r| {
            daftra_bridge::record::raw_key(daftra_bridge::catalogue::default_resource(), r)
                == Some(id)
        })
        .unwrap_or_else(|| daftra_bridge::sim::seeded_work_order(42, id));
    raw.extend(fields.as_object().cloned().unwrap());
    let answer = app
        .http
        .put(format!(
            "{}/__sim/records/work_orders/{id}",
            app.sim.base_url
        ))
        .json(&raw)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
}

fn csv_row(csv: &str, id: i64) -> Map<String, Value> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(Result::unwrap)
        .find(|r| &r[0] == id.to_string().as_str())
        .map(|r| {
            header
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.clone(), json!(v)))
                .collect()
        })
        .unwrap_or_else(|| panic!("no row {id}"))
}

#[tokio::test]
async fn odd_timestamps_never_hide_a_record_and_follow_the_account_zone() {
    let app = spawn_app(Options {
        timezone: Some("Africa/Cairo".into()),
        records: 10,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.*").await;
    app.poll().await;
    // A real status change arriving with an offset timestamp is announced and exported.
    put_raw(
        &app,
        3,
        json!({"status": 2, "modified": "2026-01-03T09:00:00+02:00"}),
    )
    .await;
    // A new record with fractional seconds, and one in UTC with `Z`.
    put_raw(&app, 500, json!({"status": 1, "created": "2024-03-05 14:21:35.123456", "modified": "2024-03-05T12:21:35Z"})).await;
    let o = app.poll().await;
    assert_eq!((o.created, o.updated, o.invalid), (1, 1, 0));
    let csv = app
        .get("/exports/work_orders.csv")
        .await
        .text()
        .await
        .unwrap();
    let three = csv_row(&csv, 3);
    assert_eq!(
        three["status_label"], "Closed",
        "the change is in the export"
    );
    assert_eq!(
        three["modified"], "2026-01-03 09:00:00",
        "Cairo wall clock (UTC+2)"
    );
    let new = csv_row(&csv, 500);
    assert_eq!(new["created"], "2024-03-05 14:21:35", "fraction dropped");
    assert_eq!(
        new["modified"], "2024-03-05 14:21:35",
        "Z converted to the account's zone"
    );
    let events = queue.take(3, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 2);
    let created = events
        .iter()
        .find(|e| e.routing_key == "work_order.created")
        .unwrap();
    assert_eq!(
        created.body["data"]["after"]["modified"],
        "2024-03-05T14:21:35+02:00"
    );
    let updated = events
        .iter()
        .find(|e| e.routing_key == "work_order.updated")
        .unwrap();
    assert_eq!(updated.body["data"]["after"]["status"], 2);
    assert_eq!(
        updated.body["data"]["after"]["modified"],
        "2026-01-03T09:00:00+02:00"
    );

    // The zone in use beside the one Daftra reports.
    let mut status = Value::Null;
    for _ in 0..50 {
        status = app.get("/status").await.json().await.unwrap();
        if !status["timezone"]["daftra_zone"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["timezone"]["in_use"], "Africa/Cairo");
    assert_eq!(status["timezone"]["daftra_reports"], "13");
    assert_eq!(status["timezone"]["daftra_zone"], "Africa/Cairo");
    assert_eq!(status["timezone"]["matches"], true);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn amounts_keep_every_digit_and_forms_of_one_value_are_no_change() {
    let app = spawn_app(Options {
        records: 10,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.*").await;
    put_raw(
        &app,
        4,
        json!({"budget": "1500.50", "custom_fields": [], "branch_id": "3",
        "meta": {"b": 1, "a": "x"}, "start_date": "28/09/2025", "client_id": "٣٠٠"}),
    )
    .await;
    put_raw(&app, 5, json!({"budget": "12345678901234567.89"})).await;
    app.poll().await;
    // Representation only: an equal amount, PHP's `{}` for `[]`, a number for its string, keys
    // in another order, the same day in another form.
    put_raw(
        &app,
        4,
        json!({"budget": 1500.5, "custom_fields": {}, "branch_id": 3,
        "meta": {"a": "x", "b": "1"}, "start_date": "2025-09-28", "client_id": 300}),
    )
    .await;
    let o = app.poll().await;
    assert_eq!((o.updated, o.created), (0, 0), "no spurious update");
    assert!(queue.take(1, Duration::from_millis(700)).await.is_empty());

    let csv = app
        .get("/exports/work_orders.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv_row(&csv, 5)["budget"], "12345678901234567.89");
    assert_eq!(csv_row(&csv, 4)["budget"], "1500.5");
    assert_eq!(
        csv_row(&csv, 4)["start_date"],
        "2025-09-28",
        "day-first date read"
    );
    assert_eq!(
        csv_row(&csv, 4)["client_id"],
        "300",
        "Arabic-Indic digits read"
    );
    let xlsx = app.get("/exports/work_orders.xlsx").await;
    assert_eq!(xlsx.status(), 200);

    // A real change of a huge amount is announced with all its digits, as a JSON number.
    put_raw(&app, 5, json!({"budget": "12345678901234567.90"})).await;
    assert_eq!(app.poll().await.updated, 1);
    let events = queue.take(1, Duration::from_secs(5)).await;
    let text = &events[0].text;
    assert!(
        text.contains("\"budget\":12345678901234567.9,")
            || text.contains("\"budget\":12345678901234567.9}"),
        "{text}"
    );
    assert!(
        text.contains("12345678901234567.89"),
        "before keeps its digits: {text}"
    );
    assert_eq!(events[0].body["data"]["changed"], json!(["budget"]));
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "daftra_api_unreadable_values_total{resource=\"work_orders\"}"
        ),
        Some(0.0)
    );
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_simulator_takes_its_faults_as_json() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let answer = app
        .http
        .post(format!("{}/__sim/faults", app.sim.base_url))
        .json(&json!({"drift": {"action": "delete", "after_page": 1, "id": 2}, "latency_ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "{}", answer.text().await.unwrap());
    let o = app.poll().await;
    assert_eq!(
        o.deleted, 1,
        "the drift deleted record 2 mid-scan; a rescan proved it gone"
    );
    assert_eq!(app.sim.state.records().len(), 44);
    let bad = app
        .http
        .post(format!("{}/__sim/faults", app.sim.base_url))
        .json(&json!({"drift": {"action": "explode", "after_page": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

#[test]
fn a_bad_time_zone_or_date_format_stops_start_up_naming_the_variable() {
    for (name, value) in [
        ("DAFTRA_TIMEZONE", "Cairo"),
        ("DAFTRA_DATE_FORMAT", "YY/DD"),
    ] {
        let env = BridgeEnv::new()
            .set("DAFTRA_SUBDOMAIN", "acme")
            .set("DAFTRA_API_KEY", "k")
            .set(name, value);
        let out = Bridge::new(&["serve"], &env).output();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name) && err.contains(value), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn huge_amounts_sort_exactly_and_repeated_flips_keep_distinct_ids() {
    let app = spawn_app(Options {
        records: 10,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.*").await;
    for (id, budget) in [
        (6, "12345678901234567.9"),
        (7, "12345678901234567.1"),
        (8, "12345678901234567.5"),
        (9, "-12345678901234567.5"),
        (10, "-12345678901234567.1"),
    ] {
        put_raw(&app, id, json!({"budget": budget, "client_id": 300})).await;
    }
    app.poll().await;
    for source in ["snapshot", "live"] {
        let body = app
            .get(&format!(
                "/exports/work_orders.csv?sort=-budget&fields=id&client_id=٣٠٠&source={source}"
            ))
            .await
            .text()
            .await
            .unwrap();
        let ids: Vec<&str> = body.lines().skip(1).collect();
        assert_eq!(
            ids,
            ["6", "8", "7", "10", "9"],
            "{source}: exact order, Arabic-Indic digits in the filter"
        );
        let asc = app
            .get(&format!(
                "/exports/work_orders.csv?sort=budget&fields=id&client_id=300&source={source}"
            ))
            .await
            .text()
            .await
            .unwrap();
        let ids: Vec<&str> = asc.lines().skip(1).collect();
        assert_eq!(ids, ["9", "10", "7", "8", "6"], "{source}");
    }

    // The same two images, back and forth: every real change has its own id.
    // flip -> flop happens twice, with identical images.
    for title in ["flip", "flop", "flip", "flop"] {
        put_raw(&app, 3, json!({"title": title})).await;
        assert_eq!(app.poll().await.updated, 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // An undeclared field going from absent to empty is no change.
    put_raw(&app, 4, json!({"custom_fields": []})).await;
    assert_eq!(app.poll().await.updated, 0);
    let events = queue.take(5, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 4);
    let mut ids: Vec<_> = events
        .iter()
        .map(|e| e.body["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "a consumer deduping by id keeps every change");
    queue.close().await;
    app.stop().await;
}
