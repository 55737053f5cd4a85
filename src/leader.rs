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

use crate::metrics::Metrics;
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
    let Some(mut lock) = store.leader_lock() else {
        metrics.leader.set(1);
        return;
    };
    let wait = |d: Duration| -> bool {
        // Sleeps `d` in short steps; `false` when released meanwhile.
        let until = std::time::Instant::now() + d;
        while std::time::Instant::now() < until {
            if release.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(d));
        }
        !release.is_cancelled()
    };
    let mut last_error = String::new();
    let mut leading = false;
    loop {
        if release.is_cancelled() {
            break;
        }
        if leading {
            if let Err(e) = lock.renew(RENEW_TIMEOUT) {
                store.set_fencing_token(None);
                leading = false;
                metrics.leader.set(0);
                metrics
                    .leadership_changes
                    .with_label_values(&["lost"])
                    .inc();
                role.send_replace(Role::Follower);
                tracing::warn!(error = %e, "Lost the leadership: polling and publishing stopped");
                // A replica that just lost its session lets the others try first.
                if !wait(TAKEOVER_GRACE + ACQUIRE_INTERVAL) {
                    break;
                }
                continue;
            }
            wait(RENEW_INTERVAL);
            continue;
        }
        match lock.try_acquire(&holder) {
            Ok(Some(taken)) => {
                store.set_fencing_token(Some(taken.token));
                last_error.clear();
                if !taken.predecessor_released {
                    tracing::info!(
                        token = taken.token,
                        grace_secs = TAKEOVER_GRACE.as_secs(),
                        "Took the leadership from a leader that did not release it; waiting for it to stop"
                    );
                    if !wait(TAKEOVER_GRACE) {
                        break;
                    }
                }
                leading = true;
                metrics.leader.set(1);
                metrics
                    .leadership_changes
                    .with_label_values(&["acquired"])
                    .inc();
                role.send_replace(Role::Leader);
                tracing::info!(token = taken.token, "This replica is the leader");
                continue;
            }
            Ok(None) => last_error.clear(),
            Err(e) => {
                let text = e.to_string();
                if text != last_error {
                    tracing::warn!(error = %text, "Cannot take part in the leader election; trying again");
                    last_error = text;
                }
            }
        }
        if !wait(ACQUIRE_INTERVAL) {
            break;
        }
    }
    store.set_fencing_token(None);
    lock.release();
    if leading {
        metrics.leader.set(0);
        role.send_replace(Role::Follower);
        tracing::info!("Released the leadership");
    }
}
