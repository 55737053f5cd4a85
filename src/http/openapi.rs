//! `GET /openapi.json`: the OpenAPI 3.1 description of every route (`openapi.json` beside this
//! file, written by hand; `tests/api/openapi.rs` checks it against the routes of [`super::app`]
//! and runs schemathesis against a running bridge). Open like `/healthz`; asked with an access
//! key, its examples name only the exports that key may read.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::gate::{self, Caller};
use super::{access, ApiError, AppState};

/// The document, compiled in.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn document(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let asked_with_token = access::bearer(&req).is_some()
        || access::web_query_pairs(&req)
            .iter()
            .any(|(k, _)| k == "token");
    let body = match asked_with_token {
        false => DOCUMENT.to_string(),
        true => match gate::caller(&state, &req, false).await? {
            caller @ Caller::Key(_) => for_caller(&state, &caller),
            _ => DOCUMENT.to_string(),
        },
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The document with the export and resource examples of what `caller` may read.
fn for_caller(state: &AppState, caller: &Caller) -> String {
    let mut doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
    let open: Vec<_> = state
        .served
        .exports()
        .into_iter()
        .filter(|r| caller.may_export(r))
        .collect();
    let examples: serde_json::Map<String, Value> = open
        .iter()
        .flat_map(|r| {
            ["csv", "xlsx"].map(|ext| {
                (
                    format!("{}_{ext}", r.name),
                    json!({"value": format!("{}.{ext}", r.name)}),
                )
            })
        })
        .collect();
    let params = &mut doc["components"]["parameters"];
    params["ExportFile"]["examples"] = Value::Object(examples);
    let resource = open
        .iter()
        .find(|r| r.parent.is_none())
        .map(|r| r.name.clone());
    match resource {
        Some(name) => params["Resource"]["example"] = Value::String(name),
        None => {
            if let Some(r) = params["Resource"].as_object_mut() {
                r.remove("example");
            }
        }
    }
    doc.to_string()
}
