//! The webhook endpoints' secrets as the rest of the bridge sees them: sealed with
//! `BRIDGE_SECRETS_KEY` before a backend stores them, opened after it reads them. Every secret
//! the bridge stores goes through [`SealingKeys`] the same way.

use super::{Endpoint, NewEndpoint, Store, StoreError};
use crate::secret::{SealingKeys, Secret};

impl From<crate::secret::UnsealError> for StoreError {
    fn from(e: crate::secret::UnsealError) -> StoreError {
        StoreError::Sealed(e.to_string())
    }
}

/// `endpoint` with its secrets opened.
fn opened(keys: &SealingKeys, mut endpoint: Endpoint) -> Result<Endpoint, StoreError> {
    endpoint.secret = keys.open(&endpoint.id, endpoint.secret.expose())?;
    for (secret, _) in &mut endpoint.previous_secrets {
        *secret = keys.open(&endpoint.id, secret.expose())?;
    }
    Ok(endpoint)
}

impl Store {
    /// Stores a new endpoint with its secret sealed; see [`super::Webhooks::create_endpoint`].
    pub fn create_endpoint(
        &self,
        id: &str,
        new: &NewEndpoint,
        secret: &Secret,
    ) -> Result<Endpoint, StoreError> {
        let sealed = Secret::new(self.keys.seal(id, secret));
        opened(&self.keys, self.backend.create_endpoint(id, new, &sealed)?)
    }

    /// Every endpoint, its secrets opened; see [`super::Webhooks::endpoints`].
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.backend
            .endpoints()?
            .into_iter()
            .map(|e| opened(&self.keys, e))
            .collect()
    }

    /// One endpoint, its secrets opened; see [`super::Webhooks::endpoint`].
    pub fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.backend
            .endpoint(id)?
            .map(|e| opened(&self.keys, e))
            .transpose()
    }

    /// Replaces the secret with `secret`, sealed; see [`super::Webhooks::rotate_secret`].
    pub fn rotate_secret(
        &self,
        id: &str,
        secret: &Secret,
        old_until: i64,
    ) -> Result<bool, StoreError> {
        let sealed = Secret::new(self.keys.seal(id, secret));
        self.backend.rotate_secret(id, &sealed, old_until)
    }

    /// Seals again every stored secret that is in clear while a key is set, or sealed with a
    /// key other than the current one (a rotation of `BRIDGE_SECRETS_KEY`). Returns how many
    /// endpoints were rewritten; run at start-up.
    pub fn reseal_secrets(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for raw in self.backend.endpoints()? {
            let stale = std::iter::once(&raw.secret)
                .chain(raw.previous_secrets.iter().map(|(s, _)| s))
                .any(|s| self.keys.needs_resealing(&raw.id, s.expose()));
            if !stale {
                continue;
            }
            let open = opened(&self.keys, raw)?;
            let seal = |s: &Secret| Secret::new(self.keys.seal(&open.id, s));
            let previous: Vec<(Secret, i64)> = open
                .previous_secrets
                .iter()
                .map(|(s, until)| (seal(s), *until))
                .collect();
            self.backend
                .replace_secrets(&open.id, &seal(&open.secret), &previous)?;
            n += 1;
        }
        Ok(n)
    }

    /// The key signing download links when `LINK_SIGNING_KEY` is not set: 32 random bytes (as
    /// hex) made by the first replica that asks and kept, sealed, in the store, so every replica
    /// and every restart signs alike. Deleting the `link_signing_key` setting rotates it (and
    /// revokes every link).
    pub fn link_signing_key(&self) -> Result<Secret, StoreError> {
        use rand::RngCore;
        const NAME: &str = "link_signing_key";
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let made: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let sealed = self.keys.seal(NAME, &Secret::new(made));
        let stored = self.backend.setting_or_init(NAME, &sealed)?;
        Ok(self.keys.open(NAME, &stored)?)
    }
}
