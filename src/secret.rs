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

/// A key that encrypts stored secrets: 32 bytes for XChaCha20-Poly1305 (RustCrypto's
/// `chacha20poly1305`, an AEAD). Never printed.
#[derive(Clone)]
pub struct SealingKey([u8; 32]);

impl SealingKey {
    /// The key of 32 bytes written in standard base64 (`openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Option<SealingKey> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        Some(SealingKey(bytes.try_into().ok()?))
    }

    fn cipher(&self) -> chacha20poly1305::XChaCha20Poly1305 {
        use chacha20poly1305::KeyInit;
        chacha20poly1305::XChaCha20Poly1305::new((&self.0).into())
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

/// How stored secrets are sealed: with `current` (`BRIDGE_SECRETS_KEY`) when set, and read with
/// it or `previous` (`BRIDGE_SECRETS_KEY_PREVIOUS`, while a rotation re-seals them). Without a
/// key, secrets are stored in clear (start-up warns).
#[derive(Clone, Debug, Default)]
pub struct SealingKeys {
    pub current: Option<SealingKey>,
    pub previous: Option<SealingKey>,
}

/// The prefix of a sealed value: `sealed:v1:` and base64 of a 24-byte nonce and the ciphertext.
const SEALED: &str = "sealed:v1:";

/// Why a stored secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("a stored secret is encrypted and BRIDGE_SECRETS_KEY is not set")]
    NoKey,
    #[error("a stored secret does not open with BRIDGE_SECRETS_KEY (nor BRIDGE_SECRETS_KEY_PREVIOUS): the key changed without a rotation, or the value was altered")]
    WrongKey,
}

impl SealingKeys {
    /// Whether secrets are encrypted when stored.
    pub fn seals(&self) -> bool {
        self.current.is_some()
    }

    /// The stored form of `secret`, bound to `id` (the record that holds it, as associated
    /// data: a sealed value moved to another record does not open). In clear without a key.
    pub fn seal(&self, id: &str, secret: &Secret) -> String {
        use base64::Engine;
        use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
        let Some(key) = &self.current else {
            return secret.expose().to_string();
        };
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: id.as_bytes(),
        };
        let sealed = key
            .cipher()
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encrypts any message");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    /// The secret `stored` for record `id`: opened with the current or the previous key, or
    /// taken as it is when it was stored in clear (before a key was set).
    pub fn open(&self, id: &str, stored: &str) -> Result<Secret, UnsealError> {
        use base64::Engine;
        use chacha20poly1305::aead::{Aead, Payload};
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return Ok(Secret::new(stored));
        };
        let keys: Vec<&SealingKey> = self.current.iter().chain(&self.previous).collect();
        if keys.is_empty() {
            return Err(UnsealError::NoKey);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| UnsealError::WrongKey)?;
        if bytes.len() < 24 {
            return Err(UnsealError::WrongKey);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        for key in keys {
            let payload = Payload {
                msg: ciphertext,
                aad: id.as_bytes(),
            };
            if let Ok(plain) = key.cipher().decrypt(nonce.into(), payload) {
                return String::from_utf8(plain)
                    .map(Secret::new)
                    .map_err(|_| UnsealError::WrongKey);
            }
        }
        Err(UnsealError::WrongKey)
    }

    /// Whether `stored` should be sealed again: in clear while a key is set, or sealed with
    /// another key than the current one.
    pub fn needs_resealing(&self, id: &str, stored: &str) -> bool {
        let Some(current) = &self.current else {
            return false;
        };
        if !stored.starts_with(SEALED) {
            return true;
        }
        let only_current = SealingKeys {
            current: Some(current.clone()),
            previous: None,
        };
        only_current.open(id, stored).is_err()
    }
}

#[cfg(test)]
mod sealing_tests {
    use super::*;

    fn key(byte: u8) -> SealingKey {
        SealingKey([byte; 32])
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_record() {
        let keys = SealingKeys {
            current: Some(key(1)),
            previous: None,
        };
        let stored = keys.seal("ep_1", &Secret::new("whsec_abc"));
        assert!(stored.starts_with(SEALED) && !stored.contains("whsec_abc"));
        assert_eq!(keys.open("ep_1", &stored).unwrap().expose(), "whsec_abc");
        assert!(keys.open("ep_2", &stored).is_err(), "bound to its record");
        assert_ne!(
            stored,
            keys.seal("ep_1", &Secret::new("whsec_abc")),
            "a fresh nonce"
        );
        let other = SealingKeys {
            current: Some(key(2)),
            previous: None,
        };
        assert!(matches!(
            other.open("ep_1", &stored),
            Err(UnsealError::WrongKey)
        ));
        assert!(matches!(
            SealingKeys::default().open("ep_1", &stored),
            Err(UnsealError::NoKey)
        ));
    }

    #[test]
    fn a_rotation_reads_with_the_previous_key_and_reseals() {
        let old = SealingKeys {
            current: Some(key(1)),
            previous: None,
        };
        let stored = old.seal("ep_1", &Secret::new("s"));
        let rotating = SealingKeys {
            current: Some(key(2)),
            previous: Some(key(1)),
        };
        assert_eq!(rotating.open("ep_1", &stored).unwrap().expose(), "s");
        assert!(rotating.needs_resealing("ep_1", &stored));
        let resealed = rotating.seal("ep_1", &Secret::new("s"));
        assert!(!rotating.needs_resealing("ep_1", &resealed));
        assert!(rotating.needs_resealing("ep_1", "in clear"));
        assert!(!SealingKeys::default().needs_resealing("ep_1", "in clear"));
        assert_eq!(
            SealingKeys::default()
                .open("ep_1", "in clear")
                .unwrap()
                .expose(),
            "in clear"
        );
        assert!(
            SealingKey::from_base64("c2hvcnQ=").is_none(),
            "32 bytes or nothing"
        );
    }
}
