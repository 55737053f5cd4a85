//! Signatures checked by independent implementations: the `standardwebhooks` package and the
//! README's Python and Node receivers; a rotation signs with every secret of its overlap, and a
//! replay repeats the event ids.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    fields, free_port, metric, python_module, spawn_app, tool, wait_for, EventQueue,
};

use super::receiver::Delivery;
use super::{admin_opts, Receiver, WAIT};

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
