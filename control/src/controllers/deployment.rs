//! The Deployment controller (Kubernetes' `deployment_controller.go`, `rolling.go`,
//! `recreate.go`, `sync.go`, `progress.go`): one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`; the new one scaled up and the old ones down within
//! `maxSurge`/`maxUnavailable` (RollingUpdate) or all old ones first (Recreate); revisions
//! and their history in annotations; the status and conditions `kubectl rollout status`
//! reads; a Deployment resized mid-rollout resizes its active ReplicaSets in proportion.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::owners::{self, being_deleted, claim_all, controlled_by, controller_of, uid};
use super::reflector::Cache;
use super::replicaset::{self, is_active, selecting, REPLICA_FAILURE};
use super::runner::{self, Action, Source};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::{DeleteOptions, Part};
use crate::api::{Api, ApiError};
use crate::events::EventType;
use crate::obj;
use crate::selectors::LabelSelector;
use crate::store::revision_of;
use crate::validation::int_or_percent_value;

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// Deployment annotations not copied to its ReplicaSets (`skipCopyAnnotation`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
];

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Adopt(Arc<Value>),
    Release(Arc<Value>),
    CreateReplicaSet(Value),
    /// A ReplicaSet's new version (replicas, annotations), written if it did not change
    /// meanwhile.
    UpdateReplicaSet(Value),
    DeleteReplicaSet(Arc<Value>),
    /// The Deployment's revision annotation: its new ReplicaSet's.
    SetRevision(String),
    Status(Value),
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

// ---- pod template identity ----------------------------------------------------------

/// The template as compared and hashed: without the hash label and without nulls (a
/// template that went through a Go client, as in `kubectl rollout undo`, carries
/// `creationTimestamp: null`, which Kubernetes' typed decoding drops).
fn normalized_template(template: &Value) -> Value {
    let mut t = obj::strip_nulls(template);
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

/// `EqualIgnoreHash`.
fn same_template(a: &Value, b: &Value) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// JSON with object keys sorted, so equal templates hash equally whatever their key order.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `ComputeHash`: FNV-32a of the template (and the collision count, if any), rendered
/// with `SafeEncodeString` like Kubernetes (`rand.SafeEncodeString(fmt.Sprint(hash))`).
pub fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut text = String::new();
    canonical(&normalized_template(template), &mut text);
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

// ---- counts -----------------------------------------------------------------------------

fn spec_replicas(o: &Value) -> i64 {
    obj::get_i64(o, &["spec", "replicas"]).unwrap_or(1)
}

fn status_count(o: &Value, field: &str) -> i64 {
    obj::get_i64(o, &["status", field]).unwrap_or(0)
}

/// Available pods of a ReplicaSet, counted no higher than it is scaled to: a ReplicaSet
/// just scaled down still reports the pods it is about to delete.
fn available(rs: &Value) -> i64 {
    status_count(rs, "availableReplicas").min(spec_replicas(rs))
}

fn revision(o: &Value) -> i64 {
    obj::get_str(o, &["metadata", "annotations", REVISION])
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_rolling(d: &Value) -> bool {
    obj::str_or_empty(d, &["spec", "strategy", "type"]) != "Recreate"
}

/// `GetScaledValueFromIntOrPercent`.
fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct = int_or_percent_value(&Value::String(s.clone())).unwrap_or(0);
            let x = pct * total;
            if round_up {
                (x + 99) / 100
            } else {
                x / 100
            }
        }
        Some(v) => int_or_percent_value(v).unwrap_or(0),
        None => 0,
    }
}

/// `ResolveFenceposts`: (max surge, max unavailable) in pods.
fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = spec_replicas(d);
    let ru = obj::get(d, &["spec", "strategy", "rollingUpdate"]);
    let surge = scaled(ru.and_then(|r| r.get("maxSurge")), desired, true);
    let unavailable = scaled(ru.and_then(|r| r.get("maxUnavailable")), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `MaxUnavailable`.
fn max_unavailable(d: &Value) -> i64 {
    let desired = spec_replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

/// `NewRSNewReplicas` for a rolling update: the new ReplicaSet grows while all pods stay
/// within `replicas + maxSurge`.
fn new_rs_replicas(d: &Value, all: &[Value], new_rs_replicas: i64) -> i64 {
    let desired = spec_replicas(d);
    let current: i64 = all.iter().map(spec_replicas).sum();
    let max_total = desired + fenceposts(d).0;
    if current >= max_total {
        return new_rs_replicas;
    }
    new_rs_replicas + (max_total - current).min(desired - new_rs_replicas)
}

// ---- the plan -----------------------------------------------------------------------------

/// The ReplicaSets of a Deployment as this reconcile means to leave them.
struct Sets {
    /// Old ReplicaSets (by creation), each with whether this plan changed it.
    old: Vec<(Value, bool)>,
    new: Option<(Value, bool)>,
}

impl Sets {
    fn all(&self) -> Vec<Value> {
        self.old
            .iter()
            .chain(&self.new)
            .map(|(rs, _)| rs.clone())
            .collect()
    }

    fn scale_old(&mut self, i: usize, replicas: i64, d: &Value) {
        resize(&mut self.old[i], replicas, d);
    }
}

fn set_replicas(rs: &mut Value, replicas: i64, d: &Value) {
    rs["spec"]["replicas"] = json!(replicas);
    let annotations = annotations_mut(rs);
    annotations.insert(DESIRED_REPLICAS.into(), json!(spec_replicas(d).to_string()));
    let max = spec_replicas(d) + if is_rolling(d) { fenceposts(d).0 } else { 0 };
    annotations.insert(MAX_REPLICAS.into(), json!(max.to_string()));
}

fn annotations_mut(o: &mut Value) -> &mut Map<String, Value> {
    let meta = &mut o["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"]
        .as_object_mut()
        .expect("annotations were just made an object")
}

/// The ReplicaSet a Deployment makes for its current template.
fn new_replica_set(d: &Value, revision: i64, replicas: i64) -> Value {
    let collisions = obj::get_i64(d, &["status", "collisionCount"]);
    let template = obj::get(d, &["spec", "template"]).unwrap_or(&Value::Null);
    let hash = template_hash(template, collisions);
    let mut template = obj::strip_nulls(template);
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = obj::get(d, &["spec", "selector"])
        .cloned()
        .unwrap_or(json!({}));
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", obj::name(d)),
            "namespace": obj::namespace(d),
            "labels": template["metadata"]["labels"],
            "ownerReferences": [owners::controller_ref(d)],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
    });
    if let Some(m) = obj::get(d, &["spec", "minReadySeconds"]) {
        rs["spec"]["minReadySeconds"] = m.clone();
    }
    copy_annotations(d, &mut rs);
    annotations_mut(&mut rs).insert(REVISION.into(), json!(revision.to_string()));
    set_replicas(&mut rs, replicas, d);
    rs
}

