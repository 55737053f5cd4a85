//! HTTP routes of the simulated Daftra API around the resources ([`super::api`]):
//! authentication, injected faults, the OAuth token, Site Info and the fault and fixture
//! controls under `/__sim`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::guard::{authorise, failed};
use super::state::{Faults, SimState};

type State = web::Data<Arc<SimState>>;

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

/// `POST /v2/oauth/token`: password and refresh_token grants.
pub async fn token(state: State, form: web::Form<TokenForm>) -> HttpResponse {
    let Some(client) = state.oauth.clone() else {
        return failed(StatusCode::NOT_FOUND, "OAuth is not enabled on this tenant");
    };
    let mut inner = state.lock();
    inner.stats.token_requests += 1;
    if form.client_id.as_deref() != Some(&client.client_id)
        || form.client_secret.as_deref() != Some(&client.client_secret)
    {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let ok = match form.grant_type.as_str() {
        "password" => {
            form.username.as_deref() == Some(&client.username)
                && form.password.as_deref() == Some(&client.password)
        }
        "refresh_token" => form
            .refresh_token
            .as_ref()
            .is_some_and(|t| inner.refresh_tokens.remove(t).is_some()),
        _ => false,
    };
    if !ok {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    }
    let (access, refresh, ttl) = state.issue_token(&mut inner);
    let mut body = json!({"token_type": "Bearer", "access_token": access, "refresh_token": refresh, "expires_in": ttl});
    if inner.faults.omit_expires_in {
        body.as_object_mut().map(|o| o.remove("expires_in"));
    }
    HttpResponse::Ok().json(body)
}

/// `POST /__sim/faults`: replaces the injected faults (JSON of [`Faults`]).
pub async fn set_faults(state: State, body: web::Json<Faults>) -> HttpResponse {
    let mut faults = body.into_inner();
    if std::mem::take(&mut faults.expire_tokens_now) {
        state.lock().access_tokens.clear();
    }
    state.set_faults(faults);
    HttpResponse::NoContent().finish()
}

/// `GET /__sim/stats`: request counters.
pub async fn stats(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

/// `GET /api2/site_info`: the account's Site Info, whose `timezone` is an id of the listing.
pub async fn site_info(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    HttpResponse::Ok().json(
        json!({"code": 200, "result": "successful", "data": {"Site": {
        "business_name": "شركة المحاكاة", "currency_code": "EGP", "timezone": "13",
        "date_format": "0"}}}),
    )
}

/// `GET /api2/listing/Timezone`: id to zone, as Daftra's general listing gives it.
pub async fn timezones(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    let zone = state.timezone.clone();
    HttpResponse::Ok().json(json!({"code": 200, "result": "successful", "data": [
        {"Timezone": {"id": "12", "zone_name": "Asia/Riyadh", "title": "(GMT+03:00) Riyadh"}},
        {"Timezone": {"id": "13", "zone_name": zone, "title": format!("{zone}")}}]}))
}

/// `PUT /__sim/records/{resource}/{id}`: stores the JSON body as record `id` exactly as given
/// (no `modified` bump), so any form Daftra might send (offsets, fractions, day-first dates,
/// huge amounts, `[]` for `{}`, Arabic-Indic digits) can be served on demand.
pub async fn put_raw(
    state: State,
    path: web::Path<(String, i64)>,
    body: web::Json<Map<String, Value>>,
) -> HttpResponse {
    let (resource, id) = path.into_inner();
    let Some(r) = crate::catalogue::by_name(&resource) else {
        return failed(StatusCode::NOT_FOUND, "no such resource");
    };
    let mut record = body.into_inner();
    record.insert(r.key.clone(), json!(id));
    match state.insert_raw_in(&resource, record) {
        Some(_) => HttpResponse::NoContent().finish(),
        None => failed(
            StatusCode::NOT_FOUND,
            "the simulator does not serve that resource",
        ),
    }
}

/// Registers every route on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2/oauth/token", web::post().to(token))
        .route("/api2/v2/oauth/token", web::post().to(token))
        .route("/__sim/faults", web::post().to(set_faults))
        .route("/__sim/stats", web::get().to(stats))
        .route("/__sim/records/{resource}/{id}", web::put().to(put_raw))
        .route("/api2/site_info", web::get().to(site_info))
        .route("/api2/site_info.json", web::get().to(site_info))
        .route("/api2/listing/Timezone", web::get().to(timezones))
        .default_service(web::to(super::api::dispatch));
}
