//! What an operator meets first: credentials Daftra refuses are named at the account level
//! (not as every resource being "unavailable") and polling resumes as soon as they pass;
//! `daftra-bridge check`; logs without colour codes in a pipe; a flood of Daftra's webhook
//! calls costs a bounded number of polls.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    amqp_url, delete_exchange, fields, free_port, get_json, spawn_app, unique, wait_for, Bridge,
    BridgeEnv, Options, SIM_API_KEY,
};
use daftra_bridge::sim::{Faults, SimConfig, Simulator};

fn refuse(sim: &Simulator, on: bool) {
    sim.state.set_faults(Faults {
        refuse_credentials: on,
        ..Default::default()
    });
}

#[tokio::test]
async fn refused_credentials_are_an_account_fact_and_polls_resume_when_they_pass() {
    let app = spawn_app(Options {
        resources: Some("work_orders,clients".into()),
        ..Options::without_publisher()
    })
    .await;
    refuse(&app.sim, true);
    let cancel = tokio_util::sync::CancellationToken::new();
    for name in ["work_orders", "clients"] {
        let trigger = app.state.served.trigger(name).unwrap().1.clone();
        tokio::spawn(app.poller.clone().run(
            app.feed(name),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            trigger,
            cancel.clone(),
        ));
    }
    wait_for(
        async || app.get("/readyz").await.status() == 503,
        Duration::from_secs(20),
        "not ready while Daftra refuses the credentials",
    )
    .await;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["components"]["daftra"]["state"], "refused", "{ready}");
    let problem = ready["problems"][0]["message"].as_str().unwrap();
    assert!(
        problem.contains("401") && problem.contains("check DAFTRA_API_KEY"),
        "{problem}"
    );
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(status["account"]["credentials"], "refused");
    assert_eq!(
        status["account"]["refused"]["check"],
        json!(["DAFTRA_API_KEY"])
    );
    for name in ["work_orders", "clients"] {
        let r = &status["resources"][name];
        assert_eq!(r["available"], true, "a 401 is not one resource's: {r}");
    }
    let m = app.metrics().await;
    assert!(
        m.contains("bridge_resource_available{resource=\"clients\"} 1"),
        "{m}"
    );

    // A live export names the variables to check, without asking Daftra again.
    let before = app.sim.state.stats().list_requests;
    let live = app.get("/exports/work_orders.csv?source=live").await;
    assert_eq!(live.status(), 503);
    assert!(live.text().await.unwrap().contains("check DAFTRA_API_KEY"));
    assert_eq!(app.sim.state.stats().list_requests, before);

    // Accepted again: every resource polls at once (the probe's first retry is 5 s away).
    refuse(&app.sim, false);
    wait_for(
        async || {
            let s = app.get("/status").await.json::<Value>().await.unwrap();
            ["work_orders", "clients"]
                .iter()
                .all(|n| s["resources"][n]["last_outcome"] == "baseline")
        },
        // The probe backs off (5 s, 10 s, 20 s): a slow start under load meets a later one.
        Duration::from_secs(45),
        "both resources polled once the credentials pass",
    )
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    cancel.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_key_is_named_in_one_log_line_without_colour_codes() {
    let sim = Simulator::start_local(SimConfig {
        records: 5,
        ..Default::default()
    })
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = Options::without_publisher()
        .env(&sim.base_url, db.path())
        .set("DAFTRA_API_KEY", "a-key-daftra-refuses")
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("POLL_INTERVAL_SECS", "1")
        .set("RUST_LOG", "info");
    let mut serve = Bridge::new(&["serve"], &env)
        .stderr(std::process::Stdio::piped())
        .spawn();
    wait_for(
        async || {
            get_json(port, "/status")
                .await
                .is_some_and(|s| s["account"]["credentials"] == "refused")
        },
        Duration::from_secs(20),
        "the refusal in /status",
    )
    .await;
    // Polls wait for the credentials instead of retrying per resource.
    tokio::time::sleep(Duration::from_secs(3)).await;
    serve.terminate();
    let out = serve.wait_with_output();
    let log = String::from_utf8_lossy(&out.stderr);
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("check DAFTRA_API_KEY"))
        .collect();
    assert_eq!(named.len(), 1, "one line names the variable:\n{log}");
    assert!(!log.contains("marked unavailable"), "{log}");
    assert!(
        !log.contains("a-key-daftra-refuses"),
        "the key is never logged"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    sim.stop().await;
}

