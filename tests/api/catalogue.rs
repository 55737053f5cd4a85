//! Every declared resource, generated from the catalogue: simulator -> poll -> CSV and XLSX equal
//! the simulator's records; create, update and delete give exactly those events. Then line
//! items, unavailable resources and the shared request budget.

use std::collections::BTreeMap;
use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use daftra_bridge::catalogue::{self, ColumnKind, Resource};
use daftra_bridge::record;
use daftra_bridge::sim::{Faults, SimConfig};
use serde_json::{json, Map, Value};

use crate::helpers::{metric, spawn_app, Bridge, BridgeEnv, EventQueue, Options, SIM_API_KEY};

/// The CSV text of a normalised value, worked out here rather than by the export code.
fn csv_text(kind: ColumnKind, v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::Number(n)) => n.to_string(),
        // Amounts are stored as their exact digits and written as numbers, never prefixed.
        Some(Value::String(s)) if kind == ColumnKind::Decimal => s.clone(),
        Some(Value::String(s)) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => {
            format!("'{s}")
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A value of `kind` for a create body.
fn sample(kind: Option<ColumnKind>) -> Value {
    match kind {
        Some(ColumnKind::Int) => json!(1),
        Some(ColumnKind::Decimal) => json!("10.50"),
        Some(ColumnKind::Date) => json!("2026-01-02"),
        Some(ColumnKind::Timestamp) => json!("2026-01-02 10:00:00"),
        _ => json!("x"),
    }
}

/// The first text column that is not a record number: the field the update changes.
pub(crate) fn editable(r: &Resource) -> String {
    r.columns
        .iter()
        .find(|c| {
            c.kind == ColumnKind::Text && !matches!(c.name.as_str(), "number" | "no" | "code")
        })
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "name".into())
}

fn rows(csv: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    (header, reader.records().map(Result::unwrap).collect())
}

