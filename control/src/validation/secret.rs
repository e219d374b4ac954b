//! Secret: key format, size, per-type required keys, immutable `type` and `immutable`.

use super::configmap::{decoded_len, immutable_update, MAX_SIZE};
use super::meta::{self, NameRule};
use super::names::is_config_map_key;
use super::FieldError;
use crate::obj;
use base64::Engine as _;
use serde_json::{json, Value};

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    if let Some(old) = old {
        let (t, ot) = (
            obj::str_or_empty(obj, &["type"]),
            obj::str_or_empty(old, &["type"]),
        );
        if t != ot {
            errs.push(FieldError::invalid("type", json!(t), "field is immutable"));
        }
        errs.extend(immutable_update(obj, old, &["data"]));
    }
    let data = obj::object(obj, &["data"]);
    // stringData is folded into data by conversion before validation in Kubernetes; if the
    // caller has not done that yet, its keys still count.
    let string_data = obj::object(obj, &["stringData"]);
    let mut total = 0usize;
    for (key, value) in data.into_iter().flatten() {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), json!(key), msg));
        }
        total += decoded_len(value);
    }
    for (key, value) in string_data.into_iter().flatten() {
        if data.is_some_and(|d| d.contains_key(key)) {
            continue;
        }
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), json!(key), msg));
        }
        total += value.as_str().map_or(0, str::len);
    }
    if total > MAX_SIZE {
        errs.push(FieldError::too_long("data", MAX_SIZE));
    }
    let has = |k: &str| {
        data.is_some_and(|d| d.contains_key(k)) || string_data.is_some_and(|d| d.contains_key(k))
    };
    let bytes = |k: &str| -> Option<Vec<u8>> {
        if let Some(v) = data.and_then(|d| d.get(k)) {
            let s = v.as_str().unwrap_or("");
            return Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_else(|_| s.as_bytes().to_vec()),
            );
        }
        string_data
            .and_then(|d| d.get(k))
            .map(|v| v.as_str().unwrap_or("").as_bytes().to_vec())
    };
    let required = |k: &str| FieldError::required(format!("data[{k}]"), "");
    match obj::str_or_empty(obj, &["type"]) {
        "kubernetes.io/service-account-token"
            if obj::str_or_empty(
                obj,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.name",
                ],
            )
            .is_empty() =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match bytes(key) {
                None => errs.push(required(key)),
                Some(b) => {
                    if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&b) {
                        errs.push(FieldError::invalid(
                            format!("data[{key}]"),
                            json!("<secret contents redacted>"),
                            e.to_string(),
                        ));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if bytes("ssh-privatekey").is_none_or(|b| b.is_empty()) => {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("tls.crt"));
            }
            if !has("tls.key") {
                errs.push(required("tls.key"));
            }
        }
        _ => {}
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
    fn secret_type_table() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": b64("x")}}), vec![]),
            (
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": b64("c")}}),
                vec!["data[tls.key]: Required value"],
            ),
            (
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth"}),
                vec!["data[username]: Required value", "data[password]: Required value"],
            ),
            (
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "stringData": {"password": "p"}}),
                vec![],
            ),
            (
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson"}),
                vec!["data[.dockerconfigjson]: Required value"],
            ),
            (
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{\"auths\":{}}")}}),
                vec![],
            ),
            (
                json!({"metadata": {"name": "s"}, "data": {"a b": ""}}),
                vec!["data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"],
            ),
        ];
        for (o, want) in cases {
            assert_eq!(msgs(&o, None), want, "{o}");
        }
        let bad_json = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("nope")}});
        assert!(msgs(&bad_json, None)[0].starts_with(
            "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "
        ));
    }

    #[test]
    fn data_and_string_data_together_are_limited_to_one_mebibyte() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n]);
        let at_limit = json!({"metadata": {"name": "s"}, "data": {"a": b64(MAX_SIZE - 1)}, "stringData": {"b": "y"}});
        assert_eq!(msgs(&at_limit, None), Vec::<String>::new());
        let over = json!({"metadata": {"name": "s"}, "data": {"a": b64(MAX_SIZE)}, "stringData": {"b": "y"}});
        assert_eq!(
            msgs(&over, None),
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn secret_type_is_immutable() {
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            msgs(&new, Some(&old)),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
