//! The simulated resources' API: every served resource's list, record and write paths as the
//! catalogue declares them (`GET/POST /api2/{resource}`, `GET/PUT/DELETE /api2/{resource}/{id}`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::data::flip_number_forms;
use super::guard::{authorise, common_faults, failed};
use super::state::{Drift, SimState};
use crate::catalogue::Resource;

type State = web::Data<Arc<SimState>>;

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    limit: Option<String>,
    recursive: Option<String>,
    /// CakePHP's paginator: the column to order by, and `asc` or `desc`.
    sort: Option<String>,
    direction: Option<String>,
}

impl PageQuery {
    /// The order asked for, `(column, descending)`, when it is a column of `resource`.
    fn order(&self, resource: &Resource) -> Option<(String, bool)> {
        let column = self.sort.as_deref()?;
        resource.column(column)?;
        let descending = self
            .direction
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("desc"));
        Some((column.to_string(), descending))
    }
}

/// The ids of page `page` (from 1) of `limit` records, by key or in `order`: CakePHP's
/// paginator on MySQL, empty values first ascending and last descending, ties by key.
fn page_ids(
    table: &super::state::Table,
    order: Option<(String, bool)>,
    page: usize,
    limit: usize,
) -> Vec<i64> {
    let skip = (page - 1) * limit;
    let Some((column, descending)) = order else {
        return table
            .records
            .keys()
            .skip(skip)
            .take(limit)
            .copied()
            .collect();
    };
    if table.resource.changed_at.as_deref() == Some(column.as_str()) {
        // Kept sorted beside the records (every record has one): a million of them are not
        // sorted per request.
        let index = &table.by_changed;
        let ordered: Box<dyn Iterator<Item = &(String, i64)>> = match descending {
            true => Box::new(index.iter().rev()),
            false => Box::new(index.iter()),
        };
        return ordered.skip(skip).take(limit).map(|(_, id)| *id).collect();
    }
    let mut all: Vec<(Option<String>, i64)> = table
        .records
        .iter()
        .map(|(id, r)| (r.get(&column).map(sort_text), *id))
        .collect();
    all.sort();
    if descending {
        all.reverse();
    }
    all.into_iter()
        .skip(skip)
        .take(limit)
        .map(|(_, id)| id)
        .collect()
}

/// A value as the paginator orders it: text as it is, anything else as its JSON.
pub(super) fn sort_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn take(counter: &mut u32) -> bool {
    let hit = *counter > 0;
    *counter = counter.saturating_sub(1);
    hit
}

/// What a request path names: a resource's list, or one of its records.
enum Target {
    List(&'static Resource),
    Record(&'static Resource, Option<i64>),
    /// The v2 entity list of the resource.
    V2List(&'static Resource),
}

/// Resolves `/api2/...` and `/v2/api/entity/...` paths (with or without `.json`) against the
/// served resources' declared paths.
fn target(state: &SimState, path: &str) -> Option<Target> {
    let path = path.trim_start_matches('/');
    let path = path.strip_suffix(".json").unwrap_or(path);
    let resources = state.resources();
    if let Some(r) = resources.iter().find(|r| r.list_path == path) {
        return Some(Target::List(r));
    }
    let v2_list = path
        .strip_prefix("v2/api/entity/")
        .and_then(|rest| rest.split_once("/list/"))
        .filter(|(_, level)| !level.contains('/'));
    if let Some((entity, _)) = v2_list {
        let r = resources
            .iter()
            .find(|r| r.v2_entity.as_deref() == Some(entity))?;
        return Some(Target::V2List(r));
    }
    resources.iter().find_map(|r| {
        let (head, tail) = r.item_path.split_once("{id}")?;
        let id = path.strip_prefix(head)?.strip_suffix(tail)?;
        (!id.contains('/')).then(|| Target::Record(r, id.parse().ok()))
    })
}

/// An injected 401/403/404 for a resource the tenant pretends not to give access to.
fn unavailable(state: &SimState, resource: &Resource) -> Option<HttpResponse> {
    let code = *state.lock().faults.unavailable.get(&resource.name)?;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN);
    Some(failed(
        status,
        status.canonical_reason().unwrap_or("Forbidden"),
    ))
}

/// Counts a request in flight while alive, keeping the maximum in [`super::SimStats`].
struct InFlight<'a>(&'a SimState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a SimState) -> Self {
        let mut inner = state.lock();
        inner.stats.in_flight += 1;
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(inner.stats.in_flight);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().stats.in_flight -= 1;
    }
}

