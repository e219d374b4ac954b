//! The PersistentVolume binder and the `local-path` provisioner (kube-controller-manager's
//! persistentvolume-binder, pvc-protection and a local-path provisioner in one loop).
//!
//! - A Pending claim is bound to the smallest free volume that satisfies it; a claim of a
//!   `WaitForFirstConsumer` class waits until the scheduler names its node
//!   ([`SELECTED_NODE`]), then binds to a volume that node reaches or has one provisioned
//!   there. Binding writes the volume's `claimRef` first, then the claim's `volumeName`
//!   (the authoritative half), then both phases, like Kubernetes.
//! - A volume whose claim is gone is `Released`; with `reclaimPolicy: Delete` it is then
//!   deleted (the node removes a local-path directory once its volume is gone).
//! - A claim being deleted keeps its `kubernetes.io/pvc-protection` finalizer until no
//!   running pod uses it.
//!
//! The decisions are pure ([`plan_claim`], [`plan_volume`]); [`reconcile`] writes them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::reflector::Cache;
use super::runner::{self, Action, Source};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::Part;
use crate::api::ApiError;
use crate::events::EventType;
use crate::obj;
use crate::persistent_volumes::{
    self as pv, BIND_COMPLETED, BOUND_BY_CONTROLLER, CLAIM_PROTECTION, PROVISIONED_BY,
    SELECTED_NODE,
};
use crate::storage_class::{LOCAL_PATH_DRIVER, LOCAL_PATH_PROVISIONER};
use crate::store::revision_of;

/// How soon an Immediate local-path claim looks again for a node to put its volume on.
const NO_NODE_RETRY: Duration = Duration::from_secs(1);

/// What the binder reconciles: a claim, or a (cluster-scoped) volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    Claim(Key),
    Volume(String),
}

/// One write the binder decides on.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Point the volume's `claimRef` at the claim.
    ClaimVolume {
        volume: Value,
        claim: Value,
    },
    /// Record the claim's `volumeName`, then its `Bound` phase with the volume's capacity.
    BindClaim {
        claim: Value,
        volume: Value,
    },
    VolumePhase {
        volume: Value,
        phase: &'static str,
    },
    /// A bound claim whose volume vanished.
    ClaimLost(Value),
    /// Create a local-path volume for the claim on `node`.
    Provision {
        claim: Value,
        class: Value,
        node: String,
    },
    DeleteVolume(Value),
    /// Drop the pvc-protection finalizer: nothing uses the claim any more.
    Unprotect(Value),
    Event {
        object: Value,
        kind: EventType,
        reason: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

fn event(object: &Value, kind: EventType, reason: &'static str, message: String) -> Change {
    Change::Event {
        object: object.clone(),
        kind,
        reason,
        message,
    }
}

/// What the cluster looks like to one claim's decision.
pub struct Observed<'a> {
    pub volumes: &'a [Arc<Value>],
    pub classes: &'a [Arc<Value>],
    pub nodes: &'a [Arc<Value>],
    /// The pods of the claim's namespace.
    pub pods: &'a [Arc<Value>],
}

fn named<'a>(objects: &'a [Arc<Value>], name: &str) -> Option<&'a Value> {
    objects.iter().map(|o| &**o).find(|o| obj::name(o) == name)
}

/// Binds both halves, skipping the ones already written.
fn bind(claim: &Value, volume: &Value, changes: &mut Vec<Change>) {
    let ref_has_uid = obj::get(volume, &["spec", "claimRef", "uid"]).is_some();
    if !pv::is_claimed_by(volume, claim) || !ref_has_uid {
        changes.push(Change::ClaimVolume {
            volume: volume.clone(),
            claim: claim.clone(),
        });
    }
    if obj::str_or_empty(volume, &["status", "phase"]) != "Bound" {
        changes.push(Change::VolumePhase {
            volume: volume.clone(),
            phase: "Bound",
        });
    }
    let named_here = obj::str_or_empty(claim, &["spec", "volumeName"]) == obj::name(volume);
    if !named_here || obj::str_or_empty(claim, &["status", "phase"]) != "Bound" {
        changes.push(Change::BindClaim {
            claim: claim.clone(),
            volume: volume.clone(),
        });
    }
}

