//! How rules read attribute values (API.md "Compliance"): booleans spelled
//! true/false, 1/0, yes/no, on/off or enabled/disabled (any case), dates as
//! ISO-8601 or epoch seconds, whole or decimal numbers given as numbers or
//! strings, and port lists as arrays or comma-separated strings.
//!
//! Every reader answers `None` for a value it cannot interpret, which the
//! rules turn into "not applicable", never into a failure.

use serde_json::Value;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A boolean in any accepted spelling.
pub fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => {
            let n = number.as_f64()?;
            if n == 1.0 {
                Some(true)
            } else if n == 0.0 {
                Some(false)
            } else {
                None
            }
        }
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "enabled" => Some(true),
            "false" | "0" | "no" | "off" | "disabled" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A finite number, given as a JSON number or a numeric string.
pub fn number(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

/// A moment: RFC 3339 / ISO-8601 date-time (UTC when it has no offset), an
/// ISO-8601 date (midnight UTC), or seconds since the Unix epoch (a number
/// or a numeric string).
pub fn moment(value: &Value) -> Option<OffsetDateTime> {
    match value {
        Value::Number(_) => epoch(number(value)?),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(seconds) = text.parse::<f64>() {
                return epoch(seconds);
            }
            if let Ok(parsed) = OffsetDateTime::parse(text, &Rfc3339) {
                return Some(parsed);
            }
            if let Ok(parsed) = OffsetDateTime::parse(text, &Iso8601::DEFAULT) {
                return Some(parsed);
            }
            if let Ok(parsed) = PrimitiveDateTime::parse(text, &Iso8601::DEFAULT) {
                return Some(parsed.assume_offset(UtcOffset::UTC));
            }
            Date::parse(text, format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|date| date.midnight().assume_offset(UtcOffset::UTC))
        }
        _ => None,
    }
}

fn epoch(seconds: f64) -> Option<OffsetDateTime> {
    if !seconds.is_finite() {
        return None;
    }
    let nanos = (seconds * 1e9).round();
    // Beyond ±292 years the nanosecond count overflows; no real date is there.
    if nanos.abs() >= i64::MAX as f64 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

/// One port: a number or numeric string, optionally with a protocol
/// (`"3389/tcp"`).
fn port(entry: &Value) -> Option<u16> {
    let bare = match entry {
        Value::String(text) => {
            let number = text.trim().split('/').next().unwrap_or_default().trim();
            Value::from(number)
        }
        other => other.clone(),
    };
    let n = number(&bare)?;
    (n.fract() == 0.0 && (0.0..=65535.0).contains(&n)).then_some(n as u16)
}

/// The entries of a port list: an array, or one string of comma- or
/// space-separated entries, or a single number. `None` when the value is
/// none of these.
fn port_entries(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(entries) => Some(entries.clone()),
        Value::String(text) => Some(
            text.split([',', ' '])
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(Value::from)
                .collect(),
        ),
        Value::Number(_) => Some(vec![value.clone()]),
        _ => None,
    }
}

/// A list of TCP/UDP ports (see [`port_entries`]; `"3389/tcp"` reads as
/// 3389). `None` if any entry is not a port.
pub fn ports(value: &Value) -> Option<Vec<u16>> {
    port_entries(value)?.iter().map(port).collect()
}

/// The ports of a list that can be read, and how many entries could not:
/// a rule looking for risky ports must not let one odd entry hide another
/// that reads as RDP. `None` when the value is not a list at all.
pub fn readable_ports(value: &Value) -> Option<(Vec<u16>, usize)> {
    let entries = port_entries(value)?;
    let readable: Vec<u16> = entries.iter().filter_map(port).collect();
    let unreadable = entries.len() - readable.len();
    Some((readable, unreadable))
}

/// Whole days (fractional) from `earlier` to `later`.
pub fn days_between(earlier: OffsetDateTime, later: OffsetDateTime) -> f64 {
    (later - earlier).as_seconds_f64() / 86_400.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn every_accepted_boolean_spelling_reads() {
        for yes in [
            json!(true),
            json!(1),
            json!("true"),
            json!("TRUE"),
            json!("1"),
            json!("yes"),
            json!("Yes"),
            json!("on"),
            json!("enabled"),
            json!(" Enabled "),
        ] {
            assert_eq!(boolean(&yes), Some(true), "{yes}");
        }
        for no in [
            json!(false),
            json!(0),
            json!("false"),
            json!("0"),
            json!("no"),
            json!("off"),
            json!("disabled"),
            json!("DISABLED"),
        ] {
            assert_eq!(boolean(&no), Some(false), "{no}");
        }
        for neither in [
            json!("maybe"),
            json!(2),
            json!(null),
            json!([]),
            json!(""),
            json!("y"),
        ] {
            assert_eq!(boolean(&neither), None, "{neither}");
        }
    }

    #[test]
    fn dates_read_as_iso_or_epoch() {
        let expected = datetime!(2026-11-01 12:00 UTC);
        assert_eq!(moment(&json!("2026-11-01T12:00:00Z")), Some(expected));
        assert_eq!(moment(&json!("2026-11-01T13:00:00+01:00")), Some(expected));
        assert_eq!(moment(&json!("2026-11-01T12:00:00")), Some(expected));
        assert_eq!(moment(&json!(1_793_534_400)), Some(expected));
        assert_eq!(moment(&json!("1793534400")), Some(expected));
        assert_eq!(
            moment(&json!("2026-11-01")),
            Some(datetime!(2026-11-01 0:00 UTC))
        );
        for bad in [
            json!("yesterday"),
            json!("2026-13-01"),
            json!(true),
            json!(null),
            json!(1e300),
        ] {
            assert_eq!(moment(&bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_and_ports_read_leniently_but_not_wrongly() {
        assert_eq!(number(&json!("90")), Some(90.0));
        assert_eq!(number(&json!(30.5)), Some(30.5));
        assert_eq!(number(&json!("ninety")), None);
        assert_eq!(ports(&json!([22, "443"])), Some(vec![22, 443]));
        assert_eq!(ports(&json!("22, 3389")), Some(vec![22, 3389]));
        assert_eq!(ports(&json!([])), Some(vec![]));
        assert_eq!(ports(&json!([22, 70000])), None);
        assert_eq!(ports(&json!([22.5])), None);
        assert_eq!(ports(&json!({"a": 1})), None);
        assert_eq!(ports(&json!(["22/tcp", "3389/tcp"])), Some(vec![22, 3389]));
        assert_eq!(readable_ports(&json!([3389, "ssh"])), Some((vec![3389], 1)));
        assert_eq!(readable_ports(&json!(true)), None);
    }
}
