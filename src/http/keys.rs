//! The admin API of access keys (`/keys`, `/keys/{id}`, guarded by `ADMIN_TOKEN` like the
//! webhook endpoints) and of signed links (`POST /links`: `ADMIN_TOKEN`, or a key with the
//! `share` scope for the exports it may read).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::access::{self, admin};
use super::webhooks::{bad, object, read_body, text_field, ADMIN_BODY_LIMIT};
use super::{gate, on_store, ApiError, AppState};
use crate::access::keys::{self, parse_expiry, rfc3339};
use crate::access::{Scope, Scopes};
use crate::keyring::{self, KeySpec, DEFAULT_MAX_EXPORTS, DEFAULT_PER_MINUTE};
use crate::store::KeyPatch;

/// The fields of a key's body (`POST` and `PATCH`).
const KEY_FIELDS: &[&str] = &[
    "name",
    "exports",
    "status",
    "poll",
    "feed",
    "events",
    "share",
    "expires",
    "max_exports",
    "per_minute",
];

fn no_key(id: &str) -> ApiError {
    ApiError::NotFound(format!("no access key {id}"))
}

/// `exports`: a list of names and areas, or one comma-separated string.
fn exports_field(map: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let list = match map.get("exports") {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("exports", "each entry is a string"))?
            .join(","),
        Some(_) => {
            return Err(bad(
                "exports",
                "a list of exports and areas, e.g. [\"invoices\", \"inventory\"]",
            ))
        }
    };
    Scopes::parse_exports(&list)
        .map(Some)
        .map_err(|e| bad("exports", e))
}

fn bool_field(map: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(name, "must be true or false")),
    }
}

fn int_field(map: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(name, "must be a whole number")),
    }
}

/// `expires`: `90d`, an RFC 3339 time, a date, `never` or `null`; `Some(None)` never expires.
fn expires_field(map: &Map<String, Value>) -> Result<Option<Option<i64>>, ApiError> {
    match map.get("expires") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => parse_expiry(s, keys::now())
            .map(Some)
            .map_err(|e| bad("expires", e)),
        Some(_) => Err(bad("expires", "a duration (90d), a time, a date, or never")),
    }
}

/// The scopes of a body, over `base` (a patch changes only what it names).
fn scopes(map: &Map<String, Value>, mut base: Scopes) -> Result<Scopes, ApiError> {
    if let Some(e) = exports_field(map)? {
        base.exports = e;
    }
    for name in ["status", "poll", "feed", "events", "share"] {
        let Some(on) = bool_field(map, name)? else {
            continue;
        };
        match name {
            "status" => base.status = on,
            "poll" => base.poll = on,
            // `events` names the feed's scope too.
            "feed" | "events" => base.feed = on,
            _ => base.share = on,
        }
    }
    Ok(base)
}

/// `POST /keys`: 201 with the key, and the whole key in `key`, shown only here.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let map = object(&read_body(payload, ADMIN_BODY_LIMIT).await?, KEY_FIELDS)?;
    let name = text_field(&map, "name", 64)?
        .ok_or_else(|| bad("name", "required: what the key is for, e.g. powerbi"))?;
    let spec = KeySpec {
        name,
        scopes: scopes(&map, Scopes::default())?,
        expires_at: expires_field(&map)?.flatten(),
        max_exports: int_field(&map, "max_exports")?.unwrap_or(DEFAULT_MAX_EXPORTS),
        per_minute: int_field(&map, "per_minute")?.unwrap_or(DEFAULT_PER_MINUTE),
    };
    let at = keys::now();
    let made = web::block(move || keyring::create(&state.store, spec, at))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (key, token) = made?;
    tracing::info!(key = %key.name, scopes = %key.scopes.summary(), "Access key created");
    let mut shown = keyring::shown(&key, at);
    shown["key"] = Value::String(token.expose().to_string());
    Ok(HttpResponse::Created().json(shown))
}

/// `GET /keys`: every key, revoked and expired ones included; never a secret.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    access::query_params(&req, &[])?;
    let all = on_store(&state, |s| s.keys()).await?;
    let at = keys::now();
    let shown: Vec<Value> = all.iter().map(|k| keyring::shown(k, at)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": shown })))
}

/// `GET /keys/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    access::query_params(&req, &[])?;
    let owned = id.to_string();
    let key = on_store(&state, move |s| s.key(&owned))
        .await?
        .ok_or_else(|| no_key(&id))?;
    Ok(HttpResponse::Ok().json(keyring::shown(&key, keys::now())))
}

