//! Pod: `ValidatePodCreate` / `ValidatePodUpdate` for the fields wkube acts on.

use super::downward;
use super::meta::{self, NameRule};
use super::names::{is_dns1123_label, is_env_var_name, is_valid_port_name, is_valid_port_num};
use super::quantity::parse_quantity;
use super::volume;
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
/// `sets.List` order, i.e. sorted.
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];

/// The Forbidden detail of a pod spec update, as Kubernetes words it.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(obj, old, NameRule::Dns1123Subdomain);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_spec(spec, "spec"));
    if let Some(old) = old {
        errs.extend(validate_spec_update(
            spec,
            old.get("spec").unwrap_or(&Value::Null),
        ));
    }
    errs
}

/// `ValidatePodSpec` for a spec at `path` (also used for templates).
pub fn validate_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec, path, &mut errs);
    let mut all_names: Vec<String> = Vec::new();
    let containers = obj::array(spec, &["containers"]);
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (field, list) in [
        ("containers", containers),
        ("initContainers", obj::array(spec, &["initContainers"])),
    ] {
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{path}.{field}[{i}]");
            validate_container(c, &cp, &volumes, &mut all_names, &mut errs);
        }
    }
    if let Some(rp) = obj::get_str(spec, &["restartPolicy"]) {
        if rp.is_empty() {
            errs.push(FieldError::required(format!("{path}.restartPolicy"), ""));
        } else if !RESTART_POLICIES.contains(&rp) {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                json!(rp),
                &RESTART_POLICIES,
            ));
        }
    }
    if let Some(dp) = obj::get_str(spec, &["dnsPolicy"]) {
        if !DNS_POLICIES.contains(&dp) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                json!(dp),
                &DNS_POLICIES,
            ));
        }
    }
    for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
        if let Some(v) = obj::get_i64(spec, &[field]) {
            if field == "activeDeadlineSeconds" && v <= 0 {
                errs.push(FieldError::invalid(
                    format!("{path}.{field}"),
                    json!(v),
                    "must be between 1 and 2147483647, inclusive",
                ));
            }
        }
    }
    errs
}

/// Validates volumes and returns their names for mount checks.
fn validate_volumes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, v) in obj::array(spec, &["volumes"]).iter().enumerate() {
        let vp = format!("{path}.volumes[{i}]");
        let name = obj::str_or_empty(v, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{vp}.name"), ""));
        } else {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{vp}.name"), json!(name), msg));
            }
        }
        if names.iter().any(|n| n == name) {
            errs.push(FieldError::duplicate(format!("{vp}.name"), json!(name)));
        }
        let sources: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().filter(|k| k.as_str() != "name").collect())
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&vp, "must specify a volume type")),
            [_] => volume::validate_source(v, &vp, errs),
            [_, second, ..] => errs.push(FieldError::forbidden(
                format!("{vp}.{second}"),
                "may not specify more than 1 volume type",
            )),
        }
        names.push(name.to_string());
    }
    names
}

fn validate_container(
    c: &Value,
    cp: &str,
    volumes: &[String],
    all_names: &mut Vec<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = obj::str_or_empty(c, &["name"]);
    if name.is_empty() {
        errs.push(FieldError::required(format!("{cp}.name"), ""));
    } else {
        for msg in is_dns1123_label(name) {
            errs.push(FieldError::invalid(format!("{cp}.name"), json!(name), msg));
        }
        if all_names.iter().any(|n| n == name) {
            errs.push(FieldError::duplicate(format!("{cp}.name"), json!(name)));
        }
        all_names.push(name.to_string());
    }
    let image = obj::str_or_empty(c, &["image"]);
    if image.is_empty() {
        errs.push(FieldError::required(format!("{cp}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{cp}.image"),
            json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(pp) = obj::get_str(c, &["imagePullPolicy"]) {
        if !PULL_POLICIES.contains(&pp) {
            errs.push(FieldError::not_supported(
                format!("{cp}.imagePullPolicy"),
                json!(pp),
                &PULL_POLICIES,
            ));
        }
    }
    validate_ports(c, cp, errs);
    validate_env(c, cp, errs);
    validate_mounts(c, cp, volumes, errs);
    validate_resources(c, cp, errs);
}

fn validate_ports(c: &Value, cp: &str, errs: &mut Vec<FieldError>) {
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in obj::array(c, &["ports"]).iter().enumerate() {
        let pp = format!("{cp}.ports[{i}]");
        let name = obj::str_or_empty(p, &["name"]);
        if !name.is_empty() {
            for msg in is_valid_port_name(name) {
                errs.push(FieldError::invalid(format!("{pp}.name"), json!(name), msg));
            }
            if names.contains(&name) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), json!(name)));
            }
            names.push(name);
        }
        let port = obj::get_i64(p, &["containerPort"]).unwrap_or(0);
        if port == 0 {
            errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
        } else {
            for msg in is_valid_port_num(port) {
                errs.push(FieldError::invalid(
                    format!("{pp}.containerPort"),
                    json!(port),
                    msg,
                ));
            }
        }
        let host_port = obj::get_i64(p, &["hostPort"]).unwrap_or(0);
        if host_port != 0 {
            for msg in is_valid_port_num(host_port) {
                errs.push(FieldError::invalid(
                    format!("{pp}.hostPort"),
                    json!(host_port),
                    msg,
                ));
            }
        }
        if let Some(proto) = obj::get_str(p, &["protocol"]) {
            if proto.is_empty() {
                errs.push(FieldError::required(format!("{pp}.protocol"), ""));
            } else if !PROTOCOLS.contains(&proto) {
                errs.push(FieldError::not_supported(
                    format!("{pp}.protocol"),
                    json!(proto),
                    &PROTOCOLS,
                ));
            }
        }
    }
}

