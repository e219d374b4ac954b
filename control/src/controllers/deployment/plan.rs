//! The Deployment controller's decision: which ReplicaSet is new, what to create, scale,
//! promote (rollback) and delete, and the status to report.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::counts::{
    available, fenceposts, is_rolling, max_unavailable, new_rs_replicas, revision, spec_replicas,
    status_count,
};
use super::status::{status, Conditions};
use super::template::{same_template, template_hash};
use super::{DESIRED_REPLICAS, HASH_LABEL, MAX_REPLICAS, NOT_COPIED, REVISION, REVISION_HISTORY};
use crate::controllers::owners::{self, being_deleted, claim_all, controlled_by, uid};
use crate::controllers::runner::Action;
use crate::obj;
use crate::selectors::LabelSelector;

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adopt a matching orphan, or release what stopped matching.
    Owner(owners::OwnerChange),
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

/// The ReplicaSets of a Deployment as this reconcile means to leave them.
pub(super) struct Sets {
    /// Old ReplicaSets (by creation), each with whether this plan changed it.
    pub(super) old: Vec<(Value, bool)>,
    pub(super) new: Option<(Value, bool)>,
}

impl Sets {
    pub(super) fn all(&self) -> Vec<Value> {
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

pub(super) fn set_replicas(rs: &mut Value, replicas: i64, d: &Value) {
    rs["spec"]["replicas"] = json!(replicas);
    let annotations = annotations_mut(rs);
    annotations.insert(DESIRED_REPLICAS.into(), json!(spec_replicas(d).to_string()));
    let max = spec_replicas(d) + if is_rolling(d) { fenceposts(d).0 } else { 0 };
    annotations.insert(MAX_REPLICAS.into(), json!(max.to_string()));
}

pub(super) fn annotations_mut(o: &mut Value) -> &mut Map<String, Value> {
    let meta = &mut o["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"]
        .as_object_mut()
        .expect("annotations were just made an object")
}

/// The ReplicaSet a Deployment makes for its current template.
pub(super) fn new_replica_set(d: &Value, revision: i64, replicas: i64) -> Value {
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
pub(super) fn copy_annotations(d: &Value, rs: &mut Value) {
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
pub(super) fn promote(d: &Value, rs: &mut Value, new_revision: i64) -> bool {
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

pub(super) fn by_creation(sets: &mut [Value]) {
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
    changes.extend(claimed.changes.iter().cloned().map(Change::Owner));
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
pub(super) fn roll(
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
pub(super) fn is_scaling_event(d: &Value, sets: &Sets) -> bool {
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
pub(super) fn scale(d: &Value, sets: &mut Sets) {
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
pub(super) fn saturated(d: &Value, new: &Value) -> bool {
    let desired = spec_replicas(d);
    obj::get_str(new, &["metadata", "annotations", DESIRED_REPLICAS]) == Some(&desired.to_string())
        && spec_replicas(new) == desired
        && status_count(new, "availableReplicas") == desired
}

/// `GetProportion`: a ReplicaSet's share of `to_add` (negative: to remove), of which
/// `added` is handed out already.
pub(super) fn proportion(rs: &Value, d: &Value, to_add: i64, added: i64) -> i64 {
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
pub(super) fn resize(entry: &mut (Value, bool), replicas: i64, d: &Value) {
    let mut resized = entry.0.clone();
    set_replicas(&mut resized, replicas, d);
    if resized != entry.0 {
        entry.0 = resized;
        entry.1 = true;
    }
}

/// Creates the new ReplicaSet if there is none; returns whether it did.
pub(super) fn create_new(
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
pub(super) fn rolling(
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
pub(super) fn recreate(
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
pub(super) fn cleanup(d: &Value, sets: &Sets, changes: &mut Vec<Change>) {
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
