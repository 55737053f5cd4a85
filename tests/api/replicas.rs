//! Several `serve` processes on one PostgreSQL database: one leader, followers that serve the
//! same exports, a takeover when the leader dies or loses its lock session, and a database
//! restarted under a running bridge.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    amqp_url, declare_exchange, fields, free_port, get_json, metric, metrics_at, spawn_app, unique,
    wait_for, wait_polled_and_published, Bridge, BridgeEnv, EventQueue, Options, Running,
    SIM_API_KEY,
};
use crate::pg::{PrivateServer, TestDb};
use crate::proxy::{broker_addr, Proxy};

/// A replica: a `serve` process on `db`, polling every second.
fn replica(sim_url: &str, db: &str, amqp: &str, exchange: &str, port: u16) -> Running {
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", db)
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("RUST_LOG", "warn")
        .set("DAFTRA_PAGE_SIZE", "7")
        .set("AMQP_URL", amqp)
        .set("AMQP_EXCHANGE", exchange)
        .set("POLL_INTERVAL_SECS", "1")
        // Deletes within a second of being made: every poll a full scan.
        .set("POLL_STRATEGY", "full")
        .set("ADVERTISE_URL", format!("http://127.0.0.1:{port}"));
    Bridge::new(&["serve"], &env).spawn()
}

async fn role(port: u16) -> Option<String> {
    get_json(port, "/status").await?["role"]
        .as_str()
        .map(str::to_string)
}

/// Waits until one of `ports` leads and the others follow; returns the leader's index.
async fn one_leader(ports: &[u16]) -> usize {
    let mut leader = None;
    wait_for(
        async || {
            let mut roles = Vec::new();
            for p in ports {
                roles.push(role(*p).await);
            }
            let leaders: Vec<usize> = (0..roles.len())
                .filter(|i| roles[*i].as_deref() == Some("leader"))
                .collect();
            let followers = roles
                .iter()
                .filter(|r| r.as_deref() == Some("follower"))
                .count();
            leader = leaders.first().copied();
            leaders.len() == 1 && followers == ports.len() - 1
        },
        Duration::from_secs(20),
        "exactly one leader",
    )
    .await;
    leader.unwrap()
}

async fn baseline_seen(port: u16) -> bool {
    get_json(port, "/status")
        .await
        .is_some_and(|s| s["resources"]["work_orders"]["records"].as_u64() >= Some(1))
}

