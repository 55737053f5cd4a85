//! The v2 entity lists, `GET /v2/api/entity/{entity}/list/{level}`, as Daftra's "v2 Filtering"
//! page documents them: `filter[field]=v` and `filter[field][op]=v` (`eq`, `not_equal`, `gt`,
//! `gte`, `lt`, `lte`, `in` with `filter[field][in][]=v`, `is_null`), `sort[field]=asc|desc`,
//! and Laravel's pages (`page`, `per_page`; `current_page`, `last_page`, `total`). Records are
//! flat: the model's fields without its line items.

use std::cmp::Ordering;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use super::guard::common_faults;
use super::state::SimState;
use crate::catalogue::Resource;

/// One filter of the query.
struct Filter {
    field: String,
    op: String,
    values: Vec<String>,
}

/// The filters, the order and the page of a v2 list query.
struct Query {
    filters: Vec<Filter>,
    sort: Option<(String, bool)>,
    page: usize,
    per_page: usize,
}

fn parse(query: &str) -> Query {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let mut q = Query {
        filters: Vec::new(),
        sort: None,
        page: 1,
        per_page: 20,
    };
    for (k, v) in pairs {
        let parts: Vec<&str> = k.split(['[', ']']).filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["filter", field] => q.filters.push(Filter {
                field: field.to_string(),
                op: "eq".into(),
                values: vec![v],
            }),
            ["filter", field, op] => match q
                .filters
                .iter_mut()
                .find(|f| f.field == *field && f.op == *op)
            {
                Some(f) => f.values.push(v),
                None => q.filters.push(Filter {
                    field: field.to_string(),
                    op: op.to_string(),
                    values: vec![v],
                }),
            },
            ["sort", field] => q.sort = Some((field.to_string(), v.eq_ignore_ascii_case("desc"))),
            ["page"] => q.page = v.parse().unwrap_or(1).max(1),
            ["per_page"] | ["limit"] => q.per_page = v.parse().unwrap_or(20).clamp(1, 1000),
            _ => {}
        }
    }
    q
}

/// Compares a record's value with a query's: as numbers when both are, else as text.
fn compare(value: &Value, given: &str) -> Option<Ordering> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (text.parse::<f64>(), given.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(text.as_str().cmp(given)),
    }
}

fn passes(record: &Map<String, Value>, f: &Filter) -> bool {
    let value = record.get(&f.field).unwrap_or(&Value::Null);
    let first = f.values.first().map(String::as_str).unwrap_or_default();
    let cmp = compare(value, first);
    match f.op.as_str() {
        "eq" => cmp == Some(Ordering::Equal),
        "not_equal" => cmp != Some(Ordering::Equal),
        "gt" => cmp == Some(Ordering::Greater),
        "gte" => matches!(cmp, Some(Ordering::Greater | Ordering::Equal)),
        "lt" => cmp == Some(Ordering::Less),
        "lte" => matches!(cmp, Some(Ordering::Less | Ordering::Equal)),
        "in" => f
            .values
            .iter()
            .any(|v| compare(value, v) == Some(Ordering::Equal)),
        "is_null" => value.is_null() || value == "",
        _ => true,
    }
}

/// The flat v2 form of a record: its fields without the line-item groups.
fn flat(resource: &Resource, record: &Map<String, Value>) -> Value {
    let mut out = record.clone();
    for g in &resource.line_items {
        out.remove(&g.key);
    }
    Value::Object(out)
}

/// `GET /v2/api/entity/{entity}/list/{level}`.
pub(super) async fn list(
    state: &SimState,
    resource: &'static Resource,
    query: &str,
) -> HttpResponse {
    if let Some(r) = common_faults(state).await {
        return r;
    }
    let mut q = parse(query);
    let inner = state.lock();
    if inner.faults.ignore_filter {
        q.filters.clear();
    }
    let table = &inner.tables[&resource.name];
    // A filter on the change time reads the index, not every record.
    let candidates: Box<dyn Iterator<Item = i64> + '_> = match q.filters.iter().find(|f| {
        Some(f.field.as_str()) == resource.changed_at.as_deref()
            && matches!(f.op.as_str(), "gt" | "gte")
    }) {
        Some(f) => {
            let from = (f.values.first().cloned().unwrap_or_default(), i64::MIN);
            Box::new(table.by_changed.range(from..).map(|(_, id)| *id))
        }
        None => Box::new(table.records.keys().copied()),
    };
    let mut matched: Vec<(&i64, &Map<String, Value>)> = candidates
        .filter_map(|id| table.records.get_key_value(&id))
        .filter(|(_, r)| q.filters.iter().all(|f| passes(r, f)))
        .collect();
    matched.sort_by_key(|(id, _)| **id);
    if let Some((field, descending)) = &q.sort {
        matched.sort_by(|a, b| {
            let (x, y) = (
                a.1.get(field).unwrap_or(&Value::Null),
                b.1.get(field).unwrap_or(&Value::Null),
            );
            let o = compare(x, &super::api::sort_text(y)).unwrap_or(Ordering::Equal);
            if *descending {
                o.reverse()
            } else {
                o
            }
        });
    }
    let total = matched.len();
    let last_page = total.div_ceil(q.per_page).max(1);
    let data: Vec<Value> = matched
        .iter()
        .skip((q.page - 1) * q.per_page)
        .take(q.per_page)
        .map(|(_, r)| flat(resource, r))
        .collect();
    HttpResponse::Ok().json(json!({
        "current_page": q.page,
        "data": data,
        "last_page": last_page,
        "per_page": q.per_page,
        "total": total,
    }))
}
