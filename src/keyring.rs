//! Making, showing and revoking access keys, and making signed links: what the admin API
//! (`/keys`, `/links`) and the command line (`daftra-bridge keys`, `daftra-bridge link`) share.
//! The rules are in [`crate::access`]; the keys live in the store.

use serde_json::{json, Value};

use crate::access::keys::{self, rfc3339};
use crate::access::{links, Scopes};
use crate::catalogue;
use crate::export::{ExportQuery, Format};
use crate::secret::Secret;
use crate::store::{Store, StoreError, StoredKey};

/// Exports a new key may run at once, unless it is given its own limit.
pub const DEFAULT_MAX_EXPORTS: i64 = 2;
/// Requests a new key may make per minute, unless it is given its own limit.
pub const DEFAULT_PER_MINUTE: i64 = 120;
/// The longest a signed link may work: a year.
pub const MAX_LINK_SECS: i64 = 366 * 86_400;

/// Upper bounds of the per-key limits (a typo of 10,000,000 is refused, not obeyed).
const MAX_EXPORTS_BOUND: i64 = 100;
const PER_MINUTE_BOUND: i64 = 1_000_000;

/// Why a key or a link cannot be made; `field` is the parameter to fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "a key named {0:?} exists already (revoked keys keep their names): choose another name"
    )]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> KeyringError {
    KeyringError::Invalid {
        field,
        message: message.into(),
    }
}

/// A key to make.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// 1 to 64 of `a-z`, `A-Z`, `0-9`, `_`, `-`, `.`: it is a metric label and a log field.
    pub name: String,
    pub scopes: Scopes,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Exports at once (1 to 100).
    pub max_exports: i64,
    /// Requests per minute (1 to 1,000,000).
    pub per_minute: i64,
}

/// Checks a key's name (see [`KeySpec::name`]).
pub fn validate_name(name: &str) -> Result<(), KeyringError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    match ok {
        true => Ok(()),
        false => Err(invalid(
            "name",
            "1 to 64 letters, digits, '_', '-' or '.' (it names the key in metrics and logs)",
        )),
    }
}

/// Checks the per-key limits.
pub fn validate_limits(max_exports: i64, per_minute: i64) -> Result<(), KeyringError> {
    if !(1..=MAX_EXPORTS_BOUND).contains(&max_exports) {
        return Err(invalid(
            "max_exports",
            format!("exports at once, 1 to {MAX_EXPORTS_BOUND}"),
        ));
    }
    if !(1..=PER_MINUTE_BOUND).contains(&per_minute) {
        return Err(invalid(
            "per_minute",
            format!("requests per minute, 1 to {PER_MINUTE_BOUND}"),
        ));
    }
    Ok(())
}

/// Makes and stores a key at `now` (Unix seconds); returns it and the whole key, which is shown
/// this once and never stored.
pub fn create(store: &Store, spec: KeySpec, now: i64) -> Result<(StoredKey, Secret), KeyringError> {
    validate_name(&spec.name)?;
    validate_limits(spec.max_exports, spec.per_minute)?;
    spec.scopes.validate().map_err(|e| invalid("exports", e))?;
    let sc = &spec.scopes;
    if sc.exports.is_empty() && !(sc.status || sc.poll || sc.feed || sc.share) {
        return Err(invalid(
            "exports",
            "the key would allow nothing: name exports or areas, or give status, poll or feed",
        ));
    }
    if spec.expires_at.is_some_and(|at| at <= now) {
        return Err(invalid("expires", "the expiry is in the past"));
    }
    let made = keys::generate();
    let key = StoredKey {
        id: made.id,
        name: spec.name.clone(),
        secret_hash: made.hash,
        scopes: spec.scopes,
        created_at: now,
        expires_at: spec.expires_at,
        revoked_at: None,
        last_used_at: None,
        requests: 0,
        max_exports: spec.max_exports,
        per_minute: spec.per_minute,
    };
    store.create_key(&key).map_err(|e| taken(e, &spec.name))?;
    Ok((key, made.token))
}

/// A unique violation on the name is [`KeyringError::NameTaken`].
pub fn taken(e: StoreError, name: &str) -> KeyringError {
    match e {
        StoreError::Conflict(_) => KeyringError::NameTaken(name.to_string()),
        other => other.into(),
    }
}

/// `active`, `expired` or `revoked` at `now`.
pub fn state(key: &StoredKey, now: i64) -> &'static str {
    match (key.revoked_at, key.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "active",
    }
}

/// A key as listings show it: never its secret nor its hash.
pub fn shown(key: &StoredKey, now: i64) -> Value {
    let time = |t: Option<i64>| t.map(rfc3339);
    json!({
        "id": key.id,
        "name": key.name,
        "state": state(key, now),
        "scopes": key.scopes,
        "created_at": rfc3339(key.created_at),
        "expires_at": time(key.expires_at),
        "revoked_at": time(key.revoked_at),
        "last_used_at": time(key.last_used_at),
        "requests": key.requests,
        "max_exports": key.max_exports,
        "per_minute": key.per_minute,
    })
}

/// The key whose id or name is `which` (the command line takes either).
pub fn find(store: &Store, which: &str) -> Result<Option<StoredKey>, StoreError> {
    if let Some(k) = store.key(which)? {
        return Ok(Some(k));
    }
    Ok(store.keys()?.into_iter().find(|k| k.name == which))
}

/// A signed link to `file` (`invoices.csv`) with the export parameters `pairs`, valid until
/// `expires_at`: `{base}/exports/{file}?{pairs}&expires=...&sig=...`. The export and its query
/// are checked first, so a link is never dead on arrival.
pub fn link(
    signing_key: &Secret,
    base: &str,
    file: &str,
    pairs: &[(String, String)],
    expires_at: i64,
) -> Result<String, KeyringError> {
    let (name, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| invalid("export", "an export file, such as invoices.csv"))?;
    let export = catalogue::export_by_name(name).ok_or_else(|| {
        invalid(
            "export",
            format!("no export named {name:?} (daftra-bridge resources lists them)"),
        )
    })?;
    Format::parse(ext).ok_or_else(|| invalid("export", format!("no format {ext:?}")))?;
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| k == "token" || k == links::EXPIRES || k == links::SIG)
    {
        return Err(invalid(
            "query",
            format!("{k:?} is not an export parameter"),
        ));
    }
    ExportQuery::parse(export, pairs).map_err(|e| invalid("query", e.to_string()))?;
    let now = keys::now();
    if expires_at <= now {
        return Err(invalid("expires", "the expiry is in the past"));
    }
    if expires_at > now + MAX_LINK_SECS {
        return Err(invalid("expires", "a link works for at most a year (366d)"));
    }
    let path = format!("/exports/{file}");
    let query = links::sign(signing_key.expose().as_bytes(), &path, pairs, expires_at);
    Ok(format!("{}{path}?{query}", base.trim_end_matches('/')))
}
