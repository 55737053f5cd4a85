//! Where the bridge listens and how others reach it: `BIND_ADDR`, `ADVERTISE_URL` (replicas)
//! and `PUBLIC_URL` (consumers).

use std::net::SocketAddr;

use super::values::{err, non_empty};
use super::{redact_url, ConfigError, RawEnv};

/// `BIND_ADDR`, `ADVERTISE_URL` and `PUBLIC_URL`.
pub(super) fn resolve_addresses(raw: &RawEnv) -> Result<(SocketAddr, String, String), ConfigError> {
    let bind_addr = resolve_bind_addr(raw)?;
    let advertise_url = resolve_advertise_url(raw, bind_addr)?;
    let public_url = resolve_public_url(raw, &advertise_url)?;
    Ok((bind_addr, advertise_url, public_url))
}

fn resolve_bind_addr(raw: &RawEnv) -> Result<SocketAddr, ConfigError> {
    let bind = non_empty(&raw.bind_addr).unwrap_or("0.0.0.0:8080");
    bind.parse::<SocketAddr>()
        .map_err(|_| err("BIND_ADDR", bind, "host:port, for example 0.0.0.0:8080"))
}

/// `ADVERTISE_URL`, or `http://<hostname>:<port of BIND_ADDR>`.
fn resolve_advertise_url(raw: &RawEnv, bind_addr: SocketAddr) -> Result<String, ConfigError> {
    let Some(u) = non_empty(&raw.advertise_url) else {
        return Ok(format!("http://{}:{}", host_name(), bind_addr.port()));
    };
    let parsed = url::Url::parse(u)
        .ok()
        .filter(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
    if parsed.is_none() {
        return Err(err(
            "ADVERTISE_URL",
            &redact_url(u),
            "an http:// or https:// URL other replicas reach this one at, for example http://10.0.0.7:8080",
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// `PUBLIC_URL`, or `ADVERTISE_URL`.
fn resolve_public_url(raw: &RawEnv, advertise_url: &str) -> Result<String, ConfigError> {
    let Some(u) = non_empty(&raw.public_url) else {
        return Ok(advertise_url.to_string());
    };
    let parsed = url::Url::parse(u)
        .ok()
        .filter(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
    match parsed {
        Some(_) => Ok(u.trim_end_matches('/').to_string()),
        None => Err(err(
            "PUBLIC_URL",
            &redact_url(u),
            "the http:// or https:// address consumers reach the bridge at, for example https://bridge.example.com",
        )),
    }
}

/// This machine's host name (the pod name on Kubernetes), or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
