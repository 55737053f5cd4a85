//! Builds the whole bridge (store, account, feeds, poller, sinks, HTTP server) from settings, on
//! a listener that may be port 0, and runs it until a cancellation token fires.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::HttpServer;
use anyhow::Context;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::account::{Account, DEFAULT_ACCOUNT};
use crate::config::Settings;
use crate::feed::{Feed, Feeds};
use crate::http::gate::Gate;
use crate::http::{self, Admin, AppState, ExportLimits, Health, Served};
use crate::leader::{self, Announce, Lease, Role};
use crate::metrics::Metrics;
use crate::poller::{ChangePolicy, PollTrigger, Poller};
use crate::sinks::amqp::Publisher;
use crate::sinks::webhook::WebhookSink;
use crate::sinks::OutboxSignal;
use crate::status::{BrokerState, StatusBoard};
use crate::store::Store;

/// Which of the leader's parts run: all of them in `serve`; tests that drive polls or the
/// outbox themselves leave some out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    /// Each feed's periodic poll loop (polls on demand and by webhook need it too).
    pub poll_loop: bool,
    /// The RabbitMQ and webhook sinks.
    pub sinks: bool,
}

impl Parts {
    /// Every part: what `serve` runs.
    pub const ALL: Parts = Parts {
        poll_loop: true,
        sinks: true,
    };
}

/// A built, not yet running, bridge.
pub struct Application {
    listener: TcpListener,
    /// The bound HTTP port (useful when binding port 0).
    pub port: u16,
    pub state: AppState,
    pub poller: Poller,
    pub publisher: Publisher,
    /// The webhook sink (runs with the publisher).
    pub webhooks: WebhookSink,
    pub settings: Settings,
    /// Where the leader election announces this replica's role (read by `state.health.role`).
    role: watch::Sender<Role>,
}

/// The status board of `feeds`, with each feed's last poll as the previous run (or the
/// leader) left it in the store, and the freshness gauge set from it.
fn restore_status(store: &Store, metrics: &Metrics, feeds: &Feeds) -> Arc<StatusBoard> {
    let keys: Vec<&str> = feeds.all().iter().map(Feed::key).collect();
    let status = Arc::new(StatusBoard::new(&keys));
    for (key, s) in status.merge_saved(&store.poll_statuses().unwrap_or_default()) {
        let at = s
            .last_success
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let (Some(at), Some(feed)) = (at, feeds.by_key(&key)) {
            metrics.poll_succeeded_at(feed.name(), at.timestamp() as f64);
        }
    }
    status
}

