//! Polls that read only what changed: each strategy proven by its probe and used, the fault
//! switches that make the bridge fall back or count a miss (never losing or inventing an event),
//! the overlap, deletes only from full scans, and watermarks across a restart.

use std::net::TcpListener;

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::metrics::PollMode;
use daftra_bridge::poller::PollOutcome;
use daftra_bridge::sim::Faults;
use daftra_bridge::startup::Application;
use serde_json::{json, Map, Value};

use crate::helpers::{metric, spawn_app, wait_for, Options, TestApp};

const WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// A bridge polling work orders by `auto` (overlap `overlap` seconds), over 45 records in
/// pages of 10.
async fn auto_app(overlap: u64) -> TestApp {
    spawn_app(Options {
        extra: vec![
            ("POLL_STRATEGY", "auto".into()),
            ("POLL_OVERLAP_SECS", overlap.to_string()),
        ],
        ..Options::without_publisher()
    })
    .await
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn name() -> &'static str {
    default_resource().name.as_str()
}

/// The resource's `/status` entry.
async fn status(app: &TestApp) -> Value {
    let s: Value = app.get("/status").await.json().await.unwrap();
    s["resources"][name()].clone()
}

async fn full_scan(app: &TestApp) -> PollOutcome {
    app.poller
        .poll(&app.feed(name()), true)
        .await
        .expect("full scan")
}

/// Ids the simulator holds, and the first of them.
fn some_ids(app: &TestApp, n: usize) -> Vec<i64> {
    app.sim
        .state
        .records()
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .take(n)
        .collect()
}

#[tokio::test]
async fn the_sorted_list_is_proven_then_reads_only_what_changed() {
    let app = auto_app(300).await;
    let first = app.poll().await;
    assert_eq!(first.mode, PollMode::Full);
    let s = status(&app).await;
    assert_eq!(s["strategy"], "sorted_list", "{s}");
    assert!(s["strategy_reason"]
        .as_str()
        .unwrap()
        .contains("newest first"));

    let ids = some_ids(&app, 2);
    for id in &ids {
        assert!(app
            .sim
            .state
            .update(*id, fields(json!({"title": format!("edited {id}")}))));
    }
    let created = app.sim.state.create(fields(json!({"title": "new one"})));
    let before = app.sim.state.stats().list_requests;
    let o = app.poll().await;
    assert_eq!(o.mode, PollMode::Incremental);
    assert_eq!((o.created, o.updated, o.deleted), (1, 2, 0), "{o:?}");
    // 45 records fit the first, small page: one request.
    assert_eq!(o.requests, 1);
    assert_eq!(app.sim.state.stats().list_requests - before, 1);
    let s = status(&app).await;
    assert_eq!(s["last_mode"], "incremental");
    assert_eq!(s["requests"], 1);
    assert!(s["last_incremental_poll"].is_string() && s["last_full_scan"].is_string());

    // The overlap reads the same records again: the diff drops them.
    let again = app.poll().await;
    assert_eq!(again.mode, PollMode::Incremental);
    assert_eq!((again.created, again.updated), (0, 0));
    assert!(again.records >= 3, "the overlap re-read them: {again:?}");

    // Same records whichever way they were read: a full scan finds nothing left to say.
    let full = full_scan(&app).await;
    assert_eq!(full.mode, PollMode::Full);
    assert_eq!(
        (full.created, full.updated, full.deleted, full.missed),
        (0, 0, 0, 0)
    );
    let text = app.metrics().await;
    let series = |mode: &str| {
        format!(
            "bridge_poll_requests_total{{mode=\"{mode}\",resource=\"{}\"}}",
            name()
        )
    };
    assert_eq!(metric(&text, &series("incremental")), Some(2.0));
    assert!(metric(&text, &series("full")).unwrap() >= 10.0);
    assert!(app.state.store.watermark(name()).unwrap().is_some());
    assert!(app.state.store.load_one(name(), created).unwrap().is_some());
}

