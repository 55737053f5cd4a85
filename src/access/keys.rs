//! Access keys as they are handed out and checked: `dbk_<id>_<secret>`, where the id (12 hex
//! digits, public: it names the key in the store) is followed by 256 random bits (43 characters
//! of base64url). The store keeps the SHA-256 of the secret only; a presented key is compared
//! with it in constant time. Expiry times are Unix seconds.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// What every key starts with.
pub const PREFIX: &str = "dbk_";
/// Hex digits of a key's public id.
const ID_LEN: usize = 12;

/// A new key: its public id, the whole key (shown once) and the hash the store keeps.
pub struct NewKey {
    pub id: String,
    pub token: Secret,
    pub hash: String,
}

/// SHA-256 of `secret`, lower-case hex.
fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a key from the operating system's random source.
pub fn generate() -> NewKey {
    use base64::Engine;
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; ID_LEN / 2];
    rng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewKey {
        token: Secret::new(format!("{PREFIX}{id}_{secret}")),
        hash: hash(&secret),
        id,
    }
}

/// A presented key split into its id and secret; `None` when it is not of the key's form
/// (then it is not a key at all: another token, or garbage).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?.strip_prefix('_')?);
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && !secret.is_empty()).then_some((id, secret))
}

/// Whether `secret` is the one whose hash the store keeps, compared in constant time.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    bool::from(hash(secret).as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// Reads an expiry: a duration from `now` (`90d`, `12h`, `30m`, `45s`), an RFC 3339 time or a
/// date (`2027-03-01`, midnight UTC), or `never` (`None`). Errors say what is expected.
pub fn parse_expiry(text: &str, now: i64) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let expected = || {
        format!("{text:?} is not an expiry: a duration such as 90d, 12h, 30m or 45s, an RFC 3339 time, a date (YYYY-MM-DD), or never")
    };
    let unit = |c: char| match c {
        'd' => Some(86_400),
        'h' => Some(3_600),
        'm' => Some(60),
        's' => Some(1),
        _ => None,
    };
    if let Some((n, u)) = text
        .char_indices()
        .last()
        .and_then(|(i, c)| Some((text[..i].parse::<i64>().ok()?, unit(c)?)))
    {
        if n <= 0 {
            return Err(expected());
        }
        let at = n
            .checked_mul(u)
            .and_then(|d| now.checked_add(d))
            .ok_or_else(expected)?;
        return within_years(at, text);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return within_years(t.timestamp(), text);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let at = d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp();
        return within_years(at, text);
    }
    Err(expected())
}

/// The last second of the year 9999: expiries past it are refused (nothing shows them).
const LATEST: i64 = 253_402_300_799;

fn within_years(at: i64, text: &str) -> Result<Option<i64>, String> {
    match at <= LATEST {
        true => Ok(Some(at)),
        false => Err(format!(
            "{text:?} is after the year 9999; give a nearer expiry, or never"
        )),
    }
}

/// The time now, in Unix seconds: what expiries are compared with.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_only_its_secret_verifies() {
        let k = generate();
        let token = k.token.expose();
        assert!(
            token.starts_with("dbk_") && token.len() == 4 + 12 + 1 + 43,
            "{token}"
        );
        let (id, secret) = parse(token).unwrap();
        assert_eq!(id, k.id);
        assert!(verify(secret, &k.hash));
        let mut other = secret.to_string();
        other.replace_range(0..1, if other.starts_with('A') { "B" } else { "A" });
        assert!(!verify(&other, &k.hash));
        assert_ne!(generate().id, k.id);
        for bad in [
            "",
            "dbk_",
            "dbk_short_x",
            "token",
            "dbk_ABCDEF012345_x",
            "dbk_0123456789ab_",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn expiries_read_durations_times_dates_and_never() {
        let now = 1_000_000;
        assert_eq!(parse_expiry("90d", now), Ok(Some(now + 90 * 86_400)));
        assert_eq!(parse_expiry("12h", now), Ok(Some(now + 12 * 3_600)));
        assert_eq!(parse_expiry("never", now), Ok(None));
        assert_eq!(parse_expiry("2027-03-01", now), Ok(Some(1_803_859_200)));
        assert_eq!(
            parse_expiry("2027-03-01T00:00:00Z", now),
            Ok(Some(1_803_859_200))
        );
        for bad in ["0d", "-1d", "soon", "90x", "d"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }
}