/// Copies the Deployment's own annotations (a change cause, say) to its new ReplicaSet.
fn copy_annotations(d: &Value, rs: &mut Value) {
    let from: Vec<(String, Value)> = obj::object(d, &["metadata", "annotations"])
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations_mut(rs).extend(from);
}

/// Makes an existing ReplicaSet the newest revision again (a rollback), remembering its
/// former revision (`SetNewReplicaSetAnnotations`). Returns whether anything changed.
fn promote(d: &Value, rs: &mut Value, new_revision: i64) -> bool {
    let old_revision = revision(rs);
    let mut changed = false;
    if old_revision < new_revision {
        let history =
            obj::str_or_empty(rs, &["metadata", "annotations", REVISION_HISTORY]).to_string();
        let annotations = annotations_mut(rs);
        if old_revision > 0 {
            let history = if history.is_empty() {
                old_revision.to_string()
            } else {
                format!("{history},{old_revision}")
            };
            annotations.insert(REVISION_HISTORY.into(), json!(history));
        }
        annotations.insert(REVISION.into(), json!(new_revision.to_string()));
        copy_annotations(d, rs);
        changed = true;
    }
    let min_ready = obj::get(d, &["spec", "minReadySeconds"]).cloned();
    if obj::get(rs, &["spec", "minReadySeconds"]).cloned() != min_ready {
        match min_ready {
            Some(m) => rs["spec"]["minReadySeconds"] = m,
            None => {
                if let Some(spec) = rs["spec"].as_object_mut() {
                    spec.remove("minReadySeconds");
                }
            }
        }
        changed = true;
    }
    changed
}

fn by_creation(sets: &mut [Value]) {
    sets.sort_by(|a, b| {
        let t = |o: &Value| obj::str_or_empty(o, &["metadata", "creationTimestamp"]).to_string();
        t(a).cmp(&t(b)).then_with(|| obj::name(a).cmp(obj::name(b)))
    });
}

