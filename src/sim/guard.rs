//! What every simulated API request passes first: authentication as Daftra checks it, and the
//! injected faults (latency, 429, 408, 5xx). Used by the resource routes and the other routes.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::state::{RetryAfterForm, SimState};

pub(super) fn failed(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"result": "failed", "code": status.as_u16(), "message": message}))
}

/// Checks `apikey` or `Authorization: Bearer`; both at once fail, as Daftra documents.
#[allow(clippy::result_large_err)]
pub(super) fn authorise(state: &SimState, req: &HttpRequest) -> Result<(), HttpResponse> {
    let apikey = req.headers().get("apikey").and_then(|v| v.to_str().ok());
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut inner = state.lock();
    let ok = !inner.faults.refuse_credentials
        && match (apikey, bearer) {
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
pub(super) async fn common_faults(state: &SimState) -> Option<HttpResponse> {
    {
        let mut inner = state.lock();
        if let Some(at) = inner.last_429.take() {
            let gap = at.elapsed().as_millis() as u64;
            inner.stats.gaps_after_429_ms.push(gap);
        }
    }
    let latency = state.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut inner = state.lock();
    let f = &mut inner.faults;
    let limited = f.rate_limited_next > 0
        || (f.rate_limited_rate > 0.0 && rand::random::<f64>() < f.rate_limited_rate);
    let response = if limited {
        f.rate_limited_next = f.rate_limited_next.saturating_sub(1);
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
    } else if f.request_timeouts_next > 0 {
        f.request_timeouts_next -= 1;
        Some(failed(StatusCode::REQUEST_TIMEOUT, "Request Timeout"))
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
    if limited {
        inner.last_429 = Some(Instant::now());
    }
    response
}
