//! Access keys and the values the bridge makes once (the link signing key), as both backends
//! store them: a key's secret never, only its SHA-256 ([`crate::access::keys`]).

use super::StoreError;
use crate::access::Scopes;

/// An access key as stored. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The public id, the 12 hex digits after `dbk_`.
    pub id: String,
    /// Unique among keys; what metrics and logs call the key.
    pub name: String,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_hash: String,
    pub scopes: Scopes,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Requests made with it (flushed from memory every few seconds).
    pub requests: i64,
    /// Exports it may run at once.
    pub max_exports: i64,
    /// Requests it may make per minute.
    pub per_minute: i64,
}

/// A change to a key; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Scopes>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<i64>>,
    pub max_exports: Option<i64>,
    pub per_minute: Option<i64>,
}

impl KeyPatch {
    /// `key` with the patch applied.
    pub fn apply(&self, mut key: StoredKey) -> StoredKey {
        if let Some(n) = &self.name {
            key.name = n.clone();
        }
        if let Some(s) = &self.scopes {
            key.scopes = s.clone();
        }
        if let Some(e) = self.expires_at {
            key.expires_at = e;
        }
        if let Some(m) = self.max_exports {
            key.max_exports = m;
        }
        if let Some(p) = self.per_minute {
            key.per_minute = p;
        }
        key
    }
}

/// The access keys, and settings made once.
pub trait AccessKeys {
    /// Stores a new key; [`StoreError::Conflict`] when its name is taken.
    fn create_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Every key, oldest first, revoked ones included.
    fn keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// The key of public id `id`.
    fn key(&self, id: &str) -> Result<Option<StoredKey>, StoreError>;
    /// Whether [`AccessKeys::key`] answers in microseconds with no network round trip (SQLite's
    /// own read connection), so a request may call it in place rather than on a worker thread.
    fn key_lookup_is_local(&self) -> bool {
        false
    }
    /// Writes `key` (found by its id) whole: a patched key; `false` when there is none.
    /// [`StoreError::Conflict`] when its new name is taken.
    fn replace_key(&self, key: &StoredKey) -> Result<bool, StoreError>;
    /// Revokes the key at `at` (kept, listed, refused); `false` when there is none or it was.
    fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Adds use: `(id, last used at, requests)` per key.
    fn record_key_use(&self, uses: &[(String, i64, i64)]) -> Result<(), StoreError>;
    /// Whether any key was ever made (revoked and expired ones count): then a request without
    /// a credential is refused, so revoking every key never reopens a deployment.
    fn any_key(&self) -> Result<bool, StoreError>;
    /// The setting `name`, stored as `value` unless one is there already; returns the stored
    /// one (two replicas making it at once agree on the first).
    fn setting_or_init(&self, name: &str, value: &str) -> Result<String, StoreError>;
}
