//! The admin API of parked events (`/outbox/parked...`, under `ADMIN_TOKEN`): events a sink
//! refused for good, kept until an operator retries or drops them; and their part of `/status`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::access::{self, admin};
use super::{on_store, rfc3339, ApiError, AppState, Invalid};
use crate::store::Parked;

/// Parked events listed in `/status`, newest first.
const STATUS_LISTED: usize = 100;

/// A parked event as the API shows it: where it was headed, what it is, why it was parked.
fn shown(p: &Parked) -> Value {
    json!({
        "id": p.id,
        "sink": p.sink,
        "endpoint": p.endpoint,
        "seq": p.seq,
        "event_id": p.event_id,
        "type": p.routing_key,
        "resource": p.resource,
        "record_id": p.record_id,
        "bytes": p.bytes,
        "reason": p.reason,
        "error": p.error,
        "parked_at": rfc3339(p.parked_at * 1000),
        "retry_requested": p.retry_requested,
    })
}

/// The `{id}` of a route, a parked event's id.
fn parked_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| Invalid::new("id", "a parked event's id, a whole number").into())
}

fn no_parked(id: i64) -> ApiError {
    ApiError::NotFound(format!("no parked event {id}"))
}

/// `GET /outbox/parked[?limit=N]`: parked events, newest first (at most 1000; default 100).
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let limit = match access::query_params(&req, &["limit"])?.get("limit") {
        None => 100usize,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| Invalid::new("limit", "a whole number from 1 to 1000"))?,
    };
    let parked = on_store(&state, move |s| s.parked(limit)).await?;
    let shown: Vec<Value> = parked.iter().map(shown).collect();
    Ok(HttpResponse::Ok().json(json!({ "parked": shown })))
}

/// `GET /outbox/parked/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let id = parked_id(&id)?;
    let parked = on_store(&state, move |s| s.parked_one(id)).await?;
    Ok(HttpResponse::Ok().json(shown(&parked.ok_or_else(|| no_parked(id))?)))
}

/// `POST /outbox/parked/{id}/retry`: 202; the sink tries it again (a webhook message goes
/// back into its endpoint's queue, due now; a RabbitMQ event is published on its own). Refused
/// again, it stays parked with the new answer.
pub async fn retry(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let id = parked_id(&id)?;
    if !on_store(&state, move |s| s.retry_parked(id)).await? {
        return Err(no_parked(id));
    }
    state.admin.outbox.notify();
    state.admin.endpoints_changed.notify_one();
    tracing::info!(
        parked = id,
        "Parked event queued for a retry by the operator"
    );
    Ok(HttpResponse::Accepted().json(json!({"id": id, "retry": "queued"})))
}

/// `DELETE /outbox/parked/{id}`: 204; the event is dropped for good.
pub async fn drop(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let id = parked_id(&id)?;
    if !on_store(&state, move |s| s.drop_parked(id)).await? {
        return Err(no_parked(id));
    }
    tracing::info!(parked = id, "Parked event dropped by the operator");
    Ok(HttpResponse::NoContent().finish())
}

/// The `parked` part of `/status`: how many events are parked, by sink, and the newest ones
/// with their record, so a consumer of that record knows one of its events is missing.
pub async fn status_part(state: &AppState) -> Value {
    let read = on_store(state, |s| {
        Ok((s.parked_counts()?, s.parked(STATUS_LISTED)?))
    })
    .await;
    match read {
        Ok((counts, newest)) => {
            let by_sink: serde_json::Map<String, Value> = crate::metrics::Sink::ALL
                .iter()
                .map(|k| {
                    (
                        k.as_str().to_string(),
                        json!(counts.get(k.as_str()).copied().unwrap_or(0)),
                    )
                })
                .collect();
            json!({
                "count": counts.values().sum::<u64>(),
                "by_sink": by_sink,
                "events": newest.iter().map(shown).collect::<Vec<_>>(),
            })
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}