fn validate_env(c: &Value, cp: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in obj::array(c, &["env"]).iter().enumerate() {
        let ep = format!("{cp}.env[{i}].name");
        let name = obj::str_or_empty(e, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else {
            for msg in is_env_var_name(name) {
                errs.push(FieldError::invalid(&ep, json!(name), msg));
            }
        }
        downward::validate_env_var(e, &format!("{cp}.env[{i}]"), errs);
    }
    for (i, e) in obj::array(c, &["envFrom"]).iter().enumerate() {
        downward::validate_env_from(e, &format!("{cp}.envFrom[{i}]"), errs);
    }
}

fn validate_mounts(c: &Value, cp: &str, volumes: &[String], errs: &mut Vec<FieldError>) {
    let mut paths: Vec<&str> = Vec::new();
    for (i, m) in obj::array(c, &["volumeMounts"]).iter().enumerate() {
        let mp = format!("{cp}.volumeMounts[{i}]");
        let name = obj::str_or_empty(m, &["name"]);
        if name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        }
        if !volumes.iter().any(|v| v == name) {
            errs.push(FieldError::not_found(format!("{mp}.name"), json!(name)));
        }
        let path = obj::str_or_empty(m, &["mountPath"]);
        if path.is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        }
        if paths.contains(&path) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                json!(path),
                "must be unique",
            ));
        }
        volume::validate_mount_paths(m, &mp, errs);
        paths.push(path);
    }
}

fn quantity_text(v: &Value) -> String {
    obj::scalar_string(v)
}

fn validate_resources(c: &Value, cp: &str, errs: &mut Vec<FieldError>) {
    let mut limits: Vec<(String, f64, String)> = Vec::new();
    for section in ["limits", "requests"] {
        for (name, q) in obj::object(c, &["resources", section])
            .into_iter()
            .flatten()
        {
            let qp = format!("{cp}.resources.{section}[{name}]");
            let text = quantity_text(q);
            let value = match parse_quantity(&text) {
                Ok(v) => v,
                Err(e) => {
                    errs.push(FieldError::invalid(qp, json!(text), e.to_string()));
                    continue;
                }
            };
            if value < 0.0 {
                errs.push(FieldError::invalid(
                    &qp,
                    json!(text),
                    "must be greater than or equal to 0",
                ));
                continue;
            }
            if section == "limits" {
                limits.push((name.clone(), value, text));
            } else if let Some((_, lv, lt)) = limits.iter().find(|(n, _, _)| n == name) {
                if value > *lv {
                    errs.push(FieldError::invalid(
                        qp,
                        json!(text),
                        format!("must be less than or equal to {name} limit of {lt}"),
                    ));
                }
            }
        }
    }
}

