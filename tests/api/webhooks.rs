//! Webhooks both ways: the admin API, Standard Webhooks signatures checked by independent
//! implementations (the `standardwebhooks` package, the README's Python and Node receivers),
//! retries, 410, a dead endpoint beside a healthy one, SIGKILL mid-retry, rotation, replay,
//! private-address refusals, and the inbound Daftra webhook's coalescing.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::{
    fields, free_port, metric, python_module, require, spawn_app, sqlite_url, tool, unique,
    wait_for, Bridge, BridgeEnv, EventQueue, Options, Running, TestApp, SIM_API_KEY,
};

const ADMIN: &str = "admin-token-for-tests";

/// How long a wait below may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Delivery>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
    /// Answer nothing (hold the request) while set.
    hang: AtomicBool,
    /// `Location` of 3xx answers.
    location: Mutex<Option<String>>,
}

/// An HTTP receiver on a random loopback port that records every delivery.
pub struct Receiver {
    pub url: String,
    pub port: u16,
    state: Arc<ReceiverState>,
    server: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<ReceiverState>>,
) -> HttpResponse {
    if state.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let answered = state.script.lock().unwrap().pop_front().unwrap_or(200);
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.log.lock().unwrap().push(Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    let mut answer = HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap());
    if let Some(to) = state.location.lock().unwrap().clone() {
        answer.insert_header(("location", to));
    }
    answer.finish()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
            server: handle,
        }
    }

    /// Answers these statuses to the next requests, then 200.
    pub fn answer(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn redirect_to(&self, url: &str) {
        *self.state.location.lock().unwrap() = Some(url.to_string());
    }

    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, Ordering::SeqCst);
    }

    pub fn log(&self) -> Vec<Delivery> {
        self.state.log.lock().unwrap().clone()
    }

    /// Deliveries answered 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.log()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .collect()
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

fn admin_opts() -> Options {
    Options {
        admin_token: Some(ADMIN.into()),
        webhook_schedule: Some("0.2,0.2,0.2,0.2".into()),
        webhook_timeout: Some("2".into()),
        ..Default::default()
    }
}

