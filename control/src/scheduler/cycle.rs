//! One scheduling cycle, a pure function of the pod and the snapshot: filter every node,
//! score the feasible ones with the default profile's weights, take the best. Ties go to
//! the first node in name order (kube-scheduler picks at random among the best; a fixed
//! choice keeps placements reproducible, and least-allocated already moves the next pod on).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::plugins::{
    node_affinity, normalize, normalize_min_max, owner_spread, pod_affinity, ports, resources_fit,
    taints, topology_spread, Fit, Unfit,
};
use super::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::obj;
use crate::persistent_volumes as pv;

/// The default profile's score weights.
const TAINT_TOLERATION_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const POD_AFFINITY_WEIGHT: i64 = 2;
const TOPOLOGY_SPREAD_WEIGHT: i64 = 2;
const RESOURCES_FIT_WEIGHT: i64 = 1;

/// Why a pod fits nowhere: Kubernetes' `FitError`, whose text is the `FailedScheduling`
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    nodes: usize,
    /// How many nodes gave each reason.
    reasons: BTreeMap<String, usize>,
    /// The preemption part (`PostFilter`), counted the same way; `None` when the pod may
    /// not preempt.
    preemption: Option<BTreeMap<&'static str, usize>>,
}

impl FitError {
    fn new(pod: &Value, nodes: usize, unfit: &[Unfit]) -> FitError {
        let mut reasons = BTreeMap::new();
        for reason in unfit.iter().flat_map(|u| &u.reasons) {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
        // wkube does not preempt: a node where evicting pods could help would find no pod of
        // lower priority to evict, as in a cluster without priorities.
        let never = obj::str_or_empty(pod, &["spec", "preemptionPolicy"]) == "Never";
        let preemption = (!never).then(|| {
            let mut p = BTreeMap::new();
            for u in unfit {
                let why = if u.resolvable {
                    "No preemption victims found for incoming pod"
                } else {
                    "Preemption is not helpful for scheduling"
                };
                *p.entry(why).or_default() += 1;
            }
            p
        });
        FitError {
            nodes,
            reasons,
            preemption,
        }
    }
}

/// `count reason` entries sorted as strings, as Kubernetes' `sortReasonsHistogram`.
fn histogram<'a>(counts: impl IntoIterator<Item = (&'a str, &'a usize)>) -> String {
    let mut entries: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    entries.sort();
    entries.join(", ")
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return write!(f, "no nodes available to schedule pods");
        }
        let n = self.nodes;
        let reasons = histogram(self.reasons.iter().map(|(r, c)| (r.as_str(), c)));
        write!(f, "0/{n} nodes are available: {reasons}.")?;
        match &self.preemption {
            Some(p) => {
                let p = histogram(p.iter().map(|(r, c)| (*r, c)));
                write!(f, " preemption: 0/{n} nodes are available: {p}.")
            }
            None => write!(
                f,
                " preemption: not eligible due to preemptionPolicy=Never."
            ),
        }
    }
}

/// The filters in the default profile's order; the first that fails decides.
fn filter(
    pod: &PodInfo,
    node: &NodeInfo,
    affinity: &pod_affinity::Prepared,
    spread: &topology_spread::Prepared,
    volumes: Option<&pv::VolumeView>,
) -> Fit {
    let (p, n) = (&*pod.pod, node.node());
    taints::filter_unschedulable(p, n)?;
    taints::filter(p, &node.taints)?;
    node_affinity::filter(p, n)?;
    ports::filter(&pod.ports, node.pods.iter().flat_map(|e| &e.ports))?;
    resources_fit::filter(pod.requests, node)?;
    // VolumeRestrictions and VolumeBinding.
    if let Some(v) = volumes {
        pv::fits_node(p, n, v).map_err(Unfit::unresolvable)?;
    }
    spread.filter(node)?;
    affinity.filter(pod, node)
}

/// The weighted total score of each feasible node.
fn scores(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    affinity: &pod_affinity::Prepared,
    spread: &topology_spread::Prepared,
) -> Vec<i64> {
    let p = &*pod.pod;
    let per_node = |f: &dyn Fn(&NodeInfo) -> i64| nodes.iter().map(|n| f(n)).collect::<Vec<i64>>();
    let mut taint = per_node(&|n| taints::score(p, n.node()));
    normalize(&mut taint, true);
    let mut node_aff = per_node(&|n| node_affinity::score(p, n.node()));
    normalize(&mut node_aff, false);
    let mut pod_aff = per_node(&|n| affinity.score(n));
    normalize_min_max(&mut pod_aff);
    // A pod's own constraints replace the default spreading of its owner's replicas.
    let spreading = if spread.scores() {
        let raw: Vec<Option<i64>> = nodes.iter().map(|n| spread.raw_score(n)).collect();
        topology_spread::normalize(&raw)
    } else {
        owner_spread::scores(pod, nodes)
    };
    let least = per_node(&|n| resources_fit::least_allocated(pod.non_zero_requests, n));
    (0..nodes.len())
        .map(|i| {
            taint[i] * TAINT_TOLERATION_WEIGHT
                + node_aff[i] * NODE_AFFINITY_WEIGHT
                + pod_aff[i] * POD_AFFINITY_WEIGHT
                + spreading[i] * TOPOLOGY_SPREAD_WEIGHT
                + least[i] * RESOURCES_FIT_WEIGHT
        })
        .collect()
}

