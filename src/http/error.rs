//! The one error shape of the HTTP API: a status, a JSON body naming the kind of error, and the
//! headers the kind calls for (`WWW-Authenticate`, `Retry-After`).

use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// A request parameter or body field that cannot be used: 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The parameter or body field, as the request named it (`query` or `body` for the whole).
    pub field: String,
    pub message: String,
}

impl Invalid {
    /// `field` cannot be used, for the reason `message`.
    pub fn new(field: &str, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// An error answer with a JSON body `{"error": kind, "message": ..., "field"?: ...}`, the same
/// shape on every route (the OpenAPI document's `Error`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_query`, naming the parameter or field.
    #[error("{0}")]
    InvalidQuery(Invalid),
    #[error("missing or wrong token")]
    Unauthorized,
    /// 401 saying why (an unknown key; a key revoked or expired, told to its holder only).
    #[error("{0}")]
    Denied(String),
    /// 403: the caller is known but lacks the scope named.
    #[error("{0}")]
    Forbidden(String),
    /// 410: a signed link past its expiry.
    #[error("{0}")]
    Gone(String),
    /// 429: the caller is over its share; retry after the given seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    NotFound(String),
    /// 409: the write meets something that exists (a key's name).
    #[error("{0}")]
    Conflict(String),
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

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::InvalidQuery(e)
    }
}

/// An export parameter that cannot be used.
impl From<crate::export::QueryError> for ApiError {
    fn from(e: crate::export::QueryError) -> ApiError {
        ApiError::InvalidQuery(Invalid {
            field: e.field,
            message: e.message,
        })
    }
}

impl From<crate::keyring::KeyringError> for ApiError {
    fn from(e: crate::keyring::KeyringError) -> ApiError {
        use crate::keyring::KeyringError as K;
        match e {
            K::Invalid { field, message } => Invalid::new(field, message).into(),
            K::NameTaken(_) => ApiError::Conflict(e.to_string()),
            K::Store(e) => e.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if e.is_unavailable() {
            ApiError::StoreUnavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode as S;
        match self {
            ApiError::InvalidQuery(_) => S::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Denied(_) => S::UNAUTHORIZED,
            ApiError::Forbidden(_) => S::FORBIDDEN,
            ApiError::Gone(_) => S::GONE,
            ApiError::TooManyRequests { .. } => S::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => S::NOT_FOUND,
            ApiError::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            ApiError::NotLeader(_) | ApiError::Conflict(_) => S::CONFLICT,
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
            ApiError::Denied(m) => {
                r.insert_header(("WWW-Authenticate", "Bearer"));
                json!({"error": "unauthorized", "message": m})
            }
            ApiError::Forbidden(m) => json!({"error": "forbidden", "message": m}),
            ApiError::Gone(m) => json!({"error": "gone", "message": m}),
            ApiError::TooManyRequests {
                message,
                retry_after,
            } => {
                r.insert_header(("Retry-After", retry_after.to_string()));
                json!({"error": "rate_limited", "message": message})
            }
            ApiError::NotFound(m) => json!({"error": "not_found", "message": m}),
            ApiError::TooLarge(m) => json!({"error": "payload_too_large", "message": m}),
            ApiError::Conflict(m) => json!({"error": "conflict", "message": m}),
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
