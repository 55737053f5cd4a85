//! Exports as JSON Lines and Parquet, read back by the tools data teams use (pandas, pyarrow,
//! DuckDB: `tests/files/read_exports.py`) and compared with the simulator's truth, Arabic text,
//! a 20-digit amount, a timestamp in the account's zone and nested line items included.

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{python_module, spawn_app, Options, TestApp};

/// GETs `path` into the file `to`; the answer's headers.
async fn download(app: &TestApp, path: &str, to: &Path) -> reqwest::header::HeaderMap {
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "{path}");
    let headers = r.headers().clone();
    std::fs::write(to, r.bytes().await.unwrap()).unwrap();
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_and_parquet_read_back_exactly_in_pandas_pyarrow_and_duckdb() {
    let ready = ["pandas", "pyarrow", "duckdb"]
        .iter()
        .all(|m| python_module(m));
    if !ready {
        return;
    }
    let app = spawn_app(Options {
        resources: Some("invoices".into()),
        timezone: Some("Africa/Cairo".into()),
        records: 25,
        ..Options::without_publisher()
    })
    .await;
    let edit = json!({"client_business_name": "شركة النور للتجارة", "summary_total": "12345678901234567890.12",
        "created": "2026-03-05 14:21:35", "date": "2026-03-05"});
    assert!(app
        .sim
        .state
        .update_in("invoices", 1, edit.as_object().unwrap().clone()));
    app.poll_resource("invoices").await;
    let truth = app.sim.state.records_of("invoices");
    let items = truth
        .iter()
        .find(|r| r["id"].as_i64() == Some(1) || r["id"] == "1")
        .and_then(|r| r.get("InvoiceItem"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);

    let dir = tempfile::tempdir().unwrap();
    let (jsonl, parquet) = (dir.path().join("i.jsonl"), dir.path().join("i.parquet"));
    let j = download(&app, "/exports/invoices.jsonl", &jsonl).await;
    assert_eq!(j["content-type"], "application/jsonl; charset=utf-8");
    let p = download(&app, "/exports/invoices.parquet", &parquet).await;
    assert_eq!(p["content-type"], "application/vnd.apache.parquet");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/files/read_exports.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&jsonl)
        .arg(&parquet)
        .arg("1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = truth.len();
    let expected = json!({"rows": n, "name": "شركة النور للتجارة", "total": "12345678901234567890.12",
        "created": "2026-03-05T12:21:35", "date": "2026-03-05"});
    for reader in ["pandas_jsonl", "pandas_parquet", "duckdb_parquet"] {
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&seen[reader][k], v, "{reader}.{k}: {seen}");
        }
    }
    assert_eq!(seen["pandas_jsonl"]["items"], items, "{seen}");
    assert_eq!(seen["duckdb_jsonl"]["items"], items, "{seen}");
    assert_eq!(seen["duckdb_jsonl"]["total"], "12345678901234567890.12");
    assert_eq!(seen["duckdb_jsonl"]["rows"], n);
    let types = &seen["pyarrow_types"];
    assert_eq!(types["id"], "int64");
    assert_eq!(types["date"], "date32[day]");
    assert_eq!(types["created"], "timestamp[us, tz=UTC]");
    assert_eq!(types["summary_total"], "string");
    assert_eq!(
        types["payment_status_label"], "string",
        "labels beside enums"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_new_formats_take_the_same_filters_columns_order_and_validators() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let text = app
        .get("/exports/work_orders.jsonl?fields=id,title&status=closed&sort=-id")
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l.as_object().unwrap().len() == 2),
        "{text}"
    );
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "sort=-id");
    let csv = app
        .get("/exports/work_orders.csv?fields=id,title&status=closed&sort=-id")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count() - 1,
        lines.len(),
        "the same rows as the CSV"
    );
    for format in ["jsonl", "parquet"] {
        let r = app.get(&format!("/exports/work_orders.{format}")).await;
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let again = app
            .http
            .get(format!("{}/exports/work_orders.{format}", app.base))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{format}");
        let bad = app
            .get(&format!("/exports/work_orders.{format}?bom=true"))
            .await;
        assert_eq!(bad.status(), 400, "bom is CSV's");
    }
    let parquet = app
        .get("/exports/work_orders.parquet")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&parquet[..4], b"PAR1");
    assert_eq!(&parquet[parquet.len() - 4..], b"PAR1");
    app.stop().await;
}
