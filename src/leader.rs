//! Who may poll and publish. On SQLite this replica always leads. On PostgreSQL replicas contend
//! for a session advisory lock on a connection of their own: the holder raises the fencing token
//! and leads; the others follow (serve exports, `/metrics`, `/status`) and try again every
//! [`ACQUIRE_INTERVAL`].
//!
//! Leadership is a **lease** that expires on its own. The lock's session has PostgreSQL's
//! `idle_session_timeout` set to [`LEASE`]: the leader proves it every [`RENEW_INTERVAL`], so a
//! live leader's session is never idle that long, while a frozen one (SIGSTOP, a VM pause) or a
//! dead one loses the session, and with it the lock, [`LEASE`] after its last proof. A follower
//! then takes the lock within [`ACQUIRE_INTERVAL`] and leads after [`TAKEOVER_GRACE`]: a frozen
//! leader is replaced within `LEASE + ACQUIRE_INTERVAL + TAKEOVER_GRACE` = 12 s.
//!
//! Fencing, in two layers. The database refuses a stale commit: every leader-only write proves
//! the token in its own transaction (`store::postgres`). A broker or an HTTP receiver cannot
//! refuse a stale publish, so the leader itself stops first: it holds a local deadline
//! ([`Lease`], on its monotonic clock) of the start of its last successful proof plus
//! `LEASE - LEASE_SAFETY_MARGIN`, and the sinks check it before every publish and every webhook
//! delivery. The margin is the bound on how much the two clocks (this process's monotonic clock
//! and the database server's) may drift apart within one lease.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::{LeadershipChange, Metrics};
use crate::store::Store;

/// How often a follower tries to take the lock.
pub const ACQUIRE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the leader proves its lock session is alive.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);
/// How long a proof may take before the leader gives up its leadership.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(2);
pub use crate::store::LEASE;
/// The bound on clock drift: the leader stops acting this long before the database could end
/// its lease.
pub const LEASE_SAFETY_MARGIN: Duration = Duration::from_secs(2);
/// How long a new leader waits before working when its predecessor did not release the lock
/// itself: longer than the predecessor's local deadline can outlast its last proof
/// (`LEASE - LEASE_SAFETY_MARGIN`), so the predecessor has stopped publishing.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

/// How long this replica may still act as the leader, on its own monotonic clock. Unbounded on
/// a store without election (SQLite, one node); otherwise extended by each proof of the lock
/// and ended when the lock is lost or given up.
#[derive(Debug)]
pub struct Lease {
    until: Mutex<Option<Instant>>,
    unbounded: bool,
}

impl Lease {
    /// The lease of a replica of `store`: unbounded without election, else not yet held.
    pub fn for_store(store: &Store) -> Lease {
        Lease {
            until: Mutex::new(None),
            unbounded: store.leader_lock().is_none(),
        }
    }

    /// Whether this replica may still publish and deliver now.
    pub fn valid(&self) -> bool {
        self.unbounded
            || self
                .until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|t| Instant::now() < t)
    }

    /// A proof of the lock that started at `proved_at` succeeded.
    fn extend(&self, proved_at: Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(proved_at + LEASE - LEASE_SAFETY_MARGIN);
    }

    /// The lock is lost or given up: stop at once.
    fn end(&self) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// This replica's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Polls, writes the snapshot and publishes.
    Leader,
    /// Serves exports, `/metrics` and `/status`; never writes the snapshot, never publishes.
    Follower,
}

impl Role {
    /// `"leader"` or `"follower"`, as `/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// The role as it starts: leader on a store without leader election (SQLite).
pub fn initial_role(store: &Store) -> Role {
    match store.leader_lock() {
        None => Role::Leader,
        Some(_) => Role::Follower,
    }
}

/// One replica's part in the election: its lock session and what it announces.
struct Election {
    store: Store,
    holder: String,
    metrics: Metrics,
    role: watch::Sender<Role>,
    release: CancellationToken,
    lease: std::sync::Arc<Lease>,
    lock: Box<dyn crate::store::LeaderLock>,
    /// The last error logged, so a lasting one is logged once.
    last_error: String,
}

impl Election {
    /// Sleeps `d` in short steps; `false` when released meanwhile.
    fn wait(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if self.release.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
        !self.release.is_cancelled()
    }

