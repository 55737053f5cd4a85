//! Webhook sink figures: signed deliveries per second from the outbox to a local receiver with
//! `--endpoints` endpoints, and the RabbitMQ publish rate with no endpoint and with one that
//! never answers.
//!
//! `cargo bench --bench webhooks -- --events 20000 --endpoints 10`
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest). Prints a table; BENCHMARKS.md quotes it.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;
use daftra_bridge::catalogue::default_resource;
use daftra_bridge::config::{DaftraAuth, RawEnv, Secret, Settings};
use daftra_bridge::sim::{SimConfig, Simulator};
use daftra_bridge::sinks::amqp as publisher;
use daftra_bridge::startup::{Application, Parts};
use daftra_bridge::store::{NewEndpoint, Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "webhooks")]
struct Args {
    /// Events appended to the outbox per run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Endpoints receiving every event.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, hide = true)]
    bench: bool,
}

/// Requests received per path; `/hang` never answers.
#[derive(Default)]
struct Counts(Mutex<HashMap<String, u64>>, AtomicU64);

async fn receive(
    req: HttpRequest,
    _body: web::Bytes,
    counts: web::Data<Arc<Counts>>,
) -> HttpResponse {
    if req.path() == "/hang" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    *counts
        .0
        .lock()
        .unwrap()
        .entry(req.path().to_string())
        .or_default() += 1;
    counts.1.fetch_add(1, Ordering::Relaxed);
    HttpResponse::NoContent().finish()
}

fn start_receiver(counts: Arc<Counts>) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let data = web::Data::new(counts);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .backlog(4096)
    .disable_signals()
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(port)
}

fn settings(args: &Args, sim: &Simulator, db: &std::path::Path) -> Settings {
    let raw = RawEnv {
        database_url: Some(format!("sqlite://{}", db.display())),
        amqp_url: Some(args.amqp_url.clone()),
        amqp_exchange: Some(format!(
            "bench.webhooks.{}.{:x}",
            std::process::id(),
            rand::random::<u32>()
        )),
        bind_addr: Some("127.0.0.1:0".into()),
        poll_interval_secs: Some("86400".into()),
        webhook_allow_private_targets: Some("true".into()),
        webhook_timeout_secs: Some("300".into()),
        ..Default::default()
    };
    let auth = DaftraAuth::ApiKey(Secret::new("sim-api-key"));
    Settings::from_raw(&raw, Some((sim.base_url.clone(), auth))).expect("bench settings")
}

/// One run: a fresh bridge with `urls` as endpoints, `n` events committed at once; returns the
/// seconds until RabbitMQ confirmed them all and until the receiver counted `expect` requests.
async fn run(
    args: &Args,
    sim: &Simulator,
    urls: &[String],
    counts: &Counts,
    expect: u64,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let settings = settings(args, sim, &dir.path().join("bridge.sqlite3"));
    let exchange = settings.amqp_exchange.clone();
    let conn = publisher::connect(&settings.amqp_url).await?;
    let channel = conn.create_channel().await?;
    publisher::declare_exchange(&channel, &exchange).await?;
    common::bind_bounded_queue(&channel, &exchange, "#").await?;
    let app = Application::build_with_listener(settings, TcpListener::bind("127.0.0.1:0")?)?;
    let store: Store = app.state.store.clone();
    for (i, url) in urls.iter().enumerate() {
        let new = NewEndpoint {
            url: url.clone(),
            events: vec!["#".into()],
            description: format!("bench {i}"),
        };
        store.create_endpoint(
            &format!("ep_bench{i}"),
            &new,
            &daftra_bridge::sinks::webhook::signature::new_secret(),
        )?;
    }
    let signal = app.poller.outbox.clone();
    let cancel = CancellationToken::new();
    let parts = Parts {
        poll_loop: false,
        sinks: true,
    };
    let running = app.spawn_parts(parts, cancel.clone());
    let batch = common::updated_events(&sim.base_url, args.events);
    counts.1.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.commit_poll(&default_resource().name, &[], &batch))
        .await??;
    signal.appended(args.events);
    let (mut amqp, mut hooks) = (None, None);
    while amqp.is_none() || hooks.is_none() {
        if amqp.is_none() && store.outbox_len()? == 0 {
            amqp = Some(started.elapsed().as_secs_f64());
        }
        if hooks.is_none() && counts.1.load(Ordering::SeqCst) >= expect {
            hooks = Some(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "a run took more than 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    let _ = channel
        .exchange_delete(&exchange, lapin::options::ExchangeDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench done").await;
    Ok((amqp.unwrap_or_default(), hooks.unwrap_or_default()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sim = Simulator::start_local(SimConfig {
        records: 1,
        ..Default::default()
    })?;
    let counts = Arc::new(Counts::default());
    let port = start_receiver(counts.clone())?;
    let n = args.events as f64;
    let healthy: Vec<String> = (0..args.endpoints)
        .map(|i| format!("http://127.0.0.1:{port}/e{i}"))
        .collect();
    let hanging = vec![format!("http://127.0.0.1:{port}/hang")];

    eprintln!("webhooks: {} events, no endpoint", args.events);
    let (alone, _) = run(&args, &sim, &[], &counts, 0).await?;
    eprintln!(
        "webhooks: {} events, one endpoint that never answers",
        args.events
    );
    let (beside_hang, _) = run(&args, &sim, &hanging, &counts, 0).await?;
    eprintln!(
        "webhooks: {} events to {} endpoints",
        args.events, args.endpoints
    );
    let expect = (args.events * args.endpoints) as u64;
    let (beside_healthy, delivered) = run(&args, &sim, &healthy, &counts, expect).await?;
    sim.stop().await;

    let rows = [
        (
            format!(
                "Signed webhook deliveries ({} events x {} endpoints, local receiver)",
                args.events, args.endpoints
            ),
            format!("{:.0}/s", expect as f64 / delivered),
            "at least 2,000/s",
        ),
        (
            "RabbitMQ publish rate, no webhook endpoint".to_string(),
            format!("{:.0}/s", n / alone),
            "reference",
        ),
        (
            "RabbitMQ publish rate, one endpoint that never answers".to_string(),
            format!("{:.0}/s", n / beside_hang),
            "unchanged",
        ),
        (
            format!(
                "RabbitMQ publish rate, while {} endpoints receive",
                args.endpoints
            ),
            format!("{:.0}/s", n / beside_healthy),
            "(shares 2 cores)",
        ),
    ];
    println!("\n| figure | value | goal |\n| --- | --- | --- |");
    for (name, value, goal) in rows {
        println!("| {name} | {value} | {goal} |");
    }
    Ok(())
}