#[tokio::test]
async fn replicas_started_at_once_elect_one_leader_and_serve_the_same_export() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 30,
        ..Default::default()
    })
    .unwrap();
    let db = TestDb::new();
    let exchange = unique("replicas");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    declare_exchange(&exchange).await;
    let mut queue = EventQueue::bind(&exchange, "#").await;
    let ports = [free_port(), free_port()];
    // Both at the same instant, against an empty database.
    let _replicas: Vec<_> = ports
        .iter()
        .map(|p| replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, *p))
        .collect();
    let leader = one_leader(&ports).await;
    let (lead, follow) = (ports[leader], ports[1 - leader]);
    assert_eq!(metric(&metrics_at(lead).await, "bridge_leader"), Some(1.0));
    assert_eq!(
        metric(&metrics_at(follow).await, "bridge_leader"),
        Some(0.0)
    );
    assert_eq!(
        db.query("SELECT count(*) FROM schema_migrations")
            .as_deref(),
        Some("5"),
        "each migration applied once"
    );
    wait_for(
        async || baseline_seen(follow).await,
        Duration::from_secs(20),
        "the follower shows the leader's poll",
    )
    .await;

    // The same export from either replica.
    let csv = async |port: u16| {
        let r = reqwest::get(format!(
            "http://127.0.0.1:{port}/exports/work_orders.csv?source=snapshot"
        ))
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let (a, b) = (csv(lead).await, csv(follow).await);
    assert_eq!(csv::Reader::from_reader(a.as_bytes()).records().count(), 30);
    assert_eq!(a, b, "both replicas serve the same snapshot");

    // Only the leader polls on demand; a follower names it.
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("http://127.0.0.1:{follow}/poll/work_orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "not_leader");
    assert_eq!(body["leader"], format!("http://127.0.0.1:{lead}"));
    let accepted = client
        .post(format!("http://127.0.0.1:{lead}/poll/work_orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);

    // One change, one event: the follower never publishes.
    sim.state
        .update(4, fields(json!({"title": "changed with two replicas"})));
    let events = queue.take(2, Duration::from_secs(8)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].routing_key, "work_order.updated");
    let published = |text: &str| {
        metric(
            text,
            "bridge_events_published_total{op=\"updated\",resource=\"work_orders\"}",
        )
    };
    assert_eq!(published(&metrics_at(follow).await).unwrap_or(0.0), 0.0);
    assert_eq!(published(&metrics_at(lead).await), Some(1.0));
    queue.close().await;
    sim.stop().await;
}

#[tokio::test]
async fn when_the_leader_is_killed_the_survivor_takes_over_and_publishes_every_change() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 30,
        ..Default::default()
    })
    .unwrap();
    let db = TestDb::new();
    let exchange = unique("takeover");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    declare_exchange(&exchange).await;
    let mut queue = EventQueue::bind(&exchange, "#").await;
    // The first leader cannot reach RabbitMQ: its events stay in the outbox.
    let proxy = Proxy::start(broker_addr()).await;
    proxy.cut();
    let (a, b) = (free_port(), free_port());
    let first = replica(&sim.base_url, &db.url(), &proxy.amqp_url(), &exchange, a);
    wait_for(
        async || role(a).await.as_deref() == Some("leader"),
        Duration::from_secs(20),
        "A leads",
    )
    .await;
    wait_for(
        async || baseline_seen(a).await,
        Duration::from_secs(20),
        "A's baseline",
    )
    .await;
    let _second = replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, b);
    wait_for(
        async || role(b).await.as_deref() == Some("follower"),
        Duration::from_secs(20),
        "B follows",
    )
    .await;

    sim.state
        .update(4, fields(json!({"title": "changed before the crash"})));
    sim.state.delete(9);
    let created = sim.state.create(fields(
        json!({"title": "created before the crash", "start_date": "2026-11-29"}),
    ));
    wait_for(
        async || {
            get_json(a, "/status")
                .await
                .is_some_and(|s| s["outbox_pending"] == 3)
        },
        Duration::from_secs(20),
        "A committed three events it cannot publish",
    )
    .await;
    drop(first); // SIGKILL
    let killed = Instant::now();
    wait_for(
        async || role(b).await.as_deref() == Some("leader"),
        Duration::from_secs(15),
        "B takes over within 15 s",
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "failover: the follower led {:.1} s after the leader was killed",
        takeover.as_secs_f64()
    );

    let events = queue.take(3, Duration::from_secs(20)).await;
    let mut got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.routing_key.clone(),
                e.body["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("work_order.created".to_string(), created.to_string()),
            ("work_order.deleted".to_string(), "9".to_string()),
            ("work_order.updated".to_string(), "4".to_string()),
        ]
    );
    // More polls by the new leader (one a second), their events published: nothing more.
    wait_polled_and_published(b, 3, Duration::from_secs(20)).await;
    assert!(
        queue.take(1, Duration::from_millis(500)).await.is_empty(),
        "nothing invented"
    );
    queue.close().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_leader_whose_lock_session_is_cut_stops_publishing_and_a_follower_leads() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 20,
        ..Default::default()
    })
    .unwrap();
    let db = TestDb::new();
    let exchange = unique("fenced");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    declare_exchange(&exchange).await;
    let mut queue = EventQueue::bind(&exchange, "#").await;
    let (a, b) = (free_port(), free_port());
    let _first = replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, a);
    wait_for(
        async || role(a).await.as_deref() == Some("leader"),
        Duration::from_secs(20),
        "A leads",
    )
    .await;
    let _second = replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, b);
    wait_for(
        async || baseline_seen(b).await,
        Duration::from_secs(20),
        "the baseline",
    )
    .await;

    let lock_holder = db
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'daftra-bridge-leader' AND datname = current_database()",
        )
        .unwrap();
    assert_eq!(lock_holder, "2", "each replica has its lock session");
    let cut = db.query(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
    );
    assert_eq!(
        cut.as_deref(),
        Some("1"),
        "the leader's lock session is terminated"
    );
    wait_for(
        async || {
            role(a).await.as_deref() == Some("follower")
                && role(b).await.as_deref() == Some("leader")
        },
        Duration::from_secs(15),
        "A steps down and B leads",
    )
    .await;
    let a_metrics = metrics_at(a).await;
    assert_eq!(
        metric(
            &a_metrics,
            "bridge_leadership_changes_total{change=\"lost\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&a_metrics, "bridge_leader"), Some(0.0));
    let published = |text: &str| {
        metric(
            text,
            "bridge_events_published_total{op=\"updated\",resource=\"work_orders\"}",
        )
        .unwrap_or(0.0)
    };
    sim.state
        .update(3, fields(json!({"title": "after the cut"})));
    let events = queue.take(2, Duration::from_secs(8)).await;
    assert_eq!(
        events.len(),
        1,
        "one event, from the new leader: {events:?}"
    );
    assert_eq!(
        published(&metrics_at(a).await),
        0.0,
        "the old leader published nothing"
    );
    assert_eq!(published(&metrics_at(b).await), 1.0);
    queue.close().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_postgresql_restart_under_a_running_bridge_is_survived_without_a_restart() {
    let server = PrivateServer::start();
    let app = spawn_app(Options {
        database_url: Some(server.url()),
        ..Default::default()
    })
    .await;
    app.poll().await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let mut queue = EventQueue::bind(&app.exchange, "#").await;

    server.down();
    let down = app.get("/readyz").await;
    assert_eq!(down.status(), 503);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["problems"][0]["component"], "store", "{body}");
    assert_eq!(body["components"]["store"]["state"], "error", "{body}");
    let export = app.get("/exports/work_orders.csv?source=snapshot").await;
    assert_eq!(export.status(), 503);
    assert!(export.headers().contains_key("retry-after"));
    let body: Value = export.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    app.sim
        .state
        .update(4, fields(json!({"title": "changed during the outage"})));
    let r = app.feed("work_orders");
    assert!(
        app.poller.poll_once(&r).await.is_err(),
        "a poll fails while the database is down"
    );

    server.up();
    let up = Instant::now();
    wait_for(
        async || app.get("/readyz").await.status() == 200,
        Duration::from_secs(15),
        "ready again",
    )
    .await;
    // Alone on the database, it takes its own lease back as soon as the database answers,
    // without the grace it gives a leader that did not release the lock.
    wait_for(
        async || *app.state.health.role.borrow() == daftra_bridge::leader::Role::Leader,
        Duration::from_secs(10),
        "the leadership taken again within a few seconds",
    )
    .await;
    eprintln!(
        "blip: leading again {:.1} s after the database answered",
        up.elapsed().as_secs_f64()
    );
    let outcome = app.poller.poll_once(&r).await.expect("polls resume");
    assert_eq!(
        (outcome.updated, outcome.events),
        (1, 1),
        "the change made during the outage, once"
    );
    let events = queue.take(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].body["subject"], "4");
    assert_eq!(
        app.get("/exports/work_orders.csv?source=snapshot")
            .await
            .status(),
        200
    );
    queue.close().await;
    app.stop().await;
}

