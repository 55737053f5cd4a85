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
/// what changed; the body (up to 1 MB) is only read for whether it reports a delete
/// ([`reports_delete`]), which makes that poll a full scan: only a full scan proves deletes.
pub async fn inbound(
    state: web::Data<AppState>,
    req: HttpRequest,
    resource: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(expected) = &state.admin.settings.inbound_token else {
        return Err(ApiError::NotFound(
            "no such route (the inbound webhook is enabled by INBOUND_WEBHOOK_TOKEN)".into(),
        ));
    };
    access::require(&req, expected, true)?;
    let Some((_, trigger)) = state.served.trigger(resource.as_str()) else {
        return Err(super::unserved(resource.as_str()));
    };
    let body = read_body(payload, INBOUND_BODY_LIMIT).await?;
    if *state.health.role.borrow() == crate::leader::Role::Follower {
        return forward_to_leader(&state, &req, &resource, expected, body.freeze()).await;
    }
    let full = full_in_query(req.query_string()) || reports_delete(&body);
    let deferred = trigger.deferred();
    let joined = match full {
        true => trigger.request_again_full(),
        false => trigger.request_again(),
    };
    tracing::info!(resource = %resource, queued_after_running = joined, deferred, full, "Daftra webhook received; polling");
    let poll = match (deferred, joined) {
        (true, _) => "queued until INBOUND_MIN_INTERVAL_SECS has passed",
        (false, true) => "queued after the running poll",
        (false, false) => "started",
    };
    Ok(HttpResponse::Accepted().json(json!({
        "status": "accepted",
        "resource": resource.as_str(),
        "full": full,
        "poll": poll,
    })))
}

/// `full=true` in the URL registered with Daftra (other parameters are Daftra's business and
/// ignored; an unreadable `full` is not a full scan).
fn full_in_query(query: &str) -> bool {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "full" && crate::config::parse_bool(v) == Some(true))
}

/// Whether Daftra's call reports a delete: its body's top-level `event`, `action` or `type`
/// (JSON) names one (`invoice.deleted`, `delete`, ...). Daftra documents no payload for its app
/// webhooks, so the URL registered for delete events can say so itself with `?full=true`.
pub fn reports_delete(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
        return false;
    };
    ["event", "action", "type"].iter().any(|k| {
        map.get(*k)
            .and_then(|v| v.as_str())
            .is_some_and(|v| v.to_ascii_lowercase().contains("delete"))
    })
}

/// Marks a call a follower forwarded, so it is never forwarded twice.
const FORWARDED: &str = "x-daftra-bridge-forwarded";

/// A follower hands Daftra's call to the leader (which polls) and answers with the leader's
/// answer; `503` with `Retry-After` when no leader can be reached, so Daftra calls again.
async fn forward_to_leader(
    state: &AppState,
    req: &HttpRequest,
    resource: &str,
    token: &crate::secret::Secret,
    body: bytes::Bytes,
) -> Result<HttpResponse, ApiError> {
    let unavailable = |why: String| ApiError::Unavailable {
        message: format!("this replica follows and {why}; retry shortly"),
        retry_after: super::STORE_RETRY_AFTER_SECS,
    };
    if req.headers().contains_key(FORWARDED) {
        return Err(unavailable("the call was already forwarded once".into()));
    }
    let ApiError::NotLeader(Some(leader)) = super::ops::not_leader(state).await else {
        return Err(unavailable("no leader is known yet".into()));
    };
    let answer = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .post(format!("{leader}/webhooks/daftra/{resource}"))
        .bearer_auth(token.expose())
        .header(FORWARDED, "1")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "the leader at {leader} did not answer: {}",
                crate::daftra::error_chain(&e)
            ))
        })?;
    let status = actix_web::http::StatusCode::from_u16(answer.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let text = answer.bytes().await.unwrap_or_default();
    tracing::info!(resource, leader = %leader, status = status.as_u16(), "Daftra webhook forwarded to the leader");
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(text))
}
