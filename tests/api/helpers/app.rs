//! The simulator and the whole bridge in this process, on random ports, with a unique exchange
//! per test on the real local RabbitMQ.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::config::DaftraAuth;
use daftra_bridge::feed::Feed;
use daftra_bridge::http::AppState;
use daftra_bridge::poller::{PollOutcome, Poller};
use daftra_bridge::sim::{SimConfig, Simulator};
use daftra_bridge::startup::{Application, Parts};
use tokio_util::sync::CancellationToken;

use super::amqp::{amqp_url, declare_exchange, delete_exchange, unique};
use super::env::{sqlite_url, BridgeEnv, SIM_API_KEY};

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
    /// Any other variables, set last (they override the ones above).
    pub extra: Vec<(&'static str, String)>,
}

impl Options {
    /// Defaults, with no publisher: for tests of exports, polls and the upstream alone.
    pub fn without_publisher() -> Self {
        Options {
            publisher: false,
            ..Default::default()
        }
    }

    /// The environment of a bridge with these options against the simulator at `sim_url`, its
    /// SQLite file (unless `database_url`) in the folder `db` and a unique exchange (unless
    /// `amqp_exchange`); an hour between polls, short timeouts and deadlines.
    pub fn env(&self, sim_url: &str, db: &Path) -> BridgeEnv {
        let auth = match self.auth.clone() {
            None => BridgeEnv::new().set("DAFTRA_API_KEY", SIM_API_KEY),
            Some(DaftraAuth::ApiKey(key)) => BridgeEnv::new().set("DAFTRA_API_KEY", key.expose()),
            Some(DaftraAuth::OAuth {
                client_id,
                client_secret,
                username,
                password,
            }) => BridgeEnv::new()
                .set("DAFTRA_CLIENT_ID", client_id)
                .set("DAFTRA_CLIENT_SECRET", client_secret.expose())
                .set("DAFTRA_USERNAME", username)
                .set("DAFTRA_PASSWORD", password.expose()),
        };
        let database = self
            .database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&db.join("bridge.sqlite3")));
        let exchange = self
            .amqp_exchange
            .clone()
            .unwrap_or_else(|| unique("exchange"));
        auth.set("DAFTRA_BASE_URL", sim_url)
            .set("DAFTRA_PAGE_SIZE", self.page_size.to_string())
            .set("DAFTRA_CONCURRENCY", self.concurrency.to_string())
            .set("DAFTRA_MAX_RETRIES", self.max_retries.to_string())
            .set("DAFTRA_MAX_BACKOFF_SECS", "2")
            .set("DAFTRA_TIMEOUT_SECS", "5")
            .set("POLL_INTERVAL_SECS", "3600")
            .set("POLL_DEADLINE_SECS", "60")
            .set("POLL_EMIT_INITIAL", self.emit_initial.to_string())
            // Tests of what full scans do poll in full; tests of incremental polls set `auto`.
            .set("POLL_STRATEGY", "full")
            .set("DATABASE_URL", database)
            .set("AMQP_URL", self.amqp_url.clone().unwrap_or_else(amqp_url))
            .set("AMQP_EXCHANGE", exchange)
            .set("PUBLISH_CONFIRM_TIMEOUT_SECS", "5")
            .set("BIND_ADDR", "127.0.0.1:0")
            .set_some("EXPORT_TOKEN", self.export_token.as_ref())
            .set_some("DAFTRA_RESOURCES", self.resources.as_ref())
            .set_some("DAFTRA_TIMEZONE", self.timezone.as_ref())
            .set("SHUTDOWN_DEADLINE_SECS", "5")
            .set_some("ADMIN_TOKEN", self.admin_token.as_ref())
            .set_some("INBOUND_WEBHOOK_TOKEN", self.inbound_token.as_ref())
            .set_some(
                "WEBHOOK_RETRY_SCHEDULE_SECS",
                self.webhook_schedule.as_ref(),
            )
            .set_some("WEBHOOK_TIMEOUT_SECS", self.webhook_timeout.as_ref())
            .set(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS",
                self.allow_private.to_string(),
            )
            .set_all(&self.extra)
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
            extra: Vec::new(),
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
    /// Deletes the test's own exchange when the test ends, whether it stopped the app or not.
    _exchange: Option<super::ExchangeGuard>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts a simulator and a bridge against it; the poll loop is off, tests call `poll()`.
pub async fn spawn_app(opts: Options) -> TestApp {
    let sim_config = opts.sim.clone().unwrap_or(SimConfig {
        records: opts.records,
        ..Default::default()
    });
    let sim = Simulator::start_local(sim_config).expect("simulator");
    let db = tempfile::tempdir().expect("temp dir");
    let settings = opts.env(&sim.base_url, db.path()).settings();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build_with_listener(settings.clone(), listener).expect("app");
    let parts = Parts {
        poll_loop: opts.poll_loop,
        sinks: opts.publisher,
    };
    let (port, poller, state) = (app.port, app.poller.clone(), app.state.clone());
    let exchange = settings.amqp_exchange.clone();
    let cancel = CancellationToken::new();
    let running = Some(app.spawn_parts(parts, cancel.clone()));
    let guard = (opts.publisher && opts.amqp_exchange.is_none())
        .then(|| super::ExchangeGuard(exchange.clone()));
    let test_app = TestApp {
        base: format!("http://127.0.0.1:{port}"),
        sim,
        poller,
        state,
        exchange,
        http: reqwest::Client::new(),
        cancel,
        _db: db,
        _exchange: guard,
        running,
    };
    if opts.publisher && opts.amqp_exchange.is_none() {
        // Declare the exchange now so that queues can bind before the first publish.
        declare_exchange(&test_app.exchange).await;
    }
    // On PostgreSQL the election must be won before a poll may commit.
    let mut role = test_app.state.health.role.clone();
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
    /// The feed of the resource named `name` (it must be enabled).
    pub fn feed(&self, name: &str) -> Feed {
        self.state
            .served
            .feeds
            .by_resource(name)
            .expect("an enabled resource")
            .clone()
    }

    /// One poll of `name`.
    pub async fn poll_resource(&self, name: &str) -> PollOutcome {
        self.poller
            .poll_once(&self.feed(name))
            .await
            .expect("poll succeeds")
    }

    /// One poll of work orders.
    pub async fn poll(&self) -> PollOutcome {
        self.poller
            .poll_once(&self.feed(&default_resource().name))
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
