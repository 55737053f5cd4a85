//! The admin API: off without a token, named field errors, endpoints kept in the database.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Options};

use super::admin_opts;

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
            json!({"url": "https://hooks.example.com/x", "events": ["nosuch.created"]}),
            "events",
        ),
        (json!({"url": "ftp://hooks.example.com/x"}), "url"),
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
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH, DELETE");

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
