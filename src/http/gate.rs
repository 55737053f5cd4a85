//! Who is asking, and may they: every request that needs a credential passes here. A caller is
//! anonymous (while neither `EXPORT_TOKEN` nor an active key exists), `EXPORT_TOKEN` (every
//! right), an access key (its scopes, its fair share), or a signed link (that one export).
//! Keys are looked up by their public id in the store on every request, so a revocation or an
//! expiry holds at the next request on every replica; links need no store at all.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{HttpMessage, HttpRequest};

use super::{access, ApiError, AppState};
use crate::access::limits::Limits;
use crate::access::{keys, links, Scope};
use crate::metrics::AuthFailure;
use crate::secret::Secret;
use crate::store::StoredKey;

/// The caller's name as metrics and logs show it (a key's name; never a secret), kept in the
/// request's extensions.
#[derive(Clone, Debug)]
pub struct CallerName(pub String);

/// Who a request comes from.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No credential is configured: everything is open (a deployment before keys).
    Open,
    /// `EXPORT_TOKEN`: every export, `/status`, polls.
    ExportToken,
    /// An access key.
    Key(StoredKey),
    /// A signed link: only its own path and query.
    Link,
}

impl Caller {
    /// Ok when the caller may do `scope`; else 403 naming the scope (and nothing else that
    /// exists).
    pub fn require(&self, scope: &Scope, state: &AppState) -> Result<(), ApiError> {
        if self.allows(scope) {
            return Ok(());
        }
        match self {
            Caller::Key(k) => {
                state.metrics.auth_failure(AuthFailure::Scope);
                Err(ApiError::Forbidden(format!(
                    "the key {:?} lacks the scope {scope}",
                    k.name
                )))
            }
            _ => Err(ApiError::Forbidden(format!(
                "a signed link opens its own export only, not {scope}"
            ))),
        }
    }

    /// Whether the caller may do what `scope` names (without counting a refusal).
    pub fn allows(&self, scope: &Scope) -> bool {
        match self {
            Caller::Open | Caller::ExportToken => true,
            Caller::Key(k) => k.scopes.allows(scope),
            // The link's signature covers its path: it reaches nothing else.
            Caller::Link => matches!(scope, Scope::Export(_)),
        }
    }

    /// Whether the caller may read `export` (lists show only those).
    pub fn may_export(&self, export: &'static crate::catalogue::Resource) -> bool {
        match self {
            Caller::Open | Caller::ExportToken => true,
            Caller::Key(k) => k.scopes.may_export(export),
            Caller::Link => false,
        }
    }

    /// A slot for one more export of this caller, held until its answer is sent; 429 with
    /// `Retry-After` when a key runs as many as it may. Other callers share the global limits.
    pub fn export_permit(
        &self,
        state: &AppState,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
        let Caller::Key(k) = self else {
            return Ok(None);
        };
        match state
            .access
            .limits
            .export(&k.id, k.max_exports.max(0) as u32)
        {
            Some(p) => Ok(Some(p)),
            None => Err(ApiError::TooManyRequests {
                message: format!(
                    "the access key {:?} is running its {} exports at once; retry when one ends",
                    k.name, k.max_exports
                ),
                retry_after: 5,
            }),
        }
    }

    /// Whether the caller is a signed link (its `expires` and `sig` are not export parameters).
    pub fn is_link(&self) -> bool {
        matches!(self, Caller::Link)
    }

    fn name(&self) -> String {
        match self {
            Caller::Open => "anonymous".into(),
            Caller::ExportToken => "export_token".into(),
            Caller::Key(k) => k.name.clone(),
            Caller::Link => "link".into(),
        }
    }
}

/// The credentials in force and each key's share. Cheap to share.
pub struct Gate {
    /// `EXPORT_TOKEN`, the all-access key.
    pub export_token: Option<Secret>,
    /// The key signing links (`LINK_SIGNING_KEY`, or made once and kept in the store).
    pub link_key: Secret,
    pub limits: Limits,
    /// Use not yet written to the store: key id -> (last used, requests).
    usage: Mutex<HashMap<String, (i64, i64)>>,
    /// A key was seen in the store: keys are never deleted, so this stays true.
    keys_exist: std::sync::atomic::AtomicBool,
}

impl Gate {
    pub fn new(export_token: Option<Secret>, link_key: Secret) -> Gate {
        Gate {
            export_token,
            link_key,
            limits: Limits::default(),
            usage: Mutex::new(HashMap::new()),
            keys_exist: Default::default(),
        }
    }

    /// Takes the use counted since the last call, to be written to the store.
    pub fn take_usage(&self) -> Vec<(String, i64, i64)> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        usage.drain().map(|(id, (at, n))| (id, at, n)).collect()
    }

    fn used(&self, id: &str, at: i64) {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let e = usage.entry(id.to_string()).or_insert((at, 0));
        e.0 = e.0.max(at);
        e.1 += 1;
    }
}

fn refuse(state: &AppState, reason: AuthFailure, error: ApiError) -> ApiError {
    state.metrics.auth_failure(reason);
    error
}

