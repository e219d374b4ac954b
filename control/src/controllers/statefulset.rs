//! The StatefulSet controller (Kubernetes' `stateful_set_control.go`): pods with stable
//! names `<set>-<ordinal>`, each with its own PersistentVolumeClaims
//! `<template>-<set>-<ordinal>` (created here, never deleted here: claims outlive pods and
//! the set, `whenDeleted: Retain`); OrderedReady creates ordinals one at a time, each
//! Running and Ready before the next, and removes them highest first, one at a time;
//! Parallel does both at once. Updates replace pods highest ordinal first down to the
//! `partition`, one at a time (RollingUpdate), or only when the user deletes them
//! (OnDelete).
//!
//! A revision is `<set>-<template hash>`, carried by each pod in the
//! `controller-revision-hash` label and recorded in a ControllerRevision of that name
//! (numbered, at most `revisionHistoryLimit` unused ones kept), so a pod below the
//! partition comes back at the current revision and `kubectl rollout history/undo` work.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::deployment::template::template_hash;
use super::owners::{self, being_deleted, claim_all};
use super::replicaset::{self, is_pod_ready, until_available};
use super::runner::{self, Action};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Part};
use crate::api::{Api, ApiError};
use crate::events::EventType;
use crate::obj;
use crate::selectors::LabelSelector;
use crate::store::revision_of;

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The template hash on a ControllerRevision.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adopt a matching orphan, or release what stopped matching.
    Owner(owners::OwnerChange),
    CreateRevision(Value),
    /// A revision whose template is in use again, with its new number.
    Renumber(Arc<Value>, i64),
    DeleteRevision(Arc<Value>),
    CreateClaim(Value),
    CreatePod(Value),
    DeletePod(Arc<Value>),
    Status(Value),
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

/// `<set>-<ordinal>`'s ordinal, if `pod` is named as a member of `set`.
fn ordinal(set: &Value, pod: &Value) -> Option<usize> {
    let rest = obj::name(pod)
        .strip_prefix(obj::name(set))?
        .strip_prefix('-')?;
    // "web-01" is not a member: Kubernetes parses with a regexp of decimal digits and
    // compares names it builds back, which have no leading zeros.
    rest.parse::<usize>().ok().filter(|n| n.to_string() == rest)
}

fn pod_name(set: &Value, ordinal: usize) -> String {
    format!("{}-{ordinal}", obj::name(set))
}

fn claim_name(set: &Value, template: &Value, ordinal: usize) -> String {
    format!("{}-{}", obj::name(template), pod_name(set, ordinal))
}

/// The revision the set's current template makes.
pub fn update_revision(set: &Value) -> String {
    let template = obj::get(set, &["spec", "template"]).unwrap_or(&Value::Null);
    // A first status writes `collisionCount: 0`, which must not change the revision.
    let collisions = obj::get_i64(set, &["status", "collisionCount"]).filter(|&c| c != 0);
    format!("{}-{}", obj::name(set), template_hash(template, collisions))
}

fn revision_of_pod(pod: &Value) -> &str {
    obj::str_or_empty(pod, &["metadata", "labels", REVISION_LABEL])
}

/// `isRunningAndReady`.
fn running_and_ready(pod: &Value) -> bool {
    obj::str_or_empty(pod, &["status", "phase"]) == "Running" && is_pod_ready(pod)
}

fn is_failed(pod: &Value) -> bool {
    let phase = obj::str_or_empty(pod, &["status", "phase"]);
    phase == "Failed" || phase == "Succeeded"
}

fn claim_templates(set: &Value) -> &[Value] {
    obj::array(set, &["spec", "volumeClaimTemplates"])
}

