//! Webhooks both ways: the admin API ([`admin`]), Standard Webhooks signatures checked by
//! independent implementations ([`signatures`]: the `standardwebhooks` package, the README's
//! Python and Node receivers, rotation, replay), delivery with retries, 410, a dead endpoint
//! beside a healthy one and SIGKILL mid-retry ([`delivery`]), private-address and redirect
//! refusals ([`targets`]), and the inbound Daftra webhook's coalescing ([`inbound`]).

mod admin;
mod delivery;
mod inbound;
mod parked;
mod receiver;
mod sealed;
mod signatures;
mod targets;

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{Options, TestApp};

use receiver::Receiver;

/// The admin API's token in these tests.
const ADMIN: &str = "admin-token-for-tests";

/// How long a wait below may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// Options with the admin API on, retries every 0.2 s and a 2 s delivery timeout.
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
