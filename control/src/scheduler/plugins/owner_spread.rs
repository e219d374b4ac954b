//! Spreading the replicas of one controller (what kube-scheduler's `SelectorSpread`, and now
//! the default constraints of `PodTopologySpread`, do for pods without constraints of their
//! own): fewer pods of the same owner on the node, and in its zone, is better. The zone
//! counts for two thirds when nodes have zones.

use std::collections::HashMap;

use super::super::snapshot::{NodeInfo, PodInfo};
use super::MAX_SCORE;

const ZONE: &str = "topology.kubernetes.io/zone";
const ZONE_WEIGHT: f64 = 2.0 / 3.0;

/// Normalized scores, one per node of `nodes`, for `pod`; all `MAX_SCORE` for a pod with no
/// controller.
pub fn scores(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let Some(owner) = pod.controller() else {
        return vec![MAX_SCORE; nodes.len()];
    };
    let ns = pod.namespace.as_str();
    let counts: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.pods
                .iter()
                .filter(|p| p.namespace == ns && p.controller() == Some(owner))
                .count() as i64
        })
        .collect();
    let mut per_zone: HashMap<&str, i64> = HashMap::new();
    for (n, c) in nodes.iter().zip(&counts) {
        if let Some(zone) = n.label(ZONE) {
            *per_zone.entry(zone).or_default() += c;
        }
    }
    let max_node = counts.iter().copied().max().unwrap_or(0);
    let max_zone = per_zone.values().copied().max().unwrap_or(0);
    let share = |max: i64, count: i64| {
        if max == 0 {
            MAX_SCORE as f64
        } else {
            (MAX_SCORE * (max - count)) as f64 / max as f64
        }
    };
    nodes
        .iter()
        .zip(&counts)
        .map(|(n, c)| {
            let by_node = share(max_node, *c);
            let score = match n.label(ZONE) {
                Some(zone) => {
                    by_node * (1.0 - ZONE_WEIGHT) + ZONE_WEIGHT * share(max_zone, per_zone[zone])
                }
                None => by_node,
            };
            score as i64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::snapshot;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(name: &str, zone: Option<&str>) -> Value {
        match zone {
            Some(z) => json!({"metadata": {"name": name, "labels": {ZONE: z}}}),
            None => json!({"metadata": {"name": name}}),
        }
    }

    fn pod(name: &str, node: &str, owner: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default",
                            "ownerReferences": [{"uid": owner, "controller": true, "kind": "ReplicaSet", "name": owner}]},
               "spec": {"nodeName": node}})
    }

    /// What, nodes, existing pods, the pod, the scores.
    type Case = (&'static str, Vec<Value>, Vec<Value>, Value, Vec<i64>);

    #[test]
    fn scores_table() {
        let cases: Vec<Case> = vec![
            (
                "no owner",
                vec![node("a", None), node("b", None)],
                vec![pod("e", "a", "rs")],
                json!({"metadata": {"name": "p", "namespace": "default"}}),
                vec![100, 100],
            ),
            (
                "by node",
                vec![node("a", None), node("b", None)],
                vec![
                    pod("e1", "a", "rs"),
                    pod("e2", "a", "rs"),
                    pod("o", "b", "other"),
                ],
                pod("p", "", "rs"),
                vec![0, 100],
            ),
            (
                "half as many",
                vec![node("a", None), node("b", None)],
                vec![
                    pod("e1", "a", "rs"),
                    pod("e2", "a", "rs"),
                    pod("e3", "b", "rs"),
                ],
                pod("p", "", "rs"),
                vec![0, 50],
            ),
            (
                "zones weigh two thirds",
                vec![
                    node("a1", Some("a")),
                    node("a2", Some("a")),
                    node("b1", Some("b")),
                ],
                vec![pod("e1", "a1", "rs")],
                pod("p", "", "rs"),
                vec![0, 33, 100],
            ),
        ];
        for (what, nodes, existing, incoming, want) in cases {
            let s = snapshot::of(&nodes, &existing);
            let infos: Vec<&NodeInfo> = s.nodes().collect();
            let pod = PodInfo::new(Arc::new(incoming));
            assert_eq!(scores(&pod, &infos), want, "{what}");
        }
    }
}
