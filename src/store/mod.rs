//! The storage interface: the snapshot (last known normalised records), the outbox (the event
//! log each sink reads in order, with one cursor per sink), the webhook endpoints with their
//! queues and attempt log. Two backends sit behind it: SQLite (`sqlite/`, one node, the default)
//! and PostgreSQL (`postgres/`, shared by several replicas, one leader). A poll's snapshot
//! changes and its outbox rows commit in one transaction on either.
//!
//! Calls block: async code runs them through `spawn_blocking` (the PostgreSQL client drives its
//! own runtime and must not be called on an executor thread).

mod interface;
mod keys;
mod location;
pub mod postgres;
mod sealing;
pub mod sqlite;

pub use interface::{
    AttemptLog, AttemptOutcome, AttemptRecord, DueMessage, Endpoint, EndpointPatch, NewEndpoint,
    Outbox, OutboxKey, OutboxRow, Parked, Parking, RowOrder, SnapshotWrite, Snapshots, Watermark,
    Webhooks, AMQP_SINK, ATTEMPTS_KEPT, PRUNED_THROUGH,
};

use std::path::Path;

use crate::secret::SealingKeys;

pub use keys::{AccessKeys, KeyPatch, StoredKey};
pub use location::{Location, DATABASE_URL_FORMS, DEFAULT_DATABASE_URL};
pub use sqlite::Spool;
use std::sync::Arc;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's error, with its SQLSTATE when the server sent one (never the URL).
    #[error("store error: {0}")]
    Postgres(String),
    /// A write met a row that already exists (PostgreSQL's SQLSTATE 23505, unique violation).
    #[error("store error: {0}")]
    Conflict(String),
    /// The database cannot be reached (connection refused, closed or timed out).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// This replica no longer holds the leadership its write was made under: nothing was
    /// written (the fencing check in the same transaction refused it).
    /// A stored secret could not be opened (no key, or another key).
    #[error("store error: {0}")]
    Sealed(String),
    /// The temporary file of a [`Spool`] could not be made.
    #[error("store error: {0}")]
    Spool(String),
    #[error("this replica is no longer the leader (fencing token {held} is not the current {current}): nothing was written")]
    Fenced { held: i64, current: i64 },
}

impl StoreError {
    /// Whether the database could not be reached at all (exports answer 503, `/readyz` names it).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Everything a backend stores, plus what only a backend knows (its kind, the fencing token).
pub trait Backend:
    Snapshots + Outbox + Webhooks + AttemptLog + Parking + AccessKeys + Send + Sync + 'static
{
    /// `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;
    /// Sets the fencing token leader-only writes must prove in their transaction (`None`: this
    /// replica is a follower, and such writes fail with [`StoreError::Fenced`]). SQLite has one
    /// node and no fencing.
    fn set_fencing_token(&self, token: Option<i64>);
    /// Checks, against the database, that this replica still holds the current fencing token
    /// (a sink calls it before each batch it hands on). Always `Ok` on SQLite.
    fn check_fence(&self) -> Result<(), StoreError>;
    /// A cheap round trip (`/readyz`).
    fn ping(&self) -> Result<(), StoreError>;
    /// The address of the current leader's HTTP API, as it advertised it (PostgreSQL only).
    fn leader_address(&self) -> Result<Option<String>, StoreError>;
    /// A session that can take and hold the leadership, when several replicas may share this
    /// store (PostgreSQL). `None`: this replica always leads (SQLite, one node).
    fn leader_lock(&self) -> Option<Box<dyn LeaderLock>> {
        None
    }
}

/// The leadership's lease: how long the lock's session may stay silent before the database
/// ends it (PostgreSQL's `idle_session_timeout`), releasing the lock of a frozen leader
/// (`crate::leader` builds the rest of the election on it).
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(6);

/// A leadership just taken.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    /// The new fencing token (raised by every new leader).
    pub token: i64,
    /// Whether the previous leader released the lock itself (so it has stopped), rather than
    /// losing it by dying or by losing its connection.
    pub predecessor_released: bool,
}

/// The leadership of replicas sharing a store: a lock held by one session, lost with it.
pub trait LeaderLock: Send {
    /// Tries once to take the leadership, advertising `holder` (the HTTP address followers
    /// name). Returns the new fencing token when taken, `None` when another replica leads.
    fn try_acquire(&mut self, holder: &str) -> Result<Option<Taken>, StoreError>;
    /// Proves the lock is still held, within `timeout`; an error means it is lost.
    fn renew(&mut self, timeout: std::time::Duration) -> Result<(), StoreError>;
    /// Gives the lock up (at shutdown, after the leader's work stopped).
    fn release(&mut self);
}

/// Handle to the store. Cheap to clone; derefs to the backend's methods, except the webhook
/// endpoints' reads and secret writes, which go through [`Store`]'s own methods: they seal the
/// secrets the backend stores and open the ones it reads ([`SealingKeys`]), so no backend ever
/// sees a secret in clear when a key is set.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    keys: Arc<SealingKeys>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.backend
    }
}

impl Store {
    fn new(backend: Arc<dyn Backend>) -> Store {
        Store {
            backend,
            keys: Default::default(),
        }
    }

    /// Opens (creating the file and its folder when missing) and migrates a SQLite store.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Ok(Store::new(Arc::new(sqlite::Sqlite::open(path)?)))
    }

    /// Connects to and migrates the store at `location`. Errors name the location redacted.
    pub fn connect(location: &Location) -> anyhow::Result<Store> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Ok(Store::new(Arc::new(postgres::Postgres::connect(url)?))),
        }
    }

    /// The same store, sealing the secrets it stores with `keys`.
    pub fn sealing(self, keys: SealingKeys) -> Store {
        Store {
            backend: self.backend,
            keys: Arc::new(keys),
        }
    }
}
