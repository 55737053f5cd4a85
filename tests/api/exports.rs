//! Spreadsheet exports: CSV and XLSX equal the simulator's records; filters, errors, headers.

use std::collections::HashMap;

use calamine::{Data, DataType, Reader, Xlsx};
use serde_json::{json, Value};

use std::time::Duration;

use crate::helpers::{
    fields, metric, spawn_app, sqlite_url, Bridge, BridgeEnv, Options, SIM_API_KEY,
};

/// The normalised value Daftra meant, computed independently of the bridge's code.
fn expected(column: &str, raw: &serde_json::Map<String, Value>) -> String {
    let v = raw.get(column).cloned().unwrap_or(Value::Null);
    let text = match &v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match column {
        "id"
        | "client_id"
        | "staff_id"
        | "status"
        | "follow_up_status_id"
        | "delivery_appointment_id" => {
            if text.is_empty() {
                String::new()
            } else {
                text.parse::<i64>().unwrap().to_string()
            }
        }
        "budget" => {
            if text.is_empty() {
                String::new()
            } else {
                format!("{}", text.parse::<f64>().unwrap())
            }
        }
        "status_label" => match expected("status", raw).as_str() {
            "1" => "Open",
            "2" => "Closed",
            "3" => "Cancelled",
            "4" => "Draft",
            _ => "",
        }
        .into(),
        "start_date" | "delivery_date" | "created" | "modified" => {
            if text.starts_with("0000") {
                String::new()
            } else {
                text
            }
        }
        _ => match text.chars().next() {
            Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
            _ => text,
        },
    }
}

fn normalise_number_text(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(f) if !s.is_empty() => format!("{f}"),
        _ => s.to_string(),
    }
}

