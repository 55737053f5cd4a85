//! Typed settings read from the environment (README "Pointing it at your Daftra account" and `.env.example`), validated at start-up.
//!
//! Every variable is read through `envy` as text, then checked here so that a bad value stops
//! start-up with one line naming the variable, the value given and what is expected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

mod access;
mod account;
mod addresses;
pub mod env;
mod values;
mod webhooks;

pub use access::AccessSettings;
pub use account::resolve_clock;
use account::{poll_strategy, resolve_intervals, resolve_strategies};
pub use account::{
    resolve_resources, PollStrategy, PER_RESOURCE_PREFIXES, POLL_INTERVAL_PREFIX,
    POLL_STRATEGY_PREFIX,
};
use addresses::resolve_addresses;

pub use crate::secret::{redact_url, Secret};
pub use values::parse_bool;
use values::{boolean, err, int_in, non_empty, secret, secs};
pub use webhooks::{WebhookSettings, DEFAULT_RETRY_SCHEDULE};

/// How the bridge authenticates to Daftra.
#[derive(Clone, Debug)]
pub enum DaftraAuth {
    /// `apikey` header (documented by Daftra as deprecated, still working).
    ApiKey(Secret),
    /// OAuth 2 password grant at `{base}/v2/oauth/token`.
    OAuth {
        client_id: String,
        client_secret: Secret,
        username: String,
        password: Secret,
    },
}

/// Settings of the Daftra client.
#[derive(Clone, Debug)]
pub struct DaftraSettings {
    /// Site root, without trailing slash; v1 paths live under `/api2`.
    pub base_url: String,
    pub auth: DaftraAuth,
    /// `limit` of each list request, 1..=1000 rows.
    pub page_size: u32,
    /// Page requests in flight at once, 1..=64.
    pub concurrency: usize,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retries of one request on 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// Upper bound of one backoff sleep.
    pub max_backoff: Duration,
    /// The account's time zone (`DAFTRA_TIMEZONE`) and date order (`DAFTRA_DATE_FORMAT`).
    pub clock: crate::record::Clock,
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// All settings of `daftra-bridge serve`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub daftra: DaftraSettings,
    /// The resources polled, exported and announced (`DAFTRA_RESOURCES`), in catalogue order.
    pub resources: Vec<&'static crate::catalogue::Resource>,
    /// Time between the start of two polls of a resource (`POLL_INTERVAL_SECS`).
    pub poll_interval: Duration,
    /// Per-resource intervals by resource name (`POLL_INTERVAL_SECS_{NAME}`).
    pub poll_intervals: BTreeMap<String, Duration>,
    /// How polls find what changed (`POLL_STRATEGY`).
    pub poll_strategy: PollStrategy,
    /// Per-resource strategies by resource name (`POLL_STRATEGY_{NAME}`).
    pub poll_strategies: BTreeMap<String, PollStrategy>,
    /// Time between two full scans of a resource whose other polls read only what changed
    /// (`POLL_FULL_SCAN_SECS`): deletes and the audit of those polls wait for one.
    pub full_scan_every: Duration,
    /// How far before its watermark a poll that reads only what changed starts reading
    /// (`POLL_OVERLAP_SECS`), for equal timestamps, clock skew and records saved mid-poll.
    pub poll_overlap: Duration,
    /// Time before a resource the account cannot read (401, 403, 404) is tried again.
    pub unavailable_retry: Duration,
    /// Polls that run at once (4); the others wait their turn. Each holds a few pages and the
    /// records that changed; all share the account's request budget.
    pub poll_max_parallel: usize,
    /// Overall deadline of one poll; past it the poll fails and changes nothing.
    pub poll_deadline: Duration,
    /// Emit `created` for every record on the very first poll.
    pub poll_emit_initial: bool,
    /// Where the snapshot and the outbox live: a SQLite file, or a PostgreSQL database shared
    /// by several replicas (`DATABASE_URL`).
    pub database: crate::store::Location,
    /// The address other replicas name as the leader's (`ADVERTISE_URL`; default
    /// `http://<hostname>:<port of BIND_ADDR>`).
    pub advertise_url: String,
    /// The address consumers reach the bridge at (`PUBLIC_URL`, default `ADVERTISE_URL`):
    /// events' `dataschema` points under it.
    pub public_url: String,
    /// RabbitMQ URL; holds a password, so it is a secret.
    pub amqp_url: Secret,
    pub amqp_exchange: String,
    /// Deadline of one publisher confirm.
    pub confirm_timeout: Duration,
    pub bind_addr: SocketAddr,
    pub export_token: Option<Secret>,
    /// XLSX files built at once; further requests wait.
    pub max_xlsx_builds: usize,
    /// Time allowed on SIGTERM to finish HTTP requests and drain the outbox.
    pub shutdown_deadline: Duration,
    pub log_format: LogFormat,
    /// Outgoing webhooks, the inbound Daftra webhook and the event log.
    pub webhooks: WebhookSettings,
    /// Largest CloudEvents JSON of one event before its line-item lists are cut to the items
    /// that changed (`EVENT_MAX_BYTES`), in bytes.
    pub event_max_bytes: usize,
    /// The keys that encrypt the secrets the bridge stores (`BRIDGE_SECRETS_KEY`, and
    /// `BRIDGE_SECRETS_KEY_PREVIOUS` for reading during a rotation).
    pub secrets_keys: crate::secret::SealingKeys,
    /// The key signing download links (`LINK_SIGNING_KEY`); unset, one is made once and kept
    /// in the store (sealed like every secret).
    pub link_signing_key: Option<Secret>,
    /// Warnings about the environment, logged once logging is set up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The poll interval of resource `name`: its `POLL_INTERVAL_SECS_{NAME}`, else
    /// `POLL_INTERVAL_SECS`.
    pub fn interval_for(&self, name: &str) -> Duration {
        self.poll_intervals
            .get(name)
            .copied()
            .unwrap_or(self.poll_interval)
    }

