//! The admin API of outgoing webhook endpoints (`/webhooks/endpoints...`), guarded by
//! `ADMIN_TOKEN` (404 without it). Daftra's inbound webhook is in `inbound.rs`.

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::access::admin;
use super::{access, on_store, rfc3339, ApiError, AppState, Invalid};
use crate::sinks::webhook::{filter, signature, target, ROTATION_OVERLAP};
use crate::store::{AttemptOutcome, Endpoint, EndpointPatch, NewEndpoint};

/// Largest admin request body, in bytes.
pub(super) const ADMIN_BODY_LIMIT: usize = 64 * 1024;

pub(super) fn bad(field: &str, message: impl Into<String>) -> ApiError {
    Invalid::new(field, message).into()
}

fn no_endpoint(id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook endpoint {id}"))
}

/// An endpoint as the admin API shows it: never its secret.
fn shown(e: &Endpoint, pending: u64) -> Value {
    json!({
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "disabled": e.disabled,
        "disabled_reason": e.disabled_reason,
        "created_at": rfc3339(e.created_at * 1000),
        "pending": pending,
    })
}

/// The JSON object of a request body; unknown fields are refused by name.
pub(super) fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad("body", format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad("body", "the body must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(
            k,
            format!("unknown field; the fields are {}", allowed.join(", ")),
        ));
    }
    Ok(map)
}

pub(super) fn text_field(
    map: &Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(bad(name, format!("at most {max} characters"))),
        Some(_) => Err(bad(name, "must be a string")),
    }
}

fn url_field(state: &AppState, map: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(url) = text_field(map, "url", 2048)? else {
        return Ok(None);
    };
    target::validate(&url, state.admin.settings.allow_private).map_err(|e| bad("url", e))?;
    Ok(Some(url))
}

