//! The PostgreSQL backend, shared by several replicas: any of them serves exports, one leader
//! polls and publishes. One writer connection behind a mutex (reconnected after an outage),
//! a connection of its own for each export scan, and one for the leader's advisory lock.
//!
//! Leader-only writes prove the fencing token in the same transaction: they read the
//! `leadership` row `FOR SHARE`, so a new leader's raising of the token waits for them and
//! every later one sees it changed and writes nothing.

mod keys;
mod leadership;
mod migrations;
mod outbox;
mod parking;
mod snapshot;
mod tls;
mod webhook_attempts;
mod webhooks;

pub use leadership::PgLeaderLock;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};

use super::{Backend, StoreError};

/// Seconds to wait for a connection before calling the database unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection whose sent data goes unacknowledged this long is dead (TCP_USER_TIMEOUT).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// `e` with what the server said: `postgres::Error` alone reads "db error", its source the
/// message (`database "x" does not exist`).
fn said(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        let broken = e.is_closed()
            || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
            || e.as_db_error().is_some_and(|d| {
                // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away.
                matches!(d.code().code(), "57P01" | "57P02" | "57P03")
            })
            || e.to_string().starts_with("error connecting")
            || e.to_string().contains("timeout");
        if broken {
            StoreError::Unavailable(said(&e))
        } else if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict(said(&e))
        } else {
            StoreError::Postgres(said(&e))
        }
    }
}

/// The PostgreSQL store.
pub struct Postgres {
    config: Config,
    tls: tls::TlsPolicy,
    writer: Mutex<Option<Client>>,
    /// The fencing token this replica leads under; 0 when it does not lead.
    token: AtomicI64,
}

impl Postgres {
    /// Parses `url` (`postgres://` or `postgresql://`, libpq's options such as `sslmode`),
    /// connects and applies the migrations. Errors never hold the URL.
    pub fn connect(url: &str) -> anyhow::Result<Postgres> {
        let (url, tls) = tls::split_url(url).map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
        let mut config: Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("daftra-bridge");
        }
        let store = Postgres {
            config,
            tls,
            writer: Mutex::new(None),
            token: AtomicI64::new(0),
        };
        let client = off_runtime(|| {
            let mut client = store.new_writer().map_err(anyhow::Error::new)?;
            migrations::apply(&mut client)?;
            anyhow::Ok(client)
        })?;
        *store.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        Ok(store)
    }

    /// A new connection: TLS through rustls (Mozilla's roots) unless `sslmode=disable`;
    /// `prefer`, the default, falls back to plain TCP when the server offers no TLS.
    pub(crate) fn new_client(&self) -> Result<Client, StoreError> {
        open_client(&self.config, &self.tls)
    }

    /// A new writer connection. A transaction left idle on it for [`crate::store::LEASE`] is
    /// ended by the server (`idle_in_transaction_session_timeout`): a leader frozen in the
    /// middle of a commit would otherwise hold the `leadership` row and block its successor.
    fn new_writer(&self) -> Result<Client, StoreError> {
        let mut c = self.new_client()?;
        let set = format!(
            "SET idle_in_transaction_session_timeout = {}",
            crate::store::LEASE.as_millis()
        );
        c.batch_execute(&set)?;
        Ok(c)
    }

    /// Runs `f` on the writer connection, connecting first when there is none (after an
    /// outage) and dropping it when it broke, so the next call reconnects.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let slot: &mut Option<Client> = &mut guard;
        off_runtime(move || {
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = None;
                *slot = Some(self.new_writer()?);
            }
            let client = slot.as_mut().expect("connected above");
            let out = f(client);
            if client.is_closed() || matches!(out, Err(StoreError::Unavailable(_))) {
                *slot = None;
            }
            out
        })
    }

    /// Runs `f` in a transaction that first proves the fencing token: `BEGIN` and the check
    /// go in one round trip, the check holds the `leadership` row (`FOR SHARE`) until the
    /// transaction ends (a new leader's raising of the token waits for this commit), and a
    /// token that is not the current one writes nothing
    /// ([`StoreError::Fenced`]). `durable: false` commits without waiting for the WAL flush (for
    /// writes a later synchronous commit makes durable with it).
    fn fenced<T: Send>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.with(|c| {
            let held = self.token.load(Ordering::SeqCst);
            let flush = if durable {
                ""
            } else {
                "SET LOCAL synchronous_commit = off; "
            };
            let answer = c.simple_query(&format!(
                "BEGIN; {flush}SELECT term FROM leadership WHERE id = 1 FOR SHARE"
            ));
            let current = answer.map(|messages| {
                messages.iter().find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<i64>().ok(),
                    _ => None,
                })
            });
            let out = match current {
                Ok(Some(current)) if held != 0 && current == held => f(c),
                Ok(current) => Err(StoreError::Fenced {
                    held,
                    current: current.unwrap_or(-1),
                }),
                Err(e) => Err(e.into()),
            };
            match out {
                Ok(v) => {
                    c.batch_execute("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    if !c.is_closed() {
                        let _ = c.batch_execute("ROLLBACK");
                    }
                    Err(e)
                }
            }
        })
    }

    /// A connection of its own for the leader's session advisory lock.
    pub fn leader_lock(&self) -> PgLeaderLock {
        PgLeaderLock::new(self)
    }
}

/// Runs `f` where the blocking PostgreSQL client may run: on this thread when it belongs to no
/// tokio runtime, else on a scoped thread of its own (the client drives a runtime of its own,
/// which tokio refuses to start on a thread driving async tasks).
pub(super) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Closes `client` where that may block (see [`off_runtime`]): a blocking client dropped on
/// an async executor thread would panic.
pub(super) fn close_client(client: Option<Client>) {
    if let Some(c) = client {
        off_runtime(move || drop(c));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let writer = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        close_client(writer.take());
    }
}

/// Opens a connection with `config`, TLS as `tls` says (see `tls.rs`).
fn open_client(config: &Config, tls: &tls::TlsPolicy) -> Result<Client, StoreError> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(config.connect(NoTls)?);
    }
    let tls = tls::client_config(tls).map_err(StoreError::Postgres)?;
    Ok(config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?)
}

/// Whether `url` is a PostgreSQL URL this backend can use (libpq's form and options); the
/// error names what is wrong, never the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let (url, _) = tls::split_url(url)?;
    url.parse::<Config>().map(|_| ()).map_err(|e| e.to_string())
}

impl Backend for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn set_fencing_token(&self, token: Option<i64>) {
        self.token.store(token.unwrap_or(0), Ordering::SeqCst);
    }

    fn check_fence(&self) -> Result<(), StoreError> {
        let held = self.token.load(Ordering::SeqCst);
        if held == 0 {
            return Err(StoreError::Fenced { held, current: -1 });
        }
        self.with(|c| check_term(c, held))
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.is_valid(Duration::from_secs(3))?))
    }

    fn leader_address(&self) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(
                c.query_one("SELECT holder FROM leadership WHERE id = 1", &[])?
                    .get(0),
            )
        })
    }

    fn leader_lock(&self) -> Option<Box<dyn super::LeaderLock>> {
        Some(Box::new(Postgres::leader_lock(self)))
    }
}

/// Checks that the leadership's current fencing token is `held`; [`StoreError::Fenced`] names
/// both when another replica has raised it since.
pub(super) fn check_term(c: &mut Client, held: i64) -> Result<(), StoreError> {
    let current: i64 = c
        .query_one("SELECT term FROM leadership WHERE id = 1", &[])?
        .get(0);
    if current != held {
        return Err(StoreError::Fenced { held, current });
    }
    Ok(())
}
