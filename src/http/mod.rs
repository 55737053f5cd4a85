//! The HTTP API (README "Exports" and "Operating it"): exports, discovery, poll trigger, status, health, metrics.

mod access;
mod conditional;
mod exports;
mod inbound;
mod index;
mod openapi;
mod ops;
mod shared_builds;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service;
use actix_web::{web, App, HttpResponse, ResponseError};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::catalogue::Resource;
use crate::config::WebhookSettings;
use crate::secret::Secret;
use crate::daftra::DaftraClient;
use crate::metrics::Metrics;
use crate::poller::PollTrigger;
use crate::status::{BrokerState, StatusBoard};
use crate::store::Store;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub client: Arc<DaftraClient>,
    pub status: Arc<StatusBoard>,
    pub broker: Arc<BrokerState>,
    /// Poll triggers by resource name.
    pub triggers: Arc<HashMap<&'static str, Arc<PollTrigger>>>,
    /// The enabled resources (`DAFTRA_RESOURCES`), in catalogue order.
    pub resources: Arc<Vec<&'static Resource>>,
    pub export_token: Option<Secret>,
    /// Limits concurrent XLSX builds (`EXPORT_MAX_XLSX_BUILDS`).
    pub xlsx_builds: Arc<Semaphore>,
    /// The admin and inbound tokens and the target rules of the webhook routes.
    pub webhooks: Arc<WebhookSettings>,
    /// This replica's role in the leader election (`/status`, `POST /poll` on a follower).
    pub role: tokio::sync::watch::Receiver<crate::leader::Role>,
    /// Tells the webhook sink that an endpoint was created, changed or deleted.
    pub endpoints_changed: Arc<tokio::sync::Notify>,
    /// XLSX builds shared by identical requests of one snapshot version.
    pub xlsx_shared: Arc<shared_builds::SharedBuilds>,
    /// The poll interval of each enabled resource, by name (for freshness).
    pub poll_intervals: Arc<HashMap<&'static str, std::time::Duration>>,
}

/// An error answer with a JSON body `{"error": kind, "message": ..., "field"?: ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidQuery(crate::export::QueryError),
    #[error("missing or wrong token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// A request body over the route's limit.
    #[error("{0}")]
    TooLarge(String),
    /// Daftra cannot be read now; retry after the given seconds.
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// This replica follows: only the leader (at the address, when known) polls.
    #[error("this replica is a follower; the leader polls")]
    NotLeader(Option<String>),
    /// The store cannot be reached now (a database outage); retry after the given seconds.
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Seconds a client is asked to wait after a store outage answer.
pub const STORE_RETRY_AFTER_SECS: u64 = 5;

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if e.is_unavailable() {
            ApiError::StoreUnavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl AppState {
    /// The enabled resource or line-item export named `name`.
    pub fn export(&self, name: &str) -> Option<&'static Resource> {
        let export = crate::catalogue::export_by_name(name)?;
        let source = export.source();
        self.resources
            .iter()
            .any(|r| r.name == source.name)
            .then_some(export)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode as S;
        match self {
            ApiError::InvalidQuery(_) => S::BAD_REQUEST,
            ApiError::Unauthorized => S::UNAUTHORIZED,
            ApiError::NotFound(_) => S::NOT_FOUND,
            ApiError::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            ApiError::NotLeader(_) => S::CONFLICT,
            ApiError::Unavailable { .. } | ApiError::StoreUnavailable(_) => S::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        let body = match self {
            ApiError::InvalidQuery(e) => {
                json!({"error": "invalid_query", "field": e.field, "message": e.message})
            }
            ApiError::Unauthorized => {
                r.insert_header(("WWW-Authenticate", "Bearer"));
                json!({"error": "unauthorized", "message": self.to_string()})
            }
            ApiError::NotFound(m) => json!({"error": "not_found", "message": m}),
            ApiError::TooLarge(m) => json!({"error": "payload_too_large", "message": m}),
            ApiError::Unavailable {
                message,
                retry_after,
            } => {
                r.insert_header(("Retry-After", retry_after.to_string()));
                json!({"error": "upstream_unavailable", "message": message})
            }
            ApiError::NotLeader(leader) => {
                let message = match leader {
                    Some(l) => format!("this replica is a follower: ask the leader at {l}"),
                    None => "this replica is a follower and no leader is known yet: retry shortly"
                        .to_string(),
                };
                json!({"error": "not_leader", "leader": leader, "message": message})
            }
            ApiError::StoreUnavailable(m) => {
                r.insert_header(("Retry-After", STORE_RETRY_AFTER_SECS.to_string()));
                json!({"error": "store_unavailable", "message": m})
            }
            ApiError::Internal(m) => json!({"error": "internal", "message": m}),
        };
        r.json(body)
    }
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
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::InvalidQuery(crate::export::QueryError {
                field: "query".into(),
                message: e.to_string(),
            })
            .into()
        }))
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
                let status = res.status().as_u16().to_string();
                metrics
                    .http_requests
                    .with_label_values(&[&route, &method, &status])
                    .inc();
                metrics
                    .http_request_duration
                    .with_label_values(&[&route, &method])
                    .observe(started.elapsed().as_secs_f64());
                Ok(res)
            }
        })
        .service(get_or_head("/", web::to(index::index)))
        .service(get_or_head("/exports", web::to(exports::list)))
        .service(get_or_head("/exports/{file}", web::to(exports::download)))
        .service(only("/poll/{resource}", web::post().to(ops::poll), "POST"))
        .service(get_or_head("/status", web::to(ops::status)))
        .service(get_or_head("/healthz", web::to(ops::healthz)))
        .service(get_or_head("/readyz", web::to(ops::readyz)))
        .service(get_or_head("/metrics", web::to(ops::metrics)))
        .service(get_or_head("/openapi.json", web::to(openapi::document)))
        .service(only(
            "/webhooks/daftra/{resource}",
            web::post().to(inbound::inbound),
            "POST",
        ))
        .service(methods(
            "/webhooks/endpoints",
            vec![
                web::get().to(webhooks::list),
                web::post().to(webhooks::create),
            ],
            "GET, POST",
        ))
        .service(methods(
            "/webhooks/endpoints/{id}",
            vec![
                web::get().to(webhooks::get),
                web::patch().to(webhooks::patch),
                web::delete().to(webhooks::delete),
            ],
            "GET, PATCH, DELETE",
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
        .default_service(web::to(|| async {
            ApiError::NotFound("no such route".into()).error_response()
        }))
}
