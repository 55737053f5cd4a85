//! Resources as data: every Daftra v1 list endpoint shares one envelope, so a resource is a path,
//! a model key, a key field and typed columns. Adding invoices or clients is declaring one more.

use serde_json::{Map, Value};

/// How a column's values are normalised, written to CSV/XLSX and filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Whole number (`"42"`, `42`, `"٤٢"` all mean 42); `""`/`null` mean no value.
    Int,
    /// Decimal amount as a JSON number; `""`/`null` mean no value.
    Decimal,
    /// Text kept as given (leading zeros included); `""`/`null` mean no value.
    Text,
    /// `YYYY-MM-DD`; empty, `null` and `0000-00-00` mean no date.
    Date,
    /// `YYYY-MM-DD HH:MM:SS`, Daftra's wall clock without zone; zero and empty mean none.
    Timestamp,
    /// Computed from other fields by [`Resource::derive`]; never read from Daftra.
    Derived,
}

/// One column of the exports and one field of the event images.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column { name, kind }
}

/// A Daftra list resource (for example `work_orders`).
#[derive(Debug)]
pub struct Resource {
    /// Name in URLs, metrics and events: `work_orders`.
    pub name: &'static str,
    /// Path under `/api2`: `work_orders`.
    pub path: &'static str,
    /// Key of each item in the envelope's `data` array: `WorkOrder`.
    pub model_key: &'static str,
    /// Singular used in routing keys and event types: `work_order`.
    pub singular: &'static str,
    /// The key field, an integer: `id`.
    pub key: &'static str,
    /// Columns in export order (CONTRACT section 5).
    pub columns: &'static [Column],
    /// Integer columns with an exact-match export filter.
    pub id_filters: &'static [&'static str],
    /// The status column and its labels by number, when the resource has one.
    pub status: Option<(&'static str, &'static [(i64, &'static str)])>,
}

use ColumnKind::*;

/// Work orders, documented in Daftra's v1 API (`GET /api2/work_orders`).
pub static WORK_ORDERS: Resource = Resource {
    name: "work_orders",
    path: "work_orders",
    model_key: "WorkOrder",
    singular: "work_order",
    key: "id",
    columns: &[
        col("id", Int),
        col("number", Text),
        col("title", Text),
        col("client_id", Int),
        col("staff_id", Int),
        col("status", Int),
        col("status_label", Derived),
        col("start_date", Date),
        col("delivery_date", Date),
        col("budget", Decimal),
        col("budget_currency", Text),
        col("follow_up_status_id", Int),
        col("delivery_appointment_id", Int),
        col("description", Text),
        col("created", Timestamp),
        col("modified", Timestamp),
    ],
    id_filters: &["client_id", "staff_id"],
    status: Some((
        "status",
        &[(1, "Open"), (2, "Closed"), (3, "Cancelled"), (4, "Draft")],
    )),
};

/// Every resource the bridge serves.
pub static RESOURCES: &[&Resource] = &[&WORK_ORDERS];

/// Finds a resource by its `name`.
pub fn by_name(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().copied().find(|r| r.name == name)
}

impl Resource {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Value of a derived column from the normalised record.
    pub fn derive(&self, column: &str, record: &Map<String, Value>) -> Value {
        match (column, self.status) {
            ("status_label", Some((field, labels))) => record
                .get(field)
                .and_then(Value::as_i64)
                .and_then(|n| labels.iter().find(|(k, _)| *k == n))
                .map(|(_, label)| Value::from(*label))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Status number for a label or number given by a user (`open`, `Closed`, `2`).
    pub fn status_code(&self, given: &str) -> Option<i64> {
        let (_, labels) = self.status?;
        let given = given.trim();
        if let Ok(n) = given.parse::<i64>() {
            return labels.iter().any(|(k, _)| *k == n).then_some(n);
        }
        labels
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(given))
            .map(|(k, _)| *k)
    }
}
