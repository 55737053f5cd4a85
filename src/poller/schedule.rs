//! When each feed is polled: every interval from the start of the last poll, at once on demand
//! (`POST /poll/{resource}`, a full scan with `?full=true`), after Daftra's webhook (at most once per
//! `INBOUND_MIN_INTERVAL_SECS`, never dropping the last call), rarely while the account cannot
//! read the resource, and not at all while Daftra refuses the account's credentials (every
//! feed polls again as soon as they pass).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{PollError, Poller};
use crate::feed::Feed;

/// What woke a feed's poll loop.
enum Wake {
    /// Its interval passed, or a poll was asked for now.
    Due,
    /// Daftra's webhook announced a change.
    Webhook,
}

impl Poller {
    /// Runs `poll_once` at once, then every `interval` from the start of the last poll (and
    /// when `trigger` is notified) until `cancel`. A resource the account cannot read waits
    /// `unavailable_retry` instead. A poll in progress when `cancel` fires is dropped before its
    /// commit, or completes it: the commit is one transaction, so nothing is half applied.
    pub async fn run(
        self,
        feed: Feed,
        interval: Duration,
        unavailable_retry: Duration,
        trigger: Arc<PollTrigger>,
        cancel: CancellationToken,
    ) {
        let mut next = Instant::now();
        loop {
            let wake = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(next) => Wake::Due,
                _ = trigger.now.notified() => Wake::Due,
                _ = trigger.webhook.notified() => Wake::Webhook,
            };
            if let Wake::Webhook = wake {
                if !trigger.debounce(&cancel).await {
                    break;
                }
                // Calls during the wait are answered by the poll about to start.
                let _ = trigger.webhook.notified().now_or_never();
            }
            let started = Instant::now();
            trigger.running.store(true, Ordering::SeqCst);
            let full = trigger.full.swap(false, Ordering::SeqCst);
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.poll(&feed, full) => r,
            };
            trigger.running.store(false, Ordering::SeqCst);
            next = match result {
                Err(e) if e.is_unauthorized() && refused(&feed) => {
                    // An account-level fact: wait for the credentials, then poll at once.
                    let credentials = feed.account.client.credentials();
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = credentials.passed() => Instant::now(),
                    }
                }
                Err(e) if e.is_unavailable() => unavailable(&feed, &e, started, unavailable_retry),
                _ => started + interval,
            };
        }
        tracing::info!(resource = feed.name(), "Poller stopped");
    }
}

/// Whether Daftra refuses the account's credentials (not just one resource).
fn refused(feed: &Feed) -> bool {
    feed.account.client.credentials().refusal().is_some()
}

/// When a feed the account cannot read is tried again.
fn unavailable(feed: &Feed, e: &PollError, started: Instant, retry: Duration) -> Instant {
    tracing::warn!(resource = feed.name(), error = %e, retry_secs = retry.as_secs(),
        "The account cannot read this resource; marked unavailable, retried rarely");
    started + retry
}

/// Starts a poll on demand (`POST /poll/{resource}`, Daftra's webhook), or joins the one
/// running.
#[derive(Debug, Default)]
pub struct PollTrigger {
    now: Notify,
    webhook: Notify,
    running: AtomicBool,
    /// The next poll is a full scan.
    full: AtomicBool,
    /// Least time between two polls started by the webhook (`INBOUND_MIN_INTERVAL_SECS`).
    webhook_min_interval: Duration,
    /// When the last poll started by the webhook started.
    last_webhook_poll: Mutex<Option<Instant>>,
}

impl PollTrigger {
    /// A trigger whose webhook-started polls are at least `webhook_min_interval` apart.
    pub fn new(webhook_min_interval: Duration) -> PollTrigger {
        PollTrigger {
            webhook_min_interval,
            ..Default::default()
        }
    }

    /// Asks for a poll now; returns `true` when one was already running (the request joins it).
    pub fn request(&self) -> bool {
        let running = self.running.load(Ordering::SeqCst);
        if !running {
            self.now.notify_one();
        }
        running
    }

    /// Asks for a full scan now, or right after the running poll (which may be incremental);
    /// returns `true` when a poll was running.
    pub fn request_full(&self) -> bool {
        self.full.store(true, Ordering::SeqCst);
        self.now.notify_one();
        self.running.load(Ordering::SeqCst)
    }

    /// Asks for a full scan at the next webhook-started poll (Daftra reported a delete, which
    /// only a full scan can prove), then for that poll as [`PollTrigger::request_again`] does.
    pub fn request_again_full(&self) -> bool {
        self.full.store(true, Ordering::SeqCst);
        self.request_again()
    }

    /// Asks for a poll after a webhook call: now, or right after the running one, and at most
    /// one per `webhook_min_interval`; calls meanwhile are coalesced into that next poll (the
    /// notification holds one permit), so the last call of a flood is polled within the
    /// interval. Returns `true` when a poll was running.
    pub fn request_again(&self) -> bool {
        let running = self.running.load(Ordering::SeqCst);
        self.webhook.notify_one();
        running
    }

    /// Whether a webhook-started poll began less than `webhook_min_interval` ago, so the next
    /// one waits for the interval.
    pub fn deferred(&self) -> bool {
        let last = *self
            .last_webhook_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| t.elapsed() < self.webhook_min_interval)
    }

    /// Waits until `webhook_min_interval` has passed since the last webhook-started poll (a
    /// poll asked for now cuts the wait short), then records this one. `false` when cancelled.
    async fn debounce(&self, cancel: &CancellationToken) -> bool {
        let last = *self
            .last_webhook_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(last) = last {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(last + self.webhook_min_interval) => {}
                _ = self.now.notified() => {}
            }
        }
        *self
            .last_webhook_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        true
    }
}
