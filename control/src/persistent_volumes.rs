//! Which PersistentVolume may serve which PersistentVolumeClaim, and on which nodes: the
//! pure rules shared by the binder (`controllers::volume_binder`) and the scheduler
//! (Kubernetes' `pkg/controller/volume/persistentvolume` matching and the scheduler's
//! VolumeBinding checks).

use std::sync::Arc;

use serde_json::Value;

use crate::obj;
use crate::selectors::LabelSelector;
use crate::validation::parse_quantity;

/// The claim annotation through which the scheduler tells the provisioner and the binder
/// on which node the first consumer of a `WaitForFirstConsumer` claim will run.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On volumes and claims that the binder (not a user) bound.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On claims whose binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On volumes a provisioner created.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Keeps a claim while pods use it (the `kubernetes.io/pvc-protection` finalizer).
pub const CLAIM_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// The class a claim asks for; `""` is "no class".
pub fn claim_class(claim: &Value) -> &str {
    obj::str_or_empty(claim, &["spec", "storageClassName"])
}

pub fn volume_class(volume: &Value) -> &str {
    obj::str_or_empty(volume, &["spec", "storageClassName"])
}

/// Bytes a claim requests (0 when unparseable: validation refuses those).
pub fn requested_bytes(claim: &Value) -> f64 {
    quantity(obj::get(
        claim,
        &["spec", "resources", "requests", "storage"],
    ))
}

pub fn capacity_bytes(volume: &Value) -> f64 {
    quantity(obj::get(volume, &["spec", "capacity", "storage"]))
}

fn quantity(q: Option<&Value>) -> f64 {
    q.map(obj::scalar_string)
        .and_then(|s| parse_quantity(&s).ok())
        .unwrap_or(0.0)
}

/// Whether the volume's `claimRef` names this claim (by uid when the ref has one).
pub fn is_claimed_by(volume: &Value, claim: &Value) -> bool {
    let Some(r) = obj::get(volume, &["spec", "claimRef"]) else {
        return false;
    };
    let uid = obj::str_or_empty(r, &["uid"]);
    obj::str_or_empty(r, &["name"]) == obj::name(claim)
        && obj::str_or_empty(r, &["namespace"]) == obj::namespace(claim)
        && (uid.is_empty() || uid == obj::str_or_empty(claim, &["metadata", "uid"]))
}

fn is_deleting(o: &Value) -> bool {
    obj::get(o, &["metadata", "deletionTimestamp"]).is_some()
}

/// The access modes of the claim are all offered by the volume.
fn offers_modes(volume: &Value, claim: &Value) -> bool {
    let offered = obj::array(volume, &["spec", "accessModes"]);
    obj::array(claim, &["spec", "accessModes"])
        .iter()
        .all(|m| offered.contains(m))
}

fn volume_mode(o: &Value) -> &str {
    match obj::str_or_empty(o, &["spec", "volumeMode"]) {
        "" => "Filesystem",
        m => m,
    }
}

/// `checkVolumeSatisfyClaim` plus availability: the volume is free (or already promised to
/// this claim), of the claim's class and volume mode, offers its access modes, is at least
/// as large as requested, and carries the labels of the claim's selector.
pub fn satisfies(volume: &Value, claim: &Value) -> bool {
    let free = match obj::get(volume, &["spec", "claimRef"]) {
        None => true,
        Some(_) => is_claimed_by(volume, claim),
    };
    let selected = match obj::get(claim, &["spec", "selector"]) {
        None => true,
        Some(s) => LabelSelector::from_json(s).is_ok_and(|sel| sel.matches(obj::labels(volume))),
    };
    free && selected
        && !is_deleting(volume)
        && volume_class(volume) == claim_class(claim)
        && volume_mode(volume) == volume_mode(claim)
        && offers_modes(volume, claim)
        && capacity_bytes(volume) >= requested_bytes(claim)
}

