//! The real local RabbitMQ: a unique exchange per test, and a queue bound to it to read events.

use std::time::Duration;

use daftra_bridge::config::Secret;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;

/// RabbitMQ used by the tests: `AMQP_TEST_URL`, else the local broker as guest.
pub fn amqp_url() -> String {
    std::env::var("AMQP_TEST_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no other test uses: `test.<prefix>.<pid>.<random hex>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "test.{prefix}.{}.{:x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Deletes its test exchange from the shared broker when dropped, whether the test passed or
/// not (on a thread of its own: `Drop` cannot await).
pub struct ExchangeGuard(pub String);

impl Drop for ExchangeGuard {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = runtime {
                rt.block_on(delete_exchange(&name));
            }
        })
        .join();
    }
}

/// Deletes a test exchange (best effort: a broker that is down keeps it).
pub async fn delete_exchange(exchange: &str) {
    let Ok(conn) = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url())).await else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch.exchange_delete(exchange, Default::default()).await;
    }
    let _ = conn.close(200, "test done").await;
}

/// Declares `exchange` as the bridge does; panics when RabbitMQ does not answer.
pub async fn declare_exchange(exchange: &str) {
    let conn = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url()))
        .await
        .expect("RabbitMQ is running (tests/run.sh starts it)");
    let ch = conn.create_channel().await.unwrap();
    daftra_bridge::sinks::amqp::declare_exchange(&ch, exchange)
        .await
        .unwrap();
    let _ = conn.close(200, "declared").await;
}

/// A queue bound to `exchange` with `key`, read by [`EventQueue::take`].
pub struct EventQueue {
    conn: lapin::Connection,
    consumer: lapin::Consumer,
}

/// A received event: routing key, AMQP properties and the JSON body.
#[derive(Debug)]
pub struct Received {
    pub routing_key: String,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    pub body: Value,
    /// The body as sent (amounts with more digits than a double holds are exact only here).
    pub text: String,
}

impl EventQueue {
    /// An exclusive, auto-deleted queue bound to `exchange` with the binding key `key`.
    pub async fn bind(exchange: &str, key: &str) -> EventQueue {
        let conn = daftra_bridge::sinks::amqp::connect(&Secret::new(amqp_url()))
            .await
            .expect("RabbitMQ");
        let ch = conn.create_channel().await.unwrap();
        let queue = unique("queue");
        ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            &queue,
            exchange,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let consumer = ch
            .basic_consume(
                &queue,
                "test",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        EventQueue { conn, consumer }
    }

    /// Waits for up to `n` events, at most `wait` in all.
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < n {
            let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, self.consumer.next()).await
            else {
                break;
            };
            d.ack(BasicAckOptions::default()).await.unwrap();
            out.push(Received {
                routing_key: d.routing_key.to_string(),
                message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
                content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
                delivery_mode: *d.properties.delivery_mode(),
                body: serde_json::from_slice(&d.data).expect("JSON body"),
                text: String::from_utf8_lossy(&d.data).into_owned(),
            });
        }
        out
    }

    /// Closes its connection (the queue goes with it).
    pub async fn close(self) {
        let _ = self.conn.close(200, "done").await;
    }
}
