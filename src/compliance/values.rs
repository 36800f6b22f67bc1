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

/// A list of TCP/UDP ports: an array of numbers or numeric strings, or one
/// string of comma- or space-separated numbers. `None` if any entry is not
/// a port.
pub fn ports(value: &Value) -> Option<Vec<u16>> {
    let port = |entry: &Value| -> Option<u16> {
        let n = number(entry)?;
        (n.fract() == 0.0 && (0.0..=65535.0).contains(&n)).then_some(n as u16)
    };
    match value {
        Value::Array(entries) => entries.iter().map(port).collect(),
        Value::String(text) => text
            .split([',', ' '])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| port(&Value::from(part)))
            .collect(),
        Value::Number(_) => port(value).map(|one| vec![one]),
        _ => None,
    }
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
    }
}
