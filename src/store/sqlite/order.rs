//! `ORDER BY` of a [`RowOrder`] over a table with an `id` and a canonical JSON `record`: the one
//! place that says how exports order rows, for the snapshot file and for a [`super::Spool`].

use crate::store::RowOrder;

/// The `ORDER BY` clause (without the keywords) of `order`.
pub(super) fn order_by(order: RowOrder<'_>) -> String {
    let dir = if order.descending { "DESC" } else { "ASC" };
    let Some(column) = order.column else {
        return format!("id {dir}");
    };
    // The column name is a declared column of the catalogue, never text from a request.
    let value = format!("json_extract(record, '$.{column}')");
    let by = if order.decimal {
        // Doubles order amounts up to ~15 digits; among amounts a double cannot tell apart
        // (same magnitude, so same integer digits), canonical text orders positives and,
        // reversed, negatives.
        let back = if order.descending { "ASC" } else { "DESC" };
        let real = format!("CAST({value} AS REAL)");
        format!(
            "{real} {dir}, CASE WHEN {real} >= 0 THEN {value} END {dir}, \
             CASE WHEN {real} < 0 THEN {value} END {back}"
        )
    } else {
        format!("{value} {dir}")
    };
    format!("{by}, id {dir}")
}

/// Runs `sql` (one text column, the canonical JSON) with `params` and hands each row to `each`
/// in place from SQLite's buffer, until it returns `false`.
pub(super) fn stream(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    each: &mut dyn FnMut(&str) -> bool,
) -> Result<(), crate::store::StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(params)?;
    while let Some(row) = rows.next()? {
        let text = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        if !each(text) {
            break;
        }
    }
    Ok(())
}