/// Decides what to do about Deployment `d` given the ReplicaSets and pods of its namespace.
pub fn plan(
    d: &Value,
    replica_sets: &[Arc<Value>],
    pods: &[Arc<Value>],
    now: DateTime<Utc>,
) -> Plan {
    let mut changes = Vec::new();
    let selector = obj::get(d, &["spec", "selector"]).unwrap_or(&Value::Null);
    let selector = LabelSelector::from_json(selector)
        .unwrap_or_else(|_| LabelSelector::from_json(&Value::Null).expect("null selects nothing"));
    let claimed = claim_all(d, &selector, replica_sets);
    changes.extend(claimed.adopt.iter().cloned().map(Change::Adopt));
    changes.extend(claimed.release.iter().cloned().map(Change::Release));
    let template = obj::get(d, &["spec", "template"]).unwrap_or(&Value::Null);
    let mut owned: Vec<Value> = claimed.owned.iter().map(|rs| (**rs).clone()).collect();
    by_creation(&mut owned);
    let new_at = owned.iter().position(|rs| {
        same_template(
            obj::get(rs, &["spec", "template"]).unwrap_or(&Value::Null),
            template,
        )
    });
    let new = new_at.map(|i| owned.remove(i));
    let mut sets = Sets {
        old: owned.into_iter().map(|rs| (rs, false)).collect(),
        new: new.map(|rs| (rs, false)),
    };
    let mut conditions = Conditions::of(d, now);
    if !being_deleted(d) {
        roll(d, &mut sets, pods, &mut changes, &mut conditions);
    }
    for (rs, changed) in sets.old.iter().chain(&sets.new) {
        if *changed {
            changes.push(Change::UpdateReplicaSet(rs.clone()));
        }
    }
    if let Some((rs, _)) = &sets.new {
        let rev = revision(rs).to_string();
        if obj::get_str(d, &["metadata", "annotations", REVISION]) != Some(rev.as_str()) {
            changes.push(Change::SetRevision(rev));
        }
    }
    let (status, action) = status(d, &sets, conditions, now);
    if Some(&status) != d.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// The rollout step: create or promote the new ReplicaSet, scale, clean up history.
fn roll(
    d: &Value,
    sets: &mut Sets,
    pods: &[Arc<Value>],
    changes: &mut Vec<Change>,
    conditions: &mut Conditions,
) {
    let paused = obj::bool_or_false(d, &["spec", "paused"]);
    conditions.paused(paused);
    let max_old_revision = sets
        .old
        .iter()
        .map(|(rs, _)| revision(rs))
        .max()
        .unwrap_or(0);
    if let Some((rs, changed)) = &mut sets.new {
        *changed |= promote(d, rs, max_old_revision + 1);
    }
    if paused || is_scaling_event(d, sets) {
        scale(d, sets);
        cleanup(d, sets, changes);
        return;
    }
    let scaled = if is_rolling(d) {
        rolling(d, sets, changes, conditions, max_old_revision)
    } else {
        recreate(d, sets, pods, changes, conditions, max_old_revision)
    };
    if !scaled && sets.new.is_some() {
        cleanup(d, sets, changes);
    }
}

/// `isScalingEvent`: an active ReplicaSet was sized for another `replicas`.
fn is_scaling_event(d: &Value, sets: &Sets) -> bool {
    let desired = spec_replicas(d).to_string();
    sets.old.iter().chain(&sets.new).any(|(rs, _)| {
        spec_replicas(rs) > 0
            && obj::get_str(rs, &["metadata", "annotations", DESIRED_REPLICAS])
                .is_some_and(|a| a != desired)
    })
}

/// `scale` in `sync.go`: a Deployment resized outside a rollout (or paused) resizes its one
/// active (else newest) ReplicaSet; in the middle of a rolling update, every active one,
/// in proportion to its size (the leftover to the largest), within `replicas + maxSurge`.
fn scale(d: &Value, sets: &mut Sets) {
    let desired = spec_replicas(d);
    let has_new = sets.new.is_some();
    let mut all: Vec<&mut (Value, bool)> = sets.old.iter_mut().collect();
    // Newest last: the old ones are in creation order, the new one is newer than all.
    all.extend(sets.new.iter_mut());
    let active: Vec<usize> = (0..all.len())
        .filter(|i| spec_replicas(&all[*i].0) > 0)
        .collect();
    match active.as_slice() {
        [] => {
            if let Some(newest) = all.last_mut() {
                resize(newest, desired, d);
            }
            return;
        }
        [only] => {
            resize(all[*only], desired, d);
            return;
        }
        _ => {}
    }
    // A saturated new ReplicaSet (one adopted, say): the old ones go.
    let newest = all.len() - 1;
    if has_new && saturated(d, &all[newest].0) {
        for i in active.into_iter().filter(|i| *i != newest) {
            resize(all[i], 0, d);
        }
        return;
    }
    if !is_rolling(d) {
        return;
    }
    let total: i64 = active.iter().map(|i| spec_replicas(&all[*i].0)).sum();
    let allowed = if desired > 0 {
        desired + fenceposts(d).0
    } else {
        0
    };
    let to_add = allowed - total;
    // Largest first; among equals, newer first when growing and older first when shrinking.
    let mut order = active;
    order.sort_by_key(|i| {
        let recency = if to_add > 0 { -(*i as i64) } else { *i as i64 };
        (-spec_replicas(&all[*i].0), recency)
    });
    let mut added = 0;
    let mut sizes: Vec<i64> = Vec::new();
    for i in &order {
        let rs = &all[*i].0;
        let share = proportion(rs, d, to_add, added);
        sizes.push(spec_replicas(rs) + share);
        added += share;
    }
    if let Some(largest) = sizes.first_mut() {
        *largest = (*largest + to_add - added).max(0);
    }
    for (i, size) in order.into_iter().zip(sizes) {
        resize(all[i], size, d);
    }
}

/// `IsSaturated`: the new ReplicaSet alone is the whole Deployment, all available.
fn saturated(d: &Value, new: &Value) -> bool {
    let desired = spec_replicas(d);
    obj::get_str(new, &["metadata", "annotations", DESIRED_REPLICAS]) == Some(&desired.to_string())
        && spec_replicas(new) == desired
        && status_count(new, "availableReplicas") == desired
}

/// `GetProportion`: a ReplicaSet's share of `to_add` (negative: to remove), of which
/// `added` is handed out already.
fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let desired = spec_replicas(d);
    let fraction = if desired == 0 {
        -size
    } else {
        let max_now = desired + fenceposts(d).0;
        match obj::get_str(rs, &["metadata", "annotations", MAX_REPLICAS])
            .and_then(|m| m.parse::<i64>().ok())
        {
            Some(max_before) if max_before > 0 => {
                ((size * max_now) as f64 / max_before as f64).round() as i64 - size
            }
            _ => size,
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Sets a ReplicaSet's size and the Deployment sizes it was made for; marks it changed if
/// either differs.
fn resize(entry: &mut (Value, bool), replicas: i64, d: &Value) {
    let mut resized = entry.0.clone();
    set_replicas(&mut resized, replicas, d);
    if resized != entry.0 {
        entry.0 = resized;
        entry.1 = true;
    }
}

/// Creates the new ReplicaSet if there is none; returns whether it did.
fn create_new(
    d: &Value,
    sets: &Sets,
    changes: &mut Vec<Change>,
    conditions: &mut Conditions,
    max_old_revision: i64,
    replicas: i64,
) -> bool {
    if sets.new.is_some() {
        return false;
    }
    let rs = new_replica_set(d, max_old_revision + 1, replicas);
    let msg = format!("Created new replica set {:?}", obj::name(&rs));
    conditions.set("Progressing", "True", "NewReplicaSetCreated", &msg);
    changes.push(Change::CreateReplicaSet(rs));
    true
}

/// `rolloutRolling`: returns whether it scaled anything.
fn rolling(
    d: &Value,
    sets: &mut Sets,
    changes: &mut Vec<Change>,
    conditions: &mut Conditions,
    max_old_revision: i64,
) -> bool {
    let desired = spec_replicas(d);
    if sets.new.is_none() {
        let all = sets.all();
        return create_new(
            d,
            sets,
            changes,
            conditions,
            max_old_revision,
            new_rs_replicas(d, &all, 0),
        );
    }
    // reconcileNewReplicaSet
    let all = sets.all();
    if let Some(new) = &mut sets.new {
        let current = spec_replicas(&new.0);
        let target = if current > desired {
            desired
        } else {
            new_rs_replicas(d, &all, current)
        };
        if target != current {
            resize(new, target, d);
            return true;
        }
    }
    // reconcileOldReplicaSets
    let old_pods: i64 = sets.old.iter().map(|(rs, _)| spec_replicas(rs)).sum();
    if old_pods == 0 {
        return false;
    }
    let all_pods: i64 = sets.all().iter().map(spec_replicas).sum();
    let min_available = desired - max_unavailable(d);
    let new_unavailable = sets
        .new
        .as_ref()
        .map_or(0, |(rs, _)| (spec_replicas(rs) - available(rs)).max(0));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut scaled = false;
    // cleanupUnhealthyReplicas: old pods that are not available go first, within bounds.
    let mut cleaned = 0;
    for i in 0..sets.old.len() {
        let rs = &sets.old[i].0;
        let (replicas, avail) = (spec_replicas(rs), available(rs));
        if cleaned >= max_scaled_down || replicas == 0 || replicas == avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(replicas - avail);
        sets.scale_old(i, replicas - down, d);
        cleaned += down;
        scaled = true;
    }
    // scaleDownOldReplicaSetsForRollingUpdate: available old pods, down to minAvailable.
    let available_pods: i64 = sets.all().iter().map(available).sum();
    if available_pods > min_available {
        let total = available_pods - min_available;
        let mut done = 0;
        for i in 0..sets.old.len() {
            let replicas = spec_replicas(&sets.old[i].0);
            if done >= total || replicas == 0 {
                continue;
            }
            let down = replicas.min(total - done);
            sets.scale_old(i, replicas - down, d);
            done += down;
            scaled = true;
        }
    }
    scaled
}

/// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to go, then the new one.
fn recreate(
    d: &Value,
    sets: &mut Sets,
    pods: &[Arc<Value>],
    changes: &mut Vec<Change>,
    conditions: &mut Conditions,
    max_old_revision: i64,
) -> bool {
    let mut scaled = false;
    for i in 0..sets.old.len() {
        if spec_replicas(&sets.old[i].0) > 0 {
            sets.scale_old(i, 0, d);
            scaled = true;
        }
    }
    if scaled {
        return true;
    }
    let old_uids: Vec<&str> = sets.old.iter().map(|(rs, _)| uid(rs)).collect();
    let old_pods_running = pods.iter().any(|p| {
        let phase = obj::str_or_empty(p, &["status", "phase"]);
        phase != "Succeeded" && phase != "Failed" && old_uids.iter().any(|u| controlled_by(p, u))
    });
    if old_pods_running {
        return false;
    }
    let desired = spec_replicas(d);
    if create_new(d, sets, changes, conditions, max_old_revision, desired) {
        return true;
    }
    match &mut sets.new {
        Some(new) if spec_replicas(&new.0) != desired => {
            resize(new, desired, d);
            true
        }
        _ => false,
    }
}

/// `cleanupDeployment`: old ReplicaSets beyond `revisionHistoryLimit`, oldest revision
/// first, if they are scaled to zero and have no pods left.
fn cleanup(d: &Value, sets: &Sets, changes: &mut Vec<Change>) {
    let Some(limit) = obj::get_i64(d, &["spec", "revisionHistoryLimit"]) else {
        return;
    };
    let mut cleanable: Vec<&Value> = sets
        .old
        .iter()
        .map(|(rs, _)| rs)
        .filter(|rs| !being_deleted(rs))
        .collect();
    let excess = cleanable.len() as i64 - limit;
    if excess <= 0 {
        return;
    }
    cleanable.sort_by_key(|rs| revision(rs));
    for rs in cleanable.into_iter().take(excess as usize) {
        let settled = obj::get_i64(rs, &["status", "observedGeneration"]).unwrap_or(0)
            >= obj::get_i64(rs, &["metadata", "generation"]).unwrap_or(0);
        if status_count(rs, "replicas") == 0 && spec_replicas(rs) == 0 && settled {
            changes.push(Change::DeleteReplicaSet(Arc::new(rs.clone())));
        }
    }
}

// ---- status -------------------------------------------------------------------------------

/// The Deployment's conditions being worked on (`SetDeploymentCondition` semantics).
struct Conditions {
    list: Vec<Value>,
    now: String,
}

impl Conditions {
    fn of(d: &Value, now: DateTime<Utc>) -> Conditions {
        Conditions {
            list: obj::array(d, &["status", "conditions"]).to_vec(),
            now: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }

    fn get(&self, kind: &str) -> Option<&Value> {
        self.list.iter().find(|c| c["type"] == kind)
    }

    /// A condition with the same status and reason is left as it is; one with the same
    /// status keeps its lastTransitionTime.
    fn set(&mut self, kind: &str, status: &str, reason: &str, message: &str) {
        let mut transition = self.now.clone();
        if let Some(current) = self.get(kind) {
            if current["status"] == status && current["reason"] == reason {
                return;
            }
            if current["status"] == status {
                transition = obj::str_or_empty(current, &["lastTransitionTime"]).to_string();
            }
        }
        self.replace(kind, status, reason, message, transition);
    }

    fn replace(
        &mut self,
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
        transition: String,
    ) {
        let condition = json!({"type": kind, "status": status, "lastUpdateTime": self.now,
            "lastTransitionTime": transition, "reason": reason, "message": message});
        match self.list.iter_mut().find(|c| c["type"] == kind) {
            Some(c) => *c = condition,
            None => self.list.push(condition),
        }
    }

    /// `checkPausedConditions`.
    fn paused(&mut self, paused: bool) {
        let reason = self.get("Progressing").map(|c| c["reason"].clone());
        let was_paused = reason.as_ref().is_some_and(|r| r == "DeploymentPaused");
        if paused && !was_paused {
            self.set(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            );
        } else if !paused && was_paused {
            self.set(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
            );
        }
    }
}

/// `calculateStatus` and `syncRolloutStatus`: the new status, and when to look again for
/// a progress deadline.
fn status(
    d: &Value,
    sets: &Sets,
    mut conditions: Conditions,
    now: DateTime<Utc>,
) -> (Value, Action) {
    let all = sets.all();
    let sum = |field: &str| -> i64 { all.iter().map(|rs| status_count(rs, field)).sum() };
    let desired = spec_replicas(d);
    let available_pods = sum("availableReplicas");
    let total: i64 = all.iter().map(spec_replicas).sum();
    let replicas = sum("replicas");
    let updated = sets
        .new
        .as_ref()
        .map_or(0, |(rs, _)| status_count(rs, "replicas"));
    let ready = sum("readyReplicas");
    let generation = obj::get_i64(d, &["metadata", "generation"]).unwrap_or(0);
    if available_pods >= desired - max_unavailable(d) {
        conditions.set(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        conditions.set(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    let mut action = Action::done();
    let paused = obj::bool_or_false(d, &["spec", "paused"]);
    let deadline =
        obj::get_i64(d, &["spec", "progressDeadlineSeconds"]).filter(|s| *s < i64::from(i32::MAX));
    let rs_name = sets.new.as_ref().map(|(rs, _)| obj::name(rs).to_string());
    let subject = match &rs_name {
        Some(n) => format!("ReplicaSet {n:?}"),
        None => format!("Deployment {:?}", obj::name(d)),
    };
    let progressing = conditions.get("Progressing").cloned();
    let reason = progressing.as_ref().map(|c| c["reason"].clone());
    let complete_before = replicas == updated
        && reason
            .as_ref()
            .is_some_and(|r| r == "NewReplicaSetAvailable");
    if let (Some(deadline), false, false) = (deadline, paused, complete_before) {
        let old = |f: &str| status_count(d, f);
        let complete = updated == desired && replicas == desired && available_pods == desired;
        let progressed = updated > old("updatedReplicas")
            || replicas - updated < old("replicas") - old("updatedReplicas")
            || ready > old("readyReplicas")
            || available_pods > old("availableReplicas");
        if complete {
            conditions.set(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("{subject} has successfully progressed."),
            );
        } else if progressed {
            let transition = match &progressing {
                Some(c) if c["status"] == "True" => {
                    obj::str_or_empty(c, &["lastTransitionTime"]).to_string()
                }
                _ => conditions.now.clone(),
            };
            conditions.replace(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("{subject} is progressing."),
                transition,
            );
            action = Action::requeue(Duration::from_secs(deadline as u64));
        } else if let Some(c) = &progressing {
            let since = obj::get_time(c, &["lastUpdateTime"]).unwrap_or(now);
            let due = since + chrono::Duration::seconds(deadline);
            if c["reason"] == "ProgressDeadlineExceeded" || due < now {
                conditions.set(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("{subject} has timed out progressing."),
                );
            } else {
                action = Action::requeue(
                    (due - now).to_std().unwrap_or_default() + Duration::from_secs(1),
                );
            }
        }
    }
    // getReplicaFailures: the new ReplicaSet's failure to create pods, else an old one's.
    let failure = sets.new.iter().chain(&sets.old).find_map(|(rs, _)| {
        obj::array(rs, &["status", "conditions"])
            .iter()
            .find(|c| c["type"] == REPLICA_FAILURE)
            .cloned()
    });
    match failure {
        Some(c) => {
            let text = |k: &str| obj::str_or_empty(&c, &[k]).to_string();
            conditions.set(
                REPLICA_FAILURE,
                &text("status"),
                &text("reason"),
                &text("message"),
            );
        }
        None => conditions.list.retain(|c| c["type"] != REPLICA_FAILURE),
    }
    let mut s = Map::new();
    s.insert("observedGeneration".into(), json!(generation));
    for (k, v) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available_pods),
        ("unavailableReplicas", (total - available_pods).max(0)),
    ] {
        if v != 0 {
            s.insert(k.into(), json!(v));
        }
    }
    if let Some(c) = obj::get(d, &["status", "collisionCount"]) {
        s.insert("collisionCount".into(), c.clone());
    }
    // Timestamps alone do not make a new status (Kubernetes compares without them only
    // for conditions it did not touch; a condition touched is always newer).
    s.insert("conditions".into(), json!(conditions.list));
    (Value::Object(s), action)
}

// ---- I/O ------------------------------------------------------------------------------

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(d) = caches.deployments.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let replica_sets = caches.replicasets.list(&key.namespace);
    let pods = caches.pods.list(&key.namespace);
    let plan = plan(&d, &replica_sets, &pods, Utc::now());
    let rs_res = caches.replicasets.resource();
    let ns = Some(key.namespace.as_str());
    let (mut rs_revision, mut d_revision) = (0, 0);
    let mut action = plan.action;
    for change in plan.changes {
        match change {
            Change::Adopt(rs) => {
                rs_revision =
                    rs_revision.max(owners::write_claim(api, rs_res, &d, &rs, true).await?)
            }
            Change::Release(rs) => {
                rs_revision =
                    rs_revision.max(owners::write_claim(api, rs_res, &d, &rs, false).await?)
            }
            Change::CreateReplicaSet(rs) => match api.create(rs_res, ns, rs.clone(), false).await {
                Ok(created) => {
                    rs_revision = rs_revision.max(revision_of(&created));
                    scaling_event(ctx, &d, &created, 0).await;
                }
                Err(ApiError::AlreadyExists { .. }) => {
                    d_revision = d_revision.max(on_name_taken(api, caches, &d, &rs).await?);
                    action = Action::requeue(Duration::ZERO);
                }
                Err(e) => return Err(e.into()),
            },
            Change::UpdateReplicaSet(rs) => {
                let name = obj::name(&rs);
                let before = caches
                    .replicasets
                    .get(&key.namespace, name)
                    .map_or(0, |o| spec_replicas(&o));
                match api
                    .update(rs_res, ns, name, rs.clone(), Part::Main, false)
                    .await
                {
                    Ok(written) => {
                        rs_revision = rs_revision.max(revision_of(&written));
                        scaling_event(ctx, &d, &written, before).await;
                    }
                    // Changed meanwhile: its event brings this Deployment back.
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::DeleteReplicaSet(rs) => {
                let opts = DeleteOptions {
                    precondition_uid: Some(uid(&rs).to_string()),
                    ..Default::default()
                };
                match api.delete(rs_res, ns, obj::name(&rs), &opts).await {
                    Ok((o, _)) => rs_revision = rs_revision.max(revision_of(&o)),
                    Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::SetRevision(revision) => {
                let res = caches.deployments.resource();
                let written = api
                    .update_with(res, ns, &key.name, Part::Main, |current| {
                        let mut next = current.clone();
                        annotations_mut(&mut next).insert(REVISION.into(), json!(revision));
                        Ok(Some(next))
                    })
                    .await;
                match written {
                    Ok(o) => d_revision = d_revision.max(revision_of(&o)),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Change::Status(status) => {
                d_revision =
                    d_revision.max(replicaset::write_status(api, caches, &d, status).await?)
            }
        }
    }
    caches.replicasets.caught_up(rs_revision).await;
    caches.deployments.caught_up(d_revision).await;
    Ok(action)
}

/// `ScalingReplicaSet`, as `kubectl describe deployment` shows it.
async fn scaling_event(ctx: &Context, d: &Value, rs: &Value, before: i64) {
    let after = spec_replicas(rs);
    let direction = match after.cmp(&before) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => return,
    };
    let msg = format!(
        "Scaled {direction} replica set {} from {before} to {after}",
        obj::name(rs)
    );
    ctx.events
        .record(d, EventType::Normal, "ScalingReplicaSet", &msg)
        .await;
}

/// The new ReplicaSet's name is taken. If by this Deployment's own ReplicaSet for this
/// template, the cache only lagged; otherwise it is a hash collision, and the
/// Deployment's `collisionCount` is bumped so the next hash differs.
async fn on_name_taken(
    api: &Api,
    caches: &Caches,
    d: &Value,
    rs: &Value,
) -> Result<u64, ControllerError> {
    let existing = api.get(
        caches.replicasets.resource(),
        Some(obj::namespace(d)),
        obj::name(rs),
    )?;
    let template = obj::get(d, &["spec", "template"]).unwrap_or(&Value::Null);
    let ours = controlled_by(&existing, uid(d))
        && same_template(
            obj::get(&existing, &["spec", "template"]).unwrap_or(&Value::Null),
            template,
        );
    if ours {
        return Ok(0);
    }
    let mut status = d.get("status").cloned().unwrap_or(json!({}));
    status["collisionCount"] =
        json!(obj::get_i64(d, &["status", "collisionCount"]).unwrap_or(0) + 1);
    replicaset::write_status(api, caches, d, status).await
}

/// The Deployments a ReplicaSet change concerns: its controller, or those that may adopt it.
fn owners_of_rs(deployments: &Cache, rs: &Value) -> Vec<Key> {
    match controller_of(rs) {
        Some(r) if obj::str_or_empty(r, &["kind"]) == "Deployment" => {
            vec![Key::new(
                obj::namespace(rs),
                obj::str_or_empty(r, &["name"]),
            )]
        }
        Some(_) => vec![],
        None => selecting(deployments, rs),
    }
}

/// The Deployment whose ReplicaSet controls a pod (Recreate waits for old pods to go).
fn owner_of_pod(replicasets: &Cache, pod: &Value) -> Vec<Key> {
    if is_active(pod) {
        // Only pods going away (or gone) unblock a Recreate rollout.
        return vec![];
    }
    let Some(r) = controller_of(pod).filter(|r| obj::str_or_empty(r, &["kind"]) == "ReplicaSet")
    else {
        return vec![];
    };
    replicasets
        .get(obj::namespace(pod), obj::str_or_empty(r, &["name"]))
        .and_then(|rs| {
            controller_of(&rs)
                .filter(|r| r["kind"] == "Deployment")
                .map(|r| Key::new(obj::namespace(pod), obj::str_or_empty(r, &["name"])))
        })
        .into_iter()
        .collect()
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let (deployments, replicasets) = (caches.deployments.clone(), caches.replicasets.clone());
    let sources = vec![
        Source {
            cache: caches.deployments.clone(),
            mapper: Arc::new(|d: &Value| vec![Key::of(d)]),
        },
        Source {
            cache: caches.replicasets.clone(),
            mapper: Arc::new(move |rs: &Value| owners_of_rs(&deployments, rs)),
        },
        Source {
            cache: caches.pods.clone(),
            mapper: Arc::new(move |pod: &Value| owner_of_pod(&replicasets, pod)),
        },
    ];
    let ctx = Context::new(api, caches, "deployment-controller");
    runner::run("deployment", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 10, 0)
            .single()
            .unwrap_or_default()
    }

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}})
    }

    fn deployment(replicas: i64, strategy: Value, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "strategy": strategy,
                     "template": template(image), "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
    }

    fn rolling(surge: Value, unavailable: Value) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
    }

    /// A ReplicaSet of `d` for `image`, at `replicas` with `available` of them available.
    fn rs(
        d: &Value,
        image: &str,
        replicas: i64,
        available: i64,
        revision: i64,
        created_min: u32,
    ) -> Arc<Value> {
        let mut with_image = d.clone();
        with_image["spec"]["template"] = template(image);
        let mut rs = new_replica_set(&with_image, revision, replicas);
        rs["metadata"]["uid"] = json!(format!("rs-{image}"));
        rs["metadata"]["creationTimestamp"] = json!(format!("2024-01-01T00:{created_min:02}:00Z"));
        rs["metadata"]["generation"] = json!(1);
        rs["status"] = json!({"replicas": replicas, "readyReplicas": available, "availableReplicas": available, "observedGeneration": 1});
        Arc::new(rs)
    }

    /// The plan's ReplicaSet writes as `create|update <image> <replicas>` and
    /// `delete <name>`.
    fn writes(p: &Plan) -> Vec<String> {
        let image = |rs: &Value| {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        p.changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateReplicaSet(rs) => {
                    Some(format!("create {} {}", image(rs), spec_replicas(rs)))
                }
                Change::UpdateReplicaSet(rs) => {
                    Some(format!("update {} {}", image(rs), spec_replicas(rs)))
                }
                Change::DeleteReplicaSet(rs) => Some(format!("delete {}", image(rs))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn template_hashes_ignore_key_order_nulls_and_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]},
                       "metadata": {"creationTimestamp": null, "labels": {"app": "web", "pod-template-hash": "x"}}});
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(template_hash(&a, None)
            .bytes()
            .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
        assert!(same_template(&a, &b));
    }

    #[test]
    fn fenceposts_resolve_like_kubernetes() {
        let cases = [
            (3, json!(1), json!(1), (1, 1)),
            (10, json!("25%"), json!("25%"), (3, 2)),
            (4, json!(0), json!(0), (0, 1)),
            (3, json!("0%"), json!("10%"), (0, 1)),
            (5, json!("100%"), json!(2), (5, 2)),
        ];
        for (replicas, surge, unavailable, want) in cases {
            let d = deployment(replicas, rolling(surge.clone(), unavailable.clone()), "v1");
            assert_eq!(
                fenceposts(&d),
                want,
                "{replicas} replicas, surge {surge}, unavailable {unavailable}"
            );
        }
    }

    #[test]
    fn a_rolling_update_steps_within_surge_and_unavailability() {
        let d = deployment(3, rolling(json!(1), json!(1)), "v2");
        // (what, the ReplicaSets, the writes planned)
        let cases = [
            (
                "a new template: the new set starts at the surge",
                vec![rs(&d, "v1", 3, 3, 1, 0)],
                vec!["create v2 1"],
            ),
            (
                "the new pod is not available yet: one old pod may go",
                vec![rs(&d, "v1", 3, 3, 1, 0), rs(&d, "v2", 1, 0, 2, 1)],
                vec!["update v1 2"],
            ),
            (
                "room again: the new set grows",
                vec![rs(&d, "v1", 2, 2, 1, 0), rs(&d, "v2", 1, 0, 2, 1)],
                vec!["update v2 2"],
            ),
            (
                "nothing new is available: nothing more goes",
                vec![rs(&d, "v1", 2, 2, 1, 0), rs(&d, "v2", 2, 0, 2, 1)],
                vec![],
            ),
            (
                "unavailable old pods go first",
                vec![rs(&d, "v1", 2, 0, 1, 0), rs(&d, "v2", 2, 2, 2, 1)],
                vec!["update v1 0"],
            ),
            (
                "done",
                vec![rs(&d, "v1", 0, 0, 1, 0), rs(&d, "v2", 3, 3, 2, 1)],
                vec![],
            ),
        ];
        for (what, sets, want) in cases {
            assert_eq!(writes(&plan(&d, &sets, &[], now())), want, "{what}");
        }
    }

    #[test]
    fn scaling_a_settled_deployment_scales_its_replicaset() {
        let d = deployment(5, rolling(json!("25%"), json!("25%")), "v1");
        let sets = vec![rs(&d, "v1", 3, 3, 1, 0)];
        assert_eq!(writes(&plan(&d, &sets, &[], now())), ["update v1 5"]);
        let d = deployment(1, rolling(json!("25%"), json!("25%")), "v1");
        assert_eq!(writes(&plan(&d, &sets, &[], now())), ["update v1 1"]);
    }

    #[test]
    fn a_deployment_resized_mid_rollout_scales_its_replicasets_in_proportion() {
        // Both sets were sized for 5 replicas (Kubernetes' sync_test "proportional scaling").
        let before = deployment(5, rolling(json!(0), json!(1)), "v2");
        let sets = vec![rs(&before, "v1", 3, 3, 1, 0), rs(&before, "v2", 2, 2, 2, 1)];
        let cases = [
            (10, vec!["update v1 6", "update v2 4"]),
            (3, vec!["update v1 2", "update v2 1"]),
            (0, vec!["update v1 0", "update v2 0"]),
        ];
        for (replicas, want) in cases {
            let d = deployment(replicas, rolling(json!(0), json!(1)), "v2");
            assert_eq!(
                writes(&plan(&d, &sets, &[], now())),
                want,
                "5 -> {replicas}"
            );
        }
    }

    #[test]
    fn recreate_waits_for_old_pods_to_go() {
        let d = deployment(3, json!({"type": "Recreate"}), "v2");
        let old_running = vec![rs(&d, "v1", 3, 3, 1, 0)];
        assert_eq!(writes(&plan(&d, &old_running, &[], now())), ["update v1 0"]);
        let old_scaled_down = vec![rs(&d, "v1", 0, 0, 1, 0)];
        let pod = Arc::new(
            json!({"metadata": {"name": "p", "ownerReferences": [{"uid": "rs-v1", "controller": true}]},
                                  "status": {"phase": "Running"}}),
        );
        assert!(writes(&plan(&d, &old_scaled_down, &[pod], now())).is_empty());
        assert_eq!(
            writes(&plan(&d, &old_scaled_down, &[], now())),
            ["create v2 3"]
        );
    }

    #[test]
    fn a_paused_deployment_does_not_roll_out() {
        let mut d = deployment(3, rolling(json!(1), json!(1)), "v2");
        d["spec"]["paused"] = json!(true);
        let p = plan(&d, &[rs(&d, "v1", 3, 3, 1, 0)], &[], now());
        assert!(writes(&p).is_empty());
        let Some(Change::Status(s)) = p.changes.last() else {
            panic!("{:?}", p.changes)
        };
        let progressing = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(progressing["reason"], "DeploymentPaused");
        // Scaling still works while paused.
        d["spec"]["replicas"] = json!(4);
        assert_eq!(
            writes(&plan(&d, &[rs(&d, "v1", 3, 3, 1, 0)], &[], now())),
            ["update v1 4"]
        );
    }

    #[test]
    fn a_rollback_makes_the_old_replicaset_the_newest_revision() {
        let d = deployment(3, rolling(json!(1), json!(1)), "v1");
        let sets = vec![rs(&d, "v1", 0, 0, 1, 0), rs(&d, "v2", 3, 3, 2, 1)];
        let p = plan(&d, &sets, &[], now());
        let promoted = p
            .changes
            .iter()
            .find_map(|c| match c {
                Change::UpdateReplicaSet(rs) if revision(rs) == 3 => Some(rs.clone()),
                _ => None,
            })
            .expect("revision 1 promoted to 3");
        assert_eq!(promoted["metadata"]["annotations"][REVISION_HISTORY], "1");
        assert_eq!(spec_replicas(&promoted), 1, "and scaled up by the surge");
        assert!(p.changes.contains(&Change::SetRevision("3".into())));
    }

    #[test]
    fn old_replicasets_beyond_the_history_limit_are_deleted() {
        let mut d = deployment(1, rolling(json!(1), json!(0)), "v4");
        d["spec"]["revisionHistoryLimit"] = json!(1);
        let sets = vec![
            rs(&d, "v1", 0, 0, 1, 0),
            rs(&d, "v2", 0, 0, 2, 1),
            rs(&d, "v3", 0, 0, 3, 2),
            rs(&d, "v4", 1, 1, 4, 3),
        ];
        assert_eq!(
            writes(&plan(&d, &sets, &[], now())),
            ["delete v1", "delete v2"]
        );
    }

    fn progressing(p: &Plan) -> (String, String) {
        let Some(Change::Status(s)) = p.changes.iter().find(|c| matches!(c, Change::Status(_)))
        else {
            panic!("no status in {:?}", p.changes)
        };
        let c = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        (
            c["status"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn a_replicaset_that_cannot_create_pods_fails_its_deployment() {
        let d = deployment(3, rolling(json!(1), json!(1)), "v1");
        let mut failing = (*rs(&d, "v1", 3, 0, 1, 0)).clone();
        failing["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": "forbidden"}]);
        let reasons = |p: &Plan| -> Vec<String> {
            p.changes
                .iter()
                .filter_map(|c| match c {
                    Change::Status(s) => Some(
                        s["conditions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| {
                                format!(
                                    "{}={}",
                                    c["type"].as_str().unwrap(),
                                    c["reason"].as_str().unwrap()
                                )
                            })
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        let p = plan(&d, &[Arc::new(failing.clone())], &[], now());
        assert!(
            reasons(&p).contains(&"ReplicaFailure=FailedCreate".to_string()),
            "{:?}",
            reasons(&p)
        );
        // Once the ReplicaSet recovers, the Deployment's condition goes too.
        let mut d = d;
        d["status"] = p
            .changes
            .iter()
            .find_map(|c| match c {
                Change::Status(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        failing["status"]["conditions"] = json!([]);
        let p = plan(&d, &[Arc::new(failing)], &[], now());
        assert!(!reasons(&p).iter().any(|r| r.starts_with("ReplicaFailure")));
    }

    #[test]
    fn progress_conditions_follow_the_rollout() {
        let mut d = deployment(3, rolling(json!(1), json!(1)), "v1");
        let done = vec![rs(&d, "v1", 3, 3, 1, 0)];
        d["metadata"]["annotations"] = json!({REVISION: "1"});
        assert_eq!(
            progressing(&plan(&d, &done, &[], now())),
            ("True".into(), "NewReplicaSetAvailable".into())
        );

        // Stuck since 00:00 with a 60 s deadline, at 00:10: timed out.
        d["spec"]["progressDeadlineSeconds"] = json!(60);
        d["status"] = json!({"replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "",
             "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]});
        let stuck = vec![rs(&d, "v0", 3, 3, 1, 0), rs(&d, "v1", 1, 0, 2, 1)];
        assert_eq!(
            progressing(&plan(&d, &stuck, &[], now())),
            ("False".into(), "ProgressDeadlineExceeded".into())
        );
    }
}
