//! Resources as data: every Daftra list resource is one entry of `data.json` (derived from
//! Daftra's API documentation by `tools/derive_catalogue.py`, checked in), compiled in and read
//! once. Nothing here is written per resource: a resource is a path, a model key, a key field,
//! typed columns with enum labels, line-item groups and list parameters.

mod shape;

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use shape::{Entry, Field, Shape};

/// The resource served when `DAFTRA_RESOURCES` is unset (the bridge's first resource).
pub const DEFAULT_RESOURCE: &str = "work_orders";

/// How a column's values are normalised, written to CSV/XLSX and filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Whole number (`"42"`, `42`, `"٤٢"` all mean 42); `""`/`null` mean no value. Daftra's
    /// booleans (`0`/`1`, `"0"`/`"1"`, `true`) are declared as this kind.
    Int,
    /// Decimal amount as a JSON number; `""`/`null` mean no value.
    Decimal,
    /// Text kept as given (leading zeros included); `""`/`null` mean no value.
    Text,
    /// `YYYY-MM-DD`; empty, `null` and `0000-00-00` mean no date.
    Date,
    /// `YYYY-MM-DD HH:MM:SS`, Daftra's wall clock without zone; zero and empty mean none.
    Timestamp,
    /// The label of an enum column (`status_label`), computed from it; never read from Daftra.
    Derived,
}

/// One column of the exports and one field of the event images.
#[derive(Clone, Debug, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// Enum labels by value (`None` labels `null`/`""`), from Daftra's docs; empty when none.
    #[serde(default)]
    pub labels: Vec<(Option<i64>, String)>,
    /// For a [`ColumnKind::Derived`] label column: the enum column it labels.
    #[serde(skip)]
    pub label_of: Option<String>,
}

impl Column {
    /// The label of enum value `v` (`null` looks up the label of "no value").
    pub fn label(&self, v: Option<i64>) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == v)
            .map(|(_, l)| l.as_str())
    }

    /// The enum values meant by `given`: a documented number, or every value that a label
    /// names, in any case (Daftra's docs give one label to several values: `payment_status`
    /// "Unpaid" is `null`, `""` and `0`); `None` stands for no value. Empty when unknown.
    pub fn enum_values(&self, given: &str) -> Vec<Option<i64>> {
        let given = given.trim();
        if let Ok(n) = given.parse::<i64>() {
            return if self.labels.iter().any(|(k, _)| *k == Some(n)) {
                vec![Some(n)]
            } else {
                Vec::new()
            };
        }
        self.labels
            .iter()
            .filter(|(_, l)| l.eq_ignore_ascii_case(given))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The distinct labels, in the docs' order (for hints and forms).
    pub fn distinct_labels(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (_, l) in &self.labels {
            if !out.contains(&l.as_str()) {
                out.push(l);
            }
        }
        out
    }
}

/// A line-item group carried inside each record (`InvoiceItem`, `JournalTransaction`, ...).
#[derive(Clone, Debug, Deserialize)]
pub struct LineItems {
    /// Key of the array inside the model object: `InvoiceItem`.
    pub key: String,
    /// Name of its export: `invoices_invoice_item`.
    pub export: String,
    /// The item's key field, when the docs give one: `id`.
    pub item_key: Option<String>,
    pub columns: Vec<Column>,
    /// How an item is decoded (built with the catalogue).
    #[serde(skip)]
    pub shape: Shape,
}

/// A Daftra list resource (for example `invoices`), or the export of one of its line-item groups.
#[derive(Debug, Deserialize)]
pub struct Resource {
    /// Name in URLs, metrics and events: `invoices`.
    pub name: String,
    /// Title of the docs' navigation group: `Invoices`.
    pub title: String,
    /// `sales`, `purchases`, `inventory`, `accounting`, `people`, `scheduling` or `other`.
    pub area: String,
    /// Key of each item in the envelope's `data` array: `Invoice`.
    pub model_key: String,
    /// Singular used in routing keys and event types: `invoice`.
    pub singular: String,
    /// The key field, an integer: `id`.
    pub key: String,
    /// List path under the site root, without format suffix: `api2/invoices`.
    pub list_path: String,
    /// Single-record path with `{id}`: `api2/invoices/{id}`.
    pub item_path: String,
    /// Query parameters every list request carries (`recursive=1` where the docs say line
    /// items only come with it).
    pub list_params: Vec<(String, String)>,
    /// Create, update and delete are documented.
    pub writable: bool,
    /// Delete is documented.
    pub deletable: bool,
    /// Fields a create must carry, as the docs say.
    pub create_required: Vec<String>,
    /// The page of Daftra's docs.
    pub doc_url: String,
    /// Columns in export order, label columns included right after their enum column.
    pub columns: Vec<Column>,
    pub line_items: Vec<LineItems>,
    /// The timestamp column Daftra moves on every change of a record (`modified`), when the
    /// docs give one: what a poll that reads only what changed follows.
    #[serde(default)]
    pub changed_at: Option<String>,
    /// Fields Daftra sends that are credentials (`password`): dropped from every record as it
    /// is read, so they are never stored, exported or announced.
    #[serde(default)]
    pub withheld: Vec<String>,
    /// The entity name of the resource's v2 list (`/v2/api/entity/{entity}/list/1`), when the
    /// docs give one: its filters can name the records changed since a time.
    #[serde(default)]
    pub v2_entity: Option<String>,
    /// Where the docs were silent or contradicted themselves, and the reading taken.
    pub notes: Vec<String>,
    /// For a line-item export: the parent resource's name and the group's key.
    #[serde(skip)]
    pub parent: Option<(String, String)>,
    /// How a record is decoded (built with the catalogue).
    #[serde(skip)]
    pub shape: Shape,
}

