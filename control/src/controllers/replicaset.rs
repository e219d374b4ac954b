//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector,
//! adopting matching orphans and releasing pods that stopped matching, and reports them in
//! `status` (`syncReplicaSet` in Kubernetes' `replica_set.go`).

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::owners::{self, being_deleted, claim_all};
use super::pods;
use super::runner::{self, Action};
use super::{Caches, Context, ControllerError, Key};
use crate::api::objects::Part;
use crate::api::{Api, ApiError};
use crate::obj;
use crate::selectors::LabelSelector;
use crate::store::revision_of;

/// The condition reporting pods that cannot be created.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// At most this many pods are created or deleted per reconcile (Kubernetes' `burstReplicas`).
const BURST: usize = 500;

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adopt a matching orphan, or release what stopped matching.
    Owner(owners::OwnerChange),
    /// Create this many pods from the template (in slow-start batches).
    Create(usize),
    /// Delete these pods, the least valuable first.
    Delete(Vec<Arc<Value>>),
    Status(Value),
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

pub fn is_pod_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last turned True, if it is True.
fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    obj::array(pod, &["status", "conditions"])
        .iter()
        .find(|c| obj::str_or_empty(c, &["type"]) == "Ready")
        .filter(|c| obj::str_or_empty(c, &["status"]) == "True")
        .map(|c| obj::get_time(c, &["lastTransitionTime"]).unwrap_or_default())
}

/// How long until a ready pod counts as available: `None` if it is not ready, zero if it
/// is available already (`IsPodAvailable`).
pub(super) fn until_available(
    pod: &Value,
    min_ready_seconds: i64,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let since = ready_since(pod)?;
    let at = since + chrono::Duration::seconds(min_ready_seconds);
    Some((at - now).to_std().unwrap_or_default())
}

/// Pods that count: not terminal, not being deleted (`FilterActivePods`).
pub fn is_active(pod: &Value) -> bool {
    let phase = obj::str_or_empty(pod, &["status", "phase"]);
    phase != "Succeeded" && phase != "Failed" && !being_deleted(pod)
}

/// The order Kubernetes deletes pods in when scaling down (`ActivePods` ranking, simplified
/// to what wkube's pods carry): unscheduled, then pending, not ready, most restarted,
/// newest first.
fn deletion_rank(pod: &Value) -> impl Ord {
    let assigned = !obj::str_or_empty(pod, &["spec", "nodeName"]).is_empty();
    let phase = match obj::str_or_empty(pod, &["status", "phase"]) {
        "Pending" => 0,
        "Running" => 2,
        _ => 1,
    };
    let restarts: i64 = obj::array(pod, &["status", "containerStatuses"])
        .iter()
        .filter_map(|c| obj::get_i64(c, &["restartCount"]))
        .sum();
    let created = obj::get_time(pod, &["metadata", "creationTimestamp"]);
    (
        assigned,
        phase,
        is_pod_ready(pod),
        Reverse(restarts),
        Reverse(created),
    )
}

