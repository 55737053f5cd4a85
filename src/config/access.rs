//! The settings of the `keys` and `link` commands, read without Daftra's or the broker's.

use super::addresses::resolve_addresses;
use super::{err, resolve_link_signing_key, resolve_secrets_keys, ConfigError, RawEnv, Secret};

/// What the `keys` and `link` commands need: the store, its sealing keys, the link signing key
/// and the address links start with. Daftra's and the broker's settings are not read, so the
/// commands run wherever the database is reachable.
pub struct AccessSettings {
    pub database: crate::store::Location,
    pub secrets_keys: crate::secret::SealingKeys,
    pub link_signing_key: Option<Secret>,
    /// `ADVERTISE_URL`, or `http://<hostname>:<port of BIND_ADDR>`.
    pub advertise_url: String,
}

impl AccessSettings {
    /// Reads them from `raw`; the error names the first bad variable.
    pub fn from_raw(raw: &RawEnv) -> Result<AccessSettings, ConfigError> {
        let database = crate::store::Location::from_setting(raw.database_url.as_deref())
            .map_err(|shown| err("DATABASE_URL", &shown, crate::store::DATABASE_URL_FORMS))?;
        let (_, advertise_url, _) = resolve_addresses(raw)?;
        Ok(AccessSettings {
            database,
            secrets_keys: resolve_secrets_keys(raw)?,
            link_signing_key: resolve_link_signing_key(raw)?,
            advertise_url,
        })
    }
}
