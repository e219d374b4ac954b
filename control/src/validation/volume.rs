//! Pod volume sources and mount paths (`validateVolumeSource`, `validateKeyToPath`,
//! `validateLocalDescendingPath`, ...): the rules that keep a volume's files and a
//! mount inside where they belong.

use super::downward::{self, Use};
use super::FieldError;
use crate::obj;
use serde_json::{json, Value};

/// `sets.List` order of `supportedHostPathTypes`.
const HOST_PATH_TYPES: [&str; 8] = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

const MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// The source of volume `v` (at `vp`, e.g. `spec.volumes[0]`).
pub fn validate_source(v: &Value, vp: &str, errs: &mut Vec<FieldError>) {
    if let Some(cm) = v.get("configMap") {
        let p = format!("{vp}.configMap");
        if obj::str_or_empty(cm, &["name"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        key_to_paths(cm, &p, errs);
    }
    if let Some(s) = v.get("secret") {
        let p = format!("{vp}.secret");
        if obj::str_or_empty(s, &["secretName"]).is_empty() {
            errs.push(FieldError::required(format!("{p}.secretName"), ""));
        }
        key_to_paths(s, &p, errs);
    }
    if let Some(d) = v.get("downwardAPI") {
        let p = format!("{vp}.downwardAPI");
        mode(d, "defaultMode", &p, errs);
        downward_items(d, &p, errs);
    }
    if let Some(pr) = v.get("projected") {
        let p = format!("{vp}.projected");
        mode(pr, "defaultMode", &p, errs);
        for (i, src) in obj::array(pr, &["sources"]).iter().enumerate() {
            let sp = format!("{p}.sources[{i}]");
            for kind in ["configMap", "secret"] {
                if let Some(s) = src.get(kind) {
                    let kp = format!("{sp}.{kind}");
                    if obj::str_or_empty(s, &["name"]).is_empty() {
                        errs.push(FieldError::required(format!("{kp}.name"), ""));
                    }
                    key_to_paths(s, &kp, errs);
                }
            }
            if let Some(d) = src.get("downwardAPI") {
                downward_items(d, &format!("{sp}.downwardAPI"), errs);
            }
        }
    }
    if let Some(hp) = v.get("hostPath") {
        let p = format!("{vp}.hostPath");
        let path = obj::str_or_empty(hp, &["path"]);
        if path.is_empty() {
            errs.push(FieldError::required(format!("{p}.path"), ""));
        } else if has_backsteps(path) {
            errs.push(FieldError::invalid(
                format!("{p}.path"),
                json!(path),
                "must not contain '..'",
            ));
        }
        if let Some(t) = obj::get_str(hp, &["type"]) {
            if !HOST_PATH_TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    format!("{p}.type"),
                    json!(t),
                    &HOST_PATH_TYPES,
                ));
            }
        }
    }
}

/// `mountPath` and `subPath` of volume mount `m` (at `mp`).
pub fn validate_mount_paths(m: &Value, mp: &str, errs: &mut Vec<FieldError>) {
    let path = obj::str_or_empty(m, &["mountPath"]);
    if !path.is_empty() {
        // A WASI guest's preopens are absolute guest paths; a relative one would name
        // nothing (Kubernetes leaves this to the runtime, which fails the container).
        if !path.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                json!(path),
                "must be an absolute path",
            ));
        }
        if has_backsteps(path) {
            errs.push(FieldError::invalid(
                format!("{mp}.mountPath"),
                json!(path),
                "must not contain '..'",
            ));
        }
    }
    if let Some(sub) = obj::get_str(m, &["subPath"]).filter(|s| !s.is_empty()) {
        local_descending_path(sub, &format!("{mp}.subPath"), errs);
    }
}

fn key_to_paths(source: &Value, p: &str, errs: &mut Vec<FieldError>) {
    mode(source, "defaultMode", p, errs);
    for (i, item) in obj::array(source, &["items"]).iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if obj::str_or_empty(item, &["key"]).is_empty() {
            errs.push(FieldError::required(format!("{ip}.key"), ""));
        }
        item_path(item, &ip, errs);
        mode(item, "mode", &ip, errs);
    }
}

fn downward_items(d: &Value, p: &str, errs: &mut Vec<FieldError>) {
    for (i, item) in obj::array(d, &["items"]).iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        item_path(item, &ip, errs);
        mode(item, "mode", &ip, errs);
        if let Some(f) = item.get("fieldRef") {
            downward::field_ref(f, &format!("{ip}.fieldRef"), Use::Volume, errs);
        }
        if let Some(r) = item.get("resourceFieldRef") {
            downward::resource_field_ref(r, &format!("{ip}.resourceFieldRef"), errs);
        }
    }
}

