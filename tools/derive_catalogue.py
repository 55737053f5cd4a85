#!/usr/bin/env python3
"""Derives src/catalogue/data.json from Daftra's documented catalogue (daftra-resources.json).

    python3 tools/derive_catalogue.py ../shared/daftra-resources.json > src/catalogue/data.json

Every declaration the bridge compiles in comes from here; where the docs are silent or wrong the
safe reading is taken and written into the entry's `notes`, so a reader of data.json sees why.
"""
import json
import re
import sys

KINDS = {
    "integer": "int",
    "number": "decimal",
    "boolean": "int",  # Daftra sends 0/1 or "0"/"1"; the docs' own example is "0"
    "string": "text",
    "date": "date",
    "date-time": "timestamp",
}

# Safe readings where the documentation contradicts itself (daftra-resources.md, "Types and enums").
FIELD_OVERRIDES = {
    ("InvoiceItem", "quantity"): ("decimal", "typed integer, but the create body says decimal values are allowed"),
    ("PurchaseOrderItem", "quantity"): ("decimal", "typed integer like InvoiceItem.quantity; decimals read safely"),
    ("journals", "date"): ("timestamp", "typed date, but the documented example is a date-time"),
    ("*", "staff_id@appointments"): ("text", "documented as integer||array: kept as text"),
}

# The bridge's published column order for work orders (CONTRACT section 5) predates the catalogue.
COLUMN_ORDER = {
    "work_orders": ["id", "number", "title", "client_id", "staff_id", "status", "start_date",
                    "delivery_date", "budget", "budget_currency", "follow_up_status_id",
                    "delivery_appointment_id", "description", "created", "modified"],
}

# Where the list path itself needs a value the docs do not give.
PATH_DEFAULTS = {
    "follow_up_actions": ({"type": "client"},
                          "the list path takes a {type} whose values the docs do not name; "
                          "'client' is assumed, and a 404 marks the resource unavailable"),
}

# Create requirements where the body schema and the prose disagree (prose wins: it is narrower).
CREATE_REQUIRED = {
    "invoices": ["client_id"],
}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def enum_labels(field):
    out = []
    for e in field.get("enum") or []:
        v = e.get("value")
        if v is None or v == "":
            key = None
        elif isinstance(v, bool):
            key = int(v)
        elif isinstance(v, int):
            key = v
        elif isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            key = int(v)
        else:
            return []  # prose, not values
        label = (e.get("label") or "").strip()
        if not label:
            continue
        if any(k == key for k, _ in out):
            continue
        out.append([key, label])
    return out


def column(owner, field, notes, resource_name):
    name = field["name"]
    ftype = field.get("type")
    kind = KINDS.get(ftype)
    note = None
    if ftype is None:
        kind, note = "text", "the docs give no type: kept as text"
    if kind is None:
        return None  # arrays and objects stay in the record as extra fields
    for key in [(owner, name), (resource_name, name)]:
        if key in FIELD_OVERRIDES:
            kind, note = FIELD_OVERRIDES[key]
    if name == "staff_id" and "integer||array" in (field.get("note") or ""):
        kind, note = FIELD_OVERRIDES[("*", "staff_id@appointments")]
    if note:
        notes.append(f"{owner}.{name}: {note}")
    col = {"name": name, "kind": kind}
    labels = enum_labels(field) if kind == "int" else []
    if labels:
        col["labels"] = labels
    return col


# Fields Daftra documents that are credentials: never kept, exported or announced.
WITHHELD = {"password"}


def columns_of(owner, fields, notes, resource_name):
    cols = [c for c in (column(owner, f, notes, resource_name) for f in fields) if c]
    return cols


def main(path):
    src = json.load(open(path))
    out = []
    for r in src["resources"]:
        notes = []
        name = r["name"]
        base = "v2/api/entity" if r["base_url"].endswith("/v2/api/entity") else "api2"
        list_path = base + r["path"].replace("{format}", "")
        item_path = base + r["item_path"].replace("{format}", "")
        if base != "api2":
            notes.append("filed under the docs' v2 endpoints: paths are on /v2/api/entity")
        path_defaults, note = PATH_DEFAULTS.get(name, ({}, None))
        for k, v in path_defaults.items():
            list_path = list_path.replace("{" + k + "}", v)
        if note:
            notes.append(note)
        cols = columns_of(r["model_key"], r["fields"], notes, name)
        withheld = [c["name"] for c in cols if c["name"].lower() in WITHHELD]
        if withheld:
            cols = [c for c in cols if c["name"] not in withheld]
            notes.append(f"{', '.join(withheld)}: a credential; dropped from every record as it "
                         "is read, so it is never stored, exported or announced")
        if not any(c["name"] == "id" for c in cols):
            cols.insert(0, {"name": "id", "kind": "int"})
            notes.append("no fields documented: only the key is a column; every field Daftra "
                         "sends is kept in the record and its events")
        if name in COLUMN_ORDER:
            order = [n for n in COLUMN_ORDER[name] if n not in withheld]
            by = {c["name"]: c for c in cols}
            assert set(order) == set(by), (name, set(order) ^ set(by))
            cols = [by[n] for n in order]
        list_params = []
        if "recursive=1" in (r.get("line_items_in_list") or ""):
            list_params.append(["recursive", "1"])
        response_groups = [g for g in r["line_items"]
                           if {"list_item", "single_item"} & set(g["found_in"])]
        groups = response_groups or r["line_items"]
        if groups and not response_groups:
            notes.append("line items documented only in request bodies: read from responses "
                         "when Daftra sends them")
        if groups and not list_params and r.get("line_items_in_list", "").startswith("not documented"):
            notes.append("the docs do not say whether list items carry line items; "
                         "a list without them reads as no line items")
        line_items = []
        for g in groups:
            gcols = columns_of(g["key"], g["fields"], notes, name)
            line_items.append({
                "key": g["key"],
                "export": f"{name}_{snake(g['key'])}",
                "item_key": "id" if any(c["name"] == "id" for c in gcols) else None,
                "columns": gcols,
            })
        ops = set(r["operations"])
        required = CREATE_REQUIRED.get(name, (r.get("create_body") or {}).get("required") or [])
        out.append({
            "name": name,
            "title": r["title"],
            "area": r["area"],
            "model_key": r["model_key"],
            "singular": r["singular"],
            "key": "id",
            "list_path": list_path,
            "item_path": item_path,
            "list_params": list_params,
            "writable": {"create", "update", "delete"} <= ops,
            "deletable": "delete" in ops,
            "create_required": sorted(required),
            "doc_url": r["doc_url"],
            "columns": cols,
            "line_items": line_items,
            "changed_at": next((c["name"] for c in cols
                                if c["name"] == "modified" and c["kind"] == "timestamp"), None),
            "v2_entity": r.get("v2_entity") if base == "api2" else None,
            "withheld": withheld,
            "notes": notes,
        })
    print(json.dumps({
        "source": "derived by tools/derive_catalogue.py from daftra-resources.json "
                  f"(Daftra's API documentation, export of {src['export_latest_update']})",
        "resources": out,
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/daftra-resources.json")
