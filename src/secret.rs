//! Secrets that never print, and URLs shown without their password: a leaf every module may
//! use (configuration, store, sinks, HTTP) without depending on any of them.

use std::fmt;

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it (a header, a form, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL for logs and errors: the password of `scheme://user:password@host` and the values of
/// query parameters that name a credential (`password`, `sslpassword`, `secret`, `token`,
/// `key`, ...) replaced by `***`. Works on any text (a malformed URL is redacted as far as its
/// shape allows).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let shown: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if credential(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&shown.join("&"));
    }
    out
}

fn credential(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_form_of_credential_in_a_url_is_hidden() {
        assert_eq!(
            redact_url("amqp://bridge:s3cr3t@rabbit:5672/%2f"),
            "amqp://bridge:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url(
                "postgres://app:p%40ss@db:5432/bridge?sslmode=require&password=x&sslpassword=y"
            ),
            "postgres://app:***@db:5432/bridge?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("sqlite://data/x.sqlite3"),
            "sqlite://data/x.sqlite3"
        );
        assert_eq!(
            redact_url("https://acme.daftra.com/x?apikey=k"),
            "https://acme.daftra.com/x?apikey=***"
        );
        assert_eq!(
            redact_url("mysql://u:pw@h/db?x=1"),
            "mysql://u:***@h/db?x=1"
        );
    }
}
