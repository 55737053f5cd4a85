//! The RabbitMQ sink: drains the outbox in order to the topic exchange with publisher
//! confirms, through the outbox-consumer loop ([`super::consumer`]): its cursor moves past a row
//! only after the broker confirmed it. Owns reconnection with capped backoff.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;

use super::consumer::{self, Consumer, Handed};
use crate::events::Op;
use crate::metrics::{Metrics, PublishFailure};
use crate::secret::{redact_url, Secret};
use crate::status::{BrokerConnection, BrokerState};
use crate::store::{OutboxRow, Store, StoreError, AMQP_SINK};

/// Outbox rows published per batch; their confirms are awaited together (pipelined).
pub const BATCH_SIZE: usize = 1000;
/// Longest wait between two connection attempts.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Publisher settings and shared handles.
#[derive(Clone)]
pub struct Publisher {
    pub store: Store,
    pub metrics: Metrics,
    pub amqp_url: Secret,
    pub exchange: String,
    /// Deadline of one publish and of its confirm.
    pub confirm_timeout: Duration,
    /// Wakes it when the poller appends events; it counts the confirms there.
    pub outbox: Arc<crate::sinks::OutboxSignal>,
    pub broker: Arc<BrokerState>,
}

/// Why a drain stopped; the rows not confirmed stay in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused (nack) an event")]
    Nack,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl PublishError {
    /// Label `reason` of `bridge_publish_failures_total`.
    fn reason(&self) -> PublishFailure {
        match self {
            PublishError::Timeout(_) => PublishFailure::Timeout,
            PublishError::Nack => PublishFailure::Nack,
            _ => PublishFailure::Connection,
        }
    }
}

/// A refusal by the broker, with the variable to fix: `ACCESS_REFUSED` (403) and `NOT_ALLOWED`
/// (530) mean the credentials, virtual host or permissions of `AMQP_URL`;
/// `PRECONDITION_FAILED` (406) on the declaration means `AMQP_EXCHANGE` exists with another type
/// or durability (AMQP 0-9-1 reply codes).
pub fn refusal(e: &lapin::Error) -> Option<(&'static str, String)> {
    let lapin::Error::ProtocolError(p) = e else {
        return None;
    };
    let variable = match p.get_id() {
        403 | 530 => "AMQP_URL",
        406 => "AMQP_EXCHANGE",
        _ => return None,
    };
    Some((
        variable,
        format!("RabbitMQ refused: {} (check {variable})", p.get_message()),
    ))
}

/// Opens a connection on the tokio runtime.
pub async fn connect(url: &Secret) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name("daftra-bridge".into());
    Connection::connect(url.expose(), props).await
}

/// Declares the durable topic exchange the events go to (idempotent; README "Consuming events").
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Publishing on one open channel: the RabbitMQ sink as an outbox consumer.
#[derive(Clone)]
struct Publish {
    publisher: Publisher,
    channel: Channel,
}

impl Consumer for Publish {
    type Row = OutboxRow;
    type Error = PublishError;
    const FENCED: bool = true;

    fn read(&self, store: &Store, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        store.outbox_batch(store.sink_cursor(AMQP_SINK)?, limit)
    }

    async fn hand_on(&self, rows: &[OutboxRow]) -> Handed<PublishError> {
        let p = &self.publisher;
        let (confirms, mut failure) = p.publish_all(&self.channel, rows).await;
        // The cursor moves past the confirmed prefix only, so per-record order is never broken.
        let mut done = 0;
        for (row, confirm) in rows.iter().zip(confirms) {
            let answer = match tokio::time::timeout(p.confirm_timeout, confirm).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    failure.get_or_insert(PublishError::Amqp(e));
                    break;
                }
                Err(_) => {
                    failure.get_or_insert(PublishError::Timeout(p.confirm_timeout));
                    break;
                }
            };
            if let Confirmation::Nack(_) = answer {
                failure.get_or_insert(PublishError::Nack);
                break;
            }
            p.confirmed(row, &answer);
            done += 1;
        }
        if let Some(e) = &failure {
            p.metrics.publish_failed(e.reason());
            p.broker.count_failure(e.reason());
        }
        Handed { done, failure }
    }

    fn confirm(&self, store: &Store, done: &[OutboxRow]) -> Result<(), StoreError> {
        if let Some(last) = done.last() {
            store.confirm_sink(AMQP_SINK, last.seq)?;
            self.publisher.outbox.confirmed(done.len());
        }
        Ok(())
    }
}

