//! `DATABASE_URL`: where the store lives, how the variable is read and its default. The store
//! owns this so that configuration, the command line and the store agree on one reading.

use std::path::PathBuf;

/// `DATABASE_URL` when it is unset: a SQLite file under `data/` of the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/daftra-bridge.sqlite3";

/// The forms `DATABASE_URL` accepts, for an error that names the variable.
pub const DATABASE_URL_FORMS: &str = "sqlite://relative/path or sqlite:///absolute/path (no user, password or ?options: SQLite has none), or postgres://user:pass@host:5432/db (also postgresql://, with libpq options such as ?sslmode=require)";

/// Where the store lives, from `DATABASE_URL`. Its `Debug` form is redacted.
#[derive(Clone, PartialEq)]
pub enum Location {
    /// `sqlite://relative/path` or `sqlite:///absolute/path`.
    Sqlite(std::path::PathBuf),
    /// `postgres://` or `postgresql://` URL (may hold a password: never print it, see
    /// [`crate::secret::redact_url`]).
    Postgres(String),
}

impl Location {
    /// The location with any password and credential query values replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite://{}", p.display()),
            Location::Postgres(url) => crate::secret::redact_url(url),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl Location {
    /// Reads `DATABASE_URL`: unset or blank is [`DEFAULT_DATABASE_URL`]. `Err` holds the value
    /// given, redacted, for an error that names the variable (see [`DATABASE_URL_FORMS`]).
    pub fn from_setting(value: Option<&str>) -> Result<Location, String> {
        let given = value.map(str::trim).filter(|s| !s.is_empty());
        let url = given.unwrap_or(DEFAULT_DATABASE_URL);
        Location::parse(url).ok_or_else(|| crate::secret::redact_url(url))
    }

    /// Parses `sqlite://relative/path`, `sqlite:///absolute/path`, or a `postgres://` /
    /// `postgresql://` URL in libpq's form (checked, options such as `sslmode` included).
    pub fn parse(s: &str) -> Option<Location> {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return super::postgres::check_url(s)
                .ok()
                .map(|_| Location::Postgres(s.to_string()));
        }
        let rest = s.strip_prefix("sqlite://")?;
        // SQLite has no user, password or options in its URL: such a URL is a mistake, and
        // taking it as a path would write the password into a file name (and the logs).
        if rest.is_empty() || rest.contains('@') || rest.contains('?') {
            return None;
        }
        Some(Location::Sqlite(PathBuf::from(rest)))
    }
}