/// Whether `node` meets the volume's required node affinity (always, without one).
pub fn node_fits(volume: &Value, node: &Value) -> bool {
    let terms = obj::array(
        volume,
        &["spec", "nodeAffinity", "required", "nodeSelectorTerms"],
    );
    obj::get(volume, &["spec", "nodeAffinity", "required"]).is_none()
        || terms.iter().any(|t| term_matches(t, node))
}

/// One `NodeSelectorTerm`: its expressions on labels and its fields (`metadata.name`) all
/// hold; an empty term matches nothing.
fn term_matches(term: &Value, node: &Value) -> bool {
    let expressions = obj::array(term, &["matchExpressions"]);
    let fields = obj::array(term, &["matchFields"]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels_hold = expressions.is_empty()
        || LabelSelector::from_json(&serde_json::json!({"matchExpressions": expressions}))
            .is_ok_and(|s| s.matches(obj::labels(node)));
    let fields_hold = fields.iter().all(|f| {
        let values = obj::array(f, &["values"]);
        let name = Value::from(obj::name(node));
        obj::str_or_empty(f, &["key"]) == "metadata.name"
            && match obj::str_or_empty(f, &["operator"]) {
                "In" => values.contains(&name),
                "NotIn" => !values.contains(&name),
                _ => false,
            }
    });
    labels_hold && fields_hold
}

/// The volume to bind `claim` to (`findBestMatchForClaim`): one already promised to it,
/// else the smallest that satisfies it — and, once the claim's first consumer is placed
/// (`node`), that the node can reach.
pub fn best_volume<'a>(
    claim: &Value,
    volumes: impl IntoIterator<Item = &'a Value>,
    node: Option<&Value>,
) -> Option<&'a Value> {
    let mut candidates: Vec<&Value> = volumes
        .into_iter()
        .filter(|v| satisfies(v, claim))
        .filter(|v| node.is_none_or(|n| node_fits(v, n)))
        .collect();
    if let Some(promised) = candidates.iter().find(|v| is_claimed_by(v, claim)) {
        return Some(promised);
    }
    candidates.sort_by(|a, b| capacity_bytes(a).total_cmp(&capacity_bytes(b)));
    candidates.first().copied()
}

/// The claims a pod's volumes name.
pub fn pod_claims(pod: &Value) -> impl Iterator<Item = &str> {
    obj::array(pod, &["spec", "volumes"])
        .iter()
        .filter_map(|v| obj::get_str(v, &["persistentVolumeClaim", "claimName"]))
}

/// Whether a pod still holds its volumes (not finished).
pub fn pod_is_active(pod: &Value) -> bool {
    !matches!(
        obj::str_or_empty(pod, &["status", "phase"]),
        "Succeeded" | "Failed"
    )
}

/// What the scheduler's volume checks look at: the pod's namespace's claims, and the
/// cluster's volumes, classes and pods.
pub struct VolumeView<'a> {
    pub claims: &'a [Arc<Value>],
    pub volumes: &'a [Arc<Value>],
    pub classes: &'a [Arc<Value>],
    pub pods: &'a [Arc<Value>],
}

fn find<'a>(objects: &'a [Arc<Value>], name: &str) -> Option<&'a Value> {
    objects.iter().map(|o| &**o).find(|o| obj::name(o) == name)
}

/// Whether a claim may be used from several nodes at once.
fn shared_across_nodes(claim: &Value) -> bool {
    obj::array(claim, &["spec", "accessModes"])
        .iter()
        .any(|m| m == "ReadWriteMany" || m == "ReadOnlyMany")
}

