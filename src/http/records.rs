//! `GET /records/{resource}/{id}`: one record as the snapshot holds it, whole, in the form
//! events show it: where an event cut to its changed line items points for the rest.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{access, gate, on_store, ApiError, AppState, Invalid};
use crate::access::Scope;

/// `GET /records/{resource}/{id}`: `{"resource", "id", "record"}`, the record now (it may be
/// newer than an event that points here); 404 when the snapshot does not hold it.
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = path.into_inner();
    gate::require(&state, &req, Scope::Export(name.clone())).await?;
    access::query_params(&req, &[])?;
    let feed = state
        .served
        .feeds
        .by_resource(&name)
        .ok_or_else(|| super::unserved(&name))?
        .clone();
    let id: i64 = crate::record::ascii_digits(&id)
        .parse()
        .map_err(|_| Invalid::new("id", format!("a record id, a whole number; got {id:?}")))?;
    let key = feed.key().to_string();
    let stored = on_store(&state, move |s| s.load_one(&key, id)).await?;
    let record: crate::record::Record = stored
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| ApiError::NotFound(format!("no {name} record {id} in the snapshot")))?;
    let image = crate::events::record_json(feed.resource, &feed.account.clock, record);
    let body = format!(
        r#"{{"resource":{},"id":{id},"record":{image}}}"#,
        serde_json::Value::from(name)
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
