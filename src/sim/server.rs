//! HTTP routes of the simulated Daftra v1 API (work orders, OAuth token, fault control).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::data::flip_number_forms;
use super::state::{Drift, Faults, RetryAfterForm, SimState};

type State = web::Data<Arc<SimState>>;

fn failed(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"result": "failed", "code": status.as_u16(), "message": message}))
}

/// Checks `apikey` or `Authorization: Bearer`; both at once fail, as Daftra documents.
#[allow(clippy::result_large_err)]
fn authorise(state: &SimState, req: &HttpRequest) -> Result<(), HttpResponse> {
    let apikey = req.headers().get("apikey").and_then(|v| v.to_str().ok());
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut inner = state.lock();
    let ok = match (apikey, bearer) {
        (Some(k), None) => k == state.api_key,
        (None, Some(t)) => inner
            .access_tokens
            .get(t)
            .is_some_and(|exp| *exp > Instant::now()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        inner.stats.unauthorized += 1;
        Err(failed(StatusCode::UNAUTHORIZED, "Unauthorized"))
    }
}

/// Common faults of every API request: latency, 429 and 5xx.
async fn common_faults(state: &SimState) -> Option<HttpResponse> {
    let latency = state.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut inner = state.lock();
    let f = &mut inner.faults;
    let response = if f.rate_limited_next > 0 {
        f.rate_limited_next -= 1;
        let mut r = HttpResponse::TooManyRequests();
        match f.retry_after {
            RetryAfterForm::Seconds => {
                r.insert_header(("Retry-After", "1"));
            }
            RetryAfterForm::HttpDate => {
                let at = std::time::SystemTime::now() + Duration::from_secs(1);
                r.insert_header(("Retry-After", httpdate::fmt_http_date(at)));
            }
            RetryAfterForm::Absent => {}
        }
        Some(r.json(json!({"result": "failed", "code": 429, "message": "Too Many Requests"})))
    } else if f.server_errors_next > 0 {
        f.server_errors_next -= 1;
        let status = if f.server_errors_next % 2 == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Some(failed(status, "Internal error"))
    } else if f.server_error_rate > 0.0 && rand::random::<f64>() < f.server_error_rate {
        Some(failed(StatusCode::INTERNAL_SERVER_ERROR, "Internal error"))
    } else {
        None
    };
    if response.is_some() {
        inner.stats.faults_injected += 1;
    }
    response
}

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    limit: Option<String>,
}

fn take(counter: &mut u32) -> bool {
    let hit = *counter > 0;
    *counter = counter.saturating_sub(1);
    hit
}

/// `GET /api2/work_orders{.json}?page&limit`: Daftra's list envelope with `pagination`.
pub async fn list(state: State, req: HttpRequest, q: web::Query<PageQuery>) -> HttpResponse {
    state.lock().stats.list_requests += 1;
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    if let Some(r) = common_faults(&state).await {
        return r;
    }
    let page: usize = q.page.as_deref().unwrap_or("1").parse().unwrap_or(0);
    let limit: usize = q.limit.as_deref().unwrap_or("20").parse().unwrap_or(0);
    if page < 1 || !(1..=1000).contains(&limit) {
        return HttpResponse::BadRequest().json(json!({"result": "failed", "code": 400,
            "message": "Invalid page or limit", "validation_errors": {"limit": "between 1 and 1000"}}));
    }
    let mut inner = state.lock();
    let inner = &mut *inner;
    let f = &mut inner.faults;
    // One malformed answer per request, in this order.
    let truncated = take(&mut f.truncated_next);
    let html = !truncated && take(&mut f.html_next);
    let failed_result = !truncated && !html && take(&mut f.failed_result_next);
    let no_pagination =
        !truncated && !html && !failed_result && take(&mut f.missing_pagination_next);
    if html {
        inner.stats.faults_injected += 1;
        return HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body><h1>502 Bad Gateway</h1></body></html>");
    }
    if failed_result {
        inner.stats.faults_injected += 1;
        return HttpResponse::Ok()
            .json(json!({"result": "failed", "code": 500, "message": "Database busy"}));
    }
    let total = inner.records.len();
    let page_count = total.div_ceil(limit);
    let flip = inner.faults.flip_number_forms && {
        inner.flip = !inner.flip;
        inner.flip
    };
    let ids: Vec<i64> = inner
        .records
        .keys()
        .skip((page - 1) * limit)
        .take(limit)
        .copied()
        .collect();
    let link = |p: usize| Value::from(format!("/api2/work_orders?page={p}&limit={limit}"));
    let pagination = json!({
        "prev": if page > 1 { link(page - 1) } else { Value::Null },
        "next": if page < page_count { link(page + 1) } else { Value::Null },
        "page": page,
        "page_count": page_count,
        "total_results": (total as i64 + inner.faults.total_results_offset).max(0),
    });
    // The envelope is assembled from cached item texts: serialising 1,000 records per request
    // under the lock made the simulator, not the bridge, the bottleneck of benchmarks.
    let mut body = String::with_capacity(ids.len() * 700 + 300);
    body.push_str(r#"{"code":200,"result":"successful","data":["#);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if flip {
            let flipped = flip_number_forms(&inner.records[id]);
            body.push_str(&super::state::item_json(&flipped));
        } else {
            body.push_str(inner.item_json(*id));
        }
    }
    body.push(']');
    if no_pagination {
        inner.stats.faults_injected += 1;
    } else {
        body.push_str(r#","pagination":"#);
        body.push_str(&pagination.to_string());
    }
    body.push('}');
    let mut bytes = body.into_bytes();
    if truncated {
        inner.stats.faults_injected += 1;
        bytes.truncate(bytes.len() / 2);
    } else if !no_pagination {
        inner.stats.pages_served += 1;
    }
    apply_drift(inner, page as u32, state.seed);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(bytes)
}