/// The node for `pod`, or why there is none. `volumes` is what the volume checks read, for
/// a pod with PersistentVolumeClaims.
pub fn schedule(
    pod: Arc<Value>,
    snapshot: &Snapshot,
    volumes: Option<&pv::VolumeView>,
) -> Result<String, FitError> {
    let info = PodInfo::new(pod);
    let affinity = pod_affinity::Prepared::new(&info, snapshot);
    let spread = topology_spread::Prepared::new(&info, snapshot);
    let mut feasible = Vec::new();
    let mut unfit = Vec::new();
    for node in snapshot.nodes() {
        match filter(&info, node, &affinity, &spread, volumes) {
            Ok(()) => feasible.push(node),
            Err(u) => unfit.push(u),
        }
    }
    let best = match feasible.len() {
        0 => return Err(FitError::new(&info.pod, unfit.len(), &unfit)),
        // Nothing to compare: kube-scheduler skips scoring too.
        1 => feasible[0],
        _ => {
            let totals = scores(&info, &feasible, &affinity, &spread);
            let top = totals.iter().copied().max().unwrap_or(0);
            let i = totals.iter().position(|s| *s == top).unwrap_or(0);
            feasible[i]
        }
    };
    Ok(best.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::snapshot;
    use serde_json::json;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                          "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod(spec: Value) -> Arc<Value> {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "i"}]);
        }
        Arc::new(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}}, "spec": spec}),
        )
    }

    fn cpu(amount: &str) -> Value {
        json!([{"name": "c", "image": "i", "resources": {"requests": {"cpu": amount}}}])
    }

    #[test]
    fn failed_scheduling_messages_count_and_sort_reasons_as_kubernetes() {
        let nodes = [
            node("a", json!({"disk": "ssd"}), json!([])),
            node("b", json!({}), json!([])),
            node(
                "c",
                json!({}),
                json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ),
        ];
        let s = snapshot::of(&nodes, &[]);
        let cases = [
            (json!({"nodeSelector": {"disk": "ssd"}, "containers": cpu("3")}),
             "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {gpu: yes}. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."),
            (json!({"nodeSelector": {"disk": "hdd"}}),
             "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: yes}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
            (json!({"containers": cpu("3"), "preemptionPolicy": "Never", "tolerations": [{"operator": "Exists"}]}),
             "0/3 nodes are available: 3 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."),
        ];
        for (spec, want) in cases {
            assert_eq!(schedule(pod(spec), &s, None).unwrap_err().to_string(), want);
        }
        assert_eq!(
            schedule(pod(json!({})), &Snapshot::default(), None)
                .unwrap_err()
                .to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn placement_table() {
        let nodes = [
            node(
                "a",
                json!({"zone": "z1"}),
                json!([{"key": "soft", "effect": "PreferNoSchedule"}]),
            ),
            node("b", json!({"zone": "z2"}), json!([])),
            node("c", json!({"zone": "z2"}), json!([])),
        ];
        let busy_b = json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {"nodeName": "b", "containers": cpu("1500m")}});
        let cases: Vec<(&str, Vec<Value>, Value, &str)> = vec![
            (
                "ties go to the first name",
                vec![],
                json!({"tolerations": [{"operator": "Exists"}]}),
                "a",
            ),
            ("PreferNoSchedule scores lower", vec![], json!({}), "b"),
            ("least allocated", vec![busy_b.clone()], json!({}), "c"),
            (
                "preferred node affinity",
                vec![],
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["c"]}]}}]}}}),
                "c",
            ),
            (
                "a taint's penalty outweighs a preference",
                vec![],
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}}}),
                "b",
            ),
            (
                "preferred pod affinity outweighs least allocated",
                vec![busy_b.clone()],
                json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {}, "topologyKey": "kubernetes.io/hostname"}}]}}}),
                "b",
            ),
            (
                "required node affinity wins over scores",
                vec![],
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]}}}}),
                "c",
            ),
        ];
        for (what, existing, spec, want) in cases {
            let mut nodes = nodes.to_vec();
            for n in &mut nodes {
                let name = n["metadata"]["name"].clone();
                n["metadata"]["labels"]["kubernetes.io/hostname"] = name;
            }
            let s = snapshot::of(&nodes, &existing);
            assert_eq!(schedule(pod(spec), &s, None).as_deref(), Ok(want), "{what}");
        }
    }

    #[test]
    fn replicas_of_one_owner_spread_and_assumed_pods_count() {
        let nodes: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, json!({}), json!([])))
            .collect();
        let mut s = snapshot::of(&nodes, &[]);
        let mut placed = Vec::new();
        for i in 0..6 {
            let p = Arc::new(
                json!({"metadata": {"name": format!("r{i}"), "namespace": "default",
                "ownerReferences": [{"uid": "rs1", "controller": true}]}, "spec": {"containers": cpu("100m")}}),
            );
            let node = schedule(p.clone(), &s, None).unwrap();
            s.assume(&p, &node);
            placed.push(node);
        }
        placed.sort();
        assert_eq!(placed, ["a", "a", "b", "b", "c", "c"]);
    }
}
