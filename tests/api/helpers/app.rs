//! The simulator and the whole bridge in this process, on random ports, with a unique exchange
//! per test on the real local RabbitMQ.

use std::net::TcpListener;
use std::time::Duration;

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::config::{DaftraAuth, RawEnv, Secret, Settings};
use daftra_bridge::http::AppState;
use daftra_bridge::poller::{PollOutcome, Poller};
use daftra_bridge::sim::{SimConfig, Simulator};
use daftra_bridge::startup::Application;
use tokio_util::sync::CancellationToken;

use super::amqp::{amqp_url, declare_exchange, delete_exchange, unique};

/// Knobs of one test bridge.
pub struct Options {
    pub records: usize,
    pub page_size: u32,
    pub concurrency: usize,
    pub max_retries: u32,
    pub emit_initial: bool,
    pub export_token: Option<String>,
    pub amqp_url: Option<String>,
    pub auth: Option<DaftraAuth>,
    pub sim: Option<SimConfig>,
    /// Start the publisher (and its AMQP connection).
    pub publisher: bool,
    /// `DAFTRA_RESOURCES`; unset means the default (work orders).
    pub resources: Option<String>,
    /// `DAFTRA_TIMEZONE`; unset means UTC.
    pub timezone: Option<String>,
    /// `ADMIN_TOKEN` (the webhook admin API).
    pub admin_token: Option<String>,
    /// `INBOUND_WEBHOOK_TOKEN`.
    pub inbound_token: Option<String>,
    /// `WEBHOOK_RETRY_SCHEDULE_SECS`.
    pub webhook_schedule: Option<String>,
    /// `WEBHOOK_TIMEOUT_SECS`.
    pub webhook_timeout: Option<String>,
    /// `WEBHOOK_ALLOW_PRIVATE_TARGETS` (true by default here: receivers listen on loopback).
    pub allow_private: bool,
    /// Run the periodic poll loop (off by default: tests call `poll()`).
    pub poll_loop: bool,
    /// `AMQP_EXCHANGE`; unset means a unique name.
    pub amqp_exchange: Option<String>,
    /// `DATABASE_URL`; unset means a SQLite file in the test's folder.
    pub database_url: Option<String>,
}