fn apply_drift(inner: &mut super::state::Inner, page: u32, seed: u64) {
    let Some(drift) = inner.faults.drift.clone() else {
        return;
    };
    match drift {
        Drift::Delete { after_page, id } if after_page == page => {
            inner.records.remove(&id);
            inner.item_json.remove(&id);
        }
        Drift::Insert { after_page } if after_page == page => {
            let id = inner.next_id;
            inner.next_id += 1;
            inner
                .records
                .insert(id, super::data::seeded_work_order(seed, id));
        }
        _ => return,
    }
    inner.faults.drift = None;
}

fn parse_id(raw: &str) -> Option<i64> {
    raw.trim_end_matches(".json").parse().ok()
}

/// `GET /api2/work_orders/{id}`: one record, or Daftra's 404 body.
pub async fn get_one(state: State, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    state.lock().stats.get_requests += 1;
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    if let Some(r) = common_faults(&state).await {
        return r;
    }
    match parse_id(&id).and_then(|id| state.lock().records.get(&id).cloned()) {
        Some(r) => HttpResponse::Ok()
            .json(json!({"code": 200, "result": "successful", "data": {"WorkOrder": r}})),
        None => failed(StatusCode::NOT_FOUND, "Item not found"),
    }
}

fn model(body: &Value) -> Option<Map<String, Value>> {
    body.get("WorkOrder").and_then(Value::as_object).cloned()
}

/// `POST /api2/work_orders` with `{"WorkOrder":{...}}`: 202 `{"id":"2415"}`.
pub async fn create(state: State, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    let Some(fields) = model(&body) else {
        return failed(StatusCode::BAD_REQUEST, "Expected a WorkOrder object");
    };
    let mut errors = Map::new();
    for required in ["title", "start_date"] {
        if fields.get(required).is_none_or(|v| v.is_null() || v == "") {
            errors.insert(required.into(), json!("This field is required"));
        }
    }
    if !errors.is_empty() {
        return HttpResponse::BadRequest()
            .json(json!({"result": "failed", "code": 400, "message": "Validation error", "validation_errors": errors}));
    }
    let id = state.create(fields);
    HttpResponse::Accepted().json(json!({"id": id.to_string()}))
}

/// `PUT /api2/work_orders/{id}`.
pub async fn update(
    state: State,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    let (Some(id), Some(fields)) = (parse_id(&id), model(&body)) else {
        return failed(StatusCode::BAD_REQUEST, "Expected a WorkOrder object");
    };
    if state.update(id, fields) {
        HttpResponse::Ok().json(json!({"code": 200, "result": "successful", "id": id.to_string()}))
    } else {
        failed(StatusCode::NOT_FOUND, "Item not found")
    }
}

/// `DELETE /api2/work_orders/{id}`.
pub async fn delete(state: State, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    if parse_id(&id).is_some_and(|id| state.delete(id)) {
        HttpResponse::Ok().json(json!({"code": 200, "result": "successful"}))
    } else {
        failed(StatusCode::NOT_FOUND, "Item not found")
    }
}

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

/// Registers every route on an actix `App`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api2/work_orders", web::get().to(list))
        .route("/api2/work_orders.json", web::get().to(list))
        .route("/api2/work_orders", web::post().to(create))
        .route("/api2/work_orders.json", web::post().to(create))
        .route("/api2/work_orders/{id}", web::get().to(get_one))
        .route("/api2/work_orders/{id}", web::put().to(update))
        .route("/api2/work_orders/{id}", web::delete().to(delete))
        .route("/v2/oauth/token", web::post().to(token))
        .route("/api2/v2/oauth/token", web::post().to(token))
        .route("/__sim/faults", web::post().to(set_faults))
        .route("/__sim/stats", web::get().to(stats));
}
