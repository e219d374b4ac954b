//! PersistentVolume, PersistentVolumeClaim and StorageClass (`ValidatePersistentVolume`,
//! `ValidatePersistentVolumeClaim`, `ValidateStorageClass` and their update rules).

use super::meta::{self, NameRule};
use super::{parse_quantity, FieldError};
use crate::obj;
use serde_json::{json, Value};

pub const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// The volume sources a PersistentVolume may name (one of them, exactly).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "csi",
    "nfs",
    "iscsi",
    "fc",
    "cephfs",
    "rbd",
    "azureFile",
    "azureDisk",
    "gcePersistentDisk",
    "awsElasticBlockStore",
];

pub fn validate_volume(pv: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(pv, old, NameRule::Dns1123Subdomain);
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    access_modes(spec, "spec.accessModes", &mut errs);
    match obj::get(spec, &["capacity", "storage"]) {
        None => errs.push(FieldError::required("spec.capacity[storage]", "")),
        Some(q) => positive_quantity(q, "spec.capacity[storage]", &mut errs),
    }
    let sources: Vec<&str> = VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => errs.push(FieldError::required("spec", "must specify a volume type")),
        [_] => {}
        [_, more @ ..] => errs.extend(more.iter().map(|s| {
            FieldError::forbidden(
                format!("spec.{s}"),
                "may not specify more than 1 volume type",
            )
        })),
    }
    for (source, field) in [("hostPath", "path"), ("local", "path")] {
        if spec.get(source).is_some_and(|s| !s.is_null())
            && obj::str_or_empty(spec, &[source, field]).is_empty()
        {
            errs.push(FieldError::required(format!("spec.{source}.{field}"), ""));
        }
    }
    if spec.get("local").is_some_and(|s| !s.is_null()) && spec.get("nodeAffinity").is_none() {
        errs.push(FieldError::required(
            "spec.nodeAffinity",
            "Local volume requires node affinity",
        ));
    }
    let policy = obj::str_or_empty(spec, &["persistentVolumeReclaimPolicy"]);
    let policies = ["Delete", "Recycle", "Retain"];
    if !policies.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            json!(policy),
            &policies,
        ));
    }
    if let Some(old) = old {
        // Binding fills `claimRef` once; the volume source itself never changes.
        for source in VOLUME_SOURCES {
            if spec.get(*source) != obj::get(old, &["spec", source]) {
                errs.push(FieldError::forbidden(
                    format!("spec.{source}"),
                    "spec.persistentvolumesource is immutable after creation",
                ));
            }
        }
    }
    errs
}

pub fn validate_claim(pvc: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(pvc, old, NameRule::Dns1123Subdomain);
    let spec = pvc.get("spec").unwrap_or(&Value::Null);
    errs.extend(claim_spec(spec, "spec"));
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        // Only the requests may change, and the binder sets `volumeName` once.
        let mut comparable = spec.clone();
        let mut old_comparable = old_spec.clone();
        for s in [&mut comparable, &mut old_comparable] {
            if let Some(m) = s.as_object_mut() {
                m.remove("resources");
            }
        }
        if obj::str_or_empty(old_spec, &["volumeName"]).is_empty() {
            if let Some(m) = comparable.as_object_mut() {
                m.remove("volumeName");
            }
            if let Some(m) = old_comparable.as_object_mut() {
                m.remove("volumeName");
            }
        }
        if comparable != old_comparable {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
    errs
}

fn claim_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    access_modes(spec, &format!("{path}.accessModes"), &mut errs);
    let storage = format!("{path}.resources[storage]");
    match obj::get(spec, &["resources", "requests", "storage"]) {
        None => errs.push(FieldError::required(storage, "")),
        Some(q) => positive_quantity(q, &storage, &mut errs),
    }
    let mode = obj::str_or_empty(spec, &["volumeMode"]);
    if !mode.is_empty() && mode != "Filesystem" && mode != "Block" {
        errs.push(FieldError::not_supported(
            format!("{path}.volumeMode"),
            json!(mode),
            &["Block", "Filesystem"],
        ));
    }
    errs
}