/// The scheduler's VolumeBinding and volume-restriction filters for `pod` on `node`:
/// `Err` carries Kubernetes' reason for the node.
pub fn fits_node(pod: &Value, node: &Value, view: &VolumeView) -> Result<(), String> {
    let namespace = obj::namespace(pod);
    for name in pod_claims(pod) {
        let Some(claim) = find(view.claims, name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if obj::get(claim, &["metadata", "deletionTimestamp"]).is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let used_elsewhere = view.pods.iter().any(|p| {
            let elsewhere = obj::str_or_empty(p, &["spec", "nodeName"]);
            obj::namespace(p) == namespace
                && !elsewhere.is_empty()
                && elsewhere != obj::name(node)
                && pod_is_active(p)
                && pod_claims(p).any(|c| c == name)
        });
        if used_elsewhere && !shared_across_nodes(claim) {
            return Err(
                "node(s) had a ReadWriteOnce volume in use by a pod on another node".into(),
            );
        }
        let volume_name = obj::str_or_empty(claim, &["spec", "volumeName"]);
        if !volume_name.is_empty() {
            match find(view.volumes, volume_name) {
                None => {
                    return Err(
                        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                            .into(),
                    )
                }
                Some(v) if !node_fits(v, node) => {
                    return Err("node(s) had volume node affinity conflict".into())
                }
                Some(_) => continue,
            }
        }
        let class = find(view.classes, claim_class(claim));
        let waits = class.is_some_and(|c| {
            obj::str_or_empty(c, &["volumeBindingMode"]) == "WaitForFirstConsumer"
        });
        if !waits {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        let provisionable = class.is_some_and(|c| {
            !obj::str_or_empty(c, &["provisioner"]).is_empty()
                && obj::str_or_empty(c, &["provisioner"]) != "kubernetes.io/no-provisioner"
        });
        let volumes = view.volumes.iter().map(|v| &**v);
        if !provisionable && best_volume(claim, volumes, Some(node)).is_none() {
            return Err("node(s) didn't find available persistent volumes to bind".into());
        }
    }
    Ok(())
}

/// The pod's claims that wait for their first consumer: the scheduler names the chosen
/// node on them ([`SELECTED_NODE`]) before it binds the pod.
pub fn awaiting_consumer(pod: &Value, view: &VolumeView) -> Vec<String> {
    pod_claims(pod)
        .filter_map(|name| find(view.claims, name))
        .filter(|c| obj::str_or_empty(c, &["spec", "volumeName"]).is_empty())
        .filter(|c| obj::get(c, &["metadata", "annotations", SELECTED_NODE]).is_none())
        .map(|c| obj::name(c).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(spec: Value) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default", "uid": "c1"}, "spec": spec})
    }

    fn volume(name: &str, size: &str, extra: Value) -> Value {
        let mut v = json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/d"}, "storageClassName": ""}});
        for (k, x) in extra.as_object().into_iter().flatten() {
            v["spec"][k] = x.clone();
        }
        v
    }

    fn rwo(size: &str) -> Value {
        claim(
            json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
            "resources": {"requests": {"storage": size}}}),
        )
    }

    #[test]
    fn satisfaction_table() {
        let c = rwo("1Gi");
        let cases = [
            (volume("v", "1Gi", json!({})), true),
            (volume("v", "512Mi", json!({})), false),
            (
                volume("v", "2Gi", json!({"storageClassName": "fast"})),
                false,
            ),
            (
                volume("v", "2Gi", json!({"accessModes": ["ReadOnlyMany"]})),
                false,
            ),
            (volume("v", "2Gi", json!({"volumeMode": "Block"})), false),
            (
                volume(
                    "v",
                    "2Gi",
                    json!({"claimRef": {"namespace": "default", "name": "other"}}),
                ),
                false,
            ),
            (
                volume(
                    "v",
                    "2Gi",
                    json!({"claimRef": {"namespace": "default", "name": "data", "uid": "c1"}}),
                ),
                true,
            ),
            (
                volume(
                    "v",
                    "2Gi",
                    json!({"claimRef": {"namespace": "default", "name": "data", "uid": "old"}}),
                ),
                false,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(satisfies(&v, &c), want, "{v}");
        }
        let mut selective = rwo("1Gi");
        selective["spec"]["selector"] = json!({"matchLabels": {"tier": "slow"}});
        assert!(!satisfies(&volume("v", "1Gi", json!({})), &selective));
    }

    #[test]
    fn the_smallest_fit_wins_unless_one_is_promised() {
        let c = rwo("1Gi");
        let volumes = [
            volume("big", "10Gi", json!({})),
            volume("small", "2Gi", json!({})),
            volume("tiny", "100Mi", json!({})),
        ];
        assert_eq!(obj::name(best_volume(&c, &volumes, None).unwrap()), "small");
        let promised = volume(
            "promised",
            "10Gi",
            json!({"claimRef": {"namespace": "default", "name": "data"}}),
        );
        let with_promise = [volumes[1].clone(), promised];
        assert_eq!(
            obj::name(best_volume(&c, &with_promise, None).unwrap()),
            "promised"
        );
    }

    #[test]
    fn scheduler_volume_checks_table() {
        let node = |name: &str| json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        let pod = |name: &str, on: &str| {
            json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": on, "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": "Running"}})
        };
        let wffc = json!({"metadata": {"name": "local-path"}, "provisioner": "wkube.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"});
        let immediate = json!({"metadata": {"name": "now"}, "provisioner": "x.io/y",
            "volumeBindingMode": "Immediate"});
        let classes = [Arc::new(wffc), Arc::new(immediate)];
        let with_class = |class: &str| {
            let mut c = rwo("1Gi");
            c["spec"]["storageClassName"] = json!(class);
            c
        };
        let mut bound = rwo("1Gi");
        bound["spec"]["volumeName"] = json!("on-a");
        let on_a = volume(
            "on-a",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}),
        );
        let volumes = [Arc::new(on_a)];
        let check = |claims: &[Arc<Value>], pods: &[Arc<Value>], on: &str| {
            let view = VolumeView {
                claims,
                volumes: &volumes,
                classes: &classes,
                pods,
            };
            fits_node(&pod("new", ""), &node(on), &view)
        };
        assert_eq!(
            check(&[], &[], "a").unwrap_err(),
            "persistentvolumeclaim \"data\" not found"
        );
        assert!(check(&[Arc::new(with_class("local-path"))], &[], "b").is_ok());
        assert_eq!(
            check(&[Arc::new(with_class("now"))], &[], "b").unwrap_err(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        let bound = [Arc::new(bound)];
        assert!(check(&bound, &[], "a").is_ok());
        assert_eq!(
            check(&bound, &[], "b").unwrap_err(),
            "node(s) had volume node affinity conflict"
        );
        let user_on_b = [Arc::new(pod("old", "b"))];
        let c = [Arc::new(with_class("local-path"))];
        assert!(check(&c, &user_on_b, "b").is_ok());
        assert_eq!(
            check(&c, &user_on_b, "a").unwrap_err(),
            "node(s) had a ReadWriteOnce volume in use by a pod on another node"
        );
        let view = VolumeView {
            claims: &c,
            volumes: &volumes,
            classes: &classes,
            pods: &[],
        };
        assert_eq!(awaiting_consumer(&pod("new", ""), &view), ["data"]);
    }

    #[test]
    fn node_affinity_narrows_the_choice() {
        let on = |node: &str| {
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}})
        };
        let node = |name: &str| json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        let a = volume("on-a", "1Gi", json!({"nodeAffinity": on("a")}));
        assert!(node_fits(&a, &node("a")));
        assert!(!node_fits(&a, &node("b")));
        assert!(node_fits(&volume("anywhere", "1Gi", json!({})), &node("b")));
        let by_field = volume(
            "f",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}),
        );
        assert!(node_fits(&by_field, &node("b")));
        assert!(!node_fits(&by_field, &node("a")));
        let volumes = [a];
        assert!(best_volume(&rwo("1Gi"), &volumes, Some(&node("b"))).is_none());
        assert!(best_volume(&rwo("1Gi"), &volumes, Some(&node("a"))).is_some());
    }
}
