//! The webhook sink: signed HTTP deliveries of the outbox's events to every enabled endpoint,
//! at least once, in order per record, each endpoint on its own task so a slow or dead one
//! never delays the others or RabbitMQ.
//!
//! Per endpoint: the events past its cursor that its filter accepts are queued (one
//! transaction moves the cursor with them); due messages, each the oldest of its record, are
//! attempted together; every outcome is committed before the next batch. A 2xx removes the
//! message; another answer or no answer schedules the next attempt by the retry schedule with
//! jitter; 410 Gone or an exhausted schedule disables the endpoint (its messages wait for it to
//! be re-enabled). A crash between an attempt and its commit repeats that attempt.

mod deliver;
pub mod filter;
pub mod signature;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, Consumer, Handed};
use crate::config::WebhookSettings;
use crate::metrics::{DeliveryOutcome, Metrics, ParkReason, Sink};
use crate::sinks::OutboxSignal;
use crate::store::{
    AttemptOutcome, AttemptRecord, DueMessage, Endpoint, OutboxKey, Store, StoreError,
};

/// Messages attempted at once per endpoint.
pub const BATCH: usize = 64;
/// Bytes of a response body read (the rest is dropped; only the status counts).
pub const RESPONSE_LIMIT: usize = 4096;
/// How long a rotated-out secret keeps signing next to the new one.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Outbox rows queued per fan-out step.
const FAN_OUT_BATCH: usize = 1000;

/// The sink's shared parts. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSink {
    pub store: Store,
    pub metrics: Metrics,
    pub settings: WebhookSettings,
    /// Woken when the poller appends events.
    pub appended: Arc<OutboxSignal>,
    /// Woken when the admin API changes an endpoint.
    pub endpoints_changed: Arc<Notify>,
    /// The local deadline of this replica's leadership, checked before every delivery.
    pub lease: Arc<crate::leader::Lease>,
    client: reqwest::Client,
}

/// One attempt's result before it is committed.
struct Tried {
    status: Option<u16>,
    error: Option<String>,
    outcome: DeliveryOutcome,
    latency: Duration,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::store::StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("store task panicked")
}