#[tokio::test]
async fn every_declared_resource_round_trips_through_poll_exports_and_events() {
    let app = spawn_app(Options {
        resources: Some("all".into()),
        sim: Some(SimConfig {
            records: 5,
            ..Default::default()
        }),
        page_size: 3,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    let http = reqwest::Client::new();
    let mut expected_events = Vec::new();
    for r in catalogue::all() {
        let o = app.poll_resource(&r.name).await;
        assert_eq!(
            (o.records, o.baseline, o.invalid),
            (5, true, 0),
            "{}",
            r.name
        );

        let csv = app.get(&format!("/exports/{}.csv", r.name)).await;
        assert_eq!(csv.status(), 200, "{}", r.name);
        let (header, data) = rows(&csv.text().await.unwrap());
        let names: Vec<_> = r.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(header, names, "{}: columns in declaration order", r.name);
        let raw = app.sim.state.records_of(&r.name);
        assert_eq!(data.len(), raw.len(), "{}", r.name);
        for (row, raw) in data.iter().zip(&raw) {
            let norm = record::normalise(r, raw).unwrap();
            for (i, c) in r.columns.iter().enumerate() {
                assert_eq!(
                    row[i],
                    csv_text(c.kind, norm.get(&c.name)),
                    "{}.{}",
                    r.name,
                    c.name
                );
            }
        }

        let xlsx = app.get(&format!("/exports/{}.xlsx", r.name)).await;
        assert_eq!(xlsx.status(), 200, "{}", r.name);
        let bytes = xlsx.bytes().await.unwrap();
        let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let sheet = book.worksheet_range_at(0).unwrap().unwrap();
        let sheet_rows: Vec<_> = sheet.rows().collect();
        assert_eq!(sheet_rows.len(), raw.len() + 1, "{}", r.name);
        for (row, raw) in sheet_rows.iter().skip(1).zip(&raw) {
            let id = record::raw_key(r, raw).unwrap();
            assert!(
                matches!(row[0], Data::Float(f) if f as i64 == id)
                    || matches!(row[0], Data::Int(i) if i == id),
                "{}: the key is a number cell",
                r.name
            );
        }

        // Create, update and delete: through the documented write endpoints where Daftra has
        // them, else in the tenant directly.
        let field = editable(r);
        let created = if r.writable {
            let mut fields = Map::new();
            for name in &r.create_required {
                fields.insert(name.clone(), sample(r.column(name).map(|c| c.kind)));
            }
            let mut body = Map::new();
            body.insert(r.model_key.clone(), Value::Object(fields));
            let answer = http
                .post(format!("{}/{}", app.sim.base_url, r.list_path))
                .header("apikey", "sim-api-key")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202, "{}", r.name);
            let id: Value = answer.json().await.unwrap();
            id["id"].as_str().unwrap().parse::<i64>().unwrap()
        } else {
            app.sim.state.create_in(&r.name, Map::new()).unwrap()
        };
        let mut change = Map::new();
        change.insert(field.clone(), json!("تم التعديل"));
        if r.writable {
            let mut body = Map::new();
            body.insert(r.model_key.clone(), Value::Object(change));
            let answer = http
                .put(format!("{}/{}", app.sim.base_url, r.record_path(1)))
                .header("apikey", "sim-api-key")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{}", r.name);
        } else {
            assert!(app.sim.state.update_in(&r.name, 1, change));
        }
        if r.deletable {
            let answer = http
                .delete(format!("{}/{}", app.sim.base_url, r.record_path(2)))
                .header("apikey", "sim-api-key")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{}", r.name);
        } else {
            assert!(app.sim.state.delete_in(&r.name, 2));
        }
        let o = app.poll_resource(&r.name).await;
        assert_eq!(
            (o.created, o.updated, o.deleted),
            (1, 1, 1),
            "{}: exactly the changes made",
            r.name
        );
        for (op, id) in [("created", created), ("updated", 1), ("deleted", 2)] {
            expected_events.push((
                format!("{}.{op}", r.singular),
                id.to_string(),
                r,
                field.clone(),
            ));
        }
    }
    let events = queue
        .take(expected_events.len() + 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        events.len(),
        expected_events.len(),
        "no more, no fewer events"
    );
    let mut by_key: BTreeMap<(String, String), &crate::helpers::Received> = BTreeMap::new();
    for e in &events {
        by_key.insert(
            (
                e.routing_key.clone(),
                e.body["subject"].as_str().unwrap().to_string(),
            ),
            e,
        );
    }
    for (key, subject, r, field) in &expected_events {
        let e = by_key
            .get(&(key.clone(), subject.clone()))
            .unwrap_or_else(|| panic!("no {key} event for {subject}"));
        assert_eq!(e.body["type"], format!("com.daftra.{key}"));
        assert_eq!(
            e.body["source"],
            format!("{}/{}", app.sim.base_url, r.list_path)
        );
        assert_eq!(e.body["data"]["resource"], r.name.as_str());
        if key.ends_with(".updated") {
            let changed: Vec<_> = e.body["data"]["changed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(changed.contains(&field.as_str()), "{key}: {changed:?}");
            assert_eq!(e.body["data"]["after"][field], "تم التعديل");
        }
    }
    let m = app.metrics().await;
    for r in catalogue::all() {
        let series = format!(
            "bridge_changes_detected_total{{op=\"created\",resource=\"{}\"}}",
            r.name
        );
        assert_eq!(metric(&m, &series), Some(1.0), "{series}");
    }
    queue.close().await;
    app.stop().await;
}

fn items(app: &crate::helpers::TestApp, id: i64) -> Vec<Value> {
    let raw = app.sim.state.records_of("invoices");
    let r = raw
        .iter()
        .find(|r| r["id"].as_i64().or_else(|| r["id"].as_str()?.parse().ok()) == Some(id))
        .unwrap();
    r["InvoiceItem"].as_array().unwrap().clone()
}

#[tokio::test]
async fn line_item_edits_adds_and_removes_are_updates_of_their_parent() {
    let app = spawn_app(Options {
        resources: Some("invoices,work_orders".into()),
        records: 6,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "invoice.*").await;
    app.poll_resource("invoices").await;
    let stored: Value =
        serde_json::from_str(&app.state.store.load_one("invoices", 3).unwrap().unwrap()).unwrap();
    assert!(
        !stored["InvoiceItem"].as_array().unwrap().is_empty(),
        "the list is read with recursive=1, so line items arrive"
    );

    // A reorder alone (no other change, not even `modified`) is no update.
    let mut raw = app
        .sim
        .state
        .records_of("invoices")
        .into_iter()
        .nth(2)
        .unwrap();
    let mut reordered = items(&app, 3);
    reordered.reverse();
    reordered.push(reordered[0].clone());
    reordered.pop();
    raw.insert("InvoiceItem".into(), Value::Array(reordered));
    app.sim.state.insert_raw_in("invoices", raw);
    assert_eq!(app.poll_resource("invoices").await.updated, 0, "reorder");

    let mut edited = items(&app, 3);
    edited[0]["description"] = json!("قطعة غيار معدلة");
    let mut added = items(&app, 4);
    added.push(json!({"item": "New line", "unit_price": "12.00", "quantity": "1.5"}));
    let mut removed = items(&app, 5);
    removed.truncate(removed.len() - 1);
    for (id, list) in [(3, edited), (4, added), (5, removed)] {
        assert!(app.sim.state.update_in(
            "invoices",
            id,
            Map::from_iter([("InvoiceItem".to_string(), Value::Array(list))])
        ));
    }
    let o = app.poll_resource("invoices").await;
    assert_eq!((o.updated, o.created, o.deleted), (3, 0, 0));
    let events = queue.take(4, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e.routing_key, "invoice.updated");
        let changed = e.body["data"]["changed"].as_array().unwrap();
        assert!(changed.contains(&json!("InvoiceItem")), "{changed:?}");
        assert!(e.body["data"]["after"]["InvoiceItem"].is_array());
    }
    let added_event = events.iter().find(|e| e.body["subject"] == "4").unwrap();
    let after = added_event.body["data"]["after"]["InvoiceItem"]
        .as_array()
        .unwrap();
    let before = added_event.body["data"]["before"]["InvoiceItem"]
        .as_array()
        .unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(
        after.iter().any(|i| i["quantity"] == json!(1.5)),
        "decimal quantity kept"
    );

    // The group is its own export: one row per item, the parent's key and the item's key first.
    let csv = app.get("/exports/invoices_invoice_item.csv").await;
    assert_eq!(csv.status(), 200);
    let (header, data) = rows(&csv.text().await.unwrap());
    assert_eq!(&header[..2], ["invoice_id", "id"]);
    let total: usize = (1..=6).map(|id| items(&app, id).len()).sum();
    assert_eq!(data.len(), total);
    assert!(data
        .iter()
        .any(|r| &r[0] == "4" && r.iter().any(|c| c == "New line")));
    let sorted = app
        .get("/exports/invoices_invoice_item.csv?sort=-invoice_id&invoice_id=4")
        .await
        .text()
        .await
        .unwrap();
    let (_, four) = rows(&sorted);
    assert_eq!(four.len(), items(&app, 4).len());
    let xlsx = app.get("/exports/invoices_invoice_item.xlsx").await;
    assert_eq!(xlsx.status(), 200);
    let live = app
        .get("/exports/invoices_invoice_item.csv?source=live")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&live).1.len(), total, "live reads the same items");
    let listed: Value = app.get("/exports").await.json().await.unwrap();
    let names: Vec<_> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].as_str().unwrap().to_string())
        .collect();
    let at = names.iter().position(|n| n == "invoices").unwrap();
    assert_eq!(
        names[at + 1],
        "invoices_invoice_item",
        "listed next to its parent"
    );
    assert_eq!(
        app.get("/exports/estimates.csv").await.status(),
        404,
        "a resource not enabled is not served"
    );
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_forbidden_resource_is_marked_unavailable_and_slows_no_other() {
    refused_resource(403).await.stop().await;
}

