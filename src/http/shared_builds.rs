//! XLSX files built once per snapshot version and query, and shared by the requests that wait
//! for them: eight users opening the same workbook at once cost one build, not eight (the build
//! semaphore would otherwise serialise them).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tempfile::NamedTempFile;
use tokio::sync::OnceCell;

/// A finished build (the open temporary file) or why it failed.
pub type Built = Result<Arc<NamedTempFile>, String>;

/// Builds in progress by key (the export's `ETag`).
#[derive(Default)]
pub struct SharedBuilds(Mutex<HashMap<String, Arc<OnceCell<Built>>>>);

impl SharedBuilds {
    /// The build of `key`: joins the one in progress, or runs `build`. Returns the file and
    /// whether it was shared (built by another request). The entry is dropped once built:
    /// later requests build again (or get a 304 from their `ETag`).
    pub async fn get_or_build<F, Fut>(&self, key: &str, build: F) -> (Built, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<NamedTempFile, String>>,
    {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        let mut built_here = false;
        let result = cell
            .get_or_init(|| {
                built_here = true;
                async { build().await.map(Arc::new) }
            })
            .await
            .clone();
        if built_here {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
        (result, !built_here)
    }

    /// Builds in progress.
    pub fn in_progress(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_one_build() {
        let shared = Arc::new(SharedBuilds::default());
        let builds = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (shared, builds) = (shared.clone(), builds.clone());
                tokio::spawn(async move {
                    shared
                        .get_or_build("k", || async move {
                            builds.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            NamedTempFile::new().map_err(|e| e.to_string())
                        })
                        .await
                })
            })
            .collect();
        let mut shared_count = 0;
        for t in tasks {
            let (built, was_shared) = t.await.unwrap();
            assert!(built.is_ok());
            shared_count += usize::from(was_shared);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(shared_count, 7);
        assert_eq!(shared.in_progress(), 0, "dropped once built");
    }
}
