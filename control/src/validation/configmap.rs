//! ConfigMap: key format, data/binaryData overlap, total size, `immutable`.

use super::meta::{self, NameRule};
use super::names::is_config_map_key;
use super::FieldError;
use crate::obj;
use base64::Engine as _;
use serde_json::{json, Value};

/// `core.MaxSecretSize`, shared by ConfigMaps and Secrets.
pub const MAX_SIZE: usize = 1024 * 1024;

pub const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    if let Some(old) = old {
        errs.extend(immutable_update(obj, old, &["data", "binaryData"]));
    }
    let data = obj::object(obj, &["data"]);
    let binary = obj::object(obj, &["binaryData"]);
    let mut total = 0usize;
    for (key, value) in data.into_iter().flatten() {
        let p = format!("data[{key}]");
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&p, json!(key), msg));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(FieldError::invalid(
                &p,
                json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary.into_iter().flatten() {
        let p = format!("binaryData[{key}]");
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(&p, json!(key), msg));
        }
        if data.is_some_and(|d| d.contains_key(key)) {
            errs.push(FieldError::invalid(
                &p,
                json!(key),
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(value);
    }
    if total > MAX_SIZE {
        // Kubernetes passes the empty path: the error refers to the whole object.
        errs.push(FieldError::too_long("", MAX_SIZE));
    }
    errs
}

/// Byte length of a base64 `[]byte` field; undecodable values count their text length
/// (decoding errors are reported by the caller's schema decoding, not here).
pub fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

/// The `immutable: true` rules shared by ConfigMaps and Secrets.
pub fn immutable_update(obj: &Value, old: &Value, fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj::bool_or_false(old, &["immutable"]) {
        return errs;
    }
    if !obj::bool_or_false(obj, &["immutable"]) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
    }
    for f in fields {
        let empty = || Value::Object(Default::default());
        let n = obj::get(obj, &[f])
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(empty);
        let o = obj::get(old, &[f])
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or_else(empty);
        if n != o {
            errs.push(FieldError::forbidden(*f, IMMUTABLE_MSG));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(o: &Value, old: Option<&Value>) -> Vec<String> {
        validate(o, old).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn configmap_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"metadata": {"name": "c"}, "data": {"a.b": "1", "C_D-e": "2"}}), vec![]),
            (
                json!({"metadata": {"name": "c"}, "data": {"..x": "1"}}),
                vec!["data[..x]: Invalid value: \"..x\": must not start with '..'"],
            ),
            (
                json!({"metadata": {"name": "c"}, "data": {"a/b": "1"}}),
                vec!["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"],
            ),
            (
                json!({"metadata": {"name": "c"}, "data": {"k": "1"}, "binaryData": {"k": "AA=="}}),
                vec![
                    "data[k]: Invalid value: \"k\": duplicate of key present in binaryData",
                    "binaryData[k]: Invalid value: \"k\": duplicate of key present in data",
                ],
            ),
            (
                json!({"metadata": {"name": "c"}, "data": {"k": "x".repeat(MAX_SIZE + 1)}}),
                vec![": Too long: may not be more than 1048576 bytes"],
            ),
        ];
        for (o, want) in cases {
            assert_eq!(msgs(&o, None), want);
        }
    }

    #[test]
    fn immutable_configmap_cannot_change() {
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let same = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}, "binaryData": null});
        assert!(msgs(&same, Some(&old)).is_empty());
        let changed = json!({"metadata": {"name": "c"}, "data": {"a": "2"}});
        assert_eq!(
            msgs(&changed, Some(&old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
    }
}
