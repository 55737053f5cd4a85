//! Standard Webhooks signatures (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>):
//! `v1,` + base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the
//! base64-decoded part of the `whsec_` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::secret::Secret;

/// Prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` + base64 of 32 random bytes (the spec asks for 24 to 64).
pub fn new_secret() -> Secret {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// `v1,<base64 signature>` of one message; `None` when the secret is not `whsec_` + base64.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD
        .decode(secret.expose().strip_prefix(SECRET_PREFIX)?)
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: the current secret's signature, then that of each earlier
/// secret whose rotation overlap lasts, space-separated.
pub fn header(
    secret: &Secret,
    previous: &[(Secret, i64)],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = sign(secret, msg_id, timestamp, body).unwrap_or_default();
    for (old, until) in previous {
        if timestamp < *until {
            if let Some(s) = sign(old, msg_id, timestamp, body) {
                out.push(' ');
                out.push_str(&s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        // The example of the Standard Webhooks specification, section "Signature scheme".
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotation_signs_with_both_until_the_overlap_ends() {
        let (new, old) = (new_secret(), new_secret());
        let both = header(&new, &[(old.clone(), 100)], "m", 99, b"{}");
        assert_eq!(both.split(' ').count(), 2);
        assert!(both.ends_with(&sign(&old, "m", 99, b"{}").unwrap()));
        assert_eq!(
            header(&new, &[(old, 100)], "m", 100, b"{}")
                .split(' ')
                .count(),
            1
        );
    }
}
