//! `topologySpreadConstraints` (`PodTopologySpread`): the pods a constraint selects, in the
//! pod's namespace, counted per topology domain. `DoNotSchedule` constraints filter: placing
//! the pod must not make its domain exceed the least loaded domain by more than `maxSkew`
//! (fewer domains than `minDomains` count the minimum as 0); `ScheduleAnyway` ones score,
//! fewer matching pods being better.
//!
//! Only nodes the pod's node selector and required affinity accept count
//! (`nodeAffinityPolicy: Honor`, the default); taints do not matter (`nodeTaintsPolicy:
//! Ignore`, the default). `matchLabelKeys` adds the pod's own values of those labels to the
//! selector.

use std::collections::HashMap;

use serde_json::Value;

use super::super::snapshot::{NodeInfo, PodInfo, Snapshot};
use super::{node_affinity, Fit, Unfit, MAX_SCORE};
use crate::obj;
use crate::selectors::{LabelSelector, Operator, Requirement};

#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    hard: bool,
    min_domains: i64,
    selector: Option<LabelSelector>,
}

impl Constraint {
    fn parse(c: &Value, pod: &Value) -> Constraint {
        let mut selector =
            LabelSelector::from_json(obj::get(c, &["labelSelector"]).unwrap_or(&Value::Null)).ok();
        let own = obj::labels(pod);
        for key in obj::array(c, &["matchLabelKeys"])
            .iter()
            .filter_map(Value::as_str)
        {
            let value = own.and_then(|l| l.get(key)).map(obj::scalar_string);
            let requirement = value.and_then(|v| Requirement::new(key, Operator::In, vec![v]).ok());
            if let (Some(s), Some(r)) = (selector.as_mut(), requirement) {
                s.add(r);
            }
        }
        Constraint {
            max_skew: obj::get_i64(c, &["maxSkew"]).unwrap_or(1),
            topology_key: obj::str_or_empty(c, &["topologyKey"]).to_string(),
            hard: obj::str_or_empty(c, &["whenUnsatisfiable"]) != "ScheduleAnyway",
            min_domains: obj::get_i64(c, &["minDomains"]).unwrap_or(1),
            selector,
        }
    }

    fn selects(&self, pod: &Value, namespace: &str) -> bool {
        obj::namespace(pod) == namespace
            && obj::get(pod, &["metadata", "deletionTimestamp"]).is_none()
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(obj::labels(pod)))
    }
}

/// One constraint with its counts per domain (label value).
#[derive(Debug)]
struct Counted {
    constraint: Constraint,
    per_domain: HashMap<String, i64>,
}

impl Counted {
    fn count(&self, node: &NodeInfo) -> Option<i64> {
        node.label(&self.constraint.topology_key)
            .map(|v| self.per_domain.get(v).copied().unwrap_or(0))
    }

    /// The least loaded domain's count, 0 with fewer than `minDomains` domains.
    fn min(&self) -> i64 {
        if (self.per_domain.len() as i64) < self.constraint.min_domains {
            return 0;
        }
        self.per_domain.values().copied().min().unwrap_or(0)
    }
}

/// The pod's constraints with their counts (PreFilter and PreScore).
#[derive(Debug, Default)]
pub struct Prepared {
    constraints: Vec<Counted>,
    /// Whether the pod itself matches each constraint's selector (it adds to its domain).
    self_match: Vec<bool>,
}

