//! Reading a bridge that runs as a child process, over its HTTP port on 127.0.0.1.

use std::time::Duration;

use serde_json::Value;

use super::{metric, wait_for};

/// `GET http://127.0.0.1:{port}{path}` as JSON; `None` while nothing answers with JSON there.
pub async fn get_json(port: u16, path: &str) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The `/metrics` text of the bridge on `port`; panics when it does not answer.
pub async fn metrics_at(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("the bridge answers /metrics")
        .text()
        .await
        .expect("its text")
}

/// Polls of work orders the bridge on `port` has finished (0 while it does not answer).
async fn polls_finished(port: u16) -> f64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    metric(
        &text,
        "bridge_poll_duration_seconds_count{resource=\"work_orders\"}",
    )
    .unwrap_or(0.0)
}

/// Waits until the bridge on `port` has finished `more` polls of work orders since this call and
/// then shows an empty outbox on `/status`: whatever those polls produced has been confirmed by
/// RabbitMQ, so it is in every bound queue. Panics after `within`.
pub async fn wait_polled_and_published(port: u16, more: u32, within: Duration) {
    let from = polls_finished(port).await;
    wait_for(
        async || {
            polls_finished(port).await >= from + f64::from(more)
                && get_json(port, "/status")
                    .await
                    .is_some_and(|s| s["outbox_pending"] == 0)
        },
        within,
        &format!("{more} more polls on port {port}, with their events published"),
    )
    .await;
}
