//! The DaemonSet controller (Kubernetes' `daemon_controller.go`, `update.go`): one pod per
//! eligible node, bound to it by the controller (`spec.nodeName`, plus the node affinity
//! recent Kubernetes sets, so the pod reads the same); pods on nodes that stopped being
//! eligible are removed; a template change replaces pods node by node, at most
//! `maxUnavailable` of them unavailable at once (RollingUpdate), or only as the user
//! deletes them (OnDelete).
//!
//! A node is eligible when the template's `nodeSelector` matches its labels and the pod
//! tolerates its NoSchedule and NoExecute taints, counting the tolerations the controller
//! adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`): not-ready, unreachable,
//! the pressure conditions, and unschedulable, so cordoned nodes keep their daemons.
//! `maxSurge` and required node affinity of the template are not honoured yet.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::deployment::template::template_hash;
use super::owners::{self, being_deleted, claim_all};
use super::pods;
use super::replicaset::{self, is_active, is_pod_ready, until_available};
use super::runner::{self, Action, Source};
use super::statefulset::REVISION_LABEL;
use super::{Caches, Context, ControllerError, Key};
use crate::obj;
use crate::scheduler::plugins::taints::tolerates;
use crate::selectors::LabelSelector;
use crate::store::revision_of;

const GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations every daemon pod gets.
fn daemon_tolerations() -> Vec<Value> {
    let exists =
        |key: &str, effect: &str| json!({"key": key, "operator": "Exists", "effect": effect});
    vec![
        exists("node.kubernetes.io/not-ready", "NoExecute"),
        exists("node.kubernetes.io/unreachable", "NoExecute"),
        exists("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// One decision of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adopt a matching orphan, or release what stopped matching.
    Owner(owners::OwnerChange),
    /// A pod for this node.
    Create(String),
    Delete(Arc<Value>),
    Status(Value),
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub action: Action,
}

/// Whether a daemon pod of `set` belongs on `node` (`NodeShouldRunDaemonPod`).
pub fn should_run(set: &Value, node: &Value) -> bool {
    let pod_spec = obj::get(set, &["spec", "template", "spec"]).unwrap_or(&Value::Null);
    let labels = obj::labels(node);
    let selected = obj::object(pod_spec, &["nodeSelector"])
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let mut tolerations = obj::array(pod_spec, &["tolerations"]).to_vec();
    tolerations.extend(daemon_tolerations());
    let tolerated = obj::array(node, &["spec", "taints"])
        .iter()
        .filter(|t| obj::str_or_empty(t, &["effect"]) != "PreferNoSchedule")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
    selected && tolerated && !being_deleted(node)
}

/// The hash of the set's current template, in each pod's `controller-revision-hash`.
fn revision(set: &Value) -> String {
    let template = obj::get(set, &["spec", "template"]).unwrap_or(&Value::Null);
    let collisions = obj::get_i64(set, &["status", "collisionCount"]).filter(|&c| c != 0);
    template_hash(template, collisions)
}

fn is_current(pod: &Value, hash: &str) -> bool {
    obj::str_or_empty(pod, &["metadata", "labels", REVISION_LABEL]) == hash
}

/// `maxUnavailable` of `desired` pods, an absolute count or a percentage rounded up, at
/// least one.
fn max_unavailable(set: &Value, desired: usize) -> usize {
    let v = obj::get(
        set,
        &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
    );
    let n = match v {
        Some(Value::String(p)) => p
            .strip_suffix('%')
            .and_then(|p| p.parse::<usize>().ok())
            .map_or(1, |p| (p * desired).div_ceil(100)),
        Some(v) => v.as_u64().unwrap_or(1) as usize,
        None => 1,
    };
    n.max(1)
}

/// Decides what to do about `set` given the cluster's nodes and its namespace's pods.
pub fn plan(set: &Value, nodes: &[Arc<Value>], pods: &[Arc<Value>], now: DateTime<Utc>) -> Plan {
    let mut changes = Vec::new();
    let selector =
        LabelSelector::from_json(obj::get(set, &["spec", "selector"]).unwrap_or(&Value::Null))
            .unwrap_or_else(|_| {
                LabelSelector::from_json(&Value::Null).expect("null selects nothing")
            });
    let claimed = claim_all(set, &selector, pods);
    changes.extend(claimed.changes.iter().cloned().map(Change::Owner));
    let owned = claimed.owned;
    let hash = revision(set);
    let min_ready = obj::get_i64(set, &["spec", "minReadySeconds"]).unwrap_or(0);
    let available = |p: &Value| until_available(p, min_ready, now).is_some_and(|w| w.is_zero());
    let rolling = obj::str_or_empty(set, &["spec", "updateStrategy", "type"]) == "RollingUpdate";
    let deleting = being_deleted(set);

    let (mut desired, mut scheduled, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available_count, mut updated) = (0, 0, 0);
    // Nodes whose pod is of an old template, and whether that pod is available.
    let mut outdated: Vec<(Arc<Value>, bool)> = Vec::new();
    let mut unavailable = 0;
    for node in nodes {
        let name = obj::name(node);
        let on_node: Vec<&Arc<Value>> = owned
            .iter()
            .filter(|p| obj::str_or_empty(p, &["spec", "nodeName"]) == name)
            .collect();
        let running: Vec<&Arc<Value>> = on_node.iter().copied().filter(|p| is_active(p)).collect();
        if !should_run(set, node) {
            if !on_node.is_empty() {
                misscheduled += 1;
            }
            changes.extend(running.iter().map(|p| Change::Delete(Arc::clone(p))));
            continue;
        }
        desired += 1;
        if !on_node.iter().any(|p| !being_deleted(p)) {
            if !deleting {
                changes.push(Change::Create(name.to_string()));
            }
            unavailable += 1;
            continue;
        }
        scheduled += 1;
        // A failed daemon pod is replaced; extra pods go, the oldest stays.
        changes.extend(
            on_node
                .iter()
                .filter(|p| !being_deleted(p) && !is_active(p))
                .map(|p| Change::Delete(Arc::clone(p))),
        );
        let mut kept = running.clone();
        kept.sort_by_key(|p| obj::get_time(p, &["metadata", "creationTimestamp"]));
        changes.extend(kept.iter().skip(1).map(|p| Change::Delete(Arc::clone(p))));
        let Some(pod) = kept.first() else {
            unavailable += 1;
            continue;
        };
        ready += usize::from(is_pod_ready(pod));
        let is_available = available(pod);
        available_count += usize::from(is_available);
        if !is_available {
            unavailable += 1;
        }
        if is_current(pod, &hash) {
            updated += 1;
        } else {
            outdated.push((Arc::clone(pod), is_available));
        }
    }
    if rolling && !deleting {
        // Unavailable old pods go at once; available ones within the budget.
        let mut budget = max_unavailable(set, desired).saturating_sub(unavailable);
        for (pod, is_available) in outdated {
            if !is_available {
                changes.push(Change::Delete(pod));
            } else if budget > 0 {
                budget -= 1;
                changes.push(Change::Delete(pod));
            }
        }
    }
    let action = owned
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .filter(|w| !w.is_zero())
        .min()
        .map_or(Action::done(), Action::requeue);
    let mut s = Map::new();
    for (k, v) in [
        ("currentNumberScheduled", scheduled),
        ("numberMisscheduled", misscheduled),
        ("desiredNumberScheduled", desired),
        ("numberReady", ready),
    ] {
        s.insert(k.into(), json!(v));
    }
    if let Some(g) = obj::get_i64(set, &["metadata", "generation"]) {
        s.insert("observedGeneration".into(), json!(g));
    }
    for (k, v) in [
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available_count),
        ("numberUnavailable", desired.saturating_sub(available_count)),
    ] {
        if v > 0 {
            s.insert(k.into(), json!(v));
        }
    }
    let status = Value::Object(s);
    if Some(&status) != set.get("status") {
        changes.push(Change::Status(status));
    }
    Plan { changes, action }
}

/// The daemon pod of `set` for `node`.
fn new_pod(set: &Value, node: &str) -> Value {
    let template = obj::get(set, &["spec", "template"]).unwrap_or(&Value::Null);
    let mut labels = obj::object(template, &["metadata", "labels"])
        .cloned()
        .unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(revision(set)));
    let generation = obj::get_i64(set, &["metadata", "generation"]).unwrap_or(1);
    labels.insert(GENERATION_LABEL.into(), json!(generation.to_string()));
    let mut meta = json!({
        "generateName": format!("{}-", obj::name(set)),
        "namespace": obj::namespace(set),
        "labels": labels,
        "ownerReferences": [owners::controller_ref(set)],
    });
    if let Some(a) = obj::get(template, &["metadata", "annotations"]) {
        meta["annotations"] = a.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut tolerations = obj::array(&spec, &["tolerations"]).to_vec();
    for t in daemon_tolerations() {
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    spec["tolerations"] = json!(tolerations);
    spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
    spec["nodeName"] = json!(node);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

async fn reconcile(ctx: &Context, key: Key) -> Result<Action, ControllerError> {
    let (api, caches) = (&ctx.api, &*ctx.caches);
    let Some(set) = caches.daemonsets.get(&key.namespace, &key.name) else {
        return Ok(Action::done());
    };
    let plan = plan(
        &set,
        &caches.nodes.all(),
        &caches.pods.list(&key.namespace),
        Utc::now(),
    );
    let pods = caches.pods.resource();
    let (mut pod_revision, mut set_revision) = (0, 0);
    for change in plan.changes {
        match change {
            Change::Owner(c) => pod_revision = pod_revision.max(c.write(api, pods, &set).await?),
            Change::Create(node) => {
                let created = pods::create(ctx, &set, new_pod(&set, &node)).await?;
                pod_revision = pod_revision.max(revision_of(&created));
            }
            Change::Delete(p) => {
                pod_revision = pod_revision.max(pods::delete(ctx, &set, &p).await?)
            }
            Change::Status(s) => {
                set_revision = replicaset::write_status(api, caches, &set, s).await?
            }
        }
    }
    caches.pods.caught_up(pod_revision).await;
    caches.daemonsets.caught_up(set_revision).await;
    Ok(plan.action)
}

pub async fn run(api: crate::api::Api, caches: Arc<Caches>) -> Result<(), ControllerError> {
    let every = caches.daemonsets.clone();
    let mut sources = owners::sources(&caches.daemonsets, &caches.pods);
    // A node joining, leaving or changing labels or taints concerns every set.
    sources.push(Source {
        cache: caches.nodes.clone(),
        mapper: Arc::new(move |_: &Value| every.all().iter().map(|s| Key::of(s)).collect()),
    });
    let ctx = Context::new(api, caches, "daemonset-controller");
    runner::run("daemonset", sources, |key| reconcile(&ctx, key)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controllers::test_now as now;

    fn set(pod_spec: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        for (k, v) in pod_spec.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}})
    }

    fn node(name: &str, labels: Value, taints: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
    }

    fn pod(set: &Value, node: &str, ready: bool) -> Arc<Value> {
        let mut p = new_pod(set, node);
        p["metadata"]["name"] = json!(format!("agent-{node}"));
        p["metadata"]["uid"] = json!(format!("uid-{node}"));
        p["status"] = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-01-01T00:00:00Z"}]});
        Arc::new(p)
    }

    fn summary(p: &Plan) -> Vec<String> {
        p.changes
            .iter()
            .map(|c| match c {
                Change::Owner(c) => c.to_string(),
                Change::Create(n) => format!("create on {n}"),
                Change::Delete(p) => format!("delete {}", obj::name(p)),
                Change::Status(s) => format!(
                    "status desired={} current={} misscheduled={} ready={} updated={}",
                    s["desiredNumberScheduled"],
                    s["currentNumberScheduled"],
                    s["numberMisscheduled"],
                    s["numberReady"],
                    s["updatedNumberScheduled"].as_i64().unwrap_or(0)
                ),
            })
            .collect()
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let plain = set(json!({}));
        let ssd = set(json!({"nodeSelector": {"disk": "ssd"}}));
        let tolerant = set(
            json!({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        let gpu_taint = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
        let valued =
            set(json!({"tolerations": [{"key": "k", "value": "a", "effect": "NoExecute"}]}));
        let cases: Vec<(&str, &Value, Arc<Value>, bool)> = vec![
            ("any node", &plain, node("a", json!({}), json!([])), true),
            (
                "selector matches",
                &ssd,
                node("a", json!({"disk": "ssd"}), json!([])),
                true,
            ),
            (
                "selector does not",
                &ssd,
                node("a", json!({"disk": "hdd"}), json!([])),
                false,
            ),
            (
                "an untolerated taint",
                &plain,
                node("a", json!({}), gpu_taint.clone()),
                false,
            ),
            (
                "a tolerated taint",
                &tolerant,
                node("a", json!({}), gpu_taint),
                true,
            ),
            (
                "PreferNoSchedule is no bar",
                &plain,
                node(
                    "a",
                    json!({}),
                    json!([{"key": "k", "effect": "PreferNoSchedule"}]),
                ),
                true,
            ),
            (
                "cordoned nodes keep daemons",
                &plain,
                node(
                    "a",
                    json!({}),
                    json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
                ),
                true,
            ),
            (
                "a value must equal",
                &valued,
                node(
                    "a",
                    json!({}),
                    json!([{"key": "k", "value": "b", "effect": "NoExecute"}]),
                ),
                false,
            ),
        ];
        for (what, s, n, want) in cases {
            assert_eq!(should_run(s, &n), want, "{what}");
        }
    }

    #[test]
    fn plans_follow_the_daemon_controller() {
        let ds = set(json!({"nodeSelector": {"run": "yes"}}));
        let mut changed = ds.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        let yes = |n: &str| node(n, json!({"run": "yes"}), json!([]));
        let no = |n: &str| node(n, json!({"run": "no"}), json!([]));
        type Case<'a> = (
            &'a str,
            &'a Value,
            Vec<Arc<Value>>,
            Vec<Arc<Value>>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a pod per eligible node",
                &ds,
                vec![yes("a"), yes("b"), no("c")],
                vec![],
                vec!["create on a", "create on b", "status desired=2 current=0 misscheduled=0 ready=0 updated=0"],
            ),
            (
                "a node that no longer fits loses its pod",
                &ds,
                vec![yes("a"), no("b")],
                vec![pod(&ds, "a", true), pod(&ds, "b", true)],
                vec!["delete agent-b", "status desired=1 current=1 misscheduled=1 ready=1 updated=1"],
            ),
            (
                "rolling update: one available pod at a time",
                &changed,
                vec![yes("a"), yes("b")],
                vec![pod(&ds, "a", true), pod(&ds, "b", true)],
                vec!["delete agent-a", "status desired=2 current=2 misscheduled=0 ready=2 updated=0"],
            ),
            (
                "rolling update waits while a pod is unavailable, but replaces unavailable old ones",
                &changed,
                vec![yes("a"), yes("b"), yes("c")],
                vec![pod(&changed, "a", false), pod(&ds, "b", true), pod(&ds, "c", false)],
                vec!["delete agent-c", "status desired=3 current=3 misscheduled=0 ready=1 updated=1"],
            ),
        ];
        for (what, s, nodes, pods, want) in cases {
            assert_eq!(summary(&plan(s, &nodes, &pods, now())), want, "{what}");
        }
    }

    #[test]
    fn daemon_pods_are_bound_to_their_node() {
        let p = new_pod(&set(json!({})), "n1");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"],
            json!(["n1"])
        );
        assert_eq!(p["metadata"]["labels"][GENERATION_LABEL], "1");
        assert!(obj::array(&p, &["spec", "tolerations"]).len() >= 6);
        assert_eq!(
            max_unavailable(
                &json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}}}}),
                15
            ),
            2
        );
    }
}
