//! What the Daftra account serves, how it is polled and how it writes times:
//! `DAFTRA_RESOURCES`, the per-resource `POLL_INTERVAL_SECS_{NAME}` and `POLL_STRATEGY_{NAME}`,
//! `DAFTRA_TIMEZONE` and `DAFTRA_DATE_FORMAT`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::values::{err, non_empty, secs};
use super::{ConfigError, RawEnv};

/// Prefix of the per-resource poll intervals, `POLL_INTERVAL_SECS_INVOICES`.
pub const POLL_INTERVAL_PREFIX: &str = "POLL_INTERVAL_SECS_";
/// Prefix of the per-resource change strategies, `POLL_STRATEGY_INVOICES`.
pub const POLL_STRATEGY_PREFIX: &str = "POLL_STRATEGY_";
/// Prefixes of the variables named after a resource.
pub const PER_RESOURCE_PREFIXES: &[&str] = &[POLL_INTERVAL_PREFIX, POLL_STRATEGY_PREFIX];

/// How a resource's polls find what changed (`POLL_STRATEGY`, `POLL_STRATEGY_{NAME}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PollStrategy {
    /// Read only what changed where a probe proves Daftra can say what did, with full scans
    /// every `POLL_FULL_SCAN_SECS` for deletes and the audit.
    #[default]
    Auto,
    /// Every poll is a full scan.
    Full,
}

/// Reads `auto` or `full` (any case) from variable `name`; empty is `default`.
pub(super) fn poll_strategy(
    name: &'static str,
    v: &Option<String>,
    default: PollStrategy,
) -> Result<PollStrategy, ConfigError> {
    match non_empty(v) {
        None => Ok(default),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(PollStrategy::Auto),
        Some(s) if s.eq_ignore_ascii_case("full") => Ok(PollStrategy::Full),
        Some(s) => Err(err(name, s, "auto or full")),
    }
}

/// Resolves `DAFTRA_RESOURCES`: names separated by commas (spaces allowed), or `all`; default
/// `work_orders`. An unknown name is an error listing the valid ones.
pub fn resolve_resources(
    v: &Option<String>,
) -> Result<Vec<&'static crate::catalogue::Resource>, ConfigError> {
    use crate::catalogue;
    let Some(given) = non_empty(v) else {
        return Ok(vec![catalogue::default_resource()]);
    };
    if given.eq_ignore_ascii_case("all") {
        return Ok(catalogue::all().iter().collect());
    }
    let mut wanted = Vec::new();
    for name in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let r = catalogue::by_name(name).ok_or_else(|| {
            let valid: Vec<_> = catalogue::all().iter().map(|r| r.name.as_str()).collect();
            err(
                "DAFTRA_RESOURCES",
                given,
                format!(
                    "all, or resource names separated by commas; {name:?} is not one of: {}",
                    valid.join(", ")
                ),
            )
        })?;
        if !wanted
            .iter()
            .any(|w: &&catalogue::Resource| w.name == r.name)
        {
            wanted.push(r);
        }
    }
    if wanted.is_empty() {
        return Err(err(
            "DAFTRA_RESOURCES",
            given,
            "at least one resource name, or all",
        ));
    }
    // Catalogue order, whatever order they were listed in.
    Ok(catalogue::all()
        .iter()
        .filter(|r| wanted.iter().any(|w| w.name == r.name))
        .collect())
}

/// `DAFTRA_TIMEZONE` (an IANA name, default `UTC`) and `DAFTRA_DATE_FORMAT` (`DD/MM/YYYY` or
/// `MM/DD/YYYY`; default day-first, the form seen on Daftra accounts).
pub fn resolve_clock(raw: &RawEnv) -> Result<crate::record::Clock, ConfigError> {
    use crate::record::{Clock, DayOrder};
    let zone = match non_empty(&raw.daftra_timezone) {
        None => chrono_tz::Tz::UTC,
        Some(z) => z.parse().map_err(|_| {
            err(
                "DAFTRA_TIMEZONE",
                z,
                "an IANA time zone name such as Africa/Cairo, Asia/Riyadh or UTC",
            )
        })?,
    };
    let day_order = match non_empty(&raw.daftra_date_format) {
        None => DayOrder::DayFirst,
        Some(f) => DayOrder::parse(f)
            .ok_or_else(|| err("DAFTRA_DATE_FORMAT", f, "DD/MM/YYYY or MM/DD/YYYY"))?,
    };
    Ok(Clock { zone, day_order })
}

/// Values of the variables `{prefix}{NAME}`, by resource name: an unknown name is an error
/// naming the variable, an empty value is no override.
fn per_resource<T>(
    prefix: &str,
    overrides: &BTreeMap<String, String>,
    parse: impl Fn(&'static str, &Option<String>) -> Result<T, ConfigError>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let mut out = BTreeMap::new();
    for (upper, v) in overrides {
        // A variable name lives as long as the process: errors hold it as `&'static str`.
        let name: &'static str = Box::leak(format!("{prefix}{upper}").into_boxed_str());
        let Some(r) = crate::catalogue::all()
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(upper))
        else {
            return Err(err(
                name,
                v,
                format!("a variable named after a resource (daftra-bridge resources lists them), e.g. {prefix}INVOICES"),
            ));
        };
        let value = Some(v.clone());
        if non_empty(&value).is_some() {
            out.insert(r.name.clone(), parse(name, &value)?);
        }
    }
    Ok(out)
}

pub(super) fn resolve_intervals(raw: &RawEnv) -> Result<BTreeMap<String, Duration>, ConfigError> {
    per_resource(
        POLL_INTERVAL_PREFIX,
        &raw.poll_interval_overrides,
        |name, v| secs(name, v, 60, 1, 86_400),
    )
}

pub(super) fn resolve_strategies(
    raw: &RawEnv,
) -> Result<BTreeMap<String, PollStrategy>, ConfigError> {
    per_resource(
        POLL_STRATEGY_PREFIX,
        &raw.poll_strategy_overrides,
        |name, v| poll_strategy(name, v, PollStrategy::Auto),
    )
}