/// Decides about one claim.
pub fn plan_claim(claim: &Value, seen: &Observed) -> Plan {
    let mut changes = Vec::new();
    let mut action = Action::done();
    if obj::get(claim, &["metadata", "deletionTimestamp"]).is_some() {
        let name = obj::name(claim);
        let in_use = seen
            .pods
            .iter()
            .any(|p| pv::pod_is_active(p) && pv::pod_claims(p).any(|c| c == name));
        let protected = obj::array(claim, &["metadata", "finalizers"])
            .iter()
            .any(|f| f == CLAIM_PROTECTION);
        if protected && !in_use {
            changes.push(Change::Unprotect(claim.clone()));
        }
        return Plan { changes, action };
    }
    let volume_name = obj::str_or_empty(claim, &["spec", "volumeName"]);
    if !volume_name.is_empty() {
        match named(seen.volumes, volume_name) {
            None if obj::str_or_empty(claim, &["status", "phase"]) == "Bound" => {
                changes.push(Change::ClaimLost(claim.clone()));
                changes.push(event(
                    claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                ));
            }
            None => {}
            Some(v) if pv::satisfies(v, claim) => bind(claim, v, &mut changes),
            Some(_) => changes.push(event(
                claim,
                EventType::Warning,
                "FailedBinding",
                format!("volume \"{volume_name}\" already bound to a different claim."),
            )),
        }
        return Plan { changes, action };
    }
    let class_name = pv::claim_class(claim);
    let class = named(seen.classes, class_name);
    let waits_for_consumer = class
        .is_some_and(|c| obj::str_or_empty(c, &["volumeBindingMode"]) == "WaitForFirstConsumer");
    let selected = obj::str_or_empty(claim, &["metadata", "annotations", SELECTED_NODE]);
    let node = named(seen.nodes, selected);
    if waits_for_consumer && selected.is_empty() {
        changes.push(event(
            claim,
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ));
        return Plan { changes, action };
    }
    let volumes = seen.volumes.iter().map(|v| &**v);
    if let Some(v) = pv::best_volume(claim, volumes, node.filter(|_| waits_for_consumer)) {
        bind(claim, v, &mut changes);
        return Plan { changes, action };
    }
    match class {
        Some(c) if obj::str_or_empty(c, &["provisioner"]) == LOCAL_PATH_PROVISIONER => {
            // An Immediate claim gets its directory on the first Ready node by name.
            let target = if waits_for_consumer {
                Some(selected.to_string())
            } else {
                first_ready_node(seen.nodes)
            };
            match target {
                Some(node) => {
                    let key = format!("{}/{}", obj::namespace(claim), obj::name(claim));
                    changes.push(event(
                        claim,
                        EventType::Normal,
                        "Provisioning",
                        format!("External provisioner is provisioning volume for claim \"{key}\""),
                    ));
                    changes.push(Change::Provision {
                        claim: claim.clone(),
                        class: c.clone(),
                        node,
                    });
                }
                None => action = Action::requeue(NO_NODE_RETRY),
            }
        }
        Some(c) => changes.push(event(
            claim,
            EventType::Normal,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                obj::str_or_empty(c, &["provisioner"])
            ),
        )),
        None if class_name.is_empty() => changes.push(event(
            claim,
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        )),
        None => changes.push(event(
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        )),
    }
    Plan { changes, action }
}

fn first_ready_node(nodes: &[Arc<Value>]) -> Option<String> {
    let mut ready: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            obj::array(n, &["status", "conditions"])
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|n| obj::name(n))
        .collect();
    ready.sort_unstable();
    ready.first().map(|n| n.to_string())
}

