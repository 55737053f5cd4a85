//! Event sinks. Each consumes the outbox in order through one loop ([`consumer`]) and confirms
//! its own progress (a cursor in the store); an outbox row is pruned only when every sink is past
//! it and the event log's retention has expired.

pub mod amqp;
pub mod consumer;
pub mod webhook;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// The outbox as the sinks see it: wakes every sink when events are appended (a counter each
/// sink watches, so one append wakes all of them; a sink that was busy sees the change on its
/// next wait), and keeps `bridge_outbox_pending`, the events RabbitMQ has not confirmed: the one
/// place that changes it.
pub struct OutboxSignal {
    appended: watch::Sender<u64>,
    metrics: Metrics,
}

impl OutboxSignal {
    /// A signal that keeps the pending gauge of `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        OutboxSignal {
            appended: watch::channel(0).0,
            metrics,
        }
    }

    /// `n` events were committed to the outbox: counts them pending and wakes every sink.
    pub fn appended(&self, n: usize) {
        if n > 0 {
            self.metrics.outbox_moved(n as i64);
            self.notify();
        }
    }

    /// RabbitMQ confirmed `n` more events.
    pub fn confirmed(&self, n: usize) {
        self.metrics.outbox_moved(-(n as i64));
    }

    /// The outbox counted `n` events not yet confirmed by RabbitMQ.
    pub fn recount(&self, n: u64) {
        self.metrics.set_outbox_pending(n as i64);
    }

    /// Events not yet confirmed by RabbitMQ, as last counted.
    pub fn pending(&self) -> i64 {
        self.metrics.outbox_pending()
    }

    /// Wakes every sink.
    pub fn notify(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver whose `changed()` resolves after the next append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}