impl Prepared {
    pub fn new(pod: &PodInfo, snapshot: &Snapshot) -> Prepared {
        let p = &*pod.pod;
        let constraints: Vec<Constraint> = obj::array(p, &["spec", "topologySpreadConstraints"])
            .iter()
            .map(|c| Constraint::parse(c, p))
            .collect();
        if constraints.is_empty() {
            return Prepared::default();
        }
        let ns = pod.namespace.as_str();
        let mut counted: Vec<Counted> = constraints
            .into_iter()
            .map(|constraint| Counted {
                constraint,
                per_domain: HashMap::new(),
            })
            .collect();
        // Per constraint, its selected pods per node name: found through the snapshot's
        // label index rather than by walking every pod of every node.
        let selected_per_node: Vec<HashMap<&str, i64>> = counted
            .iter()
            .map(|c| {
                let mut on_node = HashMap::new();
                for (node, e) in snapshot.pods_maybe_selected(c.constraint.selector.as_ref()) {
                    if c.constraint.selects(&e.pod, ns) {
                        *on_node.entry(node.name()).or_default() += 1;
                    }
                }
                on_node
            })
            .collect();
        // Only nodes carrying every key of the kind of constraint count (Kubernetes'
        // `nodeLabelsMatchSpreadConstraints`), and that the pod could go to.
        for node in snapshot
            .nodes()
            .filter(|n| node_affinity::selected(p, n.node()))
        {
            for hard in [true, false] {
                let of_kind = || counted.iter().filter(|c| c.constraint.hard == hard);
                if of_kind().any(|c| node.label(&c.constraint.topology_key).is_none()) {
                    continue;
                }
                for (c, on_node) in counted
                    .iter_mut()
                    .zip(&selected_per_node)
                    .filter(|(c, _)| c.constraint.hard == hard)
                {
                    let value = node.label(&c.constraint.topology_key).unwrap_or_default();
                    let n = on_node.get(node.name()).copied().unwrap_or(0);
                    *c.per_domain.entry(value.to_string()).or_default() += n;
                }
            }
        }
        let self_match = counted
            .iter()
            .map(|c| c.constraint.selects(p, ns))
            .collect();
        Prepared {
            constraints: counted,
            self_match,
        }
    }