#[tokio::test]
async fn a_list_that_ignores_the_sort_falls_back_to_the_v2_filter() {
    let app = auto_app(300).await;
    app.sim.state.set_faults(Faults {
        ignore_sort: true,
        ..Default::default()
    });
    app.poll().await;
    let s = status(&app).await;
    assert_eq!(s["strategy"], "filtered_index", "{s}");
    let reason = s["strategy_reason"].as_str().unwrap();
    assert!(reason.contains("ignores sort=modified"), "{reason}");

    let ids = some_ids(&app, 3);
    for id in &ids {
        app.sim
            .state
            .update(*id, fields(json!({"title": format!("v2 edit {id}")})));
    }
    let o = app.poll().await;
    assert_eq!(o.mode, PollMode::Incremental);
    assert_eq!(o.updated, 3, "{o:?}");
    // The index (one page), then each record it names by its single GET: the three edits and
    // the newest record the full scan saw, inside the overlap.
    assert_eq!(o.records, 4);
    assert_eq!(o.requests, 1 + 4);
    let full = full_scan(&app).await;
    assert_eq!((full.created, full.updated, full.missed), (0, 0, 0));
}

#[tokio::test]
async fn neither_strategy_honoured_means_full_scans_with_the_reasons() {
    let app = auto_app(300).await;
    app.sim.state.set_faults(Faults {
        ignore_sort: true,
        ignore_filter: true,
        ..Default::default()
    });
    app.poll().await;
    let s = status(&app).await;
    assert_eq!(s["strategy"], "full", "{s}");
    let reason = s["strategy_reason"].as_str().unwrap();
    assert!(
        reason.contains("ignores sort") && reason.contains("ignores filter"),
        "{reason}"
    );
    let id = some_ids(&app, 1)[0];
    app.sim
        .state
        .update(id, fields(json!({"title": "seen by a full scan"})));
    let o = app.poll().await;
    assert_eq!(o.mode, PollMode::Full);
    assert_eq!(o.updated, 1);
}

#[tokio::test]
async fn a_sort_ignored_mid_way_falls_back_within_the_same_poll() {
    let app = auto_app(300).await;
    app.poll().await;
    assert_eq!(status(&app).await["strategy"], "sorted_list");
    app.sim.state.set_faults(Faults {
        ignore_sort: true,
        ignore_filter: true,
        ..Default::default()
    });
    let id = some_ids(&app, 1)[0];
    app.sim
        .state
        .update(id, fields(json!({"title": "edited while unsorted"})));
    let o = app.poll().await;
    // The disorder was seen, so the poll scanned in full: the edit is announced once.
    assert_eq!(o.mode, PollMode::Full);
    assert_eq!(o.updated, 1, "{o:?}");
    let s = status(&app).await;
    assert_eq!(s["strategy"], "full");
    assert!(s["strategy_reason"]
        .as_str()
        .unwrap()
        .contains("descending answered"));
    assert_eq!(app.poll().await.mode, PollMode::Full);
}

/// Edits one record while `faults` hide it from incremental polls; the next incremental poll
/// sees nothing, the full scan publishes it as the `updated` it is and counts the miss.
async fn miss_is_counted(faults: Faults) {
    let app = auto_app(300).await;
    app.poll().await;
    assert_eq!(status(&app).await["strategy"], "sorted_list");
    // An edit now moves the watermark to now.
    let ids = some_ids(&app, 2);
    app.sim
        .state
        .update(ids[1], fields(json!({"title": "seen edit"})));
    assert_eq!(app.poll().await.updated, 1);
    app.sim.state.set_faults(faults);
    let id = ids[0];
    app.sim
        .state
        .update(id, fields(json!({"title": "hidden edit"})));
    let o = app.poll().await;
    assert_eq!(o.mode, PollMode::Incremental);
    assert_eq!(o.updated, 0, "{o:?}");
    let full = full_scan(&app).await;
    assert_eq!((full.updated, full.missed), (1, 1), "{full:?}");
    let text = app.metrics().await;
    let series = format!("bridge_incremental_missed_total{{resource=\"{}\"}}", name());
    assert_eq!(metric(&text, &series), Some(1.0));
    let s = status(&app).await;
    assert_eq!(s["incremental_missed"], 1);
    assert_eq!(s["strategy"], "full");
    assert!(
        s["strategy_reason"].as_str().unwrap().contains("missed"),
        "{s}"
    );
    // Off until a later probe: the next poll scans in full and announces nothing twice.
    let next = app.poll().await;
    assert_eq!(next.mode, PollMode::Full);
    assert_eq!((next.updated, next.missed), (0, 0));
}

