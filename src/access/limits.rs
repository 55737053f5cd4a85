//! Each key's fair share: requests per minute (a window that starts with the key's first
//! request and lasts 60 s) and exports running at once. The one over its share is told when to
//! come back; nobody else waits for it. Kept per replica, in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The length of a rate window.
const WINDOW: Duration = Duration::from_secs(60);

/// One key's counters.
struct Share {
    window_start: Instant,
    requests: u32,
    exports: Arc<Semaphore>,
    exports_max: u32,
}

/// Every key's share, by key id.
#[derive(Default)]
pub struct Limits {
    shares: Mutex<HashMap<String, Share>>,
}

impl Limits {
    fn with<T>(&self, key: &str, exports_max: u32, f: impl FnOnce(&mut Share) -> T) -> T {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let share = shares.entry(key.to_string()).or_insert_with(|| Share {
            window_start: Instant::now(),
            requests: 0,
            exports: Arc::new(Semaphore::new(exports_max as usize)),
            exports_max,
        });
        if share.exports_max != exports_max {
            // The limit was changed: a new semaphore; exports running keep their permits.
            share.exports = Arc::new(Semaphore::new(exports_max as usize));
            share.exports_max = exports_max;
        }
        f(share)
    }

    /// Counts one request of `key`; `Err(seconds)` when it is over `per_minute` in the current
    /// window, with the seconds until the window ends.
    pub fn request(&self, key: &str, per_minute: u32, exports_max: u32) -> Result<(), u64> {
        self.with(key, exports_max, |s| {
            let elapsed = s.window_start.elapsed();
            if elapsed >= WINDOW {
                s.window_start = Instant::now();
                s.requests = 0;
            }
            if s.requests >= per_minute {
                return Err((WINDOW - s.window_start.elapsed()).as_secs().max(1));
            }
            s.requests += 1;
            Ok(())
        })
    }

    /// A slot for one export of `key` (held until the export's answer is sent); `None` when
    /// `exports_max` are running.
    pub fn export(&self, key: &str, exports_max: u32) -> Option<OwnedSemaphorePermit> {
        self.with(key, exports_max, |s| {
            s.exports.clone().try_acquire_owned().ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_share() {
        let limits = Limits::default();
        for _ in 0..3 {
            assert!(limits.request("a", 3, 2).is_ok());
        }
        let wait = limits.request("a", 3, 2).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            limits.request("b", 3, 2).is_ok(),
            "another key is not slowed"
        );
        let one = limits.export("a", 2).unwrap();
        let _two = limits.export("a", 2).unwrap();
        assert!(limits.export("a", 2).is_none());
        assert!(limits.export("b", 2).is_some());
        drop(one);
        assert!(
            limits.export("a", 2).is_some(),
            "a finished export frees its slot"
        );
    }
}