#[derive(Deserialize)]
struct Data {
    resources: Vec<Resource>,
}

/// Every declared resource, then every line-item export, built once from `data.json`.
struct Catalogue {
    resources: Vec<Resource>,
    line_item_exports: Vec<Resource>,
}

/// Adds `{name}_label` after every enum column.
fn with_label_columns(columns: Vec<Column>) -> Vec<Column> {
    let mut out = Vec::with_capacity(columns.len() * 2);
    for c in columns {
        let label = (!c.labels.is_empty()).then(|| Column {
            name: format!("{}_label", c.name),
            kind: ColumnKind::Derived,
            labels: Vec::new(),
            label_of: Some(c.name.clone()),
        });
        out.push(c);
        out.extend(label);
    }
    out
}

/// The export of one line-item group: the parent's key (`invoice_id`), the item's key, then
/// the item's other columns.
fn line_item_export(parent: &Resource, group: &LineItems) -> Resource {
    let parent_key = format!("{}_{}", parent.singular, parent.key);
    let mut columns = vec![Column {
        name: parent_key.clone(),
        kind: ColumnKind::Int,
        labels: Vec::new(),
        label_of: None,
    }];
    let item_key = group.item_key.clone();
    let (keys, rest): (Vec<&Column>, Vec<&Column>) = group
        .columns
        .iter()
        .filter(|c| c.name != parent_key)
        .partition(|c| Some(&c.name) == item_key.as_ref());
    columns.extend(keys.into_iter().chain(rest).cloned());
    Resource {
        name: group.export.clone(),
        title: format!("{} — {}", parent.title, group.key),
        area: parent.area.clone(),
        model_key: group.key.clone(),
        singular: parent.singular.clone(),
        key: item_key.unwrap_or_else(|| parent_key.clone()),
        list_path: parent.list_path.clone(),
        item_path: parent.item_path.clone(),
        list_params: parent.list_params.clone(),
        writable: false,
        deletable: false,
        create_required: Vec::new(),
        doc_url: parent.doc_url.clone(),
        // The group's columns already carry their label columns.
        columns,
        line_items: Vec::new(),
        changed_at: None,
        v2_entity: None,
        withheld: Vec::new(),
        notes: Vec::new(),
        parent: Some((parent.name.clone(), group.key.clone())),
        shape: Shape::default(),
    }
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    let data: Data = serde_json::from_str(include_str!("data.json")).expect("catalogue data.json");
    let mut resources = data.resources;
    for r in &mut resources {
        r.columns = with_label_columns(std::mem::take(&mut r.columns));
        for g in &mut r.line_items {
            g.columns = with_label_columns(std::mem::take(&mut g.columns));
            g.shape = Shape::new(&g.columns, &[], g.item_key.as_deref(), &[]);
        }
        r.shape = Shape::new(&r.columns, &r.line_items, Some(&r.key), &r.withheld);
    }
    let line_item_exports = resources
        .iter()
        .flat_map(|r| r.line_items.iter().map(move |g| line_item_export(r, g)))
        .collect();
    Catalogue {
        resources,
        line_item_exports,
    }
});

/// Every Daftra resource the bridge knows, in the docs' navigation order.
pub fn all() -> &'static [Resource] {
    &CATALOGUE.resources
}

/// The resource named `name` (not a line-item export).
pub fn by_name(name: &str) -> Option<&'static Resource> {
    all().iter().find(|r| r.name == name)
}

