//! Canonical values: whole numbers, exact decimals, text and the canonical form of the fields no
//! column declares. Every representation Daftra uses for one value gives one canonical value, so
//! the diff never sees a change of representation alone.

use serde_json::{Number, Value};

use super::{bad, RecordError};

/// Replaces Arabic-Indic (U+0660..) and Extended Arabic-Indic (U+06F0..) digits by ASCII digits,
/// the Arabic decimal separator (U+066B) by `.` and drops the Arabic thousands separator
/// (U+066C); Daftra tenants were seen sending `٣٠٠` (daftra-api.md).
pub fn ascii_digits(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars()
        .filter(|c| *c != '\u{066C}')
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            '\u{066B}' => '.',
            _ => c,
        })
        .collect::<String>()
        .into()
}

/// `true` for the values Daftra uses to say "nothing": `null`, `""`, `[]`, `{}`.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The canonical text of a decimal number: no sign on zero, no leading zeros, no trailing
/// fraction zeros, no exponent (`"1500.500"`, `1500.5` and `"1.5005e3"` all give `1500.5`;
/// `"0.00"` gives `0`). Any number of digits is kept. `None` when `s` is not a decimal number.
pub fn canonical_decimal(s: &str) -> Option<String> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || exponent.abs() > 1000
    {
        return None;
    }
    // All digits, and where the decimal point falls among them.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let point = int.len() as i64 + exponent;
    let at = |i: i64| -> u8 {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            b'0'
        }
    };
    let first = digits.iter().position(|d| *d != b'0');
    let Some(first) = first else {
        return Some("0".into());
    };
    let last = digits.iter().rposition(|d| *d != b'0').unwrap_or(first) as i64;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let int_from = (first as i64).min(point);
    if point <= 0 || int_from >= point {
        out.push('0');
    } else {
        for i in int_from..point {
            out.push(at(i) as char);
        }
    }
    if last >= point {
        out.push('.');
        for i in point..=last {
            out.push(at(i) as char);
        }
    }
    Some(out)
}

/// The value of a canonical decimal: a JSON integer when it is whole and fits 64 bits, else its
/// canonical text, which keeps every digit (an `f64` would not). Events write that text back
/// as a JSON number ([`crate::events`]); exports write its digits.
fn decimal_value(canonical: String) -> Value {
    match canonical.parse::<i64>() {
        Ok(i) if !canonical.contains('.') => Value::from(i),
        _ => Value::String(canonical),
    }
}

/// A JSON number for a canonical decimal of an undeclared field: an integer, or a double when
/// the double prints back as the same digits (PHP writes its floats so); else the text.
fn extra_number(canonical: String) -> Value {
    if let Ok(i) = canonical.parse::<i64>() {
        return Value::from(i);
    }
    match canonical.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) if canonical_decimal(&n.to_string()).as_deref() == Some(&canonical) => {
            Value::Number(n)
        }
        _ => Value::String(canonical),
    }
}

/// A whole number (`"42"`, `42`, `"٤٢"`, `42.0`); `""`/`null` mean no value.
pub fn int(field: &str, v: &Value) -> Result<Value, RecordError> {
    if is_empty(v) {
        return Ok(Value::Null);
    }
    // Fast paths: most whole numbers arrive as JSON integers or plain digit strings.
    if let Some(i) = v.as_i64() {
        return Ok(i.into());
    }
    if let Some(i) = v.as_str().and_then(|s| s.parse::<i64>().ok()) {
        return Ok(i.into());
    }
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => ascii_digits(s.trim()).into_owned(),
        Value::Bool(b) => return Ok(i64::from(*b).into()),
        other => return Err(bad(field, format!("expected a whole number, got {other}"))),
    };
    canonical_decimal(&text)
        .filter(|c| !c.contains('.'))
        .and_then(|c| c.parse::<i64>().ok())
        .map(Value::from)
        .ok_or_else(|| bad(field, format!("expected a whole number, got {v}")))
}

/// An exact decimal amount with every digit it was given (`"1500.50"`, `1500.5` and
/// `"1500.500"` are one value, `"1500.5"`); whole amounts are integers; thousands separators are
/// dropped; `""`/`null` mean no value. Daftra's JSON numbers are PHP doubles, which an `f64`
/// reads without loss; amounts with more digits arrive as strings and stay exact.
pub fn decimal(field: &str, v: &Value) -> Result<Value, RecordError> {
    if is_empty(v) {
        return Ok(Value::Null);
    }
    if let Some(i) = v.as_i64() {
        return Ok(i.into());
    }
    match v {
        Value::String(s) => decimal_str(field, s),
        Value::Number(n) => canonical_decimal(&n.to_string())
            .map(decimal_value)
            .ok_or_else(|| bad(field, format!("expected a number, got {v}"))),
        _ => Err(bad(field, format!("expected a number, got {v}"))),
    }
}

/// As [`decimal`], for a value sent as a string.
pub fn decimal_str(field: &str, s: &str) -> Result<Value, RecordError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    let digits = ascii_digits(trimmed);
    let text = if digits.contains(',') {
        std::borrow::Cow::Owned(digits.replace(',', ""))
    } else {
        digits
    };
    canonical_decimal(&text).map(decimal_value).ok_or_else(|| {
        let given = Value::String(s.to_string());
        bad(field, format!("expected a number, got {given}"))
    })
}

