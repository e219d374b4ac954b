//! ObjectMeta rules shared by every kind (`apimachinery/pkg/api/validation/objectmeta.go`).
//! Namespace presence per scope is the caller's business, so it is not checked here.

use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
};
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

/// Total size limit of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

/// Which name function a kind uses (`ValidateNameFunc`).
#[derive(Debug, Clone, Copy)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

impl NameRule {
    /// Applies the rule; for `generateName` prefixes a trailing dash is allowed, as
    /// `maskTrailingDash` does.
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 1]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
        }
    }
}

/// `IsDNS1035Label`, used for Service names.
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    let ok = match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_lowercase()
                && (l.is_ascii_lowercase() || l.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        }
        _ => false,
    };
    if !ok {
        errs.push(super::names::regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// The generic rules: metadata on create, metadata-update rules when `old` is given.
pub fn validate(obj: &Value, old: Option<&Value>, rule: NameRule) -> Vec<FieldError> {
    match old {
        None => validate_create(obj, rule),
        Some(old) => validate_update(obj, old),
    }
}

/// `ValidateObjectMetaAccessor` minus the namespace-scope check.
pub fn validate_create(obj: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = obj::str_or_empty(obj, &["metadata", "generateName"]);
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                json!(generate_name),
                msg,
            ));
        }
    }
    let name = obj::name(obj);
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in rule.check(name, false) {
            errs.push(FieldError::invalid("metadata.name", json!(name), msg));
        }
    }
    errs.extend(validate_common(obj));
    errs
}

/// Labels, annotations, owner references and finalizers, checked on create and update.
fn validate_common(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(gen) = obj::get_i64(obj, &["metadata", "generation"]) {
        if gen < 0 {
            errs.push(FieldError::invalid(
                "metadata.generation",
                json!(gen),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs.extend(validate_labels(obj::labels(obj), "metadata.labels"));
    errs.extend(validate_annotations(obj));
    errs.extend(validate_owner_references(obj));
    for f in obj::array(obj, &["metadata", "finalizers"]) {
        let f = f.as_str().unwrap_or("");
        for msg in is_qualified_name(f) {
            errs.push(FieldError::invalid("metadata.finalizers", json!(f), msg));
        }
    }
    errs
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub fn validate_labels(
    labels: Option<&serde_json::Map<String, Value>>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(path, json!(k), msg));
        }
        let v = v.as_str().unwrap_or("");
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, json!(v), msg));
        }
    }
    errs
}

fn validate_annotations(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(annotations) = obj::object(obj, &["metadata", "annotations"]) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in annotations {
        // Kubernetes validates the lower-cased key (annotation keys may carry capitals in
        // the prefix) but reports the key as given.
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", json!(k), msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE_LIMIT_B,
        ));
    }
    errs
}

fn validate_owner_references(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller = String::new();
    let refs = obj::array(obj, &["metadata", "ownerReferences"]);
    for (i, r) in refs.iter().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        let api_version = obj::str_or_empty(r, &["apiVersion"]);
        if api_version.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.apiVersion"),
                "must not be empty",
            ));
        } else if api_version.split('/').count() > 2 || api_version.ends_with('/') {
            errs.push(FieldError::invalid(
                format!("{p}.apiVersion"),
                json!(api_version),
                "must be <group>/<version> or <version>",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if obj::str_or_empty(r, &[field]).is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.{field}"),
                    "must not be empty",
                ));
            }
        }
        if obj::bool_or_false(r, &["controller"]) {
            let cur = format!(
                "{}/{}",
                obj::str_or_empty(r, &["kind"]),
                obj::str_or_empty(r, &["name"])
            );
            if first_controller.is_empty() {
                first_controller = cur;
            } else {
                errs.push(FieldError::invalid(
                    "metadata.ownerReferences",
                    Value::Array(refs.to_vec()),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {cur}"),
                ));
            }
        }
    }
    errs
}

/// `ValidateObjectMetaAccessorUpdate`. resourceVersion presence is not checked: the API
/// server fills it from the stored object for unconditional updates before validating.
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if obj::get(old, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        let old_f: Vec<&str> = obj::array(old, &["metadata", "finalizers"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = obj::array(obj, &["metadata", "finalizers"])
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|f| super::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    for (field, path) in [
        ("name", "metadata.name"),
        ("namespace", "metadata.namespace"),
        ("uid", "metadata.uid"),
        ("creationTimestamp", "metadata.creationTimestamp"),
    ] {
        let new_v = obj::get(obj, &["metadata", field])
            .cloned()
            .unwrap_or(Value::Null);
        let old_v = obj::get(old, &["metadata", field])
            .cloned()
            .unwrap_or(Value::Null);
        if new_v != old_v {
            errs.push(FieldError::invalid(
                path,
                immutable_value(new_v),
                "field is immutable",
            ));
        }
    }
    if let (Some(n), Some(o)) = (
        obj::get_i64(obj, &["metadata", "generation"]),
        obj::get_i64(old, &["metadata", "generation"]),
    ) {
        if n < o {
            errs.push(FieldError::invalid(
                "metadata.generation",
                json!(n),
                "must not be decremented",
            ));
        }
    }
    errs.extend(validate_labels(obj::labels(obj), "metadata.labels"));
    errs.extend(validate_annotations(obj));
    errs.extend(validate_owner_references(obj));
    errs
}

/// Go prints a missing string field as `""`; keep that for immutability errors.
fn immutable_value(v: Value) -> Value {
    if v.is_null() {
        json!("")
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"metadata": {"name": "ok"}}), vec![]),
            (
                json!({"metadata": {}}),
                vec!["metadata.name: Required value: name or generateName is required"],
            ),
            (
                json!({"metadata": {"name": "Bad_Name"}}),
                vec!["metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"],
            ),
            (json!({"metadata": {"name": "a", "generateName": "web-"}}), vec![]),
            (
                json!({"metadata": {"name": "a", "labels": {"a b": "c"}}}),
                vec!["metadata.labels: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"],
            ),
            (
                json!({"metadata": {"name": "a", "labels": {"k": "-v"}}}),
                vec!["metadata.labels: Invalid value: \"-v\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"],
            ),
            (
                json!({"metadata": {"name": "a", "annotations": {"k": "x".repeat(262144)}}}),
                vec!["metadata.annotations: Too long: may not be more than 262144 bytes"],
            ),
            (
                json!({"metadata": {"name": "a", "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n"}]}}),
                vec!["metadata.ownerReferences[0].uid: Required value: must not be empty"],
            ),
        ];
        for (o, want) in cases {
            let got: Vec<String> = validate(&o, None, NameRule::Dns1123Subdomain)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "{o}");
        }
    }

    #[test]
    fn update_rules() {
        let old = json!({"metadata": {"name": "a", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]}});
        let new = json!({"metadata": {"name": "a", "uid": "u2", "finalizers": ["x", "y"]}});
        let got: Vec<String> = validate(&new, Some(&old), NameRule::Dns1123Subdomain)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"y\"}",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
            ]
        );
    }

    #[test]
    fn name_rules() {
        assert!(NameRule::Dns1123Label.check("a.b", false).len() == 1);
        assert!(NameRule::Dns1035Label.check("1abc", false).len() == 1);
        assert!(NameRule::Dns1035Label.check("abc", false).is_empty());
        assert!(NameRule::Dns1123Subdomain.check("web-", true).is_empty());
    }
}
