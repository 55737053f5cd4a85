//! The events documented: `GET /asyncapi.json` passes the AsyncAPI CLI's `asyncapi validate`,
//! and real events of several resources validate against the JSON Schema their `dataschema`
//! names, checked by an independent validator (Python's `jsonschema`).

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{python_module, spawn_app, tool, Options, TestApp};

fn options() -> Options {
    Options {
        resources: Some("work_orders,invoices,products".into()),
        records: 30,
        emit_initial: true,
        timezone: Some("Africa/Cairo".into()),
        ..Options::without_publisher()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_document_passes_asyncapi_validate() {
    if !tool("asyncapi") {
        return;
    }
    let app = spawn_app(options()).await;
    let r = app.get("/asyncapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let messages = doc["components"]["messages"].as_object().unwrap();
    assert_eq!(messages.len(), 9, "three resources, three operations");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("asyncapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new("asyncapi")
        .args([
            "validate",
            file.to_str().unwrap(),
            "--fail-severity",
            "error",
        ])
        .env("CI", "true")
        .env("ASYNCAPI_METRICS", "false")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "asyncapi validate: {said}");
    assert!(said.contains("valid"), "{said}");
    app.stop().await;
}

/// Every event in the outbox, parsed.
fn events(app: &TestApp) -> Vec<Value> {
    app.state
        .store
        .outbox_batch(0, 100_000)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.event.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_events_validate_against_the_schema_their_dataschema_names() {
    if !python_module("jsonschema") {
        return;
    }
    let app = spawn_app(options()).await;
    for r in ["work_orders", "invoices", "products"] {
        app.poll_resource(r).await;
    }
    // Updates (line items too) and deletes, beside the created events of the first polls.
    for id in 1..=12 {
        let edit = json!({"title": format!("edit {id}")});
        app.sim.state.update(id, edit.as_object().unwrap().clone());
        let edit =
            json!({"notes": format!("ملاحظة {id}"), "summary_total": "12345678901234567890.5"});
        app.sim
            .state
            .update_in("invoices", id, edit.as_object().unwrap().clone());
    }
    app.sim.state.delete(13);
    app.sim.state.delete_in("invoices", 14);
    for r in ["work_orders", "invoices", "products"] {
        app.poll_resource(r).await;
    }
    let all = events(&app);
    assert!(all.len() >= 100, "{} events", all.len());
    let mut schemas = BTreeMap::new();
    for e in &all {
        let kind = e["type"].as_str().unwrap();
        let url = e["dataschema"]
            .as_str()
            .expect("every event names its schema");
        let path = format!("/schemas/{kind}.json");
        assert!(url.ends_with(&path), "{url}");
        if !schemas.contains_key(kind) {
            let r = app.get(&path).await;
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()["content-type"], "application/schema+json");
            schemas.insert(kind.to_string(), r.json::<Value>().await.unwrap());
        }
    }
    let types: Vec<&String> = schemas.keys().collect();
    assert!(
        types.len() >= 7,
        "created, updated and deleted of several resources: {types:?}"
    );
    // One event spoiled on purpose: the validator must refuse it.
    let mut spoiled = all[0].clone();
    spoiled["data"]["id"] = json!("not a number");
    let mut checked = all.clone();
    checked.push(spoiled);
    let dir = tempfile::tempdir().unwrap();
    let (events_file, schemas_file) = (
        dir.path().join("events.json"),
        dir.path().join("schemas.json"),
    );
    std::fs::write(&events_file, Value::Array(checked).to_string()).unwrap();
    std::fs::write(&schemas_file, json!(schemas).to_string()).unwrap();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
events = json.load(open(sys.argv[1])); schemas = json.load(open(sys.argv[2]))
for s in schemas.values(): Draft202012Validator.check_schema(s)
bad = [i for i, e in enumerate(events) if list(Draft202012Validator(schemas[e["type"]]).iter_errors(e["data"]))]
print(json.dumps({"checked": len(events), "invalid": bad}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&events_file)
        .arg(&schemas_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["checked"], all.len() + 1);
    assert_eq!(
        seen["invalid"],
        json!([all.len()]),
        "only the spoiled event is refused"
    );
    let missing = app.get("/schemas/com.daftra.client.created.json").await;
    assert_eq!(missing.status(), 404, "clients are not served here");
    app.stop().await;
}
