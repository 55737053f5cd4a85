//! Builds the whole bridge (store, client, poller, publisher, HTTP server) from settings, on a
//! listener that may be port 0, and runs it until a cancellation token fires.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::HttpServer;
use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::daftra::DaftraClient;
use crate::http::{self, AppState};
use crate::leader::{self, Role};
use crate::metrics::Metrics;
use crate::poller::{PollTrigger, Poller};
use crate::sinks::amqp::Publisher;
use crate::sinks::webhook::WebhookSink;
use crate::status::{BrokerState, StatusBoard};
use crate::store::Store;

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
    /// Run the periodic poll loop (tests drive `poller.poll_once` themselves instead).
    pub poll_loop: bool,
    /// Run the publisher (tests of the outbox alone turn it off).
    pub publish: bool,
    /// Where the leader election announces this replica's role (read by `state.role`).
    role: tokio::sync::watch::Sender<Role>,
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
        let store = Store::connect(&settings.database).with_context(|| {
            format!(
                "opening the store at {} (DATABASE_URL)",
                settings.database.redacted()
            )
        })?;
        let client = Arc::new(DaftraClient::new(settings.daftra.clone(), metrics.clone()));
        let names: Vec<&str> = settings.resources.iter().map(|r| r.name.as_str()).collect();
        metrics.init_resources(&names);
        let status = Arc::new(StatusBoard::new(&names));
        // The last poll of each resource, as the previous run (or the leader) left it.
        for (name, s) in status.merge_saved(&store.poll_statuses().unwrap_or_default()) {
            if let Some(at) = s
                .last_success
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                metrics
                    .poll_last_success
                    .with_label_values(&[&name])
                    .set(at.timestamp() as f64);
            }
        }
        let initial = leader::initial_role(&store);
        metrics.leader.set(i64::from(initial == Role::Leader));
        metrics.store_up.set(1);
        let (role, role_rx) = tokio::sync::watch::channel(initial);
        let broker = Arc::new(BrokerState::default());
        let outbox_notify = Arc::new(crate::sinks::OutboxSignal::default());
        let triggers: HashMap<_, _> = settings
            .resources
            .iter()
            .map(|r| (r.name.as_str(), Arc::new(PollTrigger::default())))
            .collect();
        let poller = Poller {
            store: store.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
            outbox_notify: outbox_notify.clone(),
            emit_initial: settings.poll_emit_initial,
            deadline: settings.poll_deadline,
            parallel: Arc::new(Semaphore::new(settings.poll_max_parallel)),
            unreadable_seen: Default::default(),
        };
        let publisher = Publisher {
            store: store.clone(),
            metrics: metrics.clone(),
            amqp_url: settings.amqp_url.clone(),
            exchange: settings.amqp_exchange.clone(),
            confirm_timeout: settings.confirm_timeout,
            notify: outbox_notify.clone(),
            broker: broker.clone(),
        };
        let webhooks = WebhookSink::new(
            store.clone(),
            metrics.clone(),
            settings.webhooks.clone(),
            outbox_notify,
        )?;
        let state = AppState {
            store,
            metrics,
            client,
            status,
            broker,
            triggers: Arc::new(triggers),
            resources: Arc::new(settings.resources.clone()),
            export_token: settings.export_token.clone(),
            xlsx_builds: Arc::new(Semaphore::new(settings.max_xlsx_builds)),
            xlsx_shared: Default::default(),
            webhooks: Arc::new(settings.webhooks.clone()),
            role: role_rx,
            endpoints_changed: webhooks.endpoints_changed.clone(),
            poll_intervals: Arc::new(
                settings
                    .resources
                    .iter()
                    .map(|r| (r.name.as_str(), settings.interval_for(&r.name)))
                    .collect(),
            ),
        };
        Ok(Application {
            listener,
            port,
            state,
            poller,
            publisher,
            webhooks,
            settings,
            poll_loop: true,
            publish: true,
            role,
        })
    }

    /// Runs the HTTP server, the poll loops and the publisher until `cancel` fires, then stops
    /// polling, lets in-flight requests finish, drains the outbox within the shutdown deadline
    /// and closes the AMQP connection.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
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
            let (store, holder, metrics, role, release) = (
                self.state.store.clone(),
                self.settings.advertise_url.clone(),
                self.state.metrics.clone(),
                self.role.clone(),
                release.clone(),
            );
            move || leader::run_election(store, holder, metrics, role, release)
        });
        let lead = LeaderWork {
            poller: self.poller.clone(),
            publisher: self.publisher.clone(),
            webhooks: self.webhooks.clone(),
            settings: self.settings.clone(),
            triggers: self.state.triggers.clone(),
            poll_loop: self.poll_loop,
            publish: self.publish,
        };
        tracker.spawn(lead.run_while_leading(self.role.subscribe(), cancel.clone(), release));
        // The zone Daftra reports, for /status: read once, and never in the way of anything.
        let (client, status, stop) = (
            self.state.client.clone(),
            self.state.status.clone(),
            cancel.clone(),
        );
        tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                zone = client.site_zone() => {
                    let zone = match zone {
                        Ok(z) => Ok(z.unwrap_or_default()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Ok(crate::daftra::SiteZone { zone: Some(z), .. }) = &zone {
                        if z != client.clock().zone.name() {
                            tracing::warn!(daftra = %z, in_use = client.clock().zone.name(),
                                "Daftra reports another time zone for the account than DAFTRA_TIMEZONE");
                        }
                    }
                    status.set_site_zone(zone);
                }
            }
        });
        tracker.close();
        for name in self.settings.poll_intervals.keys() {
            if !self.settings.resources.iter().any(|r| &r.name == name) {
                tracing::warn!(resource = %name, "POLL_INTERVAL_SECS_{} is set but {name} is not in DAFTRA_RESOURCES; it has no effect", name.to_uppercase());
            }
        }
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
        tokio::spawn(self.run_until_stopped(cancel))
    }
}

/// What only the leader runs: the poll loops, the publisher and the webhook sink.
struct LeaderWork {
    poller: Poller,
    publisher: Publisher,
    webhooks: WebhookSink,
    settings: Settings,
    triggers: Arc<HashMap<&'static str, Arc<PollTrigger>>>,
    poll_loop: bool,
    publish: bool,
}

impl LeaderWork {
    /// Starts the leader's work each time this replica becomes the leader and stops it (with
    /// its in-flight work) when it stops being one; at shutdown, lets the publisher drain, then
    /// fires `release` so the election gives the lock up.
    async fn run_while_leading(
        self,
        mut role: tokio::sync::watch::Receiver<Role>,
        cancel: CancellationToken,
        release: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                led = role.wait_for(|r| *r == Role::Leader) => if led.is_err() { break },
            }
            let work = cancel.child_token();
            let tasks = TaskTracker::new();
            if self.poll_loop {
                for r in &self.settings.resources {
                    tasks.spawn(self.poller.clone().run(
                        r,
                        self.settings.interval_for(&r.name),
                        self.settings.unavailable_retry,
                        self.triggers[r.name.as_str()].clone(),
                        work.clone(),
                    ));
                }
            }
            if self.publish {
                tasks.spawn(
                    self.publisher
                        .clone()
                        .run(work.clone(), self.settings.shutdown_deadline),
                );
                tasks.spawn(self.webhooks.clone().run(work.clone()));
            }
            tasks.close();
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