    /// The change strategy of resource `name`: its `POLL_STRATEGY_{NAME}`, else
    /// `POLL_STRATEGY`.
    pub fn strategy_for(&self, name: &str) -> PollStrategy {
        self.poll_strategies
            .get(name)
            .copied()
            .unwrap_or(self.poll_strategy)
    }
}

/// A variable that could not be used: its name, the value given and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {name}={shown:?} is invalid: expected {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    /// The value given, or `***` for secrets.
    pub shown: String,
    pub expected: String,
}

/// The raw environment, every variable as optional text (envy maps `FOO_BAR` to `foo_bar`).
#[derive(Debug, Default, Deserialize)]
pub struct RawEnv {
    pub daftra_base_url: Option<String>,
    pub daftra_subdomain: Option<String>,
    pub daftra_api_key: Option<String>,
    pub daftra_client_id: Option<String>,
    pub daftra_client_secret: Option<String>,
    pub daftra_username: Option<String>,
    pub daftra_password: Option<String>,
    pub daftra_page_size: Option<String>,
    pub daftra_concurrency: Option<String>,
    pub daftra_timeout_secs: Option<String>,
    pub daftra_max_retries: Option<String>,
    pub daftra_max_backoff_secs: Option<String>,
    pub daftra_timezone: Option<String>,
    pub daftra_date_format: Option<String>,
    pub daftra_resources: Option<String>,
    pub poll_interval_secs: Option<String>,
    pub poll_unavailable_retry_secs: Option<String>,
    pub poll_max_parallel: Option<String>,
    /// The per-resource intervals (`POLL_INTERVAL_SECS_INVOICES`), by upper-case resource name.
    #[serde(skip)]
    pub poll_interval_overrides: BTreeMap<String, String>,
    pub poll_strategy: Option<String>,
    /// The per-resource strategies (`POLL_STRATEGY_INVOICES`), by upper-case resource name.
    #[serde(skip)]
    pub poll_strategy_overrides: BTreeMap<String, String>,
    pub poll_full_scan_secs: Option<String>,
    pub poll_overlap_secs: Option<String>,
    pub poll_deadline_secs: Option<String>,
    pub poll_emit_initial: Option<String>,
    pub database_url: Option<String>,
    pub amqp_url: Option<String>,
    pub amqp_exchange: Option<String>,
    pub publish_confirm_timeout_secs: Option<String>,
    pub bind_addr: Option<String>,
    pub advertise_url: Option<String>,
    pub public_url: Option<String>,
    pub export_token: Option<String>,
    pub export_max_xlsx_builds: Option<String>,
    pub shutdown_deadline_secs: Option<String>,
    pub log_format: Option<String>,
    pub admin_token: Option<String>,
    pub inbound_webhook_token: Option<String>,
    pub webhook_retry_schedule_secs: Option<String>,
    pub webhook_timeout_secs: Option<String>,
    pub webhook_allow_private_targets: Option<String>,
    pub event_log_retention_secs: Option<String>,
    pub feed_max_wait_secs: Option<String>,
    pub webhook_max_in_flight: Option<String>,
    pub inbound_min_interval_secs: Option<String>,
    pub event_max_bytes: Option<String>,
    pub bridge_secrets_key: Option<String>,
    pub bridge_secrets_key_previous: Option<String>,
    pub link_signing_key: Option<String>,
    /// Warnings about variables with the bridge's prefixes that it does not read.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl RawEnv {
    /// Reads the process environment (after `.env`, which `main` loads). A value that is not
    /// UTF-8 is an error naming the variable when it is one of the bridge's, and skipped
    /// otherwise; it never panics.
    pub fn from_env() -> Result<Self, ConfigError> {
        RawEnv::from_vars(env::utf8_vars(std::env::vars_os())?)
    }

