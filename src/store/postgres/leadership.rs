//! The leader's session advisory lock, on a connection of its own: held while the session
//! lives, released by PostgreSQL when the process or its connection dies, or when the session
//! stays idle for [`LEASE`] (its `idle_session_timeout`): the lease a frozen leader loses.

use std::time::Duration;

use postgres::Client;

use super::Postgres;
use crate::store::{LeaderLock, StoreError, Taken, LEASE};

/// The advisory lock key: "dftrbrdg" in ASCII. Advisory locks are per database, so bridges on
/// different databases of one server do not contend.
const LOCK_KEY: i64 = 0x6466_7472_6272_6467;

/// The lock session of one replica.
pub struct PgLeaderLock {
    config: postgres::Config,
    tls: super::tls::TlsPolicy,
    client: Option<Client>,
    token: Option<i64>,
    /// This lock object's own id (one per replica process), kept beside the holder.
    instance: String,
}

impl PgLeaderLock {
    pub(super) fn new(store: &Postgres) -> PgLeaderLock {
        let mut config = store.config.clone();
        // Named apart, so an operator (or a test) can tell the lock session in pg_stat_activity.
        config.application_name("daftra-bridge-leader");
        PgLeaderLock {
            config,
            tls: store.tls.clone(),
            client: None,
            token: None,
            instance: format!("{:016x}", rand::random::<u64>()),
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            super::close_client(self.client.take());
            let mut c = super::open_client(&self.config, &self.tls)?;
            set_lease(&mut c);
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn take_lock(&mut self, holder: &str) -> Result<Option<Taken>, StoreError> {
        let c = self.client()?;
        let taken: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])?
            .get(0);
        if !taken {
            return Ok(None);
        }
        // Raising the token waits for any commit of the previous leader still holding the row
        // and fences every later one. A release clears the holder; a leader that died left it.
        // The previous leader stopped if it released the lock, or if it was this replica.
        let instance = self.instance.clone();
        let c = self.client()?;
        let row = c.query_one(
            "UPDATE leadership AS l SET term = l.term + 1, holder = $1, instance = $2, since = now()
             FROM (SELECT holder, instance FROM leadership WHERE id = 1 FOR UPDATE) AS previous
             WHERE l.id = 1
             RETURNING l.term, previous.holder IS NULL OR previous.instance IS NOT DISTINCT FROM $2",
            &[&holder, &instance],
        )?;
        Ok(Some(Taken {
            token: row.get(0),
            predecessor_released: row.get(1),
        }))
    }

    fn prove_lock(&mut self, timeout: Duration) -> Result<(), StoreError> {
        let Some(held) = self.token else {
            return Err(StoreError::Fenced {
                held: 0,
                current: -1,
            });
        };
        let c = self
            .client
            .as_mut()
            .filter(|c| !c.is_closed())
            .ok_or_else(|| StoreError::Unavailable("the lock connection closed".into()))?;
        c.is_valid(timeout)?;
        super::check_term(c, held)
    }
}

/// Makes the session's lease: PostgreSQL ends it after [`LEASE`] without a statement (its
/// `idle_session_timeout`, PostgreSQL 14 and later), which releases the lock of a frozen leader.
/// On an older server that refuses it, a frozen leader keeps the lock until it resumes: logged.
fn set_lease(c: &mut Client) {
    let set = format!("SET idle_session_timeout = {}", LEASE.as_millis());
    if let Err(e) = c.batch_execute(&set) {
        tracing::warn!(error = %StoreError::from(e),
            "PostgreSQL refused idle_session_timeout (it needs version 14): a frozen leader keeps the leadership until it resumes");
    }
}

impl Drop for PgLeaderLock {
    fn drop(&mut self) {
        super::close_client(self.client.take());
    }
}

impl LeaderLock for PgLeaderLock {
    fn try_acquire(&mut self, holder: &str) -> Result<Option<Taken>, StoreError> {
        let result = super::off_runtime(|| self.take_lock(holder));
        match &result {
            Ok(taken) => self.token = taken.map(|t| t.token),
            Err(_) => super::close_client(self.client.take()),
        }
        result
    }

    fn renew(&mut self, timeout: Duration) -> Result<(), StoreError> {
        let result = super::off_runtime(|| self.prove_lock(timeout));
        if result.is_err() {
            super::close_client(self.client.take());
            self.token = None;
        }
        result
    }

    fn release(&mut self) {
        let (client, token) = (self.client.take(), self.token.take());
        super::off_runtime(move || {
            if let Some(mut c) = client {
                if token.is_some() {
                    let _ = c.execute("UPDATE leadership SET holder = NULL WHERE id = 1", &[]);
                }
                let _ = c.query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]);
                let _ = c.close();
            }
        });
    }
}
