//! One delivery attempt: a signed POST (Standard Webhooks headers) of one message to one
//! endpoint, with the target checked again at connect time, and its outcome.

use std::time::Instant;

use futures::StreamExt;

use super::{signature, target, Tried, WebhookSink, RESPONSE_LIMIT};
use crate::metrics::DeliveryOutcome;
use crate::store::{DueMessage, Endpoint};

impl WebhookSink {
    /// One signed POST of `m` to `endpoint`.
    /// One signed POST of `m` to `endpoint`; `None` when this replica's lease has run out (the
    /// message is not attempted: a stale leader delivers nothing).
    pub(super) async fn attempt(&self, endpoint: &Endpoint, m: &DueMessage) -> Option<Tried> {
        if !self.lease.valid() {
            return None;
        }
        Some(self.post(endpoint, m).await)
    }

    async fn post(&self, endpoint: &Endpoint, m: &DueMessage) -> Tried {
        let started = Instant::now();
        let failed = |outcome, error: String| Tried {
            status: None,
            error: Some(error),
            outcome,
            latency: started.elapsed(),
        };
        let url = match target::validate(&endpoint.url, self.settings.allow_private) {
            Ok(u) => u,
            Err(e) => return failed(DeliveryOutcome::Refused, e),
        };
        if let Some(ip) = target::literal_refused(&url, self.settings.allow_private) {
            return failed(
                DeliveryOutcome::Refused,
                format!("{ip}: {}", target::PRIVATE_REFUSAL),
            );
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature::header(
            &endpoint.secret,
            &endpoint.previous_secrets,
            &m.event_id,
            timestamp,
            m.body.as_bytes(),
        );
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", &m.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(m.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read a little of the body so the connection can be reused; the rest is dropped.
                let mut stream = resp.bytes_stream();
                let mut read = 0;
                while let Some(Ok(chunk)) = stream.next().await {
                    read += chunk.len();
                    if read >= RESPONSE_LIMIT {
                        break;
                    }
                }
                Tried {
                    status: Some(status),
                    error: (!(200..300).contains(&status))
                        .then(|| format!("the endpoint answered {status}")),
                    outcome: if (200..300).contains(&status) {
                        DeliveryOutcome::Delivered
                    } else {
                        DeliveryOutcome::Rejected
                    },
                    latency: started.elapsed(),
                }
            }
            Err(e) => {
                // Without the URL: its query may carry credentials.
                let e = e.without_url();
                let message = crate::daftra::error_chain(&e);
                let outcome = if e.is_timeout() {
                    DeliveryOutcome::Timeout
                } else if message.contains(target::PRIVATE_REFUSAL) {
                    DeliveryOutcome::Refused
                } else {
                    DeliveryOutcome::Connection
                };
                failed(outcome, message)
            }
        }
    }
}