/// `bridge_events_published_total` of work-order updates at the replica on `port`.
async fn events_published(port: u16) -> f64 {
    metric(
        &metrics_at(port).await,
        "bridge_events_published_total{op=\"updated\",resource=\"work_orders\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_frozen_leader_is_replaced_within_15_s_and_publishes_no_more_when_it_resumes() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 3000,
        ..Default::default()
    })
    .unwrap();
    let db = TestDb::new();
    let exchange = unique("frozen");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    declare_exchange(&exchange).await;
    let mut queue = EventQueue::bind(&exchange, "#").await;
    let (a, b) = (free_port(), free_port());
    let mut first = replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, a);
    wait_for(
        async || role(a).await.as_deref() == Some("leader") && baseline_seen(a).await,
        Duration::from_secs(30),
        "A leads with its baseline",
    )
    .await;
    let _second = replica(&sim.base_url, &db.url(), &amqp_url(), &exchange, b);
    wait_for(
        async || role(b).await.as_deref() == Some("follower"),
        Duration::from_secs(20),
        "B follows",
    )
    .await;

    // Every record changes: three batches of events. A is frozen as soon as the first one
    // reaches the queue, in the middle of publishing.
    for id in 1..=3000 {
        sim.state
            .update(id, fields(json!({"title": format!("frozen change {id}")})));
    }
    let first_event = queue.take(1, Duration::from_secs(30)).await;
    first.freeze();
    let frozen = Instant::now();
    assert_eq!(first_event.len(), 1, "A started publishing");
    wait_for(
        async || role(b).await.as_deref() == Some("leader"),
        Duration::from_secs(15),
        "B takes over within 15 s of the freeze",
    )
    .await;
    eprintln!(
        "frozen leader: the follower led {:.1} s after the freeze",
        frozen.elapsed().as_secs_f64()
    );
    // B publishes everything A had not confirmed: every record's change reaches the queue.
    let mut subjects: std::collections::HashSet<String> = first_event
        .iter()
        .map(|e| e.body["subject"].as_str().unwrap().to_string())
        .collect();
    let mut ids: std::collections::HashSet<String> = first_event
        .iter()
        .filter_map(|e| e.message_id.clone())
        .collect();
    while subjects.len() < 3000 {
        let got = queue.take(500, Duration::from_secs(30)).await;
        assert!(
            !got.is_empty(),
            "{} of 3000 changes delivered",
            subjects.len()
        );
        subjects.extend(
            got.iter()
                .map(|e| e.body["subject"].as_str().unwrap().to_string()),
        );
        ids.extend(got.iter().filter_map(|e| e.message_id.clone()));
    }
    wait_polled_and_published(b, 1, Duration::from_secs(30)).await;
    let drained = queue.take(3000, Duration::from_millis(500)).await;

    // A resumes: its lease ran out while it was frozen, so it publishes nothing more and
    // steps down when its lock session turns out to be gone.
    first.resume();
    wait_for(
        async || role(a).await.as_deref() == Some("follower"),
        Duration::from_secs(15),
        "A steps down after resuming",
    )
    .await;
    // What it publishes after resuming is at most the one message whose write was under way
    // when it froze (checked before its write, written after): a repeat of an event already
    // delivered, never the rest of its batch.
    let late = queue.take(2, Duration::from_secs(1)).await;
    assert!(
        late.len() <= 1,
        "the resumed leader published {} more events ({} duplicates before)",
        late.len(),
        drained.len()
    );
    for e in &late {
        assert!(
            e.message_id.as_ref().is_some_and(|id| ids.contains(id)),
            "a late event is a repeat of one delivered: {e:?}"
        );
    }
    let a_published = events_published(a).await;
    assert!(
        a_published < 3000.0,
        "A was stopped mid-way ({a_published})"
    );
    queue.close().await;
    sim.stop().await;
}
