#!/usr/bin/env python3
"""Baseline for the e2e benchmark: what a plain script would do to export Daftra work orders.

Reads every page of GET /api2/work_orders (apikey header, limit=1000) with requests, builds a
pandas DataFrame of the WorkOrder objects and writes it as CSV and as XLSX (openpyxl). Prints
one JSON line with the row count and the seconds of each phase.

    pip install pandas requests openpyxl
    python3 bench/baseline.py --base-url http://127.0.0.1:8089 --api-key sim-api-key --out-dir /tmp
"""

import argparse
import json
import os
import platform
import sys
import time

try:
    import pandas as pd
    import requests
except ImportError as e:  # reported in the benchmark table instead of failing the run
    print(f"baseline needs pandas, requests and openpyxl: {e}", file=sys.stderr)
    sys.exit(3)


def fetch_all(base_url, api_key, limit=1000):
    """Every WorkOrder object, page after page."""
    session = requests.Session()
    session.headers.update({"apikey": api_key, "Accept": "application/json"})
    rows, page = [], 1
    while True:
        r = session.get(f"{base_url}/api2/work_orders", params={"page": page, "limit": limit}, timeout=60)
        r.raise_for_status()
        body = r.json()
        rows.extend(item["WorkOrder"] for item in body["data"])
        pagination = body["pagination"]
        if not body["data"] or pagination.get("next") is None or page >= int(pagination["page_count"]):
            return rows
        page += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", default="sim-api-key")
    p.add_argument("--out-dir", default=".")
    args = p.parse_args()

    t0 = time.perf_counter()
    rows = fetch_all(args.base_url, args.api_key)
    t1 = time.perf_counter()
    df = pd.DataFrame(rows)
    t2 = time.perf_counter()
    df.to_csv(os.path.join(args.out_dir, "work_orders.csv"), index=False)
    t3 = time.perf_counter()
    df.to_excel(os.path.join(args.out_dir, "work_orders.xlsx"), index=False, engine="openpyxl")
    t4 = time.perf_counter()

    print(json.dumps({
        "rows": len(df),
        "fetch_s": t1 - t0,
        "dataframe_s": t2 - t1,
        "csv_s": t3 - t2,
        "xlsx_s": t4 - t3,
        "python": platform.python_version(),
        "pandas": pd.__version__,
    }))


if __name__ == "__main__":
    main()
