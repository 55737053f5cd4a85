//! Export query parameters (README "Exports"), validated into an [`ExportQuery`]. Every bad
//! value is an error naming the parameter.

use super::row::{Cell, Row};
use crate::catalogue::{Column, ColumnKind, Resource};
use crate::config::parse_bool;

/// A query parameter that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct QueryError {
    /// The parameter's name as given.
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The poller's last snapshot (default).
    Snapshot,
    /// Daftra, read now, page by page.
    Live,
}

/// An inclusive date range on one date or timestamp column; bounds are `YYYY-MM-DD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub column: &'static str,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A validated export request.
#[derive(Clone, Debug)]
pub struct ExportQuery {
    pub resource: &'static Resource,
    /// Columns in output order.
    pub columns: Vec<&'static Column>,
    /// `fields` was given (JSON Lines then nests no line items).
    pub fields_given: bool,
    /// Enum filters: the column and the values kept (`status=open,2`); `None` keeps rows with
    /// no value (a label such as "Unpaid" that Daftra documents for `null`).
    pub enums: Vec<(&'static Column, Vec<Option<i64>>)>,
    /// Exact matches on integer columns (`client_id`, `staff_id`).
    pub equals: Vec<(&'static str, i64)>,
    pub dates: Vec<DateRange>,
    /// Sort column and descending flag; `id` ascending by default.
    pub sort: (&'static str, bool),
    /// `sort` was given explicitly.
    pub sort_given: bool,
    pub bom: bool,
    pub source: Source,
    /// `source` was given explicitly: a `snapshot` asked for is never served live instead.
    pub source_given: bool,
}

fn parse_day(field: &str, v: &str) -> Result<String, QueryError> {
    chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| bad(field, format!("expected a date as YYYY-MM-DD, got {v:?}")))
}

/// Every query parameter an export of `resource` accepts besides `token`, in the order a form
/// shows them: `fields`, each enum column, each `*_id` column, `{column}_from` and
/// `{column}_to` for each date or timestamp column, `sort`, `source`, `bom`.
/// [`ExportQuery::parse`] rejects any other name, so this list cannot drift from the parser;
/// `GET /` builds its forms from it.
pub fn parameters(resource: &Resource) -> Vec<String> {
    let mut out = vec!["fields".to_string()];
    let dates = resource
        .columns
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Date | ColumnKind::Timestamp))
        .flat_map(|c| [format!("{}_from", c.name), format!("{}_to", c.name)]);
    let names = resource
        .enum_columns()
        .map(|c| c.name.clone())
        .chain(resource.id_filters().map(|c| c.name.clone()))
        .chain(dates)
        .chain(["sort", "source", "bom"].map(String::from));
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// `fields=a,b`: declared columns, each once, at least one.
fn parse_fields(
    resource: &'static Resource,
    key: &str,
    v: &str,
) -> Result<Vec<&'static Column>, QueryError> {
    let mut cols: Vec<&'static Column> = Vec::new();
    for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let c = resource
            .column(name)
            .ok_or_else(|| bad(key, format!("unknown column {name:?}")))?;
        if cols.iter().any(|x| x.name == name) {
            return Err(bad(key, format!("column {name:?} listed twice")));
        }
        cols.push(c);
    }
    if cols.is_empty() {
        return Err(bad(key, "list at least one column"));
    }
    Ok(cols)
}