/// Every simulated API path: lists, records, and their writes.
pub async fn dispatch(
    state: State,
    req: HttpRequest,
    q: web::Query<PageQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(target) = target(&state, req.path()) else {
        return failed(StatusCode::NOT_FOUND, "Page not found");
    };
    let method = req.method().clone();
    let resource = match &target {
        Target::List(r) | Target::Record(r, _) | Target::V2List(r) => *r,
    };
    if method == actix_web::http::Method::GET {
        let mut inner = state.lock();
        match target {
            Target::List(_) | Target::V2List(_) => {
                inner.stats.list_requests += 1;
                *inner
                    .stats
                    .list_requests_by_resource
                    .entry(resource.name.clone())
                    .or_default() += 1;
            }
            Target::Record(..) => inner.stats.get_requests += 1,
        }
    }
    let _in_flight = InFlight::enter(&state);
    if let Err(r) = authorise(&state, &req) {
        return r;
    }
    if let Some(r) = unavailable(&state, resource) {
        return r;
    }
    let json = || serde_json::from_slice::<Value>(&body).ok();
    match (target, method.as_str()) {
        (Target::List(r), "GET") => list(&state, r, &q).await,
        (Target::V2List(r), "GET") => super::v2::list(&state, r, req.query_string()).await,
        (Target::List(r), "POST") => create(&state, r, json()),
        (Target::Record(r, id), "GET") => get_one(&state, r, id).await,
        (Target::Record(r, id), "PUT") => update(&state, r, id, json()),
        (Target::Record(r, id), "DELETE") => delete(&state, r, id),
        _ => failed(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
    }
}

/// The malformed answers injected into the next list request, one per request, in this order.
#[derive(Default)]
struct Malformed {
    truncated: bool,
    html: bool,
    failed_result: bool,
    no_pagination: bool,
}

impl Malformed {
    fn take(f: &mut super::state::Faults) -> Malformed {
        let truncated = take(&mut f.truncated_next);
        let html = !truncated && take(&mut f.html_next);
        let failed_result = !truncated && !html && take(&mut f.failed_result_next);
        let no_pagination =
            !truncated && !html && !failed_result && take(&mut f.missing_pagination_next);
        Malformed {
            truncated,
            html,
            failed_result,
            no_pagination,
        }
    }

    /// The whole answer, when it replaces the list envelope.
    fn answer(&self) -> Option<HttpResponse> {
        if self.html {
            return Some(
                HttpResponse::Ok()
                    .content_type("text/html")
                    .body("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            );
        }
        self.failed_result.then(|| {
            HttpResponse::Ok()
                .json(json!({"result": "failed", "code": 500, "message": "Database busy"}))
        })
    }
}

/// `page` and `limit` of a list request, checked as Daftra does.
#[allow(clippy::result_large_err)]
fn page_and_limit(q: &PageQuery) -> Result<(usize, usize), HttpResponse> {
    let page: usize = q.page.as_deref().unwrap_or("1").parse().unwrap_or(0);
    let limit: usize = q.limit.as_deref().unwrap_or("20").parse().unwrap_or(0);
    if page < 1 || !(1..=1000).contains(&limit) {
        return Err(HttpResponse::BadRequest().json(json!({"result": "failed", "code": 400,
            "message": "Invalid page or limit", "validation_errors": {"limit": "between 1 and 1000"}})));
    }
    Ok((page, limit))
}

/// Daftra's `pagination` object of page `page` of `total` records, `limit` a page, with
/// `total_results` off by `offset` (a fault).
fn pagination(
    resource: &Resource,
    (page, limit): (usize, usize),
    total: usize,
    offset: i64,
) -> Value {
    let page_count = total.div_ceil(limit);
    let link = |p: usize| Value::from(format!("/{}?page={p}&limit={limit}", resource.list_path));
    json!({
        "prev": if page > 1 { link(page - 1) } else { Value::Null },
        "next": if page < page_count { link(page + 1) } else { Value::Null },
        "page": page,
        "page_count": page_count,
        "total_results": (total as i64 + offset).max(0),
    })
}

/// `GET /api2/{resource}{.json}?page&limit`: Daftra's list envelope with `pagination`.
async fn list(state: &SimState, resource: &'static Resource, q: &PageQuery) -> HttpResponse {
    if let Some(r) = common_faults(state).await {
        return r;
    }
    let (page, limit) = match page_and_limit(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // Where the docs say line items only come with `recursive=1`, the list leaves them out
    // unless it is asked.
    let needs_recursive = resource.list_params.iter().any(|(k, _)| k == "recursive");
    let with_items = !needs_recursive || q.recursive.as_deref() == Some("1");
    let mut inner = state.lock();
    let inner = &mut *inner;
    let malformed = Malformed::take(&mut inner.faults);
    if let Some(answer) = malformed.answer() {
        inner.stats.faults_injected += 1;
        return answer;
    }
    let flip = inner.faults.flip_number_forms && {
        inner.flip = !inner.flip;
        inner.flip
    };
    let offset = inner.faults.total_results_offset;
    let order = (!inner.faults.ignore_sort)
        .then(|| q.order(resource))
        .flatten();
    let table = inner
        .tables
        .get_mut(&resource.name)
        .expect("served resource");
    let total = table.records.len();
    let ids = page_ids(table, order, page, limit);
    // The envelope is assembled from cached item texts: serialising 1,000 records per request
    // under the lock made the simulator, not the bridge, the bottleneck of benchmarks.
    let mut body = String::with_capacity(ids.len() * 700 + 300);
    body.push_str(r#"{"code":200,"result":"successful","data":["#);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if flip {
            let flipped = flip_number_forms(&table.records[id]);
            body.push_str(&super::state::item_json(resource, &flipped));
        } else {
            body.push_str(table.item_json(*id, with_items));
        }
    }
    body.push(']');
    if malformed.no_pagination {
        inner.stats.faults_injected += 1;
    } else {
        body.push_str(r#","pagination":"#);
        body.push_str(&pagination(resource, (page, limit), total, offset).to_string());
    }
    body.push('}');
    let mut bytes = body.into_bytes();
    if malformed.truncated {
        inner.stats.faults_injected += 1;
        bytes.truncate(bytes.len() / 2);
    } else if !malformed.no_pagination {
        inner.stats.pages_served += 1;
    }
    apply_drift(inner, resource, page as u32, state.seed);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(bytes)
}

fn apply_drift(inner: &mut super::state::Inner, resource: &Resource, page: u32, seed: u64) {
    let Some(drift) = inner.faults.drift.clone() else {
        return;
    };
    let table = inner
        .tables
        .get_mut(&resource.name)
        .expect("served resource");
    match drift {
        Drift::Delete { after_page, id } if after_page == page => {
            table.take(id);
        }
        Drift::Insert { after_page } if after_page == page => {
            let id = table.next_id;
            table.next_id += 1;
            table.put(id, super::data::seeded_record(resource, seed, id));
        }
        _ => return,
    }
    inner.faults.drift = None;
}

/// `GET /api2/{resource}/{id}`: one record, or Daftra's 404 body.
async fn get_one(state: &SimState, resource: &Resource, id: Option<i64>) -> HttpResponse {
    if let Some(r) = common_faults(state).await {
        return r;
    }
    let record = id.and_then(|id| {
        state
            .lock()
            .tables
            .get(&resource.name)
            .and_then(|t| t.records.get(&id).cloned())
    });
    match record {
        Some(r) => {
            let mut data = Map::new();
            data.insert(resource.model_key.clone(), Value::Object(r));
            HttpResponse::Ok().json(json!({"code": 200, "result": "successful", "data": data}))
        }
        None => failed(StatusCode::NOT_FOUND, "Item not found"),
    }
}

/// The record fields of a create or edit body, `{"Model": {...}, "Group": [...]}`: the line
/// items, written next to the model key as Daftra's docs say, move inside the record.
fn model(resource: &Resource, body: Option<Value>) -> Option<Map<String, Value>> {
    let mut body = match body? {
        Value::Object(o) => o,
        _ => return None,
    };
    let mut fields = match body.remove(&resource.model_key)? {
        Value::Object(o) => o,
        _ => return None,
    };
    for g in &resource.line_items {
        if let Some(items) = body.remove(&g.key) {
            fields.insert(g.key.clone(), items);
        }
    }
    Some(fields)
}

fn expected_model(resource: &Resource) -> HttpResponse {
    failed(
        StatusCode::BAD_REQUEST,
        &format!("Expected a {} object", resource.model_key),
    )
}

/// `POST /api2/{resource}` with `{"Model":{...}}`: 202 `{"code":202,"result":"successful","id":"2415"}`.
fn create(state: &SimState, resource: &Resource, body: Option<Value>) -> HttpResponse {
    let Some(fields) = model(resource, body) else {
        return expected_model(resource);
    };
    let mut errors = Map::new();
    for required in &resource.create_required {
        if fields.get(required).is_none_or(|v| v.is_null() || v == "") {
            errors.insert(required.clone(), json!("This field is required"));
        }
    }
    if !errors.is_empty() {
        return HttpResponse::BadRequest()
            .json(json!({"result": "failed", "code": 400, "message": "Validation error", "validation_errors": errors}));
    }
    match state.create_in(&resource.name, fields) {
        Some(id) => HttpResponse::Accepted()
            .json(json!({"code": 202, "result": "successful", "id": id.to_string()})),
        None => failed(StatusCode::NOT_FOUND, "Page not found"),
    }
}

/// `PUT /api2/{resource}/{id}`.
fn update(
    state: &SimState,
    resource: &Resource,
    id: Option<i64>,
    body: Option<Value>,
) -> HttpResponse {
    let (Some(id), Some(fields)) = (id, model(resource, body)) else {
        return expected_model(resource);
    };
    if state.update_in(&resource.name, id, fields) {
        HttpResponse::Ok().json(json!({"code": 200, "result": "successful", "id": id.to_string()}))
    } else {
        failed(StatusCode::NOT_FOUND, "Item not found")
    }
}

/// `DELETE /api2/{resource}/{id}`.
fn delete(state: &SimState, resource: &Resource, id: Option<i64>) -> HttpResponse {
    if id.is_some_and(|id| state.delete_in(&resource.name, id)) {
        HttpResponse::Ok().json(json!({"code": 200, "result": "successful"}))
    } else {
        failed(StatusCode::NOT_FOUND, "Item not found")
    }
}