    /// While leading: proves the lock (extending the lease), or steps down at once. Returns
    /// whether it still leads.
    fn renew(&mut self) -> bool {
        let started = Instant::now();
        match self.lock.renew(RENEW_TIMEOUT) {
            Ok(()) => {
                self.lease.extend(started);
                self.wait(RENEW_INTERVAL);
                true
            }
            Err(e) => {
                self.lease.end();
                self.store.set_fencing_token(None);
                self.metrics.leadership_changed(LeadershipChange::Lost);
                self.role.send_replace(Role::Follower);
                tracing::warn!(error = %e, "Lost the leadership: polling and publishing stopped");
                // Tried again soon: a replica alone takes its lease back as soon as the database
                // answers (it knows it stopped itself, so without the grace), while another
                // replica, trying every ACQUIRE_INTERVAL, wins first if the lock is free now.
                self.wait(2 * ACQUIRE_INTERVAL);
                false
            }
        }
    }

    /// Waits [`TAKEOVER_GRACE`] after taking the lock from a leader that did not release it,
    /// proving the lock meanwhile (its session must not fall idle); `false` when released or
    /// the lock was lost meanwhile.
    fn grace(&mut self, token: i64) -> bool {
        tracing::info!(
            token,
            grace_secs = TAKEOVER_GRACE.as_secs(),
            "Took the leadership from a leader that did not release it; waiting for it to stop"
        );
        let until = Instant::now() + TAKEOVER_GRACE;
        while Instant::now() < until {
            if !self.wait(RENEW_INTERVAL.min(until - Instant::now())) {
                return false;
            }
            let proving = Instant::now();
            if let Err(e) = self.lock.renew(RENEW_TIMEOUT) {
                self.lease.end();
                self.store.set_fencing_token(None);
                tracing::warn!(error = %e, "Lost the lock while waiting for the previous leader to stop");
                return false;
            }
            self.lease.extend(proving);
        }
        true
    }

    /// While following: tries to take the lock once; returns whether it now leads.
    fn try_lead(&mut self) -> bool {
        let started = Instant::now();
        match self.lock.try_acquire(&self.holder) {
            Ok(Some(taken)) => {
                self.store.set_fencing_token(Some(taken.token));
                self.last_error.clear();
                if taken.predecessor_released {
                    self.lease.extend(started);
                } else if !self.grace(taken.token) {
                    return false;
                }
                self.metrics.leadership_changed(LeadershipChange::Acquired);
                self.role.send_replace(Role::Leader);
                tracing::info!(token = taken.token, "This replica is the leader");
                return true;
            }
            Ok(None) => self.last_error.clear(),
            Err(e) => {
                let text = e.to_string();
                if text != self.last_error {
                    tracing::warn!(error = %text, "Cannot take part in the leader election; trying again");
                    self.last_error = text;
                }
            }
        }
        self.wait(ACQUIRE_INTERVAL);
        false
    }
}

/// Where a replica's election reports: the address followers name, its role, its lease.
pub struct Announce {
    /// The address other replicas name as the leader's (`ADVERTISE_URL`).
    pub holder: String,
    pub role: watch::Sender<Role>,
    pub lease: std::sync::Arc<Lease>,
}

/// Runs the election for this replica (blocking: give it a thread of its own) until `release`
/// fires, then gives the lock up.
pub fn run_election(
    store: Store,
    metrics: Metrics,
    announce: Announce,
    release: CancellationToken,
) {
    let Announce {
        holder,
        role,
        lease,
    } = announce;
    let Some(lock) = store.leader_lock() else {
        metrics.set_leader(true);
        return;
    };
    let mut e = Election {
        store,
        holder,
        metrics,
        role,
        release,
        lease,
        lock,
        last_error: String::new(),
    };
    let mut leading = false;
    while !e.release.is_cancelled() {
        leading = match leading {
            true => e.renew(),
            false => e.try_lead(),
        };
    }
    e.lease.end();
    e.store.set_fencing_token(None);
    e.lock.release();
    if leading {
        e.metrics.set_leader(false);
        e.role.send_replace(Role::Follower);
        tracing::info!("Released the leadership");
    }
}
