//! The storage interface, the same tests on both backends (SQLite in a temporary folder,
//! PostgreSQL in a fresh database), and what only PostgreSQL has: migrations under concurrent
//! start-up, fencing, and an outage the store heals from.

use std::time::Duration;

use daftra_bridge::config::Secret;
use daftra_bridge::events::OutboxEvent;
use daftra_bridge::store::{
    AttemptOutcome, AttemptRecord, EndpointPatch, LeaderLock, Location, NewEndpoint, SnapshotWrite,
    Store, StoreError, AMQP_SINK,
};

use crate::pg::TestDb;
use crate::proxy::Proxy;

/// A store of each backend, with what keeps it alive (its folder or database, and on
/// PostgreSQL the leadership its leader-only writes need).
struct Backend {
    name: &'static str,
    store: Store,
    _lock: Option<Box<dyn LeaderLock>>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDb>,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("store.sqlite3")).unwrap();
    let db = TestDb::new();
    let pg = Store::connect(&Location::Postgres(db.url())).unwrap();
    let lock = lead(&pg, "http://test:1");
    vec![
        Backend {
            name: "sqlite",
            store: sqlite,
            _lock: None,
            _dir: Some(dir),
            _db: None,
        },
        Backend {
            name: "postgres",
            store: pg,
            _lock: Some(lock),
            _dir: None,
            _db: Some(db),
        },
    ]
}

/// Takes the leadership of `store` (PostgreSQL) and arms its fencing token.
fn lead(store: &Store, holder: &str) -> Box<dyn LeaderLock> {
    let mut lock = store.leader_lock().expect("PostgreSQL elects a leader");
    let (store, holder) = (store.clone(), holder.to_string());
    let (lock, taken) = std::thread::spawn(move || {
        let taken = lock
            .try_acquire(&holder)
            .unwrap()
            .expect("nobody else leads");
        store.set_fencing_token(Some(taken.token));
        (lock, taken)
    })
    .join()
    .unwrap();
    assert!(taken.token > 0);
    lock
}

fn event(seq_hint: i64, record_id: i64, op: &str) -> OutboxEvent {
    OutboxEvent {
        resource: "work_orders".into(),
        op: op.into(),
        event_id: format!("ev-{seq_hint}"),
        routing_key: format!("work_order.{op}"),
        body: format!("{{\"n\":{seq_hint}}}"),
        record_id,
    }
}

fn upsert(id: i64, title: &str) -> SnapshotWrite {
    SnapshotWrite::Upsert {
        id,
        record: format!("{{\"id\":{id},\"title\":\"{title}\"}}"),
    }
}

