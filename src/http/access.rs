//! `EXPORT_TOKEN` check: `Authorization: Bearer <token>` or `?token=<token>`, compared in
//! constant time.

use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

fn query_token(req: &HttpRequest) -> Option<String> {
    web_query_pairs(req)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// The query string as decoded pairs (empty when it cannot be decoded).
pub fn web_query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

/// Passes when no token is configured, or when the request carries it.
pub fn check(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.export_token else {
        return Ok(());
    };
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let given = header.or_else(|| query_token(req)).unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