impl Application {
    /// Opens the store, builds every part and binds `settings.bind_addr`.
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.bind_addr).with_context(|| {
            format!(
                "binding the HTTP listener to {} (BIND_ADDR)",
                settings.bind_addr
            )
        })?;
        Self::build_with_listener(settings, listener)
    }

    /// As [`Application::build`], on an already bound listener.
    pub fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        let metrics = Metrics::new();
        let store = open_store(&settings)?;
        let account = Account::new(DEFAULT_ACCOUNT, settings.daftra.clone(), metrics.clone());
        let feeds = Feeds::of(&account, &settings.resources);
        let names: Vec<&str> = feeds.all().iter().map(Feed::name).collect();
        metrics.init_resources(&names);
        let status = restore_status(&store, &metrics, &feeds);
        let initial = leader::initial_role(&store);
        metrics.set_leader(initial == Role::Leader);
        metrics.set_store_up(true);
        let (role, role_rx) = watch::channel(initial);
        let outbox = Arc::new(OutboxSignal::new(metrics.clone()));
        let lease = Arc::new(Lease::for_store(&store));
        let broker = Arc::new(BrokerState::default());
        let poller = Poller {
            store: store.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
            outbox: outbox.clone(),
            emit_initial: settings.poll_emit_initial,
            deadline: settings.poll_deadline,
            event_max_bytes: settings.event_max_bytes,
            parallel: Arc::new(Semaphore::new(settings.poll_max_parallel)),
            unreadable_seen: Default::default(),
            changes: Arc::new(ChangePolicy::new(
                settings.poll_strategy,
                settings.poll_strategies.clone(),
                settings.full_scan_every,
                settings.poll_overlap,
            )),
            schema_base: Some(settings.public_url.as_str().into()),
        };
        let publisher = Publisher {
            store: store.clone(),
            metrics: metrics.clone(),
            amqp_url: settings.amqp_url.clone(),
            exchange: settings.amqp_exchange.clone(),
            confirm_timeout: settings.confirm_timeout,
            outbox: outbox.clone(),
            broker: broker.clone(),
            lease: lease.clone(),
        };
        let webhooks = WebhookSink::new(&publisher, settings.webhooks.clone())?;
        let state = AppState {
            store,
            metrics,
            served: served(&settings, feeds),
            health: Health {
                status,
                broker,
                role: role_rx,
            },
            exports: ExportLimits {
                xlsx_builds: Arc::new(Semaphore::new(settings.max_xlsx_builds)),
                xlsx_shared: Default::default(),
            },
            admin: Admin {
                settings: Arc::new(settings.webhooks.clone()),
                endpoints_changed: webhooks.endpoints_changed.clone(),
                outbox: poller.outbox.clone(),
            },
            access: Arc::new(gate(&settings, &poller.store)?),
            docs: Arc::new(event_docs(&settings)),
        };
        Ok(Application {
            listener,
            port,
            state,
            poller,
            publisher,
            webhooks,
            settings,
            role,
        })
    }

    /// Runs every part until `cancel` fires: see [`Application::run_parts`].
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        self.run_parts(Parts::ALL, cancel).await
    }

    /// Runs the HTTP server, the leader election and, while leading, the `parts` asked for,
    /// until `cancel` fires; then stops polling, lets in-flight requests finish, drains the
    /// outbox within the shutdown deadline and closes the AMQP connection.
    pub async fn run_parts(self, parts: Parts, cancel: CancellationToken) -> anyhow::Result<()> {
        let deadline = self.settings.shutdown_deadline;
        let state = self.state.clone();
        let server = HttpServer::new(move || http::app(state.clone()))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(deadline.as_secs())
            .listen(self.listener)?
            .run();
        let handle = server.handle();
        let tracker = TaskTracker::new();
        tracker.spawn(server);
        // The election runs until the leader's work has stopped, then gives the lock up, so a
        // successor never starts while this replica still publishes.
        let release = CancellationToken::new();
        tracker.spawn_blocking({
            let (store, metrics, release) = (
                self.state.store.clone(),
                self.state.metrics.clone(),
                release.clone(),
            );
            let announce = Announce {
                holder: self.settings.advertise_url.clone(),
                role: self.role.clone(),
                lease: self.publisher.lease.clone(),
            };
            move || leader::run_election(store, metrics, announce, release)
        });
        let lead = LeaderWork {
            poller: self.poller.clone(),
            publisher: self.publisher.clone(),
            webhooks: self.webhooks.clone(),
            settings: self.settings.clone(),
            served: self.state.served.clone(),
            parts,
        };
        tracker.spawn(lead.run_while_leading(self.role.subscribe(), cancel.clone(), release));
        tracker.spawn(record_key_use(self.state.clone(), cancel.clone()));
        for account in self.state.served.feeds.accounts() {
            let status = self.state.health.status.clone();
            tracker.spawn(read_site_zone(account.clone(), status, cancel.clone()));
            tracker.spawn(probe_credentials(account, cancel.clone()));
        }
        tracker.close();
        warn_unused_intervals(&self.settings);
        tracing::info!(port = self.port, "daftra-bridge running");
        cancel.cancelled().await;
        tracing::info!("Shutting down");
        handle.stop(true).await;
        if tokio::time::timeout(deadline + std::time::Duration::from_secs(5), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Some tasks did not stop within the shutdown deadline");
        }
        Ok(())
    }

    /// Spawns [`Application::run_until_stopped`] on the current runtime.
    pub fn spawn(self, cancel: CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.spawn_parts(Parts::ALL, cancel)
    }

    /// Spawns [`Application::run_parts`] on the current runtime.
    pub fn spawn_parts(
        self,
        parts: Parts,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        tokio::spawn(self.run_parts(parts, cancel))
    }
}

/// The store of `settings`, its secrets sealed with `BRIDGE_SECRETS_KEY` (any stored in clear,
/// or under the previous key, sealed again now); without a key, a warning that they are not.
fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database)
        .with_context(|| {
            format!(
                "opening the store at {} (DATABASE_URL)",
                settings.database.redacted()
            )
        })?
        .sealing(settings.secrets_keys.clone());
    // A secret that does not open (a key lost or changed without a rotation) stops start-up
    // naming the variable, rather than every delivery failing later.
    store.endpoints()?;
    if !settings.secrets_keys.seals() {
        tracing::warn!("BRIDGE_SECRETS_KEY is not set: webhook signing secrets and the link signing key are stored in clear in the database (README: Webhooks, Access)");
    }
    let resealed = store
        .reseal_secrets()
        .context("sealing the stored secrets with BRIDGE_SECRETS_KEY")?;
    if resealed > 0 {
        tracing::info!(
            endpoints = resealed,
            "Stored webhook secrets sealed with BRIDGE_SECRETS_KEY"
        );
    }
    Ok(store)
}

/// The AsyncAPI document and the events' schemas of the served resources.
fn event_docs(settings: &Settings) -> http::schemas::EventDocs {
    http::schemas::EventDocs::new(&crate::events::asyncapi::Deployment {
        resources: &settings.resources,
        amqp_url: &crate::config::redact_url(settings.amqp_url.expose()),
        exchange: &settings.amqp_exchange,
        public_url: &settings.public_url,
    })
}