/// Decides about one volume, given the claim its `claimRef` names (if it still exists).
pub fn plan_volume(volume: &Value, claim: Option<&Value>) -> Plan {
    let mut changes = Vec::new();
    let phase = obj::str_or_empty(volume, &["status", "phase"]);
    let deleting = obj::get(volume, &["metadata", "deletionTimestamp"]).is_some();
    if deleting {
        return Plan::default();
    }
    if obj::get(volume, &["spec", "claimRef"]).is_none() {
        if phase != "Available" {
            changes.push(Change::VolumePhase {
                volume: volume.clone(),
                phase: "Available",
            });
        }
        return Plan {
            changes,
            action: Action::done(),
        };
    }
    match claim.filter(|c| pv::is_claimed_by(volume, c)) {
        // The claim's own reconcile finishes the binding.
        Some(_) => {}
        None => {
            if phase != "Released" && phase != "Failed" {
                changes.push(Change::VolumePhase {
                    volume: volume.clone(),
                    phase: "Released",
                });
            }
            if obj::str_or_empty(volume, &["spec", "persistentVolumeReclaimPolicy"]) == "Delete" {
                changes.push(Change::DeleteVolume(volume.clone()));
            }
        }
    }
    Plan {
        changes,
        action: Action::done(),
    }
}

/// The volume the local-path provisioner creates for `claim` on `node`.
pub fn provisioned_volume(claim: &Value, class: &Value, node: &str) -> Value {
    let name = format!("pvc-{}", obj::str_or_empty(claim, &["metadata", "uid"]));
    let spec = claim.get("spec").cloned().unwrap_or_default();
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec["accessModes"],
            "volumeMode": spec.get("volumeMode").cloned().unwrap_or(json!("Filesystem")),
            "storageClassName": obj::name(class),
            "persistentVolumeReclaimPolicy": obj::str_or_empty(class, &["reclaimPolicy"]),
            "claimRef": claim_ref(claim),
            "csi": {"driver": LOCAL_PATH_DRIVER, "volumeHandle": name},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    })
}

fn claim_ref(claim: &Value) -> Value {
    json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": obj::namespace(claim),
        "name": obj::name(claim),
        "uid": obj::str_or_empty(claim, &["metadata", "uid"]),
        "resourceVersion": obj::str_or_empty(claim, &["metadata", "resourceVersion"]),
    })
}

async fn reconcile(ctx: &Context, work: Work) -> Result<Action, ControllerError> {
    let caches = &*ctx.caches;
    let plan = match &work {
        Work::Claim(key) => {
            let Some(claim) = caches.claims.get(&key.namespace, &key.name) else {
                return Ok(Action::done());
            };
            let seen = Observed {
                volumes: &caches.volumes.all(),
                classes: &caches.classes.all(),
                nodes: &caches.nodes.all(),
                pods: &caches.pods.list(&key.namespace),
            };
            plan_claim(&claim, &seen)
        }
        Work::Volume(name) => {
            let Some(volume) = caches.volumes.get("", name) else {
                return Ok(Action::done());
            };
            let claim = obj::get(&volume, &["spec", "claimRef"]).and_then(|r| {
                caches.claims.get(
                    obj::str_or_empty(r, &["namespace"]),
                    obj::str_or_empty(r, &["name"]),
                )
            });
            plan_volume(&volume, claim.as_deref())
        }
    };
    let (mut claims_seen, mut volumes_seen) = (0, 0);
    for change in plan.changes {
        match write(ctx, change).await? {
            Written::Claim(r) => claims_seen = claims_seen.max(r),
            Written::Volume(r) => volumes_seen = volumes_seen.max(r),
            Written::Nothing => {}
        }
    }
    caches.claims.caught_up(claims_seen).await;
    caches.volumes.caught_up(volumes_seen).await;
    Ok(plan.action)
}

/// Which cache a write must be seen in before the next decision.
enum Written {
    Claim(u64),
    Volume(u64),
    Nothing,
}