/// Decides what to do about `rs` given the pods of its namespace.
pub fn plan(rs: &Value, pods: &[Arc<Value>], now: DateTime<Utc>) -> Plan {
    let mut changes = Vec::new();
    let selector =
        LabelSelector::from_json(obj::get(rs, &["spec", "selector"]).unwrap_or(&Value::Null))
            .unwrap_or_else(|_| {
                LabelSelector::from_json(&Value::Null).expect("null selects nothing")
            });
    let claimed = claim_all(rs, &selector, pods);
    changes.extend(claimed.changes.iter().cloned().map(Change::Owner));
    let active: Vec<&Arc<Value>> = claimed.owned.iter().filter(|p| is_active(p)).collect();
    let wanted = obj::get_i64(rs, &["spec", "replicas"]).unwrap_or(1).max(0) as usize;
    if !being_deleted(rs) {
        if active.len() < wanted {
            changes.push(Change::Create((wanted - active.len()).min(BURST)));
        } else if active.len() > wanted {
            let mut victims: Vec<Arc<Value>> = active.iter().map(|p| Arc::clone(p)).collect();
            victims.sort_by_cached_key(|p| deletion_rank(p));
            victims.truncate((active.len() - wanted).min(BURST));
            changes.push(Change::Delete(victims));
        }
    }
    let min_ready = obj::get_i64(rs, &["spec", "minReadySeconds"]).unwrap_or(0);
    let template_labels = obj::object(rs, &["spec", "template", "metadata", "labels"]);
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = obj::labels(p);
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let waits: Vec<Duration> = active
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .collect();
    let available = waits.iter().filter(|w| w.is_zero()).count();
    let action = waits
        .iter()
        .filter(|w| !w.is_zero())
        .min()
        .map_or(Action::done(), |w| Action::requeue(*w));
    let status = status(rs, active.len(), fully_labeled, waits.len(), available);
    if Some(&status) != rs.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// The new status; zero counts are left out like Kubernetes' `omitempty`, conditions kept.
fn status(rs: &Value, replicas: usize, labeled: usize, ready: usize, available: usize) -> Value {
    let mut s = Map::new();
    s.insert("replicas".into(), json!(replicas));
    for (k, v) in [
        ("fullyLabeledReplicas", labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if v > 0 {
            s.insert(k.into(), json!(v));
        }
    }
    if let Some(g) = obj::get_i64(rs, &["metadata", "generation"]) {
        s.insert("observedGeneration".into(), json!(g));
    }
    // A plan assumes its pods get created: a reconcile that fails to adds the failure back.
    let conditions: Vec<&Value> = obj::array(rs, &["status", "conditions"])
        .iter()
        .filter(|c| c["type"] != REPLICA_FAILURE)
        .collect();
    if !conditions.is_empty() {
        s.insert("conditions".into(), json!(conditions));
    }
    Value::Object(s)
}

/// A pod for `rs` from its template (`GetPodFromTemplate`).
fn new_pod(rs: &Value) -> Value {
    let template = obj::get(rs, &["spec", "template"]).unwrap_or(&Value::Null);
    let mut meta = json!({
        "generateName": format!("{}-", obj::name(rs)),
        "namespace": obj::namespace(rs),
        "ownerReferences": [owners::controller_ref(rs)],
    });
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = obj::get(template, &["metadata", k]) {
            meta[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// Slow start (`slowStartBatch`): batches of 1, 2, 4, ... pods, stopping after a batch with
/// a failure, so a pod that cannot be created (quota, a terminating namespace) fails once
/// instead of `count` times. Returns the highest revision written.
async fn create_pods(ctx: &Context, rs: &Value, count: usize) -> Result<u64, ControllerError> {
    let pod = new_pod(rs);
    let (mut done, mut batch, mut revision) = (0, 1, 0);
    while done < count {
        let size = batch.min(count - done);
        let creates = (0..size).map(|_| pods::create(ctx, rs, pod.clone()));
        let results = futures::future::join_all(creates).await;
        for p in results.iter().flatten() {
            revision = revision.max(revision_of(p));
        }
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            ctx.caches.pods.caught_up(revision).await;
            return Err(e.into());
        }
        done += size;
        batch *= 2;
    }
    Ok(revision)
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &ctx.caches);
    let Some(rs) = caches.replicasets.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let plan = plan(&rs, &caches.pods.list(&key.namespace), Utc::now());
    let pods = caches.pods.resource();
    let mut revision = 0;
    // The status goes last: a failure to create pods is reported in it.
    let mut status = None;
    let mut failure = None;
    for change in plan.changes {
        let written = match change {
            Change::Owner(c) => c.write(api, pods, &rs).await?,
            Change::Create(n) => match create_pods(ctx, &rs, n).await {
                Ok(written) => written,
                Err(e) => {
                    failure = Some(e);
                    0
                }
            },
            Change::Delete(victims) => {
                let mut highest = 0;
                for p in victims {
                    highest = highest.max(pods::delete(ctx, &rs, &p).await?);
                }
                highest
            }
            Change::Status(s) => {
                status = Some(s);
                0
            }
        };
        revision = revision.max(written);
    }
    if let Some(e) = &failure {
        let planned = status.unwrap_or_else(|| rs["status"].clone());
        status = Some(with_failure(&rs, planned, &e.to_string(), Utc::now()))
            .filter(|s| Some(s) != rs.get("status"));
    }
    caches.pods.caught_up(revision).await;
    if let Some(s) = status {
        let written = write_status(api, caches, &rs, s).await?;
        caches.replicasets.caught_up(written).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(plan.action),
    }
}

/// `status` with the `ReplicaFailure` condition Kubernetes sets when pods cannot be
/// created (kept as it was if the ReplicaSet has it already).
fn with_failure(rs: &Value, mut status: Value, message: &str, now: DateTime<Utc>) -> Value {
    let existing = obj::array(rs, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == REPLICA_FAILURE)
        .cloned();
    let condition = existing.unwrap_or_else(|| {
        json!({"type": REPLICA_FAILURE, "status": "True",
               "lastTransitionTime": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
               "reason": "FailedCreate", "message": message})
    });
    let mut conditions: Vec<Value> = obj::array(&status, &["conditions"]).to_vec();
    conditions.retain(|c| c["type"] != REPLICA_FAILURE);
    conditions.push(condition);
    status["conditions"] = json!(conditions);
    status
}

/// Writes a workload's status, observed from `o`, onto its latest version (only the
/// controller writes it, so nothing newer is lost).
pub async fn write_status(
    api: &Api,
    caches: &Caches,
    o: &Value,
    status: Value,
) -> Result<u64, ControllerError> {
    let res = caches.resource_of(o)?;
    let written = api
        .update_with(
            res,
            Some(obj::namespace(o)),
            obj::name(o),
            Part::Status,
            |current| {
                if owners::uid(current) != owners::uid(o) {
                    return Ok(None);
                }
                let mut next = current.clone();
                next["status"] = status.clone();
                Ok(Some(next))
            },
        )
        .await;
    match written {
        Ok(w) => Ok(revision_of(&w)),
        Err(ApiError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(api: Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let sources = owners::sources(&caches.replicasets, &caches.pods);
    let ctx = Context::new(api, caches, "replicaset-controller");
    runner::run("replicaset", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controllers::test_now as now;

    fn rs(replicas: i64, min_ready: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    /// A pod owned by the ReplicaSet (or an orphan), ready since `ready_at` seconds past
    /// the minute, created at second `created`.
    fn pod(name: &str, owned: bool, ready_at: Option<u32>, created: u32) -> Arc<Value> {
        let refs = if owned {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": true}])
        } else {
            json!([])
        };
        let conditions: Vec<Value> = ready_at
            .map(|s| json!({"type": "Ready", "status": "True", "lastTransitionTime": format!("2024-01-01T00:00:{s:02}Z")}))
            .into_iter()
            .collect();
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web", "tier": "front"},
                "ownerReferences": refs, "creationTimestamp": format!("2024-01-01T00:00:{created:02}Z")},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "conditions": conditions}}),
        )
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Owner(c) => c.to_string(),
                Change::Create(n) => format!("create {n}"),
                Change::Delete(ps) => format!(
                    "delete {}",
                    ps.iter()
                        .map(|p| obj::name(p))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Change::Status(s) => format!("status {s}"),
            })
            .collect()
    }

    #[test]
    fn plans_follow_sync_replica_set() {
        let mut stray = (*pod("stray", true, Some(0), 0)).clone();
        stray["metadata"]["labels"] = json!({"app": "other"});
        let mut deleting = (*pod("going", true, Some(0), 0)).clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:59Z");
        // (what, replica set, pods, expected plan)
        type Case<'a> = (&'a str, Value, Vec<Arc<Value>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("nothing yet: create all", rs(3, 0), vec![], vec!["create 3", r#"status {"replicas":0,"observedGeneration":2}"#]),
            (
                "adopt an orphan, create the rest",
                rs(2, 0),
                vec![pod("orphan", false, None, 0)],
                vec!["adopt orphan", "create 1", r#"status {"replicas":1,"fullyLabeledReplicas":1,"observedGeneration":2}"#],
            ),
            (
                "too many: newest not-ready goes first",
                rs(1, 0),
                vec![pod("old", true, Some(1), 1), pod("new", true, Some(2), 2), pod("unready", true, None, 0)],
                vec!["delete unready,new", r#"status {"replicas":3,"fullyLabeledReplicas":3,"readyReplicas":2,"availableReplicas":2,"observedGeneration":2}"#],
            ),
            (
                "a pod that stopped matching is released and replaced; a deleting pod does not count",
                rs(1, 0),
                vec![Arc::new(stray), Arc::new(deleting)],
                vec!["release stray", "create 1", r#"status {"replicas":0,"observedGeneration":2}"#],
            ),
        ];
        for (what, rs, pods, want) in cases {
            let got = plan(&rs, &pods, now());
            assert_eq!(names(&got.changes), want, "{what}");
        }
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_requeues() {
        let mut settled = rs(2, 30);
        let pods = vec![pod("a", true, Some(0), 0), pod("b", true, Some(50), 0)];
        let got = plan(&settled, &pods, now());
        // a: ready 60 s ago (available); b: ready 10 s ago, available in 20 s.
        assert_eq!(got.action, Action::requeue(Duration::from_secs(20)));
        let Some(Change::Status(s)) = got.changes.last() else {
            panic!("{:?}", got.changes)
        };
        assert_eq!(
            (s["readyReplicas"].as_i64(), s["availableReplicas"].as_i64()),
            (Some(2), Some(1))
        );
        settled["status"] = s.clone();
        assert!(
            plan(&settled, &pods, now()).changes.is_empty(),
            "a settled set plans nothing"
        );
    }

    #[test]
    fn a_failure_to_create_is_a_condition_until_creating_works() {
        let mut failing = rs(2, 0);
        let planned = json!({"replicas": 0});
        let s = with_failure(&failing, planned.clone(), "forbidden", now());
        assert_eq!(s["conditions"][0]["reason"], "FailedCreate");
        assert_eq!(s["conditions"][0]["message"], "forbidden");
        failing["status"] = s.clone();
        let later = now() + chrono::Duration::seconds(5);
        assert_eq!(
            with_failure(&failing, planned, "again", later),
            s,
            "kept as it was"
        );
        let Some(Change::Status(ok)) = plan(&failing, &[], now()).changes.pop() else {
            panic!("a status")
        };
        assert!(
            ok.get("conditions").is_none(),
            "a plan drops the failure: {ok}"
        );
    }

    #[test]
    fn a_replicaset_being_deleted_does_not_scale() {
        let mut going = rs(3, 0);
        going["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let got = plan(&going, &[], now());
        assert!(!got.changes.iter().any(|c| matches!(c, Change::Create(_))));
    }

    #[test]
    fn new_pods_come_from_the_template_with_a_controller_ref() {
        let p = new_pod(&rs(1, 0));
        assert_eq!(p["metadata"]["generateName"], "web-");
        assert_eq!(p["metadata"]["labels"]["tier"], "front");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["spec"]["containers"][0]["name"], "c");
    }
}
