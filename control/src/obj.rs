//! Small readers over an object's JSON shared by the pure API modules.
//!
//! Objects are kept as `serde_json::Value` so unknown fields survive; these helpers read the
//! handful of well-known places without every caller repeating `get(..).and_then(..)` chains.

use serde_json::{Map, Value};

/// The value at `path` (object keys only), if every step exists.
pub fn get<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

/// The string at `path`, if present and a string.
pub fn get_str<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(obj, path).and_then(Value::as_str)
}

/// The string at `path`, or `""` when absent: Kubernetes' typed structs read a missing
/// string field as the empty string, and several rules depend on that.
pub fn str_or_empty<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    get_str(obj, path).unwrap_or("")
}

/// The array at `path`, or an empty slice when absent or not an array.
pub fn array<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    get(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if present and an object.
pub fn object<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(obj, path).and_then(Value::as_object)
}

/// The integer at `path`, if present and an integer.
pub fn get_i64(obj: &Value, path: &[&str]) -> Option<i64> {
    get(obj, path).and_then(Value::as_i64)
}

/// The boolean at `path`, `false` when absent (Go's zero value).
pub fn bool_or_false(obj: &Value, path: &[&str]) -> bool {
    get(obj, path).and_then(Value::as_bool).unwrap_or(false)
}

/// `metadata.name`, or `""`.
pub fn name(obj: &Value) -> &str {
    str_or_empty(obj, &["metadata", "name"])
}

/// `metadata.namespace`, or `""`.
pub fn namespace(obj: &Value) -> &str {
    str_or_empty(obj, &["metadata", "namespace"])
}

/// `metadata.labels`, if any.
pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    object(obj, &["metadata", "labels"])
}

/// Parses an RFC 3339 timestamp as the API serializes `metav1.Time`.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The timestamp at `path`, if present and well-formed.
pub fn get_time(obj: &Value, path: &[&str]) -> Option<chrono::DateTime<chrono::Utc>> {
    get_str(obj, path).and_then(parse_time)
}

/// Renders a scalar the way Go's `fmt` `%v` would for a JSON-decoded value, so
/// selector matching and table cells agree with Kubernetes (`true`, `3`, `"x"` as `x`).
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// `v` without null-valued fields, at any depth: what a Go client's typed round trip
/// leaves of it (`null` decodes to a zero value that `omitempty` drops).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readers_tolerate_missing_and_mistyped_fields() {
        let o = json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"n": 3, "b": true, "l": "notalist"}});
        assert_eq!(name(&o), "a");
        assert_eq!(namespace(&o), "");
        assert_eq!(get_i64(&o, &["spec", "n"]), Some(3));
        assert!(bool_or_false(&o, &["spec", "b"]));
        assert!(!bool_or_false(&o, &["spec", "missing"]));
        assert!(array(&o, &["spec", "l"]).is_empty());
        assert_eq!(labels(&o).map(|l| l.len()), Some(1));
        assert!(get_time(&json!({"t": "2024-01-02T03:04:05Z"}), &["t"]).is_some());
    }
}
