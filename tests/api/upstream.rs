//! Upstream faults: retries, malformed answers, auth, page drift. No fault invents a delete.

use std::time::Duration;

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::config::{DaftraAuth, Secret};
use daftra_bridge::sim::{Drift, Faults, OAuthClient, RetryAfterForm, SimConfig};
use serde_json::json;

use crate::helpers::{metric, spawn_app, EventQueue, Options};

fn retries(m: &str, reason: &str) -> f64 {
    metric(
        m,
        &format!("daftra_api_retries_total{{reason=\"{reason}\",resource=\"work_orders\"}}"),
    )
    .unwrap()
}

#[tokio::test]
async fn rate_limits_are_retried_honouring_both_retry_after_forms() {
    for form in [
        RetryAfterForm::Seconds,
        RetryAfterForm::HttpDate,
        RetryAfterForm::Absent,
    ] {
        let app = spawn_app(Options::without_publisher()).await;
        app.sim.state.set_faults(Faults {
            rate_limited_next: 2,
            retry_after: form,
            ..Default::default()
        });
        let started = std::time::Instant::now();
        let o = app.poll().await;
        assert_eq!(o.records, 45, "{form:?}");
        assert_eq!(
            retries(&app.metrics().await, "rate_limited"),
            2.0,
            "{form:?}"
        );
        if form == RetryAfterForm::Seconds {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "Retry-After: 1 was honoured"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn server_errors_and_malformed_pages_are_retried() {
    let app = spawn_app(Options {
        publisher: false,
        max_retries: 8,
        ..Default::default()
    })
    .await;
    app.sim.state.set_faults(Faults {
        server_errors_next: 2,
        truncated_next: 1,
        html_next: 1,
        failed_result_next: 1,
        missing_pagination_next: 1,
        ..Default::default()
    });
    let o = app.poll().await;
    assert!(o.complete);
    assert_eq!(o.records, 45);
    let m = app.metrics().await;
    assert_eq!(retries(&m, "server_error"), 2.0);
    assert_eq!(retries(&m, "malformed"), 4.0);
    app.stop().await;
}

#[tokio::test]
async fn a_poll_that_runs_out_of_retries_fails_and_changes_nothing() {
    let app = spawn_app(Options {
        publisher: false,
        max_retries: 2,
        ..Default::default()
    })
    .await;
    app.poll().await;
    app.sim.state.delete(5);
    app.sim.state.update(
        6,
        serde_json::Map::from_iter([("title".to_string(), json!("changed"))]),
    );
    app.sim.state.set_faults(Faults {
        server_errors_next: 100,
        ..Default::default()
    });
    let err = app
        .poller
        .poll_once(&app.feed(&default_resource().name))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "upstream");
    assert_eq!(
        app.state.store.snapshot_len("work_orders").unwrap(),
        45,
        "nothing deleted"
    );
    assert_eq!(app.state.store.outbox_len().unwrap(), 0);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bridge_poll_failures_total{reason=\"upstream\",resource=\"work_orders\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_api_key_is_not_retried() {
    let app = spawn_app(Options {
        publisher: false,
        auth: Some(DaftraAuth::ApiKey(Secret::new("wrong-key"))),
        ..Default::default()
    })
    .await;
    let err = app
        .poller
        .poll_once(&app.feed(&default_resource().name))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !err.to_string().contains("wrong-key"),
        "no secret in errors"
    );
    assert_eq!(
        app.sim.state.stats().list_requests_by_resource["work_orders"],
        1,
        "a 401 is not retried"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_record_deleted_while_paging_gives_exactly_one_delete() {
    let app = spawn_app(Options {
        records: 30,
        page_size: 5,
        concurrency: 1,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "work_order.deleted").await;
    app.poll().await;
    // Record 2 sits on page 1; deleting it after page 1 is served shifts every later page by one,
    // so record 6 (first of page 2) is never seen by that scan.
    app.sim.state.set_faults(Faults {
        drift: Some(Drift::Delete {
            after_page: 1,
            id: 2,
        }),
        ..Default::default()
    });
    let o = app.poll().await;
    assert_eq!(o.deleted, 1);
    let events = queue.take(5, Duration::from_secs(3)).await;
    let subjects: Vec<_> = events
        .iter()
        .map(|e| e.body["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(subjects, ["2"]);
    assert_eq!(app.state.store.snapshot_len("work_orders").unwrap(), 29);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_value_is_kept_as_text_and_never_hides_its_record() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    app.sim.state.update(
        9,
        serde_json::Map::from_iter([
            ("status".to_string(), json!("not-a-number")),
            ("title".to_string(), json!("Renamed while odd")),
        ]),
    );
    let o = app.poll().await;
    assert_eq!((o.invalid, o.deleted, o.updated), (0, 0, 1));
    let stored: serde_json::Value =
        serde_json::from_str(&app.state.store.load_one("work_orders", 9).unwrap().unwrap())
            .unwrap();
    assert_eq!(
        stored["status"], "not-a-number",
        "kept as text in its field"
    );
    assert_eq!(
        stored["title"], "Renamed while odd",
        "the other fields still diff"
    );
    let csv = app
        .get("/exports/work_orders.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains("Renamed while odd"),
        "the export shows the record"
    );
    app.poll().await;
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "daftra_api_unreadable_values_total{resource=\"work_orders\"}"
        ),
        Some(1.0),
        "counted once per record and field, not once per poll"
    );
    app.stop().await;
}

fn oauth_options() -> Options {
    let client = OAuthClient {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
        username: "owner@example.com".into(),
        password: "pw".into(),
    };
    Options {
        publisher: false,
        sim: Some(SimConfig {
            records: 20,
            oauth: Some(client),
            ..Default::default()
        }),
        auth: Some(DaftraAuth::OAuth {
            client_id: "cid".into(),
            client_secret: Secret::new("csecret"),
            username: "owner@example.com".into(),
            password: Secret::new("pw"),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn oauth_tokens_are_obtained_reused_and_renewed_after_revocation() {
    let app = spawn_app(oauth_options()).await;
    assert_eq!(app.poll().await.records, 20);
    assert_eq!(app.poll().await.records, 20);
    assert_eq!(
        app.sim.state.stats().token_requests,
        1,
        "one token for both polls"
    );
    // The tenant revokes every token: the next request gets a 401 and renews once.
    app.sim.state.lock_clear_tokens();
    assert_eq!(app.poll().await.records, 20);
    assert_eq!(app.sim.state.stats().token_requests, 2);
    assert_eq!(app.sim.state.stats().unauthorized, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_token_request_keeps_daftras_own_error_text() {
    let mut opts = oauth_options();
    opts.auth = Some(DaftraAuth::OAuth {
        client_id: "cid".into(),
        client_secret: Secret::new("csecret"),
        username: "owner@example.com".into(),
        password: Secret::new("not-the-password"),
    });
    let app = spawn_app(opts).await;
    let e = app
        .poller
        .poll_once(&app.feed("work_orders"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid_grant"),
        "the token endpoint's own words: {e}"
    );
    assert!(!e.contains("not-the-password"), "{e}");
    app.stop().await;
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let app = spawn_app(oauth_options()).await;
    app.sim.state.set_faults(Faults {
        token_ttl_secs: Some(2),
        omit_expires_in: false,
        ..Default::default()
    });
    app.poll().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    app.poll().await;
    let s = app.sim.state.stats();
    assert_eq!(s.unauthorized, 0, "renewed before expiry, never rejected");
    assert!(s.token_requests >= 2);
    app.stop().await;
}

#[tokio::test]
async fn a_record_inserted_while_paging_is_caught_by_a_rescan() {
    let app = spawn_app(Options {
        records: 30,
        page_size: 5,
        concurrency: 1,
        publisher: false,
        ..Default::default()
    })
    .await;
    app.poll().await;
    app.sim.state.set_faults(Faults {
        drift: Some(Drift::Insert { after_page: 2 }),
        ..Default::default()
    });
    let o = app.poll().await;
    assert!(o.complete, "the rescan saw a stable count");
    assert_eq!((o.created, o.deleted), (1, 0));
    assert_eq!(
        app.sim.state.stats().pages_served,
        6 + 6 + 7,
        "baseline, inconsistent scan (page_count of its page 1), rescan"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_scan_that_never_proves_completeness_applies_no_deletes() {
    let app = spawn_app(Options {
        records: 20,
        page_size: 5,
        ..Default::default()
    })
    .await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    app.poll().await;
    app.sim.state.delete(4);
    app.sim.state.update(
        5,
        serde_json::Map::from_iter([("title".to_string(), json!("still updated"))]),
    );
    app.sim.state.set_faults(Faults {
        total_results_offset: 1,
        ..Default::default()
    });
    let o = app.poll().await;
    assert!(!o.complete);
    assert_eq!(
        (o.updated, o.deleted),
        (1, 0),
        "updates apply, deletes do not"
    );
    let events = queue.take(3, Duration::from_secs(3)).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.routing_key.as_str())
            .collect::<Vec<_>>(),
        ["work_order.updated"]
    );
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bridge_poll_incomplete_scans_total{resource=\"work_orders\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        app.sim.state.stats().pages_served,
        4 * 4,
        "baseline plus three scans"
    );
    // Once the count is right again, the delete goes through.
    app.sim.state.set_faults(Faults::default());
    assert_eq!(app.poll().await.deleted, 1);
    queue.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_poll_past_its_deadline_fails_and_changes_nothing() {
    let app = spawn_app(Options {
        records: 20,
        page_size: 5,
        concurrency: 1,
        publisher: false,
        ..Default::default()
    })
    .await;
    app.poll().await;
    app.sim.state.delete(3);
    let mut poller = app.poller.clone();
    poller.deadline = Duration::from_millis(300);
    app.sim.state.set_faults(Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let err = poller
        .poll_once(&app.feed(&default_resource().name))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "deadline");
    assert_eq!(app.state.store.snapshot_len("work_orders").unwrap(), 20);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bridge_poll_failures_total{reason=\"deadline\",resource=\"work_orders\"}"
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_refresh_falls_back_to_a_new_password_grant() {
    let app = spawn_app(oauth_options()).await;
    app.sim.state.set_faults(Faults {
        token_ttl_secs: Some(1),
        ..Default::default()
    });
    app.poll().await;
    // Refresh tokens are single use in the simulator: spend it, so the bridge's refresh fails.
    app.sim.state.revoke_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.poll().await.records, 20);
    let s = app.sim.state.stats();
    assert_eq!(
        s.token_requests, 3,
        "password grant, failed refresh, new password grant"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_daftra_is_reported_with_its_cause() {
    let app = spawn_app(Options {
        publisher: false,
        max_retries: 1,
        ..Default::default()
    })
    .await;
    app.sim.stop().await;
    let err = app
        .poller
        .poll_once(&app.feed(&default_resource().name))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("error sending request") && text.to_lowercase().contains("refused"),
        "{text}"
    );
    let m = app.metrics().await;
    assert_eq!(retries(&m, "connection"), 1.0);
    app.cancel.cancel();
}

#[tokio::test]
async fn a_poll_holds_only_the_records_whose_hash_changed() {
    use daftra_bridge::scan::{scan, Keep};
    let app = spawn_app(Options::without_publisher()).await;
    let r = default_resource();
    // A silent first poll writes its pages to the snapshot as they arrive and keeps none.
    let mut empty = daftra_bridge::diff::Known::default();
    let feed = app.feed(&r.name);
    let first = scan(&feed, Keep::Baseline(&app.state.store, &mut empty))
        .await
        .unwrap();
    assert!(first.records.is_empty());
    assert_eq!(first.distinct, 45);
    assert_eq!(app.state.store.snapshot_len("work_orders").unwrap(), 45);
    assert!(
        !app.state.store.has_baseline("work_orders").unwrap(),
        "not marked before the commit"
    );
    app.sim.state.update(
        4,
        serde_json::Map::from_iter([("title".into(), json!("changed"))]),
    );
    app.sim.state.update(
        9,
        serde_json::Map::from_iter([("title".into(), json!("changed"))]),
    );
    let hashes = app.state.store.load_hashes("work_orders").unwrap();
    let mut known = daftra_bridge::diff::Known::new(hashes);
    let second = scan(&feed, Keep::Changed(&mut known)).await.unwrap();
    let kept: Vec<i64> = second.records.iter().map(|s| s.id).collect();
    assert_eq!(kept, [4, 9], "only the changed records are held");
    assert_eq!((second.distinct, second.read), (45, 45));
    assert_eq!(known.seen_count(), 45, "every snapshot id marked seen");
    app.stop().await;
}

#[tokio::test]
async fn a_snapshot_from_before_content_hashes_is_migrated_without_spurious_updates() {
    let app = spawn_app(Options::without_publisher()).await;
    app.poll().await;
    let path = app._db.path().join("bridge.sqlite3");
    {
        // The schema of earlier versions: no hash column (and no versioned migrations yet).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE schema_migrations;
             CREATE TABLE old AS SELECT resource, id, record FROM snapshot;
             DROP TABLE snapshot;
             CREATE TABLE snapshot (resource TEXT NOT NULL, id INTEGER NOT NULL, record TEXT NOT NULL,
                 PRIMARY KEY (resource, id)) WITHOUT ROWID;
             INSERT INTO snapshot SELECT * FROM old; DROP TABLE old;",
        )
        .unwrap();
    }
    let reopened = daftra_bridge::store::Store::open(&path).unwrap();
    let hashes = reopened.load_hashes("work_orders").unwrap();
    assert_eq!(hashes.len(), 45);
    assert!(
        hashes.iter().all(|(_, h)| *h != 0),
        "every row got its hash"
    );
    let o = app.poll().await;
    assert_eq!((o.created, o.updated, o.deleted), (0, 0, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_408_is_retried_like_other_transient_answers() {
    let app = spawn_app(Options::without_publisher()).await;
    app.sim.state.set_faults(Faults {
        request_timeouts_next: 2,
        ..Default::default()
    });
    assert_eq!(app.poll().await.records, 45);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "daftra_api_retries_total{reason=\"timeout\",resource=\"work_orders\"}"
        ),
        Some(2.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_429_on_the_last_allowed_attempt_still_pauses_every_request_of_the_account() {
    let app = spawn_app(Options {
        max_retries: 1,
        concurrency: 1,
        records: 10,
        resources: Some("work_orders,clients".into()),
        ..Options::without_publisher()
    })
    .await;
    // Two 429s in a row: with one retry, work orders fail on their last attempt; the next
    // request, of another resource, must still wait out the account's pause.
    app.sim.state.set_faults(Faults {
        rate_limited_next: 2,
        retry_after: RetryAfterForm::Seconds,
        ..Default::default()
    });
    assert!(app
        .poller
        .poll_once(&app.feed("work_orders"))
        .await
        .is_err());
    app.poller.poll_once(&app.feed("clients")).await.unwrap();
    let gaps = app.sim.state.stats().gaps_after_429_ms;
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= 900),
        "a request reached Daftra sooner than Retry-After: 1 after a 429 (gaps {gaps:?} ms)"
    );
    app.stop().await;
}
