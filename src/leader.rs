//! Who may poll and publish. On SQLite this replica always leads. On PostgreSQL replicas contend
//! for a session advisory lock on a connection of their own: the holder raises the fencing token
//! and leads; the others follow (serve exports, `/metrics`, `/status`) and try again every
//! [`ACQUIRE_INTERVAL`]. The lock dies with the process or its connection, so a follower takes
//! over within `ACQUIRE_INTERVAL` + [`TAKEOVER_GRACE`] of the leader's death.
//!
//! Fencing: the leader proves its token in the transaction of every leader-only write
//! (`store::postgres`), and each sink checks it before handing a batch on. A leader that cannot
//! renew its lock within [`RENEW_TIMEOUT`] drops its token at once, before a successor could
//! start.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::{LeadershipChange, Metrics};
use crate::store::Store;

/// How often a follower tries to take the lock.
pub const ACQUIRE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the leader proves its lock session is alive.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(1);
/// How long a renewal may take before the leader gives up its leadership.
pub const RENEW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new leader waits before working when its predecessor did not release the lock
/// (it died or lost its connection): longer than the predecessor needs to notice
/// (`RENEW_INTERVAL` + `RENEW_TIMEOUT`) and stop.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

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

    /// While leading: proves the lock, or steps down at once. Returns whether it still leads.
    fn renew(&mut self) -> bool {
        match self.lock.renew(RENEW_TIMEOUT) {
            Ok(()) => {
                self.wait(RENEW_INTERVAL);
                true
            }
            Err(e) => {
                self.store.set_fencing_token(None);
                self.metrics.leadership_changed(LeadershipChange::Lost);
                self.role.send_replace(Role::Follower);
                tracing::warn!(error = %e, "Lost the leadership: polling and publishing stopped");
                // A replica that just lost its session lets the others try first.
                self.wait(TAKEOVER_GRACE + ACQUIRE_INTERVAL);
                false
            }
        }
    }

    /// While following: tries to take the lock once; returns whether it now leads.
    fn try_lead(&mut self) -> bool {
        match self.lock.try_acquire(&self.holder) {
            Ok(Some(taken)) => {
                self.store.set_fencing_token(Some(taken.token));
                self.last_error.clear();
                if !taken.predecessor_released {
                    tracing::info!(
                        token = taken.token,
                        grace_secs = TAKEOVER_GRACE.as_secs(),
                        "Took the leadership from a leader that did not release it; waiting for it to stop"
                    );
                    if !self.wait(TAKEOVER_GRACE) {
                        return false;
                    }
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

/// Runs the election for this replica (blocking: give it a thread of its own) until `release`
/// fires, then gives the lock up. `holder` is the address followers name; `role` is where the
/// current role is announced.
pub fn run_election(
    store: Store,
    holder: String,
    metrics: Metrics,
    role: watch::Sender<Role>,
    release: CancellationToken,
) {
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
    e.store.set_fencing_token(None);
    e.lock.release();
    if leading {
        e.metrics.set_leader(false);
        e.role.send_replace(Role::Follower);
        tracing::info!("Released the leadership");
    }
}