#[tokio::test]
async fn an_edit_that_keeps_its_modified_time_is_a_counted_miss() {
    miss_is_counted(Faults {
        skip_modified_every: 1,
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn a_server_clock_behind_by_more_than_the_overlap_is_a_counted_miss() {
    miss_is_counted(Faults {
        clock_shift_secs: -3_600,
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn the_overlap_reads_a_record_saved_during_a_poll() {
    for (overlap, seen) in [(300, 1), (0, 0)] {
        let app = auto_app(overlap).await;
        app.poll().await;
        let ids = some_ids(&app, 2);
        app.sim
            .state
            .update(ids[0], fields(json!({"title": "moves the watermark"})));
        assert_eq!(app.poll().await.updated, 1);
        // Saved while that poll read, stamped a minute earlier by another server's clock.
        app.sim.state.set_faults(Faults {
            clock_shift_secs: -60,
            ..Default::default()
        });
        app.sim
            .state
            .update(ids[1], fields(json!({"title": "saved mid-poll"})));
        app.sim.state.set_faults(Faults::default());
        let o = app.poll().await;
        assert_eq!(o.mode, PollMode::Incremental);
        assert_eq!(o.updated, seen, "overlap {overlap}s: {o:?}");
        // Without the overlap the full scan catches it, counted as missed.
        let full = full_scan(&app).await;
        assert_eq!(
            (full.updated, full.missed),
            (1 - seen, 1 - seen),
            "overlap {overlap}s: {full:?}"
        );
    }
}

#[tokio::test]
async fn deletes_come_only_from_full_scans() {
    let app = auto_app(300).await;
    app.poll().await;
    let id = some_ids(&app, 1)[0];
    assert!(app.sim.state.delete(id));
    let o = app.poll().await;
    assert_eq!(o.mode, PollMode::Incremental);
    assert_eq!(o.deleted, 0);
    assert!(app.state.store.load_one(name(), id).unwrap().is_some());
    let full = full_scan(&app).await;
    assert_eq!(full.deleted, 1);
    assert!(app.state.store.load_one(name(), id).unwrap().is_none());
}

#[tokio::test]
async fn a_full_scan_is_due_every_poll_full_scan_secs() {
    let app = spawn_app(Options {
        extra: vec![
            ("POLL_STRATEGY", "auto".into()),
            ("POLL_FULL_SCAN_SECS", "1".into()),
        ],
        ..Options::without_publisher()
    })
    .await;
    app.poll().await;
    assert_eq!(app.poll().await.mode, PollMode::Incremental);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.poll().await.mode, PollMode::Full);
}

#[tokio::test]
async fn a_per_resource_full_strategy_overrides_auto() {
    let app = spawn_app(Options {
        extra: vec![
            ("POLL_STRATEGY", "auto".into()),
            ("POLL_STRATEGY_WORK_ORDERS", "full".into()),
        ],
        ..Options::without_publisher()
    })
    .await;
    app.poll().await;
    assert_eq!(app.poll().await.mode, PollMode::Full);
    let s = status(&app).await;
    assert_eq!(s["strategy"], "full");
    assert_eq!(s["strategy_reason"], "POLL_STRATEGY is full");
}

#[tokio::test]
async fn post_poll_full_and_a_deleting_webhook_ask_for_full_scans() {
    let app = spawn_app(Options {
        extra: vec![("POLL_STRATEGY", "auto".into())],
        poll_loop: true,
        inbound_token: Some("inbound-secret".into()),
        ..Options::without_publisher()
    })
    .await;
    let series = format!(
        "bridge_poll_records_total{{mode=\"full\",resource=\"{}\"}}",
        name()
    );
    let start_up = async || metric(&app.metrics().await, &series).unwrap_or(0.0) >= 45.0;
    wait_for(start_up, WITHIN, "the start-up full scan").await;
    let bad = app
        .http
        .post(format!("{}/poll/{}?full=maybe", app.base, name()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("full"));
    for (query, field) in [("fulll=true", "fulll"), ("full=true&full=false", "full")] {
        let r = app
            .http
            .post(format!("{}/poll/{}?{query}", app.base, name()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.json::<Value>().await.unwrap()["field"], field, "{query}");
    }
    let disabled = app
        .http
        .post(format!("{}/poll/journals", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 404);
    assert!(disabled.text().await.unwrap().contains("DAFTRA_RESOURCES"));

    let id = some_ids(&app, 1)[0];
    app.sim.state.delete(id);
    let r = app
        .http
        .post(format!("{}/poll/{}?full=true", app.base, name()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["full"], true);
    let gone = async || app.state.store.load_one(name(), id).unwrap().is_none();
    wait_for(gone, WITHIN, "the asked-for full scan deletes it").await;

    let id = some_ids(&app, 1)[0];
    app.sim.state.delete(id);
    let r = app
        .http
        .post(format!("{}/webhooks/daftra/{}", app.base, name()))
        .bearer_auth("inbound-secret")
        .json(&json!({"event": "work_order.deleted", "id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["full"], true);
    let gone = async || app.state.store.load_one(name(), id).unwrap().is_none();
    wait_for(gone, WITHIN, "the webhook's full scan deletes it").await;
}

#[tokio::test]
async fn a_restart_keeps_the_watermark_and_the_audit() {
    let app = auto_app(300).await;
    app.poll().await;
    let id = some_ids(&app, 2)[1];
    app.sim.state.update(id, fields(json!({"title": "seen"})));
    assert_eq!(app.poll().await.updated, 1);
    let kept = app
        .state
        .store
        .watermark(name())
        .unwrap()
        .expect("a watermark");
    assert!(kept.audited_to.is_some());
    app.sim.state.set_faults(Faults {
        skip_modified_every: 1,
        ..Default::default()
    });
    let hidden = some_ids(&app, 1)[0];
    app.sim.state.update(
        hidden,
        fields(json!({"title": "hidden before the restart"})),
    );
    assert_eq!(app.poll().await.updated, 0);

    // A second bridge on the same database and tenant: its first poll is a full scan, which
    // holds the incremental polls before the restart to account.
    let settings = Options {
        extra: vec![("POLL_STRATEGY", "auto".into())],
        ..Options::without_publisher()
    }
    .env(&app.sim.base_url, app._db.path())
    .settings();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let restarted = Application::build_with_listener(settings, listener).unwrap();
    let before_restart = app.state.store.watermark(name()).unwrap();
    assert_eq!(
        restarted.poller.store.watermark(name()).unwrap(),
        before_restart
    );
    assert!(before_restart.unwrap().changed_at >= kept.changed_at);
    let feed = restarted
        .state
        .served
        .feeds
        .by_resource(name())
        .unwrap()
        .clone();
    let o = restarted.poller.poll_once(&feed).await.unwrap();
    assert_eq!(o.mode, PollMode::Full);
    assert_eq!((o.updated, o.missed), (1, 1), "{o:?}");
}

/// Every resource: the strategy its catalogue entry allows is proven and used (the sorted list
/// where the resource has a change time; the v2 index where the list ignores the sort and the
/// resource has a v2 list), what it reads agrees with a full scan, and the rest scan in full.
#[tokio::test]
async fn every_resource_is_read_by_the_strategy_it_allows_and_agrees_with_full_scans() {
    for ignore_sort in [false, true] {
        let app = spawn_app(Options {
            records: 25,
            resources: Some("all".into()),
            extra: vec![("POLL_STRATEGY", "auto".into())],
            ..Options::without_publisher()
        })
        .await;
        app.sim.state.set_faults(Faults {
            ignore_sort,
            ..Default::default()
        });
        for r in daftra_bridge::catalogue::all() {
            app.poll_resource(&r.name).await;
            let s: Value = app.get("/status").await.json().await.unwrap();
            let strategy = s["resources"][&r.name]["strategy"].clone();
            let expected = match (&r.changed_at, &r.v2_entity, ignore_sort) {
                (Some(_), _, false) => "sorted_list",
                (Some(_), Some(_), true) => "filtered_index",
                _ => "full",
            };
            assert_eq!(
                strategy, expected,
                "{} (sort ignored: {ignore_sort})",
                r.name
            );
            let mut change = Map::new();
            change.insert(crate::catalogue::editable(r), json!("تم التعديل"));
            assert!(app.sim.state.update_in(&r.name, 1, change));
            app.sim.state.create_in(&r.name, Map::new()).unwrap();
            let o = app.poll_resource(&r.name).await;
            let mode = if expected == "full" {
                PollMode::Full
            } else {
                PollMode::Incremental
            };
            assert_eq!(o.mode, mode, "{}", r.name);
            assert_eq!(
                (o.created, o.updated, o.deleted),
                (1, 1, 0),
                "{}: {o:?}",
                r.name
            );
            let full = app.poller.poll(&app.feed(&r.name), true).await.unwrap();
            assert_eq!(
                (full.created, full.updated, full.deleted, full.missed),
                (0, 0, 0, 0),
                "{}: a full scan after an incremental poll has nothing to say",
                r.name
            );
        }
    }
}
