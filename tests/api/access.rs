//! Access keys with scopes, signed links and each key's fair share (README "Access"): the
//! admin API and the command line make them, every guarded route enforces them, two replicas
//! on one PostgreSQL database agree on them, and no secret reaches a log, a metric or `/status`.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    free_port, metric, spawn_app, sqlite_url, wait_for, Bridge, BridgeEnv, ExchangeGuard, Options,
    TestApp, SIM_API_KEY,
};
use crate::pg::TestDb;

const ADMIN: &str = "access-admin-token";

fn options(resources: &str) -> Options {
    Options {
        admin_token: Some(ADMIN.into()),
        resources: Some(resources.into()),
        records: 12,
        ..Options::without_publisher()
    }
}

/// `POST /keys` with `body` on the bridge at `base`: the whole key and the key as listed.
async fn create_key(http: &reqwest::Client, base: &str, body: Value) -> (String, Value) {
    let r = http
        .post(format!("{base}/keys"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let mut shown: Value = r.json().await.unwrap();
    let key = shown["key"].as_str().unwrap().to_string();
    shown.as_object_mut().unwrap().remove("key");
    (key, shown)
}

/// GET `path` on `app` with `key` as a Bearer token.
async fn get_with(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn status_and_message(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_key_scoped_to_inventory_reads_stock_and_products_and_nothing_else() {
    let app = spawn_app(options("products,stock_transactions,invoices,journals")).await;
    // Before any key (and without EXPORT_TOKEN) the exports are open, as they always were.
    assert_eq!(app.get("/exports/journals.csv").await.status(), 200);
    let (key, shown) = create_key(
        &app.http,
        &app.base,
        json!({"name": "warehouse", "exports": ["inventory"], "expires": "90d"}),
    )
    .await;
    assert!(
        key.starts_with("dbk_") && key.len() >= 4 + 12 + 1 + 43,
        "{key}"
    );
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["scopes"]["exports"], json!(["inventory"]));
    assert!(shown["expires_at"].as_str().unwrap().ends_with('Z'));

    for path in ["/exports/products.csv", "/exports/stock_transactions.xlsx"] {
        let r = get_with(&app, path, &key).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    let query_form = app.get(&format!("/exports/products.csv?token={key}")).await;
    assert_eq!(query_form.status(), 200, "the key in ?token= works too");

    let refused = [
        ("/exports/invoices.csv", "exports:invoices"),
        ("/exports/journals.xlsx", "exports:journals"),
        (
            "/exports/invoices_invoice_item.csv",
            "exports:invoices_invoice_item",
        ),
        ("/exports/no_such_thing.csv", "exports:no_such_thing"),
        ("/status", "status"),
        ("/records/invoices/1", "exports:invoices"),
    ];
    for (path, scope) in refused {
        let (status, message) = status_and_message(get_with(&app, path, &key).await).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            message.contains(scope) && message.contains("warehouse"),
            "{path}: {message}"
        );
        assert!(
            !message.contains("products"),
            "nothing else is hinted: {message}"
        );
    }
    // With `status`, a key sees the status of its own resources only.
    let (watcher, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "watcher", "exports": "inventory", "status": true}),
    )
    .await;
    let status: Value = get_with(&app, "/status", &watcher)
        .await
        .json()
        .await
        .unwrap();
    let mut shown: Vec<&String> = status["resources"].as_object().unwrap().keys().collect();
    shown.sort();
    assert_eq!(shown, ["products", "stock_transactions"], "{status}");
    let poll = app
        .http
        .post(format!("{}/poll/products", app.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, message) = status_and_message(poll).await;
    assert_eq!(
        (status, message.contains("poll")),
        (StatusCode::FORBIDDEN, true)
    );

    // Lists show what the key may read, and only that.
    let listed: Value = get_with(&app, "/exports", &key).await.json().await.unwrap();
    let mut names: Vec<&str> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert!(names.contains(&"products") && names.contains(&"stock_transactions"));
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("products") || n.starts_with("stock_")),
        "{names:?}"
    );
    let page = get_with(&app, "/", &key).await.text().await.unwrap();
    assert!(page.contains("data-export=\"products\""));
    assert!(!page.contains("data-export=\"invoices\"") && !page.contains("journals"));
    assert!(!page.contains("/status"), "no link the key cannot follow");
    let doc = get_with(&app, "/openapi.json", &key)
        .await
        .text()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let examples = doc["components"]["parameters"]["ExportFile"]["examples"].to_string();
    assert!(
        examples.contains("products.csv") && !examples.contains("invoices"),
        "{examples}"
    );

    // Once a key exists, a request without one is refused; unknown keys are told apart from
    // nothing else.
    let (status, message) = status_and_message(app.get("/exports/products.csv").await).await;
    assert_eq!(status, 401);
    assert!(message.contains("access key is required"), "{message}");
    let forged = format!(
        "{}{}",
        &key[..key.len() - 1],
        if key.ends_with('A') { 'B' } else { 'A' }
    );
    for wrong in [
        forged.as_str(),
        "dbk_0123456789ab_notakeyatall",
        "some-token",
    ] {
        let (status, message) = status_and_message(get_with(&app, "/exports", wrong).await).await;
        assert_eq!(status, 401, "{wrong}");
        assert!(
            !message.contains("warehouse"),
            "an unknown key hears no name: {message}"
        );
    }

    let m = app.metrics().await;
    let count = |series: &str| metric(&m, series).unwrap_or(0.0);
    assert!(
        count("bridge_http_auth_failures_total{reason=\"scope\"}") >= 7.0,
        "{m}"
    );
    assert!(count("bridge_http_auth_failures_total{reason=\"unknown\"}") >= 3.0);
    assert!(count("bridge_http_auth_failures_total{reason=\"missing\"}") >= 1.0);
    assert!(
        m.lines()
            .any(|l| l.starts_with("bridge_http_requests_total{")
                && l.contains("key=\"warehouse\"")
                && l.contains("route=\"/exports/{file}\"")),
        "{m}"
    );
    assert!(!m.contains(&key[4..]), "no secret in the metrics");
    app.stop().await;
}

