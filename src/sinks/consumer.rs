//! The one loop of every outbox consumer: read a batch past the consumer's cursor, prove this
//! replica still leads before anything leaves the database (fencing), hand the batch on in
//! order, and move the cursor past the prefix that was confirmed. A sink is a [`Consumer`]:
//! RabbitMQ publishes with confirms, a webhook endpoint queues its messages.

use std::future::Future;

use crate::store::{Store, StoreError};

/// How one hand-on ended: the rows done (a prefix of the batch, in order) and, when it stopped
/// early, why.
pub struct Handed<E> {
    pub done: usize,
    pub failure: Option<E>,
}

/// A consumer of the outbox. Cheap to clone: its blocking parts run on a clone off the executor.
pub trait Consumer: Clone + Send + Sync + 'static {
    /// What one outbox row is to this consumer (the whole event, or only its key).
    type Row: Send + Sync + 'static;
    /// Why handing on stopped.
    type Error: From<StoreError> + Send;
    /// Whether this replica must prove it still leads before handing a batch on (whatever
    /// leaves the database: a broker or an HTTP receiver cannot refuse a stale replica).
    const FENCED: bool;

    /// Up to `limit` rows past this consumer's cursor, oldest first (blocking).
    fn read(&self, store: &Store, limit: usize) -> Result<Vec<Self::Row>, StoreError>;

    /// Hands `rows` on in order.
    fn hand_on(&self, rows: &[Self::Row]) -> impl Future<Output = Handed<Self::Error>> + Send;

    /// Moves the cursor past `done`, the rows handed on (blocking).
    fn confirm(&self, store: &Store, done: &[Self::Row]) -> Result<(), StoreError>;
}

/// One batch of up to `limit` rows: read, fenced, handed on, confirmed. Returns the rows
/// confirmed (0: nothing was waiting); an error after a confirmed prefix keeps that prefix.
pub async fn step<C: Consumer>(
    store: &Store,
    consumer: &C,
    limit: usize,
) -> Result<usize, C::Error> {
    let (st, c) = (store.clone(), consumer.clone());
    let rows = tokio::task::spawn_blocking(move || {
        let rows = c.read(&st, limit)?;
        if C::FENCED && !rows.is_empty() {
            // Fencing: a replica that no longer leads hands nothing on.
            st.check_fence()?;
        }
        Ok::<_, StoreError>(rows)
    })
    .await
    .expect("outbox read task")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let Handed { done, failure } = consumer.hand_on(&rows).await;
    if done > 0 {
        let (st, c) = (store.clone(), consumer.clone());
        let mut rows = rows;
        rows.truncate(done);
        tokio::task::spawn_blocking(move || c.confirm(&st, &rows))
            .await
            .expect("outbox confirm task")?;
    }
    failure.map_or(Ok(done), Err)
}

/// Steps until nothing is waiting; returns the rows confirmed.
pub async fn drain<C: Consumer>(
    store: &Store,
    consumer: &C,
    limit: usize,
) -> Result<usize, C::Error> {
    let mut total = 0;
    loop {
        let n = step(store, consumer, limit).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}
