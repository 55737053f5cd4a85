//! A feed: one resource of one account, the unit that polls, snapshots, statuses, events and
//! exports are keyed on.

use std::sync::Arc;

use crate::account::{Account, DEFAULT_ACCOUNT};
use crate::catalogue::Resource;

/// The store key of the feed of `resource` on the account named `account`: the default
/// account's feeds are keyed by the resource name alone, as every store written before feeds
/// existed keys its rows; another account's are `account/resource`.
pub fn key(account: &str, resource: &Resource) -> String {
    match account {
        DEFAULT_ACCOUNT => resource.name.clone(),
        other => format!("{other}/{}", resource.name),
    }
}

/// One resource of one account. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed {
    pub account: Arc<Account>,
    pub resource: &'static Resource,
    key: Arc<str>,
}

impl Feed {
    /// The feed of `resource` on `account`.
    pub fn new(account: Arc<Account>, resource: &'static Resource) -> Feed {
        Feed {
            key: key(&account.name, resource).into(),
            account,
            resource,
        }
    }

    /// The feed's key in the store (snapshot, baseline, version, poll status) and in `/status`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The resource's name, as metrics label it and routes name it.
    pub fn name(&self) -> &'static str {
        self.resource.name.as_str()
    }
}

/// The feeds a deployment serves, in catalogue order within each account.
#[derive(Clone, Debug, Default)]
pub struct Feeds(Arc<Vec<Feed>>);

impl Feeds {
    /// The feeds of `resources` on `account`.
    pub fn of(account: &Arc<Account>, resources: &[&'static Resource]) -> Feeds {
        Feeds(Arc::new(
            resources
                .iter()
                .map(|r| Feed::new(account.clone(), r))
                .collect(),
        ))
    }

    /// Every feed.
    pub fn all(&self) -> &[Feed] {
        &self.0
    }

    /// The feed of the resource named `name` (routes name a resource; a deployment of several
    /// accounts will name the account too).
    pub fn by_resource(&self, name: &str) -> Option<&Feed> {
        self.0.iter().find(|f| f.resource.name == name)
    }

    /// Every account served, once each, in the order of their first feed.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut out: Vec<Arc<Account>> = Vec::new();
        for f in self.0.iter() {
            if !out.iter().any(|a| Arc::ptr_eq(a, &f.account)) {
                out.push(f.account.clone());
            }
        }
        out
    }

    /// The feed keyed `key`.
    pub fn by_key(&self, key: &str) -> Option<&Feed> {
        self.0.iter().find(|f| f.key() == key)
    }
}
