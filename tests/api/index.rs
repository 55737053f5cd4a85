//! `GET /`: each export's record count, last refresh and state, a form input for every filter
//! its query accepts, and a walk through the page in headless Chromium.

use std::path::Path;
use std::time::Duration;

use daftra_bridge::catalogue::{self, ColumnKind};
use daftra_bridge::export::query;
use daftra_bridge::sim::Faults;
use serde_json::Value;

use crate::helpers::{require, spawn_app, tool, Options};

/// The `<section>` of `export` on the page.
fn section<'a>(html: &'a str, export: &str) -> &'a str {
    let at = html
        .find(&format!("data-export=\"{export}\""))
        .unwrap_or_else(|| panic!("no section of {export}"));
    let start = html[..at].rfind("<section").expect("section start");
    let end = at + html[at..].find("</section>").expect("section end");
    &html[start..end]
}

/// The `data-state` of `export`'s section, which its label repeats.
fn state(html: &str, export: &str) -> String {
    let s = section(html, export);
    let value = |from: &str| from.split('"').next().unwrap_or_default().to_string();
    let of_section = value(s.split("data-state=\"").nth(1).expect("data-state"));
    let label = s.split("class=\"state state-").nth(1).expect("state label");
    assert!(
        label.contains(&format!("data-state=\"{of_section}\""))
            && label.contains(&format!(">{of_section}</span>")),
        "{export}: the visible label says {of_section}: {label}"
    );
    of_section
}

#[tokio::test]
async fn the_page_shows_counts_times_and_states() {
    let app = spawn_app(Options {
        resources: Some("work_orders,invoices,clients,products".into()),
        ..Options::without_publisher()
    })
    .await;
    let html = app.get("/").await.text().await.unwrap();
    for export in [
        "work_orders",
        "invoices",
        "invoices_invoice_item",
        "clients",
    ] {
        assert_eq!(state(&html, export), "stale", "{export} before any poll");
        assert!(section(&html, export).contains("last refreshed <span class=\"refreshed\">never"));
    }

    app.sim.state.set_faults(Faults {
        unavailable: [("invoices".to_string(), 404), ("clients".to_string(), 403)].into(),
        ..Default::default()
    });
    assert_eq!(app.poll().await.records, 45);
    for name in ["invoices", "clients"] {
        let r = catalogue::by_name(name).unwrap();
        assert!(app
            .poller
            .poll_once(&app.feed(&r.name))
            .await
            .unwrap_err()
            .is_unavailable());
    }
    let html = app.get("/").await.text().await.unwrap();
    assert_eq!(state(&html, "work_orders"), "fresh");
    let wo = section(&html, "work_orders");
    assert!(wo.contains("data-records=\"45\">45 records</span>"), "{wo}");
    let polled = app.state.health.status.get("work_orders").unwrap();
    let at = polled.last_success.expect("a successful poll");
    assert!(
        wo.contains(&format!(
            "<time class=\"refreshed\" datetime=\"{at}\">{at}</time>"
        )),
        "{wo}"
    );
    assert!(wo.contains("(just now)") || wo.contains(" s ago)"), "{wo}");
    assert_eq!(state(&html, "invoices"), "unavailable", "404: plugin off");
    assert_eq!(
        state(&html, "invoices_invoice_item"),
        "unavailable",
        "the parent's poll"
    );
    assert!(section(&html, "invoices_invoice_item").contains("records of invoices"));
    assert_eq!(state(&html, "clients"), "unavailable", "403: no permission");
    assert_eq!(state(&html, "products"), "stale", "never polled");

    // Older than three poll intervals (the tests poll every hour): stale, with its age.
    let old = (chrono::Utc::now() - chrono::TimeDelta::hours(4))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    app.state
        .health
        .status
        .update("work_orders", |s| s.last_success = Some(old.clone()));
    let html = app.get("/").await.text().await.unwrap();
    assert_eq!(state(&html, "work_orders"), "stale");
    assert!(section(&html, "work_orders").contains("(4 h ago)"));
    assert!(html.contains("<a href=\"/openapi.json\">/openapi.json</a>"));
    app.stop().await;
}