/// `PATCH /keys/{id}`: changes its name, scopes, expiry or limits; the next request of the key
/// meets them, on every replica.
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let map = object(&read_body(payload, ADMIN_BODY_LIMIT).await?, KEY_FIELDS)?;
    let owned = id.to_string();
    let key = on_store(&state, move |s| s.key(&owned))
        .await?
        .ok_or_else(|| no_key(&id))?;
    let patch = KeyPatch {
        name: text_field(&map, "name", 64)?,
        scopes: Some(scopes(&map, key.scopes.clone())?),
        expires_at: expires_field(&map)?,
        max_exports: int_field(&map, "max_exports")?,
        per_minute: int_field(&map, "per_minute")?,
    };
    let changed = patch.apply(key);
    keyring::validate_name(&changed.name)?;
    keyring::validate_limits(changed.max_exports, changed.per_minute)?;
    let (written, name) = (changed.clone(), changed.name.clone());
    let replaced = web::block(move || state.store.replace_key(&written))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| keyring::taken(e, &name))?;
    if !replaced {
        return Err(no_key(&id));
    }
    tracing::info!(key = %changed.name, scopes = %changed.scopes.summary(), "Access key changed");
    Ok(HttpResponse::Ok().json(keyring::shown(&changed, keys::now())))
}

/// `DELETE /keys/{id}`: revokes the key (204). It stays listed, refused from its next request
/// on every replica.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    access::query_params(&req, &[])?;
    let (owned, at) = (id.to_string(), keys::now());
    let key = on_store(&state, move |s| {
        let key = s.key(&owned)?;
        s.revoke_key(&owned, at)?;
        Ok(key)
    })
    .await?
    .ok_or_else(|| no_key(&id))?;
    tracing::info!(key = %key.name, "Access key revoked");
    Ok(HttpResponse::NoContent().finish())
}

/// `query`: an object of parameters, or a query string.
fn query_field(map: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    match map.get("query") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => serde_urlencoded::from_str(s.trim_start_matches('?'))
            .map_err(|e| bad("query", e.to_string())),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(bad("query", format!("{k}: each value is a string"))),
            })
            .collect(),
        Some(_) => Err(bad(
            "query",
            "an object of export parameters, or a query string",
        )),
    }
}

/// Who may sign: `ADMIN_TOKEN`, or a caller with `share` (`EXPORT_TOKEN`, or a key) that may
/// read `export` (403 naming what it lacks), of an enabled resource. `Some(at)`: the links
/// cannot outlive the key that makes them, which expires `at`.
async fn may_sign(
    state: &AppState,
    req: &HttpRequest,
    export: &str,
) -> Result<Option<i64>, ApiError> {
    let name = export.rsplit_once('.').map_or(export, |(n, _)| n);
    let admin_token = state.admin.settings.admin_token.as_ref();
    let by_admin = match (admin_token, access::bearer(req)) {
        (Some(expected), Some(given)) => access::matches(&given, expected),
        _ => false,
    };
    let mut key_expires = None;
    if !by_admin {
        let caller = gate::require(state, req, Scope::Share).await?;
        caller.require(&Scope::Export(name.to_string()), state)?;
        if let gate::Caller::Key(k) = &caller {
            key_expires = k.expires_at;
        }
    }
    if state.served.export(name).is_none() {
        return Err(super::unserved(name));
    }
    Ok(key_expires)
}

/// `POST /links`: `{"export": "invoices.csv", "query": {...}, "expires": "7d"}` → 201
/// `{"url", "path", "expires_at"}`. The link opens exactly that export and query, with no other
/// token, until it expires.
pub async fn create_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, ADMIN_BODY_LIMIT).await?;
    let map = object(&body, &["export", "query", "expires"])?;
    let export = text_field(&map, "export", 200)?
        .ok_or_else(|| bad("export", "required: the export file, e.g. invoices.csv"))?;
    let key_expires = may_sign(&state, &req, &export).await?;
    let expires_at = match map.get("expires") {
        None => parse_expiry("7d", keys::now()).map_err(|e| bad("expires", e))?,
        Some(_) => expires_field(&map)?.flatten(),
    }
    .ok_or_else(|| {
        bad(
            "expires",
            "a link must expire: give a duration (7d), a time or a date",
        )
    })?;
    if let Some(at) = key_expires.filter(|at| expires_at > *at) {
        return Err(bad(
            "expires",
            format!(
                "a link cannot outlive the key that makes it (it expires at {})",
                rfc3339(at)
            ),
        ));
    }
    let pairs = query_field(&map)?;
    let info = req.connection_info();
    let base = format!("{}://{}", info.scheme(), info.host());
    let url = keyring::link(&state.access.link_key, &base, &export, &pairs, expires_at)?;
    let path = url[base.len()..].to_string();
    Ok(HttpResponse::Created().json(serde_json::json!({
        "url": url, "path": path, "expires_at": rfc3339(expires_at),
    })))
}
