//! Signed download links: an export's path and query, an expiry (`expires`, Unix seconds) and
//! `sig`, the HMAC-SHA256 (RFC 2104) of their canonical form under the link signing key. The
//! canonical form decodes the query and sorts its pairs, so a link whose parameters were
//! reordered or percent-encoded otherwise is the same link; any other change breaks the
//! signature. Checking one needs no database: only the key, held in memory.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The parameter holding the expiry, in Unix seconds.
pub const EXPIRES: &str = "expires";
/// The parameter holding the signature, lower-case hex.
pub const SIG: &str = "sig";

/// Why a link is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Past its expiry (Unix seconds).
    #[error("this link expired at {}", super::keys::rfc3339(*.0))]
    Expired(i64),
    /// The signature does not match: the link was changed, or not made by this bridge (or
    /// the signing key was rotated since).
    #[error("this link's signature does not match: it was changed after it was made, or its signing key was rotated")]
    BadSignature,
    #[error("this link has no readable expires parameter")]
    NoExpiry,
}

/// The signed text of `path` and `pairs` (every parameter but `sig` and `token`), sorted.
fn canonical(path: &str, pairs: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != SIG && k != "token")
        .collect();
    kept.sort();
    let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
    format!("GET\n{path}\n{query}")
}

fn mac(key: &[u8], text: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any size");
    mac.update(text.as_bytes());
    mac
}

/// The query (`a=1&expires=...&sig=...`) of a link to `path` with `pairs` (the export's own
/// parameters), valid until `expires`.
pub fn sign(key: &[u8], path: &str, pairs: &[(String, String)], expires: i64) -> String {
    let mut all = pairs.to_vec();
    all.retain(|(k, _)| k != EXPIRES && k != SIG && k != "token");
    all.push((EXPIRES.to_string(), expires.to_string()));
    let sig: String = mac(key, &canonical(path, &all))
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    all.push((SIG.to_string(), sig));
    serde_urlencoded::to_string(&all).unwrap_or_default()
}

/// Whether the query `pairs` of a request to `path` carry a signature.
pub fn is_signed(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, _)| k == SIG)
}

/// Checks a signed request at `now` (Unix seconds): the signature first (in constant time),
/// then the expiry; `Ok` with the export's own parameters (without `expires` and `sig`).
pub fn verify(
    key: &[u8],
    path: &str,
    pairs: &[(String, String)],
    now: i64,
) -> Result<Vec<(String, String)>, LinkError> {
    let given = pairs
        .iter()
        .filter(|(k, _)| k == SIG)
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    let [given] = given.as_slice() else {
        return Err(LinkError::BadSignature);
    };
    let bytes: Option<Vec<u8>> = (0..given.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(given.get(i..i + 2)?, 16).ok())
        .collect();
    let bytes = bytes.ok_or(LinkError::BadSignature)?;
    mac(key, &canonical(path, pairs))
        .verify_slice(&bytes)
        .map_err(|_| LinkError::BadSignature)?;
    let expires: i64 = pairs
        .iter()
        .find(|(k, _)| k == EXPIRES)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or(LinkError::NoExpiry)?;
    if now >= expires {
        return Err(LinkError::Expired(expires));
    }
    Ok(pairs
        .iter()
        .filter(|(k, _)| k != EXPIRES && k != SIG && k != "token")
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(query).unwrap()
    }

    #[test]
    fn a_link_survives_reordering_and_other_encodings_and_nothing_else() {
        let key = b"0123456789abcdef0123456789abcdef";
        let path = "/exports/invoices.csv";
        let query = sign(
            key,
            path,
            &pairs("payment_status=unpaid&fields=id,no"),
            2_000,
        );
        let signed = pairs(&query);
        assert_eq!(
            verify(key, path, &signed, 1_000),
            Ok(pairs("payment_status=unpaid&fields=id,no"))
        );
        let mut reordered = signed.clone();
        reordered.reverse();
        assert!(verify(key, path, &reordered, 1_000).is_ok());
        let encoded = query.replace(',', "%2C").replace("fields", "%66ields");
        assert!(
            verify(key, path, &pairs(&encoded), 1_000).is_ok(),
            "{encoded}"
        );
        for (what, changed) in [
            ("a filter", query.replace("unpaid", "paid")),
            ("the expiry", query.replace("expires=2000", "expires=2001")),
            ("a parameter added", format!("{query}&status=1")),
        ] {
            assert_eq!(
                verify(key, path, &pairs(&changed), 1_000),
                Err(LinkError::BadSignature),
                "{what}"
            );
        }
        assert_eq!(
            verify(key, "/exports/invoices.xlsx", &signed, 1_000),
            Err(LinkError::BadSignature),
            "another format"
        );
        assert_eq!(
            verify(b"another key of the same length!!", path, &signed, 1_000),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(key, path, &signed, 2_000),
            Err(LinkError::Expired(2_000))
        );
        let mut sig_byte = signed.clone();
        let sig = &mut sig_byte.iter_mut().find(|(k, _)| k == SIG).unwrap().1;
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        sig.replace_range(0..1, flipped);
        assert_eq!(
            verify(key, path, &sig_byte, 1_000),
            Err(LinkError::BadSignature)
        );
    }
}
