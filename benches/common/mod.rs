//! Data shared by the benchmarks: seeded work orders as the simulator serves them, normalised as
//! the poller does, and the change a Daftra user makes to one of them.
//! Each bench uses part of it.
#![allow(dead_code)]

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::events::{Change, Op};
use daftra_bridge::record::{self, Record};
use daftra_bridge::sim::seeded_work_order;
use serde_json::{Map, Value};

/// Seed of every benchmark data set (the simulator's default).
pub const SEED: u64 = 42;

/// The raw Daftra form of work order `id` after a user changed its status (a typical edit).
pub fn edited_raw(id: i64) -> Map<String, Value> {
    let mut raw = seeded_work_order(SEED, id);
    let status = raw
        .get("status")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(1);
    raw.insert("status".into(), Value::from(status % 4 + 1));
    raw.insert("modified".into(), Value::from("2026-12-01 10:00:00"));
    raw
}

/// Work order `id` normalised; every `changed_every`-th id carries [`edited_raw`]'s edit.
pub fn work_order(id: i64, changed_every: Option<i64>) -> Record {
    let raw = match changed_every {
        Some(k) if id % k == 0 => edited_raw(id),
        _ => seeded_work_order(SEED, id),
    };
    record::normalise(default_resource(), &raw).expect("seeded records normalise")
}

/// Work orders `1..=n`, normalised; see [`work_order`] for `changed_every`.
pub fn work_orders(n: usize, changed_every: Option<i64>) -> Vec<Record> {
    (1..=n as i64)
        .map(|id| work_order(id, changed_every))
        .collect()
}

/// The `updated` change of work order `id` made by [`edited_raw`].
pub fn updated_change(id: i64) -> Change {
    let before = work_order(id, None);
    let after = record::normalise(default_resource(), &edited_raw(id)).expect("normalises");
    Change {
        op: Op::Updated,
        id,
        changed: daftra_bridge::diff::changed_fields(&before, &after),
        before: Some(before),
        after: Some(after),
    }
}

/// `n` `updated` events of distinct work orders, as one poll would commit them.
pub fn updated_events(base: &str, n: usize) -> Vec<daftra_bridge::events::OutboxEvent> {
    let time = daftra_bridge::status::now_rfc3339();
    (1..=n as i64)
        .map(|id| {
            daftra_bridge::events::to_outbox(
                default_resource(),
                base,
                &time,
                &updated_change(id),
                &Default::default(),
            )
        })
        .collect()
}

/// A bounded, exclusive queue bound to `exchange` with `key` (declared here, as the publisher does), so
/// events are routable (no `mandatory` returns) and do not pile up in the broker.
pub async fn bind_bounded_queue(
    channel: &lapin::Channel,
    exchange: &str,
    key: &str,
) -> anyhow::Result<String> {
    daftra_bridge::sinks::amqp::declare_exchange(channel, exchange).await?;
    let queue = format!("{exchange}.sink");
    let mut queue_args = lapin::types::FieldTable::default();
    queue_args.insert(
        "x-max-length".into(),
        lapin::types::AMQPValue::LongInt(1000),
    );
    channel
        .queue_declare(
            &queue,
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            queue_args,
        )
        .await?;
    channel
        .queue_bind(
            &queue,
            exchange,
            key,
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    Ok(queue)
}
