//! Parsers of single environment values: empty means unset, ranges are checked, and every error
//! names the variable, the value given and what is expected.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Secret};

pub(super) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn err(name: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        shown: value.to_string(),
        expected: expected.into(),
    }
}

pub(super) fn int_in<T>(
    name: &'static str,
    v: &Option<String>,
    default: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
{
    match non_empty(v) {
        None => Ok(default),
        Some(s) => match s.parse::<T>() {
            Ok(n) if n >= lo && n <= hi => Ok(n),
            _ => Err(err(name, s, format!("a whole number from {lo} to {hi}"))),
        },
    }
}

pub(super) fn secs(
    name: &'static str,
    v: &Option<String>,
    default: u64,
    lo: u64,
    hi: u64,
) -> Result<Duration, ConfigError> {
    int_in(name, v, default, lo, hi).map(Duration::from_secs)
}

/// Parses a boolean in the spellings `true/false/1/0/yes/no/on/off`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

pub(super) fn boolean(
    name: &'static str,
    v: &Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match non_empty(v) {
        None => Ok(default),
        Some(s) => parse_bool(s).ok_or_else(|| err(name, s, "true/false/1/0/yes/no")),
    }
}

pub(super) fn secret(v: &Option<String>) -> Option<Secret> {
    non_empty(v).map(Secret::new)
}