    pub fn filter(&self, node: &NodeInfo) -> Fit {
        for (c, own) in self
            .constraints
            .iter()
            .zip(&self.self_match)
            .filter(|(c, _)| c.constraint.hard)
        {
            let Some(count) = c.count(node) else {
                return Err(Unfit::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            if count + i64::from(*own) - c.min() > c.constraint.max_skew {
                return Err(Unfit::resolvable(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    /// Whether any `ScheduleAnyway` constraint scores.
    pub fn scores(&self) -> bool {
        self.constraints.iter().any(|c| !c.constraint.hard)
    }

    /// Raw score, lower is better: per `ScheduleAnyway` constraint, the node's domain count
    /// plus `maxSkew - 1`, weighted by the log of the number of domains (Kubernetes'
    /// `scoreForCount`), in thousandths. `None` when the node lacks a key (scores 0).
    pub fn raw_score(&self, node: &NodeInfo) -> Option<i64> {
        let mut total = 0.0;
        for c in self.constraints.iter().filter(|c| !c.constraint.hard) {
            let count = c.count(node)?;
            let weight = ((c.per_domain.len() + 2) as f64).ln();
            total += (count + c.constraint.max_skew - 1) as f64 * weight;
        }
        Some((total * 1000.0).round() as i64)
    }
}

/// Kubernetes' normalization for this score: the lowest raw score gets the most.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let known = || raw.iter().flatten().copied();
    let (min, max) = (known().min().unwrap_or(0), known().max().unwrap_or(0));
    raw.iter()
        .map(|r| match r {
            None => 0,
            Some(_) if max == 0 => MAX_SCORE,
            Some(s) => MAX_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::snapshot;
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, zone: Option<&str>) -> Value {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["zone"] = json!(z);
        }
        json!({"metadata": {"name": name, "labels": labels}})
    }

    fn nodes() -> Vec<Value> {
        vec![
            node("a1", Some("a")),
            node("a2", Some("a")),
            node("b1", Some("b")),
            node("x", None),
        ]
    }

    fn pod(name: &str, node: &str, constraints: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web", "rev": "1"}},
               "spec": {"nodeName": node, "topologySpreadConstraints": constraints}})
    }

    fn constraint(key: &str, skew: i64, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    fn filtered(existing: &[Value], incoming: Value) -> Vec<Result<String, String>> {
        let s = snapshot::of(&nodes(), existing);
        let pod = PodInfo::new(Arc::new(incoming));
        let p = Prepared::new(&pod, &s);
        s.nodes()
            .map(|n| {
                p.filter(n)
                    .map(|_| n.name().to_string())
                    .map_err(|u| u.reasons[0].clone())
            })
            .collect()
    }

    fn fits(r: &[Result<String, String>]) -> Vec<&str> {
        r.iter().filter_map(|r| r.as_deref().ok()).collect()
    }

    #[test]
    fn filter_table() {
        let zone1 = json!([constraint("zone", 1, "DoNotSchedule")]);
        let on = |n: &str, node: &str| pod(n, node, json!([]));
        let cases: Vec<(&str, Vec<Value>, Value, Vec<&str>)> = vec![
            (
                "no constraints",
                vec![],
                pod("p", "", json!([])),
                vec!["a1", "a2", "b1", "x"],
            ),
            (
                "empty cluster",
                vec![],
                pod("p", "", zone1.clone()),
                vec!["a1", "a2", "b1"],
            ),
            (
                "zone a ahead",
                vec![on("e1", "a1")],
                pod("p", "", zone1.clone()),
                vec!["b1"],
            ),
            (
                "balanced",
                vec![on("e1", "a1"), on("e2", "b1")],
                pod("p", "", zone1.clone()),
                vec!["a1", "a2", "b1"],
            ),
            (
                "skew 2 allows one ahead",
                vec![on("e1", "a1")],
                pod("p", "", json!([constraint("zone", 2, "DoNotSchedule")])),
                vec!["a1", "a2", "b1"],
            ),
            (
                "by hostname",
                vec![on("e1", "a1"), on("e2", "a2")],
                pod(
                    "p",
                    "",
                    json!([constraint("kubernetes.io/hostname", 1, "DoNotSchedule")]),
                ),
                vec!["b1", "x"],
            ),
            (
                "minDomains 3 of 2 zones: min is 0",
                vec![on("e1", "a1"), on("e2", "b1")],
                pod(
                    "p",
                    "",
                    json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3, "labelSelector": {"matchLabels": {"app": "web"}}}]),
                ),
                vec![],
            ),
            (
                "ScheduleAnyway does not filter",
                vec![on("e1", "a1")],
                pod("p", "", json!([constraint("zone", 1, "ScheduleAnyway")])),
                vec!["a1", "a2", "b1", "x"],
            ),
            (
                "matchLabelKeys narrows the selector",
                vec![
                    json!({"metadata": {"name": "old", "namespace": "default", "labels": {"app": "web", "rev": "0"}}, "spec": {"nodeName": "a1"}}),
                ],
                pod(
                    "p",
                    "",
                    json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rev"]}]),
                ),
                vec!["a1", "a2", "b1"],
            ),
        ];
        for (what, existing, incoming, want) in cases {
            assert_eq!(fits(&filtered(&existing, incoming)), want, "{what}");
        }
        let r = filtered(&[on("e1", "a1")], pod("p", "", zone1));
        assert_eq!(
            r[0],
            Err("node(s) didn't match pod topology spread constraints".to_string())
        );
        assert_eq!(
            r[3],
            Err(
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .to_string()
            )
        );
    }

    #[test]
    fn score_prefers_the_emptier_domain() {
        let on = |n: &str, node: &str| pod(n, node, json!([]));
        let s = snapshot::of(&nodes(), &[on("e1", "a1"), on("e2", "a2"), on("e3", "b1")]);
        let pod = PodInfo::new(Arc::new(pod(
            "p",
            "",
            json!([constraint("zone", 1, "ScheduleAnyway")]),
        )));
        let p = Prepared::new(&pod, &s);
        assert!(p.scores());
        let raw: Vec<Option<i64>> = s.nodes().map(|n| p.raw_score(n)).collect();
        assert_eq!(raw[3], None);
        assert!(raw[2] < raw[0]);
        let scores = normalize(&raw);
        assert_eq!(scores[3], 0);
        assert_eq!(scores[2], MAX_SCORE);
        assert!(scores[0] < scores[2] && scores[0] == scores[1]);
        assert_eq!(normalize(&[Some(0), Some(0)]), [MAX_SCORE, MAX_SCORE]);
    }

    #[test]
    fn selectors_the_label_index_cannot_narrow_count_the_same() {
        let with = |selector: Value| json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]);
        let on = |n: &str, node: &str| pod(n, node, json!([]));
        let mut elsewhere = on("o", "b1");
        elsewhere["metadata"]["namespace"] = json!("other");
        let existing = [on("e1", "a1"), on("e2", "a2"), elsewhere];
        let narrowed = filtered(
            &existing,
            pod("p", "", with(json!({"matchLabels": {"app": "web"}}))),
        );
        let walked = filtered(
            &existing,
            pod(
                "p",
                "",
                with(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})),
            ),
        );
        assert_eq!(fits(&narrowed), ["b1"]);
        assert_eq!(narrowed, walked);
    }
}