/// The key `token` names, checked: known, its secret right, neither revoked nor expired, and
/// within its requests per minute.
async fn key_caller(state: &AppState, id: &str, secret: &str) -> Result<Caller, ApiError> {
    let found = match state.store.key_lookup_is_local() {
        // A keyed request is checked against the store every time, so a revocation holds at
        // the next request on every replica; locally that costs microseconds.
        true => state.store.key(id)?,
        false => {
            let (store, owned) = (state.store.clone(), id.to_string());
            tokio::task::spawn_blocking(move || store.key(&owned))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??
        }
    };
    let unknown = || {
        let message = "unknown access key: it is not one of this bridge's".to_string();
        refuse(state, AuthFailure::Unknown, ApiError::Denied(message))
    };
    let Some(key) = found else {
        return Err(unknown());
    };
    if !keys::verify(secret, &key.secret_hash) {
        return Err(unknown());
    }
    // Only the holder of the secret hears which of its own states refused it.
    if let Some(at) = key.revoked_at {
        let message = format!(
            "the access key {:?} was revoked at {}",
            key.name,
            keys::rfc3339(at)
        );
        return Err(refuse(
            state,
            AuthFailure::Revoked,
            ApiError::Denied(message),
        ));
    }
    let now = keys::now();
    if let Some(at) = key.expires_at.filter(|at| *at <= now) {
        let message = format!(
            "the access key {:?} expired at {}",
            key.name,
            keys::rfc3339(at)
        );
        return Err(refuse(
            state,
            AuthFailure::Expired,
            ApiError::Denied(message),
        ));
    }
    let gate = &state.access;
    let (per_minute, max_exports) = (key.per_minute as u32, key.max_exports as u32);
    if let Err(retry_after) = gate.limits.request(&key.id, per_minute, max_exports) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "the access key {:?} made its {per_minute} requests of this minute",
                key.name
            ),
            retry_after,
        });
    }
    gate.used(&key.id, now);
    Ok(Caller::Key(key))
}

/// The signed link of this request, checked against its own path.
fn link_caller(
    state: &AppState,
    req: &HttpRequest,
    pairs: &[(String, String)],
) -> Result<Caller, ApiError> {
    let key = state.access.link_key.expose().as_bytes();
    match links::verify(key, req.path(), pairs, keys::now()) {
        Ok(_) => Ok(Caller::Link),
        Err(e @ links::LinkError::Expired(_)) => Err(refuse(
            state,
            AuthFailure::LinkExpired,
            ApiError::Gone(e.to_string()),
        )),
        Err(e) => Err(refuse(
            state,
            AuthFailure::LinkSignature,
            ApiError::Forbidden(e.to_string()),
        )),
    }
}

/// Who `req` comes from, or why it is refused (401, 410, 429). Signed links are accepted only
/// where `links_allowed` (the exports). The caller's name goes into the request's extensions
/// for the metrics and the access log.
pub async fn caller(
    state: &AppState,
    req: &HttpRequest,
    links_allowed: bool,
) -> Result<Caller, ApiError> {
    let pairs = access::web_query_pairs(req);
    let found = if links_allowed && links::is_signed(&pairs) {
        link_caller(state, req, &pairs)
    } else {
        token_caller(state, req, &pairs).await
    };
    if let Ok(c) = &found {
        req.extensions_mut().insert(CallerName(c.name()));
    }
    found
}

async fn token_caller(
    state: &AppState,
    req: &HttpRequest,
    pairs: &[(String, String)],
) -> Result<Caller, ApiError> {
    let given = access::bearer(req).or_else(|| {
        pairs
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone())
    });
    let gate = &state.access;
    match given {
        Some(t) => {
            if let Some((id, secret)) = keys::parse(&t) {
                return key_caller(state, id, secret).await;
            }
            match &gate.export_token {
                Some(expected) if access::matches(&t, expected) => Ok(Caller::ExportToken),
                _ => Err(refuse(state, AuthFailure::Unknown, ApiError::Unauthorized)),
            }
        }
        None if gate.export_token.is_some() => {
            Err(refuse(state, AuthFailure::Missing, ApiError::Unauthorized))
        }
        None => {
            use std::sync::atomic::Ordering;
            let mut keys_exist = gate.keys_exist.load(Ordering::Relaxed);
            if !keys_exist {
                let store = state.store.clone();
                keys_exist = tokio::task::spawn_blocking(move || store.any_key())
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??;
                gate.keys_exist.store(keys_exist, Ordering::Relaxed);
            }
            match keys_exist {
                true => Err(refuse(
                    state,
                    AuthFailure::Missing,
                    ApiError::Denied(
                        "an access key is required (Authorization: Bearer dbk_..., or ?token=)"
                            .into(),
                    ),
                )),
                false => Ok(Caller::Open),
            }
        }
    }
}

/// Checks the caller of `req` may do `scope`; returns the caller.
pub async fn require(
    state: &AppState,
    req: &HttpRequest,
    scope: Scope,
) -> Result<Caller, ApiError> {
    // Links are made for export files only (`keyring::link`).
    let links_allowed = matches!(scope, Scope::Export(_)) && req.path().starts_with("/exports/");
    let caller = caller(state, req, links_allowed).await?;
    caller.require(&scope, state)?;
    Ok(caller)
}
