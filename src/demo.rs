//! `daftra-bridge demo`: the whole bridge against an in-process simulated tenant whose work
//! orders change every few seconds, with a consumer that prints the events it receives.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{DaftraAuth, RawEnv, Settings};
use crate::secret::{redact_url, Secret};
use crate::sim::{SimConfig, Simulator};
use crate::startup::{shutdown_on_signals, Application};
use crate::status::StatusBoard;

/// Options of the demo.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Records of each resource in the simulated tenant.
    #[arg(long, default_value_t = 250)]
    pub records: usize,
    /// Stop after this many seconds (runs until Ctrl-C when absent).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seconds between two rounds of simulated edits.
    #[arg(long, default_value_t = 4)]
    pub change_every_secs: u64,
}

/// The queue the demo binds to the exchange and reads from, to show events arriving; it exists
/// only while the demo runs.
pub const DEMO_QUEUE: &str = "daftra-bridge.demo";

fn demo_settings(sim: &Simulator) -> anyhow::Result<(Settings, Option<tempfile::TempDir>)> {
    let mut raw = RawEnv::from_env()?;
    let mut tmp = None;
    if raw
        .database_url
        .as_deref()
        .is_none_or(|s| s.trim().is_empty())
    {
        let dir = tempfile::Builder::new()
            .prefix("daftra-bridge-demo")
            .tempdir()?;
        raw.database_url = Some(format!("sqlite://{}/demo.sqlite3", dir.path().display()));
        tmp = Some(dir);
    }
    raw.poll_interval_secs.get_or_insert_with(|| "5".into());
    // A full scan (deletes, the audit of incremental polls) every minute rather than hourly,
    // so a short demo shows both kinds of poll.
    raw.poll_full_scan_secs.get_or_insert_with(|| "60".into());
    // The simulated account's zone (its Site Info says Africa/Cairo), so the demo agrees with it.
    raw.daftra_timezone
        .get_or_insert_with(|| "Africa/Cairo".into());
    raw.daftra_resources
        .get_or_insert_with(|| DEMO_RESOURCES.into());
    raw.daftra_page_size.get_or_insert_with(|| "50".into());
    raw.bind_addr.get_or_insert_with(|| "127.0.0.1:8080".into());
    let auth = DaftraAuth::ApiKey(Secret::new("sim-api-key"));
    Ok((
        Settings::from_raw(&raw, Some((sim.base_url.clone(), auth)))?,
        tmp,
    ))
}

/// Resources the demo serves when `DAFTRA_RESOURCES` is unset: several areas, line items.
pub const DEMO_RESOURCES: &str =
    "invoices,clients,products,journals,stock_transactions,work_orders";

