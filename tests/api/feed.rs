//! `GET /events`, the pull change feed (README "Consuming events"): every event once and in
//! order across pages while polls commit, long polls that wake at a commit, 410 after pruning,
//! cursors that survive a restart and are the same on a follower, and access-key scopes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::helpers::{
    free_port, get_json, spawn_app, sqlite_url, wait_for, Bridge, BridgeEnv, ExchangeGuard,
    Options, TestApp, SIM_API_KEY,
};
use crate::pg::TestDb;

/// `GET /events` with `query` on `app`; the status and the body.
async fn feed(app: &TestApp, query: &str) -> (u16, Value) {
    let r = app.get(&format!("/events?{query}")).await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn title(n: usize) -> Map<String, Value> {
    json!({"title": format!("edit {n}")})
        .as_object()
        .unwrap()
        .clone()
}

/// Every event in the outbox, by id, oldest first.
fn outbox_ids(app: &TestApp) -> Vec<String> {
    app.state
        .store
        .outbox_batch(0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.event.body).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_in_pages_of_7_sees_every_event_once_while_polls_commit() {
    let app = spawn_app(Options {
        records: 40,
        emit_initial: true,
        ..Options::without_publisher()
    })
    .await;
    app.poll().await;
    let (http, base) = (app.http.clone(), app.base.clone());
    // The reader follows the feed while the polls below commit, until it has 1,000 events.
    let reader = tokio::spawn(async move {
        let (mut seen, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
        while seen.len() < 1000 {
            let url = format!("{base}/events?limit=7&wait=5&after={cursor}");
            let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            assert!(page["events"].as_array().unwrap().len() <= 7);
            seen.extend(ids(&page));
            cursor = page["next_cursor"].as_str().unwrap().to_string();
            pages += 1;
        }
        (seen, pages)
    });
    let mut round = 0;
    while outbox_ids(&app).len() < 1000 {
        round += 1;
        for id in 1..=40 {
            app.sim.state.update(id, title(round));
        }
        app.poll().await;
    }
    let (seen, pages) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader keeps up")
        .unwrap();
    let all = outbox_ids(&app);
    assert_eq!(seen, all[..seen.len()], "in order, none skipped");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "none repeated");
    assert!(pages >= 1000 / 7, "{pages} pages");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_within_a_second_of_a_commit() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let (_, head) = feed(&app, "after=now").await;
    assert_eq!(head["events"], json!([]));
    let cursor = head["next_cursor"].as_str().unwrap().to_string();
    let waiting = {
        let url = format!("{}/events?after={cursor}&wait=20", app.base);
        let http = app.http.clone();
        tokio::spawn(async move {
            let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            (Instant::now(), page)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.sim.state.update(3, title(1));
    app.poll().await;
    let committed = Instant::now();
    let (answered, page) = waiting.await.unwrap();
    assert!(answered.duration_since(committed) < Duration::from_secs(1));
    assert_eq!(page["events"][0]["type"], "com.daftra.work_order.updated");
    assert_eq!(page["events"][0]["subject"], "3");
    // With nothing new, the wait ends empty at its deadline.
    let next = page["next_cursor"].as_str().unwrap();
    let started = Instant::now();
    let (status, empty) = feed(&app, &format!("after={next}&wait=1")).await;
    assert_eq!((status, empty["events"].clone()), (200, json!([])));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(empty["next_cursor"], next);
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_the_log_keeps_is_410_naming_the_oldest_still_available() {
    let app = spawn_app(Options {
        records: 10,
        emit_initial: true,
        ..Options::without_publisher()
    })
    .await;
    app.poll().await;
    let (_, first) = feed(&app, "limit=3").await;
    let early = first["next_cursor"].as_str().unwrap().to_string();
    // Every sink is past the log and its retention is over: pruned.
    let store = app.state.store.clone();
    let head = store.outbox_head().unwrap();
    store
        .confirm_sink(daftra_bridge::store::AMQP_SINK, head)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.prune_event_log(Duration::ZERO).unwrap(), 10);
    app.sim.state.update(2, title(1));
    app.poll().await;
    let (status, gone) = feed(&app, &format!("after={early}")).await;
    assert_eq!(status, 410);
    let message = gone["message"].as_str().unwrap();
    let oldest = daftra_bridge::http::feed::cursor(head);
    assert!(
        message.contains(&oldest) && message.contains("pruned"),
        "{message}"
    );
    // From the oldest available (or with no cursor): what is left, nothing silently missing.
    for query in [format!("after={oldest}"), String::new()] {
        let (status, page) = feed(&app, &query).await;
        assert_eq!(status, 200);
        assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    }
    // A cursor ahead of the log (another database, a restored backup) is not taken silently.
    let ahead = format!("after={}", daftra_bridge::http::feed::cursor(head + 1000));
    let (status, bad) = feed(&app, &ahead).await;
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("after")),
        "{bad}"
    );
    // A cursor that is not one, or a number out of range: 400 naming the parameter.
    let cases = [
        ("after=12", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("wait=61", "wait"),
    ];
    for (query, field) in cases {
        let (status, bad) = feed(&app, query).await;
        assert_eq!(
            (status, bad["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_consumer_resumes_from_its_saved_cursor_after_the_bridge_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir.path().join("bridge.db"));
    let options = || Options {
        records: 12,
        emit_initial: true,
        database_url: Some(db.clone()),
        ..Options::without_publisher()
    };
    let app = spawn_app(options()).await;
    app.poll().await;
    let (_, page) = feed(&app, "limit=5").await;
    let saved = page["next_cursor"].as_str().unwrap().to_string();
    let mut seen = ids(&page);
    let all = outbox_ids(&app);
    app.stop().await;

    let app = spawn_app(options()).await;
    let mut cursor = saved;
    loop {
        let (_, page) = feed(&app, &format!("after={cursor}&limit=5")).await;
        if page["events"].as_array().unwrap().is_empty() {
            break;
        }
        seen.extend(ids(&page));
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seen, all, "every event once, across the restart");
    app.stop().await;
}

#[tokio::test]
async fn a_key_reads_the_feed_only_with_its_scope_and_only_its_resources() {
    let app = spawn_app(Options {
        admin_token: Some("feed-admin".into()),
        resources: Some("work_orders,invoices".into()),
        records: 6,
        emit_initial: true,
        ..Options::without_publisher()
    })
    .await;
    app.poll().await;
    app.poll_resource("invoices").await;
    let key = |body: Value| {
        let (http, base) = (app.http.clone(), app.base.clone());
        async move {
            let r = http
                .post(format!("{base}/keys"))
                .bearer_auth("feed-admin")
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let without = key(json!({"name": "nofeed", "exports": "*"})).await;
    let sales = key(json!({"name": "sales", "exports": "sales", "events": true})).await;
    let r = app
        .http
        .get(format!("{}/events", app.base))
        .bearer_auth(&without)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("feed"));
    let page: Value = app
        .http
        .get(format!("{}/events?limit=1000", app.base))
        .bearer_auth(&sales)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: HashSet<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, HashSet::from(["com.daftra.invoice.created"]));
    // `types` narrows further, with the routing-key patterns of the other sinks.
    let page: Value = app
        .http
        .get(format!(
            "{}/events?types=work_order.*,invoice.deleted",
            app.base
        ))
        .bearer_auth(&sales)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"], json!([]));
    let (status, bad) = {
        let r = app
            .http
            .get(format!("{}/events?types=a..b", app.base))
            .bearer_auth(&sales)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((status, bad["field"].as_str()), (400, Some("types")));
    // A key revoked while its long poll waits hears nothing of what came after.
    let waiting = {
        let (http, url) = (
            app.http.clone(),
            format!("{}/events?after=now&wait=10", app.base),
        );
        let sales = sales.clone();
        tokio::spawn(async move { http.get(url).bearer_auth(sales).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = &sales[4..16];
    let r = app
        .http
        .delete(format!("{}/keys/{id}", app.base))
        .bearer_auth("feed-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let edit = json!({"notes": "after the revocation"});
    app.sim
        .state
        .update_in("invoices", 2, edit.as_object().unwrap().clone());
    app.poll_resource("invoices").await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status(), 401);
    assert!(answer.text().await.unwrap().contains("revoked"));
    app.stop().await;
}

/// A `serve` replica on `db`, polling every second, with initial events.
fn replica(sim_url: &str, db: &str, port: u16) -> (crate::helpers::Running, ExchangeGuard) {
    let exchange = crate::helpers::unique("test.feed");
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", db)
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("ADVERTISE_URL", format!("http://127.0.0.1:{port}"))
        .set("AMQP_EXCHANGE", &exchange)
        .set("POLL_INTERVAL_SECS", "1")
        .set("POLL_EMIT_INITIAL", "true")
        .set("POLL_STRATEGY", "full")
        .set("RUST_LOG", "warn");
    (
        Bridge::new(&["serve"], &env).spawn(),
        ExchangeGuard(exchange),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_the_feed_as_the_leader_does() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 15,
        ..Default::default()
    })
    .unwrap();
    let db = TestDb::new();
    let ports = [free_port(), free_port()];
    let mut replicas: Vec<_> = ports
        .iter()
        .map(|p| replica(&sim.base_url, &db.url(), *p))
        .collect();
    wait_for(
        async || {
            let mut n = 0;
            for p in ports {
                n += get_json(p, "/events?limit=1000")
                    .await
                    .map_or(0, |v| v["events"].as_array().map_or(0, Vec::len));
            }
            n == 30
        },
        Duration::from_secs(30),
        "both replicas serve the 15 created events",
    )
    .await;
    sim.state.update(4, title(1));
    let mut pages = Vec::new();
    wait_for(
        async || {
            pages.clear();
            for p in ports {
                pages.push(
                    get_json(p, "/events?limit=1000")
                        .await
                        .unwrap_or(Value::Null),
                );
            }
            pages
                .iter()
                .all(|p| p["events"].as_array().map_or(0, Vec::len) == 16)
        },
        Duration::from_secs(20),
        "the update reaches both",
    )
    .await;
    assert_eq!(
        pages[0], pages[1],
        "the same events and the same cursor on every replica"
    );
    for (r, _) in &mut replicas {
        r.terminate();
    }
    sim.stop().await;
}