impl WebhookSink {
    /// Builds the sink beside the RabbitMQ `publisher`, sharing its store, metrics, outbox
    /// signal and lease, with its HTTP client: no redirects followed, `settings.timeout` per
    /// attempt, and the private-address guard on every connection.
    pub fn new(
        publisher: &crate::sinks::amqp::Publisher,
        settings: WebhookSettings,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(target::GuardedResolver {
                allow_private: settings.allow_private,
            }))
            .user_agent(concat!(
                "daftra-bridge-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .pool_max_idle_per_host(settings.max_in_flight)
            .build()?;
        Ok(WebhookSink {
            store: publisher.store.clone(),
            metrics: publisher.metrics.clone(),
            settings,
            appended: publisher.outbox.clone(),
            endpoints_changed: Arc::new(Notify::new()),
            lease: publisher.lease.clone(),
            client,
        })
    }

    /// Runs one delivery task per enabled endpoint (started and stopped as endpoints are
    /// created, disabled and deleted) and prunes the event log, until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut workers: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        let mut last_prune: Option<Instant> = None;
        while !cancel.is_cancelled() {
            let store = self.store.clone();
            match blocking(move || store.endpoints()).await {
                Ok(endpoints) => {
                    workers.retain(|id, (stop, task)| {
                        let keep = !task.is_finished()
                            && endpoints.iter().any(|e| &e.id == id && !e.disabled);
                        if !keep {
                            stop.cancel();
                        }
                        keep
                    });
                    for e in &endpoints {
                        self.metrics.endpoint_seen(&e.id, e.disabled);
                        if e.disabled {
                            let (store, id) = (self.store.clone(), e.id.clone());
                            if let Ok(n) = blocking(move || store.endpoint_pending(&id)).await {
                                self.metrics.endpoint_pending(&e.id, n);
                            }
                        } else if !workers.contains_key(&e.id) {
                            let stop = cancel.child_token();
                            let task = tokio::spawn(
                                self.clone().serve_endpoint(e.id.clone(), stop.clone()),
                            );
                            workers.insert(e.id.clone(), (stop, task));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Cannot read the webhook endpoints; retrying"),
            }
            let store = self.store.clone();
            if let Ok(counts) = blocking(move || store.parked_counts()).await {
                let n = counts.get(Sink::Webhook.as_str()).copied().unwrap_or(0);
                self.metrics.set_parked(Sink::Webhook, n);
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                last_prune = Some(Instant::now());
                let (store, retention) = (self.store.clone(), self.settings.event_log_retention);
                match blocking(move || {
                    Ok((store.prune_event_log(retention)?, store.prune_attempts()?))
                })
                .await
                {
                    Ok((events, attempts)) if events + attempts > 0 => {
                        tracing::debug!(
                            events,
                            attempts,
                            "Pruned the event log and the attempt log"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Pruning the event log failed"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.endpoints_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        for (_, (stop, task)) in workers {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        tracing::info!("Webhook sink stopped; undelivered events resume after the next start");
    }

    /// Delivers to endpoint `id` until it is disabled, deleted or `cancel` fires.
    async fn serve_endpoint(self, id: String, cancel: CancellationToken) {
        let mut appended = self.appended.subscribe();
        while !cancel.is_cancelled() {
            match self.step(&id, &cancel).await {
                Ok(Some(wait)) => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = appended.changed() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Ok(None) => {}
                Err(Stop) => break,
            }
        }
        tracing::debug!(endpoint = %id, "Webhook delivery task stopped");
    }

    /// One round: queue new events, attempt what is due, commit. `Ok(Some(wait))` when nothing
    /// was due (wait that long or until new events), `Ok(None)` to go again at once.
    async fn step(&self, id: &str, cancel: &CancellationToken) -> Result<Option<Duration>, Stop> {
        let (endpoint, due, next) = match self.load(id).await {
            Ok(Some(x)) => x,
            Ok(None) => return Err(Stop),
            Err(e) => {
                tracing::warn!(endpoint = %id, error = %e, "Webhook delivery cannot read the store; retrying");
                return Ok(Some(Duration::from_secs(1)));
            }
        };
        if due.is_empty() {
            let now = chrono::Utc::now().timestamp_millis();
            let wait = next.map_or(1000, |t| t.saturating_sub(now).clamp(10, 1000));
            return Ok(Some(Duration::from_millis(wait as u64)));
        }
        // At most WEBHOOK_MAX_IN_FLIGHT at once: a small receiver with a short listen backlog
        // is not flooded; results come back in the order of `due`.
        let each: Vec<_> = due.iter().map(|m| self.attempt(&endpoint, m)).collect();
        let attempts = futures::stream::iter(each)
            .buffered(self.settings.max_in_flight)
            .collect::<Vec<_>>();
        let tried = tokio::select! {
            _ = cancel.cancelled() => return Err(Stop),
            t = attempts => t,
        };
        let (records, disable) = self.outcomes(id, &due, tried);
        if let Some(reason) = &disable {
            tracing::warn!(endpoint = %id, %reason, "Webhook endpoint disabled; its events wait until it is re-enabled");
        }
        let (store, owned) = (self.store.clone(), id.to_string());
        if let Err(e) =
            blocking(move || store.record_attempts(&owned, &records, disable.as_deref())).await
        {
            // Not committed: those attempts are repeated (at least once).
            tracing::warn!(endpoint = %id, error = %e, "Cannot record webhook attempts; they will be repeated");
            return Ok(Some(Duration::from_secs(1)));
        }
        Ok(None)
    }

    /// Queues the events past the endpoint's cursor, then reads what is due (fenced: a replica
    /// that no longer leads delivers nothing), the backlog, and when the next message is due
    /// if none is now. `None` when the endpoint is gone or disabled.
    async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let (store, owned) = (self.store.clone(), id.to_string());
        let Some(endpoint) = blocking(move || store.endpoint(&owned)).await? else {
            return Ok(None);
        };
        if endpoint.disabled {
            return Ok(None);
        }
        let fan_out = FanOut::of(&endpoint);
        consumer::drain(&self.store, &fan_out, FAN_OUT_BATCH).await?;
        let (store, owned) = (self.store.clone(), id.to_string());
        let (due, pending, next) = blocking(move || {
            let now = chrono::Utc::now().timestamp_millis();
            let due = store.due_messages(&owned, now, BATCH)?;
            if !due.is_empty() {
                store.check_fence()?;
            }
            let next = match due.is_empty() {
                true => store.next_due(&owned)?,
                false => None,
            };
            Ok((due, store.endpoint_pending(&owned)?, next))
        })
        .await?;
        self.metrics.endpoint_pending(id, pending);
        Ok(Some((endpoint, due, next)))
    }

    /// The attempts' outcomes as logged, and why to disable the endpoint if one says so
    /// (410 Gone, or the retry schedule exhausted); counts each attempt.
    fn outcomes(
        &self,
        id: &str,
        due: &[DueMessage],
        tried: Vec<Option<Tried>>,
    ) -> (Vec<AttemptRecord>, Option<String>) {
        let mut disable = None;
        let now = chrono::Utc::now().timestamp_millis();
        let records = due
            .iter()
            .zip(tried)
            .filter_map(|(m, t)| t.map(|t| (m, t)))
            .map(|(m, t)| {
                let attempt = m.attempt + 1;
                let parked = t.status.and_then(ParkReason::for_http_status);
                let outcome = match t.status {
                    Some(s) if (200..300).contains(&s) => AttemptOutcome::Delivered,
                    _ if parked.is_some() => {
                        let reason = parked.expect("checked");
                        self.metrics.event_parked(Sink::Webhook, reason);
                        tracing::warn!(endpoint = %id, event_id = %m.event_id, status = t.status.unwrap_or_default(),
                            reason = reason.as_str(),
                            "Event parked: the endpoint refuses it for good; its later events go on (GET /outbox/parked)");
                        AttemptOutcome::Parked(reason.as_str().to_string())
                    }
                    Some(410) => {
                        disable = Some("the endpoint answered 410 Gone".to_string());
                        AttemptOutcome::Stopped
                    }
                    _ => match self.settings.retry_schedule.get(m.attempt as usize) {
                        Some(delay) => AttemptOutcome::RetryAt(now + jittered(*delay)),
                        None => {
                            disable = Some(format!(
                                "every attempt of the retry schedule failed ({attempt} attempts of event {})",
                                m.event_id
                            ));
                            AttemptOutcome::Stopped
                        }
                    },
                };
                self.metrics.delivery_attempted(id, t.outcome, t.latency);
                if outcome != AttemptOutcome::Delivered {
                    tracing::debug!(endpoint = %id, event_id = %m.event_id, attempt, status = t.status.unwrap_or_default(), error = t.error.as_deref().unwrap_or_default(), "Webhook attempt failed");
                }
                AttemptRecord {
                    seq: m.seq,
                    event_id: m.event_id.clone(),
                    attempt,
                    at_ms: now - t.latency.as_millis() as i64,
                    status: t.status,
                    latency_ms: t.latency.as_millis() as i64,
                    error: t.error,
                    outcome,
                }
            })
            .collect();
        (records, disable)
    }
}

/// An endpoint, what is due for it, and when its next message is due when none is now.
type Loaded = (Endpoint, Vec<DueMessage>, Option<i64>);

/// The delivery task of an endpoint that is gone or disabled stops.
struct Stop;

/// The fan-out of the outbox to one endpoint as an outbox consumer: the events past its
/// cursor that its filter accepts are queued for it, and its cursor moves with them in one
/// transaction. Nothing leaves the database here (deliveries are fenced), so it is not fenced.
#[derive(Clone)]
struct FanOut {
    id: String,
    events: Vec<String>,
}

impl FanOut {
    fn of(endpoint: &Endpoint) -> FanOut {
        FanOut {
            id: endpoint.id.clone(),
            events: endpoint.events.clone(),
        }
    }
}

impl Consumer for FanOut {
    type Row = OutboxKey;
    type Error = StoreError;
    const FENCED: bool = false;

    fn read(&self, store: &Store, limit: usize) -> Result<Vec<OutboxKey>, StoreError> {
        match store.endpoint(&self.id)? {
            Some(e) => store.outbox_keys(e.cursor, limit),
            None => Ok(Vec::new()),
        }
    }

    async fn hand_on(&self, rows: &[OutboxKey]) -> Handed<StoreError> {
        // Queued with the cursor's move, in `confirm`: one transaction.
        Handed {
            done: rows.len(),
            failure: None,
        }
    }

    fn confirm(&self, store: &Store, done: &[OutboxKey]) -> Result<(), StoreError> {
        let Some(last) = done.last().map(|r| r.0) else {
            return Ok(());
        };
        store.enqueue_messages(&self.id, &messages(&self.events, done), last)?;
        Ok(())
    }
}

/// The queue messages of the outbox rows `keys` that the endpoint's `events` patterns accept:
/// `(seq, "resource:id")`, the record key that keeps one record's events in order.
pub fn messages(events: &[String], keys: &[OutboxKey]) -> Vec<(i64, String)> {
    keys.iter()
        .filter(|(_, key, _, _)| filter::accepts(events, key))
        .map(|(seq, _, resource, id)| (*seq, format!("{resource}:{id}")))
        .collect()
}

/// `delay` +-20%, in milliseconds: retries of many messages spread instead of arriving at once.
fn jittered(delay: Duration) -> i64 {
    let factor = rand::thread_rng().gen_range(0.8..1.2);
    (delay.as_secs_f64() * factor * 1000.0) as i64
}
