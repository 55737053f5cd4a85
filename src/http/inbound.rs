//! Daftra's inbound app webhook, `POST /webhooks/daftra/{resource}`, guarded by
//! `INBOUND_WEBHOOK_TOKEN` (Bearer or `?token=`; 404 without it).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::webhooks::read_body;
use super::{access, ApiError, AppState};

/// Largest inbound webhook body, in bytes (413 above).
pub const INBOUND_BODY_LIMIT: usize = 1024 * 1024;

/// `POST /webhooks/daftra/{resource}`: 202 at once, and a poll of that resource now, or one
/// more right after the running one (calls during one poll are coalesced). The poll decides
/// what changed; the body is read (up to 1 MB) and ignored.
pub async fn inbound(
    state: web::Data<AppState>,
    req: HttpRequest,
    resource: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(expected) = &state.webhooks.inbound_token else {
        return Err(ApiError::NotFound(
            "no such route (the inbound webhook is enabled by INBOUND_WEBHOOK_TOKEN)".into(),
        ));
    };
    access::require(&req, expected, true)?;
    let Some(trigger) = state.triggers.get(resource.as_str()) else {
        return Err(ApiError::NotFound(format!(
            "{resource} is not an enabled resource (DAFTRA_RESOURCES)"
        )));
    };
    read_body(payload, INBOUND_BODY_LIMIT).await?;
    let joined = trigger.request_again();
    tracing::info!(resource = %resource, queued_after_running = joined, "Daftra webhook received; polling");
    Ok(HttpResponse::Accepted().json(json!({
        "status": "accepted",
        "resource": resource.as_str(),
        "poll": if joined { "queued after the running poll" } else { "started" },
    })))
}