/// The credentials in force: `EXPORT_TOKEN` and the link signing key (`LINK_SIGNING_KEY`, or
/// the one made once and kept in the store).
fn gate(settings: &Settings, store: &Store) -> anyhow::Result<Gate> {
    let link_key = match &settings.link_signing_key {
        Some(k) => k.clone(),
        None => store.link_signing_key().context("the link signing key")?,
    };
    Ok(Gate::new(settings.export_token.clone(), link_key))
}

/// Writes the access keys' use (requests, last use) to the store every few seconds, and once
/// more at shutdown.
async fn record_key_use(state: AppState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
        };
        let uses = state.access.take_usage();
        if !uses.is_empty() {
            let store = state.store.clone();
            let written = tokio::task::spawn_blocking(move || store.record_key_use(&uses)).await;
            if let Ok(Err(e)) = written {
                tracing::warn!(error = %e, "Could not record the access keys' use");
            }
        }
        if stop {
            return;
        }
    }
}

/// The feeds served with a poll trigger and the poll interval of each.
fn served(settings: &Settings, feeds: Feeds) -> Served {
    let triggers = feeds
        .all()
        .iter()
        .map(|f| {
            let trigger = PollTrigger::new(settings.webhooks.inbound_min_interval);
            (f.key().to_string(), Arc::new(trigger))
        })
        .collect();
    let intervals = feeds
        .all()
        .iter()
        .map(|f| (f.key().to_string(), settings.interval_for(f.name())))
        .collect::<HashMap<_, _>>();
    Served {
        feeds,
        triggers: Arc::new(triggers),
        intervals: Arc::new(intervals),
    }
}

/// A `POLL_INTERVAL_SECS_{NAME}` of a resource that is not served has no effect: say so.
fn warn_unused_intervals(settings: &Settings) {
    for name in settings.poll_intervals.keys() {
        if !settings.resources.iter().any(|r| &r.name == name) {
            tracing::warn!(resource = %name, "POLL_INTERVAL_SECS_{} is set but {name} is not in DAFTRA_RESOURCES; it has no effect", name.to_uppercase());
        }
    }
}

/// The zone Daftra reports for `account`, for `/status`: read once, never in the way of
/// anything; a zone other than the one in use is logged.
async fn read_site_zone(account: Arc<Account>, status: Arc<StatusBoard>, stop: CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        zone = account.client.site_zone() => {
            let zone = match zone {
                Ok(z) => Ok(z.unwrap_or_default()),
                Err(e) => Err(e.to_string()),
            };
            let in_use = account.clock.zone.name();
            if let Ok(crate::daftra::SiteZone { zone: Some(z), .. }) = &zone {
                if z != in_use {
                    tracing::warn!(daftra = %z, in_use,
                        "Daftra reports another time zone for the account than DAFTRA_TIMEZONE");
                }
            }
            status.set_site_zone(zone);
        }
    }
}

/// While Daftra refuses `account`'s credentials, asks its Site Info with backoff until they pass
/// (every feed's poll then runs at once).
async fn probe_credentials(account: Arc<Account>, cancel: CancellationToken) {
    let client = account.client.clone();
    let probe = move || {
        let client = client.clone();
        async move {
            let _ = client.site_zone().await;
        }
    };
    account
        .client
        .credentials()
        .probe_while_refused(probe, cancel)
        .await;
}

/// What only the leader runs: the poll loops, the publisher and the webhook sink.
struct LeaderWork {
    poller: Poller,
    publisher: Publisher,
    webhooks: WebhookSink,
    settings: Settings,
    served: Served,
    parts: Parts,
}

impl LeaderWork {
    /// Starts the leader's work each time this replica becomes the leader and stops it (with
    /// its in-flight work) when it stops being one; at shutdown, lets the publisher drain, then
    /// fires `release` so the election gives the lock up.
    async fn run_while_leading(
        self,
        mut role: watch::Receiver<Role>,
        cancel: CancellationToken,
        release: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                led = role.wait_for(|r| *r == Role::Leader) => if led.is_err() { break },
            }
            let work = cancel.child_token();
            let tasks = self.start(&work);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = role.wait_for(|r| *r != Role::Leader) => work.cancel(),
            }
            tasks.wait().await;
            if cancel.is_cancelled() {
                break;
            }
        }
        release.cancel();
    }

    /// Starts the parts asked for, each until `work` is cancelled.
    fn start(&self, work: &CancellationToken) -> TaskTracker {
        let tasks = TaskTracker::new();
        if self.parts.poll_loop {
            for feed in self.served.feeds.all() {
                tasks.spawn(
                    self.poller.clone().run(
                        feed.clone(),
                        self.served
                            .interval(feed.key())
                            .unwrap_or(self.settings.poll_interval),
                        self.settings.unavailable_retry,
                        self.served.triggers[feed.key()].clone(),
                        work.clone(),
                    ),
                );
            }
        }
        if self.parts.sinks {
            tasks.spawn(
                self.publisher
                    .clone()
                    .run(work.clone(), self.settings.shutdown_deadline),
            );
            tasks.spawn(self.webhooks.clone().run(work.clone()));
        }
        tasks.close();
        tasks
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        c.cancel();
    });
    cancel
}
