//! Environment variable sources and downward API selectors (`validateEnvVarValueFrom`,
//! `validateEnvFrom`, `validateObjectFieldSelector`, `validateContainerResourceFieldSelector`).

use super::names::is_env_var_name;
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

/// `validEnvDownwardAPIFieldPathExpressions`, sorted as `sets.List` prints them.
const ENV_FIELDS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// `validVolumeDownwardAPIFieldPathExpressions`, sorted.
const VOLUME_FIELDS: [&str; 5] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// `validContainerResourceFieldPathExpressions`, sorted.
const RESOURCES: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// Where a field selector is used: the supported paths differ.
#[derive(Clone, Copy)]
pub enum Use {
    Env,
    Volume,
}

/// `env[i]` at `ep`: at most one of `value`/`valueFrom`, and one source in `valueFrom`.
pub fn validate_env_var(e: &Value, ep: &str, errs: &mut Vec<FieldError>) {
    let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) else {
        return;
    };
    let fp = format!("{ep}.valueFrom");
    let sources = [
        "fieldRef",
        "resourceFieldRef",
        "configMapKeyRef",
        "secretKeyRef",
    ];
    let set = sources.iter().filter(|s| from.get(**s).is_some()).count();
    if set == 0 {
        errs.push(FieldError::invalid(&fp, json!(""), "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
    } else if set > 1 {
        errs.push(FieldError::invalid(
            &fp,
            json!(""),
            "may not have more than one field specified at a time",
        ));
    }
    if !obj::str_or_empty(e, &["value"]).is_empty() {
        errs.push(FieldError::invalid(
            &fp,
            json!(""),
            "may not be specified when `value` is not empty",
        ));
    }
    if let Some(f) = from.get("fieldRef") {
        field_ref(f, &format!("{fp}.fieldRef"), Use::Env, errs);
    }
    if let Some(r) = from.get("resourceFieldRef") {
        resource_field_ref(r, &format!("{fp}.resourceFieldRef"), errs);
    }
    for key_ref in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(r) = from.get(key_ref) {
            for field in ["name", "key"] {
                if obj::str_or_empty(r, &[field]).is_empty() {
                    errs.push(FieldError::required(format!("{fp}.{key_ref}.{field}"), ""));
                }
            }
        }
    }
}

/// `envFrom[i]` at `ep`: one source with a name, and a prefix that is a variable name.
pub fn validate_env_from(e: &Value, ep: &str, errs: &mut Vec<FieldError>) {
    let sources: Vec<&str> = ["configMapRef", "secretRef"]
        .into_iter()
        .filter(|s| e.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => errs.push(FieldError::invalid(
            ep,
            json!(""),
            "must specify one of: `configMapRef` or `secretRef`",
        )),
        [source] => {
            if obj::str_or_empty(e, &[source, "name"]).is_empty() {
                errs.push(FieldError::required(format!("{ep}.{source}.name"), ""));
            }
        }
        _ => errs.push(FieldError::invalid(
            ep,
            json!(""),
            "may not have more than one field specified at a time",
        )),
    }
    if let Some(prefix) = obj::get_str(e, &["prefix"]).filter(|p| !p.is_empty()) {
        for msg in is_env_var_name(prefix) {
            errs.push(FieldError::invalid(
                format!("{ep}.prefix"),
                json!(prefix),
                msg,
            ));
        }
    }
}

/// `fieldRef` at `p`: a supported path, or `metadata.labels['k']`/`annotations['k']`.
pub fn field_ref(f: &Value, p: &str, usage: Use, errs: &mut Vec<FieldError>) {
    let path = obj::str_or_empty(f, &["fieldPath"]);
    let fp = format!("{p}.fieldPath");
    if path.is_empty() {
        errs.push(FieldError::required(fp, ""));
        return;
    }
    let subscripted = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|prefix| {
            path.starts_with(prefix) && path.ends_with("']") && path.len() > prefix.len() + 2
        });
    let supported: &[&str] = match usage {
        Use::Env => &ENV_FIELDS,
        Use::Volume => &VOLUME_FIELDS,
    };
    if !subscripted && !supported.contains(&path) {
        errs.push(FieldError::not_supported(fp, json!(path), supported));
    }
}

/// `resourceFieldRef` at `p`.
pub fn resource_field_ref(r: &Value, p: &str, errs: &mut Vec<FieldError>) {
    let resource = obj::str_or_empty(r, &["resource"]);
    if resource.is_empty() {
        errs.push(FieldError::required(format!("{p}.resource"), ""));
    } else if !RESOURCES.contains(&resource) {
        errs.push(FieldError::not_supported(
            format!("{p}.resource"),
            json!(resource),
            &RESOURCES,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_msgs(e: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_env_var(&e, "env[0]", &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn env_value_from_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"name": "A", "value": "x"}), vec![]),
            (json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}), vec![]),
            (json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}), vec![]),
            (
                json!({"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s"}}}),
                vec![
                    "env[0].valueFrom: Invalid value: \"\": may not have more than one field specified at a time",
                    "env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
                    "env[0].valueFrom.secretKeyRef.key: Required value",
                ],
            ),
            (
                json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}),
                vec!["env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""],
            ),
            (
                json!({"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}),
                vec!["env[0].valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\""],
            ),
        ];
        for (e, want) in cases {
            assert_eq!(env_msgs(e.clone()), want, "{e}");
        }
    }

    #[test]
    fn env_from_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"configMapRef": {"name": "c"}, "prefix": "CFG_"}), vec![]),
            (json!({}), vec!["f: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`"]),
            (
                json!({"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}),
                vec!["f: Invalid value: \"\": may not have more than one field specified at a time"],
            ),
            (
                json!({"secretRef": {}, "prefix": "1X"}),
                vec![
                    "f.secretRef.name: Required value",
                    "f.prefix: Invalid value: \"1X\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
                ],
            ),
        ];
        for (e, want) in cases {
            let mut errs = Vec::new();
            validate_env_from(&e, "f", &mut errs);
            let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
            assert_eq!(got, want, "{e}");
        }
    }

    #[test]
    fn volume_field_paths_differ_from_env() {
        let mut errs = Vec::new();
        field_ref(
            &json!({"fieldPath": "metadata.labels"}),
            "f",
            Use::Volume,
            &mut errs,
        );
        assert!(errs.is_empty());
        field_ref(
            &json!({"fieldPath": "spec.nodeName"}),
            "f",
            Use::Volume,
            &mut errs,
        );
        assert_eq!(errs.len(), 1);
    }
}
