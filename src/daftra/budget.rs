//! One request budget per Daftra account: every request of every resource takes a permit from
//! one semaphore of `DAFTRA_CONCURRENCY`, and a 429 on any resource pauses all of them, so thirty
//! resources never put thirty times the load on an account.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The shared concurrency and backoff budget of one account.
#[derive(Debug)]
pub struct Budget {
    permits: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

impl Budget {
    /// A budget of `concurrency` requests in flight at once.
    pub fn new(concurrency: usize) -> Self {
        Budget {
            permits: Semaphore::new(concurrency.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits out any pause, then for a free request slot; the slot is held until the permit drops.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        self.permits
            .acquire()
            .await
            .expect("the budget is never closed")
    }

    /// Pauses every request of the account for `wait` (a 429 was answered); a longer pause
    /// already in force is kept.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_holds_every_request() {
        let b = Budget::new(2);
        b.pause(Duration::from_millis(300));
        b.pause(Duration::from_millis(10));
        let started = Instant::now();
        let _p = b.acquire().await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the longer pause is kept"
        );
        let _q = b.acquire().await;
        assert!(b.permits.try_acquire().is_err(), "two in flight at most");
    }
}
