//! The HTTP API (README "Exports" and "Operating it"): exports, discovery, poll trigger, status, health, metrics.

mod access;
mod conditional;
mod error;
mod exports;
pub mod feed;
pub mod gate;
mod inbound;
mod index;
mod keys;
mod openapi;
mod ops;
mod parked;
mod records;
pub mod schemas;
mod shared_builds;
mod state;
mod webhooks;

pub use error::{ApiError, Invalid, STORE_RETRY_AFTER_SECS};
pub use shared_builds::SharedBuilds;
pub use state::{Admin, AppState, ExportLimits, Health, Served};

use std::time::Instant;

use actix_web::dev::Service;
use actix_web::{web, App, HttpMessage, HttpResponse, ResponseError};
use serde_json::json;

/// Runs `f` on the store off the async executor; a store failure is a 500 naming it.
pub(super) async fn on_store<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
    web::block(move || f(&store))
        .await
        .map_err(|e| internal(&e))?
        .map_err(|e| internal(&e))
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`null` when out of range).
pub(super) fn rfc3339(unix_ms: i64) -> serde_json::Value {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(serde_json::Value::Null)
}

/// A route answering GET and HEAD (HEAD without a body, for probes and `curl -I`), and 405 to
/// any other method.
fn get_or_head(path: &str, handler: actix_web::Route) -> actix_web::Resource {
    only(
        path,
        handler.guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head())),
        "GET, HEAD",
    )
}

/// A route for the methods in `allow`; other methods get 405 with `Allow` (RFC 9110 section
/// 15.5.6) and a JSON body.
fn only(path: &str, route: actix_web::Route, allow: &'static str) -> actix_web::Resource {
    methods(path, vec![route], allow)
}

/// As [`only`], with one route per method.
fn methods(path: &str, routes: Vec<actix_web::Route>, allow: &'static str) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(web::resource(path), |r, route| r.route(route))
        .default_service(web::to(move || async move {
            HttpResponse::MethodNotAllowed()
                .insert_header(("Allow", allow))
                .json(json!({"error": "method_not_allowed", "message": format!("this route answers {allow}")}))
        }))
}

/// Builds the actix `App` factory with every route and the request metrics.
pub fn app(
    state: AppState,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    App::new()
        .app_data(web::Data::new(state))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| ApiError::from(Invalid::new("query", e.to_string())).into()),
        )
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let method = req.method().to_string();
            let metrics = metrics.clone();
            let fut = srv.call(req);
            async move {
                let res = fut.await?;
                let route = res
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into());
                let key = res
                    .request()
                    .extensions()
                    .get::<gate::CallerName>()
                    .map_or_else(|| "anonymous".to_string(), |c| c.0.clone());
                metrics.http_request(&route, &method, res.status().as_u16(), &key, started.elapsed());
                if !matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
                    tracing::info!(route = %route, method = %method, status = res.status().as_u16(), key = %key,
                        duration_ms = started.elapsed().as_millis() as u64, "HTTP request");
                }
                Ok(res)
            }
        })
        .configure(routes)
        .default_service(web::to(|| async {
            ApiError::NotFound("no such route".into()).error_response()
        }))
}

/// The 404 of a resource this deployment does not serve: one of Daftra's, not enabled (and
/// how to enable it), or no resource at all.
pub(crate) fn unserved(name: &str) -> ApiError {
    match crate::catalogue::by_name(name) {
        Some(_) => ApiError::NotFound(format!(
            "{name:?} is not enabled; add it to DAFTRA_RESOURCES"
        )),
        None => ApiError::NotFound(format!(
            "no resource named {name:?}; `daftra-bridge resources` lists them"
        )),
    }
}

/// Every route: exports and discovery, operations, the inbound Daftra webhook and the webhook
/// admin API.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_or_head("/", web::to(index::index)))
        .service(get_or_head("/exports", web::to(exports::list)))
        .service(get_or_head("/exports/{file}", web::to(exports::download)))
        .service(get_or_head("/events", web::to(feed::events)))
        .service(only("/poll/{resource}", web::post().to(ops::poll), "POST"))
        .service(get_or_head("/status", web::to(ops::status)))
        .service(get_or_head("/healthz", web::to(ops::healthz)))
        .service(get_or_head("/readyz", web::to(ops::readyz)))
        .service(get_or_head("/metrics", web::to(ops::metrics)))
        .service(get_or_head("/openapi.json", web::to(openapi::document)))
        .service(get_or_head("/asyncapi.json", web::to(schemas::asyncapi)))
        .service(get_or_head("/schemas/{file}", web::to(schemas::schema)))
        .service(only(
            "/webhooks/daftra/{resource}",
            web::post().to(inbound::inbound),
            "POST",
        ))
        .service(methods(
            "/webhooks/endpoints",
            vec![
                web::get().to(webhooks::list),
                web::head().to(webhooks::list),
                web::post().to(webhooks::create),
            ],
            "GET, HEAD, POST",
        ))
        .service(methods(
            "/webhooks/endpoints/{id}",
            vec![
                web::get().to(webhooks::get),
                web::head().to(webhooks::get),
                web::patch().to(webhooks::patch),
                web::delete().to(webhooks::delete),
            ],
            "GET, HEAD, PATCH, DELETE",
        ))
        .service(only(
            "/webhooks/endpoints/{id}/rotate-secret",
            web::post().to(webhooks::rotate),
            "POST",
        ))
        .service(only(
            "/webhooks/endpoints/{id}/replay",
            web::post().to(webhooks::replay),
            "POST",
        ))
        .service(get_or_head(
            "/webhooks/endpoints/{id}/deliveries",
            web::to(webhooks::deliveries),
        ))
        .configure(admin_routes);
}

/// The admin API beyond webhook endpoints: parked events, access keys, signed links; and the
/// records events point at.
fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_or_head(
        "/records/{resource}/{id}",
        web::to(records::get),
    ))
    .service(methods(
        "/keys",
        vec![
            web::get().to(keys::list),
            web::head().to(keys::list),
            web::post().to(keys::create),
        ],
        "GET, HEAD, POST",
    ))
    .service(methods(
        "/keys/{id}",
        vec![
            web::get().to(keys::get),
            web::head().to(keys::get),
            web::patch().to(keys::patch),
            web::delete().to(keys::revoke),
        ],
        "GET, HEAD, PATCH, DELETE",
    ))
    .service(only("/links", web::post().to(keys::create_link), "POST"))
    .service(get_or_head("/outbox/parked", web::to(parked::list)))
    .service(methods(
        "/outbox/parked/{id}",
        vec![
            web::get().to(parked::get),
            web::head().to(parked::get),
            web::delete().to(parked::drop),
        ],
        "GET, HEAD, DELETE",
    ))
    .service(only(
        "/outbox/parked/{id}/retry",
        web::post().to(parked::retry),
        "POST",
    ));
}
