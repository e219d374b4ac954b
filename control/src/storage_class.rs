//! StorageClasses and the one provisioner every wkube cluster has: `local-path`, a
//! directory per volume on the node that first runs a pod of the claim (like k3s' and
//! kind's local-path provisioner). The class is the cluster's default, binds when the first
//! consumer is scheduled (`WaitForFirstConsumer`), and deletes the directory when the claim
//! goes (`reclaimPolicy: Delete`).
//!
//! A provisioned volume is a CSI volume of [`LOCAL_PATH_DRIVER`] whose handle names the
//! directory under the node's storage root, with a node affinity to that node: the
//! control plane never needs to know where a node keeps its data.

use serde_json::{json, Value};

use crate::obj;

/// The name of the default class created at bootstrap.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The provisioner name of that class.
pub const LOCAL_PATH_PROVISIONER: &str = "wkube.io/local-path";
/// The CSI driver name in the volumes it provisions; nodes resolve its volume handles to
/// directories of their own.
pub const LOCAL_PATH_DRIVER: &str = "local-path.wkube.io";

const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether the class is marked as the default (`storageclass.kubernetes.io/is-default-class`).
pub fn is_default(class: &Value) -> bool {
    [DEFAULT_ANNOTATION, BETA_DEFAULT_ANNOTATION]
        .iter()
        .any(|a| obj::str_or_empty(class, &["metadata", "annotations", a]) == "true")
}

/// The default class among `classes`: with several, the newest, as Kubernetes picks.
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| is_default(c))
        .max_by_key(|c| obj::str_or_empty(c, &["metadata", "creationTimestamp"]).to_string())
}

/// The built-in `local-path` class, as bootstrap creates it.
pub fn local_path_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS, "annotations": {DEFAULT_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, default: bool, created: &str| {
            let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
            if default {
                c["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: "true"});
            }
            c
        };
        let classes = [
            class("old", true, "2024-01-01T00:00:00Z"),
            class("plain", false, "2024-03-01T00:00:00Z"),
            class("new", true, "2024-02-01T00:00:00Z"),
        ];
        assert_eq!(obj::name(default_class(&classes).unwrap()), "new");
        assert!(default_class(&classes[1..2]).is_none());
        assert!(is_default(&local_path_class()));
    }
}