    /// Reads `vars` (name, value) as [`RawEnv::from_env`] reads the process environment.
    pub fn from_vars(vars: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let mut raw =
            envy::from_iter::<_, RawEnv>(vars.iter().cloned()).map_err(|e| ConfigError {
                name: "environment",
                shown: String::new(),
                expected: e.to_string(),
            })?;
        let overrides = |prefix: &str| {
            vars.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
                .collect()
        };
        raw.poll_interval_overrides = overrides(POLL_INTERVAL_PREFIX);
        raw.poll_strategy_overrides = overrides(POLL_STRATEGY_PREFIX);
        raw.warnings = env::unknown_variable_warnings(&vars);
        Ok(raw)
    }
}

/// Resolves the Daftra site root from `DAFTRA_BASE_URL` or `DAFTRA_SUBDOMAIN`.
pub fn resolve_base_url(raw: &RawEnv) -> Result<Option<String>, ConfigError> {
    if let Some(url) = non_empty(&raw.daftra_base_url) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err(
                "DAFTRA_BASE_URL",
                &redact_url(url),
                "an http:// or https:// URL",
            ));
        }
        let root = url.trim_end_matches('/');
        if root.ends_with("/api2") || root.contains("/api2/") {
            return Err(err(
                "DAFTRA_BASE_URL",
                &redact_url(url),
                "the site root without /api2, for example https://acme.daftra.com",
            ));
        }
        return Ok(Some(root.to_string()));
    }
    if let Some(sub) = non_empty(&raw.daftra_subdomain) {
        if !sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(err("DAFTRA_SUBDOMAIN", sub, "letters, digits and '-' only"));
        }
        return Ok(Some(format!("https://{sub}.daftra.com")));
    }
    Ok(None)
}

/// `POLL_STRATEGY`, `POLL_FULL_SCAN_SECS` (default an hour, at most a week) and
/// `POLL_OVERLAP_SECS` (default 5 minutes, at most a day).
fn resolve_change_polling(raw: &RawEnv) -> Result<(PollStrategy, Duration, Duration), ConfigError> {
    Ok((
        poll_strategy("POLL_STRATEGY", &raw.poll_strategy, PollStrategy::Auto)?,
        secs(
            "POLL_FULL_SCAN_SECS",
            &raw.poll_full_scan_secs,
            3_600,
            1,
            7 * 86_400,
        )?,
        secs("POLL_OVERLAP_SECS", &raw.poll_overlap_secs, 300, 0, 86_400)?,
    ))
}