/// Text as given; numbers and booleans become their text; `""`/`null`/`[]`/`{}` mean no value.
pub fn text(v: Value) -> Value {
    match v {
        _ if is_empty(&v) => Value::Null,
        Value::String(s) => Value::String(s),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => Value::String(other.to_string()),
    }
}

/// `true` when `s` spells a number the way a number is written, without leading zeros (`"3"`,
/// `"-3"`, `"0.5"`, `"12.50"`), so it means that number; `"007"`, `"+3"`, `"1e3"` and `".5"`
/// stay text.
fn spells_a_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The canonical form of a field no column declares, applied all the way down: `[]`, `{}`,
/// `""` and `null` are one empty value (`null`); a string that spells a number is that number,
/// and numbers are canonical decimals; objects compare by content (their keys are sorted).
pub fn canonical_extra(v: Value) -> Value {
    match v {
        _ if is_empty(&v) => Value::Null,
        Value::String(s) if spells_a_number(&s) => match canonical_decimal(&s) {
            Some(c) => extra_number(c),
            None => Value::String(s),
        },
        Value::Number(n) if n.is_f64() => match canonical_decimal(&n.to_string()) {
            Some(c) => extra_number(c),
            None => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(canonical_extra).collect()),
        Value::Object(o) => {
            // An empty member is the same as a missing one.
            let o: serde_json::Map<String, Value> = o
                .into_iter()
                .map(|(k, v)| (k, canonical_extra(v)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            if o.is_empty() {
                Value::Null
            } else {
                Value::Object(o)
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn decimals_keep_every_digit() {
        for (given, canonical) in [
            ("12345678901234567.89", "12345678901234567.89"),
            ("1500.500", "1500.5"),
            ("-0.00", "0"),
            ("007.50", "7.5"),
            ("1.5005e3", "1500.5"),
            ("15E-3", "0.015"),
            ("+42", "42"),
            (".5", "0.5"),
        ] {
            assert_eq!(
                canonical_decimal(given).as_deref(),
                Some(canonical),
                "{given}"
            );
        }
        for bad in ["", "-", "1.2.3", "12a", "e5", "1,5"] {
            assert_eq!(canonical_decimal(bad), None, "{bad}");
        }
        let v = decimal("x", &json!("12345678901234567.89")).unwrap();
        assert_eq!(v, json!("12345678901234567.89"), "every digit kept");
        assert_eq!(
            decimal("x", &json!("1,500.50")).unwrap(),
            decimal("x", &json!(1500.5)).unwrap()
        );
        assert_eq!(decimal("x", &json!("١٥٠٠٫٥")).unwrap(), json!("1500.5"));
        assert_eq!(decimal("x", &json!("1500.00")).unwrap(), json!(1500));
    }

    #[test]
    fn extras_compare_after_the_canonical_form() {
        assert_eq!(canonical_extra(json!([])), canonical_extra(json!({})));
        assert_eq!(canonical_extra(json!(null)), canonical_extra(json!([])));
        assert_eq!(canonical_extra(json!("3")), canonical_extra(json!(3)));
        assert_eq!(canonical_extra(json!("3.50")), canonical_extra(json!(3.5)));
        assert_eq!(canonical_extra(json!("007")), json!("007"));
        assert_eq!(
            canonical_extra(json!({"b": "1", "a": {"c": []}, "d": 2})),
            canonical_extra(json!({"a": {"c": {}}, "b": 1, "d": 2}))
        );
        assert_eq!(
            canonical_extra(json!({"b": 1, "e": null})),
            canonical_extra(json!({"b": 1})),
            "an empty member is a missing one"
        );
    }

    /// One amount written in the ways Daftra and PHP write it.
    fn forms(int: u64, frac: u32, zeros: usize) -> Vec<Value> {
        let f = format!("{frac:04}");
        let plain = format!("{int}.{f}{}", "0".repeat(zeros));
        let mut out = vec![json!(plain.clone()), json!(format!("0{plain}"))];
        // As a JSON number only where a double (PHP's float) holds it: 15 significant digits.
        if int < 100_000_000_000 {
            out.push(serde_json::from_str::<Value>(&plain).unwrap());
        }
        if frac == 0 {
            out.push(json!(int));
            out.push(json!(int.to_string()));
        }
        out
    }

    proptest! {
        #[test]
        fn any_two_forms_of_an_amount_are_one_value(int in 0u64..10_000_000_000_000_000, frac in 0u32..10_000, zeros in 0usize..4) {
            let values: Vec<_> = forms(int, frac, zeros).iter().map(|v| decimal("x", v).unwrap().to_string()).collect();
            prop_assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
        }

        #[test]
        fn distinct_amounts_never_collide(a in 0u64..10_000_000_000_000_000, b in 0u64..10_000_000_000_000_000, fa in 0u32..100, fb in 0u32..100) {
            let x = decimal("x", &json!(format!("{a}.{fa:02}"))).unwrap();
            let y = decimal("x", &json!(format!("{b}.{fb:02}"))).unwrap();
            prop_assert_eq!((a, fa) == (b, fb), x == y);
        }

        #[test]
        fn whole_numbers_read_alike(n in -1_000_000_000i64..1_000_000_000) {
            let a = int("x", &json!(n)).unwrap();
            prop_assert_eq!(&a, &int("x", &json!(n.to_string())).unwrap());
            prop_assert_eq!(&a, &int("x", &json!(format!("{n}.0"))).unwrap());
            prop_assert_eq!(&a, &canonical_extra(json!(n.to_string())));
        }
    }
}
