//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`, `/status`, `POST /poll/{resource}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{access, ApiError, AppState};
use crate::status::BrokerConnection;

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the store answers and the broker connection is up and not blocked;
/// 503 with the problems named otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    let store = state.store.clone();
    match web::block(move || store.outbox_len()).await {
        Ok(Ok(_)) => {}
        _ => problems
            .push(json!({"component": "store", "message": "the SQLite store does not answer"})),
    }
    match state.broker.get() {
        BrokerConnection::Connected => {}
        BrokerConnection::Blocked => problems.push(json!({"component": "broker", "message": "RabbitMQ blocks publishing (resource alarm)"})),
        BrokerConnection::Disconnected => problems.push(json!({"component": "broker", "message": match state.broker.error() {
            Some(e) => format!("not connected to RabbitMQ: {e}"),
            None => "not connected to RabbitMQ".into(),
        }})),
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "problems": problems}))
    }
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// `GET /status`: per resource the last poll (start, end, outcome, error, records, pages,
/// changes), plus outbox and broker state.
pub async fn status(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::check(&state, &req)?;
    let store = state.store.clone();
    let pending = web::block(move || store.outbox_len())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let publish_failures: std::collections::BTreeMap<_, _> = ["nack", "timeout", "connection"]
        .iter()
        .map(|r| {
            (
                *r,
                state.metrics.publish_failures.with_label_values(&[r]).get(),
            )
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "timezone": state.status.timezone(state.client.clock().zone.name()),
        "resources": state.status.snapshot(),
        "outbox_pending": pending,
        "broker": state.broker.get(),
        "publish_failures": publish_failures,
        "webhooks": super::webhooks::status_part(&state).await,
    })))
}

/// `POST /poll/{resource}`: 202; starts a poll now or joins the one running.
pub async fn poll(
    state: web::Data<AppState>,
    req: HttpRequest,
    resource: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access::check(&state, &req)?;
    let trigger = state
        .triggers
        .get(resource.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no resource named {:?}", resource.as_str())))?;
    let joined = trigger.request();
    Ok(HttpResponse::Accepted()
        .json(json!({"resource": resource.as_str(), "started": !joined, "joined_running": joined})))
}
