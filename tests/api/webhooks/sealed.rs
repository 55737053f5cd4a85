//! With `BRIDGE_SECRETS_KEY`, every stored signing secret is encrypted (the database holds
//! none in clear), deliveries still sign with it, a key rotation seals them again, and a
//! missing key stops start-up naming the variable.

use std::path::Path;

use daftra_bridge::secret::{SealingKey, SealingKeys, Secret};
use daftra_bridge::sinks::webhook::signature;
use serde_json::json;

use super::receiver::Receiver;
use super::{admin_opts, WAIT};
use crate::helpers::{fields, free_port, get_json, spawn_app, wait_for, Bridge, Options};

const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

/// The stored `secret` and `previous_secret` columns of endpoint `id`.
fn stored(db: &Path, id: &str) -> (String, Option<String>) {
    let conn = rusqlite::Connection::open(db.join("bridge.sqlite3")).unwrap();
    conn.query_row(
        "SELECT secret, previous_secret FROM webhook_endpoint WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn keys(current: &str, previous: Option<&str>) -> SealingKeys {
    SealingKeys {
        current: SealingKey::from_base64(current),
        previous: previous.and_then(SealingKey::from_base64),
    }
}

#[tokio::test]
async fn signing_secrets_are_stored_sealed_and_resealed_on_a_key_rotation() {
    let receiver = Receiver::start().await;
    let opts = Options {
        extra: vec![("BRIDGE_SECRETS_KEY", KEY_1.into())],
        ..admin_opts()
    };
    let app = spawn_app(opts).await;
    let (id, secret) = app.endpoint(&receiver.url, None).await;
    let db = app._db.path().to_path_buf();
    let (column, _) = stored(&db, &id);
    assert!(
        column.starts_with("sealed:v1:") && !column.contains(&secret),
        "{column}"
    );
    assert!(!column.contains(secret.trim_start_matches("whsec_")));

    // Deliveries are signed with the secret the database only holds sealed.
    app.poll().await;
    app.sim.state.update(4, fields(json!({"title": "sealed"})));
    app.poll().await;
    wait_for(async || receiver.accepted().len() == 1, WAIT, "a delivery").await;
    let d = &receiver.accepted()[0];
    let ts: i64 = d.timestamp.parse().unwrap();
    let expected = signature::sign(&Secret::new(&secret), &d.id, ts, d.body.as_bytes()).unwrap();
    assert_eq!(d.signature, expected);

    // A rotated-out secret is kept sealed too.
    let (status, rotated) = app
        .admin(
            reqwest::Method::POST,
            &format!("/webhooks/endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, previous) = stored(&db, &id);
    let previous = previous.unwrap();
    assert!(
        !previous.contains(&secret) && previous.contains("sealed:v1:"),
        "{previous}"
    );
    let sim_url = app.sim.base_url.clone();
    let env = admin_opts().env(&sim_url, &db);
    app.cancel.cancel();

    // A new key, the old one as previous: every stored secret is sealed again with the new.
    let port = free_port();
    let rotating = env
        .clone()
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("BRIDGE_SECRETS_KEY", KEY_2)
        .set("BRIDGE_SECRETS_KEY_PREVIOUS", KEY_1);
    let running = Bridge::new(&["serve"], &rotating).spawn();
    wait_for(
        async || get_json(port, "/status").await.is_some(),
        WAIT,
        "serve",
    )
    .await;
    drop(running);
    let (column, _) = stored(&db, &id);
    let opened = keys(KEY_2, None)
        .open(&id, &column)
        .expect("sealed with the new key");
    assert_eq!(opened.expose(), rotated["secret"].as_str().unwrap());
    assert!(keys(KEY_1, None).open(&id, &column).is_err());

    // Without the key, start-up stops naming it rather than failing every delivery later.
    let keyless = env.set("BIND_ADDR", format!("127.0.0.1:{}", free_port()));
    let out = Bridge::new(&["serve"], &keyless)
        .stderr(std::process::Stdio::piped())
        .output_async()
        .await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("BRIDGE_SECRETS_KEY"), "{said}");
    assert!(!said.contains(KEY_1) && !said.contains(KEY_2));
    assert!(
        !said.contains("stored in clear"),
        "no contradicting warning: {said}"
    );

    // `check`, the init step before `serve`, fails the same way, with a wrong key too.
    for wrong in [
        keyless.clone(),
        keyless.clone().set("BRIDGE_SECRETS_KEY", KEY_1),
    ] {
        let out = Bridge::new(&["check"], &wrong)
            .stdout(std::process::Stdio::piped())
            .output_async()
            .await;
        assert!(!out.status.success());
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("check BRIDGE_SECRETS_KEY"), "{said}");
    }
    app.stop().await;
}
