//! Authentication to Daftra: the `apikey` header, or an OAuth password grant with refresh.
//! Never both at once: Daftra documents that sending `Authorization` with `apikey` fails.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::DaftraAuth;
use crate::secret::Secret;

/// Lifetime assumed when the token answer has no `expires_in` (what public clients assume).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh this long before the token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

struct Token {
    access: Secret,
    refresh: Option<Secret>,
    /// When to renew: shortly before expiry.
    refresh_at: Instant,
}

/// Holds the credentials and the current OAuth token.
pub struct Authenticator {
    auth: DaftraAuth,
    token: Mutex<Option<Token>>,
}

/// A token request that failed; the message never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("OAuth token request failed: {message}")]
pub struct AuthError {
    pub message: String,
    /// The token endpoint refused the credentials (a 4xx answer: `invalid_client`,
    /// `invalid_grant`), rather than failing to answer.
    pub refused: bool,
}

impl AuthError {
    fn failed(message: impl Into<String>) -> AuthError {
        AuthError {
            message: message.into(),
            refused: false,
        }
    }
}

impl Authenticator {
    pub fn new(auth: DaftraAuth) -> Self {
        Authenticator {
            auth,
            token: Mutex::new(None),
        }
    }

    /// `true` for OAuth, where a 401 is worth one token renewal.
    pub fn is_oauth(&self) -> bool {
        matches!(self.auth, DaftraAuth::OAuth { .. })
    }

    /// Drops the current access token so the next request renews it (after a 401).
    pub async fn invalidate(&self) {
        if let Some(t) = self.token.lock().await.as_mut() {
            t.refresh_at = Instant::now();
        }
    }

    /// The one authentication header to send. `token_url` is `{base}/v2/oauth/token`;
    /// `on_token_request` observes each token request's duration and status.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        token_url: &str,
        on_token_request: impl Fn(Duration, &str),
    ) -> Result<(HeaderName, HeaderValue), AuthError> {
        let (client_id, client_secret, username, password) = match &self.auth {
            DaftraAuth::ApiKey(key) => {
                let mut v = HeaderValue::from_str(key.expose()).map_err(|_| AuthError {
                    message: "DAFTRA_API_KEY holds characters a header cannot carry".into(),
                    refused: true,
                })?;
                v.set_sensitive(true);
                return Ok((HeaderName::from_static("apikey"), v));
            }
            DaftraAuth::OAuth {
                client_id,
                client_secret,
                username,
                password,
            } => (client_id, client_secret, username, password),
        };
        let mut guard = self.token.lock().await;
        let fresh = guard
            .as_ref()
            .is_some_and(|t| t.refresh_at > Instant::now());
        if !fresh {
            let refresh = guard.as_ref().and_then(|t| t.refresh.clone());
            let mut renewed = None;
            if let Some(refresh) = refresh {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("refresh_token", refresh.expose()),
                ];
                renewed = request_token(http, token_url, &form, &on_token_request)
                    .await
                    .ok();
            }
            let token = match renewed {
                Some(t) => t,
                None => {
                    let form = [
                        ("grant_type", "password"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", client_secret.expose()),
                        ("username", username.as_str()),
                        ("password", password.expose()),
                    ];
                    request_token(http, token_url, &form, &on_token_request).await?
                }
            };
            *guard = Some(token);
        }
        let token = guard.as_ref().expect("token set above");
        let mut v =
            HeaderValue::from_str(&format!("Bearer {}", token.access.expose())).map_err(|_| {
                AuthError::failed("access token holds characters a header cannot carry")
            })?;
        v.set_sensitive(true);
        Ok((AUTHORIZATION, v))
    }
}

/// What a refused token request says (`error`, `error_description` of RFC 6749 section 5.2,
/// or Daftra's `message`), at most 300 characters; the request's own secrets are never in it.
fn token_error_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let parts: Vec<&str> = ["error", "error_description", "message"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    let text = parts.join(": ");
    (!text.is_empty()).then(|| text.chars().take(300).collect())
}

async fn request_token(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    on_token_request: &impl Fn(Duration, &str),
) -> Result<Token, AuthError> {
    let started = Instant::now();
    let answer = http.post(url).form(form).send().await;
    let status = answer
        .as_ref()
        .map(|r| r.status().as_u16().to_string())
        .unwrap_or_else(|_| "error".into());
    on_token_request(started.elapsed(), &status);
    let answer = answer.map_err(|e| {
        AuthError::failed(format!(
            "token endpoint unreachable: {}",
            super::error_chain(&e.without_url())
        ))
    })?;
    if !answer.status().is_success() {
        let status = answer.status();
        let body = answer.bytes().await.unwrap_or_default();
        return Err(AuthError {
            message: match token_error_text(&body) {
                Some(said) => format!("token endpoint answered {status}: {said}"),
                None => format!("token endpoint answered {status}"),
            },
            refused: status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS,
        });
    }
    let t: TokenAnswer = answer
        .json()
        .await
        .map_err(|_| AuthError::failed("token answer is not the documented JSON"))?;
    let lifetime = t
        .expires_in
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok(Token {
        access: Secret::new(t.access_token),
        refresh: t.refresh_token.map(Secret::new),
        refresh_at: Instant::now() + lifetime - REFRESH_MARGIN.min(lifetime / 2),
    })
}