/// `validateLocalNonReservedPath` of an item's `path`.
fn item_path(item: &Value, ip: &str, errs: &mut Vec<FieldError>) {
    let path = obj::str_or_empty(item, &["path"]);
    let field = format!("{ip}.path");
    if path.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    local_descending_path(path, &field, errs);
    if path.starts_with("..") {
        errs.push(FieldError::invalid(
            field,
            json!(path),
            "must not start with '..'",
        ));
    }
}

/// `validateLocalDescendingPath`: relative, and no `..` component.
fn local_descending_path(path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if path.starts_with('/') {
        errs.push(FieldError::invalid(
            field,
            json!(path),
            "must be a relative path",
        ));
    }
    if has_backsteps(path) {
        errs.push(FieldError::invalid(
            field,
            json!(path),
            "must not contain '..'",
        ));
    }
}

fn has_backsteps(path: &str) -> bool {
    path.split(['/', '\\']).any(|part| part == "..")
}

fn mode(v: &Value, field: &str, p: &str, errs: &mut Vec<FieldError>) {
    if let Some(m) = obj::get_i64(v, &[field]) {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(
                format!("{p}.{field}"),
                json!(m),
                MODE_MSG,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_msgs(v: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_source(&v, "spec.volumes[0]", &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    fn mount_msgs(m: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_mount_paths(&m, "m", &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn volume_source_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"configMap": {"name": "c", "items": [{"key": "k", "path": "a/b"}]}}), vec![]),
            (json!({"configMap": {}}), vec!["spec.volumes[0].configMap.name: Required value"]),
            (
                json!({"configMap": {"name": "c", "defaultMode": 4096, "items": [
                    {"key": "", "path": "../x"}, {"key": "k", "path": "/abs", "mode": -1}, {"key": "k", "path": "..x"}]}}),
                vec![
                    "spec.volumes[0].configMap.defaultMode: Invalid value: 4096: must be a number between 0 and 0777 (octal), both inclusive",
                    "spec.volumes[0].configMap.items[0].key: Required value",
                    "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'",
                    "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not start with '..'",
                    "spec.volumes[0].configMap.items[1].path: Invalid value: \"/abs\": must be a relative path",
                    "spec.volumes[0].configMap.items[1].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
                    "spec.volumes[0].configMap.items[2].path: Invalid value: \"..x\": must not start with '..'",
                ],
            ),
            (json!({"secret": {}}), vec!["spec.volumes[0].secret.secretName: Required value"]),
            (
                json!({"downwardAPI": {"items": [{"path": ""}]}}),
                vec!["spec.volumes[0].downwardAPI.items[0].path: Required value"],
            ),
            (
                json!({"projected": {"sources": [{"configMap": {"items": [{"key": "k", "path": "a/../b"}]}}]}}),
                vec![
                    "spec.volumes[0].projected.sources[0].configMap.name: Required value",
                    "spec.volumes[0].projected.sources[0].configMap.items[0].path: Invalid value: \"a/../b\": must not contain '..'",
                ],
            ),
            (
                json!({"hostPath": {"path": "/a/../b", "type": "Dir"}}),
                vec![
                    "spec.volumes[0].hostPath.path: Invalid value: \"/a/../b\": must not contain '..'",
                    "spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
                ],
            ),
        ];
        for (v, want) in cases {
            assert_eq!(volume_msgs(v.clone()), want, "{v}");
        }
    }

    #[test]
    fn mount_path_table() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"mountPath": "/etc/config", "subPath": "a/b"}),
                vec![],
            ),
            (
                json!({"mountPath": "etc"}),
                vec!["m.mountPath: Invalid value: \"etc\": must be an absolute path"],
            ),
            (
                json!({"mountPath": "/etc/../x"}),
                vec!["m.mountPath: Invalid value: \"/etc/../x\": must not contain '..'"],
            ),
            (
                json!({"mountPath": "/x", "subPath": "/abs/.."}),
                vec![
                    "m.subPath: Invalid value: \"/abs/..\": must be a relative path",
                    "m.subPath: Invalid value: \"/abs/..\": must not contain '..'",
                ],
            ),
        ];
        for (m, want) in cases {
            assert_eq!(mount_msgs(m.clone()), want, "{m}");
        }
    }
}
