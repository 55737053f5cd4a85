//! Settings of a test bridge, built one way: the variables the binary reads, by name.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use daftra_bridge::config::{env, RawEnv, Settings};

/// The API key the simulator accepts.
pub const SIM_API_KEY: &str = "sim-api-key";

/// `DATABASE_URL` of a SQLite file at `path`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A bridge's whole environment, variable name to value (nothing is inherited). A child process
/// gets it as its environment ([`super::Bridge`]); a bridge in this process gets the settings
/// the binary would build from it ([`BridgeEnv::settings`]).
#[derive(Clone, Debug, Default)]
pub struct BridgeEnv(BTreeMap<String, OsString>);

impl BridgeEnv {
    /// No variable at all.
    pub fn new() -> BridgeEnv {
        BridgeEnv::default()
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(mut self, name: &str, value: impl AsRef<OsStr>) -> BridgeEnv {
        self.0.insert(name.to_string(), value.as_ref().to_owned());
        self
    }

    /// Unsets `name`.
    pub fn remove(mut self, name: &str) -> BridgeEnv {
        self.0.remove(name);
        self
    }

    /// Sets `name` to `value` when there is one.
    pub fn set_some(self, name: &str, value: Option<impl AsRef<OsStr>>) -> BridgeEnv {
        match value {
            Some(v) => self.set(name, v),
            None => self,
        }
    }

    /// Sets each `(name, value)` of `vars`, in order.
    pub fn set_all(self, vars: &[(&str, String)]) -> BridgeEnv {
        vars.iter().fold(self, |env, (k, v)| env.set(k, v))
    }

    /// The variables, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_os_str()))
    }

    /// The settings `daftra-bridge serve` builds from this environment: read as
    /// `RawEnv::from_env` reads the process's, then `Settings::from_raw`. Panics with the
    /// configuration error.
    pub fn settings(&self) -> Settings {
        let vars = env::utf8_vars(self.0.iter().map(|(k, v)| (OsString::from(k), v.clone())))
            .expect("test variables are UTF-8");
        let raw = RawEnv::from_vars(vars).expect("test variables");
        Settings::from_raw(&raw, None).unwrap_or_else(|e| panic!("test settings: {e}"))
    }
}