impl Publisher {
    async fn open_channel(&self, conn: &Connection) -> Result<Channel, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_exchange(&channel, &self.exchange).await?;
        Ok(channel)
    }

    /// Publishes `rows` in order (mandatory, persistent), stopping at the first that fails;
    /// returns the pending confirms of those sent and the failure.
    async fn publish_all(
        &self,
        channel: &Channel,
        rows: &[OutboxRow],
    ) -> (
        Vec<lapin::publisher_confirm::PublisherConfirm>,
        Option<PublishError>,
    ) {
        let mut confirms = Vec::with_capacity(rows.len());
        for row in rows {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/cloudevents+json".into())
                .with_message_id(row.event.event_id.clone().into())
                .with_timestamp(chrono::Utc::now().timestamp() as u64)
                .with_app_id("daftra-bridge".into());
            let publish = channel.basic_publish(
                &self.exchange,
                &row.event.routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                row.event.body.as_bytes(),
                props,
            );
            match tokio::time::timeout(self.confirm_timeout, publish).await {
                Ok(Ok(confirm)) => confirms.push(confirm),
                Ok(Err(e)) => return (confirms, Some(PublishError::Amqp(e))),
                Err(_) => return (confirms, Some(PublishError::Timeout(self.confirm_timeout))),
            }
        }
        (confirms, None)
    }

    /// Counts one confirmed event: published, or returned unroutable (not retried).
    fn confirmed(&self, row: &OutboxRow, answer: &Confirmation) {
        let event = &row.event;
        match answer {
            Confirmation::Ack(Some(returned)) => {
                self.metrics.event_unroutable(&event.resource);
                tracing::warn!(event_id = %event.event_id, routing_key = %event.routing_key,
                    reply = %returned.reply_text, "Event returned as unroutable (no queue bound); not retried");
            }
            _ => {
                if let Some(op) = Op::parse(&event.op) {
                    self.metrics.event_published(&event.resource, op);
                }
            }
        }
    }

    /// Publishes one batch of the outbox past this sink's cursor; returns the number of rows
    /// confirmed (the cursor moves past them).
    pub async fn drain_batch(&self, channel: &Channel) -> Result<usize, PublishError> {
        let publish = self.on(channel);
        consumer::step(&self.store, &publish, BATCH_SIZE).await
    }

    /// Drains until the outbox is empty.
    pub async fn drain(&self, channel: &Channel) -> Result<usize, PublishError> {
        consumer::drain(&self.store, &self.on(channel), BATCH_SIZE).await
    }

    fn on(&self, channel: &Channel) -> Publish {
        Publish {
            publisher: self.clone(),
            channel: channel.clone(),
        }
    }

    async fn refresh_pending(&self) {
        let store = self.store.clone();
        if let Ok(Ok(n)) = tokio::task::spawn_blocking(move || store.outbox_len()).await {
            self.outbox.recount(n);
        }
    }

    fn set_state(&self, s: BrokerConnection) {
        self.broker.set(s);
        self.metrics.broker_state(
            s == BrokerConnection::Connected,
            s == BrokerConnection::Blocked,
        );
    }

    /// Follows the broker's `connection.blocked` / `connection.unblocked` notifications for the
    /// life of one connection, so `/readyz` and the metrics show an alarm while a publish hangs.
    fn watch_blocked(&self, status: lapin::ConnectionStatus, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut was_blocked = false;
            while status.connected() && !cancel.is_cancelled() {
                let blocked = status.blocked();
                if blocked != was_blocked {
                    if blocked {
                        tracing::warn!(
                            "RabbitMQ blocks publishers (memory or disk alarm); publishing paused"
                        );
                        me.set_state(BrokerConnection::Blocked);
                    } else {
                        tracing::info!("RabbitMQ unblocked publishers; publishing resumes");
                        me.set_state(BrokerConnection::Connected);
                    }
                    was_blocked = blocked;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// Opens a connection and a confirming channel with the exchange declared, within 15 s.
    async fn open(&self) -> Result<(Connection, Channel), Option<lapin::Error>> {
        let opened = async {
            let c = connect(&self.amqp_url).await?;
            match self.open_channel(&c).await {
                Ok(ch) => Ok::<_, lapin::Error>((c, ch)),
                Err(e) => {
                    // Refused on the channel (the exchange): close the connection too.
                    let _ = c.close(200, "channel refused").await;
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(15), opened).await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }

    /// One connection attempt: the pair when it opened; otherwise the failure is shown,
    /// counted and logged (a refusal names the variable to fix), and `None` is returned.
    async fn try_connect(&self, shown_url: &str, attempt: u32) -> Option<(Connection, Channel)> {
        // A refusal stays shown while the next attempts are made.
        if self.broker.get() != BrokerConnection::Refused {
            self.set_state(BrokerConnection::Disconnected);
        }
        let failed = match self.open().await {
            Ok(pair) => {
                tracing::info!(url = %shown_url, exchange = %self.exchange, "Connected to RabbitMQ");
                self.set_state(BrokerConnection::Connected);
                return Some(pair);
            }
            Err(e) => e,
        };
        let refused = failed.as_ref().and_then(refusal);
        let error = match (&refused, &failed) {
            (Some((_, said)), _) => said.clone(),
            (None, Some(e)) => e.to_string(),
            (None, None) => "connection attempt timed out".into(),
        };
        if let Some((variable, _)) = &refused {
            self.set_state(BrokerConnection::Refused);
            tracing::error!(url = %shown_url, exchange = %self.exchange, %error, variable,
                "RabbitMQ refuses the bridge; fix {variable}. Events stay in the outbox");
        }
        self.broker.set_error(Some(error.clone()));
        // Every failed attempt counts, so an outage shows in the counter.
        self.metrics.publish_failed(PublishFailure::Connection);
        self.broker.count_failure(PublishFailure::Connection);
        if refused.is_none() {
            tracing::warn!(url = %shown_url, %error, retry_in_ms = reconnect_wait(attempt).as_millis() as u64,
                "RabbitMQ not reachable; events stay in the outbox until it is");
        }
        None
    }

    /// Drains on an open connection and waits for new events; returns when the connection
    /// must be given up (it is closed first).
    async fn publish_while_connected(
        &self,
        conn: &mut Option<(Connection, Channel)>,
        appended: &mut tokio::sync::watch::Receiver<u64>,
        cancel: &CancellationToken,
    ) {
        let (c, channel) = conn.as_ref().expect("connected");
        if c.status().blocked() {
            // A resource alarm: publishing would only hang. HTTP and polling go on meanwhile.
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            return;
        }
        match self.drain(channel).await {
            Ok(_) => {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Publishing stopped; unconfirmed events stay in the outbox");
                self.broker.set_error(Some(e.to_string()));
                self.refresh_pending().await;
                if c.status().connected() && c.status().blocked() {
                    // Confirms time out while the broker blocks us: keep the connection.
                    return;
                }
                if let Some((c, _)) = conn.take() {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), c.close(320, "reconnecting"))
                            .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Connects, drains, waits for new events, and reconnects with capped exponential backoff
    /// after any failure, until `cancel`. Then drains what it can within `shutdown_deadline`
    /// and closes the connection cleanly.
    pub async fn run(self, cancel: CancellationToken, shutdown_deadline: Duration) {
        self.refresh_pending().await;
        let shown_url = redact_url(self.amqp_url.expose());
        let mut attempt: u32 = 0;
        let mut conn: Option<(Connection, Channel)> = None;
        let mut appended = self.outbox.subscribe();
        while !cancel.is_cancelled() {
            let usable = conn
                .as_ref()
                .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
            if !usable {
                match self.try_connect(&shown_url, attempt).await {
                    Some(pair) => {
                        attempt = 0;
                        self.watch_blocked(pair.0.status().clone(), cancel.clone());
                        conn = Some(pair);
                    }
                    None => {
                        let wait = reconnect_wait(attempt);
                        attempt += 1;
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                }
            }
            self.publish_while_connected(&mut conn, &mut appended, &cancel)
                .await;
        }
        self.shut_down(conn, shutdown_deadline).await;
    }

    /// Drains what it can within `deadline`, closes the connection, and recounts what waits.
    async fn shut_down(&self, conn: Option<(Connection, Channel)>, deadline: Duration) {
        if let Some((c, channel)) = conn {
            match tokio::time::timeout(deadline, self.drain(&channel)).await {
                Ok(Ok(n)) => tracing::info!(published = n, "Outbox drained for shutdown"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Outbox not fully drained at shutdown; the rest waits for the next start")
                }
                Err(_) => tracing::warn!(
                    "Shutdown deadline reached; the rest of the outbox waits for the next start"
                ),
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), c.close(200, "shutdown")).await;
        }
        self.set_state(BrokerConnection::Disconnected);
        self.refresh_pending().await;
        tracing::info!(
            outbox_pending = self.outbox.pending(),
            "Publisher stopped; what is pending is published after the next start"
        );
    }
}

/// The wait before connection attempt `attempt + 1`: exponential from the Daftra client's base,
/// capped at [`MAX_RECONNECT_BACKOFF`].
fn reconnect_wait(attempt: u32) -> Duration {
    crate::daftra::retry::BACKOFF_BASE
        .saturating_mul(1 << attempt.min(10))
        .min(MAX_RECONNECT_BACKOFF)
}
