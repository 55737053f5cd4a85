//! Seeded, realistic work orders for the simulator: Arabic and English text, all four statuses,
//! several currencies, numbers sometimes sent as numeric strings, empty/null/zero dates.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

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

/// The raw Daftra form of seeded work order `id`, deterministic for a given `seed`.
pub fn seeded_work_order(seed: u64, id: i64) -> Map<String, Value> {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let arabic = rng.gen_bool(0.5);
    let title = if arabic {
        format!(
            "{} - {}",
            TITLES_AR[rng.gen_range(0..TITLES_AR.len())],
            BRANCHES[rng.gen_range(0..BRANCHES.len())]
        )
    } else {
        format!("{} #{id}", TITLES_EN[rng.gen_range(0..TITLES_EN.len())])
    };
    let day = rng.gen_range(0..300);
    let start = date(day);
    let delivery: Value = match rng.gen_range(0..10) {
        0 => Value::Null,
        1 => json!(""),
        2 => json!("0000-00-00"),
        _ => json!(date(day + rng.gen_range(1..30))),
    };
    let budget_cents: i64 = rng.gen_range(0..5_000_000);
    let budget: Value = match rng.gen_range(0..4) {
        0 => json!(format!("{}.{:02}", budget_cents / 100, budget_cents % 100)),
        _ => json!(budget_cents as f64 / 100.0),
    };
    let status = rng.gen_range(1..=4);
    let created = format!(
        "{start} {:02}:{:02}:{:02}",
        rng.gen_range(7..18),
        rng.gen_range(0..60),
        rng.gen_range(0..60)
    );
    let follow_up: Value = match rng.gen_range(0..3) {
        0 => Value::Null,
        1 => json!(""),
        _ => {
            let n = rng.gen_range(1..8);
            maybe_string(&mut rng, n)
        }
    };
    let client_id = rng.gen_range(1..60);
    let staff_id = rng.gen_range(0..8);
    let appointment: Value = if rng.gen_bool(0.3) {
        json!(rng.gen_range(1..500))
    } else {
        Value::Null
    };
    let mut m = Map::new();
    m.insert("id".into(), maybe_string(&mut rng, id));
    m.insert("client_id".into(), maybe_string(&mut rng, client_id));
    m.insert("number".into(), json!(format!("{id:06}")));
    m.insert("title".into(), json!(title));
    m.insert("start_date".into(), json!(start));
    let description = DESCRIPTIONS[rng.gen_range(0..DESCRIPTIONS.len())];
    m.insert(
        "description".into(),
        if description.is_empty() && rng.gen_bool(0.5) {
            Value::Null
        } else {
            json!(description)
        },
    );
    m.insert("delivery_date".into(), delivery);
    m.insert("delivery_appointment_id".into(), appointment);
    m.insert("follow_up_status_id".into(), follow_up);
    m.insert("budget".into(), budget);
    m.insert(
        "budget_currency".into(),
        json!(CURRENCIES[rng.gen_range(0..CURRENCIES.len())]),
    );
    m.insert("status".into(), maybe_string(&mut rng, status));
    m.insert("created".into(), json!(created.clone()));
    m.insert("modified".into(), json!(created));
    m.insert("staff_id".into(), maybe_string(&mut rng, staff_id));
    m
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
