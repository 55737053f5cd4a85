//! `GET /openapi.json`: the OpenAPI 3.1 description of every route (`openapi.json` beside this
//! file, written by hand; `tests/api/openapi.rs` checks it against the routes of [`super::app`]
//! and runs schemathesis against a running bridge). No token: like `/healthz`, it is open.

use actix_web::HttpResponse;

/// The document, compiled in.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}