/// Runs `change(current)` on the latest version of `o` if it is still the same object
/// (same uid); `Ok(0)` when it is gone.
async fn update(
    ctx: &Context,
    cache: &Cache,
    o: &Value,
    part: Part,
    change: impl Fn(&mut Value),
) -> Result<u64, ControllerError> {
    let uid = obj::str_or_empty(o, &["metadata", "uid"]).to_string();
    let ns = Some(obj::namespace(o)).filter(|ns| !ns.is_empty());
    let written = ctx
        .api
        .update_with(cache.resource(), ns, obj::name(o), part, |current| {
            if obj::str_or_empty(current, &["metadata", "uid"]) != uid {
                return Ok(None);
            }
            let mut next = current.clone();
            change(&mut next);
            Ok((next != *current).then_some(next))
        })
        .await;
    match written {
        Ok(w) => Ok(revision_of(&w)),
        Err(ApiError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

async fn write(ctx: &Context, change: Change) -> Result<Written, ControllerError> {
    let caches = &*ctx.caches;
    let (claims, volumes) = (&caches.claims, &caches.volumes);
    Ok(match change {
        Change::ClaimVolume { volume, claim } => {
            let by_us = obj::get(&volume, &["spec", "claimRef"]).is_none();
            let reference = claim_ref(&claim);
            Written::Volume(
                update(ctx, volumes, &volume, Part::Main, |v| {
                    v["spec"]["claimRef"] = reference.clone();
                    if by_us {
                        v["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
                    }
                })
                .await?,
            )
        }
        Change::VolumePhase { volume, phase } => Written::Volume(
            update(ctx, volumes, &volume, Part::Status, |v| {
                v["status"]["phase"] = json!(phase)
            })
            .await?,
        ),
        Change::BindClaim { claim, volume } => {
            let name = obj::name(&volume).to_string();
            update(ctx, claims, &claim, Part::Main, |c| {
                c["spec"]["volumeName"] = json!(name);
                c["metadata"]["annotations"][BIND_COMPLETED] = json!("yes");
                c["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
            })
            .await?;
            let spec = volume.get("spec").cloned().unwrap_or_default();
            Written::Claim(
                update(ctx, claims, &claim, Part::Status, |c| {
                    c["status"]["phase"] = json!("Bound");
                    c["status"]["accessModes"] = spec["accessModes"].clone();
                    c["status"]["capacity"] = spec["capacity"].clone();
                })
                .await?,
            )
        }
        Change::ClaimLost(claim) => Written::Claim(
            update(ctx, claims, &claim, Part::Status, |c| {
                c["status"]["phase"] = json!("Lost")
            })
            .await?,
        ),
        Change::Provision { claim, class, node } => {
            let volume = provisioned_volume(&claim, &class, &node);
            let created = match ctx
                .api
                .create(volumes.resource(), None, volume, false)
                .await
            {
                Ok(v) => v,
                // Provisioned before, by an earlier reconcile or leader.
                Err(ApiError::AlreadyExists { .. }) => return Ok(Written::Nothing),
                Err(e) => return Err(e.into()),
            };
            let message = format!("Successfully provisioned volume {}", obj::name(&created));
            ctx.events
                .record(&claim, EventType::Normal, "ProvisioningSucceeded", &message)
                .await;
            Written::Volume(revision_of(&created))
        }
        Change::DeleteVolume(volume) => {
            let deleted = ctx
                .api
                .delete(
                    volumes.resource(),
                    None,
                    obj::name(&volume),
                    &Default::default(),
                )
                .await;
            match deleted {
                Ok(_) | Err(ApiError::NotFound { .. }) => Written::Nothing,
                Err(e) => return Err(e.into()),
            }
        }
        Change::Unprotect(claim) => Written::Claim(
            update(ctx, claims, &claim, Part::Main, |c| {
                if let Some(f) = c["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|x| x != CLAIM_PROTECTION);
                }
            })
            .await?,
        ),
        Change::Event {
            object,
            kind,
            reason,
            message,
        } => {
            ctx.events.record(&object, kind, reason, &message).await;
            Written::Nothing
        }
    })
}

pub async fn run(api: crate::api::Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    // A claim concerns itself and its volume (which is released when the claim goes).
    let claim_keys = |c: &Value| {
        let mut keys = vec![Work::Claim(Key::of(c))];
        match obj::str_or_empty(c, &["spec", "volumeName"]) {
            "" => {}
            volume => keys.push(Work::Volume(volume.to_string())),
        }
        keys
    };
    let pending = caches.claims.clone();
    let every_pending = Arc::new(move |_: &Value| {
        pending
            .all()
            .iter()
            .filter(|c| obj::str_or_empty(c, &["spec", "volumeName"]).is_empty())
            .map(|c| Work::Claim(Key::of(c)))
            .collect()
    });
    let sources = vec![
        Source {
            cache: caches.claims.clone(),
            mapper: Arc::new(claim_keys),
        },
        // A volume concerns itself and the claim it names; a new free one, every
        // pending claim.
        Source {
            cache: caches.volumes.clone(),
            mapper: Arc::new({
                let every_pending = every_pending.clone();
                move |v: &Value| {
                    let mut keys = vec![Work::Volume(obj::name(v).to_string())];
                    match obj::get(v, &["spec", "claimRef"]) {
                        Some(r) => keys.push(Work::Claim(Key::new(
                            obj::str_or_empty(r, &["namespace"]),
                            obj::str_or_empty(r, &["name"]),
                        ))),
                        None => keys.extend(every_pending(v)),
                    }
                    keys
                }
            }),
        },
        Source {
            cache: caches.classes.clone(),
            mapper: every_pending.clone(),
        },
        // Pods ending release the claims they held.
        Source {
            cache: caches.pods.clone(),
            mapper: Arc::new(|p: &Value| {
                pv::pod_claims(p)
                    .map(|c| Work::Claim(Key::new(obj::namespace(p), c)))
                    .collect()
            }),
        },
    ];
    let ctx = Context::new(api, caches, "persistentvolume-controller");
    runner::run("volume-binder", sources, |work| reconcile(&ctx, work)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_class::local_path_class;

    fn claim(extra_meta: Value, spec: Value) -> Value {
        let mut c = json!({"metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "local-path"},
            "status": {"phase": "Pending"}});
        for (k, v) in extra_meta.as_object().into_iter().flatten() {
            c["metadata"][k] = v.clone();
        }
        for (k, v) in spec.as_object().into_iter().flatten() {
            c["spec"][k] = v.clone();
        }
        c
    }

    fn node(name: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.changes
            .iter()
            .map(|c| match c {
                Change::Event { reason, .. } => format!("event {reason}"),
                Change::ClaimVolume { .. } => "claim-volume".into(),
                Change::BindClaim { .. } => "bind-claim".into(),
                Change::VolumePhase { phase, .. } => format!("volume {phase}"),
                Change::ClaimLost(_) => "lost".into(),
                Change::Provision { node, .. } => format!("provision on {node}"),
                Change::DeleteVolume(_) => "delete-volume".into(),
                Change::Unprotect(_) => "unprotect".into(),
            })
            .collect()
    }

    fn plan(c: &Value, volumes: &[Arc<Value>], pods: &[Arc<Value>]) -> Plan {
        let classes = [Arc::new(local_path_class())];
        let nodes = [node("a"), node("b")];
        plan_claim(
            c,
            &Observed {
                volumes,
                classes: &classes,
                nodes: &nodes,
                pods,
            },
        )
    }

    #[test]
    fn a_local_path_claim_waits_for_its_consumer_then_is_provisioned_there() {
        let waiting = claim(json!({}), json!({}));
        assert_eq!(
            kinds(&plan(&waiting, &[], &[])),
            ["event WaitForFirstConsumer"]
        );
        let placed = claim(json!({"annotations": {SELECTED_NODE: "b"}}), json!({}));
        let p = plan(&placed, &[], &[]);
        assert_eq!(kinds(&p), ["event Provisioning", "provision on b"]);
        let Change::Provision {
            claim,
            class,
            node: on,
        } = &p.changes[1]
        else {
            unreachable!()
        };
        let volume = provisioned_volume(claim, class, on);
        assert_eq!(obj::name(&volume), "pvc-c1");
        assert!(pv::satisfies(&volume, &placed));
        assert!(pv::node_fits(&volume, &node("b")));
        assert!(!pv::node_fits(&volume, &node("a")));
        assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        // The provisioned volume already names its claim; the binding completes.
        let p = plan(&placed, &[Arc::new(volume)], &[]);
        assert_eq!(kinds(&p), ["volume Bound", "bind-claim"]);
    }

    #[test]
    fn a_claim_without_class_binds_an_existing_volume_at_once() {
        let c = claim(json!({}), json!({"storageClassName": ""}));
        let free = Arc::new(json!({"metadata": {"name": "manual"},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/srv"}},
            "status": {"phase": "Available"}}));
        assert_eq!(
            kinds(&plan(&c, &[free], &[])),
            ["claim-volume", "volume Bound", "bind-claim"]
        );
        assert_eq!(kinds(&plan(&c, &[], &[])), ["event FailedBinding"]);
    }

    #[test]
    fn a_claim_in_use_keeps_its_protection() {
        let deleting = claim(
            json!({"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": [CLAIM_PROTECTION]}),
            json!({}),
        );
        let user = |phase: &str| {
            Arc::new(json!({"metadata": {"name": "p", "namespace": "default"},
                "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": phase}}))
        };
        assert!(kinds(&plan(&deleting, &[], &[user("Running")])).is_empty());
        assert_eq!(
            kinds(&plan(&deleting, &[], &[user("Succeeded")])),
            ["unprotect"]
        );
        assert_eq!(kinds(&plan(&deleting, &[], &[])), ["unprotect"]);
    }

    #[test]
    fn a_claim_naming_its_volume_binds_to_that_one_only() {
        let volume = |name: &str, claim_ref: Value| {
            let mut v = json!({"metadata": {"name": name},
                "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                         "hostPath": {"path": "/srv"}, "storageClassName": "local-path"},
                "status": {"phase": "Available"}});
            if !claim_ref.is_null() {
                v["spec"]["claimRef"] = claim_ref;
            }
            Arc::new(v)
        };
        let wanted = claim(json!({}), json!({"volumeName": "chosen"}));
        // The named volume, though another free one would do as well.
        let volumes = [volume("other", Value::Null), volume("chosen", Value::Null)];
        let p = plan(&wanted, &volumes, &[]);
        assert_eq!(kinds(&p), ["claim-volume", "volume Bound", "bind-claim"]);
        let Change::ClaimVolume { volume: v, .. } = &p.changes[0] else {
            unreachable!()
        };
        assert_eq!(obj::name(v), "chosen");
        // Taken by another claim: the claim waits, saying why.
        let taken = [volume(
            "chosen",
            json!({"namespace": "default", "name": "other", "uid": "x"}),
        )];
        assert_eq!(kinds(&plan(&wanted, &taken, &[])), ["event FailedBinding"]);
    }

    #[test]
    fn a_bound_claim_whose_volume_vanished_is_lost() {
        let mut bound = claim(json!({}), json!({"volumeName": "gone"}));
        bound["status"]["phase"] = json!("Bound");
        assert_eq!(kinds(&plan(&bound, &[], &[])), ["lost", "event ClaimLost"]);
    }

    #[test]
    fn a_released_volume_is_reclaimed_by_its_policy() {
        let volume = |policy: &str| {
            json!({"metadata": {"name": "v"},
                "spec": {"persistentVolumeReclaimPolicy": policy,
                         "claimRef": {"namespace": "default", "name": "data", "uid": "c1"}},
                "status": {"phase": "Bound"}})
        };
        let p = plan_volume(&volume("Delete"), None);
        assert_eq!(kinds(&p), ["volume Released", "delete-volume"]);
        let p = plan_volume(&volume("Retain"), None);
        assert_eq!(kinds(&p), ["volume Released"]);
        // A claim of the same name but another uid is another claim.
        let recreated = claim(json!({"uid": "c2"}), json!({}));
        let p = plan_volume(&volume("Retain"), Some(&recreated));
        assert_eq!(kinds(&p), ["volume Released"]);
        let same = claim(json!({}), json!({}));
        assert!(plan_volume(&volume("Retain"), Some(&same))
            .changes
            .is_empty());
        let free = json!({"metadata": {"name": "v"}, "spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(kinds(&plan_volume(&free, None)), ["volume Available"]);
    }
}