pub fn validate_class(sc: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = meta::validate(sc, old, NameRule::Dns1123Subdomain);
    let provisioner = obj::str_or_empty(sc, &["provisioner"]);
    if provisioner.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else if provisioner.len() > 63 + 253 + 1 {
        errs.push(FieldError::too_long("provisioner", 63 + 253 + 1));
    }
    let policy = obj::str_or_empty(sc, &["reclaimPolicy"]);
    if !["Delete", "Retain"].contains(&policy) {
        errs.push(FieldError::not_supported(
            "reclaimPolicy",
            json!(policy),
            &["Delete", "Retain"],
        ));
    }
    let mode = obj::str_or_empty(sc, &["volumeBindingMode"]);
    if !["Immediate", "WaitForFirstConsumer"].contains(&mode) {
        errs.push(FieldError::not_supported(
            "volumeBindingMode",
            json!(mode),
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    if let Some(old) = old {
        for (field, detail) in [
            ("provisioner", "updates to provisioner are forbidden."),
            ("parameters", "updates to parameters are forbidden."),
            ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
            ("volumeBindingMode", "field is immutable"),
        ] {
            if sc.get(field) != old.get(field) {
                errs.push(FieldError::forbidden(field, detail));
            }
        }
    }
    errs
}

fn access_modes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let modes = obj::array(spec, &["accessModes"]);
    if modes.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let mode = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&mode) {
            errs.push(FieldError::not_supported(path, m.clone(), ACCESS_MODES));
        }
    }
    let once_pod = modes.iter().any(|m| m == "ReadWriteOncePod");
    if once_pod && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn positive_quantity(q: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let text = obj::scalar_string(q);
    match parse_quantity(&text) {
        Err(_) => errs.push(FieldError::invalid(
            path,
            json!(text),
            "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
        )),
        Ok(v) if v <= 0.0 => errs.push(FieldError::invalid(
            path,
            json!(text),
            "must be greater than zero",
        )),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn pv(spec: Value) -> Value {
        json!({"metadata": {"name": "pv1"}, "spec": spec})
    }

    #[test]
    fn volume_table() {
        let good = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}, "persistentVolumeReclaimPolicy": "Retain"});
        assert!(validate_volume(&pv(good.clone()), None).is_empty());
        let cases = [
            (
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain"}),
                "spec: Required value: must specify a volume type",
            ),
            (
                json!({"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}),
                "spec.capacity[storage]: Required value",
            ),
            (
                json!({"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}),
                "spec.accessModes: Required value: at least 1 access mode is required",
            ),
            (
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "nfs": {"server": "s", "path": "/"}, "persistentVolumeReclaimPolicy": "Retain"}),
                "spec.nfs: Forbidden: may not specify more than 1 volume type",
            ),
            (
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}),
                "spec.nodeAffinity: Required value: Local volume requires node affinity",
            ),
            (
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Keep"}),
                "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
            ),
            (
                json!({"capacity": {"storage": "0"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}),
                "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(msgs(validate_volume(&pv(spec), None)), vec![want]);
        }
        let mut moved = good.clone();
        moved["hostPath"]["path"] = json!("/elsewhere");
        assert_eq!(
            msgs(validate_volume(&pv(moved), Some(&pv(good)))),
            vec![
                "spec.hostPath: Forbidden: spec.persistentvolumesource is immutable after creation"
            ]
        );
    }

    fn pvc(spec: Value) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn claim_table() {
        let good = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        assert!(validate_claim(&pvc(good.clone()), None).is_empty());
        let cases = [
            (
                json!({"resources": {"requests": {"storage": "1Gi"}}}),
                "spec.accessModes: Required value: at least 1 access mode is required",
            ),
            (
                json!({"accessModes": ["ReadWriteOnce"]}),
                "spec.resources[storage]: Required value",
            ),
            (
                json!({"accessModes": ["WriteSometimes"], "resources": {"requests": {"storage": "1Gi"}}}),
                "spec.accessModes: Unsupported value: \"WriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(msgs(validate_claim(&pvc(spec), None)), vec![want]);
        }
        // The binder may set volumeName once; the requests may grow; nothing else changes.
        let mut bound = good.clone();
        bound["volumeName"] = json!("pv1");
        bound["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(validate_claim(&pvc(bound.clone()), Some(&pvc(good.clone()))).is_empty());
        let mut rebound = bound.clone();
        rebound["volumeName"] = json!("pv2");
        assert_eq!(
            msgs(validate_claim(&pvc(rebound), Some(&pvc(bound)))),
            vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
    }

    #[test]
    fn class_table() {
        let good = json!({"metadata": {"name": "fast"}, "provisioner": "wkube.io/local-path",
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        assert!(validate_class(&good, None).is_empty());
        let mut bad = good.clone();
        bad["provisioner"] = json!("");
        bad["volumeBindingMode"] = json!("Later");
        assert_eq!(
            msgs(validate_class(&bad, None)),
            vec![
                "provisioner: Required value",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
        let mut changed = good.clone();
        changed["provisioner"] = json!("other.io/x");
        assert_eq!(
            msgs(validate_class(&changed, Some(&good))),
            vec!["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
    }
}