/// The pod of `ordinal` (`newVersionedStatefulSetPod`): the template's pod, named and
/// labelled for its identity, with a claim volume per claim template (replacing a template
/// volume of the same name, as `updateStorage` does).
pub fn new_pod(set: &Value, template: &Value, ordinal: usize, revision: &str) -> Value {
    let name = pod_name(set, ordinal);
    let mut labels = obj::object(template, &["metadata", "labels"])
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(revision));
    labels.insert(POD_NAME_LABEL.into(), json!(name));
    labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
    let mut meta = json!({
        "name": name,
        "namespace": obj::namespace(set),
        "labels": labels,
        "ownerReferences": [owners::controller_ref(set)],
    });
    for k in ["annotations", "finalizers"] {
        if let Some(v) = obj::get(template, &["metadata", k]) {
            meta[k] = v.clone();
        }
    }
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    // The pod's DNS name in the governing service: `<pod>.<service>`.
    spec["hostname"] = json!(name);
    if let Some(service) = obj::get_str(set, &["spec", "serviceName"]).filter(|s| !s.is_empty()) {
        spec["subdomain"] = json!(service);
    }
    let mut volumes: Vec<Value> = obj::array(&spec, &["volumes"]).to_vec();
    for t in claim_templates(set) {
        volumes.retain(|v| v["name"] != t["metadata"]["name"]);
        volumes.push(json!({"name": obj::name(t),
            "persistentVolumeClaim": {"claimName": claim_name(set, t, ordinal)}}));
    }
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The ControllerRevision recording `set`'s current template as revision `number`; its
/// `data` is the patch that restores the template (what `kubectl rollout undo` applies).
fn revision_object(set: &Value, number: i64) -> Value {
    let template = obj::get(set, &["spec", "template"]).unwrap_or(&Value::Null);
    let mut labels = obj::object(template, &["metadata", "labels"])
        .cloned()
        .unwrap_or_default();
    let name = update_revision(set);
    let hash = name.rsplit('-').next().unwrap_or_default().to_string();
    labels.insert(HASH_LABEL.into(), json!(hash));
    let mut patch = template.clone();
    patch["$patch"] = json!("replace");
    json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": name, "namespace": obj::namespace(set), "labels": labels,
                     "ownerReferences": [owners::controller_ref(set)]},
        "data": {"spec": {"template": patch}}, "revision": number})
}

/// The template a revision recorded.
fn recorded_template(revision: &Value) -> Option<Value> {
    let mut t = obj::get(revision, &["data", "spec", "template"])?.clone();
    t.as_object_mut()?.remove("$patch");
    Some(t)
}

fn revision_number(r: &Value) -> i64 {
    obj::get_i64(r, &["revision"]).unwrap_or(0)
}

/// The revision changes: the update revision recorded if it is not yet, and the oldest
/// revisions no pod uses beyond `revisionHistoryLimit` removed (`truncateHistory`).
fn revisions_to_change(
    set: &Value,
    own: &[&Arc<Value>],
    owned_pods: &[Arc<Value>],
    live: [&str; 2],
) -> Vec<Change> {
    let mut changes = Vec::new();
    let latest = own.iter().map(|r| revision_number(r)).max().unwrap_or(0);
    match own.iter().find(|r| obj::name(r) == live[1]) {
        None => changes.push(Change::CreateRevision(revision_object(set, latest + 1))),
        // Back to an earlier template (`rollout undo`): it becomes the newest revision.
        Some(r) if revision_number(r) < latest => {
            changes.push(Change::Renumber(Arc::clone(r), latest + 1))
        }
        Some(_) => {}
    }
    let limit = obj::get_i64(set, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0) as usize;
    let mut history: Vec<&&Arc<Value>> = own
        .iter()
        .filter(|r| {
            let name = obj::name(r);
            !live.contains(&name) && !owned_pods.iter().any(|p| revision_of_pod(p) == name)
        })
        .collect();
    history.sort_by_key(|r| revision_number(r));
    let excess = history.len().saturating_sub(limit);
    changes.extend(
        history
            .into_iter()
            .take(excess)
            .map(|r| Change::DeleteRevision(Arc::clone(r))),
    );
    changes
}

/// The claims of `ordinal` that `claims` (the namespace's) lacks (`createPersistentVolumeClaims`).
/// They carry the set's matchLabels and no owner: they stay when the pod or the set goes.
fn missing_claims(set: &Value, ordinal: usize, claims: &[Arc<Value>]) -> Vec<Value> {
    let match_labels = obj::get(set, &["spec", "selector", "matchLabels"]).cloned();
    claim_templates(set)
        .iter()
        .filter_map(|t| {
            let name = claim_name(set, t, ordinal);
            if claims.iter().any(|c| obj::name(c) == name) {
                return None;
            }
            let mut meta = t.get("metadata").cloned().unwrap_or_else(|| json!({}));
            meta["name"] = json!(name);
            meta["namespace"] = json!(obj::namespace(set));
            let mut labels = obj::object(&meta, &["labels"]).cloned().unwrap_or_default();
            for (k, v) in match_labels.iter().filter_map(Value::as_object).flatten() {
                labels.insert(k.clone(), v.clone());
            }
            meta["labels"] = Value::Object(labels);
            Some(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta, "spec": t.get("spec").cloned().unwrap_or_else(|| json!({}))}))
        })
        .collect()
}