impl TestApp {
    /// An admin API call with the test token.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers `url` for `events` (all when `None`); returns `(id, secret)`.
    pub async fn endpoint(&self, url: &str, events: Option<Value>) -> (String, String) {
        let mut body = json!({"url": url});
        if let Some(e) = events {
            body["events"] = e;
        }
        let (status, v) = self
            .admin(reqwest::Method::POST, "/webhooks/endpoints", Some(body))
            .await;
        assert_eq!(status, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn deliveries(&self, id: &str) -> Vec<Value> {
        let (status, v) = self
            .admin(
                reqwest::Method::GET,
                &format!("/webhooks/endpoints/{id}/deliveries"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["deliveries"].as_array().unwrap().clone()
    }
}

/// Verifies `d` with the `standardwebhooks` package; `Ok` or its error text.
fn verify_with_standardwebhooks(secret: &str, d: &Delivery) -> Result<(), String> {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
d = json.load(sys.stdin)
Webhook(d["secret"]).verify(d["body"], {"webhook-id": d["id"], "webhook-timestamp": d["ts"], "webhook-signature": d["sig"]})
"#;
    let input = json!({"secret": secret, "body": d.body, "id": d.id, "ts": d.timestamp, "sig": d.signature});
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token_and_names_bad_fields() {
    let off = spawn_app(Options::without_publisher()).await;
    let r = off.get("/webhooks/endpoints").await;
    assert_eq!(r.status(), 404);
    let r = off.get("/webhooks/endpoints/ep_1/deliveries").await;
    assert_eq!(r.status(), 404);
    off.stop().await;

    let app = spawn_app(Options {
        publisher: false,
        allow_private: false,
        ..admin_opts()
    })
    .await;
    let r = app
        .http
        .get(format!("{}/webhooks/endpoints", app.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let post = |body: Value| app.admin(reqwest::Method::POST, "/webhooks/endpoints", Some(body));
    for (body, field) in [
        (json!({}), "url"),
        (json!({"url": 5}), "url"),
        (
            json!({"url": "https://hooks.example.com/x", "events": "work_order.*"}),
            "events",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "events": ["Work Order"]}),
            "events",
        ),
        (
            json!({"url": "https://hooks.example.com/x", "urls": 1}),
            "urls",
        ),
        (json!({"url": "http://hooks.example.com/x"}), "url"),
        (json!({"url": "https://127.0.0.1/x"}), "url"),
        (json!({"url": "https://[::1]/x"}), "url"),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data"}),
            "url",
        ),
        (json!(["not an object"]), "body"),
    ] {
        let (status, v) = post(body.clone()).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["field"], field, "{body} -> {v}");
    }
    let (status, created) = post(json!({"url": "https://hooks.example.com/x?key=s3cr3t", "events": ["work_order.*"], "description": "warehouse"})).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let (status, one) = app
        .admin(
            reqwest::Method::GET,
            &format!("/webhooks/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["events"], json!(["work_order.*"]));
    assert_eq!(one["description"], "warehouse");
    let (_, all) = app
        .admin(reqwest::Method::GET, "/webhooks/endpoints", None)
        .await;
    assert!(
        !all.to_string().contains(&secret),
        "the secret is never shown again"
    );
    let status_page = app.get("/status").await.text().await.unwrap();
    assert!(
        !status_page.contains(&secret) && !status_page.contains("s3cr3t"),
        "{status_page}"
    );
    assert!(status_page.contains(&id));

    let (status, patched) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"events": ["#"], "disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (patched["events"].clone(), patched["disabled"].clone()),
        (json!(["#"]), json!(true))
    );
    let (status, v) = app
        .admin(
            reqwest::Method::PATCH,
            &format!("/webhooks/endpoints/{id}"),
            Some(json!({"disabled": "no"})),
        )
        .await;
    assert_eq!((status, v["field"].clone()), (400, json!("disabled")));
    let (status, v) = app
        .admin(
            reqwest::Method::POST,
            &format!("/webhooks/endpoints/{id}/replay"),
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!((status, v["field"].clone()), (400, json!("since")));
    let r = app
        .http
        .put(format!("{}/webhooks/endpoints/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PATCH, DELETE");

    // Endpoints live in the database: another store on the same file sees them.
    let path = app._db.path().join("bridge.sqlite3");
    let reopened = daftra_bridge::store::Store::open(&path).unwrap();
    assert_eq!(reopened.endpoints().unwrap()[0].id, id);

    let (status, _) = app
        .admin(
            reqwest::Method::DELETE,
            &format!("/webhooks/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .admin(
            reqwest::Method::GET,
            &format!("/webhooks/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn deliveries_carry_the_cloudevent_and_verify_with_the_standardwebhooks_package() {
    let app = spawn_app(admin_opts()).await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    let rx = Receiver::start().await;
    let (id, secret) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    app.sim.state.update(4, fields(json!({"title": "signed"})));
    app.poll().await;
    wait_for(async || !rx.accepted().is_empty(), WAIT, "a delivery").await;
    let d = rx.log()[0].clone();
    let on_amqp = queue.take(1, Duration::from_secs(10)).await;
    assert_eq!(
        d.body, on_amqp[0].text,
        "the same CloudEvents JSON as on RabbitMQ"
    );
    assert_eq!(d.content_type, "application/cloudevents+json");
    let event: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        d.id,
        event["id"].as_str().unwrap(),
        "webhook-id is the event id"
    );
    assert!(d.signature.starts_with("v1,"), "{}", d.signature);
    let ts: i64 = d.timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    let log = app.deliveries(&id).await;
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["outcome"], "delivered");
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            &format!("bridge_webhook_deliveries_total{{endpoint=\"{id}\",outcome=\"delivered\"}}")
        ),
        Some(1.0)
    );
    queue.close().await;
    rx.stop().await;
    app.stop().await;

    // The signature, checked by the standardwebhooks package.
    if !python_module("standardwebhooks") {
        return;
    }
    verify_with_standardwebhooks(&secret, &d).expect("standardwebhooks accepts it");
    let mut forged = d.clone();
    forged.body = forged.body.replace("signed", "forged");
    assert!(verify_with_standardwebhooks(&secret, &forged).is_err());
}

/// The first fenced block of `lang` in the README's Webhooks section.
fn readme_block(lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("\n## Webhooks").expect("a Webhooks section")..];
    let start = section.find(&format!("```{lang}\n")).expect("a code block") + lang.len() + 4;
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_string()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_readme_receivers_verify_real_deliveries() {
    if !(tool("python3") && tool("node")) {
        return;
    }
    let app = spawn_app(admin_opts()).await;
    app.poll().await;
    let mut receivers = Vec::new();
    let langs = [("python", "python3", "-c"), ("js", "node", "-e")];
    for (lang, program, flag) in langs {
        let port = free_port();
        let (id, secret) = app
            .endpoint(&format!("http://127.0.0.1:{port}/"), None)
            .await;
        let child = Command::new(program)
            .arg(flag)
            .arg(readme_block(lang))
            .env("WEBHOOK_SECRET", &secret)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        receivers.push((lang.to_string(), port, id, Process(child)));
    }
    for (_, port, _, _) in &receivers {
        wait_for(
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_ok()
            },
            WAIT,
            "the receiver listens",
        )
        .await;
    }
    app.sim
        .state
        .update(6, fields(json!({"title": "to the README receivers"})));
    app.poll().await;
    for (lang, port, id, _) in &receivers {
        wait_for(
            async || {
                app.deliveries(id)
                    .await
                    .first()
                    .is_some_and(|d| d["status"] == 204)
            },
            WAIT,
            &format!("the {lang} receiver verifies the delivery (answers 204)"),
        )
        .await;
        // A forged delivery is refused.
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/"))
            .header("webhook-id", "msg_forged")
            .header(
                "webhook-timestamp",
                chrono::Utc::now().timestamp().to_string(),
            )
            .header(
                "webhook-signature",
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{lang}");
    }
    app.stop().await;
}

#[tokio::test]
async fn failed_attempts_are_retried_with_one_id_and_one_records_events_stay_in_order() {
    let app = spawn_app(admin_opts()).await;
    let rx = Receiver::start().await;
    let (id, _) = app
        .endpoint(&rx.url, Some(json!(["work_order.updated"])))
        .await;
    app.poll().await;
    rx.answer(&[500, 503]);
    app.sim.state.update(3, fields(json!({"title": "first"})));
    app.poll().await;
    // A second change of the same record while the first is still being retried.
    wait_for(async || !rx.log().is_empty(), WAIT, "the first attempt").await;
    app.sim.state.update(3, fields(json!({"title": "second"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 2,
        WAIT,
        "both events delivered",
    )
    .await;
    let log = rx.log();
    let first_id = &log[0].id;
    assert_eq!(
        log.iter()
            .map(|d| (d.id == *first_id, d.answered))
            .collect::<Vec<_>>(),
        [(true, 500), (true, 503), (true, 200), (false, 200)],
        "retries keep the id, and the record's second event waits behind its first"
    );
    assert!(log[3].body.contains("second"));
    let attempts = app.deliveries(&id).await;
    let mut seen: Vec<(u64, Value)> = attempts
        .iter()
        .filter(|a| a["event_id"] == first_id.as_str())
        .map(|a| (a["attempt"].as_u64().unwrap(), a["status"].clone()))
        .collect();
    seen.sort_by_key(|a| a.0);
    assert_eq!(seen, [(1, json!(500)), (2, json!(503)), (3, json!(200))]);
    assert!(attempts
        .iter()
        .any(|a| a["outcome"] == "retrying" && a["next_attempt_at"].is_string()));
    let m = app.metrics().await;
    let series = |o: &str| {
        metric(
            &m,
            &format!("bridge_webhook_deliveries_total{{endpoint=\"{id}\",outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(
        (series("rejected"), series("delivered")),
        (Some(2.0), Some(2.0))
    );
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_an_endpoint_and_re_enabling_resumes_it() {
    let app = spawn_app(admin_opts()).await;
    let rx = Receiver::start().await;
    let (id, _) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    rx.answer(&[410]);
    app.sim.state.update(5, fields(json!({"title": "gone"})));
    app.poll().await;
    let path = format!("/webhooks/endpoints/{id}");
    wait_for(
        async || app.admin(reqwest::Method::GET, &path, None).await.1["disabled"] == true,
        WAIT,
        "410 disables the endpoint",
    )
    .await;
    let (_, shown) = app.admin(reqwest::Method::GET, &path, None).await;
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    assert_eq!(shown["pending"], 1, "the event waits");
    let status: Value = app.get("/status").await.json().await.unwrap();
    assert_eq!(status["webhooks"][0]["disabled"], true, "{status}");
    assert!(status["webhooks"][0]["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    wait_for(
        async || {
            metric(
                &app.metrics().await,
                &format!("bridge_webhook_endpoint_disabled{{endpoint=\"{id}\"}}"),
            ) == Some(1.0)
        },
        WAIT,
        "the disabled gauge",
    )
    .await;
    // Bounded: nothing marks an attempt not made; 600 ms is three intervals of the 0.2 s schedule.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.log().len(), 1, "no attempt while disabled");
    let (status, _) = app
        .admin(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    wait_for(
        async || rx.accepted().len() == 1,
        WAIT,
        "the waiting event after re-enabling",
    )
    .await;
    assert_eq!(rx.accepted()[0].id, rx.log()[0].id);
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_the_whole_schedule_is_disabled() {
    let app = spawn_app(Options {
        webhook_schedule: Some("0.1,0.1".into()),
        ..admin_opts()
    })
    .await;
    let rx = Receiver::start().await;
    rx.answer(&[500; 10]);
    let (id, _) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    app.sim
        .state
        .update(2, fields(json!({"title": "never accepted"})));
    app.poll().await;
    let path = format!("/webhooks/endpoints/{id}");
    wait_for(
        async || app.admin(reqwest::Method::GET, &path, None).await.1["disabled"] == true,
        WAIT,
        "disabled after the schedule",
    )
    .await;
    assert_eq!(rx.log().len(), 3, "one attempt and two retries");
    let (_, shown) = app.admin(reqwest::Method::GET, &path, None).await;
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("retry schedule"),
        "{shown}"
    );
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dead_endpoint_holds_back_neither_a_healthy_one_nor_rabbitmq() {
    let app = spawn_app(admin_opts()).await;
    let mut queue = EventQueue::bind(&app.exchange, "#").await;
    let (dead, healthy) = (Receiver::start().await, Receiver::start().await);
    dead.hang(true);
    let (dead_id, _) = app.endpoint(&dead.url, None).await;
    let (_healthy_id, _) = app.endpoint(&healthy.url, None).await;
    app.poll().await;
    for id in 1..=20 {
        app.sim
            .state
            .update(id, fields(json!({"title": format!("burst {id}")})));
    }
    app.poll().await;
    let published = queue.take(20, Duration::from_secs(20)).await;
    assert_eq!(published.len(), 20, "RabbitMQ got every event");
    wait_for(
        async || healthy.accepted().len() == 20,
        WAIT,
        "the healthy endpoint got every event",
    )
    .await;
    assert!(dead.log().is_empty(), "the dead endpoint answered nothing");
    let (_, shown) = app
        .admin(
            reqwest::Method::GET,
            &format!("/webhooks/endpoints/{dead_id}"),
            None,
        )
        .await;
    assert_eq!(shown["pending"], 20, "{shown}");
    assert_eq!(
        app.state.store.outbox_len().unwrap(),
        0,
        "RabbitMQ confirmed its part"
    );
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            &format!("bridge_webhook_pending{{endpoint=\"{dead_id}\"}}")
        ),
        Some(20.0)
    );
    queue.close().await;
    healthy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_rotation_signs_with_both_secrets_and_a_replay_repeats_the_id() {
    let app = spawn_app(admin_opts()).await;
    let rx = Receiver::start().await;
    let (id, old) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    app.sim
        .state
        .update(8, fields(json!({"title": "before rotation"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 1,
        WAIT,
        "the first delivery",
    )
    .await;
    assert_eq!(rx.log()[0].signature.split(' ').count(), 1);
    let (status, rotated) = app
        .admin(
            reqwest::Method::POST,
            &format!("/webhooks/endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    app.sim
        .state
        .update(8, fields(json!({"title": "after rotation"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 2,
        WAIT,
        "the second delivery",
    )
    .await;
    let d = rx.log()[1].clone();
    assert_eq!(d.signature.split(' ').count(), 2, "{}", d.signature);
    // A second rotation inside the overlap keeps the first secret signing too.
    let path = format!("/webhooks/endpoints/{id}/rotate-secret");
    let (status, v) = app
        .admin(reqwest::Method::POST, &path, Some(json!({"x": 1})))
        .await;
    assert_eq!((status, v["field"].clone()), (400, json!("x")), "{v}");
    let (status, third) = app.admin(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200);
    let newest = third["secret"].as_str().unwrap().to_string();
    app.sim
        .state
        .update(8, fields(json!({"title": "after two rotations"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 3,
        WAIT,
        "the third delivery",
    )
    .await;
    let d3 = rx.log()[2].clone();
    assert_eq!(d3.signature.split(' ').count(), 3, "{}", d3.signature);
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let (status, v) = app
        .admin(
            reqwest::Method::POST,
            &format!("/webhooks/endpoints/{id}/replay"),
            Some(json!({"since": since})),
        )
        .await;
    assert_eq!((status, v["queued"].clone()), (202, json!(3)), "{v}");
    wait_for(
        async || rx.accepted().len() == 6,
        WAIT,
        "the replayed events",
    )
    .await;
    let ids: Vec<String> = rx.log().iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids[3..], ids[..3], "a replay keeps the event ids, in order");
    rx.stop().await;
    app.stop().await;

    // The signatures, checked by the standardwebhooks package.
    if !python_module("standardwebhooks") {
        return;
    }
    verify_with_standardwebhooks(&new, &d).expect("the new secret verifies");
    verify_with_standardwebhooks(&old, &d).expect("the old secret still verifies");
    assert!(verify_with_standardwebhooks(
        daftra_bridge::sinks::webhook::signature::new_secret().expose(),
        &d
    )
    .is_err());
    for s in [&newest, &new, &old] {
        verify_with_standardwebhooks(s, &d3).expect("every secret of the overlap verifies");
    }
}

/// A host name other than `localhost` that resolves only to private addresses: the machine's
/// own name, as /etc/hosts usually maps it.
async fn loopback_name() -> Option<String> {
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    for name in [own.trim(), "ip6-localhost"] {
        let found: Vec<_> = match tokio::net::lookup_host((name, 0)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => continue,
        };
        if !found.is_empty()
            && found
                .iter()
                .all(|a| daftra_bridge::sinks::webhook::target::is_private(a.ip()))
        {
            return Some(name.to_string());
        }
    }
    None
}

#[tokio::test]
async fn private_targets_are_refused_at_connect_time_without_the_switch() {
    let app = spawn_app(Options {
        allow_private: false,
        ..admin_opts()
    })
    .await;
    let rx = Receiver::start().await;
    // `localhost` is refused when saved (RFC 6761)...
    let (status, v) = app
        .admin(
            reqwest::Method::POST,
            "/webhooks/endpoints",
            Some(json!({"url": format!("https://localhost:{}/hook", rx.port)})),
        )
        .await;
    assert_eq!((status, v["field"].clone()), (400, json!("url")), "{v}");
    // ...and another name of this machine passes the URL check but is refused when connecting.
    let name = loopback_name().await;
    if !require(
        name.is_some(),
        "no host name of this machine but localhost resolves only to private addresses",
        "map the machine's name to 127.0.0.1 in /etc/hosts",
    ) {
        rx.stop().await;
        app.stop().await;
        return;
    }
    let name = name.expect("checked above");
    let (id, _) = app
        .endpoint(&format!("https://{name}:{}/hook", rx.port), None)
        .await;
    app.poll().await;
    app.sim
        .state
        .update(7, fields(json!({"title": "to localhost"})));
    app.poll().await;
    wait_for(
        async || !app.deliveries(&id).await.is_empty(),
        WAIT,
        "an attempt",
    )
    .await;
    let attempt = app.deliveries(&id).await[0].clone();
    assert!(attempt["status"].is_null(), "{attempt}");
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("WEBHOOK_ALLOW_PRIVATE_TARGETS"),
        "{attempt}"
    );
    assert!(rx.log().is_empty(), "nothing reached the receiver");
    let m = app.metrics().await;
    assert!(
        metric(
            &m,
            &format!("bridge_webhook_deliveries_total{{endpoint=\"{id}\",outcome=\"refused\"}}")
        )
        .unwrap()
            >= 1.0
    );
    rx.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn the_inbound_webhook_is_guarded_and_coalesces_calls_into_one_more_poll() {
    let off = spawn_app(Options::without_publisher()).await;
    let r = off
        .http
        .post(format!("{}/webhooks/daftra/work_orders", off.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "off without INBOUND_WEBHOOK_TOKEN");
    off.stop().await;

    let app = spawn_app(Options {
        inbound_token: Some("inbound-secret".into()),
        poll_loop: true,
        ..Options::without_publisher()
    })
    .await;
    let url = |resource: &str, token: &str| {
        format!("{}/webhooks/daftra/{resource}?token={token}", app.base)
    };
    let polls = async || {
        metric(
            &app.metrics().await,
            "bridge_poll_duration_seconds_count{resource=\"work_orders\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for(async || polls().await == 1.0, WAIT, "the first poll").await;
    let post = |u: String| {
        app.http
            .post(u)
            .body("{\"event\":\"work_order.updated\"}")
            .send()
    };
    assert_eq!(
        post(url("work_orders", "wrong")).await.unwrap().status(),
        401
    );
    assert_eq!(
        post(url("invoices", "inbound-secret"))
            .await
            .unwrap()
            .status(),
        404,
        "not enabled"
    );
    assert_eq!(
        post(url("nothing", "inbound-secret"))
            .await
            .unwrap()
            .status(),
        404
    );
    let big = app
        .http
        .post(format!("{}/webhooks/daftra/work_orders", app.base))
        .bearer_auth("inbound-secret")
        .body(vec![b'x'; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    // Bounded: a trigger not fired leaves no trace; a fired one would start its poll at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(polls().await, 1.0, "refused calls trigger nothing");

    // Each poll now takes a while, so the calls below all land during one poll.
    app.sim.state.set_faults(daftra_bridge::sim::Faults {
        latency_ms: 300,
        ..Default::default()
    });
    for _ in 0..6 {
        let r = post(url("work_orders", "inbound-secret")).await.unwrap();
        assert_eq!(r.status(), 202);
    }
    wait_for(
        async || polls().await == 3.0,
        WAIT,
        "the triggered poll and one more",
    )
    .await;
    // Bounded: nothing marks a trigger not kept; a kept one would poll at once (3 s: several polls).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        polls().await,
        3.0,
        "six calls during one poll: one poll more, not six"
    );
    app.stop().await;
}

/// `serve` against the simulator at `sim_url`, on the SQLite file `db` and HTTP `port`, with the
/// admin API, loopback targets allowed and retries every half second; polls only on demand.
fn start_bridge(sim_url: &str, db: &std::path::Path, exchange: &str, port: u16) -> Running {
    let env = BridgeEnv::new()
        .set("DAFTRA_BASE_URL", sim_url)
        .set("DAFTRA_API_KEY", SIM_API_KEY)
        .set("DATABASE_URL", sqlite_url(db))
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("RUST_LOG", "warn")
        .set("AMQP_URL", crate::helpers::amqp_url())
        .set("AMQP_EXCHANGE", exchange)
        .set("POLL_INTERVAL_SECS", "3600")
        .set("ADMIN_TOKEN", ADMIN)
        .set("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
        .set(
            "WEBHOOK_RETRY_SCHEDULE_SECS",
            "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
        );
    Bridge::new(&["serve"], &env).spawn()
}

#[tokio::test]
async fn sigkill_mid_retry_loses_nothing_and_the_restart_resumes() {
    let sim = daftra_bridge::sim::Simulator::start_local(daftra_bridge::sim::SimConfig {
        records: 12,
        ..Default::default()
    })
    .unwrap();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("bridge.sqlite3");
    let exchange = unique("webhook-crash");
    crate::helpers::declare_exchange(&exchange).await;
    let rx = Receiver::start().await;
    rx.answer(&[500; 1000]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let status = async || -> Option<Value> {
        http.get(format!("{base}/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    };

    let first = start_bridge(&sim.base_url, &db_path, &exchange, port);
    wait_for(
        async || {
            status()
                .await
                .is_some_and(|s| s["resources"]["work_orders"]["last_outcome"] == "baseline")
        },
        WAIT,
        "baseline",
    )
    .await;
    let created: Value = http
        .post(format!("{base}/webhooks/endpoints"))
        .bearer_auth(ADMIN)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    sim.state
        .update(4, fields(json!({"title": "changed before the crash"})));
    let r = http
        .post(format!("{base}/poll/work_orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for(async || rx.log().len() >= 2, WAIT, "two failed attempts").await;
    drop(first); // SIGKILL, with the event between two retries
    let failed_id = rx.log()[0].id.clone();
    rx.state.script.lock().unwrap().clear();

    let _second = start_bridge(&sim.base_url, &db_path, &exchange, port);
    wait_for(
        async || !rx.accepted().is_empty(),
        WAIT,
        "the delivery after the restart",
    )
    .await;
    assert_eq!(
        rx.accepted()[0].id,
        failed_id,
        "the same event, with its id"
    );
    let deliveries: Value = http
        .get(format!("{base}/webhooks/endpoints/{id}/deliveries"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = &deliveries["deliveries"][0];
    assert_eq!(last["status"], 200, "{deliveries}");
    assert!(
        last["attempt"].as_u64().unwrap() >= 3,
        "the attempt count survived: {deliveries}"
    );
    // Nothing is left in the endpoint's queue: a second delivery would have been sent by then.
    wait_for(
        async || {
            let shown: Option<Value> = async {
                let r = http
                    .get(format!("{base}/webhooks/endpoints/{id}"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .ok()?;
                r.json().await.ok()
            }
            .await;
            shown.is_some_and(|e| e["pending"] == 0)
        },
        WAIT,
        "nothing pending for the endpoint",
    )
    .await;
    assert_eq!(rx.accepted().len(), 1, "delivered once it was accepted");
    rx.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app(admin_opts()).await;
    let (rx, elsewhere) = (Receiver::start().await, Receiver::start().await);
    rx.redirect_to(&elsewhere.url);
    rx.answer(&[302, 307]);
    let (id, _) = app.endpoint(&rx.url, None).await;
    app.poll().await;
    app.sim
        .state
        .update(9, fields(json!({"title": "redirected"})));
    app.poll().await;
    wait_for(
        async || rx.accepted().len() == 1,
        WAIT,
        "the delivery after two redirects",
    )
    .await;
    assert!(
        elsewhere.log().is_empty(),
        "the Location was never followed"
    );
    let mut statuses: Vec<Value> = app
        .deliveries(&id)
        .await
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    statuses.reverse();
    assert_eq!(statuses, [json!(302), json!(307), json!(200)]);
    rx.stop().await;
    elsewhere.stop().await;
    app.stop().await;
}
