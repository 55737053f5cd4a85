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
        let store = Store::open(&settings.database_path).with_context(|| {
            format!(
                "opening the store at {} (DATABASE_URL)",
                settings.database_path.display()
            )
        })?;
        let client = Arc::new(DaftraClient::new(settings.daftra.clone(), metrics.clone()));
        let names: Vec<&str> = settings.resources.iter().map(|r| r.name.as_str()).collect();
        metrics.init_resources(&names);
        let status = Arc::new(StatusBoard::new(&names));
        // The last poll of each resource, as the previous run left it.
        for (name, saved) in store.poll_statuses().unwrap_or_default() {
            if let (true, Ok(mut s)) = (
                names.contains(&name.as_str()),
                serde_json::from_str::<crate::status::PollStatus>(&saved),
            ) {
                s.polling = false;
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
                status.update(&name, |slot| *slot = s);
            }
        }
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
        if self.poll_loop {
            for r in &self.settings.resources {
                let trigger = self.state.triggers[r.name.as_str()].clone();
                tracker.spawn(self.poller.clone().run(
                    r,
                    self.settings.interval_for(&r.name),
                    self.settings.unavailable_retry,
                    trigger,
                    cancel.clone(),
                ));
            }
        }
        if self.publish {
            tracker.spawn(self.publisher.clone().run(cancel.clone(), deadline));
            tracker.spawn(self.webhooks.clone().run(cancel.clone()));
        }
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
