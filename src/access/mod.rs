//! Who may read what: access keys with scopes ([`keys`]), signed download links ([`links`]) and
//! each key's fair share of the service ([`limits`]). Pure: the store keeps the keys, `http/`
//! enforces them on every request.

pub mod keys;
pub mod limits;
pub mod links;

use serde::{Deserialize, Serialize};

use crate::catalogue::{self, Resource};

/// What an access key may do. Stored as JSON beside the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes {
    /// The exports it may read: export names (`invoices`, `invoices_invoice_item`), areas of
    /// the catalogue (`sales`, `inventory`, ...: every export of that area), or `*` (all).
    #[serde(default)]
    pub exports: Vec<String>,
    /// It may read `GET /status`.
    #[serde(default)]
    pub status: bool,
    /// It may start polls (`POST /poll/{resource}`).
    #[serde(default)]
    pub poll: bool,
    /// It may read the event feed (`GET /events`; `events` is accepted as its name too).
    #[serde(default, alias = "events")]
    pub feed: bool,
    /// It may make signed links to the exports it may read.
    #[serde(default)]
    pub share: bool,
}

/// One thing a request needs, as a 403 names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Reading the export (or the records) of this name.
    Export(String),
    Status,
    Poll,
    Feed,
    Share,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Export(name) => write!(f, "exports:{name}"),
            Scope::Status => f.write_str("status"),
            Scope::Poll => f.write_str("poll"),
            Scope::Feed => f.write_str("feed"),
            Scope::Share => f.write_str("share"),
        }
    }
}

/// Every area of the catalogue.
fn areas() -> Vec<&'static str> {
    let mut out: Vec<&str> = catalogue::all().iter().map(|r| r.area.as_str()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Scopes {
    /// Reads a list of export names and areas separated by commas (`invoices,sales`); each must
    /// be an export of the catalogue, an area, or `*`. The error names the first that is not.
    pub fn parse_exports(list: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let known = entry == "*"
                || catalogue::export_by_name(entry).is_some()
                || areas().contains(&entry);
            if !known {
                return Err(format!(
                    "{entry:?} is neither an export (daftra-bridge resources lists them), an area ({}) nor *",
                    areas().join(", ")
                ));
            }
            if !out.iter().any(|e| e == entry) {
                out.push(entry.to_string());
            }
        }
        Ok(out)
    }

    /// Checks every export entry (see [`Scopes::parse_exports`]).
    pub fn validate(&self) -> Result<(), String> {
        Scopes::parse_exports(&self.exports.join(",")).map(|_| ())
    }

    /// Whether the key may read `export` (a resource or a line-item export): named, its
    /// source's area named, or `*`.
    pub fn may_export(&self, export: &'static Resource) -> bool {
        let area = &export.source().area;
        self.exports
            .iter()
            .any(|e| e == "*" || e == &export.name || e == area)
    }

    /// Whether the key may do what `scope` names.
    pub fn allows(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Export(name) => {
                catalogue::export_by_name(name).is_some_and(|r| self.may_export(r))
            }
            Scope::Status => self.status,
            Scope::Poll => self.poll,
            Scope::Feed => self.feed,
            Scope::Share => self.share,
        }
    }

    /// The scopes as one line: `exports=invoices,sales status poll`.
    pub fn summary(&self) -> String {
        let mut out = vec![format!("exports={}", self.exports.join(","))];
        for (on, name) in [
            (self.status, "status"),
            (self.poll, "poll"),
            (self.feed, "feed"),
            (self.share, "share"),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(exports: &str) -> Scopes {
        Scopes {
            exports: Scopes::parse_exports(exports).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn an_area_opens_its_resources_and_their_line_items_and_nothing_else() {
        let inventory = scopes("inventory");
        let by = |n: &str| catalogue::export_by_name(n).unwrap();
        assert!(inventory.may_export(by("products")));
        assert!(inventory.may_export(by("stock_transactions")));
        assert!(!inventory.may_export(by("invoices")));
        assert!(!inventory.may_export(by("journals")));
        let sales = scopes("sales");
        assert!(sales.may_export(by("invoices_invoice_item")));
        let named = scopes("invoices");
        assert!(named.may_export(by("invoices")));
        assert!(
            !named.may_export(by("invoices_invoice_item")),
            "named one by one"
        );
        assert!(scopes("*").may_export(by("staff")));
        assert!(!inventory.allows(&Scope::Status) && !inventory.allows(&Scope::Poll));
    }

    #[test]
    fn unknown_entries_are_named() {
        let e = Scopes::parse_exports("invoices,invoicez").unwrap_err();
        assert!(e.contains("\"invoicez\"") && e.contains("sales"), "{e}");
        assert_eq!(
            Scopes::parse_exports(" invoices , sales,invoices").unwrap(),
            vec!["invoices", "sales"]
        );
        assert_eq!(
            Scope::Export("invoices".into()).to_string(),
            "exports:invoices"
        );
    }
}
