//! What a client is told when its input does not parse: the field, and what
//! JSON (or query, or path) value was expected, in the client's terms.
//!
//! serde's messages name Rust types (`expected struct LoginRequest`,
//! `expected u32`); those are internals and never leave the service. Every
//! message is rebuilt here from its parts, and anything not recognised
//! becomes a plain "is not a valid value".
//!
//! Also the guard that refuses NUL characters and invalid UTF-8 in any
//! request's path or query string, before a handler sees them: PostgreSQL
//! `text` cannot hold NUL, so such input would otherwise end as a 500.

use axum::extract::rejection::PathRejection;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;

pub use crate::domain::text::NUL_REASON;

/// The JSON type a serde "expected …" phrase stands for.
fn expected_json(expected: &str) -> String {
    let lower = expected.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if let Some(choices) = expected.strip_prefix("one of ") {
        return format!("one of {choices}");
    }
    // Wire names in backticks (`` `a` or `b` ``): the client's own words.
    if expected.starts_with('`') {
        return expected.to_string();
    }
    if has(&["uuid"]) {
        "a UUID".into()
    } else if has(&[
        "rfc3339",
        "rfc 3339",
        "offsetdatetime",
        "datetime",
        "timestamp",
    ]) {
        "an RFC 3339 timestamp".into()
    } else if has(&["struct", "map", "object"]) {
        "a JSON object".into()
    } else if has(&["sequence", "tuple", "array", "vec"]) {
        "a JSON array".into()
    } else if has(&["bool"]) {
        "a boolean".into()
    } else if has(&["f32", "f64", "float", "number"]) {
        "a number".into()
    } else if has(&[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "integer",
    ]) {
        "an integer".into()
    } else if has(&["str", "char"]) {
        "a string".into()
    } else if has(&["enum", "variant"]) {
        "one of the accepted values".into()
    } else {
        "a valid value".into()
    }
}

/// The JSON kind of a serde "invalid type: …" phrase.
fn found_json(found: &str) -> &'static str {
    let word = found.split([' ', '`', '"']).next().unwrap_or("");
    match word {
        "map" => "an object",
        "sequence" => "an array",
        "string" | "character" => "a string",
        "integer" | "floating" => "a number",
        "boolean" => "a boolean",
        "null" | "unit" => "null",
        _ => "another value",
    }
}

fn backticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let end = start + text[start..].find('`')?;
    Some(&text[start..end])
}

/// `(field, reason)` for a serde message about the value at `path` (`.`
/// or empty for the whole input, which is called `whole`).
pub fn describe(path: &str, message: &str, whole: &str) -> (String, String) {
    let field = |child: Option<&str>| -> String {
        let base = if path.is_empty() || path == "." {
            None
        } else {
            Some(path)
        };
        match (base, child) {
            (Some(base), Some(child)) => format!("{base}.{child}"),
            (Some(base), None) => base.to_string(),
            (None, Some(child)) => child.to_string(),
            (None, None) => whole.to_string(),
        }
    };
    // serde_json appends " at line L column C" to some messages.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head);
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (field(backticked(rest)), "is required".into());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return (field(backticked(rest)), "is not an accepted field".into());
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let reason = rest
            .split_once(", expected ")
            .map_or("is not one of the accepted values".to_string(), |(_, e)| {
                format!("must be {}", expected_json(e))
            });
        return (field(None), reason);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let reason = match rest.split_once(", expected ") {
            Some((found, expected)) => format!(
                "must be {}, not {}",
                expected_json(expected),
                found_json(found)
            ),
            None => "has the wrong type".into(),
        };
        return (field(None), reason);
    }
    if let Some(rest) = message
        .strip_prefix("invalid value: ")
        .or_else(|| message.strip_prefix("invalid length "))
    {
        let reason = rest
            .split_once("expected ")
            .map_or("is not a valid value".to_string(), |(_, e)| {
                format!("must be {}", expected_json(e))
            });
        return (field(None), reason);
    }
    let lower = message.to_ascii_lowercase();
    let reason = if lower.contains("uuid") {
        "must be a UUID"
    } else if lower.contains("invalid digit")
        || lower.contains("number too large")
        || lower.contains("number too small")
        || lower.contains("cannot parse integer")
    {
        "must be an integer"
    } else if lower.contains("invalid float") {
        "must be a number"
    } else if lower.contains("`true` or `false`") {
        "must be true or false"
    } else if lower.contains("duplicate field") {
        "is given more than once"
    } else {
        "is not a valid value"
    };
    (field(None), reason.into())
}

