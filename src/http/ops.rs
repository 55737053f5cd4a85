//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`, `/status`, `POST /poll/{resource}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{access, gate, ApiError, AppState, Invalid};
use crate::access::Scope;
use crate::leader::Role;
use crate::status::BrokerConnection;

/// The answer of a leader-only route on a follower: `409` naming the leader's address.
pub(super) async fn not_leader(state: &AppState) -> ApiError {
    let store = state.store.clone();
    let leader = web::block(move || store.leader_address())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    ApiError::NotLeader(leader)
}

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// How long a Daftra answer counts as recent for readiness, at least: a replica that reads
/// Daftra live must have reached it within this, or within three poll intervals if longer.
const DAFTRA_RECENT: std::time::Duration = std::time::Duration::from_secs(300);

/// `GET /readyz`: whether this replica can serve exports. 200 when the store answers and a
/// snapshot exists or Daftra answered recently; 503 otherwise. The body lists each component
/// (`store`, `daftra`, `broker`) with its state; the broker's state never makes it 503 (exports
/// do not need it; `/status`, the gauges and the alerts report it).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let store_answer = web::block(move || store.ping().and_then(|()| store.any_baseline())).await;
    state
        .metrics
        .set_store_up(matches!(store_answer, Ok(Ok(_))));
    let (store_part, snapshot) = match store_answer {
        Ok(Ok(snapshot)) => (json!({"state": "ok"}), snapshot),
        Ok(Err(e)) => (json!({"state": "error", "message": e.to_string()}), false),
        Err(e) => (json!({"state": "error", "message": e.to_string()}), false),
    };
    let (daftra_part, daftra_problem) = daftra_component(&state, snapshot);
    let broker = state.health.broker.get();
    let mut broker_part = json!({"state": broker});
    if broker != BrokerConnection::Connected {
        if let Some(e) = state.health.broker.error() {
            broker_part["message"] = e.into();
        } else if broker == BrokerConnection::Blocked {
            broker_part["message"] = "RabbitMQ blocks publishing (resource alarm)".into();
        }
    }
    let mut problems = Vec::new();
    if store_part["state"] != "ok" {
        problems.push(json!({"component": "store", "message": format!("the store does not answer: {}", store_part["message"].as_str().unwrap_or_default())}));
    }
    if store_part["state"] == "ok" || daftra_part["state"] == "refused" {
        problems.extend(daftra_problem);
    }
    let components = json!({"store": store_part, "daftra": daftra_part, "broker": broker_part});
    let role = state.health.role.borrow().as_str();
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready", "role": role, "components": components}))
    } else {
        HttpResponse::ServiceUnavailable().json(
            json!({"status": "not_ready", "role": role, "problems": problems, "components": components}),
        )
    }
}

/// The `daftra` component of `/readyz`, and its problem: refused credentials (whatever the
/// snapshot: nothing can be polled), or no snapshot and no recent answer.
fn daftra_component(
    state: &AppState,
    snapshot: bool,
) -> (serde_json::Value, Option<serde_json::Value>) {
    let longest = state
        .served
        .intervals
        .values()
        .max()
        .copied()
        .unwrap_or_default();
    let window = DAFTRA_RECENT.max(longest * 3);
    let last = oldest_last_answer(state);
    let recent = last.is_some_and(|t| {
        (chrono::Utc::now() - t)
            .to_std()
            .is_ok_and(|age| age <= window)
    });
    let refused = refusal(state);
    let part = json!({
        "state": if refused.is_some() { "refused" } else if recent { "ok" } else if last.is_some() { "stale" } else { "unknown" },
        "last_answer": last.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "snapshot": snapshot,
        "refused": refused,
    });
    let problem = match &refused {
        Some(r) => Some(json!({"component": "daftra", "message": format!(
            "Daftra refuses the account's credentials (HTTP {}: {}): check {}",
            r.status, r.message, r.check.join(", ")
        )})),
        None if !snapshot && !recent => Some(json!({"component": "daftra", "message": format!(
            "no snapshot yet and no answer from Daftra in the last {} s: exports cannot be served",
            window.as_secs()
        )})),
        None => None,
    };
    (part, problem)
}

