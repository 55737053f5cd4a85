//! `GET /asyncapi.json` (the AsyncAPI 3.0 document of the events) and `GET /schemas/{type}.json`
//! (the JSON Schema of one event type's `data`, where every event's `dataschema` points). Both
//! are built once at start-up from the catalogue and the served resources; open, like
//! `/openapi.json`.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::{access, ApiError, AppState};
use crate::events::asyncapi::{self, Deployment};
use crate::events::schema::data_schema;
use crate::events::{event_type, schema_path, Op};

/// The event documents, as served.
pub struct EventDocs {
    /// The AsyncAPI document (JSON text).
    asyncapi: String,
    /// Each event type's `data` schema (JSON text), by type.
    schemas: HashMap<String, String>,
}

impl EventDocs {
    /// The documents of `deployment`.
    pub fn new(deployment: &Deployment<'_>) -> EventDocs {
        let mut schemas = HashMap::new();
        for r in deployment.resources {
            for op in Op::ALL {
                let kind = event_type(r, op);
                let id = format!("{}{}", deployment.public_url, schema_path(&kind));
                schemas.insert(kind, data_schema(r, op, &id).to_string());
            }
        }
        EventDocs {
            asyncapi: asyncapi::document(deployment).to_string(),
            schemas,
        }
    }
}

/// `GET /asyncapi.json`.
pub async fn asyncapi(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::query_params(&req, &[])?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(state.docs.asyncapi.clone()))
}

/// `GET /schemas/{type}.json`: 404 naming the types there are for anything else.
pub async fn schema(
    state: web::Data<AppState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access::query_params(&req, &[])?;
    let kind = file.strip_suffix(".json").unwrap_or(&file);
    let body = state.docs.schemas.get(kind).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no event type {kind:?} here: /schemas/<type>.json, such as /schemas/com.daftra.work_order.created.json (GET /asyncapi.json lists them)"
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(body.clone()))
}