#[tokio::test]
async fn export_token_stays_the_all_access_key_beside_keys() {
    let app = spawn_app(Options {
        export_token: Some("all-access".into()),
        ..options("work_orders,invoices")
    })
    .await;
    let (key, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "bi", "exports": "sales"}),
    )
    .await;
    for path in [
        "/status",
        "/exports/work_orders.csv",
        "/exports/invoices.csv",
    ] {
        assert_eq!(
            get_with(&app, path, "all-access").await.status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        get_with(&app, "/exports/invoices.csv", &key).await.status(),
        200
    );
    assert_eq!(
        get_with(&app, "/exports/work_orders.csv", &key)
            .await
            .status(),
        403
    );
    // Keys are managed with ADMIN_TOKEN only: neither EXPORT_TOKEN nor a key opens /keys.
    for token in ["all-access", key.as_str()] {
        assert_eq!(get_with(&app, "/keys", token).await.status(), 401);
    }
    // Revoking every key does not reopen the deployment.
    let id = &key[4..16];
    let r = app
        .http
        .delete(format!("{}/keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, message) =
        status_and_message(get_with(&app, "/exports/invoices.csv", &key).await).await;
    assert_eq!(status, 401);
    assert!(message.contains("\"bi\" was revoked at"), "{message}");
    assert_eq!(app.get("/exports/invoices.csv").await.status(), 401);
    let listed: Value = get_with(&app, "/keys", ADMIN).await.json().await.unwrap();
    assert_eq!(listed["keys"][0]["state"], "revoked");
    assert!(!listed.to_string().contains(&key[17..]), "no secret listed");
    app.stop().await;
}

#[tokio::test]
async fn keys_are_changed_over_the_admin_api_and_bad_input_names_the_field() {
    let app = spawn_app(options("work_orders,invoices")).await;
    let post = |body: Value| {
        app.http
            .post(format!("{}/keys", app.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (json!({"exports": "sales"}), "name"),
        (json!({"name": "has space", "exports": "sales"}), "name"),
        (json!({"name": "x", "exports": "salez"}), "exports"),
        (json!({"name": "x", "expires": "soon"}), "expires"),
        (json!({"name": "x", "max_exports": 0}), "max_exports"),
        (json!({"name": "x", "scopes": "all"}), "scopes"),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["field"], field, "{body}: {b}");
    }
    let (key, shown) = create_key(
        &app.http,
        &app.base,
        json!({"name": "bi", "exports": "invoices"}),
    )
    .await;
    assert_eq!(
        post(json!({"name": "bi", "exports": "sales"}))
            .await
            .unwrap()
            .status(),
        409
    );
    let id = shown["id"].as_str().unwrap();
    assert_eq!(get_with(&app, "/status", &key).await.status(), 403);
    let r = app
        .http
        .patch(format!("{}/keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"status": true, "exports": ["invoices", "work_orders"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let changed: Value = r.json().await.unwrap();
    assert_eq!(changed["scopes"]["status"], true);
    assert_eq!(
        get_with(&app, "/status", &key).await.status(),
        200,
        "the next request meets the change"
    );
    assert_eq!(
        get_with(&app, "/exports/work_orders.csv", &key)
            .await
            .status(),
        200
    );
    // Use is counted and written within a few seconds.
    wait_for(
        async || {
            let k: Value = get_with(&app, &format!("/keys/{id}"), ADMIN)
                .await
                .json()
                .await
                .unwrap();
            k["requests"].as_i64() >= Some(3) && k["last_used_at"].is_string()
        },
        Duration::from_secs(10),
        "the key's use is recorded",
    )
    .await;
    // An expiry in the past through PATCH: refused at the next request, saying so.
    let r = app
        .http
        .patch(format!("{}/keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"expires": "2020-01-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, message) = status_and_message(get_with(&app, "/status", &key).await).await;
    assert_eq!(status, 401);
    assert!(
        message.contains("\"bi\" expired at 2020-01-01T00:00:00Z"),
        "{message}"
    );
    app.stop().await;
}

/// The link the admin API makes for `export` and `query`.
async fn make_link(app: &TestApp, bearer: &str, body: Value) -> reqwest::Response {
    app.http
        .post(format!("{}/links", app.base))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_link_opens_exactly_its_export_and_query_until_it_expires() {
    let app = spawn_app(Options {
        export_token: Some("all-access".into()),
        ..options("work_orders,invoices")
    })
    .await;
    app.poll().await;
    let r = make_link(
        &app,
        ADMIN,
        json!({"export": "work_orders.csv", "query": {"status": "closed", "fields": "id,title"}, "expires": "1h"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let link: Value = r.json().await.unwrap();
    let url = link["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&app.base) && url.contains("sig="), "{url}");
    let direct = get_with(
        &app,
        "/exports/work_orders.csv?status=closed&fields=id,title",
        "all-access",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(direct.lines().count() > 1, "{direct}");
    let opened = app.http.get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 200, "no other token needed");
    assert_eq!(opened.text().await.unwrap(), direct);

    // The same link with its parameters in another order and encoded otherwise.
    let parsed = reqwest::Url::parse(&url).unwrap();
    let mut pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    pairs.reverse();
    let reordered: String = pairs
        .iter()
        .map(|(k, v)| {
            let v = v.replace(',', "%2C").replace('c', "%63");
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&");
    let same = app
        .http
        .get(format!("{}{}?{reordered}", app.base, parsed.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200, "{reordered}");
    assert_eq!(same.text().await.unwrap(), direct);

    // Any other change breaks it: a filter, the format, the expiry, one byte of the signature.
    let sig = parsed
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .unwrap()
        .1
        .to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { '1' } else { '0' },
        &sig[1..]
    );
    let changed = [
        url.replace("status=closed", "status=open"),
        url.replace("work_orders.csv", "work_orders.xlsx"),
        url.replace("work_orders.csv", "invoices.csv"),
        url.replace(&sig, &flipped),
        url.replace("fields=id%2Ctitle", "fields=id"),
        format!("{url}&bom=true"),
    ];
    for tampered in &changed {
        assert_ne!(tampered, &url);
        let (status, message) =
            status_and_message(app.http.get(tampered).send().await.unwrap()).await;
        assert_eq!(status, 403, "{tampered}");
        assert!(message.contains("signature"), "{message}");
    }
    let expires: i64 = parsed
        .query_pairs()
        .find(|(k, _)| k == "expires")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let later = url.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    assert_eq!(app.http.get(&later).send().await.unwrap().status(), 403);
    // A link reaches no other route.
    let status_link = url.replace("/exports/work_orders.csv", "/status");
    assert_eq!(
        app.http.get(&status_link).send().await.unwrap().status(),
        401
    );

    // Expired: 410, saying when.
    let key = app.state.access.link_key.expose().as_bytes().to_vec();
    let past = chrono::Utc::now().timestamp() - 60;
    let pairs = vec![("status".to_string(), "closed".to_string())];
    let old = daftra_bridge::access::links::sign(&key, "/exports/work_orders.csv", &pairs, past);
    let r = app.get(&format!("/exports/work_orders.csv?{old}")).await;
    let (status, message) = status_and_message(r).await;
    assert_eq!(status, 410);
    assert!(
        message.contains("expired at") && message.contains('Z'),
        "{message}"
    );

    let m = app.metrics().await;
    assert!(
        metric(
            &m,
            "bridge_http_auth_failures_total{reason=\"link_signature\"}"
        ) >= Some(7.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "bridge_http_auth_failures_total{reason=\"link_expired\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn only_a_key_with_share_signs_and_only_its_own_exports() {
    let app = spawn_app(options("work_orders,invoices")).await;
    let (plain, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "reader", "exports": "invoices"}),
    )
    .await;
    let (sharer, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "sharer", "exports": "invoices", "share": true}),
    )
    .await;
    let body = json!({"export": "invoices.csv", "query": "payment_status=unpaid"});
    let (status, message) = status_and_message(make_link(&app, &plain, body.clone()).await).await;
    assert_eq!(
        (status, message.contains("share")),
        (StatusCode::FORBIDDEN, true),
        "{message}"
    );
    let (status, message) =
        status_and_message(make_link(&app, &sharer, json!({"export": "work_orders.csv"})).await)
            .await;
    assert_eq!(status, 403);
    assert!(message.contains("exports:work_orders"), "{message}");
    let r = make_link(&app, &sharer, body).await;
    assert_eq!(r.status(), 201);
    let link: Value = r.json().await.unwrap();
    let opened = app
        .http
        .get(link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    // A link to a query the export refuses is never made.
    let r = make_link(
        &app,
        ADMIN,
        json!({"export": "invoices.csv", "query": {"colour": "red"}}),
    )
    .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["field"], "query", "{b}");
    let r = make_link(
        &app,
        ADMIN,
        json!({"export": "invoices.csv", "expires": "never"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    // No link lives longer than a year, nor longer than the key that makes it.
    for expires in ["9000-01-01", "367d", "99999999d"] {
        let r = make_link(
            &app,
            ADMIN,
            json!({"export": "invoices.csv", "expires": expires}),
        )
        .await;
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["field"], "expires", "{expires}: {b}");
    }
    let (brief, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "brief", "exports": "invoices", "share": true, "expires": "1h"}),
    )
    .await;
    let r = make_link(
        &app,
        &brief,
        json!({"export": "invoices.csv", "expires": "2d"}),
    )
    .await;
    let (status, message) = status_and_message(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("cannot outlive the key"), "{message}");
    let r = make_link(
        &app,
        &brief,
        json!({"export": "invoices.csv", "expires": "30m"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    // Only enabled exports get links; a key must allow something.
    let r = make_link(&app, ADMIN, json!({"export": "suppliers.csv"})).await;
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .post(format!("{}/keys", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "nothing"}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["field"], "exports", "{b}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_over_its_share_gets_429_while_another_and_the_poller_go_on() {
    let app = spawn_app(Options {
        records: 40,
        page_size: 5,
        concurrency: 1,
        ..options("work_orders")
    })
    .await;
    let (busy, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "busy", "exports": "*"}),
    )
    .await;
    let (calm, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "calm", "exports": "*"}),
    )
    .await;
    // Live exports of 8 pages at 150 ms each: every one takes over a second.
    app.sim.state.set_faults(daftra_bridge::sim::Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let download = |key: String| {
        let (http, base) = (app.http.clone(), app.base.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("{base}/exports/work_orders.csv?source=live"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            (status, retry, body)
        })
    };
    let busy_runs: Vec<_> = (0..20).map(|_| download(busy.clone())).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calm_runs: Vec<_> = (0..2).map(|_| download(calm.clone())).collect();
    let feed = app.feed("work_orders");
    let polled = app.poller.poll_once(&feed);
    let polled = tokio::time::timeout(Duration::from_secs(30), polled)
        .await
        .unwrap();
    assert!(polled.is_ok(), "the poller is not starved");
    let mut ok = 0;
    let mut limited = 0;
    for run in busy_runs {
        let (status, retry, body) = run.await.unwrap();
        match status.as_u16() {
            200 => {
                ok += 1;
                let rows = csv::Reader::from_reader(body.as_bytes()).records().count();
                assert_eq!(rows, 40, "a whole file");
            }
            429 => {
                limited += 1;
                assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
                let message: Value = serde_json::from_str(&body).unwrap();
                let message = message["message"].as_str().unwrap();
                assert!(
                    message.contains("\"busy\" is running its 2 exports"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        (ok, limited),
        (2, 18),
        "two at once, the rest told to come back"
    );
    for run in calm_runs {
        let (status, _, body) = run.await.unwrap();
        assert_eq!(status, 200, "another key is not slowed: {body}");
    }

    // Requests per minute: the sixth of a key allowed five is a 429; others go on.
    let id = busy[4..16].to_string();
    let r = app
        .http
        .patch(format!("{}/keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"per_minute": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.sim.state.set_faults(Default::default());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = get_with(&app, "/exports", &busy).await;
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
    }
    // The window started with the 20 downloads above: at most 5 more pass in it.
    let (last, retry) = statuses.last().unwrap();
    assert_eq!(*last, 429, "{statuses:?}");
    let retry: u64 = retry.as_ref().unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(get_with(&app, "/exports", &calm).await.status(), 200);
    app.stop().await;
}

/// A `serve` process on `db` at `port` with the admin API, logging at info to `log`, and the
/// guard deleting its exchange.
fn serve(
    sim_url: &str,
    db: &str,
    port: u16,
    log: Option<&std::path::Path>,
) -> (crate::helpers::Running, ExchangeGuard) {
    let exchange = crate::helpers::unique("test.access");
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", db)
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("ADVERTISE_URL", format!("http://127.0.0.1:{port}"))
        .set("ADMIN_TOKEN", ADMIN)
        .set("AMQP_EXCHANGE", &exchange)
        .set("POLL_INTERVAL_SECS", "3600")
        .set("RUST_LOG", "info");
    let bridge = Bridge::new(&["serve"], &env);
    let running = match log {
        Some(path) => bridge
            .stderr(Stdio::from(std::fs::File::create(path).unwrap()))
            .spawn(),
        None => bridge.spawn(),
    };
    (running, ExchangeGuard(exchange))
}

async fn answering(port: u16) {
    wait_for(
        async || {
            reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
                .await
                .is_ok()
        },
        Duration::from_secs(20),
        "the replica answers",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_hold_at_the_next_request_on_every_replica() {
    let sim = daftra_bridge::sim::Simulator::start_local(Default::default()).unwrap();
    let db = TestDb::new();
    let ports = [free_port(), free_port()];
    let mut replicas: Vec<_> = ports
        .iter()
        .map(|p| serve(&sim.base_url, &db.url(), *p, None))
        .collect();
    for p in ports {
        answering(p).await;
    }
    let http = reqwest::Client::new();
    let base = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let (key, shown) = create_key(&http, &base(0), json!({"name": "bi", "exports": "*"})).await;
    let (short, _) = create_key(
        &http,
        &base(1),
        json!({"name": "brief", "exports": "*", "expires": "4s"}),
    )
    .await;
    let get = |i: usize, key: String| {
        let (http, url) = (http.clone(), format!("{}/exports", base(i)));
        async move { status_and_message(http.get(url).bearer_auth(key).send().await.unwrap()).await }
    };
    for i in 0..2 {
        assert_eq!(
            get(i, key.clone()).await.0,
            200,
            "made on one, known on both"
        );
        assert_eq!(get(i, short.clone()).await.0, 200);
    }
    let r = http
        .delete(format!(
            "{}/keys/{}",
            base(1),
            shown["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for i in 0..2 {
        let (status, message) = get(i, key.clone()).await;
        assert_eq!(status, 401, "replica {i}");
        assert!(message.contains("revoked"), "{message}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..2 {
        let (status, message) = get(i, short.clone()).await;
        assert_eq!(status, 401, "replica {i}");
        assert!(message.contains("\"brief\" expired at"), "{message}");
    }
    for (r, _) in &mut replicas {
        r.terminate();
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_secret_never_reaches_the_log_and_the_log_names_the_key() {
    let sim = daftra_bridge::sim::Simulator::start_local(Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let db = sqlite_url(&dir.path().join("bridge.db"));
    let (mut running, _exchange) = serve(&sim.base_url, &db, port, Some(&log));
    answering(port).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let (key, _) = create_key(
        &http,
        &base,
        json!({"name": "warehouse", "exports": "inventory"}),
    )
    .await;
    let secret = key[17..].to_string();
    for path in [
        format!("/exports/work_orders.csv?token={key}"),
        format!("/exports/products.csv?token={key}"),
        format!("/status?token={key}"),
        format!("/exports?token={}x", &key),
        format!("/?token={key}"),
    ] {
        http.get(format!("{base}{path}")).send().await.unwrap();
    }
    http.get(format!("{base}/status"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let status = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains(&secret));
    running.terminate();
    let _ = running.wait_with_output();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&secret), "the secret is in the log:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("HTTP request") && l.contains("warehouse") && l.contains("403")),
        "a request line names the key:\n{text}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_creates_lists_and_revokes_keys_and_signs_links() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir.path().join("bridge.db"));
    let env = BridgeEnv::new().set("DATABASE_URL", &db);
    let run = |args: &[&str]| Bridge::new(args, &env).output();
    let made = run(&[
        "keys",
        "create",
        "--name",
        "powerbi",
        "--resources",
        "invoices,invoices_invoice_item",
        "--expires",
        "90d",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("dbk_"), "{key}");
    assert!(String::from_utf8_lossy(&made.stderr).contains("shown this once"));
    let bad = run(&["keys", "create", "--name", "x", "--resources", "invoicez"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--resources: \"invoicez\""));

    let app = spawn_app(Options {
        database_url: Some(db.clone()),
        ..options("work_orders,invoices")
    })
    .await;
    assert_eq!(
        get_with(&app, "/exports/invoices_invoice_item.csv", &key)
            .await
            .status(),
        200
    );
    assert_eq!(
        get_with(&app, "/exports/work_orders.csv", &key)
            .await
            .status(),
        403
    );
    let listed = run(&["keys", "list"]);
    let table = String::from_utf8(listed.stdout).unwrap();
    let row = table
        .lines()
        .find(|l| l.contains("powerbi"))
        .expect("listed");
    assert!(
        row.contains("active") && row.contains("exports=invoices,invoices_invoice_item"),
        "{row}"
    );
    assert!(!table.contains(&key[17..]));

    // A link made by the command line opens on the running bridge (one signing key, stored).
    let link = run(&[
        "link",
        "invoices.csv",
        "--filter",
        "payment_status=unpaid",
        "--expires",
        "7d",
        "--base-url",
        &app.base,
    ]);
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let url = String::from_utf8(link.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with(&format!(
            "{}/exports/invoices.csv?payment_status=unpaid&expires=",
            app.base
        )),
        "{url}"
    );
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 200);
    let refused = run(&["link", "invoices.csv", "--filter", "colour=red"]);
    assert!(!refused.status.success());

    let revoked = run(&["keys", "revoke", "powerbi"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let (status, message) =
        status_and_message(get_with(&app, "/exports/invoices.csv", &key).await).await;
    assert_eq!(status, 401);
    assert!(message.contains("\"powerbi\" was revoked"), "{message}");
    let json = run(&["keys", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed[0]["state"], "revoked");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_page_of_a_key_shows_its_exports_and_copies_a_signed_link() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !crate::index::browser_ready(&chromium) {
        return;
    }
    let app = spawn_app(options("products,stock_transactions,invoices,journals")).await;
    let (key, _) = create_key(
        &app.http,
        &app.base,
        json!({"name": "warehouse", "exports": "inventory", "share": true}),
    )
    .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/access.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&app.base)
        .env("CHROMIUM", &chromium)
        .env("KEY", &key)
        .env("EXPORT", "products")
        .env("FIELDS", "id,name")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser script finishes in 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let mut shown: Vec<String> = serde_json::from_value(seen["exports"].clone()).unwrap();
    shown.sort();
    let mut allowed: Vec<String> = app
        .state
        .served
        .exports()
        .iter()
        .filter(|r| r.source().area == "inventory")
        .map(|r| r.name.clone())
        .collect();
    allowed.sort();
    assert_eq!(
        shown, allowed,
        "the page offers what the key may read, and only that"
    );
    assert_eq!(seen["status_link"], 0);
    // The copied link opens with no token, and is the form's query.
    let link = seen["link"].as_str().unwrap();
    assert!(link.contains("fields=id%2Cname"), "{link}");
    let opened = app.http.get(link).send().await.unwrap();
    assert_eq!(opened.status(), 200);
    let direct = get_with(&app, "/exports/products.csv?fields=id,name", &key).await;
    assert_eq!(opened.text().await.unwrap(), direct.text().await.unwrap());
    app.stop().await;
}