/// The refusal of the credentials of the first account Daftra refuses, if any.
fn refusal(state: &AppState) -> Option<crate::daftra::credentials::Refusal> {
    state
        .served
        .feeds
        .accounts()
        .iter()
        .find_map(|a| a.client.credentials().refusal())
}

/// The zone timestamps are read in, of the account `/status` reports on (the `DAFTRA_*` one).
fn default_zone(state: &AppState) -> &'static str {
    state
        .served
        .feeds
        .all()
        .first()
        .map_or("UTC", |f| f.account.clock.zone.name())
}

/// The oldest of the accounts' last answers from Daftra (`None` while one never answered):
/// every account served must have answered for the replica to count Daftra as recent.
fn oldest_last_answer(state: &AppState) -> Option<chrono::DateTime<chrono::Utc>> {
    let answers: Vec<_> = state
        .served
        .feeds
        .accounts()
        .iter()
        .map(|a| a.client.last_answer())
        .collect();
    answers.iter().copied().min().flatten()
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
    let caller = gate::require(&state, &req, Scope::Status).await?;
    let role = *state.health.role.borrow();
    let store = state.store.clone();
    let (pending, saved, leader) = web::block(move || {
        let pending = store.outbox_len()?;
        // A follower does not poll: the leader's saved statuses are the news.
        let saved = match role {
            Role::Follower => store.poll_statuses()?,
            Role::Leader => Default::default(),
        };
        Ok::<_, crate::store::StoreError>((pending, saved, store.leader_address()?))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    state.health.status.merge_saved(&saved);
    Ok(HttpResponse::Ok().json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "role": role.as_str(),
        "leader": leader,
        "timezone": state.health.status.timezone(default_zone(&state)),
        "account": {
            "credentials": match (refusal(&state), oldest_last_answer(&state)) {
                (Some(_), _) => "refused",
                (None, Some(_)) => "accepted",
                (None, None) => "unknown",
            },
            "refused": refusal(&state),
        },
        "resources": readable_statuses(&caller, state.health.status.snapshot()),
        "outbox_pending": pending,
        "broker": state.health.broker.get(),
        "publish_failures": state.health.broker.failures(),
        "webhooks": super::webhooks::status_part(&state).await,
        "parked": super::parked::status_part(&state).await,
    })))
}

/// The poll statuses of the resources `caller` may read: a key sees nothing of the others.
fn readable_statuses<V: serde::Serialize>(
    caller: &gate::Caller,
    all: std::collections::BTreeMap<String, V>,
) -> std::collections::BTreeMap<String, V> {
    if !matches!(caller, gate::Caller::Key(_)) {
        return all;
    }
    all.into_iter()
        .filter(|(name, _)| crate::catalogue::by_name(name).is_some_and(|r| caller.may_export(r)))
        .collect()
}

/// `POST /poll/{resource}[?full=true]`: 202; starts a poll now or joins the one running. With
/// `full=true` the poll is a full scan (deletes, the audit), started right after a running one.
pub async fn poll(
    state: web::Data<AppState>,
    req: HttpRequest,
    resource: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    gate::require(&state, &req, Scope::Poll).await?;
    let full = full_asked(&req)?;
    if *state.health.role.borrow() == Role::Follower {
        return Err(not_leader(&state).await);
    }
    let (_, trigger) = state
        .served
        .trigger(resource.as_str())
        .ok_or_else(|| super::unserved(resource.as_str()))?;
    if full {
        let running = trigger.request_full();
        return Ok(HttpResponse::Accepted().json(json!({
            "resource": resource.as_str(), "full": true, "started": !running, "joined_running": false,
            "queued_after_running": running,
        })));
    }
    let joined = trigger.request();
    Ok(HttpResponse::Accepted().json(
        json!({"resource": resource.as_str(), "full": false, "started": !joined, "joined_running": joined}),
    ))
}

/// The `full` query parameter (`true`/`false`, default `false`); anything else is a 400 naming
/// it. Other parameters are refused too, so a typo is not silently a plain poll.
pub(super) fn full_asked(req: &HttpRequest) -> Result<bool, ApiError> {
    match access::query_params(req, &["full"])?.get("full") {
        None => Ok(false),
        Some(v) => crate::config::parse_bool(v)
            .ok_or_else(|| Invalid::new("full", "expected true or false").into()),
    }
}
