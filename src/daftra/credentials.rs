//! Whether Daftra accepts the account's credentials: an account-level fact, not a resource's.
//! A 401 (or an OAuth token endpoint refusing the client or the user) marks them refused with
//! one clear log line naming the variables to check; every poll of the account then waits
//! for them to pass, which one probe with backoff finds out ([`Credentials::probe_while_refused`]).

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

/// Why and since when Daftra refuses the credentials.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refusal {
    /// The HTTP status of the refusal (401, or the token endpoint's 4xx).
    pub status: u16,
    /// What Daftra said, without any secret.
    pub message: String,
    /// RFC 3339 UTC.
    pub since: String,
    /// The variables that hold the credentials in use.
    pub check: &'static [&'static str],
}

/// The state of one account's credentials. `accepted` moves (a counter) each time they pass
/// after a refusal, waking every poll that waits for them.
#[derive(Debug)]
pub struct Credentials {
    refusal: Mutex<Option<Refusal>>,
    accepted: watch::Sender<u64>,
    /// The variables of the credentials in use (the API key, or the four OAuth ones).
    variables: &'static [&'static str],
}

/// The longest wait between two probes of refused credentials.
pub const MAX_PROBE_BACKOFF: Duration = Duration::from_secs(180);
/// The first wait.
const FIRST_PROBE: Duration = Duration::from_secs(5);

impl Credentials {
    /// The credentials of an account using `variables`.
    pub fn new(variables: &'static [&'static str]) -> Credentials {
        Credentials {
            refusal: Mutex::new(None),
            accepted: watch::channel(0).0,
            variables,
        }
    }

    /// Daftra refused them (`status`, `message`): logged once, at the first refusal.
    pub fn refuse(&self, status: u16, message: &str) {
        let mut refusal = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        if refusal.is_none() {
            tracing::error!(status, error = %message, check = self.variables.join(", "),
                "Daftra refuses the account's credentials: check {}; every resource waits and is polled again as soon as they pass",
                self.variables.join(", "));
            *refusal = Some(Refusal {
                status,
                message: message.to_string(),
                since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                check: self.variables,
            });
        }
    }

    /// Daftra answered a request: the credentials pass (logged, and the waiting polls woken,
    /// when they were refused).
    pub fn accept(&self) {
        let was = self
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if was.is_some() {
            tracing::info!("Daftra accepts the account's credentials again; polling resumes");
            self.accepted.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The refusal in force, if any.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves when the credentials pass (at once when they are not refused).
    pub async fn passed(&self) {
        let mut accepted = self.accepted.subscribe();
        while self.refusal().is_some() {
            if accepted.changed().await.is_err() {
                return;
            }
        }
    }

    /// While the credentials are refused, runs `probe` (a cheap request whose answer updates
    /// them) after 5 s, then after twice as long each time it is still refused, at most
    /// [`MAX_PROBE_BACKOFF`]; sleeps while they pass. Runs until cancelled.
    pub async fn probe_while_refused<F: std::future::Future<Output = ()>>(
        &self,
        mut probe: impl FnMut() -> F,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut wait = FIRST_PROBE;
        loop {
            if self.refusal().is_none() {
                wait = FIRST_PROBE;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if self.refusal().is_some() {
                tracing::debug!(
                    wait_secs = wait.as_secs(),
                    "Probing Daftra with the refused credentials"
                );
                probe().await;
                wait = (wait * 2).min(MAX_PROBE_BACKOFF);
            }
        }
    }
}
