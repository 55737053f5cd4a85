//! Where deliveries may go. Without `WEBHOOK_ALLOW_PRIVATE_TARGETS`, a target is `https` and
//! every address it connects to is public: literal addresses are checked when the endpoint is
//! saved, host names each time they are resolved for a connection (so a name that later
//! resolves into the cluster is refused too: no server-side request forgery).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a target is refused, naming the switch that would allow it.
pub const PRIVATE_REFUSAL: &str =
    "loopback, private and link-local addresses are refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS=true";

/// Whether `ip` is not a public unicast address: loopback, RFC 1918 private, link-local,
/// carrier-grade NAT (RFC 6598), unique local (RFC 4193), unspecified, multicast, broadcast,
/// benchmarking (RFC 2544) or documentation ranges, and IPv4 inside IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 onto any v4
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

/// Checks a target URL as given to the admin API; the error names what is wrong.
pub fn validate(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not an absolute URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(
                "the target must be https (http only with WEBHOOK_ALLOW_PRIVATE_TARGETS=true)"
                    .into(),
            )
        }
        other if allow_private => {
            return Err(format!("the scheme must be https or http, not {other}"))
        }
        other => return Err(format!("the scheme must be https, not {other}")),
    }
    let host = parsed.host().ok_or("the URL has no host")?;
    let literal = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = literal {
        if !allow_private && is_private(ip) {
            return Err(format!("{ip}: {PRIVATE_REFUSAL}"));
        }
    }
    if let url::Host::Domain(name) = host {
        // RFC 6761: localhost and *.localhost always mean this machine.
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !allow_private && (name == "localhost" || name.ends_with(".localhost")) {
            return Err(format!("{name}: {PRIVATE_REFUSAL}"));
        }
    }
    if url.len() > 2048 {
        return Err("the URL is longer than 2048 characters".into());
    }
    Ok(parsed)
}

/// The URL without its user information and query (which may hold credentials), for `/status`
/// and logs.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// A DNS resolver that drops private addresses unless they are allowed, so the check holds at
/// connect time, for every connection.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

/// A name whose addresses were all refused.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({addrs}): {PRIVATE_REFUSAL}")]
pub struct RefusedTarget {
    pub host: String,
    pub addrs: String,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow || !is_private(a.ip()))
                .collect();
            if kept.is_empty() {
                let addrs = found
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(RefusedTarget { host, addrs }) as _);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Whether a literal address in `url` is refused (literal addresses skip the resolver).
pub fn literal_refused(url: &Url, allow_private: bool) -> Option<IpAddr> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && is_private(ip)).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_before_they_are_saved() {
        assert!(validate("https://hooks.example.com/x", false).is_ok());
        assert!(validate("http://hooks.example.com/x", false).is_err());
        assert!(validate("http://127.0.0.1:9/x", true).is_ok());
        assert!(validate("https://127.0.0.1/x", false)
            .unwrap_err()
            .contains("WEBHOOK_ALLOW_PRIVATE_TARGETS"));
        assert!(validate("https://[::1]/x", false).is_err());
        assert!(validate("https://LOCALHOST./x", false).is_err());
        assert!(validate("https://foo.localhost/x", false).is_err());
        assert!(validate("https://localhost/x", true).is_ok());
        assert!(validate("ftp://example.com", true).is_err());
        assert!(validate("not a url", true).is_err());
        assert_eq!(
            redact("https://user:pw@example.com/h?token=abc"),
            "https://example.com/h"
        );
    }
}
