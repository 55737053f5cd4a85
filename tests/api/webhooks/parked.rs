//! An endpoint that refuses an event for good (413, 400, 415, 422) gets it parked: kept,
//! listed under `/outbox/parked`, retried on demand, and the record's next events go on.

use serde_json::{json, Value};

use super::receiver::Receiver;
use super::{admin_opts, WAIT};
use crate::helpers::{fields, metric, spawn_app, wait_for, Options};

#[tokio::test]
async fn an_endpoint_answering_413_parks_the_event_and_gets_the_next() {
    let receiver = Receiver::start().await;
    let app = spawn_app(Options {
        publisher: true,
        ..admin_opts()
    })
    .await;
    let (id, _) = app.endpoint(&receiver.url, None).await;
    app.poll().await;
    receiver.answer(&[413]);
    app.sim.state.update(4, fields(json!({"title": "refused"})));
    app.poll().await;
    let parked = async || {
        let (status, v) = app
            .admin(reqwest::Method::GET, "/outbox/parked", None)
            .await;
        assert_eq!(status, 200);
        v["parked"].as_array().unwrap().clone()
    };
    wait_for(async || parked().await.len() == 1, WAIT, "parked").await;
    let p: Value = parked().await[0].clone();
    assert_eq!(
        (p["sink"].as_str(), p["reason"].as_str()),
        (Some("webhook"), Some("too_large"))
    );
    assert_eq!(p["endpoint"], id.as_str());
    assert_eq!(p["record_id"], 4);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "bridge_events_parked_total{reason=\"too_large\",sink=\"webhook\"}"
        ),
        Some(1.0)
    );

    // The record's next event is delivered: the parked one is not in its way.
    app.sim
        .state
        .update(4, fields(json!({"title": "accepted"})));
    app.poll().await;
    wait_for(
        async || receiver.accepted().len() == 1,
        WAIT,
        "the next event",
    )
    .await;
    let (_, endpoint) = app
        .admin(
            reqwest::Method::GET,
            &format!("/webhooks/endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(
        endpoint["disabled"], false,
        "a parked event never disables its endpoint"
    );
    let deliveries = app.deliveries(&id).await;
    assert!(
        deliveries.iter().any(|d| d["outcome"] == "parked"),
        "{deliveries:?}"
    );

    // Retried while the endpoint still refuses: parked again under the same id, with the new
    // answer, and never missing from the list meanwhile.
    receiver.answer(&[422]);
    let one = format!("/outbox/parked/{}", p["id"]);
    let (status, _) = app
        .admin(reqwest::Method::POST, &format!("{one}/retry"), None)
        .await;
    assert_eq!(status, 202);
    wait_for(
        async || {
            let (status, v) = app.admin(reqwest::Method::GET, &one, None).await;
            assert_eq!(status, 200, "listed while retried: {v}");
            v["reason"] == "refused" && v["retry_requested"] == false
        },
        WAIT,
        "refused again, parked again under its id",
    )
    .await;
    assert_eq!(parked().await.len(), 1);

    // Retried: back in the endpoint's queue, delivered with its own id.
    let (status, _) = app
        .admin(
            reqwest::Method::POST,
            &format!("/outbox/parked/{}/retry", p["id"]),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_for(
        async || receiver.accepted().len() == 2,
        WAIT,
        "the parked event, retried",
    )
    .await;
    assert_eq!(receiver.accepted()[1].id, p["event_id"].as_str().unwrap());
    assert!(parked().await.is_empty());
    app.stop().await;
}