/// `daftra-bridge check` with `env`: its exit success and standard output.
async fn check(env: &BridgeEnv) -> (bool, String) {
    let out = Bridge::new(&["check"], env)
        .stdout(std::process::Stdio::piped())
        .output_async()
        .await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn check_names_each_dependency_and_what_to_fix() {
    let sim = Simulator::start_local(SimConfig {
        records: 5,
        ..Default::default()
    })
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let exchange = unique("check");
    let _cleanup = crate::helpers::ExchangeGuard(exchange.clone());
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", &sim.base_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set(
            "DATABASE_URL",
            format!("sqlite://{}/check.sqlite3", db.path().display()),
        )
        .set("AMQP_URL", amqp_url())
        .set("AMQP_EXCHANGE", &exchange);
    let (ok, out) = check(&env).await;
    assert!(ok, "{out}");
    for name in ["config", "daftra", "broker", "store"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(" ok ")),
            "{name} ok:\n{out}"
        );
    }
    assert!(
        !out.contains(SIM_API_KEY) && !out.contains("guest:guest"),
        "{out}"
    );

    let (ok, out) = check(&env.clone().set("DAFTRA_API_KEY", "wrong-key")).await;
    assert!(!ok);
    let daftra = out.lines().find(|l| l.starts_with("daftra")).unwrap();
    assert!(
        daftra.contains("FAILED") && daftra.contains("check DAFTRA_API_KEY"),
        "{out}"
    );
    assert!(!out.contains("wrong-key"), "{out}");

    let stopped = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let (ok, out) = check(&env.clone().set("AMQP_URL", stopped)).await;
    assert!(!ok);
    let broker = out.lines().find(|l| l.starts_with("broker")).unwrap();
    assert!(
        broker.contains("FAILED") && broker.contains("AMQP_URL"),
        "{out}"
    );
    assert!(
        !out.contains("guest:guest"),
        "the password is never shown: {out}"
    );

    let (ok, out) = check(&env.clone().set("DAFTRA_PAGE_SIZE", "0")).await;
    assert!(!ok);
    assert!(
        out.starts_with("config") && out.contains("DAFTRA_PAGE_SIZE"),
        "{out}"
    );
    delete_exchange(&exchange).await;
    sim.stop().await;
}

#[tokio::test]
async fn a_flood_of_daftra_webhook_calls_costs_a_bounded_number_of_polls() {
    let app = spawn_app(Options {
        inbound_token: Some("inbound".into()),
        poll_loop: true,
        extra: vec![("INBOUND_MIN_INTERVAL_SECS", "2".into())],
        ..Options::without_publisher()
    })
    .await;
    wait_for(
        async || get_json_app(&app).await["resources"]["work_orders"]["last_outcome"] == "baseline",
        Duration::from_secs(20),
        "the first poll",
    )
    .await;
    let lists = || app.sim.state.stats().list_requests;
    let before = lists();
    let url = format!("{}/webhooks/daftra/work_orders?token=inbound", app.base);
    let started = std::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let r = app.http.post(&url).body("{}").send().await.unwrap();
        assert_eq!(r.status(), 202);
        calls += 1;
    }
    // The change announced by the last call is polled within the interval.
    app.sim
        .state
        .update(4, fields(json!({"title": "announced last"})));
    app.http.post(&url).body("{}").send().await.unwrap();
    wait_for(
        async || {
            app.get("/exports/work_orders.csv?source=snapshot")
                .await
                .text()
                .await
                .unwrap()
                .contains("announced last")
        },
        Duration::from_secs(6),
        "the last call's change polled",
    )
    .await;
    let pages_per_poll = 5; // 45 records, 10 a page
    let polls = (lists() - before) / pages_per_poll;
    assert!(calls > 20, "a flood: {calls} calls");
    assert!(
        polls <= 4,
        "{calls} calls in 3 s cost {polls} polls (one per 2 s at most)"
    );
    app.stop().await;
}

/// Three calls in a burst: one poll now, one when the interval has passed (answering the two
/// calls that waited), and no third.
#[tokio::test]
async fn a_burst_of_webhook_calls_costs_two_polls_and_says_which_waited() {
    let app = spawn_app(Options {
        inbound_token: Some("inbound".into()),
        poll_loop: true,
        extra: vec![("INBOUND_MIN_INTERVAL_SECS", "2".into())],
        ..Options::without_publisher()
    })
    .await;
    wait_for(
        async || get_json_app(&app).await["resources"]["work_orders"]["last_outcome"] == "baseline",
        Duration::from_secs(20),
        "the first poll",
    )
    .await;
    let before = app.sim.state.stats().list_requests;
    let url = format!("{}/webhooks/daftra/work_orders?token=inbound", app.base);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let r = app.http.post(&url).body("{}").send().await.unwrap();
        answers.push(r.json::<Value>().await.unwrap()["poll"].clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(answers[0], "started");
    assert_eq!(
        answers[2],
        "queued until INBOUND_MIN_INTERVAL_SECS has passed"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let polls = (app.sim.state.stats().list_requests - before) / 5;
    assert_eq!(polls, 2, "three calls in a burst");
    app.stop().await;
}

async fn get_json_app(app: &crate::helpers::TestApp) -> Value {
    app.get("/status").await.json().await.unwrap()
}