/// A 401 on one list while Site Info answers is that resource's own (its role lacks the
/// permission), not the account's credentials: the account stays accepted.
#[tokio::test]
async fn a_401_on_one_list_is_that_resource_s_not_the_account_s() {
    let app = refused_resource(401).await;
    let account = app.feed("clients").account.clone();
    assert!(account.client.credentials().refusal().is_none());
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_ne!(
        status["account"]["credentials"], "refused",
        "{}",
        status["account"]
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.stop().await;
}

/// One of three resources answers `status` for its list: it is marked unavailable and retried
/// rarely, the others poll on.
async fn refused_resource(status: u16) -> crate::helpers::TestApp {
    let app = spawn_app(Options {
        resources: Some("work_orders,invoices,clients".into()),
        publisher: false,
        ..Default::default()
    })
    .await;
    app.sim.state.set_faults(Faults {
        unavailable: [("invoices".to_string(), status)].into(),
        ..Default::default()
    });
    let invoices = catalogue::by_name("invoices").unwrap();
    let err = app
        .poller
        .poll_once(&app.feed(&invoices.name))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(app.poll_resource("clients").await.records, 45);
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(status["resources"]["invoices"]["available"], false);
    assert_eq!(status["resources"]["clients"]["available"], true);
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, "bridge_resource_available{resource=\"invoices\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "bridge_resource_available{resource=\"clients\"}"),
        Some(1.0)
    );

    // The poll loops: the healthy resource polls every second, the forbidden one waits its
    // long retry instead of hammering the account.
    let cancel = tokio_util::sync::CancellationToken::new();
    let before = app.sim.state.stats().list_requests_by_resource;
    for (name, interval) in [("invoices", 1), ("work_orders", 1)] {
        tokio::spawn(app.poller.clone().run(
            app.feed(name),
            Duration::from_secs(interval),
            Duration::from_secs(3600),
            Default::default(),
            cancel.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cancel.cancel();
    let after = app.sim.state.stats().list_requests_by_resource;
    let n = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    assert_eq!(
        n(&after, "invoices") - n(&before, "invoices"),
        1,
        "tried once, then rarely"
    );
    assert!(
        n(&after, "work_orders") - n(&before, "work_orders") >= 2 * 5,
        "kept polling"
    );
    app
}

#[tokio::test]
async fn every_resource_shares_one_request_budget() {
    let app = spawn_app(Options {
        resources: Some("all".into()),
        concurrency: 2,
        page_size: 5,
        publisher: false,
        ..Default::default()
    })
    .await;
    app.sim.state.set_faults(Faults {
        latency_ms: 20,
        ..Default::default()
    });
    // Every poll at once (POLL_MAX_PARALLEL=31): only the shared budget can hold the line.
    let mut poller = app.poller.clone();
    poller.parallel = std::sync::Arc::new(tokio::sync::Semaphore::new(31));
    let feeds: Vec<_> = catalogue::all().iter().map(|r| app.feed(&r.name)).collect();
    let polls = feeds.iter().map(|f| poller.poll_once(f));
    for result in futures::future::join_all(polls).await {
        result.unwrap();
    }
    let stats = app.sim.state.stats();
    assert!(stats.list_requests >= 31 * 9);
    assert_eq!(
        stats.max_in_flight, 2,
        "31 resources polled at once never exceed DAFTRA_CONCURRENCY"
    );
    app.stop().await;
}

#[test]
fn an_unknown_resource_name_stops_start_up_naming_the_variable() {
    let env = BridgeEnv::new()
        .set("DAFTRA_SUBDOMAIN", "acme")
        .set("DAFTRA_API_KEY", "k")
        .set("DAFTRA_RESOURCES", "work_orders, invoice");
    let out = Bridge::new(&["serve"], &env).output();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("DAFTRA_RESOURCES") && err.contains("\"invoice\""),
        "{err}"
    );
    assert!(
        err.contains("invoices, estimates, credit_notes"),
        "lists the valid names: {err}"
    );

    let env = BridgeEnv::new().set("DAFTRA_RESOURCES", "invoices");
    let listed = Bridge::new(&["resources"], &env).output();
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains(" yes ")).count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("InvoiceItem (invoices_invoice_item)"),
        "{text}"
    );
    for r in catalogue::all() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{} ", r.name))),
            "{}",
            r.name
        );
    }
}

