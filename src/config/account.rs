//! What the Daftra account serves and how it writes times: `DAFTRA_RESOURCES`, the
//! per-resource `POLL_INTERVAL_SECS_{NAME}`, `DAFTRA_TIMEZONE` and `DAFTRA_DATE_FORMAT`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::values::{err, non_empty, secs};
use super::{ConfigError, RawEnv};

/// Prefix of the per-resource poll intervals, `POLL_INTERVAL_SECS_INVOICES`.
pub const POLL_INTERVAL_PREFIX: &str = "POLL_INTERVAL_SECS_";

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
pub(super) fn resolve_clock(raw: &RawEnv) -> Result<crate::record::Clock, ConfigError> {
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

pub(super) fn resolve_intervals(raw: &RawEnv) -> Result<BTreeMap<String, Duration>, ConfigError> {
    let mut out = BTreeMap::new();
    for (upper, v) in &raw.poll_interval_overrides {
        let Some(r) = crate::catalogue::all()
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(upper))
        else {
            let name: &'static str =
                Box::leak(format!("{POLL_INTERVAL_PREFIX}{upper}").into_boxed_str());
            return Err(err(
                name,
                v,
                "a variable named after a resource (daftra-bridge resources lists them), e.g. POLL_INTERVAL_SECS_INVOICES",
            ));
        };
        let name: &'static str =
            Box::leak(format!("{POLL_INTERVAL_PREFIX}{upper}").into_boxed_str());
        if let Some(d) = non_empty(&Some(v.clone()))
            .map(|_| secs(name, &Some(v.clone()), 60, 1, 86_400))
            .transpose()?
        {
            out.insert(r.name.clone(), d);
        }
    }
    Ok(out)
}
