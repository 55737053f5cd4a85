"""Reads a JSON Lines and a Parquet export with pandas, pyarrow and DuckDB, as a data team would,
and prints one JSON object of what each saw for the record `ID` (run by tests/api/files.rs):
python3 read_exports.py FILE.jsonl FILE.parquet ID"""
import json
import sys

import duckdb
import pandas as pd
import pyarrow.parquet as pq

jsonl, parquet, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])


def utc(value):
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S")


seen = {}

frame = pd.read_json(jsonl, lines=True, dtype=False, convert_dates=False)
row = frame[frame["id"] == wanted].iloc[0]
seen["pandas_jsonl"] = {
    "rows": len(frame), "name": row["client_business_name"], "total": row["summary_total"],
    "created": utc(row["created"]), "date": row["date"], "items": len(row["InvoiceItem"]),
}

frame = pd.read_parquet(parquet, engine="pyarrow")
row = frame[frame["id"] == wanted].iloc[0]
seen["pandas_parquet"] = {
    "rows": len(frame), "name": row["client_business_name"], "total": row["summary_total"],
    "created": utc(row["created"]), "date": str(row["date"]),
}

table = pq.read_table(parquet)
seen["pyarrow_types"] = {f.name: str(f.type) for f in table.schema}

con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
name, total, created, date, n = con.execute(
    f"SELECT client_business_name, summary_total, strftime(created, '%Y-%m-%dT%H:%M:%S'), "
    f"CAST(date AS VARCHAR), (SELECT count(*) FROM read_parquet('{parquet}')) "
    f"FROM read_parquet('{parquet}') WHERE id = {wanted}").fetchone()
seen["duckdb_parquet"] = {"rows": n, "name": name, "total": total, "created": created, "date": date}
name, total, items, n = con.execute(
    f"SELECT client_business_name, CAST(summary_total AS VARCHAR), len(InvoiceItem), "
    f"(SELECT count(*) FROM read_json_auto('{jsonl}')) "
    f"FROM read_json_auto('{jsonl}') WHERE id = {wanted}").fetchone()
seen["duckdb_jsonl"] = {"rows": n, "name": name, "total": total, "items": items}
print(json.dumps(seen, ensure_ascii=False, default=str))
