//! Conditional downloads of snapshot exports (RFC 9110 sections 8.8 and 13): a weak `ETag` made
//! of the snapshot's version and the normalised query, `Last-Modified` = the commit of the poll
//! that produced that version, and `304 Not Modified` for `If-None-Match` / `If-Modified-Since`.
//! Spreadsheet tools that refresh a URL every few minutes then cost a few bytes.

use actix_web::http::header;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

use crate::export::Format;

/// The validators of one snapshot export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// `W/"v{version}-{query hash}"`.
    pub etag: String,
    /// Unix seconds of the commit that made this snapshot version.
    pub modified_at: i64,
}

impl Validators {
    /// From the snapshot version, the export's name and format and the query's pairs (order and
    /// `token` do not matter: two URLs that select the same file share the tag).
    pub fn new(
        (version, modified_at): (i64, i64),
        export: &str,
        format: Format,
        pairs: &[(String, String)],
    ) -> Validators {
        let mut kept: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        kept.sort();
        let mut h = Sha256::new();
        h.update(export.as_bytes());
        h.update([0]);
        h.update(format.as_str().as_bytes());
        for (k, v) in &kept {
            h.update([0]);
            h.update(k.as_bytes());
            h.update([b'=']);
            h.update(v.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Validators {
            etag: format!("W/\"v{version}-{hex}\""),
            modified_at,
        }
    }

    /// `Last-Modified` in the IMF-fixdate form.
    pub fn last_modified(&self) -> String {
        let at =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.modified_at.max(0) as u64);
        httpdate::fmt_http_date(at)
    }

    /// Whether `req` already holds this version: `If-None-Match` (weak comparison, `*`
    /// included) when present, else `If-Modified-Since` not earlier than `Last-Modified`.
    pub fn not_modified(&self, req: &HttpRequest) -> bool {
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
        if let Some(v) = req.headers().get(header::IF_NONE_MATCH) {
            let Ok(v) = v.to_str() else { return false };
            return v
                .split(',')
                .any(|t| t.trim() == "*" || opaque(t) == opaque(&self.etag));
        }
        req.headers()
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|since| since.as_secs() as i64 >= self.modified_at)
    }

    /// The headers every answer of this export carries.
    pub fn headers(&self) -> [(header::HeaderName, String); 3] {
        [
            (header::ETAG, self.etag.clone()),
            (header::LAST_MODIFIED, self.last_modified()),
            // Cached copies are checked with the bridge before each use.
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_tag_follows_the_version_and_the_query_not_its_order_or_token() {
        let a = Validators::new(
            (3, 100),
            "invoices",
            Format::Csv,
            &pairs(&[("fields", "id"), ("status", "1")]),
        );
        let b = Validators::new(
            (3, 100),
            "invoices",
            Format::Csv,
            &pairs(&[("status", "1"), ("token", "x"), ("fields", "id")]),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            Validators::new(
                (4, 100),
                "invoices",
                Format::Csv,
                &pairs(&[("fields", "id"), ("status", "1")])
            )
        );
        assert_ne!(
            a,
            Validators::new(
                (3, 100),
                "invoices",
                Format::Xlsx,
                &pairs(&[("fields", "id"), ("status", "1")])
            )
        );
        assert_ne!(
            a,
            Validators::new(
                (3, 100),
                "invoices",
                Format::Csv,
                &pairs(&[("fields", "id")])
            )
        );
        assert!(a.etag.starts_with("W/\"v3-"));
    }

    #[test]
    fn conditions_compare_weakly_and_by_date() {
        let v = Validators::new((1, 1_700_000_000), "clients", Format::Csv, &[]);
        let strong = v.etag.trim_start_matches("W/").to_string();
        for (name, value, expected) in [
            ("if-none-match", v.etag.clone(), true),
            ("if-none-match", format!("\"other\", {strong}"), true),
            ("if-none-match", "*".to_string(), true),
            ("if-none-match", "\"other\"".to_string(), false),
            ("if-modified-since", v.last_modified(), true),
            (
                "if-modified-since",
                "Sun, 06 Nov 1994 08:49:37 GMT".to_string(),
                false,
            ),
            ("if-modified-since", "yesterday".to_string(), false),
        ] {
            let req = TestRequest::get()
                .insert_header((name, value.clone()))
                .to_http_request();
            assert_eq!(v.not_modified(&req), expected, "{name}: {value}");
        }
        let both = TestRequest::get()
            .insert_header(("if-none-match", "\"other\""))
            .insert_header(("if-modified-since", v.last_modified()))
            .to_http_request();
        assert!(
            !v.not_modified(&both),
            "If-None-Match wins over If-Modified-Since"
        );
    }
}