fn resolve_auth(raw: &RawEnv) -> Result<DaftraAuth, ConfigError> {
    let oauth = [
        ("DAFTRA_CLIENT_ID", &raw.daftra_client_id),
        ("DAFTRA_CLIENT_SECRET", &raw.daftra_client_secret),
        ("DAFTRA_USERNAME", &raw.daftra_username),
        ("DAFTRA_PASSWORD", &raw.daftra_password),
    ];
    let given: Vec<_> = oauth
        .iter()
        .filter(|(_, v)| non_empty(v).is_some())
        .collect();
    if let Some(key) = secret(&raw.daftra_api_key) {
        return Ok(DaftraAuth::ApiKey(key));
    }
    if given.len() == oauth.len() {
        return Ok(DaftraAuth::OAuth {
            client_id: non_empty(&raw.daftra_client_id)
                .unwrap_or_default()
                .to_string(),
            client_secret: secret(&raw.daftra_client_secret).expect("checked"),
            username: non_empty(&raw.daftra_username)
                .unwrap_or_default()
                .to_string(),
            password: secret(&raw.daftra_password).expect("checked"),
        });
    }
    let missing = oauth
        .iter()
        .find(|(_, v)| non_empty(v).is_none())
        .map(|(n, _)| *n)
        .unwrap_or("DAFTRA_API_KEY");
    let name = if given.is_empty() {
        "DAFTRA_API_KEY"
    } else {
        missing
    };
    Err(err(
        name,
        "",
        "DAFTRA_API_KEY, or all four of DAFTRA_CLIENT_ID, DAFTRA_CLIENT_SECRET, DAFTRA_USERNAME and DAFTRA_PASSWORD",
    ))
}

impl Settings {
    /// Validates the raw environment. `base_url_override` replaces the Daftra settings' site root
    /// and auth check (the demo points at its in-process simulator).
    pub fn from_raw(
        raw: &RawEnv,
        base_url_override: Option<(String, DaftraAuth)>,
    ) -> Result<Self, ConfigError> {
        // Checked in this order, so the first bad variable is the one named.
        let daftra = resolve_daftra(raw, base_url_override)?;
        let database = crate::store::Location::from_setting(raw.database_url.as_deref())
            .map_err(|shown| err("DATABASE_URL", &shown, crate::store::DATABASE_URL_FORMS))?;
        let amqp_url = resolve_amqp_url(raw)?;
        let (bind_addr, advertise_url, public_url) = resolve_addresses(raw)?;
        let (poll_strategy, full_scan_every, poll_overlap) = resolve_change_polling(raw)?;
        Ok(Settings {
            daftra,
            resources: resolve_resources(&raw.daftra_resources)?,
            poll_intervals: resolve_intervals(raw)?,
            poll_strategy,
            poll_strategies: resolve_strategies(raw)?,
            full_scan_every,
            poll_overlap,
            unavailable_retry: secs(
                "POLL_UNAVAILABLE_RETRY_SECS",
                &raw.poll_unavailable_retry_secs,
                900,
                1,
                86_400,
            )?,
            poll_max_parallel: int_in("POLL_MAX_PARALLEL", &raw.poll_max_parallel, 4, 1, 64)?,
            poll_interval: secs("POLL_INTERVAL_SECS", &raw.poll_interval_secs, 60, 1, 86_400)?,
            poll_deadline: secs(
                "POLL_DEADLINE_SECS",
                &raw.poll_deadline_secs,
                600,
                1,
                86_400,
            )?,
            poll_emit_initial: boolean("POLL_EMIT_INITIAL", &raw.poll_emit_initial, false)?,
            database,
            advertise_url,
            public_url,
            amqp_url,
            amqp_exchange: non_empty(&raw.amqp_exchange)
                .unwrap_or("daftra.events")
                .to_string(),
            confirm_timeout: secs(
                "PUBLISH_CONFIRM_TIMEOUT_SECS",
                &raw.publish_confirm_timeout_secs,
                10,
                1,
                600,
            )?,
            bind_addr,
            export_token: secret(&raw.export_token),
            max_xlsx_builds: int_in(
                "EXPORT_MAX_XLSX_BUILDS",
                &raw.export_max_xlsx_builds,
                2,
                1,
                64,
            )?,
            shutdown_deadline: secs(
                "SHUTDOWN_DEADLINE_SECS",
                &raw.shutdown_deadline_secs,
                20,
                1,
                3600,
            )?,
            log_format: resolve_log_format(raw)?,
            webhooks: WebhookSettings::from_raw(raw)?,
            event_max_bytes: int_in(
                "EVENT_MAX_BYTES",
                &raw.event_max_bytes,
                256 * 1024,
                16 * 1024,
                512 * 1024 * 1024,
            )?,
            secrets_keys: resolve_secrets_keys(raw)?,
            link_signing_key: resolve_link_signing_key(raw)?,
            warnings: raw.warnings.clone(),
        })
    }
}