fn events_field(map: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = map.get("events") else {
        return Ok(None);
    };
    let Some(items) = v.as_array().filter(|a| !a.is_empty() && a.len() <= 100) else {
        return Err(bad(
            "events",
            "a list of 1 to 100 routing-key patterns, e.g. [\"work_order.*\", \"invoice.created\"]",
        ));
    };
    items
        .iter()
        .map(|p| {
            let p = p
                .as_str()
                .ok_or_else(|| bad("events", "each pattern is a string"))?;
            filter::validate(p).map_err(|e| bad("events", e))?;
            if !matches_some_event(p) {
                return Err(bad(
                    "events",
                    format!("{p:?} matches no event: routing keys are <resource singular>.<created|updated|deleted>, e.g. invoice.created (daftra-bridge resources lists the resources)"),
                ));
            }
            Ok(p.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Whether `pattern` matches the routing key of some event of some resource of the catalogue
/// (enabled or not: an endpoint may be made ahead of a resource).
fn matches_some_event(pattern: &str) -> bool {
    crate::catalogue::all().iter().any(|r| {
        crate::events::Op::ALL
            .iter()
            .any(|op| filter::matches(pattern, &format!("{}.{}", r.singular, op.as_str())))
    })
}

pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| bad("body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The admin check, then the body as a JSON object with only the `allowed` fields.
async fn admin_object(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    admin(state, req)?;
    let body = read_body(payload, ADMIN_BODY_LIMIT).await?;
    object(&body, allowed)
}

fn new_id() -> String {
    format!("ep_{:016x}", rand::random::<u64>())
}

/// `POST /webhooks/endpoints`: 201 with the endpoint and its secret (shown only here and on
/// rotation).
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let map = admin_object(&state, &req, payload, &["url", "events", "description"]).await?;
    let url = url_field(&state, &map)?
        .ok_or_else(|| bad("url", "required: the https URL to deliver to"))?;
    let new = NewEndpoint {
        url,
        events: events_field(&map)?.unwrap_or_else(|| vec!["#".into()]),
        description: text_field(&map, "description", 1000)?.unwrap_or_default(),
    };
    let secret = signature::new_secret();
    let (id, s) = (new_id(), secret.clone());
    let endpoint = on_store(&state, move |store| store.create_endpoint(&id, &new, &s)).await?;
    state.admin.endpoints_changed.notify_one();
    tracing::info!(endpoint = %endpoint.id, url = %target::redact(&endpoint.url), "Webhook endpoint created");
    let mut shown = shown(&endpoint, 0);
    shown["secret"] = Value::String(secret.expose().to_string());
    Ok(HttpResponse::Created().json(shown))
}

/// `GET /webhooks/endpoints`: every endpoint, without secrets.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    access::query_params(&req, &[])?;
    let all = on_store(&state, |store| {
        store
            .endpoints()?
            .into_iter()
            .map(|e| Ok((store.endpoint_pending(&e.id)?, e)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let shown: Vec<Value> = all.iter().map(|(n, e)| shown(e, *n)).collect();
    Ok(HttpResponse::Ok().json(json!({ "endpoints": shown })))
}

async fn load(state: &AppState, id: &str) -> Result<(Endpoint, u64), ApiError> {
    let owned = id.to_string();
    on_store(state, move |store| {
        let Some(e) = store.endpoint(&owned)? else {
            return Ok(None);
        };
        Ok(Some((store.endpoint_pending(&owned)?, e)))
    })
    .await?
    .map(|(n, e)| (e, n))
    .ok_or_else(|| no_endpoint(id))
}

/// `GET /webhooks/endpoints/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    access::query_params(&req, &[])?;
    let (e, pending) = load(&state, &id).await?;
    Ok(HttpResponse::Ok().json(shown(&e, pending)))
}

/// `PATCH /webhooks/endpoints/{id}`: `url`, `events`, `description`, `disabled`.
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let map = admin_object(
        &state,
        &req,
        payload,
        &["url", "events", "description", "disabled"],
    )
    .await?;
    let disabled = match map.get("disabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("disabled", "must be true or false")),
    };
    let patch = EndpointPatch {
        url: url_field(&state, &map)?,
        events: events_field(&map)?,
        description: text_field(&map, "description", 1000)?,
        disabled,
    };
    let owned = id.to_string();
    let updated = on_store(&state, move |store| store.update_endpoint(&owned, &patch)).await?;
    if updated.is_none() {
        return Err(no_endpoint(&id));
    }
    state.admin.endpoints_changed.notify_one();
    let (e, pending) = load(&state, &id).await?;
    Ok(HttpResponse::Ok().json(shown(&e, pending)))
}

/// `DELETE /webhooks/endpoints/{id}`: 204; its queue and attempt log go with it.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let owned = id.to_string();
    if !on_store(&state, move |store| store.delete_endpoint(&owned)).await? {
        return Err(no_endpoint(&id));
    }
    state.metrics.forget_endpoint(&id);
    state.admin.endpoints_changed.notify_one();
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /webhooks/endpoints/{id}/rotate-secret`: a new secret; the old one keeps signing
/// beside it for 24 hours.
pub async fn rotate(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    // No fields: an empty body or `{}`.
    let body = read_body(payload, ADMIN_BODY_LIMIT).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        object(&body, &[])?;
    }
    let secret = signature::new_secret();
    let until = chrono::Utc::now().timestamp() + ROTATION_OVERLAP.as_secs() as i64;
    let (owned, s) = (id.to_string(), secret.clone());
    if !on_store(&state, move |store| store.rotate_secret(&owned, &s, until)).await? {
        return Err(no_endpoint(&id));
    }
    tracing::info!(endpoint = %id, "Webhook secret rotated; the previous one signs too for 24 hours");
    Ok(HttpResponse::Ok().json(json!({
        "id": id.as_str(),
        "secret": secret.expose(),
        "previous_secret_valid_until": rfc3339(until * 1000),
    })))
}

/// `POST /webhooks/endpoints/{id}/replay` with `{"since": "RFC 3339"}`: queues again every
/// logged event since then that the endpoint's filter accepts (202 with the count).
pub async fn replay(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let map = admin_object(&state, &req, payload, &["since"]).await?;
    let since = text_field(&map, "since", 64)?.ok_or_else(|| {
        bad(
            "since",
            "required: an RFC 3339 time, e.g. 2026-12-01T00:00:00Z",
        )
    })?;
    let since = chrono::DateTime::parse_from_rfc3339(&since)
        .map_err(|_| bad("since", "an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))?
        .timestamp();
    let (endpoint, _) = load(&state, &id).await?;
    let queued = on_store(&state, move |store| {
        let logged = store.events_since(since, endpoint.cursor)?;
        let messages = crate::sinks::webhook::messages(&endpoint.events, &logged);
        store.enqueue_messages(&endpoint.id, &messages, endpoint.cursor)?;
        Ok(messages.len())
    })
    .await?;
    state.admin.endpoints_changed.notify_one();
    Ok(HttpResponse::Accepted().json(json!({"id": id.as_str(), "queued": queued})))
}

/// `GET /webhooks/endpoints/{id}/deliveries[?limit=N]`: recent attempts, newest first.
pub async fn deliveries(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let limit = match access::query_params(&req, &["limit"])?.get("limit") {
        None => 100usize,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=crate::store::ATTEMPTS_KEPT as usize).contains(n))
            .ok_or_else(|| bad("limit", "a whole number from 1 to 1000"))?,
    };
    load(&state, &id).await?;
    let owned = id.to_string();
    let attempts = on_store(&state, move |store| store.attempts(&owned, limit)).await?;
    let shown: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "event_id": a.event_id,
                "attempt": a.attempt,
                "at": rfc3339(a.at_ms),
                "status": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
                "outcome": match a.outcome {
                    AttemptOutcome::Delivered => "delivered",
                    AttemptOutcome::RetryAt(_) => "retrying",
                    AttemptOutcome::Stopped => "stopped",
                    AttemptOutcome::Parked(_) => "parked",
                },
                "next_attempt_at": match a.outcome {
                    AttemptOutcome::RetryAt(t) => rfc3339(t),
                    _ => Value::Null,
                },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"id": id.as_str(), "deliveries": shown})))
}

/// The `webhooks` part of `/status`: each endpoint's state, with its URL's credentials and
/// query left out.
pub async fn status_part(state: &AppState) -> Value {
    let all = on_store(state, |store| {
        store
            .endpoints()?
            .into_iter()
            .map(|e| {
                let last = store.attempts(&e.id, 1)?.into_iter().next();
                Ok((store.endpoint_pending(&e.id)?, last, e))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match all {
        Ok(all) => Value::Array(
            all.iter()
                .map(|(pending, last, e)| {
                    json!({
                        "id": e.id,
                        "url": target::redact(&e.url),
                        "events": e.events,
                        "disabled": e.disabled,
                        "disabled_reason": e.disabled_reason,
                        "pending": pending,
                        "last_attempt": last.as_ref().map(|a| json!({
                            "at": rfc3339(a.at_ms),
                            "status": a.status,
                            "error": a.error,
                        })),
                    })
                })
                .collect(),
        ),
        Err(e) => json!({"error": e.to_string()}),
    }
}
