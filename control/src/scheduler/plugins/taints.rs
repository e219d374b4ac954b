//! Taints and tolerations (`TaintToleration`, `NodeUnschedulable`): NoSchedule and NoExecute
//! taints keep out pods that do not tolerate them; PreferNoSchedule ones only lower the
//! node's score.
//!
//! A node whose Ready condition is not True counts as tainted
//! `node.kubernetes.io/not-ready:NoSchedule`, as Kubernetes' node lifecycle controller would
//! have tainted it, unless it already carries that taint or the unreachable one.

use serde_json::{json, Value};

use super::{Fit, Unfit};
use crate::obj;

use crate::taints::{tolerates, NOT_READY, UNREACHABLE};

const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn tolerated(pod: &Value, taint: &Value) -> bool {
    obj::array(pod, &["spec", "tolerations"])
        .iter()
        .any(|t| tolerates(t, taint))
}

fn is_ready(node: &Value) -> bool {
    obj::array(node, &["status", "conditions"])
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The node's taints, with the implicit not-ready one (kept per node in the snapshot).
pub fn effective(node: &Value) -> Vec<Value> {
    let mut taints = obj::array(node, &["spec", "taints"]).to_vec();
    let marked = taints
        .iter()
        .any(|t| matches!(obj::str_or_empty(t, &["key"]), NOT_READY | UNREACHABLE));
    if !is_ready(node) && !marked {
        taints.push(json!({"key": NOT_READY, "effect": "NoSchedule"}));
    }
    taints
}

/// `NodeUnschedulable`: a cordoned node takes only pods tolerating its taint.
pub fn filter_unschedulable(pod: &Value, node: &Value) -> Fit {
    if !obj::bool_or_false(node, &["spec", "unschedulable"]) {
        return Ok(());
    }
    let taint = json!({"key": UNSCHEDULABLE, "effect": "NoSchedule"});
    if tolerated(pod, &taint) {
        return Ok(());
    }
    Err(Unfit::unresolvable("node(s) were unschedulable"))
}

/// `TaintToleration` filter: the first untolerated NoSchedule or NoExecute taint of the
/// node's [`effective`] ones.
pub fn filter(pod: &Value, taints: &[Value]) -> Fit {
    let untolerated = taints.iter().find(|t| {
        matches!(
            obj::str_or_empty(t, &["effect"]),
            "NoSchedule" | "NoExecute"
        ) && !tolerated(pod, t)
    });
    match untolerated {
        Some(t) => Err(Unfit::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            obj::str_or_empty(t, &["key"]),
            obj::str_or_empty(t, &["value"])
        ))),
        None => Ok(()),
    }
}

/// `TaintToleration` score, raw: how many PreferNoSchedule taints the pod does not
/// tolerate (normalized in reverse: fewer is better). Only tolerations with an empty or
/// PreferNoSchedule effect count, as Kubernetes.
pub fn score(pod: &Value, node: &Value) -> i64 {
    let tolerations: Vec<&Value> = obj::array(pod, &["spec", "tolerations"])
        .iter()
        .filter(|t| matches!(obj::str_or_empty(t, &["effect"]), "" | "PreferNoSchedule"))
        .collect();
    obj::array(node, &["spec", "taints"])
        .iter()
        .filter(|t| obj::str_or_empty(t, &["effect"]) == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(taints: Value, unschedulable: bool, ready: bool) -> Value {
        json!({"spec": {"taints": taints, "unschedulable": unschedulable},
               "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn pod(tolerations: Value) -> Value {
        json!({"spec": {"tolerations": tolerations}})
    }

    #[test]
    fn filter_table() {
        let gpu = json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]);
        let cases = [
            (
                "no taints",
                node(json!([]), false, true),
                pod(json!([])),
                Ok(()),
            ),
            (
                "untolerated",
                node(gpu.clone(), false, true),
                pod(json!([])),
                Err("node(s) had untolerated taint {gpu: yes}"),
            ),
            (
                "tolerated",
                node(gpu.clone(), false, true),
                pod(json!([{"key": "gpu", "operator": "Exists"}])),
                Ok(()),
            ),
            (
                "NoExecute filters too",
                node(json!([{"key": "x", "effect": "NoExecute"}]), false, true),
                pod(json!([])),
                Err("node(s) had untolerated taint {x: }"),
            ),
            (
                "PreferNoSchedule does not",
                node(
                    json!([{"key": "x", "effect": "PreferNoSchedule"}]),
                    false,
                    true,
                ),
                pod(json!([])),
                Ok(()),
            ),
            (
                "not ready",
                node(json!([]), false, false),
                pod(json!([])),
                Err("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "not ready, tolerated",
                node(json!([]), false, false),
                pod(json!([{"operator": "Exists"}])),
                Ok(()),
            ),
        ];
        for (what, node, pod, want) in cases {
            let got = filter(&pod, &effective(&node)).map_err(|u| u.reasons[0].clone());
            assert_eq!(got, want.map_err(str::to_string), "{what}");
        }
    }

    #[test]
    fn unschedulable_table() {
        let cordoned = node(json!([]), true, true);
        let cases = [
            (node(json!([]), false, true), pod(json!([])), true),
            (cordoned.clone(), pod(json!([])), false),
            (
                cordoned.clone(),
                pod(json!([{"key": UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}])),
                true,
            ),
        ];
        for (node, pod, fits) in cases {
            let got = filter_unschedulable(&pod, &node);
            assert_eq!(got.is_ok(), fits, "{node} {pod}");
            if let Err(u) = got {
                assert_eq!(
                    (u.reasons[0].as_str(), u.resolvable),
                    ("node(s) were unschedulable", false)
                );
            }
        }
    }

    #[test]
    fn score_counts_untolerated_prefer_no_schedule() {
        let n = node(
            json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}, {"key": "c", "effect": "NoSchedule"}]),
            false,
            true,
        );
        let cases = [
            (pod(json!([])), 2),
            (pod(json!([{"key": "a", "operator": "Exists"}])), 1),
            (
                pod(json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}])),
                2,
            ),
            (
                pod(json!([{"operator": "Exists", "effect": "PreferNoSchedule"}])),
                0,
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(score(&pod, &n), want, "{pod}");
        }
    }
}
