//! `daftra-bridge demo`: the whole bridge against an in-process simulated tenant whose work
//! orders change every few seconds, with a consumer that prints the events it receives.

use std::net::TcpListener;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{redact_url, DaftraAuth, RawEnv, Secret, Settings};
use crate::sim::{SimConfig, Simulator};
use crate::startup::{shutdown_on_signals, Application};

/// Options of the demo.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Work orders in the simulated tenant.
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
    raw.daftra_page_size.get_or_insert_with(|| "50".into());
    raw.bind_addr.get_or_insert_with(|| "127.0.0.1:8080".into());
    let auth = DaftraAuth::ApiKey(Secret::new("sim-api-key"));
    Ok((
        Settings::from_raw(&raw, Some((sim.base_url.clone(), auth)))?,
        tmp,
    ))
}

/// Makes a few edits: one created, two updated, and now and then one deleted.
fn change_some(sim: &Simulator, round: u64) {
    let mut rng = rand::thread_rng();
    let ids: Vec<i64> = sim
        .state
        .records()
        .iter()
        .filter_map(|r| crate::record::raw_key(&crate::resource::WORK_ORDERS, r))
        .collect();
    let title = if round % 2 == 0 {
        format!("طلب صيانة جديد رقم {round}")
    } else {
        format!("New service request {round}")
    };
    let mut created = Map::new();
    created.insert("title".into(), json!(title));
    created.insert(
        "start_date".into(),
        json!(chrono::Utc::now().format("%Y-%m-%d").to_string()),
    );
    created.insert("status".into(), json!(1));
    created.insert("client_id".into(), json!(rng.gen_range(1..60)));
    created.insert(
        "budget".into(),
        json!(format!("{}.00", rng.gen_range(100..9000))),
    );
    created.insert("budget_currency".into(), json!("SAR"));
    sim.state.create(created);
    for _ in 0..2 {
        if let Some(id) = ids.get(rng.gen_range(0..ids.len().max(1))) {
            let mut f = Map::new();
            f.insert("status".into(), json!(rng.gen_range(1..=4).to_string()));
            f.insert(
                "budget".into(),
                json!(rng.gen_range(100..90_000) as f64 / 10.0),
            );
            sim.state.update(*id, f);
        }
    }
    if round % 3 == 2 {
        if let Some(id) = ids.get(rng.gen_range(0..ids.len().max(1))) {
            sim.state.delete(*id);
        }
    }
}

/// Declares [`DEMO_QUEUE`] bound to every work-order event and prints what arrives.
async fn print_events(settings: Settings, cancel: CancellationToken) {
    let consume = async {
        let conn = crate::publisher::connect(&settings.amqp_url).await?;
        let ch = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(10_000));
        crate::publisher::declare_exchange(&ch, &settings.amqp_exchange).await?;
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
            "work_order.#",
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
            "Reading events from queue {DEMO_QUEUE} (bound to {} with work_order.#)",
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
                "event {:<20} subject={:<6} changed={} id={}",
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

/// Runs the demo until Ctrl-C, SIGTERM or `--duration-secs`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let sim = Simulator::start_local(SimConfig {
        records: args.records,
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
        "\ndaftra-bridge demo: {} simulated work orders at {}/api2/work_orders",
        args.records, sim.base_url
    );
    println!("  Exports:   {base}/exports/work_orders.csv   {base}/exports/work_orders.xlsx   (page: {base}/)");
    println!("  Metrics:   {base}/metrics      Status: {base}/status      Ready: {base}/readyz");
    println!(
        "  Events:    exchange {:?} on {}",
        settings.amqp_exchange,
        redact_url(settings.amqp_url.expose())
    );
    println!("  Database:  {}", settings.database_path.display());
    println!(
        "Work orders change every {}s; the bridge polls every {}s. Ctrl-C stops.\n",
        args.change_every_secs,
        settings.poll_interval.as_secs()
    );
    let token = cancel.clone();
    let printer = tokio::spawn(print_events(settings.clone(), cancel.clone()));
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