#[tokio::test]
async fn csv_equals_the_simulator_records_field_by_field() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let resp = app.get("/exports/work_orders.csv").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.headers()["x-data-source"], "snapshot");
    assert!(
        resp.headers().contains_key("x-snapshot-polled-at"),
        "the snapshot's age is told"
    );
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment; filename=\"work_orders-") && cd.contains("filename*=UTF-8''"),
        "{cd}"
    );
    let body = resp.bytes().await.unwrap();
    assert!(body.windows(2).any(|w| w == b"\r\n"), "CRLF line ends");
    let mut reader = csv::Reader::from_reader(&body[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header.join(","),
        "id,number,title,client_id,staff_id,status,status_label,start_date,delivery_date,budget,budget_currency,follow_up_status_id,delivery_appointment_id,description,created,modified"
    );
    let records = app.sim.state.records();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), records.len());
    for (row, raw) in rows.iter().zip(&records) {
        for (i, column) in header.iter().enumerate() {
            let got = if column == "budget" {
                normalise_number_text(&row[i])
            } else {
                row[i].to_string()
            };
            assert_eq!(got, expected(column, raw), "column {column} of {raw:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn xlsx_holds_the_same_data_with_numbers_and_dates_typed() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let resp = app.get("/exports/work_orders.xlsx").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(body.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let mut rows = sheet.rows();
    let header: Vec<String> = rows.next().unwrap().iter().map(|c| c.to_string()).collect();
    let col: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let records = app.sim.state.records();
    let data: Vec<_> = rows.collect();
    assert_eq!(data.len(), records.len());
    for (row, raw) in data.iter().zip(&records) {
        assert!(
            matches!(row[col["id"]], Data::Float(_) | Data::Int(_)),
            "id is a number"
        );
        assert_eq!(row[col["id"]].to_string(), expected("id", raw));
        match expected("budget", raw).as_str() {
            "" => assert_eq!(row[col["budget"]], Data::Empty),
            b => assert_eq!(
                row[col["budget"]].as_f64().unwrap(),
                b.parse::<f64>().unwrap()
            ),
        }
        assert!(matches!(row[col["status"]], Data::Float(_) | Data::Int(_)));
        // Titles are strings in XLSX, never formulas, so no prefix.
        assert_eq!(
            row[col["title"]],
            Data::String(raw["title"].as_str().unwrap().to_string())
        );
        assert_eq!(
            row[col["number"]],
            Data::String(raw["number"].as_str().unwrap().to_string())
        );
        match &row[col["created"]] {
            Data::DateTime(dt) => {
                let shown = dt
                    .as_datetime()
                    .unwrap()
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
                assert_eq!(shown, expected("created", raw));
            }
            other => panic!("created is a date cell, got {other:?}"),
        }
        match expected("delivery_date", raw).as_str() {
            "" => assert_eq!(row[col["delivery_date"]], Data::Empty),
            d => assert!(
                matches!(&row[col["delivery_date"]], Data::DateTime(x) if x.as_datetime().unwrap().format("%Y-%m-%d").to_string() == d)
            ),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn filters_fields_and_sort_apply() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let body = app
        .get("/exports/work_orders.csv?fields=status,id&status=open,2&sort=-id")
        .await
        .text()
        .await
        .unwrap();
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some("status,id"));
    let rows: Vec<(i64, i64)> = lines
        .map(|l| {
            let (s, i) = l.split_once(',').unwrap();
            (s.parse().unwrap(), i.parse().unwrap())
        })
        .collect();
    let expected_count = app
        .sim
        .state
        .records()
        .iter()
        .filter(|r| ["1", "2"].contains(&expected("status", r).as_str()))
        .count();
    assert_eq!(rows.len(), expected_count);
    assert!(rows.iter().all(|(s, _)| *s == 1 || *s == 2));
    assert!(
        rows.windows(2).all(|w| w[0].1 > w[1].1),
        "sorted by id descending"
    );

    let client = expected("client_id", &app.sim.state.records()[0]);
    let body = app
        .get(&format!(
            "/exports/work_orders.csv?client_id={client}&fields=client_id"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(body.lines().skip(1).all(|l| l == client) && body.lines().count() > 1);

    let body = app
        .get("/exports/work_orders.csv?bom=true&fields=id")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..3], b"\xEF\xBB\xBF");
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    for (query, field) in [
        ("stauts=1", "stauts"),
        ("status=9", "status"),
        ("fields=id,bogus", "fields"),
        ("created_from=yesterday", "created_from"),
        ("sort=nope", "sort"),
        ("client_id=abc", "client_id"),
        ("source=cache", "source"),
        ("bom=perhaps", "bom"),
    ] {
        let resp = app.get(&format!("/exports/work_orders.csv?{query}")).await;
        assert_eq!(resp.status(), 400, "{query}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "invalid_query");
        assert_eq!(v["field"], field, "{query}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.get("/exports/work_orders.pdf").await.status(), 404);
    assert_eq!(app.get("/exports/invoices.csv").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_export_token_guards_exports_but_not_health() {
    let app = spawn_app(Options {
        publisher: false,
        export_token: Some("s3cret-token".into()),
        ..Default::default()
    })
    .await;
    app.poll().await;
    assert_eq!(app.get("/exports/work_orders.csv").await.status(), 401);
    assert_eq!(
        app.get("/exports/work_orders.csv?token=wrong")
            .await
            .status(),
        401
    );
    assert_eq!(app.get("/status").await.status(), 401);
    assert_eq!(
        app.get("/exports/work_orders.csv?token=s3cret-token")
            .await
            .status(),
        200
    );
    let with_header = app
        .http
        .get(format!("{}/exports", app.base))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), 200);
    let lower_case = app
        .http
        .get(format!("{}/exports", app.base))
        .header("authorization", "bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(lower_case.status(), 200, "the scheme is case-insensitive");
    let twice = app
        .get("/exports/work_orders.csv?token=s3cret-token&token=s3cret-token")
        .await;
    assert_eq!(twice.status(), 400);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
    // The page keeps a token given in its address in every link and form.
    let html = app.get("/?token=s3cret-token").await.text().await.unwrap();
    assert!(
        html.contains("href=\"/exports/work_orders.xlsx?source=snapshot&amp;token=s3cret-token\""),
        "{html}"
    );
    assert!(html.contains("<input type=\"hidden\" name=\"token\" value=\"s3cret-token\">"));
    app.stop().await;
}

#[tokio::test]
async fn live_source_reads_daftra_and_an_outage_without_snapshot_is_503() {
    let app = spawn_app(Options::without_publisher()).await;
    let live = app
        .get("/exports/work_orders.csv?source=live&fields=id")
        .await;
    assert_eq!(live.headers()["x-data-source"], "live");
    let body = app
        .get("/exports/work_orders.csv?source=live&fields=id")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count(), 1 + app.sim.state.records().len());
    app.sim.stop().await;
    let resp = app.get("/exports/work_orders.csv").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    app.cancel.cancel();
}

#[tokio::test]
async fn hard_text_round_trips_through_csv_and_xlsx() {
    let app = spawn_app(Options {
        records: 0,
        publisher: false,
        ..Default::default()
    })
    .await;
    let long: String = "وصف طويل جدا ".chars().cycle().take(40_000).collect();
    let hard = [
        (
            "Emoji 🔧🚚 and \"quotes\", commas",
            "line one\nline two\r\nline \"three\"",
        ),
        ("-Negative-looking title", "\u{1}bell\u{7} and tab\tinside"),
        ("@mention", long.as_str()),
    ];
    for (i, (title, description)) in hard.iter().enumerate() {
        let raw = json!({"id": i + 1, "number": format!("{:06}", i + 1), "title": title, "description": description,
            "start_date": "2026-01-0".to_string() + &(i + 1).to_string(), "delivery_date": "", "budget": format!("-{i}.25"),
            "status": 1, "created": "0000-00-00 00:00:00", "modified": "2026-02-03 04:05:06"});
        app.sim
            .state
            .insert_raw(raw.as_object().unwrap().clone())
            .unwrap();
    }
    app.poll().await;

    let body = app
        .get("/exports/work_orders.csv?fields=title,description,budget,created")
        .await
        .bytes()
        .await
        .unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&body[..])
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3);
    for (row, (title, description)) in rows.iter().zip(&hard) {
        let expect_title = if title.starts_with(['-', '@']) {
            format!("'{title}")
        } else {
            title.to_string()
        };
        assert_eq!(&row[0], expect_title);
        // Stray C0 controls (not tab, CR or LF) are removed from CSV cells; all else is kept.
        let kept: String = description
            .chars()
            .filter(|c| !c.is_ascii_control() || matches!(c, '\t' | '\r' | '\n'))
            .collect();
        assert_eq!(&row[1], kept, "CSV keeps every other character");
        assert!(
            row[2].starts_with('-') && row[2].parse::<f64>().unwrap() < 0.0,
            "numbers are not prefixed"
        );
        assert_eq!(&row[3], "", "zero timestamp is empty");
    }

    let body = app
        .get("/exports/work_orders.xlsx?fields=title,description,budget")
        .await
        .bytes()
        .await
        .unwrap();
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(body.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let data: Vec<_> = sheet.rows().skip(1).collect();
    for (row, (title, description)) in data.iter().zip(&hard) {
        assert_eq!(row[0], Data::String(title.to_string()));
        let got = row[1].to_string();
        if description.encode_utf16().count() > 32_767 {
            assert_eq!(
                got.encode_utf16().count(),
                32_767,
                "truncated to Excel's cell limit"
            );
            assert!(description.starts_with(&got));
        } else {
            assert_eq!(
                got,
                description.replace("\r\n", "\n").replace('\r', "\n"),
                "control characters survive as Excel escapes; CR LF becomes LF"
            );
        }
        assert!(row[2].as_f64().unwrap() < 0.0);
    }
    assert_eq!(
        metric(
            &app.metrics().await,
            "bridge_export_cells_truncated_total{resource=\"work_orders\"}"
        ),
        Some(1.0),
        "the one cell over Excel's limit is counted"
    );
    app.stop().await;
}

#[tokio::test]
async fn discovery_lists_the_exports_and_the_page_links_them() {
    let app = spawn_app(Options::without_publisher()).await;
    let v: Value = app.get("/exports").await.json().await.unwrap();
    let wo = &v["exports"][0];
    assert_eq!(wo["resource"], "work_orders");
    assert_eq!(wo["urls"]["csv"], "/exports/work_orders.csv");
    assert_eq!(wo["columns"].as_array().unwrap().len(), 16);
    assert!(wo["filters"]["date_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "created_from"));
    let page = app.get("/").await;
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("href=\"/exports/work_orders.xlsx?source=snapshot\"")
            && html.contains("<form")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_command_writes_the_same_rows() {
    let app = spawn_app(Options::without_publisher()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wo.csv");
    let sim = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", &app.sim.base_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY);
    let status = Bridge::new(
        &[
            "export",
            "work_orders",
            "--format",
            "csv",
            "--status",
            "open,closed",
            "--fields",
            "id,status",
            "-o",
        ],
        &sim.clone().set("DAFTRA_PAGE_SIZE", "7"),
    )
    .arg(&out)
    .output();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let expected_rows = app
        .sim
        .state
        .records()
        .iter()
        .filter(|r| ["1", "2"].contains(&expected("status", r).as_str()))
        .count();
    assert_eq!(text.lines().count(), 1 + expected_rows);
    assert!(text
        .lines()
        .skip(1)
        .all(|l| l.ends_with(",1") || l.ends_with(",2")));
    let bad = Bridge::new(&["export", "work_orders", "--status", "bogus"], &sim).output();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--status"));
    let no_db = BridgeEnv::new().set(
        "DATABASE_URL",
        sqlite_url(&dir.path().join("none/x.sqlite3")),
    );
    let missing = Bridge::new(&["export", "work_orders", "--source", "snapshot"], &no_db).output();
    assert!(
        !missing.status.success(),
        "no snapshot is an error, not an empty file"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no snapshot"));
    assert!(!dir.path().join("none").exists(), "nothing created");
    app.stop().await;
}

#[tokio::test]
async fn a_sorted_live_export_is_sorted() {
    let app = spawn_app(Options::without_publisher()).await;
    let body = app.get("/exports/work_orders.csv?source=live&sort=-id&fields=id&status=open,closed,cancelled,draft").await.text().await.unwrap();
    let ids: Vec<i64> = body.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids.len(), app.sim.state.records().len());
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "descending ids");
    let body = app
        .get("/exports/work_orders.csv?source=live&sort=budget&fields=budget")
        .await
        .text()
        .await
        .unwrap();
    let budgets: Vec<Option<f64>> = body.lines().skip(1).map(|l| l.parse().ok()).collect();
    assert!(
        budgets.windows(2).all(|w| w[0] <= w[1]),
        "ascending budgets, no value first"
    );
    app.stop().await;
}

#[tokio::test]
async fn xlsx_whole_numbers_are_integers_and_line_breaks_are_lf() {
    let app = spawn_app(Options::without_publisher()).await;
    let mut raw = app.sim.state.records()[0].clone();
    raw.insert("description".into(), json!("first\r\nsecond\rthird"));
    raw.insert("budget".into(), json!("1500.50"));
    app.sim.state.insert_raw(raw).unwrap();
    app.poll().await;
    let bytes = app
        .get("/exports/work_orders.xlsx?fields=id,staff_id,budget,description")
        .await
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut sheet = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("xl/worksheets/sheet1.xml").unwrap(),
        &mut sheet,
    )
    .unwrap();
    assert!(sheet.contains("<v>1</v>"), "id 1 is written as an integer");
    assert!(
        !sheet.contains(".0</v>"),
        "no whole number is written as x.0"
    );
    assert!(sheet.contains("<v>1500.5</v>"));
    assert!(
        !sheet.contains('\r') && !sheet.contains("_x000D_"),
        "CR becomes LF"
    );
    assert!(sheet.contains("first\nsecond\nthird"));
    app.stop().await;
}

#[tokio::test]
async fn snapshot_exports_answer_304_to_a_tool_that_already_has_this_version() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let url = "/exports/work_orders.csv?fields=id,title&status=1,2";
    let first = app.get(url).await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let modified = first.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    let body = first.text().await.unwrap();
    let conditional = |name: &'static str, value: String| {
        app.http
            .get(format!("{}{url}", app.base))
            .header(name, value)
            .send()
    };
    let again = conditional("if-none-match", etag.clone()).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.text().await.unwrap().is_empty());
    let since = conditional("if-modified-since", modified.clone())
        .await
        .unwrap();
    assert_eq!(since.status(), 304);
    // The same selection in another order is the same file; another selection is not.
    let reordered = app
        .http
        .get(format!(
            "{}/exports/work_orders.csv?status=1,2&fields=id,title",
            app.base
        ))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reordered.status(), 304);
    let other = app.get("/exports/work_orders.csv?fields=id").await;
    assert_ne!(other.headers()["etag"], etag.as_str());
    let head = app
        .http
        .head(format!("{}{url}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["etag"], etag.as_str());
    // The length of the file is not known without building it: never claimed to be 0.
    assert_ne!(
        head.headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap()),
        Some("0")
    );
    // Live data has no version: no validators.
    let live = app.get("/exports/work_orders.csv?source=live").await;
    assert!(live.headers().get("etag").is_none());

    // A poll that changes nothing keeps the version; a change makes a new one.
    app.poll().await;
    assert_eq!(
        conditional("if-none-match", etag.clone())
            .await
            .unwrap()
            .status(),
        304
    );
    app.sim
        .state
        .update(1, fields(json!({"title": "changed", "status": 1})));
    app.poll().await;
    let changed = conditional("if-none-match", etag.clone()).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    assert_ne!(changed.text().await.unwrap(), body);
    app.stop().await;
}

#[tokio::test]
async fn identical_xlsx_requests_of_one_version_share_one_build() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let count = async || {
        metric(
            &app.metrics().await,
            "bridge_export_duration_seconds_count{format=\"xlsx\",resource=\"work_orders\"}",
        )
        .unwrap_or(0.0)
    };
    let before = count().await;
    // Hold every build permit, so the eight requests all arrive while the first build waits.
    let builds = app.state.exports.xlsx_builds.clone();
    let held = builds.clone().acquire_many_owned(2).await.unwrap();
    let url = format!("{}/exports/work_orders.xlsx?fields=id,title", app.base);
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (app.http.clone(), url.clone());
            tokio::spawn(async move { http.get(url).send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(held);
    let mut bodies = Vec::new();
    for r in requests {
        bodies.push(r.await.unwrap());
    }
    assert!(bodies
        .iter()
        .all(|b| b.starts_with(b"PK") && *b == bodies[0]));
    assert_eq!(count().await - before, 1.0, "one build for eight requests");
    app.stop().await;
}