#[tokio::test]
async fn a_label_that_names_several_values_filters_by_all_of_them() {
    let app = spawn_app(Options {
        resources: Some("invoices".into()),
        publisher: false,
        ..Default::default()
    })
    .await;
    app.poll_resource("invoices").await;
    let invoices = catalogue::by_name("invoices").unwrap();
    let unpaid = app
        .sim
        .state
        .records_of("invoices")
        .iter()
        .map(|r| record::normalise(invoices, r).unwrap())
        .filter(|r| matches!(r["payment_status"].as_i64(), None | Some(0)))
        .count();
    assert!(unpaid > 0);
    let body = app
        .get("/exports/invoices.csv?payment_status=Unpaid&fields=id,payment_status,payment_status_label")
        .await;
    assert_eq!(body.status(), 200);
    let (_, data) = rows(&body.text().await.unwrap());
    assert_eq!(data.len(), unpaid, "null, \"\" and 0 are all Unpaid");
    assert!(data.iter().all(|r| &r[2] == "Unpaid"));
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        !page.contains("unpaid,unpaid"),
        "hints name each label once"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_cli_export_leaves_no_file_behind() {
    let app = spawn_app(Options::without_publisher()).await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("invoices.csv");
    std::fs::write(&target, "yesterday's file").unwrap();
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", &app.sim.base_url)
        .set("DAFTRA_API_KEY", "wrong")
        .set("DAFTRA_MAX_RETRIES", "0");
    let out = Bridge::new(&["export", "invoices", "-o"], &env)
        .arg(&target)
        .output_async()
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "yesterday's file"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", &app.sim.base_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY);
    let ok = Bridge::new(&["export", "invoices_invoice_item", "-o"], &env)
        .arg(&target)
        .output_async()
        .await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .starts_with("invoice_id,id,"));
    app.stop().await;
}