/// The spec-immutability rule of `ValidatePodUpdate`: everything but the listed mutable
/// fields must stay as it was.
fn validate_spec_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut mutated = new.clone();
    // Apply the old values of the mutable fields to a copy of the new spec; any remaining
    // difference is a forbidden change.
    for field in ["containers", "initContainers"] {
        let old_list = obj::array(old, &[field]);
        if let Some(list) = mutated.get_mut(field).and_then(Value::as_array_mut) {
            if list.len() == old_list.len() {
                for (c, oc) in list.iter_mut().zip(old_list) {
                    if let (Some(m), Some(img)) = (c.as_object_mut(), oc.get("image")) {
                        m.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    if let Some(m) = mutated.as_object_mut() {
        restore(m, old, "activeDeadlineSeconds");
        let old_tol = obj::array(old, &["tolerations"]);
        let new_tol = obj::array(new, &["tolerations"]);
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            restore(m, old, "tolerations");
        }
        let old_grace = obj::get_i64(old, &["terminationGracePeriodSeconds"]);
        let new_grace = obj::get_i64(new, &["terminationGracePeriodSeconds"]);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            restore(m, old, "terminationGracePeriodSeconds");
        }
    }
    if &mutated == old {
        return Vec::new();
    }
    let changed = changed_fields(&mutated, old);
    vec![FieldError::forbidden(
        "spec",
        format!("{POD_UPDATE_FORBIDDEN}\n  changed: {}", changed.join(", ")),
    )]
}

fn restore(m: &mut serde_json::Map<String, Value>, old: &Value, field: &str) {
    match old.get(field) {
        Some(v) => {
            m.insert(field.to_string(), v.clone());
        }
        None => {
            m.remove(field);
        }
    }
}

/// Top-level spec fields that differ, for the human part of the Forbidden message
/// (Kubernetes prints a Go struct diff there; nothing parses it).
fn changed_fields(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["spec".to_string()];
    };
    let mut out: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn msgs(o: &Value, old: Option<&Value>) -> Vec<String> {
        validate(o, old).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pod_create_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (pod(json!({"containers": [{"name": "a", "image": "nginx"}]})), vec![]),
            (pod(json!({})), vec!["spec.containers: Required value"]),
            (
                pod(json!({"containers": [{"name": "a"}]})),
                vec!["spec.containers[0].image: Required value"],
            ),
            (
                pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]})),
                vec!["spec.containers[1].name: Duplicate value: \"a\""],
            ),
            (
                pod(json!({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "y"}]})),
                vec!["spec.initContainers[0].name: Duplicate value: \"a\""],
            ),
            (
                pod(json!({"containers": [{"name": "A", "image": "x"}]})),
                vec!["spec.containers[0].name: Invalid value: \"A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"],
            ),
            (
                pod(json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]})),
                vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
            ),
            (
                pod(json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}, {"containerPort": 80, "protocol": "ICMP"}]}]})),
                vec![
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                pod(json!({"containers": [{"name": "a", "image": "x", "env": [{"name": "1X"}, {"name": ""}]}]})),
                vec![
                    "spec.containers[0].env[0].name: Invalid value: \"1X\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
                    "spec.containers[0].env[1].name: Required value",
                ],
            ),
            (
                pod(json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}, {"name": "w"}],
                           "containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "nope", "mountPath": "/a"}]}]})),
                vec![
                    "spec.volumes[1].name: Duplicate value: \"v\"",
                    "spec.volumes[2]: Required value: must specify a volume type",
                    "spec.containers[0].volumeMounts[1].name: Not found: \"nope\"",
                    "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
                ],
            ),
            (
                pod(json!({"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1", "memory": "lots"}}}]})),
                vec![
                    "spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
                    "spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ],
            ),
        ];
        for (o, want) in cases {
            assert_eq!(msgs(&o, None), want, "{o}");
        }
    }

    #[test]
    fn pod_update_allows_image_and_tolerations_additions() {
        let old = pod(
            json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [{"key": "k"}]}),
        );
        let new = pod(
            json!({"containers": [{"name": "a", "image": "y"}], "tolerations": [{"key": "k"}, {"key": "j"}], "activeDeadlineSeconds": 5}),
        );
        assert!(msgs(&new, Some(&old)).is_empty());
    }

    #[test]
    fn pod_update_forbids_other_spec_changes() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}], "nodeName": "n1"}));
        let new = pod(json!({"containers": [{"name": "a", "image": "x"}], "nodeName": "n2"}));
        let got = msgs(&new, Some(&old));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with(&format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}\n")),
            "{}",
            got[0]
        );
        assert!(got[0].ends_with("changed: nodeName"));
        let removed_tol = pod(
            json!({"containers": [{"name": "a", "image": "x"}], "nodeName": "n1", "tolerations": []}),
        );
        let old_tol = pod(
            json!({"containers": [{"name": "a", "image": "x"}], "nodeName": "n1", "tolerations": [{"key": "k"}]}),
        );
        assert_eq!(msgs(&removed_tol, Some(&old_tol)).len(), 1);
    }
}