/// The Daftra client's settings: site root and credentials (unless overridden), page size,
/// concurrency, timeouts, retries and the account's clock.
fn resolve_daftra(
    raw: &RawEnv,
    base_url_override: Option<(String, DaftraAuth)>,
) -> Result<DaftraSettings, ConfigError> {
    let (base_url, auth) = match base_url_override {
        Some(pair) => pair,
        None => {
            let base = resolve_base_url(raw)?.ok_or_else(|| {
                err(
                    "DAFTRA_SUBDOMAIN",
                    "",
                    "a subdomain (required unless DAFTRA_BASE_URL is set)",
                )
            })?;
            (base, resolve_auth(raw)?)
        }
    };
    Ok(DaftraSettings {
        base_url,
        auth,
        page_size: int_in("DAFTRA_PAGE_SIZE", &raw.daftra_page_size, 1000, 1, 1000)?,
        concurrency: int_in("DAFTRA_CONCURRENCY", &raw.daftra_concurrency, 4, 1, 64)?,
        timeout: secs("DAFTRA_TIMEOUT_SECS", &raw.daftra_timeout_secs, 30, 1, 3600)?,
        max_retries: int_in("DAFTRA_MAX_RETRIES", &raw.daftra_max_retries, 5, 0, 100)?,
        max_backoff: secs(
            "DAFTRA_MAX_BACKOFF_SECS",
            &raw.daftra_max_backoff_secs,
            30,
            1,
            3600,
        )?,
        clock: resolve_clock(raw)?,
    })
}

/// `AMQP_URL`: an `amqp://` or `amqps://` URL lapin can parse (checked now, so a bad one stops
/// start-up naming the variable rather than failing every connection later).
fn resolve_amqp_url(raw: &RawEnv) -> Result<Secret, ConfigError> {
    let url = non_empty(&raw.amqp_url).unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f");
    if !(url.starts_with("amqp://") || url.starts_with("amqps://"))
        || url.parse::<lapin::uri::AMQPUri>().is_err()
    {
        return Err(err(
            "AMQP_URL",
            &redact_url(url),
            "an amqp:// or amqps:// URL with a valid host, port (1-65535) and virtual host",
        ));
    }
    Ok(Secret::new(url))
}

/// `BRIDGE_SECRETS_KEY` and `BRIDGE_SECRETS_KEY_PREVIOUS`: 32 random bytes each, in base64.
pub(super) fn resolve_secrets_keys(
    raw: &RawEnv,
) -> Result<crate::secret::SealingKeys, ConfigError> {
    let key = |name: &'static str, v: &Option<String>| {
        non_empty(v)
            .map(|text| {
                crate::secret::SealingKey::from_base64(text).ok_or_else(|| {
                    err(
                        name,
                        "***",
                        "32 random bytes in base64, e.g. the output of `openssl rand -base64 32`",
                    )
                })
            })
            .transpose()
    };
    Ok(crate::secret::SealingKeys {
        current: key("BRIDGE_SECRETS_KEY", &raw.bridge_secrets_key)?,
        previous: key(
            "BRIDGE_SECRETS_KEY_PREVIOUS",
            &raw.bridge_secrets_key_previous,
        )?,
    })
}

/// `LINK_SIGNING_KEY`: at least 32 characters (an HMAC-SHA256 key, RFC 2104 section 3).
pub(super) fn resolve_link_signing_key(raw: &RawEnv) -> Result<Option<Secret>, ConfigError> {
    match secret(&raw.link_signing_key) {
        Some(k) if k.expose().len() < 32 => Err(err(
            "LINK_SIGNING_KEY",
            "***",
            "at least 32 characters, e.g. the output of `openssl rand -hex 32`",
        )),
        other => Ok(other),
    }
}

fn resolve_log_format(raw: &RawEnv) -> Result<LogFormat, ConfigError> {
    match non_empty(&raw.log_format)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(err("LOG_FORMAT", other, "text or json")),
    }
}

#[cfg(test)]
mod tests;
