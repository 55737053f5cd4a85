//! When each resource is polled: every interval from the start of the last poll, at once on
//! demand (`POST /poll/{resource}`), and rarely while the account cannot read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Poller;
use crate::feed::Feed;

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
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
                _ = trigger.notify.notified() => {}
            }
            let started = tokio::time::Instant::now();
            trigger.running.store(true, Ordering::SeqCst);
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.poll_once(&feed) => r,
            };
            trigger.running.store(false, Ordering::SeqCst);
            next = match result {
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(resource = feed.name(), error = %e, retry_secs = unavailable_retry.as_secs(),
                        "The account cannot read this resource; marked unavailable, retried rarely");
                    started + unavailable_retry
                }
                _ => started + interval,
            };
        }
        tracing::info!(resource = feed.name(), "Poller stopped");
    }
}

/// Starts a poll on demand (`POST /poll/{resource}`), or joins the one running.
#[derive(Debug, Default)]
pub struct PollTrigger {
    notify: Notify,
    running: AtomicBool,
}

impl PollTrigger {
    /// Asks for a poll now; returns `true` when one was already running (the request joins it).
    pub fn request(&self) -> bool {
        let running = self.running.load(Ordering::SeqCst);
        if !running {
            self.notify.notify_one();
        }
        running
    }

    /// Asks for a poll now, or for one more right after the running one; calls while a poll
    /// runs are coalesced into that one more poll (the notification holds one permit). Returns
    /// `true` when a poll was running.
    pub fn request_again(&self) -> bool {
        let running = self.running.load(Ordering::SeqCst);
        self.notify.notify_one();
        running
    }
}