/// One edit of a random record of `resource`: a new value in a text column, or one more line
/// item (an `updated` event naming the group).
fn edit(sim: &Simulator, resource: &crate::catalogue::Resource, id: i64, round: u64) {
    let mut rng = rand::thread_rng();
    let mut f = Map::new();
    let record = sim
        .state
        .records_of(&resource.name)
        .into_iter()
        .find(|r| crate::record::raw_key(resource, r) == Some(id));
    let group = resource.line_items.first();
    match (group, record) {
        (Some(g), Some(r)) if rng.gen_bool(0.5) => {
            let mut items = r
                .get(&g.key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut item = items
                .first()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(k) = &g.item_key {
                item.remove(k);
            }
            items.push(Value::Object(item));
            f.insert(g.key.clone(), Value::Array(items));
        }
        _ => {
            let text = resource.columns.iter().find(|c| {
                c.kind == crate::catalogue::ColumnKind::Text
                    && !matches!(c.name.as_str(), "number" | "no" | "code")
            });
            if let Some(c) = text {
                let v = if round % 2 == 0 {
                    format!("تعديل رقم {round}")
                } else {
                    format!("Edited in round {round}")
                };
                f.insert(c.name.clone(), json!(v));
            }
            if let Some(c) = resource.enum_columns().next() {
                let values: Vec<i64> = c.labels.iter().filter_map(|(v, _)| *v).collect();
                f.insert(
                    c.name.clone(),
                    json!(values[rng.gen_range(0..values.len())]),
                );
            }
        }
    }
    sim.state.update_in(&resource.name, id, f);
}

/// Makes a few edits across the served resources: one created, two updated, and now and then
/// one deleted.
fn change_some(sim: &Simulator, round: u64) {
    let mut rng = rand::thread_rng();
    let resources = sim.state.resources();
    if resources.is_empty() {
        return;
    }
    let pick = |rng: &mut rand::rngs::ThreadRng| resources[rng.gen_range(0..resources.len())];
    let ids = |r: &crate::catalogue::Resource| -> Vec<i64> {
        sim.state
            .records_of(&r.name)
            .iter()
            .filter_map(|rec| crate::record::raw_key(r, rec))
            .collect()
    };
    let created = pick(&mut rng);
    sim.state.create_in(&created.name, Map::new());
    for _ in 0..2 {
        let r = pick(&mut rng);
        let ids = ids(r);
        if let Some(id) = ids.get(rng.gen_range(0..ids.len().max(1))) {
            edit(sim, r, *id, round);
        }
    }
    if round % 3 == 2 {
        let r = pick(&mut rng);
        let ids = ids(r);
        if let Some(id) = ids.get(rng.gen_range(0..ids.len().max(1))) {
            sim.state.delete_in(&r.name, *id);
        }
    }
}

/// Declares [`DEMO_QUEUE`] bound to every work-order event and prints what arrives.
async fn print_events(settings: Settings, cancel: CancellationToken) {
    let consume = async {
        let conn = crate::sinks::amqp::connect(&settings.amqp_url).await?;
        let ch = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(10_000));
        crate::sinks::amqp::declare_exchange(&ch, &settings.amqp_exchange).await?;
        // Exclusive and auto-deleted: the queue goes away with the demo, so it never collects
        // a later `serve`'s events nor hides unroutable ones.
        ch.queue_declare(
            DEMO_QUEUE,
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            args,
        )
        .await?;
        ch.queue_bind(
            DEMO_QUEUE,
            &settings.amqp_exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let mut consumer = ch
            .basic_consume(
                DEMO_QUEUE,
                "demo",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        println!(
            "Reading events from queue {DEMO_QUEUE} (bound to {} with #)",
            settings.amqp_exchange
        );
        loop {
            let delivery = tokio::select! {
                _ = cancel.cancelled() => break,
                d = consumer.next() => d,
            };
            let Some(Ok(d)) = delivery else { break };
            let v: Value = serde_json::from_slice(&d.data).unwrap_or_default();
            println!(
                "event {:<28} subject={:<6} changed={} id={}",
                d.routing_key.as_str(),
                v["subject"].as_str().unwrap_or("?"),
                v["data"]["changed"],
                v["id"].as_str().unwrap_or("?")
            );
            d.ack(BasicAckOptions::default()).await?;
        }
        let _ = conn.close(200, "demo done").await;
        Ok::<_, lapin::Error>(())
    };
    if let Err(e) = consume.await {
        println!("Not printing events: RabbitMQ is not reachable at {} ({e}). Exports and metrics work; events wait in the demo's outbox (a temporary database) until the broker answers.",
            redact_url(settings.amqp_url.expose()));
    }
}

/// Prints one line per finished poll, from the status board: its kind (a full scan, or an
/// incremental poll by the resource's strategy), the Daftra requests it made and its changes.
async fn print_polls(board: Arc<StatusBoard>, cancel: CancellationToken) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (key, s) in board.snapshot() {
            let Some(ended) = s.last_success.clone() else {
                continue;
            };
            if seen.get(&key) == Some(&ended) {
                continue;
            }
            seen.insert(key.clone(), ended);
            let mode = match s.last_mode.map(|m| m.as_str()) {
                Some("incremental") => format!(
                    "incremental ({})",
                    s.strategy.map(|st| st.as_str()).unwrap_or("?")
                ),
                other => other.unwrap_or("?").to_string(),
            };
            let count = |op: &str| s.changes.get(op).copied().unwrap_or(0);
            println!(
                "poll  {key:<20} {mode:<27} {:>4} requests  {:>6} records read  +{} ~{} -{}",
                s.requests,
                match s.last_mode.map(|m| m.as_str()) {
                    Some("incremental") => s.incremental_records,
                    _ => s.full_scan_records,
                },
                count("created"),
                count("updated"),
                count("deleted"),
            );
        }
    }
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration-secs`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let raw = RawEnv::from_env()?;
    let chosen = raw
        .daftra_resources
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEMO_RESOURCES.into());
    let resources = crate::config::resolve_resources(&Some(chosen))?;
    let names: Vec<String> = resources.iter().map(|r| r.name.clone()).collect();
    let sim = Simulator::start_local(SimConfig {
        records: args.records,
        resources: names.clone(),
        ..Default::default()
    })?;
    let (settings, _tmp) = demo_settings(&sim)?;
    crate::telemetry::init(settings.log_format);
    let listener =
        TcpListener::bind(settings.bind_addr).or_else(|_| TcpListener::bind("127.0.0.1:0"))?;
    let app = Application::build_with_listener(settings.clone(), listener)?;
    let base = format!("http://127.0.0.1:{}", app.port);
    let cancel = shutdown_on_signals();
    println!(
        "\ndaftra-bridge demo: {} simulated records each of {} at {}/api2/...",
        args.records,
        names.join(", "),
        sim.base_url
    );
    println!("  Downloads: {base}/   (every export, grouped by area; JSON list: {base}/exports)");
    for r in resources.iter().take(3) {
        println!(
            "  Exports:   {base}/exports/{n}.csv   {base}/exports/{n}.xlsx",
            n = r.name
        );
    }
    println!("  Metrics:   {base}/metrics      Status: {base}/status      Ready: {base}/readyz");
    println!(
        "  Events:    exchange {:?} on {}",
        settings.amqp_exchange,
        redact_url(settings.amqp_url.expose())
    );
    println!("  Database:  {}", settings.database.redacted());
    println!(
        "Records change every {}s; the bridge polls every {}s, reading only what changed, with a full scan every {}s. Ctrl-C stops.\n",
        args.change_every_secs,
        settings.poll_interval.as_secs(),
        settings.full_scan_every.as_secs()
    );
    let token = cancel.clone();
    let printer = tokio::spawn(print_events(settings.clone(), cancel.clone()));
    let board = app.state.health.status.clone();
    tokio::spawn(print_polls(board, cancel.clone()));
    let running = app.spawn(cancel.clone());
    if let Some(secs) = args.duration_secs {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            c.cancel();
        });
    }
    let mut round = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(args.change_every_secs.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tick.tick() => {
                change_some(&sim, round);
                round += 1;
            }
        }
    }
    running.await??;
    let _ = printer.await;
    sim.stop().await;
    println!("demo stopped");
    Ok(())
}