#[tokio::test]
async fn the_snapshot_and_the_outbox_behave_alike_on_both_backends() {
    for b in backends() {
        let (s, name) = (&b.store, b.name);
        assert!(!s.has_baseline("work_orders").unwrap(), "{name}");
        assert_eq!(s.snapshot_version("work_orders").unwrap(), None, "{name}");
        // A first poll's pages, then its commit: 2,500 records cross PostgreSQL's scan batches.
        let page: Vec<(i64, String)> = (1..=2500)
            .map(|id| (id, format!("{{\"id\":{id},\"title\":\"عنوان {id}\"}}")))
            .collect();
        s.write_baseline_page("work_orders", &page).unwrap();
        assert!(
            !s.has_baseline("work_orders").unwrap(),
            "{name}: a page is no baseline"
        );
        s.commit_poll("work_orders", &[], &[]).unwrap();
        assert!(s.has_baseline("work_orders").unwrap() && s.any_baseline().unwrap());
        assert_eq!(
            s.snapshot_version("work_orders").unwrap().unwrap().0,
            1,
            "{name}"
        );
        assert_eq!(s.snapshot_len("work_orders").unwrap(), 2500, "{name}");

        // A later poll: two updates, one delete, one create, and their events in order.
        let events = [
            event(1, 4, "updated"),
            event(2, 9, "deleted"),
            event(3, 2501, "created"),
        ];
        s.commit_poll(
            "work_orders",
            &[
                upsert(4, "changed"),
                SnapshotWrite::Delete { id: 9 },
                upsert(2501, "new"),
            ],
            &events,
        )
        .unwrap();
        assert_eq!(
            s.snapshot_version("work_orders").unwrap().unwrap().0,
            2,
            "{name}"
        );
        assert_eq!(s.snapshot_len("work_orders").unwrap(), 2500, "{name}");
        assert_eq!(s.load_one("work_orders", 9).unwrap(), None, "{name}");
        assert!(s
            .load_one("work_orders", 4)
            .unwrap()
            .unwrap()
            .contains("changed"));
        let many = s.load_many("work_orders", &[1, 9, 2501]).unwrap();
        assert_eq!(many.len(), 2, "{name}: only records that exist");
        let hashes = s.load_hashes("work_orders").unwrap();
        assert_eq!(hashes.len(), 2500);
        assert!(hashes.windows(2).all(|w| w[0].0 < w[1].0), "{name}: by id");
        let record4 = s.load_one("work_orders", 4).unwrap().unwrap();
        assert_eq!(
            hashes.iter().find(|h| h.0 == 4).unwrap().1,
            daftra_bridge::record::content_hash(&record4),
            "{name}"
        );
        assert_eq!(s.load_snapshot("work_orders").unwrap().len(), 2500);
        // Other resources are apart.
        assert_eq!(s.snapshot_len("clients").unwrap(), 0, "{name}");

        // Scans: every row once, in id order either way, and they stop when asked.
        for descending in [false, true] {
            let mut ids = Vec::new();
            s.scan_snapshot("work_orders", descending, &mut |text| {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                ids.push(v["id"].as_i64().unwrap());
                true
            })
            .unwrap();
            let mut want: Vec<i64> = (1..=2501).filter(|id| *id != 9).collect();
            if descending {
                want.reverse();
            }
            assert_eq!(ids, want, "{name} descending={descending}");
        }
        let mut seen = 0;
        s.scan_snapshot("work_orders", false, &mut |_| {
            seen += 1;
            seen < 1500
        })
        .unwrap();
        assert_eq!(seen, 1500, "{name}: a scan stops when told");

        // The outbox: in order, a cursor per sink that never moves back, pruned once confirmed.
        let rows = s.outbox_batch(0, 10).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.event.event_id.as_str()).collect();
        assert_eq!(ids, ["ev-1", "ev-2", "ev-3"], "{name}");
        assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(rows[2].event.record_id, 2501);
        assert_eq!(
            s.outbox_batch(rows[0].seq, 1).unwrap()[0].event.event_id,
            "ev-2"
        );
        assert_eq!(s.outbox_len().unwrap(), 3, "{name}");
        assert_eq!(s.sink_cursor(AMQP_SINK).unwrap(), 0);
        s.confirm_sink(AMQP_SINK, rows[1].seq).unwrap();
        s.confirm_sink(AMQP_SINK, rows[0].seq).unwrap();
        assert_eq!(
            s.sink_cursor(AMQP_SINK).unwrap(),
            rows[1].seq,
            "{name}: never back"
        );
        assert_eq!(s.outbox_len().unwrap(), 1, "{name}");
        let head = s.outbox_head().unwrap();
        assert_eq!(head, rows[2].seq, "{name}");
        assert_eq!(
            s.prune_event_log(Duration::from_secs(3600)).unwrap(),
            0,
            "{name}: kept"
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            s.prune_event_log(Duration::ZERO).unwrap(),
            2,
            "{name}: confirmed rows go"
        );
        assert_eq!(
            s.outbox_head().unwrap(),
            head,
            "{name}: the head outlives pruning"
        );
        s.confirm_sink(AMQP_SINK, head).unwrap();
        s.prune_event_log(Duration::ZERO).unwrap();
        assert_eq!(
            s.outbox_head().unwrap(),
            head,
            "{name}: even with the log empty"
        );

        s.save_poll_status("work_orders", "{\"records\":2500}")
            .unwrap();
        s.save_poll_status("work_orders", "{\"records\":2501}")
            .unwrap();
        assert_eq!(
            s.poll_statuses().unwrap()["work_orders"],
            "{\"records\":2501}",
            "{name}"
        );
        s.ping().unwrap();
        s.check_fence().unwrap();
    }
}