impl Options {
    /// Defaults, with no publisher: for tests of exports, polls and the upstream alone.
    pub fn without_publisher() -> Self {
        Options {
            publisher: false,
            ..Default::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            records: 45,
            page_size: 10,
            concurrency: 3,
            max_retries: 4,
            emit_initial: false,
            export_token: None,
            amqp_url: None,
            auth: None,
            sim: None,
            publisher: true,
            resources: None,
            timezone: None,
            admin_token: None,
            inbound_token: None,
            webhook_schedule: None,
            webhook_timeout: None,
            allow_private: true,
            poll_loop: false,
            amqp_exchange: None,
            database_url: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub sim: Simulator,
    pub poller: Poller,
    pub state: AppState,
    pub exchange: String,
    pub http: reqwest::Client,
    pub cancel: CancellationToken,
    /// Keeps the database folder until the test ends.
    pub _db: tempfile::TempDir,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a bridge against `sim`, with a fresh database and a unique exchange.
pub fn settings_for(sim: &Simulator, opts: &Options, db: &tempfile::TempDir) -> Settings {
    let raw = RawEnv {
        daftra_page_size: Some(opts.page_size.to_string()),
        daftra_concurrency: Some(opts.concurrency.to_string()),
        daftra_max_retries: Some(opts.max_retries.to_string()),
        daftra_max_backoff_secs: Some("2".into()),
        daftra_timeout_secs: Some("5".into()),
        poll_interval_secs: Some("3600".into()),
        poll_deadline_secs: Some("60".into()),
        poll_emit_initial: Some(opts.emit_initial.to_string()),
        database_url: Some(
            opts.database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}/bridge.sqlite3", db.path().display())),
        ),
        amqp_url: Some(opts.amqp_url.clone().unwrap_or_else(amqp_url)),
        amqp_exchange: Some(
            opts.amqp_exchange
                .clone()
                .unwrap_or_else(|| unique("exchange")),
        ),
        publish_confirm_timeout_secs: Some("5".into()),
        bind_addr: Some("127.0.0.1:0".into()),
        export_token: opts.export_token.clone(),
        daftra_resources: opts.resources.clone(),
        daftra_timezone: opts.timezone.clone(),
        shutdown_deadline_secs: Some("5".into()),
        admin_token: opts.admin_token.clone(),
        inbound_webhook_token: opts.inbound_token.clone(),
        webhook_retry_schedule_secs: opts.webhook_schedule.clone(),
        webhook_timeout_secs: opts.webhook_timeout.clone(),
        webhook_allow_private_targets: Some(opts.allow_private.to_string()),
        ..Default::default()
    };
    let auth = opts
        .auth
        .clone()
        .unwrap_or_else(|| DaftraAuth::ApiKey(Secret::new("sim-api-key")));
    Settings::from_raw(&raw, Some((sim.base_url.clone(), auth))).expect("test settings")
}

/// Starts a simulator and a bridge against it; the poll loop is off, tests call `poll()`.
pub async fn spawn_app(opts: Options) -> TestApp {
    let sim_config = opts.sim.clone().unwrap_or(SimConfig {
        records: opts.records,
        ..Default::default()
    });
    let sim = Simulator::start_local(sim_config).expect("simulator");
    let db = tempfile::tempdir().expect("temp dir");
    let settings = settings_for(&sim, &opts, &db);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut app = Application::build_with_listener(settings.clone(), listener).expect("app");
    app.poll_loop = opts.poll_loop;
    app.publish = opts.publisher;
    let (port, poller, state) = (app.port, app.poller.clone(), app.state.clone());
    let exchange = settings.amqp_exchange.clone();
    let cancel = CancellationToken::new();
    let running = Some(app.spawn(cancel.clone()));
    let test_app = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        sim,
        poller,
        state,
        exchange,
        http: reqwest::Client::new(),
        cancel,
        _db: db,
        running,
    };
    if opts.publisher && opts.amqp_exchange.is_none() {
        // Declare the exchange now so that queues can bind before the first publish.
        declare_exchange(&test_app.exchange).await;
    }
    // On PostgreSQL the election must be won before a poll may commit.
    let mut role = test_app.state.role.clone();
    tokio::time::timeout(
        Duration::from_secs(15),
        role.wait_for(|r| *r == daftra_bridge::leader::Role::Leader),
    )
    .await
    .expect("the only replica leads")
    .unwrap();
    test_app
}

impl TestApp {
    /// One poll of `name`.
    pub async fn poll_resource(&self, name: &str) -> PollOutcome {
        let r = daftra_bridge::catalogue::by_name(name).expect("declared");
        self.poller.poll_once(r).await.expect("poll succeeds")
    }

    /// One poll of work orders.
    pub async fn poll(&self) -> PollOutcome {
        self.poller
            .poll_once(default_resource())
            .await
            .expect("poll succeeds")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("request")
    }

    /// Current metrics text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// Stops the bridge gracefully, and deletes its test exchange from the shared broker.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(r) = self.running.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), r).await;
        }
        self.sim.stop().await;
        if self.exchange.starts_with("test.") {
            delete_exchange(&self.exchange).await;
        }
    }
}

/// A `daftra-bridge serve` child process, killed with SIGKILL when dropped (a crash).
pub struct ServeProcess(pub std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the built `daftra-bridge serve` against `sim_url`, with its store at `db` and HTTP on
/// `port`, in a clean environment plus `extra` (which may override the defaults).
pub fn start_serve(
    sim_url: &str,
    db: &std::path::Path,
    port: u16,
    extra: &[(&str, String)],
) -> ServeProcess {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_daftra-bridge"));
    c.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DAFTRA_BASE_URL", sim_url)
        .env("DAFTRA_API_KEY", "sim-api-key")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in extra {
        c.env(k, v);
    }
    ServeProcess(c.spawn().expect("the built daftra-bridge binary"))
}
