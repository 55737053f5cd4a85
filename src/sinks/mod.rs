//! Event sinks. Each reads the outbox in order and confirms its own progress (a cursor in the
//! store); an outbox row is pruned only when every sink is past it and the event log's
//! retention has expired.

pub mod amqp;
pub mod webhook;

use tokio::sync::watch;

/// Tells every sink that the outbox grew: a counter each sink watches, so one append wakes all
/// of them (a sink that was busy sees the change on its next wait).
#[derive(Debug)]
pub struct OutboxSignal(watch::Sender<u64>);

impl Default for OutboxSignal {
    fn default() -> Self {
        OutboxSignal(watch::channel(0).0)
    }
}

impl OutboxSignal {
    /// Wakes every sink.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver whose `changed()` resolves after the next [`OutboxSignal::notify`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
