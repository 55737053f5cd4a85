//! `EXPORT_TOKEN` check: `Authorization: Bearer <token>` or `?token=<token>`, compared in
//! constant time.

use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::secret::Secret;

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

/// The query's parameters, each given at most once and each one of `allowed` (or `token`, the
/// query form of the access token); anything else is a 400 naming the parameter.
pub fn query_params(
    req: &HttpRequest,
    allowed: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, super::ApiError> {
    use super::Invalid;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| Invalid::new("query", e.to_string()))?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) && k != "token" {
            let expected = match allowed {
                [] => "unknown parameter; this route takes none".to_string(),
                _ => format!("unknown parameter; expected {}", allowed.join(" or ")),
            };
            return Err(Invalid::new(&k, expected).into());
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(Invalid::new(&k, "given more than once").into());
        }
    }
    Ok(out)
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110
/// section 11.1).
pub fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
}

/// Whether `given` is `expected`, compared in constant time.
pub fn matches(given: &str, expected: &Secret) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

/// Ok when the request carries `expected` as a Bearer token or, with `query_allowed`, as
/// `?token=`; 401 otherwise.
pub fn require(req: &HttpRequest, expected: &Secret, query_allowed: bool) -> Result<(), ApiError> {
    let given = bearer(req).or_else(|| query_allowed.then(|| query_token(req)).flatten());
    match given {
        Some(t) if matches(&t, expected) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The admin API's guard: 404 while `ADMIN_TOKEN` is unset (the routes do not exist), 401
/// without the right Bearer token (never `?token=`: admin tokens stay out of URLs and logs).
pub fn admin(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.admin.settings.admin_token else {
        return Err(ApiError::NotFound(
            "no such route (the admin API is enabled by ADMIN_TOKEN)".into(),
        ));
    };
    require(req, expected, false)
}
