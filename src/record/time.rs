//! Dates and timestamps as the Daftra account means them: zone-less timestamps are wall-clock
//! times in the account's zone (`DAFTRA_TIMEZONE`), timestamps with `Z` or an offset are
//! converted to it, and slashed dates follow the account's date format (`DD/MM/YYYY` was seen on
//! estimates; daftra-api.md). The snapshot stores the account's wall clock
//! (`YYYY-MM-DD HH:MM:SS`); events carry RFC 3339 with the offset.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

use super::values::{ascii_digits, is_empty};
use super::{bad, RecordError};

/// Order of day, month and year in a date written with `/`, `.` or `-` and a four-digit year last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayOrder {
    /// `DD/MM/YYYY` (the default: the form seen on Daftra accounts).
    DayFirst,
    /// `MM/DD/YYYY`.
    MonthFirst,
}

impl DayOrder {
    /// Reads a `DAFTRA_DATE_FORMAT` value: `DD/MM/YYYY`, `MM/DD/YYYY` (any of `/ - .` as the
    /// separator, any case), or `YYYY-MM-DD` (which leaves slashed dates day-first).
    pub fn parse(format: &str) -> Option<DayOrder> {
        let f = format.trim().to_ascii_uppercase().replace(['-', '.'], "/");
        match f.as_str() {
            "DD/MM/YYYY" | "D/M/YYYY" | "YYYY/MM/DD" => Some(DayOrder::DayFirst),
            "MM/DD/YYYY" | "M/D/YYYY" => Some(DayOrder::MonthFirst),
            _ => None,
        }
    }
}

/// The account's time conventions: its IANA zone and how it writes slashed dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub zone: Tz,
    pub day_order: DayOrder,
}

impl Default for Clock {
    /// UTC, day-first.
    fn default() -> Self {
        Clock {
            zone: Tz::UTC,
            day_order: DayOrder::DayFirst,
        }
    }
}

fn is_zero_date(s: &str) -> bool {
    s.trim()
        .chars()
        .all(|c| matches!(c, '0' | '-' | ':' | ' ' | '/' | 'T' | '.'))
}

/// `true` when `s` is exactly `YYYY-MM-DD` (with ` HH:MM:SS` when `with_time`) and valid: the
/// canonical form, kept as it is. A byte check: it runs for every date of every record.
fn is_canonical(s: &str, with_time: bool) -> bool {
    let b = s.as_bytes();
    let len = if with_time { 19 } else { 10 };
    if b.len() != len {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!((num(0..4), num(5..7), num(8..10)),
            (Some(y), Some(m), Some(d)) if NaiveDate::from_ymd_opt(y as i32, m, d).is_some());
    if !with_time {
        return date_ok;
    }
    date_ok
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && matches!((num(11..13), num(14..16), num(17..19)),
            (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60)
}

impl Clock {
    fn date(&self, s: &str) -> Option<NaiveDate> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(d);
        }
        let parts: Vec<&str> = s.split(['/', '.', '-']).collect();
        let [a, b, y] = parts[..] else {
            return None;
        };
        if y.len() != 4 {
            return None;
        }
        let (d, m) = match self.day_order {
            DayOrder::DayFirst => (a, b),
            DayOrder::MonthFirst => (b, a),
        };
        NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    }

    /// The offset at the end of `time` (`Z`, `+02:00`, `+0200`, `+02`), and the time without it.
    fn split_offset(time: &str) -> Option<(&str, Option<FixedOffset>)> {
        if let Some(t) = time.strip_suffix(['Z', 'z']) {
            return Some((t, Some(FixedOffset::east_opt(0)?)));
        }
        let Some(at) = time.rfind(['+', '-']) else {
            return Some((time, None));
        };
        let (t, off) = time.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
        let (h, m) = match digits.len() {
            2 => (digits.parse::<i32>().ok()?, 0),
            4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
            _ => return None,
        };
        Some((t, Some(FixedOffset::east_opt(sign * (h * 3600 + m * 60))?)))
    }

    /// Reads a date or timestamp in any form Daftra sends: `YYYY-MM-DD`, `HH:MM`, `HH:MM:SS`,
    /// fractions, the `T` form, `Z` and offsets, slashed dates; returns the account's wall clock.
    fn instant(&self, s: &str) -> Option<NaiveDateTime> {
        let s = ascii_digits(s.trim());
        let (day, time) = match s.find([' ', 'T', 't']) {
            Some(i) => (&s[..i], s[i + 1..].trim()),
            None => (&s[..], ""),
        };
        let date = self.date(day)?;
        if time.is_empty() {
            return Some(date.and_time(NaiveTime::MIN));
        }
        let (clock, offset) = Self::split_offset(time)?;
        let t = ["%H:%M:%S%.f", "%H:%M"]
            .iter()
            .find_map(|f| NaiveTime::parse_from_str(clock.trim(), f).ok())?;
        let naive = date.and_time(t.with_nanosecond_zero());
        Some(match offset {
            None => naive,
            Some(off) => DateTime::<FixedOffset>::from_naive_utc_and_offset(naive - off, off)
                .with_timezone(&self.zone)
                .naive_local(),
        })
    }

    /// The canonical form of a date (`with_time` false: `YYYY-MM-DD`) or timestamp
    /// (`YYYY-MM-DD HH:MM:SS`, the account's wall clock). `Ok(None)` when `v` is already
    /// canonical (kept without a copy); empty, `null` and zero dates are `null`.
    pub fn normalise(
        &self,
        field: &str,
        v: &Value,
        with_time: bool,
    ) -> Result<Option<Value>, RecordError> {
        if is_empty(v) {
            return Ok(Some(Value::Null));
        }
        let Value::String(s) = v else {
            return Err(bad(field, format!("expected a date, got {v}")));
        };
        self.normalise_str(field, s, with_time)
    }

    /// As [`Clock::normalise`], for a value sent as a string.
    pub fn normalise_str(
        &self,
        field: &str,
        s: &str,
        with_time: bool,
    ) -> Result<Option<Value>, RecordError> {
        if is_canonical(s, with_time) {
            return Ok(None);
        }
        if s.trim().is_empty() || is_zero_date(s) {
            return Ok(Some(Value::Null));
        }
        let at = self.instant(s).ok_or_else(|| {
            bad(
                field,
                format!(
                    "expected a date{}, got {s:?}",
                    if with_time { " and time" } else { "" }
                ),
            )
        })?;
        let shown = if with_time {
            at.format("%Y-%m-%d %H:%M:%S")
        } else {
            at.format("%Y-%m-%d")
        };
        Ok(Some(Value::String(shown.to_string())))
    }

    /// RFC 3339 with the account's offset at that instant (`2024-03-05T14:21:35+02:00`) of a
    /// canonical wall-clock timestamp; `None` for anything else. A wall-clock time that occurs
    /// twice (the hour a clock goes back) takes the first; one that never occurs (the hour it
    /// goes forward) takes the offset in force before the change.
    pub fn rfc3339(&self, wall_clock: &str) -> Option<String> {
        let at = self.zoned(wall_clock)?;
        Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
    }

    /// Microseconds since the Unix epoch (UTC) of a canonical wall-clock timestamp, read as
    /// [`Clock::rfc3339`] reads it; `None` for anything else.
    pub fn utc_micros(&self, wall_clock: &str) -> Option<i64> {
        Some(self.zoned(wall_clock)?.timestamp_micros())
    }

    /// The instant of a canonical wall-clock timestamp in the account's zone.
    fn zoned(&self, wall_clock: &str) -> Option<DateTime<FixedOffset>> {
        let naive = NaiveDateTime::parse_from_str(wall_clock, "%Y-%m-%d %H:%M:%S").ok()?;
        let at = match self.zone.from_local_datetime(&naive).earliest() {
            Some(at) => at.fixed_offset(),
            None => {
                let before = self
                    .zone
                    .offset_from_utc_datetime(&(naive - chrono::Duration::hours(3)));
                DateTime::<FixedOffset>::from_naive_utc_and_offset(
                    naive - before.fix(),
                    before.fix(),
                )
            }
        };
        Some(at)
    }
}

