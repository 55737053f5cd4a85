//! Seeded, realistic records of any declared resource for the simulator: Arabic and English text,
//! every enum value, several currencies, numbers sometimes sent as numeric strings, empty, null
//! and zero dates, and line items.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::catalogue::{Column, ColumnKind, Resource};

const TITLES_AR: &[&str] = &[
    "صيانة المضخة الرئيسية",
    "تركيب وحدة تكييف",
    "فحص لوحة الكهرباء",
    "إصلاح تسريب المياه",
    "توريد قطع غيار المولد",
    "معايرة أجهزة القياس",
];
const TITLES_EN: &[&str] = &[
    "Generator overhaul",
    "HVAC quarterly maintenance",
    "Forklift brake repair",
    "Network cabling, floor 3",
    "Boiler inspection",
    "Conveyor belt replacement",
];
const BRANCHES: &[&str] = &[
    "فرع القاهرة",
    "فرع الرياض",
    "Dubai branch",
    "فرع عمّان",
    "Jeddah site",
];
const DESCRIPTIONS: &[&str] = &[
    "تغيير الحشوات\r\nوفحص المحرك، ثم \"اختبار\" الضغط",
    "Replace filters, check refrigerant; report \"before/after\" readings",
    "الزيارة الأولى: معاينة الموقع\nالزيارة الثانية: التنفيذ",
    "",
];
const CURRENCIES: &[&str] = &["EGP", "SAR", "AED", "USD", "JOD", "KWD"];

/// Wraps a whole number as Daftra sometimes does: as a JSON number or as a numeric string.
fn maybe_string(rng: &mut StdRng, n: i64) -> Value {
    if rng.gen_bool(0.3) {
        Value::String(n.to_string())
    } else {
        Value::from(n)
    }
}

fn date(base_day: i64) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date")
        + chrono::Duration::days(base_day.rem_euclid(330));
    d.format("%Y-%m-%d").to_string()
}

/// An empty value as Daftra writes one: `null`, `""` or (for dates) `0000-00-00`.
fn empty(rng: &mut StdRng, kind: ColumnKind) -> Value {
    match (rng.gen_range(0..3), kind) {
        (0, _) => Value::Null,
        (2, ColumnKind::Date) => json!("0000-00-00"),
        (2, ColumnKind::Timestamp) => json!("0000-00-00 00:00:00"),
        _ => json!(""),
    }
}

fn text(rng: &mut StdRng, name: &str, id: i64) -> Value {
    if matches!(name, "number" | "no" | "code") {
        return json!(format!("{id:06}"));
    }
    if name.contains("email") {
        return json!(format!("user{id}@example.com"));
    }
    if name.contains("currency") {
        return json!(CURRENCIES[rng.gen_range(0..CURRENCIES.len())]);
    }
    if name.contains("description") || name.contains("notes") {
        return json!(DESCRIPTIONS[rng.gen_range(0..DESCRIPTIONS.len())]);
    }
    if rng.gen_bool(0.5) {
        json!(format!(
            "{} - {}",
            TITLES_AR[rng.gen_range(0..TITLES_AR.len())],
            BRANCHES[rng.gen_range(0..BRANCHES.len())]
        ))
    } else {
        json!(format!(
            "{} #{id}",
            TITLES_EN[rng.gen_range(0..TITLES_EN.len())]
        ))
    }
}

/// A value of `column` in one of the forms Daftra sends it.
fn value(rng: &mut StdRng, column: &Column, id: i64, day: i64, stamp: &str) -> Option<Value> {
    // Daftra fills keys, enums, record numbers and timestamps itself; anything else may be empty.
    let optional = column.name != "id"
        && column.labels.is_empty()
        && column.kind != ColumnKind::Timestamp
        && !matches!(
            column.name.as_str(),
            "title" | "start_date" | "number" | "no" | "code"
        );
    if optional && rng.gen_bool(0.08) && column.kind != ColumnKind::Derived {
        return Some(empty(rng, column.kind));
    }
    Some(match column.kind {
        ColumnKind::Derived => return None,
        ColumnKind::Int if column.name == "id" => maybe_string(rng, id),
        ColumnKind::Int if !column.labels.is_empty() => {
            let values: Vec<i64> = column.labels.iter().filter_map(|(v, _)| *v).collect();
            let n = values[rng.gen_range(0..values.len())];
            maybe_string(rng, n)
        }
        ColumnKind::Int => {
            let n = if column.name.ends_with("_id") {
                rng.gen_range(1..60)
            } else {
                rng.gen_range(0..8)
            };
            maybe_string(rng, n)
        }
        ColumnKind::Decimal => {
            let cents: i64 = rng.gen_range(0..5_000_000);
            if rng.gen_bool(0.25) {
                json!(format!("{}.{:02}", cents / 100, cents % 100))
            } else {
                json!(cents as f64 / 100.0)
            }
        }
        ColumnKind::Text => text(rng, &column.name, id),
        ColumnKind::Date => json!(date(day + rng.gen_range(0..30))),
        ColumnKind::Timestamp => json!(stamp),
    })
}

/// The raw Daftra form of seeded record `id` of `resource`, deterministic for a given `seed`:
/// every declared column in the forms Daftra sends (numbers as strings, empty and zero dates,
/// Arabic text), and 1 to 3 items in each line-item group, item `k` having id `id * 100 + k`.
pub fn seeded_record(resource: &Resource, seed: u64, id: i64) -> Map<String, Value> {
    let salt = resource
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut rng =
        StdRng::seed_from_u64(seed ^ salt ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let day = rng.gen_range(0..300);
    let stamp = format!(
        "{} {:02}:{:02}:{:02}",
        date(day),
        rng.gen_range(7..18),
        rng.gen_range(0..60),
        rng.gen_range(0..60)
    );
    let mut m = Map::new();
    for column in &resource.columns {
        if let Some(v) = value(&mut rng, column, id, day, &stamp) {
            m.insert(column.name.clone(), v);
        }
    }
    let parent_link = format!("{}_{}", resource.singular, resource.key);
    for group in &resource.line_items {
        let n = rng.gen_range(1..=3);
        let items: Vec<Value> = (0..n)
            .map(|k| {
                let item_id = id * 100 + k;
                let mut item = Map::new();
                for column in &group.columns {
                    if let Some(v) = value(&mut rng, column, item_id, day, &stamp) {
                        item.insert(column.name.clone(), v);
                    }
                }
                if item.contains_key(&parent_link) {
                    item.insert(parent_link.clone(), json!(id));
                }
                Value::Object(item)
            })
            .collect();
        m.insert(group.key.clone(), Value::Array(items));
    }
    m
}

/// The raw Daftra form of seeded work order `id` (the default resource).
pub fn seeded_work_order(seed: u64, id: i64) -> Map<String, Value> {
    seeded_record(crate::catalogue::default_resource(), seed, id)
}

/// Flips every whole number between its number and numeric-string form (fault injection).
pub fn flip_number_forms(record: &Map<String, Value>) -> Map<String, Value> {
    record
        .iter()
        .map(|(k, v)| {
            let flipped = match v {
                Value::Number(n) if n.is_i64() => Value::String(n.to_string()),
                Value::String(s) if k != "number" && !s.is_empty() && s.parse::<i64>().is_ok() => {
                    Value::from(s.parse::<i64>().unwrap_or_default())
                }
                other => other.clone(),
            };
            (k.clone(), flipped)
        })
        .collect()
}
