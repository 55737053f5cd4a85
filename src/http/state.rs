//! What the HTTP handlers share, by area: the store and metrics every area uses, the feeds
//! served with their poll triggers, what `/status` and `/readyz` report, the export limits, and
//! the webhook routes' settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};

use super::shared_builds::SharedBuilds;
use crate::catalogue::{self, Resource};
use crate::config::WebhookSettings;
use crate::feed::{Feed, Feeds};
use crate::leader::Role;
use crate::metrics::Metrics;
use crate::poller::PollTrigger;
use crate::status::{BrokerState, StatusBoard};
use crate::store::Store;

/// Shared state of the HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub served: Served,
    pub health: Health,
    pub exports: ExportLimits,
    pub admin: Admin,
    /// Credentials: `EXPORT_TOKEN`, access keys, signed links, each key's share.
    pub access: Arc<super::gate::Gate>,
    /// The AsyncAPI document and the events' schemas.
    pub docs: Arc<super::schemas::EventDocs>,
}

/// The feeds this deployment serves, with their poll triggers and intervals by feed key.
#[derive(Clone)]
pub struct Served {
    pub feeds: Feeds,
    pub triggers: Arc<HashMap<String, Arc<PollTrigger>>>,
    pub intervals: Arc<HashMap<String, Duration>>,
}

impl Served {
    /// The enabled export (a resource or a line-item export) named `name`, with the feed its
    /// rows come from.
    pub fn export(&self, name: &str) -> Option<(&Feed, &'static Resource)> {
        let export = catalogue::export_by_name(name)?;
        let feed = self.feeds.by_resource(&export.source().name)?;
        Some((feed, export))
    }

    /// Every enabled export: each feed's resource followed by its line-item exports.
    pub fn exports(&self) -> Vec<&'static Resource> {
        self.feeds
            .all()
            .iter()
            .flat_map(|f| {
                std::iter::once(f.resource).chain(catalogue::line_item_exports(f.resource))
            })
            .collect()
    }

    /// The feed of resource `name` with its poll trigger.
    pub fn trigger(&self, name: &str) -> Option<(&Feed, &Arc<PollTrigger>)> {
        let feed = self.feeds.by_resource(name)?;
        Some((feed, self.triggers.get(feed.key())?))
    }

    /// The poll interval of the feed keyed `key`.
    pub fn interval(&self, key: &str) -> Option<Duration> {
        self.intervals.get(key).copied()
    }
}

/// What `/status` and `/readyz` report.
#[derive(Clone)]
pub struct Health {
    /// The last poll of every feed.
    pub status: Arc<StatusBoard>,
    pub broker: Arc<BrokerState>,
    /// This replica's role in the leader election (`POST /poll` on a follower is a 409).
    pub role: watch::Receiver<Role>,
}

/// Access to exports and the bounds on building them.
#[derive(Clone)]
pub struct ExportLimits {
    /// XLSX builds at once (`EXPORT_MAX_XLSX_BUILDS`).
    pub xlsx_builds: Arc<Semaphore>,
    /// XLSX builds shared by identical requests of one snapshot version.
    pub xlsx_shared: Arc<SharedBuilds>,
}

/// The admin API (webhook endpoints, parked events) and the inbound webhook: their tokens and
/// target rules, and how they wake the sinks.
#[derive(Clone)]
pub struct Admin {
    pub settings: Arc<WebhookSettings>,
    /// Tells the webhook sink that an endpoint was created, changed or deleted.
    pub endpoints_changed: Arc<Notify>,
    /// Wakes every sink (a parked event to retry).
    pub outbox: Arc<crate::sinks::OutboxSignal>,
}