/// What `updateStatefulSet` does in one pass over `set`'s pods (and its namespace's
/// claims and ControllerRevisions). With OrderedReady, it stops at the first pod it
/// creates, deletes or must wait for; the pod's events bring the set back.
pub fn plan(
    set: &Value,
    pods: &[Arc<Value>],
    claims: &[Arc<Value>],
    revisions: &[Arc<Value>],
    now: DateTime<Utc>,
) -> Plan {
    let mut changes = Vec::new();
    let selector =
        LabelSelector::from_json(obj::get(set, &["spec", "selector"]).unwrap_or(&Value::Null))
            .unwrap_or_else(|_| {
                LabelSelector::from_json(&Value::Null).expect("null selects nothing")
            });
    // Only pods named as members are claimed (`isMemberOf`).
    let members: Vec<Arc<Value>> = pods
        .iter()
        .filter(|p| ordinal(set, p).is_some())
        .cloned()
        .collect();
    let claimed = claim_all(set, &selector, &members);
    changes.extend(claimed.changes.iter().cloned().map(Change::Owner));
    let owned = claimed.owned;
    let wanted = obj::get_i64(set, &["spec", "replicas"]).unwrap_or(1).max(0) as usize;
    let update = update_revision(set);
    let current = match obj::str_or_empty(set, &["status", "currentRevision"]) {
        "" => update.clone(),
        r => r.to_string(),
    };
    let min_ready = obj::get_i64(set, &["spec", "minReadySeconds"]).unwrap_or(0);
    let action = owned
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .filter(|w| !w.is_zero())
        .min()
        .map_or(Action::done(), Action::requeue);
    if !being_deleted(set) {
        let own: Vec<&Arc<Value>> = revisions
            .iter()
            .filter(|r| owners::controlled_by(r, owners::uid(set)))
            .collect();
        changes.extend(revisions_to_change(set, &own, &owned, [&current, &update]));
        // Below the partition, a pod comes back at the current revision, from its record.
        let partition = obj::get_i64(
            set,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
        )
        .unwrap_or(0)
        .max(0) as usize;
        let rolling =
            obj::str_or_empty(set, &["spec", "updateStrategy", "type"]) == "RollingUpdate";
        let current_template = own
            .iter()
            .find(|r| current != update && obj::name(r) == current)
            .and_then(|r| recorded_template(r));
        let template = obj::get(set, &["spec", "template"]).unwrap_or(&Value::Null);
        let make = |i: usize| match &current_template {
            Some(t) if rolling && i < partition => new_pod(set, t, i, &current),
            _ => new_pod(set, template, i, &update),
        };
        pods_to_change(set, &owned, claims, wanted, &update, &make, &mut changes);
    }
    let status = status(set, &owned, wanted, &current, &update, min_ready, now);
    if Some(&status) != set.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// The pod changes of one pass: replicas first (replace failed, create missing), then
/// condemned pods (ordinals past `replicas`), then the rolling update.
fn pods_to_change(
    set: &Value,
    owned: &[Arc<Value>],
    claims: &[Arc<Value>],
    wanted: usize,
    update: &str,
    make: &dyn Fn(usize) -> Value,
    changes: &mut Vec<Change>,
) {
    let ordered = obj::str_or_empty(set, &["spec", "podManagementPolicy"]) != "Parallel";
    let at = |i: usize| owned.iter().find(|p| ordinal(set, p) == Some(i));
    for i in 0..wanted {
        match at(i) {
            // A failed pod is replaced: deleted now, created again by a later pass.
            Some(p) if is_failed(p) && !being_deleted(p) => {
                changes.push(Change::DeletePod(p.clone()));
                if ordered {
                    return;
                }
            }
            None => {
                changes.extend(
                    missing_claims(set, i, claims)
                        .into_iter()
                        .map(Change::CreateClaim),
                );
                changes.push(Change::CreatePod(make(i)));
                if ordered {
                    return;
                }
            }
            Some(p) if ordered && (being_deleted(p) || !running_and_ready(p)) => return,
            Some(_) => {}
        }
    }
    let mut condemned: Vec<&Arc<Value>> = owned
        .iter()
        .filter(|p| ordinal(set, p).is_some_and(|i| i >= wanted))
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(set, p)));
    for p in &condemned {
        if being_deleted(p) {
            if ordered {
                return;
            }
            continue;
        }
        // Scaling down waits for every other pod to be healthy, so a set never loses a
        // second pod while one is down.
        let unhealthy = owned
            .iter()
            .any(|o| o.as_ref() != p.as_ref() && (being_deleted(o) || !running_and_ready(o)));
        if ordered && unhealthy {
            return;
        }
        changes.push(Change::DeletePod((*p).clone()));
        if ordered {
            return;
        }
    }
    if obj::str_or_empty(set, &["spec", "updateStrategy", "type"]) != "RollingUpdate" {
        return;
    }
    let partition = obj::get_i64(
        set,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    )
    .unwrap_or(0)
    .max(0) as usize;
    for i in (partition..wanted).rev() {
        let Some(p) = at(i) else { return };
        if revision_of_pod(p) != update && !being_deleted(p) {
            changes.push(Change::DeletePod(p.clone()));
            return;
        }
        // One pod at a time: the next waits until this one is back and healthy.
        if !running_and_ready(p) || being_deleted(p) {
            return;
        }
    }
}

