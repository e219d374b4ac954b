//! Admission plugins that change objects beyond defaulting, with settings of the server
//! (kube-apiserver flags) rather than fixed rules.

use serde_json::{json, Value};

use crate::obj;
use crate::taints::{NOT_READY as NOT_READY_TAINT, UNREACHABLE as UNREACHABLE_TAINT};

/// The DefaultTolerationSeconds plugin: every pod tolerates a not-ready or unreachable node
/// for this long before the taint eviction deletes it (kube-apiserver's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

impl DefaultTolerationSeconds {
    /// Adds the toleration of each taint a pod does not tolerate yet at NoExecute (a
    /// toleration with an empty key or effect counts, as in Kubernetes). Idempotent.
    pub fn admit(&self, kind: &str, obj: &mut Value) {
        if kind != "Pod" {
            return;
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
        let Some(list) = tolerations.as_array_mut() else {
            return;
        };
        for (taint, seconds) in [
            (NOT_READY_TAINT, self.not_ready),
            (UNREACHABLE_TAINT, self.unreachable),
        ] {
            let tolerated = list.iter().any(|t| {
                let key = obj::str_or_empty(t, &["key"]);
                let effect = obj::str_or_empty(t, &["effect"]);
                (key.is_empty() || key == taint) && (effect.is_empty() || effect == "NoExecute")
            });
            if !tolerated {
                list.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
            }
        }
    }
}

/// The DefaultStorageClass plugin: a claim that names no class (as opposed to the empty
/// class `""`) gets the cluster's default one, if there is one.
pub fn default_storage_class(claim: &mut Value, classes: &[Value]) {
    let spec = &mut claim["spec"];
    if !spec.is_object() || !spec["storageClassName"].is_null() {
        return;
    }
    if let Some(class) = crate::storage_class::default_class(classes) {
        spec["storageClassName"] = json!(obj::name(class));
    }
}

/// The StorageObjectInUseProtection plugin: a claim keeps a finalizer that the volume
/// binder drops once no pod uses the claim, so it is never removed from under a pod.
pub fn protect_claim(claim: &mut Value) {
    let protection = json!(crate::persistent_volumes::CLAIM_PROTECTION);
    let finalizers = &mut claim["metadata"]["finalizers"];
    match finalizers.as_array_mut() {
        Some(f) if f.contains(&protection) => {}
        Some(f) => f.push(protection),
        None => *finalizers = json!([protection]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_get_the_default_class_and_protection() {
        let classes = [crate::storage_class::local_path_class()];
        let mut claim = json!({"metadata": {"name": "c"}, "spec": {}});
        default_storage_class(&mut claim, &classes);
        protect_claim(&mut claim);
        protect_claim(&mut claim);
        assert_eq!(claim["spec"]["storageClassName"], "local-path");
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!([crate::persistent_volumes::CLAIM_PROTECTION])
        );
        // The empty class is a choice: no class.
        let mut none = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": ""}});
        default_storage_class(&mut none, &classes);
        assert_eq!(none["spec"]["storageClassName"], "");
    }

    fn admitted(tolerations: Value) -> Value {
        let mut pod = json!({"spec": {"containers": [], "tolerations": tolerations}});
        let seconds = DefaultTolerationSeconds {
            not_ready: 7,
            unreachable: 9,
        };
        seconds.admit("Pod", &mut pod);
        let once = pod.clone();
        seconds.admit("Pod", &mut pod);
        assert_eq!(pod, once, "admitting twice changes nothing");
        pod["spec"]["tolerations"].clone()
    }

    #[test]
    fn pods_without_them_get_both_tolerations_with_the_configured_seconds() {
        let mut pod = json!({"spec": {"containers": []}});
        DefaultTolerationSeconds::default().admit("Pod", &mut pod);
        assert_eq!(pod["spec"]["tolerations"][0]["tolerationSeconds"], 300);
        assert_eq!(
            admitted(json!([])),
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 9}
            ])
        );
    }

    #[test]
    fn a_pod_tolerating_one_taint_gets_only_the_other() {
        let own = json!({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1});
        let got = admitted(json!([own.clone()]));
        assert_eq!(got.as_array().map(Vec::len), Some(2));
        assert_eq!(got[0], own);
        assert_eq!(got[1]["key"], NOT_READY_TAINT);
    }

    #[test]
    fn tolerating_every_taint_needs_nothing_more() {
        let all = json!([{"operator": "Exists"}]);
        assert_eq!(admitted(all.clone()), all);
        let no_execute = json!([{"operator": "Exists", "effect": "NoExecute"}]);
        assert_eq!(admitted(no_execute.clone()), no_execute);
    }

    #[test]
    fn other_kinds_are_left_alone() {
        let mut rs = json!({"spec": {}});
        DefaultTolerationSeconds::default().admit("ReplicaSet", &mut rs);
        assert_eq!(rs, json!({"spec": {}}));
    }
}
