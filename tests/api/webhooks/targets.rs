//! Targets: private addresses refused when saved and when connecting, redirects not followed.

use serde_json::{json, Value};

use crate::helpers::{fields, metric, require, spawn_app, wait_for, Options};

use super::{admin_opts, Receiver, WAIT};

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