/// The dotted path of the first string or key holding NUL in `value`.
pub fn nul_path(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
                path.push(format!("[{index}]"));
                let found = walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, child)| {
                path.push(key.replace('\0', "\\u0000"));
                let found = key.contains('\0') || walk(child, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(value, &mut path).then(|| {
        let mut dotted = String::new();
        for part in path {
            if !dotted.is_empty() && !part.starts_with('[') {
                dotted.push('.');
            }
            dotted.push_str(&part);
        }
        if dotted.is_empty() {
            "body".into()
        } else {
            dotted
        }
    })
}

/// A path parameter that did not parse: the parameter and what it must be.
pub fn from_path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(error) = rejection else {
        return ApiError::invalid_field("path", "is not valid");
    };
    let (field, reason) = match error.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => (key, "must be valid UTF-8".to_string()),
        ErrorKind::ParseErrorAtKey {
            key, expected_type, ..
        } => (key, format!("must be {}", expected_json(expected_type))),
        ErrorKind::ParseErrorAtIndex { expected_type, .. }
        | ErrorKind::ParseError { expected_type, .. } => (
            "path".to_string(),
            format!("must be {}", expected_json(expected_type)),
        ),
        ErrorKind::DeserializeError { key, message, .. } => describe(&key, &message, "path"),
        ErrorKind::Message(message) => describe("", &message, "path"),
        _ => ("path".to_string(), "is not valid".to_string()),
    };
    ApiError::invalid_field(&field, reason)
}

/// Refuses, with a 422, a request whose percent-decoded path or query
/// string holds NUL or is not UTF-8.
pub async fn refuse_unsafe_text(request: Request, next: Next) -> Response {
    let uri = request.uri();
    for (part, raw) in [("path", Some(uri.path())), ("query", uri.query())] {
        let Some(raw) = raw else { continue };
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        // In a query string `+` is a space; a NUL is only ever `%00`.
        let problem = match std::str::from_utf8(&decoded) {
            Err(_) => Some("must be valid UTF-8"),
            Ok(text) if text.contains('\0') => Some(NUL_REASON),
            Ok(_) => None,
        };
        if let Some(reason) = problem {
            return ApiError::invalid_field(part, reason).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rust_type_reaches_a_client() {
        for (message, expected_reason) in [
            (
                "invalid type: string \"x\", expected struct LoginRequest",
                "must be a JSON object, not a string",
            ),
            (
                "invalid type: integer `5`, expected a string",
                "must be a string, not a number",
            ),
            (
                "invalid type: map, expected u32 at line 1 column 9",
                "must be an integer, not an object",
            ),
            (
                "invalid type: string \"a\", expected a sequence",
                "must be a JSON array, not a string",
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "must be an integer",
            ),
            ("invalid digit found in string", "must be an integer"),
            (
                "something about std::collections::HashMap<String, Foo>",
                "is not a valid value",
            ),
        ] {
            let (field, reason) = describe("limit", message, "body");
            assert_eq!(field, "limit");
            assert_eq!(reason, expected_reason, "{message}");
        }
        assert_eq!(
            describe(".", "missing field `email`", "body"),
            ("email".into(), "is required".into())
        );
        assert_eq!(
            describe("owner", "unknown field `x`, expected `id`", "body"),
            ("owner.x".into(), "is not an accepted field".into())
        );
        assert_eq!(
            describe(
                "role",
                "unknown variant `god`, expected one of `viewer`, `admin`",
                "body"
            ),
            ("role".into(), "must be one of `viewer`, `admin`".into())
        );
        assert_eq!(
            describe("", "invalid type: sequence, expected struct X", "body").0,
            "body"
        );
        assert_eq!(
            describe(
                "kind",
                "unknown variant `x`, expected `str_map` or `bool`",
                "body"
            )
            .1,
            "must be `str_map` or `bool`"
        );
    }

    #[test]
    fn nul_is_found_at_any_depth() {
        let value = serde_json::json!({"a": {"b": ["ok", "x\u{0}y"]}});
        assert_eq!(nul_path(&value).as_deref(), Some("a.b[1]"));
        assert_eq!(nul_path(&serde_json::json!({"k": "fine"})), None);
        assert_eq!(
            nul_path(&serde_json::json!("\u{0}")).as_deref(),
            Some("body")
        );
    }
}