/// A resource or a line-item export named `name`.
pub fn export_by_name(name: &str) -> Option<&'static Resource> {
    by_name(name).or_else(|| CATALOGUE.line_item_exports.iter().find(|r| r.name == name))
}

/// The line-item exports of `parent`, in its declaration's order.
pub fn line_item_exports(parent: &Resource) -> impl Iterator<Item = &'static Resource> + '_ {
    CATALOGUE
        .line_item_exports
        .iter()
        .filter(move |r| r.parent.as_ref().is_some_and(|(p, _)| *p == parent.name))
}

/// The resource of [`DEFAULT_RESOURCE`].
pub fn default_resource() -> &'static Resource {
    by_name(DEFAULT_RESOURCE).expect("the default resource is declared")
}

/// The areas of `GET /`, in the order a person looks for them.
pub const AREAS: &[&str] = &[
    "sales",
    "purchases",
    "inventory",
    "accounting",
    "people",
    "scheduling",
    "other",
];

impl Resource {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Value of a derived column from the normalised record.
    pub fn derive(&self, column: &Column, record: &Map<String, Value>) -> Value {
        let Some(source) = column.label_of.as_deref().and_then(|n| self.column(n)) else {
            return Value::Null;
        };
        let value = match record.get(&source.name) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) => Some(n),
                None => return Value::Null,
            },
        };
        source.label(value).map(Value::from).unwrap_or(Value::Null)
    }

    /// Integer columns with an exact-match export filter: the `*_id` columns.
    pub fn id_filters(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Int && c.name.ends_with("_id"))
    }

    /// Enum columns, each a filter taking values or labels (`status=open,2`).
    pub fn enum_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.labels.is_empty())
    }

    /// The line-item group with key `key`.
    pub fn group(&self, key: &str) -> Option<&LineItems> {
        self.line_items.iter().find(|g| g.key == key)
    }

    /// The resource whose snapshot holds this export's rows: the parent for a line-item export.
    pub fn source(&'static self) -> &'static Resource {
        match &self.parent {
            Some((p, _)) => by_name(p).expect("a line-item export's parent is declared"),
            None => self,
        }
    }

    /// Site-root-relative path of record `id`.
    pub fn record_path(&self, id: i64) -> String {
        self.item_path.replace("{id}", &id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_of_the_docs_is_declared_once() {
        assert_eq!(all().len(), 31);
        let mut names: Vec<_> = all().iter().map(|r| r.name.as_str()).collect();
        names.extend(CATALOGUE.line_item_exports.iter().map(|r| r.name.as_str()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "export names are unique");
        for r in all() {
            assert!(AREAS.contains(&r.area.as_str()), "{}", r.name);
            assert!(r.column(&r.key).is_some(), "{} has its key column", r.name);
        }
    }

    #[test]
    fn work_orders_keep_their_published_columns() {
        let names: Vec<_> = default_resource()
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names.join(","),
            "id,number,title,client_id,staff_id,status,status_label,start_date,delivery_date,budget,\
             budget_currency,follow_up_status_id,delivery_appointment_id,description,created,modified"
        );
    }

    #[test]
    fn line_item_exports_lead_with_both_keys() {
        let items = export_by_name("invoices_invoice_item").unwrap();
        let first: Vec<_> = items
            .columns
            .iter()
            .take(3)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(first, ["invoice_id", "id", "item"]);
        assert_eq!(items.source().name, "invoices");
        let invoices = by_name("invoices").unwrap();
        assert_eq!(invoices.list_params, [("recursive".into(), "1".into())]);
        assert!(line_item_exports(invoices).count() >= 2);
    }

    #[test]
    fn enum_labels_and_values() {
        let wo = default_resource();
        let status = wo.column("status").unwrap();
        assert_eq!(status.enum_values("closed"), [Some(2)]);
        assert_eq!(status.enum_values("3"), [Some(3)]);
        assert!(status.enum_values("9").is_empty());
        let rec = serde_json::json!({"status": 4});
        let label = wo.column("status_label").unwrap();
        assert_eq!(wo.derive(label, rec.as_object().unwrap()), "Draft");
        let inv = by_name("invoices").unwrap();
        let ps = inv.column("payment_status_label").unwrap();
        assert_eq!(inv.derive(ps, &Map::new()), "Unpaid");
        let unpaid = inv.column("payment_status").unwrap().enum_values("UNPAID");
        assert_eq!(unpaid, [None, Some(0)], "one label, every value it names");
    }

    #[test]
    fn every_export_names_each_column_once() {
        for r in all().iter().chain(&CATALOGUE.line_item_exports) {
            let mut names: Vec<_> = r.columns.iter().map(|c| c.name.as_str()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "{}", r.name);
        }
    }
}