trait NanosZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanosZero for NaiveTime {
    /// Daftra's timestamps are whole seconds; a fraction is dropped.
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cairo() -> Clock {
        Clock {
            zone: "Africa/Cairo".parse().unwrap(),
            day_order: DayOrder::DayFirst,
        }
    }

    fn ts(clock: &Clock, s: &str) -> Value {
        clock
            .normalise("t", &json!(s), true)
            .unwrap()
            .unwrap_or_else(|| json!(s))
    }

    #[test]
    fn every_form_of_one_instant_is_one_wall_clock() {
        let c = cairo();
        // Cairo is UTC+2 in March 2024 (no DST then).
        for s in [
            "2024-03-05 14:21:35",
            "2024-03-05T14:21:35",
            "2024-03-05 14:21:35.123456",
            "2024-03-05T12:21:35Z",
            "2024-03-05T14:21:35+02:00",
            "2024-03-05T13:21:35+0100",
            "05/03/2024 14:21:35",
            "٢٠٢٤-٠٣-٠٥ ١٤:٢١:٣٥",
        ] {
            assert_eq!(ts(&c, s), "2024-03-05 14:21:35", "{s}");
        }
        assert_eq!(ts(&c, "2024-03-05 14:21"), "2024-03-05 14:21:00");
        assert_eq!(ts(&c, "2024-03-05"), "2024-03-05 00:00:00");
        assert_eq!(ts(&c, "0000-00-00 00:00:00"), Value::Null);
        assert!(c.normalise("t", &json!("yesterday"), true).is_err());
        let us = Clock {
            day_order: DayOrder::MonthFirst,
            ..c
        };
        assert_eq!(
            us.normalise("d", &json!("03/05/2024"), false).unwrap(),
            Some(json!("2024-03-05"))
        );
    }

    #[test]
    fn events_carry_the_offset_of_the_instant() {
        let c = cairo();
        assert_eq!(
            c.rfc3339("2024-03-05 14:21:35").as_deref(),
            Some("2024-03-05T14:21:35+02:00")
        );
        assert_eq!(
            Clock::default().rfc3339("2024-03-05 14:21:35").as_deref(),
            Some("2024-03-05T14:21:35+00:00")
        );
        // Cairo's summer time (UTC+3) from the last Friday of April 2024.
        assert_eq!(
            c.rfc3339("2024-07-01 10:00:00").as_deref(),
            Some("2024-07-01T10:00:00+03:00")
        );
        assert_eq!(DayOrder::parse("mm-dd-yyyy"), Some(DayOrder::MonthFirst));
        assert_eq!(DayOrder::parse("dd.mm.yyyy"), Some(DayOrder::DayFirst));
        assert_eq!(DayOrder::parse("whatever"), None);
    }
}