#[tokio::test]
async fn webhook_queues_and_attempts_behave_alike_on_both_backends() {
    for b in backends() {
        let (s, name) = (&b.store, b.name);
        s.commit_poll("work_orders", &[], &[event(0, 1, "created")])
            .unwrap();
        let new = NewEndpoint {
            url: "https://example.com/hook".into(),
            events: vec!["work_order.*".into()],
            description: "ops".into(),
        };
        let ep = s
            .create_endpoint("ep_1", &new, &Secret::new("whsec_a"))
            .unwrap();
        assert_eq!(
            ep.cursor,
            s.outbox_head().unwrap(),
            "{name}: only later events"
        );
        assert!(!ep.disabled && ep.previous_secrets.is_empty());
        s.commit_poll(
            "work_orders",
            &[],
            &[
                event(1, 7, "updated"),
                event(2, 7, "updated"),
                event(3, 8, "created"),
            ],
        )
        .unwrap();
        let keys = s.outbox_keys(ep.cursor, 10).unwrap();
        assert_eq!(keys.len(), 3, "{name}");
        let messages: Vec<(i64, String)> = keys
            .iter()
            .map(|(seq, _, res, id)| (*seq, format!("{res}/{id}")))
            .collect();
        assert!(s.enqueue_messages("ep_1", &messages, keys[2].0).unwrap());
        assert!(
            s.enqueue_messages("ep_1", &messages[..1], 0).unwrap(),
            "twice is once"
        );
        assert!(!s.enqueue_messages("ep_none", &messages, 0).unwrap());
        assert_eq!(
            s.endpoint("ep_1").unwrap().unwrap().cursor,
            keys[2].0,
            "{name}: no move back"
        );
        assert_eq!(s.endpoint_pending("ep_1").unwrap(), 3, "{name}");
        let now = chrono::Utc::now().timestamp_millis() + 1000;
        let due = s.due_messages("ep_1", now, 10).unwrap();
        // Record 7's second event waits for its first.
        let due_seqs: Vec<i64> = due.iter().map(|d| d.seq).collect();
        assert_eq!(due_seqs, [keys[0].0, keys[2].0], "{name}");
        assert_eq!(due[0].event_id, "ev-1");
        assert!(due[0].body.contains("\"n\":1"));
        let attempt = |seq: i64, status: Option<u16>, outcome: AttemptOutcome| AttemptRecord {
            seq,
            event_id: "ev".into(),
            attempt: 1,
            at_ms: now,
            status,
            latency_ms: 12,
            error: status.is_none().then(|| "connection refused".to_string()),
            outcome,
        };
        s.record_attempts(
            "ep_1",
            &[
                attempt(keys[0].0, Some(204), AttemptOutcome::Delivered),
                attempt(keys[2].0, None, AttemptOutcome::RetryAt(now + 60_000)),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.endpoint_pending("ep_1").unwrap(), 2, "{name}");
        let due: Vec<i64> = s
            .due_messages("ep_1", now, 10)
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        assert_eq!(due, [keys[1].0], "{name}: record 7's next event is due now");
        assert!(
            s.next_due("ep_1").unwrap().is_some_and(|t| t < now),
            "{name}: queued before `now`"
        );
        let log = s.attempts("ep_1", 10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(
            log[0].outcome,
            AttemptOutcome::RetryAt(now + 60_000),
            "{name}: newest first"
        );
        assert_eq!(log[1].outcome, AttemptOutcome::Delivered);
        assert_eq!(
            (log[1].status, log[0].error.as_deref()),
            (Some(204), Some("connection refused"))
        );

        s.record_attempts(
            "ep_1",
            &[attempt(keys[1].0, Some(410), AttemptOutcome::Stopped)],
            Some("410 Gone"),
        )
        .unwrap();
        let gone = s.endpoint("ep_1").unwrap().unwrap();
        assert!(gone.disabled, "{name}");
        assert_eq!(gone.disabled_reason.as_deref(), Some("410 Gone"));
        let enabled = s
            .update_endpoint(
                "ep_1",
                &EndpointPatch {
                    disabled: Some(false),
                    ..Default::default()
                },
            )
            .unwrap()
            .unwrap();
        assert!(
            !enabled.disabled && enabled.disabled_reason.is_none(),
            "{name}"
        );
        assert_eq!(
            s.next_due("ep_1").unwrap().map(|t| t <= now),
            Some(true),
            "{name}: due again"
        );
        let patched = s
            .update_endpoint(
                "ep_1",
                &EndpointPatch {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            patched.disabled_reason.as_deref(),
            Some("disabled by the operator")
        );
        assert!(s
            .update_endpoint("ep_none", &EndpointPatch::default())
            .unwrap()
            .is_none());

        assert!(s
            .rotate_secret("ep_1", &Secret::new("whsec_b"), now / 1000 + 86_400)
            .unwrap());
        let rotated = s.endpoint("ep_1").unwrap().unwrap();
        assert_eq!(rotated.secret.expose(), "whsec_b", "{name}");
        assert_eq!(rotated.previous_secrets.len(), 1);
        assert_eq!(rotated.previous_secrets[0].0.expose(), "whsec_a");
        assert!(!s.rotate_secret("ep_none", &Secret::new("x"), 0).unwrap());

        let replay = s.events_since(0, keys[1].0).unwrap();
        assert_eq!(replay.len(), 3, "{name}: up to the given position");
        assert_eq!(s.endpoints().unwrap().len(), 1);
        assert_eq!(s.prune_attempts().unwrap(), 0, "{name}");
        assert!(s.delete_endpoint("ep_1").unwrap());
        assert!(!s.delete_endpoint("ep_1").unwrap());
        assert!(
            s.attempts("ep_1", 10).unwrap().is_empty(),
            "{name}: the log goes too"
        );
    }
}

#[tokio::test]
async fn replicas_starting_at_once_on_an_empty_database_migrate_it_once() {
    let db = TestDb::new();
    let url = db.url();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::connect(&Location::Postgres(url)).map(|_| ())
            })
        })
        .collect();
    for s in starts {
        s.join().unwrap().expect("every replica starts");
    }
    assert_eq!(
        db.query("SELECT count(*) FROM schema_migrations")
            .as_deref(),
        Some("5"),
        "each migration applied once"
    );
    assert_eq!(
        db.query("SELECT term FROM leadership").as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn a_leader_that_lost_its_lock_session_writes_nothing() {
    let db = TestDb::new();
    let old = Store::connect(&Location::Postgres(db.url())).unwrap();
    let _old_lock = lead(&old, "http://old:1");
    old.commit_poll("work_orders", &[upsert(1, "first")], &[])
        .unwrap();
    // The old leader's lock session is cut (pg_terminate_backend), and a new one takes over.
    assert_eq!(db.terminate("daftra-bridge-leader"), 1);
    let new = Store::connect(&Location::Postgres(db.url())).unwrap();
    let _new_lock = lead(&new, "http://new:1");
    assert_eq!(
        new.leader_address().unwrap().as_deref(),
        Some("http://new:1")
    );
    let refused = old
        .commit_poll(
            "work_orders",
            &[upsert(1, "from the old leader")],
            &[event(1, 1, "updated")],
        )
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Fenced {
                held: 1,
                current: 2
            }
        ),
        "{refused}"
    );
    assert!(matches!(old.check_fence(), Err(StoreError::Fenced { .. })));
    assert!(matches!(
        old.confirm_sink(AMQP_SINK, 1),
        Err(StoreError::Fenced { .. })
    ));
    assert!(
        new.load_one("work_orders", 1)
            .unwrap()
            .unwrap()
            .contains("first"),
        "unchanged"
    );
    assert_eq!(new.outbox_len().unwrap(), 0, "no event from the old leader");
    new.commit_poll("work_orders", &[upsert(1, "second")], &[])
        .unwrap();
    // A follower's store refuses leader-only writes too.
    old.set_fencing_token(None);
    assert!(matches!(
        old.save_poll_status("x", "{}"),
        Err(StoreError::Fenced { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_named_and_healed_without_a_restart() {
    let db = TestDb::new();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name);
    let store = Store::connect(&Location::Postgres(url)).unwrap();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.has_baseline("work_orders").unwrap())
        .await
        .unwrap();
    proxy.cut();
    let s = store.clone();
    let down = tokio::task::spawn_blocking(move || (s.has_baseline("work_orders"), s.ping()))
        .await
        .unwrap();
    assert!(
        matches!(down.0, Err(StoreError::Unavailable(_))),
        "{:?}",
        down.0
    );
    assert!(down.1.is_err());
    proxy.restore();
    let s = store.clone();
    let back = tokio::task::spawn_blocking(move || s.has_baseline("work_orders"))
        .await
        .unwrap();
    assert!(matches!(back, Ok(false)), "{back:?}");
}