#[tokio::test]
async fn every_filter_of_every_export_has_a_form_input() {
    let app = spawn_app(Options {
        resources: Some("all".into()),
        export_token: Some("t<o>k&n".into()),
        ..Options::without_publisher()
    })
    .await;
    let html = app.get("/?token=t%3Co%3Ek%26n").await.text().await.unwrap();
    let exports: Vec<_> = catalogue::all()
        .iter()
        .flat_map(|r| std::iter::once(r).chain(catalogue::line_item_exports(r)))
        .collect();
    for r in exports {
        let s = section(&html, &r.name);
        let form = &s[s.find("<form").expect("a form")..];
        let params = query::parameters(r);
        for p in &params {
            let kind = match r.column(p) {
                Some(c) if !c.labels.is_empty() => "<select name",
                Some(c) if c.kind == ColumnKind::Int => "<input name",
                _ if p == "sort" || p == "source" => "<select name",
                _ => "<input name",
            };
            assert!(
                form.contains(&format!("{kind}=\"{p}\"")),
                "{}: no {kind} for {p}",
                r.name
            );
        }
        for (p, ty) in [("fields", "text"), ("bom", "checkbox")] {
            assert!(form.contains(&format!("name=\"{p}\" type=\"{ty}\"")), "{p}");
        }
        for c in &r.columns {
            let date = matches!(c.kind, ColumnKind::Date | ColumnKind::Timestamp);
            for p in [format!("{}_from", c.name), format!("{}_to", c.name)] {
                let input = format!("name=\"{p}\" type=\"date\"");
                assert_eq!(form.contains(&input), date, "{}: {p}", r.name);
            }
            if c.labels.is_empty() && c.kind == ColumnKind::Int && c.name.ends_with("_id") {
                assert!(form.contains(&format!("name=\"{}\" type=\"number\"", c.name)));
            }
        }
        assert!(
            form.contains("<select class=\"format\""),
            "{}: format",
            r.name
        );
        // Nothing else is sent but the token, which travels escaped.
        for name in form.split(" name=\"").skip(1) {
            let name = name.split('"').next().unwrap();
            assert!(
                name == "token" || params.iter().any(|p| p == name),
                "{}: {name}",
                r.name
            );
        }
        assert!(form.contains("name=\"token\" value=\"t&lt;o&gt;k&amp;n\""));
        assert!(s.contains(&format!(
            "href=\"/exports/{}.xlsx?source=snapshot&amp;token=t%3Co%3Ek%26n\"",
            r.name
        )));
    }
    app.stop().await;
}

/// Whether the browser test can run here: Chromium, node and the installed playwright-core
/// ([`require`]'s rule).
pub(crate) fn browser_ready(chromium: &str) -> bool {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    require(
        Path::new(chromium).exists(),
        &format!("{chromium} is missing"),
        ".ci/run installs it (Debian package chromium; CHROMIUM names another)",
    ) && tool("node")
        && require(
            browser_dir.join("node_modules/playwright-core").exists(),
            "playwright-core is not installed in tests/browser",
            ".ci/run installs it (npm ci --prefix tests/browser)",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_fills_the_form_and_downloads_the_files() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !browser_ready(&chromium) {
        return;
    }
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/index.mjs");
    let started = std::time::Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&app.base)
        .env("CHROMIUM", &chromium)
        .env("STATUS_LABEL", "Closed")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser script finishes in 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed: {stderr}\n{stdout}"
    );
    eprintln!("browser walk took {:?}", started.elapsed());
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["state"]["text"], "fresh");
    assert_eq!(seen["state"]["records"], "45");

    // The form's address carries the filter, and the file is that filter's rows.
    let url = reqwest::Url::parse(seen["csv_url"].as_str().unwrap()).unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(query.contains(&("status".into(), "Closed".into())), "{url}");
    assert!(
        query.contains(&("fields".into(), "id,title".into())),
        "{url}"
    );
    let mut csv = csv::Reader::from_reader(seen["csv"].as_str().unwrap().as_bytes());
    assert_eq!(
        csv.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "title"]
    );
    let got: Vec<(i64, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[1].to_string())
        })
        .collect();
    let int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let closed: Vec<i64> = app
        .sim
        .state
        .records()
        .iter()
        .filter(|r| r.get("status").and_then(int) == Some(2))
        .filter_map(|r| r.get("id").and_then(int))
        .collect();
    assert!(!closed.is_empty(), "the simulator has closed work orders");
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), closed);
    let direct = app
        .get("/exports/work_orders.csv?fields=id,title&status=closed")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        seen["csv"].as_str().unwrap(),
        direct,
        "the same file as by URL"
    );
    assert!(seen["xlsx_file"].as_str().unwrap().ends_with(".xlsx"));
    assert!(seen["xlsx_bytes"].as_u64().unwrap() > 1000);
    app.stop().await;
}