/// The new status. The update revision becomes the current one once every replica runs
/// it and is ready (`completeRollingUpdate`).
fn status(
    set: &Value,
    owned: &[Arc<Value>],
    wanted: usize,
    current: &str,
    update: &str,
    min_ready: i64,
    now: DateTime<Utc>,
) -> Value {
    let live: Vec<&Arc<Value>> = owned.iter().filter(|p| !being_deleted(p)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| live.iter().filter(|p| f(p)).count();
    let replicas = live.len();
    let ready = count(&|p| is_pod_ready(p));
    let available = count(&|p| until_available(p, min_ready, now).is_some_and(|w| w.is_zero()));
    let updated = count(&|p| revision_of_pod(p) == update);
    let rolled = obj::str_or_empty(set, &["spec", "updateStrategy", "type"]) == "RollingUpdate"
        && updated == wanted
        && replicas == wanted
        && ready == wanted;
    let current = if rolled { update } else { current };
    let mut s = Map::new();
    s.insert("replicas".into(), json!(replicas));
    for (k, v) in [
        ("readyReplicas", ready),
        ("currentReplicas", count(&|p| revision_of_pod(p) == current)),
        ("updatedReplicas", updated),
    ] {
        if v > 0 {
            s.insert(k.into(), json!(v));
        }
    }
    // Not `omitempty` in apps/v1.
    s.insert("availableReplicas".into(), json!(available));
    s.insert("currentRevision".into(), json!(current));
    s.insert("updateRevision".into(), json!(update));
    s.insert(
        "collisionCount".into(),
        json!(obj::get_i64(set, &["status", "collisionCount"]).unwrap_or(0)),
    );
    if let Some(g) = obj::get_i64(set, &["metadata", "generation"]) {
        s.insert("observedGeneration".into(), json!(g));
    }
    Value::Object(s)
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(set) = caches.statefulsets.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let plan = plan(
        &set,
        &caches.pods.list(&key.namespace),
        &caches.claims.list(&key.namespace),
        &caches.revisions.list(&key.namespace),
        Utc::now(),
    );
    let (pods, claims) = (caches.pods.resource(), caches.claims.resource());
    let revisions = caches.revisions.resource();
    let ns = Some(key.namespace.as_str());
    let (mut pod_revision, mut claim_revision, mut set_revision) = (0, 0, 0);
    let mut history_revision = 0;
    for change in plan.changes {
        match change {
            Change::CreateRevision(r) => match api.create(revisions, ns, r, false).await {
                Ok(created) => history_revision = history_revision.max(revision_of(&created)),
                // Recorded by an earlier pass the cache had not shown yet.
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            Change::Renumber(r, number) => {
                let written = api
                    .update_with(revisions, ns, obj::name(&r), Part::Main, |current| {
                        let mut next = current.clone();
                        next["revision"] = json!(number);
                        Ok((owners::uid(current) == owners::uid(&r)).then_some(next))
                    })
                    .await;
                match written {
                    Ok(o) => history_revision = history_revision.max(revision_of(&o)),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::DeleteRevision(r) => {
                let opts = DeleteOptions {
                    precondition_uid: Some(owners::uid(&r).to_string()),
                    ..Default::default()
                };
                match api.delete(revisions, ns, obj::name(&r), &opts).await {
                    Ok((o, _)) => history_revision = history_revision.max(revision_of(&o)),
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Owner(c) => pod_revision = pod_revision.max(c.write(api, pods, &set).await?),
            Change::CreateClaim(c) => match api.create(claims, ns, c.clone(), false).await {
                Ok(created) => {
                    claim_revision = claim_revision.max(revision_of(&created));
                    let msg = format!(
                        "create Claim {} Pod {} in StatefulSet {} success",
                        obj::name(&c),
                        claim_owner(&c, &set),
                        obj::name(&set)
                    );
                    ctx.events
                        .record(&set, EventType::Normal, "SuccessfulCreate", &msg)
                        .await;
                }
                // Kept from an earlier pod of this ordinal: exactly what the pod wants.
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            Change::CreatePod(p) => {
                let name = obj::name(&p).to_string();
                let outcome = api.create(pods, ns, p, false).await;
                let (kind, reason, verb) = match &outcome {
                    Ok(_) => (EventType::Normal, "SuccessfulCreate", "success"),
                    Err(_) => (EventType::Warning, "FailedCreate", "failed"),
                };
                let msg = format!(
                    "create Pod {name} in StatefulSet {} {verb}",
                    obj::name(&set)
                );
                ctx.events.record(&set, kind, reason, &msg).await;
                match outcome {
                    Ok(created) => pod_revision = pod_revision.max(revision_of(&created)),
                    // The old pod of this name is still going: its deletion brings us back.
                    Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::DeletePod(p) => {
                let opts = DeleteOptions {
                    precondition_uid: Some(owners::uid(&p).to_string()),
                    ..Default::default()
                };
                match api.delete(pods, ns, obj::name(&p), &opts).await {
                    Ok((o, _)) => {
                        pod_revision = pod_revision.max(revision_of(&o));
                        let msg = format!(
                            "delete Pod {} in StatefulSet {} successful",
                            obj::name(&p),
                            obj::name(&set)
                        );
                        ctx.events
                            .record(&set, EventType::Normal, "SuccessfulDelete", &msg)
                            .await;
                    }
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Status(s) => {
                set_revision =
                    set_revision.max(replicaset::write_status(api, caches, &set, s).await?)
            }
        }
    }
    caches.revisions.caught_up(history_revision).await;
    caches.claims.caught_up(claim_revision).await;
    caches.pods.caught_up(pod_revision).await;
    caches.statefulsets.caught_up(set_revision).await;
    Ok(plan.action)
}

/// The pod a claim of `set` was made for: its name past the claim template's prefix.
fn claim_owner<'a>(claim: &'a Value, set: &Value) -> &'a str {
    let name = obj::name(claim);
    claim_templates(set)
        .iter()
        .find_map(|t| name.strip_prefix(obj::name(t))?.strip_prefix('-'))
        .unwrap_or(name)
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = owners::sources(&caches.statefulsets, &caches.pods);
    let ctx = Context::new(api, caches, "statefulset-controller");
    runner::run("statefulset", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controllers::test_now as now;

    fn set(replicas: i64, policy: &str, strategy: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                     "updateStrategy": strategy,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})
    }

    fn rolling(partition: i64) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
    }

    /// Pod `web-<i>` of `set`, at `revision` (the set's own when None), ready or not.
    fn pod(set: &Value, i: usize, ready: bool, revision: Option<&str>) -> Arc<Value> {
        let revision = revision.map_or_else(|| update_revision(set), str::to_string);
        let mut p = new_pod(set, &set["spec"]["template"], i, &revision);
        p["metadata"]["uid"] = json!(format!("uid-{i}"));
        p["status"] = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-01-01T00:00:00Z"}]});
        Arc::new(p)
    }

    fn claim(name: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "namespace": "default"}}))
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Owner(c) => Some(c.to_string()),
                Change::CreateClaim(c) => Some(format!("claim {}", obj::name(c))),
                Change::CreatePod(p) => Some(format!("create {}", obj::name(p))),
                Change::DeletePod(p) => Some(format!("delete {}", obj::name(p))),
                // Revisions are tested on their own.
                Change::Status(_)
                | Change::CreateRevision(_)
                | Change::Renumber(..)
                | Change::DeleteRevision(_) => None,
            })
            .collect()
    }

    #[test]
    fn revisions_are_recorded_and_restore_pods_below_the_partition() {
        let old = set(3, "OrderedReady", rolling(2));
        let old_record = Arc::new(revision_object(&old, 1));
        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        changed["status"] = json!({"currentRevision": update_revision(&old)});
        // A new template is recorded as the next revision.
        let got = plan(&changed, &[], &[], std::slice::from_ref(&old_record), now());
        let Some(Change::CreateRevision(r)) = got.changes.first() else {
            panic!("{:?}", got.changes)
        };
        assert_eq!(
            (obj::name(r), r["revision"].as_i64()),
            (update_revision(&changed).as_str(), Some(2))
        );
        assert_eq!(r["data"]["spec"]["template"]["$patch"], "replace");
        // web-0 (below the partition) comes back with the old template; with its record.
        let new_record = Arc::new(revision_object(&changed, 2));
        let records = [old_record, new_record];
        let got = plan(&changed, &[], &[], &records, now());
        let Some(Change::CreatePod(p)) = got
            .changes
            .iter()
            .find(|c| matches!(c, Change::CreatePod(_)))
        else {
            panic!("{:?}", got.changes)
        };
        assert_eq!(p["spec"]["containers"][0]["image"], "i");
        assert_eq!(
            p["metadata"]["labels"][REVISION_LABEL],
            json!(update_revision(&old))
        );
        // Back to the old template: its record becomes revision 3.
        let got = plan(&old, &[], &[], &records, now());
        assert!(
            got.changes.iter().any(
                |c| matches!(c, Change::Renumber(r, 3) if obj::name(r) == update_revision(&old))
            ),
            "{:?}",
            got.changes
        );
        // Unused revisions beyond the history limit go, oldest first.
        let mut short = changed.clone();
        short["spec"]["revisionHistoryLimit"] = json!(0);
        short["status"] = json!({"currentRevision": update_revision(&changed)});
        let got = plan(&short, &[], &[], &records, now());
        let deleted: Vec<&str> = got
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::DeleteRevision(r) => Some(obj::name(r)),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, [update_revision(&old).as_str()]);
    }

    #[test]
    fn plans_follow_update_stateful_set() {
        let ordered = set(3, "OrderedReady", rolling(0));
        let parallel = set(3, "Parallel", rolling(0));
        let smaller = set(1, "OrderedReady", rolling(0));
        let mut changed = set(3, "OrderedReady", rolling(0));
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        let mut partitioned = changed.clone();
        partitioned["spec"]["updateStrategy"] = rolling(2);
        let mut on_delete = changed.clone();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        let old = update_revision(&ordered);
        let mut failed = (*pod(&ordered, 1, false, None)).clone();
        failed["status"]["phase"] = json!("Failed");
        let mut going = (*pod(&smaller, 2, true, None)).clone();
        going["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:30Z");
        // (what, set, pods, claims, expected pod changes)
        type Case<'a> = (
            &'a str,
            &'a Value,
            Vec<Arc<Value>>,
            Vec<Arc<Value>>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "ordered: the first pod and its claim",
                &ordered,
                vec![],
                vec![],
                vec!["claim www-web-0", "create web-0"],
            ),
            (
                "ordered: waits for web-0 to be ready",
                &ordered,
                vec![pod(&ordered, 0, false, None)],
                vec![],
                vec![],
            ),
            (
                "ordered: then web-1, whose kept claim is reused",
                &ordered,
                vec![pod(&ordered, 0, true, None)],
                vec![claim("www-web-1")],
                vec!["create web-1"],
            ),
            (
                "parallel: all at once",
                &parallel,
                vec![],
                vec![],
                vec![
                    "claim www-web-0",
                    "create web-0",
                    "claim www-web-1",
                    "create web-1",
                    "claim www-web-2",
                    "create web-2",
                ],
            ),
            (
                "a failed pod is replaced, the same name again",
                &ordered,
                vec![pod(&ordered, 0, true, None), Arc::new(failed)],
                vec![],
                vec!["delete web-1"],
            ),
            (
                "scale down: highest ordinal first, one at a time",
                &smaller,
                vec![
                    pod(&smaller, 0, true, None),
                    pod(&smaller, 1, true, None),
                    pod(&smaller, 2, true, None),
                ],
                vec![],
                vec!["delete web-2"],
            ),
            (
                "scale down waits for the one going",
                &smaller,
                vec![
                    pod(&smaller, 0, true, None),
                    pod(&smaller, 1, true, None),
                    Arc::new(going),
                ],
                vec![],
                vec![],
            ),
            (
                "rolling update: highest ordinal first",
                &changed,
                (0..3).map(|i| pod(&changed, i, true, Some(&old))).collect(),
                vec![],
                vec!["delete web-2"],
            ),
            (
                "rolling update waits for the replaced pod to be ready",
                &changed,
                vec![
                    pod(&changed, 0, true, Some(&old)),
                    pod(&changed, 1, true, Some(&old)),
                    pod(&changed, 2, false, None),
                ],
                vec![],
                vec![],
            ),
            (
                "rolling update: then the next",
                &changed,
                vec![
                    pod(&changed, 0, true, Some(&old)),
                    pod(&changed, 1, true, Some(&old)),
                    pod(&changed, 2, true, None),
                ],
                vec![],
                vec!["delete web-1"],
            ),
            (
                "a partition keeps the ordinals below it",
                &partitioned,
                vec![
                    pod(&changed, 0, true, Some(&old)),
                    pod(&changed, 1, true, Some(&old)),
                    pod(&changed, 2, true, None),
                ],
                vec![],
                vec![],
            ),
            (
                "on delete: nothing is replaced",
                &on_delete,
                (0..3).map(|i| pod(&changed, i, true, Some(&old))).collect(),
                vec![],
                vec![],
            ),
        ];
        for (what, set, pods, claims, want) in cases {
            let got = plan(set, &pods, &claims, &[], now());
            assert_eq!(names(&got.changes), want, "{what}");
        }
    }

    #[test]
    fn only_pods_named_as_members_are_adopted() {
        let s = set(2, "OrderedReady", rolling(0));
        let orphan = |name: &str| {
            Arc::new(
                json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
        };
        let pods = vec![
            orphan("web-0"),
            orphan("web-01"),
            orphan("other-1"),
            orphan("web-x"),
        ];
        assert_eq!(
            names(&plan(&s, &pods, &[], &[], now()).changes),
            vec!["adopt web-0", "claim www-web-1", "create web-1"]
        );
    }

    #[test]
    fn pods_carry_their_identity_and_claims() {
        let s = set(3, "OrderedReady", rolling(0));
        let p = new_pod(&s, &s["spec"]["template"], 1, "web-abc");
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        assert_eq!(p["metadata"]["name"], "web-1");
        assert_eq!(p["spec"]["hostname"], "web-1");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}])
        );
        let c = &missing_claims(&s, 1, &[])[0];
        assert_eq!(c["metadata"]["labels"], json!({"app": "web"}));
        assert!(
            c["metadata"].get("ownerReferences").is_none(),
            "claims outlive the set"
        );
        assert_eq!(claim_owner(c, &s), "web-1");
    }

    #[test]
    fn status_follows_the_rollout() {
        let mut s = set(2, "OrderedReady", rolling(0));
        let old = "web-old";
        s["status"] = json!({"currentRevision": old});
        let update = update_revision(&s);
        let status_of = |s: &Value, pods: Vec<Arc<Value>>| {
            plan(s, &pods, &[], &[], now())
                .changes
                .into_iter()
                .find_map(|c| match c {
                    Change::Status(st) => Some(st),
                    _ => None,
                })
                .unwrap_or_else(|| s["status"].clone())
        };
        let mid = status_of(
            &s,
            vec![pod(&s, 0, true, Some(old)), pod(&s, 1, true, None)],
        );
        assert_eq!(
            (&mid["currentRevision"], &mid["updateRevision"]),
            (&json!(old), &json!(update))
        );
        assert_eq!(
            (
                &mid["replicas"],
                &mid["readyReplicas"],
                &mid["currentReplicas"],
                &mid["updatedReplicas"]
            ),
            (&json!(2), &json!(2), &json!(1), &json!(1))
        );
        let done = status_of(&s, vec![pod(&s, 0, true, None), pod(&s, 1, true, None)]);
        assert_eq!(done["currentRevision"], json!(update));
        assert_eq!(done["currentReplicas"], json!(2));
        assert_eq!(done["availableReplicas"], json!(2));
        assert_eq!(done["observedGeneration"], json!(1));
    }
}