/// `status=open,2`: values or labels of an enum column; an unknown one lists the choices.
fn parse_enum(column: &Column, key: &str, v: &str) -> Result<Vec<Option<i64>>, QueryError> {
    let choices = || {
        column
            .labels
            .iter()
            .map(|(v, l)| match v {
                Some(v) => format!("{v} ({l})"),
                None => format!("{l:?} (no value)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut codes = Vec::new();
    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let values = column.enum_values(s);
        if values.is_empty() {
            return Err(bad(
                key,
                format!(
                    "unknown value {s:?}; use a number or a label of: {}",
                    choices()
                ),
            ));
        }
        codes.extend(values);
    }
    if codes.is_empty() {
        return Err(bad(key, "list at least one value"));
    }
    Ok(codes)
}

/// `sort=name` or `sort=-name`: one declared column, and whether descending.
fn parse_sort(
    resource: &'static Resource,
    key: &str,
    v: &str,
) -> Result<(&'static str, bool), QueryError> {
    if v.contains(',') {
        return Err(bad(
            key,
            "sort by one column (name, or -name for descending)",
        ));
    }
    let (desc, name) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let c = resource
        .column(name)
        .ok_or_else(|| bad(key, format!("unknown column {name:?}")))?;
    Ok((c.name.as_str(), desc))
}

impl ExportQuery {
    /// Every row, every column, default order.
    pub fn all(resource: &'static Resource) -> Self {
        ExportQuery {
            resource,
            columns: resource.columns.iter().collect(),
            fields_given: false,
            enums: Vec::new(),
            equals: Vec::new(),
            dates: Vec::new(),
            sort: (resource.key.as_str(), false),
            sort_given: false,
            bom: false,
            source: Source::Snapshot,
            source_given: false,
        }
    }

    /// Validates query pairs. `token` is ignored (access control reads it); anything else
    /// unknown is an error, so a typo never silently returns everything.
    pub fn parse(
        resource: &'static Resource,
        pairs: &[(String, String)],
    ) -> Result<Self, QueryError> {
        let mut q = Self::all(resource);
        let known = parameters(resource);
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.as_str()) {
                return Err(bad(key, "given more than once"));
            }
            // An empty value counts as not given: browsers send every field of a form.
            if key == "token" || value.trim().is_empty() {
                continue;
            }
            if !known.contains(key) {
                return Err(bad(key, "unknown parameter"));
            }
            q.take(key, value.trim())?;
        }
        Ok(q)
    }

    /// Applies one known parameter `key` with its non-empty value `v`.
    fn take(&mut self, key: &str, v: &str) -> Result<(), QueryError> {
        let resource = self.resource;
        match key {
            "fields" => {
                self.columns = parse_fields(resource, key, v)?;
                self.fields_given = true;
            }
            k if resource.enum_columns().any(|c| c.name == k) => {
                let column = resource.column(k).expect("declared enum column");
                self.enums.push((column, parse_enum(column, key, v)?));
            }
            "sort" => {
                self.sort = parse_sort(resource, key, v)?;
                self.sort_given = true;
            }
            "bom" => self.bom = parse_bool(v).ok_or_else(|| bad(key, "expected true or false"))?,
            "source" => {
                self.source_given = true;
                self.source = match v {
                    "snapshot" => Source::Snapshot,
                    "live" => Source::Live,
                    _ => return Err(bad(key, "expected snapshot or live")),
                }
            }
            k if resource.id_filters().any(|c| c.name == k) => {
                let n = crate::record::ascii_digits(v)
                    .parse::<i64>()
                    .map_err(|_| bad(key, format!("expected a whole number, got {v:?}")))?;
                let name = resource.column(k).expect("declared filter").name.as_str();
                self.equals.push((name, n));
            }
            k => self.take_date_bound(k, v)?,
        }
        Ok(())
    }

    /// Applies `{column}_from` or `{column}_to` of a date or timestamp column.
    fn take_date_bound(&mut self, key: &str, v: &str) -> Result<(), QueryError> {
        let range = key
            .strip_suffix("_from")
            .map(|c| (c, true))
            .or_else(|| key.strip_suffix("_to").map(|c| (c, false)));
        let column = range
            .and_then(|(c, _)| self.resource.column(c))
            .filter(|c| matches!(c.kind, ColumnKind::Date | ColumnKind::Timestamp));
        let (Some(column), Some((_, is_from))) = (column, range) else {
            return Err(bad(key, "unknown parameter"));
        };
        let day = parse_day(key, v)?;
        let idx = match self.dates.iter().position(|d| d.column == column.name) {
            Some(i) => i,
            None => {
                self.dates.push(DateRange {
                    column: column.name.as_str(),
                    from: None,
                    to: None,
                });
                self.dates.len() - 1
            }
        };
        let r = &mut self.dates[idx];
        if is_from {
            r.from = Some(day)
        } else {
            r.to = Some(day)
        }
        match (&r.from, &r.to) {
            (Some(f), Some(t)) if f > t => Err(bad(
                key,
                format!("{}_from is after {}_to", column.name, column.name),
            )),
            _ => Ok(()),
        }
    }

    /// The order rows are read in: the record key unless another column was asked for.
    pub fn order(&self) -> crate::store::RowOrder<'static> {
        let (column, descending) = self.sort;
        let by = (column != self.resource.key).then_some(column);
        crate::store::RowOrder {
            column: by,
            decimal: by
                .and_then(|c| self.resource.column(c))
                .is_some_and(|c| c.kind == ColumnKind::Decimal),
            descending,
        }
    }

    /// `true` when `row` passes every filter.
    pub fn matches(&self, row: &dyn Row) -> bool {
        let int = |name: &str| match self.resource.column(name).map(|c| row.cell(c)) {
            Some(Cell::Int(n)) => Some(n),
            _ => None,
        };
        for (column, codes) in &self.enums {
            let value = match row.cell(column) {
                Cell::Int(n) => Some(n),
                Cell::Empty => None,
                // A value kept as text matches no documented value.
                _ => return false,
            };
            if !codes.contains(&value) {
                return false;
            }
        }
        if !self.equals.iter().all(|(f, n)| int(f) == Some(*n)) {
            return false;
        }
        self.dates.iter().all(|r| {
            let day = match self.resource.column(r.column).map(|c| row.cell(c)) {
                Some(Cell::Date(d) | Cell::Timestamp(d)) => &d[..d.len().min(10)],
                _ => return false,
            };
            r.from.as_deref().is_none_or(|f| day >= f) && r.to.as_deref().is_none_or(|t| day <= t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::default_resource;

    fn p(pairs: &[(&str, &str)]) -> Result<ExportQuery, QueryError> {
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportQuery::parse(default_resource(), &pairs)
    }

    #[test]
    fn every_bad_value_names_its_parameter() {
        for (k, v) in [
            ("stauts", "1"),
            ("status", "9"),
            ("status", "opened"),
            ("fields", "id,nope"),
            ("fields", ",,"),
            ("client_id", "x"),
            ("created_from", "2026-13-01"),
            ("title_from", "2026-01-01"),
            ("sort", "-nope"),
            ("bom", "perhaps"),
            ("source", "cache"),
        ] {
            let e = p(&[(k, v)]).unwrap_err();
            assert_eq!(e.field, k, "{k}={v}");
        }
        assert_eq!(
            p(&[("created_from", "2026-02-01"), ("created_to", "2026-01-01")])
                .unwrap_err()
                .field,
            "created_to"
        );
    }

    #[test]
    fn every_listed_parameter_is_accepted() {
        let exports = crate::catalogue::all()
            .iter()
            .flat_map(|r| std::iter::once(r).chain(crate::catalogue::line_item_exports(r)));
        for r in exports {
            for name in parameters(r) {
                let value = match r.column(&name) {
                    _ if name == "fields" || name == "sort" => r.key.clone(),
                    Some(c) if !c.labels.is_empty() => c.distinct_labels()[0].to_string(),
                    Some(_) => "1".into(),
                    None if name == "source" => "live".into(),
                    None if name == "bom" => "true".into(),
                    None => "2026-01-01".into(),
                };
                let pairs = [(name.clone(), value)];
                assert!(ExportQuery::parse(r, &pairs).is_ok(), "{} {name}", r.name);
            }
        }
    }

    #[test]
    fn good_values_parse() {
        let q = p(&[
            ("fields", "title,id"),
            ("status", "open,2"),
            ("sort", "-budget"),
            ("token", "t"),
            ("bom", "1"),
        ])
        .unwrap();
        assert_eq!(
            q.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["title", "id"]
        );
        assert_eq!(q.enums[0].0.name, "status");
        assert_eq!(q.enums[0].1, vec![Some(1), Some(2)]);
        assert_eq!(q.sort, ("budget", true));
        assert!(q.bom);
    }
}
