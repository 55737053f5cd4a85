//! Webhook settings: the admin and inbound tokens, the retry schedule, the attempt timeout,
//! whether private targets are allowed, and how long the event log is kept for replays.

use std::time::Duration;

use super::values::{boolean, err, int_in, non_empty, secret, secs};
use super::{ConfigError, RawEnv, Secret};

/// Default delays between attempts of one event to one endpoint: about 5 s, 5 min, 30 min,
/// 2 h, 5 h and 10 h (the schedule Standard Webhooks' reference implementations use).
pub const DEFAULT_RETRY_SCHEDULE: &[u64] = &[5, 300, 1800, 7200, 18_000, 36_000];

/// Settings of the outgoing webhook sink and the inbound Daftra webhook.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// `ADMIN_TOKEN`: enables `/webhooks/endpoints`; without it that API answers 404.
    pub admin_token: Option<Secret>,
    /// `INBOUND_WEBHOOK_TOKEN`: enables `POST /webhooks/daftra/{resource}`.
    pub inbound_token: Option<Secret>,
    /// Delay before attempt 2, 3, ...; after the last, the endpoint is disabled
    /// (`WEBHOOK_RETRY_SCHEDULE_SECS`, seconds, decimals allowed). Each delay gets +-20% jitter.
    pub retry_schedule: Vec<Duration>,
    /// Deadline of one attempt, connect to last byte read (`WEBHOOK_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Allow `http` and loopback, private and link-local addresses as targets
    /// (`WEBHOOK_ALLOW_PRIVATE_TARGETS`).
    pub allow_private: bool,
    /// How long delivered events stay in the event log for replays (`EVENT_LOG_RETENTION_SECS`).
    pub event_log_retention: Duration,
    /// The longest one `GET /events?wait=` holds its answer (`FEED_MAX_WAIT_SECS`); a longer
    /// `wait` is cut to it (proxies close idle connections).
    pub feed_max_wait: Duration,
    /// Delivery attempts in flight at once to one endpoint (`WEBHOOK_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Least time between two polls of one resource triggered by Daftra's webhook
    /// (`INBOUND_MIN_INTERVAL_SECS`); calls meanwhile wait for the next one, none is dropped.
    pub inbound_min_interval: Duration,
}

fn schedule(v: &Option<String>) -> Result<Vec<Duration>, ConfigError> {
    let Some(s) = non_empty(v) else {
        return Ok(DEFAULT_RETRY_SCHEDULE
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect());
    };
    let expected = "1 to 20 comma-separated delays in seconds (decimals allowed), each above 0 and at most 604800, e.g. 5,300,1800";
    let delays: Option<Vec<Duration>> = s
        .split(',')
        .map(|d| {
            d.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0 && *x <= 604_800.0)
                .map(Duration::from_secs_f64)
        })
        .collect();
    match delays {
        Some(d) if (1..=20).contains(&d.len()) => Ok(d),
        _ => Err(err("WEBHOOK_RETRY_SCHEDULE_SECS", s, expected)),
    }
}

impl WebhookSettings {
    /// Validates the webhook variables of `raw`.
    pub fn from_raw(raw: &RawEnv) -> Result<Self, ConfigError> {
        Ok(WebhookSettings {
            admin_token: secret(&raw.admin_token),
            inbound_token: secret(&raw.inbound_webhook_token),
            retry_schedule: schedule(&raw.webhook_retry_schedule_secs)?,
            timeout: secs(
                "WEBHOOK_TIMEOUT_SECS",
                &raw.webhook_timeout_secs,
                15,
                1,
                300,
            )?,
            allow_private: boolean(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS",
                &raw.webhook_allow_private_targets,
                false,
            )?,
            event_log_retention: secs(
                "EVENT_LOG_RETENTION_SECS",
                &raw.event_log_retention_secs,
                7 * 86_400,
                0,
                366 * 86_400,
            )?,
            feed_max_wait: secs("FEED_MAX_WAIT_SECS", &raw.feed_max_wait_secs, 60, 0, 60)?,
            max_in_flight: int_in(
                "WEBHOOK_MAX_IN_FLIGHT",
                &raw.webhook_max_in_flight,
                8,
                1,
                64,
            )?,
            inbound_min_interval: secs(
                "INBOUND_MIN_INTERVAL_SECS",
                &raw.inbound_min_interval_secs,
                5,
                0,
                3600,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_defaults_to_about_six_steps_and_rejects_nonsense() {
        let d = WebhookSettings::from_raw(&RawEnv::default()).unwrap();
        assert_eq!(d.retry_schedule.len(), 6);
        assert_eq!(d.retry_schedule[1], Duration::from_secs(300));
        assert_eq!(d.timeout, Duration::from_secs(15));
        assert!(!d.allow_private && d.admin_token.is_none());
        let raw = RawEnv {
            webhook_retry_schedule_secs: Some("0.5, 2".into()),
            ..Default::default()
        };
        let s = WebhookSettings::from_raw(&raw).unwrap();
        assert_eq!(
            s.retry_schedule,
            [Duration::from_millis(500), Duration::from_secs(2)]
        );
        for bad in ["0", "5,,6", "-1", "x", "1e9"] {
            let raw = RawEnv {
                webhook_retry_schedule_secs: Some(bad.into()),
                ..Default::default()
            };
            let e = WebhookSettings::from_raw(&raw).unwrap_err();
            assert_eq!(e.name, "WEBHOOK_RETRY_SCHEDULE_SECS", "{bad}");
        }
    }
}
