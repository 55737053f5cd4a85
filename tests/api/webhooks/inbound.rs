//! The inbound Daftra webhook: guarded by its token, and calls during a poll coalesce into one more.

use std::time::Duration;

use crate::helpers::{metric, spawn_app, wait_for, Options};

use super::WAIT;

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
