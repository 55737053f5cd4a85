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
use crate::metrics::{Metrics, ParkReason, PublishFailure, Sink};
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
    /// The local deadline of this replica's leadership, checked before every publish.
    pub lease: Arc<crate::leader::Lease>,
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
    /// This replica's lease ran out (frozen, or cut off from the database): it publishes
    /// nothing more until it leads again.
    #[error("the leadership's lease ran out; publishing stopped")]
    LeaseExpired,
    /// The broker refused an event for good (and closed the channel): the rows are published
    /// one at a time until the refused one is found and parked.
    #[error("{1}")]
    Refused(ParkReason, String),
    /// The refused event at this outbox position was parked; the stream goes on.
    #[error("the event at outbox position {0} was parked")]
    Parked(i64),
}

impl PublishError {
    /// A failure of the broker or of the connection to it (not of this replica's lease or
    /// store, nor a refusal of one event): what `bridge_publish_failures_total` counts.
    fn is_broker_failure(&self) -> bool {
        !matches!(
            self,
            PublishError::LeaseExpired
                | PublishError::Store(_)
                | PublishError::Refused(..)
                | PublishError::Parked(_)
        )
    }

    /// The failure that explains a batch: a refusal for good wherever it showed (the confirm
    /// of the refused event, or a publish after the broker closed the channel), else the
    /// confirm's failure, else the publish's.
    fn first_cause(confirm: Option<PublishError>, publish: Option<PublishError>) -> Option<Self> {
        let refusal = [&confirm, &publish]
            .into_iter()
            .flatten()
            .find_map(|e| match e {
                PublishError::Amqp(e) => refused_for_good(e),
                _ => None,
            });
        match refusal {
            Some((reason, text)) => Some(PublishError::Refused(reason, text)),
            None => confirm.or(publish),
        }
    }

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
    /// One row a batch, after a refusal: a row refused on its own is parked.
    careful: bool,
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
        let (confirms, publish_failure) = p.publish_all(&self.channel, rows).await;
        // The cursor moves past the confirmed prefix only, so per-record order is never broken.
        let mut done = 0;
        let mut confirm_failure = None;
        for (row, confirm) in rows.iter().zip(confirms) {
            let answer = match tokio::time::timeout(p.confirm_timeout, confirm).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    confirm_failure = Some(PublishError::Amqp(e));
                    break;
                }
                Err(_) => {
                    confirm_failure = Some(PublishError::Timeout(p.confirm_timeout));
                    break;
                }
            };
            if let Confirmation::Nack(_) = answer {
                confirm_failure = Some(PublishError::Nack);
                break;
            }
            p.confirmed(row, &answer);
            done += 1;
        }
        let failure = PublishError::first_cause(confirm_failure, publish_failure);
        if let (Some(PublishError::Refused(reason, error)), true, 0) =
            (&failure, self.careful && rows.len() == 1, done)
        {
            // Refused on its own: this row can never be published. Parked, the stream moves on.
            return Handed {
                done: 0,
                failure: Some(p.park(&rows[0], *reason, error).await),
            };
        }
        if let Some(e) = failure.as_ref().filter(|e| e.is_broker_failure()) {
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

/// The RabbitMQ sink's state through one run.
#[derive(Default)]
struct Session {
    conn: Option<(Connection, Channel)>,
    /// Rows still to publish one at a time after a refusal (0: whole batches).
    careful: usize,
    /// Publish failures in a row, for the backoff.
    failures: u32,
}

/// What the broker's answer means for one message: refused for good (RabbitMQ closes the
/// channel with `406 PRECONDITION_FAILED - message size ... is larger than configured max
/// size`), or `None` when a retry may succeed.
pub fn refused_for_good(e: &lapin::Error) -> Option<(ParkReason, String)> {
    let lapin::Error::ProtocolError(p) = e else {
        return None;
    };
    let text = p.get_message().to_string();
    (p.get_id() == 406 && (text.contains("max size") || text.contains("message size"))).then(|| {
        (
            ParkReason::TooLarge,
            format!("RabbitMQ refused the event: {text}"),
        )
    })
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
            if !self.lease.valid() {
                return (confirms, Some(PublishError::LeaseExpired));
            }
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
            careful: false,
        }
    }

    /// Publishes one row at a time, at most `careful` rows (counted down), so the next refusal
    /// names its row and parks it. Ends early on an empty outbox or the first failure.
    async fn drain_carefully(
        &self,
        channel: &Channel,
        careful: &mut usize,
    ) -> Result<(), PublishError> {
        let one = Publish {
            careful: true,
            ..self.on(channel)
        };
        while *careful > 0 {
            match consumer::step(&self.store, &one, 1).await? {
                0 => *careful = 0,
                n => *careful = careful.saturating_sub(n),
            }
        }
        Ok(())
    }

    /// Parks `row`, refused for good for `reason`: kept in the outbox, the sink's cursor past
    /// it, counted and logged once. Returns the error that tells the loop to go on.
    async fn park(&self, row: &OutboxRow, reason: ParkReason, error: &str) -> PublishError {
        let (store, seq, why, text) = (
            self.store.clone(),
            row.seq,
            reason.as_str(),
            error.to_string(),
        );
        let parked = tokio::task::spawn_blocking(move || store.park_for_amqp(seq, why, &text))
            .await
            .expect("park task");
        if let Err(e) = parked {
            return PublishError::Store(e);
        }
        self.metrics.event_parked(Sink::Amqp, reason);
        self.refresh_parked().await;
        tracing::warn!(event_id = %row.event.event_id, routing_key = %row.event.routing_key,
            resource = %row.event.resource, id = row.event.record_id, bytes = row.event.body.len(),
            reason = reason.as_str(), %error,
            "Event parked: RabbitMQ refuses it for good; later events go on (GET /outbox/parked)");
        PublishError::Parked(seq)
    }

    /// Sets the parked-events gauges from the store.
    async fn refresh_parked(&self) {
        let store = self.store.clone();
        if let Ok(Ok(counts)) = tokio::task::spawn_blocking(move || store.parked_counts()).await {
            for sink in Sink::ALL {
                let n = counts.get(sink.as_str()).copied().unwrap_or(0);
                self.metrics.set_parked(*sink, n);
            }
        }
    }

    /// Publishes the parked events an operator asked to retry, each alone on a channel of its
    /// own (a channel takes the broker's limits as they are when it opens, so a limit raised
    /// since applies): confirmed ones are no longer parked, refused ones stay parked with the
    /// new answer, others wait for the next round.
    async fn retry_parked(&self, conn: &Connection) -> Result<(), PublishError> {
        let store = self.store.clone();
        let retries = tokio::task::spawn_blocking(move || store.amqp_retries(16))
            .await
            .expect("parked read task")?;
        for (id, row) in retries {
            let channel = self.open_channel(conn).await?;
            let handed = self.on(&channel).hand_on(std::slice::from_ref(&row)).await;
            let _ = channel.close(200, "retried").await;
            let refused = match handed.failure {
                None => None,
                Some(PublishError::Refused(_, error)) => Some(error),
                Some(e) => return Err(e),
            };
            let published = refused.is_none();
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || match refused {
                None => store.unpark(id),
                Some(error) => store.repark(id, &error),
            })
            .await
            .expect("parked write task")?;
            self.refresh_parked().await;
            tracing::info!(event_id = %row.event.event_id, published, "Parked event retried");
        }
        Ok(())
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

    /// Drains on an open connection and waits for new events. A refusal for good switches to
    /// one row at a time until the refused row is parked; any other failure gives the
    /// connection up (closed first) and waits a backoff before the next attempt.
    async fn publish_while_connected(
        &self,
        s: &mut Session,
        appended: &mut tokio::sync::watch::Receiver<u64>,
        cancel: &CancellationToken,
    ) {
        let (c, channel) = s.conn.as_ref().expect("connected");
        if c.status().blocked() {
            // A resource alarm: publishing would only hang. HTTP and polling go on meanwhile.
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            return;
        }
        let result = match self.retry_parked(c).await {
            Err(e) => Err(e),
            Ok(()) if s.careful > 0 => self.drain_carefully(channel, &mut s.careful).await,
            Ok(()) => self.drain(channel).await.map(|_| ()),
        };
        match result {
            Ok(()) => {
                s.failures = 0;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = appended.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(PublishError::Refused(_, error)) => {
                if s.careful == 0 {
                    tracing::info!(%error, "RabbitMQ refused an event for good; publishing one at a time to find and park it");
                    s.careful = BATCH_SIZE;
                }
                self.reopen_channel(s).await;
            }
            Err(PublishError::Parked(_)) => {
                s.careful = 0;
                self.refresh_pending().await;
                self.reopen_channel(s).await;
            }
            Err(e) => self.back_off(s, e).await,
        }
    }

    /// A new channel on the session's connection (a refusal closes only the channel); the
    /// connection is given up when that fails.
    async fn reopen_channel(&self, s: &mut Session) {
        let Some((c, _)) = s.conn.take() else {
            return;
        };
        match self.open_channel(&c).await {
            Ok(channel) => s.conn = Some((c, channel)),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot open a new RabbitMQ channel; reconnecting");
                let _ = tokio::time::timeout(Duration::from_secs(2), c.close(320, "reconnecting"))
                    .await;
            }
        }
    }

    /// After a failure that a retry may heal: one line of ours, the connection given up, and a
    /// wait that doubles with each failure in a row (capped), so a failing broker is not
    /// hammered.
    async fn back_off(&self, s: &mut Session, e: PublishError) {
        let wait = reconnect_wait(s.failures);
        s.failures += 1;
        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
            "Publishing stopped; unconfirmed events stay in the outbox");
        self.broker.set_error(Some(e.to_string()));
        self.refresh_pending().await;
        let Some((c, _)) = s.conn.as_ref() else {
            return;
        };
        if c.status().connected() && c.status().blocked() {
            // Confirms time out while the broker blocks us: keep the connection.
            return;
        }
        if let Some((c, _)) = s.conn.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), c.close(320, "reconnecting")).await;
        }
        tokio::time::sleep(wait).await;
    }

    /// Connects, drains, waits for new events, and reconnects with capped exponential backoff
    /// after any failure, until `cancel`. Then drains what it can within `shutdown_deadline`
    /// and closes the connection cleanly.
    pub async fn run(self, cancel: CancellationToken, shutdown_deadline: Duration) {
        self.refresh_pending().await;
        self.refresh_parked().await;
        let shown_url = redact_url(self.amqp_url.expose());
        let mut attempt: u32 = 0;
        let mut s = Session::default();
        let mut appended = self.outbox.subscribe();
        while !cancel.is_cancelled() {
            let usable = s
                .conn
                .as_ref()
                .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
            if !usable {
                match self.try_connect(&shown_url, attempt).await {
                    Some(pair) => {
                        attempt = 0;
                        self.watch_blocked(pair.0.status().clone(), cancel.clone());
                        s.conn = Some(pair);
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
            self.publish_while_connected(&mut s, &mut appended, &cancel)
                .await;
        }
        self.shut_down(s.conn, shutdown_deadline).await;
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
