//! Waiting for a condition, and picking a free port.

use std::time::Duration;

/// Calls `check` every 100 ms until it returns `true`; panics naming `what` when `within` has
/// passed without it.
pub async fn wait_for(mut check: impl AsyncFnMut() -> bool, within: Duration, what: &str) {
    let until = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= until {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port on 127.0.0.1")
        .local_addr()
        .expect("its address")
        .port()
}
