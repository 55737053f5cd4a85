//! A Daftra account as the bridge serves it: where it is, how the bridge signs in, the request
//! budget every one of its feeds shares, and the clock its timestamps are written in. Nothing
//! else holds these: polls, events and exports read them from the account a [`crate::feed::Feed`]
//! carries, so one deployment can serve several accounts side by side.

use std::sync::Arc;

use crate::config::DaftraSettings;
use crate::daftra::DaftraClient;
use crate::metrics::Metrics;
use crate::record::Clock;

/// The name of the account configured by the `DAFTRA_*` variables.
pub const DEFAULT_ACCOUNT: &str = "default";

/// One Daftra account.
pub struct Account {
    /// The account's name in the bridge ([`DEFAULT_ACCOUNT`] for the `DAFTRA_*` one).
    pub name: String,
    /// Site root without trailing slash, `https://acme.daftra.com`: the CloudEvents `source`.
    pub base_url: String,
    /// Time zone (`DAFTRA_TIMEZONE`) and date order (`DAFTRA_DATE_FORMAT`) of its timestamps.
    pub clock: Clock,
    /// Its API client: credentials, retries, and one request budget for all its feeds.
    pub client: Arc<DaftraClient>,
}

impl Account {
    /// The account `name` of `settings`; its client reports to `metrics`.
    pub fn new(name: &str, settings: DaftraSettings, metrics: Metrics) -> Arc<Account> {
        Arc::new(Account {
            name: name.to_string(),
            base_url: settings.base_url.clone(),
            clock: settings.clock,
            client: Arc::new(DaftraClient::new(settings, metrics)),
        })
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}
