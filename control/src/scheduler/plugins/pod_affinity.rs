//! Inter-pod affinity and anti-affinity (`InterPodAffinity`): where the pods a term selects
//! run, by topology domain (the value of the term's `topologyKey` label on their node).
//!
//! The filter checks, in Kubernetes' order: the pod's required affinity (every term needs a
//! selected pod in the node's domain, unless no pod matches anywhere and the pod matches
//! its own terms: the first of a group), the pod's required anti-affinity (no selected pod
//! in the node's domain), and the existing pods' required anti-affinity against the pod.
//! The score adds the weights of preferred terms, both ways (the pod's terms over existing
//! pods, existing pods' terms over the pod), anti-affinity counting negative.
//!
//! Namespaces: a term covers its `namespaces`, or its pod's own namespace when none is
//! listed; an empty `namespaceSelector` (`{}`) covers all. A non-empty `namespaceSelector`
//! is not evaluated (namespace labels are not in the snapshot): only the listed namespaces
//! then count.

use std::collections::HashMap;

use serde_json::Value;

use super::super::affinity_index::Effect;
use super::super::snapshot::{NodeInfo, PodInfo, Snapshot};
use super::{Fit, Unfit};
use crate::obj;
use crate::selectors::LabelSelector;

/// The weight of an existing pod's required affinity term matching the incoming pod, in
/// the score (`hardPodAffinityWeight`, default 1).
pub const HARD_AFFINITY_WEIGHT: i64 = 1;

/// Hashable so that the snapshot groups identical terms of many pods
/// ([`AffinityIndex`](crate::scheduler::affinity_index::AffinityIndex)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// `None` when unparseable (refused on write anyway): selects nothing.
    selector: Option<LabelSelector>,
    /// `None`: every namespace.
    namespaces: Option<Vec<String>>,
    topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &Value, own_namespace: &str) -> AffinityTerm {
        let selector =
            LabelSelector::from_json(obj::get(term, &["labelSelector"]).unwrap_or(&Value::Null))
                .ok();
        let listed: Vec<String> = obj::array(term, &["namespaces"])
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let all = obj::object(term, &["namespaceSelector"]).is_some_and(|s| s.is_empty());
        let namespaces = match (
            all,
            listed.is_empty(),
            obj::get(term, &["namespaceSelector"]),
        ) {
            (true, _, _) => None,
            (false, true, None | Some(Value::Null)) => Some(vec![own_namespace.to_string()]),
            _ => Some(listed),
        };
        AffinityTerm {
            selector,
            namespaces,
            topology_key: obj::str_or_empty(term, &["topologyKey"]).to_string(),
        }
    }

    /// Whether the term selects `pod` (read from its [`PodInfo`]: this runs for every pod
    /// in every cycle).
    pub fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|l| l.contains(&pod.namespace))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(pod.labels.as_ref()))
    }
}

/// A pod's affinity terms, parsed once.
#[derive(Debug, Default)]
pub struct AffinityTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

impl AffinityTerms {
    pub fn of(pod: &Value) -> AffinityTerms {
        let ns = obj::namespace(pod);
        let required = |kind: &str| {
            obj::array(
                pod,
                &[
                    "spec",
                    "affinity",
                    kind,
                    "requiredDuringSchedulingIgnoredDuringExecution",
                ],
            )
            .iter()
            .map(|t| AffinityTerm::parse(t, ns))
            .collect()
        };
        let preferred = |kind: &str| {
            obj::array(
                pod,
                &[
                    "spec",
                    "affinity",
                    kind,
                    "preferredDuringSchedulingIgnoredDuringExecution",
                ],
            )
            .iter()
            .map(|w| {
                let term = obj::get(w, &["podAffinityTerm"]).unwrap_or(&Value::Null);
                (
                    obj::get_i64(w, &["weight"]).unwrap_or(0),
                    AffinityTerm::parse(term, ns),
                )
            })
            .collect()
        };
        AffinityTerms {
            required_affinity: required("podAffinity"),
            required_anti_affinity: required("podAntiAffinity"),
            preferred_affinity: preferred("podAffinity"),
            preferred_anti_affinity: preferred("podAntiAffinity"),
        }
    }
}

/// Counts per topology domain: (topology key, value).
type Domains<'a> = HashMap<(&'a str, &'a str), i64>;

fn add<'a>(counts: &mut Domains<'a>, node: &'a NodeInfo, key: &'a str, by: i64) {
    if let Some(value) = node.label(key) {
        *counts.entry((key, value)).or_default() += by;
    }
}

/// What the filter and score need, computed once per cycle (PreFilter and PreScore).
#[derive(Debug, Default)]
pub struct Prepared<'a> {
    /// Domains with pods matching all the pod's required affinity terms.
    affinity: Domains<'a>,
    /// Domains with pods matching one of the pod's required anti-affinity terms.
    anti_affinity: Domains<'a>,
    /// Domains whose existing pods' required anti-affinity selects the pod.
    existing_anti_affinity: Domains<'a>,
    /// Preferred-term weights per domain.
    scores: Domains<'a>,
}

impl<'a> Prepared<'a> {
    /// Reads only the placed pods the pod's terms may select (through the snapshot's label
    /// index) and each distinct term of placed pods once (see
    /// [`AffinityIndex`](crate::scheduler::affinity_index::AffinityIndex)), not every
    /// placed pod.
    pub fn new(pod: &'a PodInfo, snapshot: &'a Snapshot) -> Prepared<'a> {
        let mut p = Prepared::default();
        let terms = &pod.affinity;
        // A pod counts for required affinity when it matches every term: the first term's
        // candidates hold them all.
        if let Some(first) = terms.required_affinity.first() {
            for (node, e) in snapshot.pods_maybe_selected(first.selector.as_ref()) {
                if terms.required_affinity.iter().all(|t| t.matches(e)) {
                    for t in &terms.required_affinity {
                        add(&mut p.affinity, node, &t.topology_key, 1);
                    }
                }
            }
        }
        let selected = |t: &'a AffinityTerm| {
            snapshot
                .pods_maybe_selected(t.selector.as_ref())
                .filter(move |(_, e)| t.matches(e))
        };
        for t in &terms.required_anti_affinity {
            for (node, _) in selected(t) {
                add(&mut p.anti_affinity, node, &t.topology_key, 1);
            }
        }
        let preferred = terms.preferred_affinity.iter().map(|(w, t)| (*w, t));
        let preferred_anti = terms.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t));
        for (weight, t) in preferred.chain(preferred_anti) {
            for (node, _) in selected(t) {
                add(&mut p.scores, node, &t.topology_key, weight);
            }
        }
        for (effect, t, per_node) in snapshot.affinity_index().terms() {
            if !t.matches(pod) {
                continue;
            }
            let (counts, weight) = match effect {
                Effect::Repel => (&mut p.existing_anti_affinity, 1),
                Effect::Score(weight) => (&mut p.scores, weight),
            };
            for (name, pods) in per_node {
                if let Some(node) = snapshot.node(name) {
                    add(counts, node, &t.topology_key, weight * pods);
                }
            }
        }
        p
    }

    fn count(counts: &Domains, node: &NodeInfo, key: &str) -> i64 {
        node.label(key)
            .and_then(|v| counts.get(&(key, v)))
            .copied()
            .unwrap_or(0)
    }

    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Fit {
        let terms = &pod.affinity.required_affinity;
        if terms.iter().any(|t| node.label(&t.topology_key).is_none()) {
            return Err(Unfit::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        let satisfied = terms
            .iter()
            .all(|t| Self::count(&self.affinity, node, &t.topology_key) > 0);
        let first_of_group = self.affinity.is_empty() && terms.iter().all(|t| t.matches(pod));
        if !satisfied && !first_of_group {
            return Err(Unfit::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        let anti = &pod.affinity.required_anti_affinity;
        if anti
            .iter()
            .any(|t| Self::count(&self.anti_affinity, node, &t.topology_key) > 0)
        {
            return Err(Unfit::resolvable(
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        let labels = obj::labels(node.node()).into_iter().flatten();
        let mut domains = labels.filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)));
        if domains.any(|d| self.existing_anti_affinity.get(&d).is_some_and(|c| *c > 0)) {
            return Err(Unfit::resolvable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        Ok(())
    }

    /// Raw score (min-max normalized by the caller): the preferred weights of the node's
    /// domains.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.scores
            .iter()
            .filter(|((key, value), _)| node.label(key) == Some(value))
            .map(|(_, w)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::snapshot;
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, zone: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}}})
    }

    fn nodes() -> Vec<Value> {
        vec![node("a1", "a"), node("a2", "a"), node("b1", "b")]
    }

    fn pod(name: &str, node: &str, app: &str, affinity: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
               "spec": {"nodeName": node, "affinity": affinity}})
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    /// The nodes the pod fits, or the reason per node.
    fn run(existing: &[Value], incoming: Value) -> Vec<Result<String, String>> {
        let s = snapshot::of(&nodes(), existing);
        let pod = PodInfo::new(Arc::new(incoming));
        let p = Prepared::new(&pod, &s);
        s.nodes()
            .map(|n| {
                p.filter(&pod, n)
                    .map(|_| n.name().to_string())
                    .map_err(|u| u.reasons[0].clone())
            })
            .collect()
    }

    fn fits(results: &[Result<String, String>]) -> Vec<&str> {
        results.iter().filter_map(|r| r.as_deref().ok()).collect()
    }

    #[test]
    fn filter_table() {
        let web_on_a1 = pod("w", "a1", "web", json!({}));
        let anti = |app: &str, key: &str| json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}});
        let aff = |app: &str, key: &str| json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}});
        let cases: Vec<(&str, Vec<Value>, Value, Vec<&str>)> = vec![
            (
                "no terms",
                vec![web_on_a1.clone()],
                pod("p", "", "x", json!({})),
                vec!["a1", "a2", "b1"],
            ),
            (
                "anti-affinity by hostname",
                vec![web_on_a1.clone()],
                pod("p", "", "x", anti("web", "kubernetes.io/hostname")),
                vec!["a2", "b1"],
            ),
            (
                "anti-affinity by zone",
                vec![web_on_a1.clone()],
                pod("p", "", "x", anti("web", "zone")),
                vec!["b1"],
            ),
            (
                "anti-affinity on a key no node has",
                vec![web_on_a1.clone()],
                pod("p", "", "x", anti("web", "rack")),
                vec!["a1", "a2", "b1"],
            ),
            (
                "affinity by zone",
                vec![web_on_a1.clone()],
                pod("p", "", "x", aff("web", "zone")),
                vec!["a1", "a2"],
            ),
            (
                "affinity with nothing to match",
                vec![],
                pod("p", "", "x", aff("web", "zone")),
                vec![],
            ),
            (
                "first of a self-affine group",
                vec![],
                pod("p", "", "web", aff("web", "zone")),
                vec!["a1", "a2", "b1"],
            ),
            (
                "existing anti-affinity",
                vec![pod("e", "b1", "db", anti("x", "zone"))],
                pod("p", "", "x", json!({})),
                vec!["a1", "a2"],
            ),
            (
                "other namespace does not count",
                vec![
                    json!({"metadata": {"name": "o", "namespace": "other", "labels": {"app": "web"}}, "spec": {"nodeName": "a1"}}),
                ],
                pod("p", "", "x", anti("web", "zone")),
                vec!["a1", "a2", "b1"],
            ),
        ];
        for (what, existing, incoming, want) in cases {
            assert_eq!(fits(&run(&existing, incoming)), want, "{what}");
        }
        // All namespaces through an empty namespaceSelector.
        let all_ns = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone", "namespaceSelector": {}}]}});
        let other = json!({"metadata": {"name": "o", "namespace": "other", "labels": {"app": "web"}}, "spec": {"nodeName": "a1"}});
        assert_eq!(fits(&run(&[other], pod("p", "", "x", all_ns))), ["b1"]);
        // The reasons.
        let results = run(
            &[web_on_a1.clone(), pod("e", "b1", "db", anti("x", "zone"))],
            pod("p", "", "x", anti("web", "kubernetes.io/hostname")),
        );
        assert_eq!(
            results,
            [
                Err("node(s) didn't match pod anti-affinity rules".to_string()),
                Ok("a2".to_string()),
                Err("node(s) didn't satisfy existing pods anti-affinity rules".to_string()),
            ]
        );
        assert_eq!(
            run(&[], pod("p", "", "x", aff("web", "zone")))[0],
            Err("node(s) didn't match pod affinity rules".to_string())
        );
    }

    #[test]
    fn score_table() {
        let preferred = |kind: &str, weight: i64, app: &str| json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": weight, "podAffinityTerm": term(app, "zone")}]}});
        let web_on_a1 = pod("w", "a1", "web", json!({}));
        let cases: Vec<(&str, Vec<Value>, Value, Vec<i64>)> = vec![
            (
                "preferred affinity",
                vec![web_on_a1.clone()],
                pod("p", "", "x", preferred("podAffinity", 10, "web")),
                vec![10, 10, 0],
            ),
            (
                "preferred anti-affinity",
                vec![web_on_a1.clone()],
                pod("p", "", "x", preferred("podAntiAffinity", 10, "web")),
                vec![-10, -10, 0],
            ),
            (
                "existing pod prefers the pod",
                vec![pod("e", "b1", "db", preferred("podAffinity", 7, "x"))],
                pod("p", "", "x", json!({})),
                vec![0, 0, 7],
            ),
            (
                "existing pod requires the pod",
                vec![pod(
                    "e",
                    "b1",
                    "db",
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("x", "zone")]}}),
                )],
                pod("p", "", "x", json!({})),
                vec![0, 0, 1],
            ),
        ];
        for (what, existing, incoming, want) in cases {
            let s = snapshot::of(&nodes(), &existing);
            let pod = PodInfo::new(Arc::new(incoming));
            let p = Prepared::new(&pod, &s);
            let got: Vec<i64> = s.nodes().map(|n| p.score(n)).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    /// What [`Prepared::new`] computed before the snapshot had its indexes: every placed
    /// pod against every term, both ways. The indexed version must give the same counts.
    fn walk_every_pod<'a>(pod: &'a PodInfo, snapshot: &'a Snapshot) -> Prepared<'a> {
        let mut p = Prepared::default();
        let terms = &pod.affinity;
        for (node, e) in snapshot.pods() {
            let theirs = &e.affinity;
            if !terms.required_affinity.is_empty()
                && terms.required_affinity.iter().all(|t| t.matches(e))
            {
                for t in &terms.required_affinity {
                    add(&mut p.affinity, node, &t.topology_key, 1);
                }
            }
            for t in terms.required_anti_affinity.iter().filter(|t| t.matches(e)) {
                add(&mut p.anti_affinity, node, &t.topology_key, 1);
            }
            for t in theirs
                .required_anti_affinity
                .iter()
                .filter(|t| t.matches(pod))
            {
                add(&mut p.existing_anti_affinity, node, &t.topology_key, 1);
            }
            let mine = terms.preferred_affinity.iter().map(|(w, t)| (*w, t, &**e));
            let mine_anti = terms
                .preferred_anti_affinity
                .iter()
                .map(|(w, t)| (-*w, t, &**e));
            let their = theirs.preferred_affinity.iter().map(|(w, t)| (*w, t, pod));
            let their_anti = theirs
                .preferred_anti_affinity
                .iter()
                .map(|(w, t)| (-*w, t, pod));
            let their_hard = theirs
                .required_affinity
                .iter()
                .map(|t| (HARD_AFFINITY_WEIGHT, t, pod));
            for (weight, t, target) in mine
                .chain(mine_anti)
                .chain(their)
                .chain(their_hard)
                .chain(their_anti)
            {
                if t.matches(target) {
                    add(&mut p.scores, node, &t.topology_key, weight);
                }
            }
        }
        p
    }

    /// Without zero entries, which neither the filter nor the score tells apart from none.
    fn nonzero<'a>(d: &Domains<'a>) -> Domains<'a> {
        d.iter()
            .filter(|(_, c)| **c != 0)
            .map(|(k, c)| (*k, *c))
            .collect()
    }

    #[test]
    fn the_indexes_give_what_walking_every_pod_gives() {
        let selectors = [
            json!({"matchLabels": {"app": "web"}}),
            json!({"matchLabels": {"app": "db", "tier": "1"}}),
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}),
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
            json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
            json!({}),
            Value::Null,
        ];
        let keys = ["kubernetes.io/hostname", "zone", "rack"];
        let kinds = [
            (
                "podAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ),
            (
                "podAntiAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ),
            (
                "podAffinity",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ),
            (
                "podAntiAffinity",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ),
        ];
        // A fixed pseudo-random sequence (an LCG): varied pods, reproducible failures.
        let mut seed: u64 = 7;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let mut random_pod = |name: String, node: &str| {
            let mut labels = json!({"app": (["web", "db", "cache"][next(3)])});
            if next(2) == 0 {
                labels["tier"] = json!(next(2).to_string());
            }
            let mut affinity = json!({});
            for _ in 0..next(3) {
                let mut term = json!({"labelSelector": (selectors[next(selectors.len())]), "topologyKey": (keys[next(keys.len())])});
                match next(4) {
                    0 => term["namespaces"] = json!(["other"]),
                    1 => term["namespaceSelector"] = json!({}),
                    _ => {}
                }
                let (kind, when) = kinds[next(kinds.len())];
                let entry = if when.starts_with("preferred") {
                    json!({"weight": 1 + next(10), "podAffinityTerm": term})
                } else {
                    term
                };
                let list = &mut affinity[kind][when];
                if list.is_null() {
                    *list = json!([]);
                }
                list.as_array_mut().unwrap().push(entry);
            }
            let namespace = ["default", "other"][next(2)];
            json!({"metadata": {"name": name, "namespace": namespace, "labels": labels},
                   "spec": {"nodeName": node, "affinity": affinity}})
        };
        // Each placed pod has a twin on its node: identical terms then group.
        let placed: Vec<Value> = (0..40)
            .flat_map(|i| {
                let e = random_pod(format!("e{i}"), ["a1", "a2", "b1", "gone"][i % 4]);
                let mut twin = e.clone();
                twin["metadata"]["name"] = json!(format!("t{i}"));
                [e, twin]
            })
            .collect();
        let s = snapshot::of(&nodes(), &placed);
        for i in 0..200 {
            let pod = PodInfo::new(Arc::new(random_pod(format!("p{i}"), "")));
            let (indexed, walked) = (Prepared::new(&pod, &s), walk_every_pod(&pod, &s));
            let pairs = [
                (&indexed.affinity, &walked.affinity),
                (&indexed.anti_affinity, &walked.anti_affinity),
                (
                    &indexed.existing_anti_affinity,
                    &walked.existing_anti_affinity,
                ),
                (&indexed.scores, &walked.scores),
            ];
            for (got, want) in pairs {
                assert_eq!(nonzero(got), nonzero(want), "{}", pod.pod);
            }
            // `affinity` being empty decides the first pod of a group: exactly, zeros too.
            assert_eq!(indexed.affinity, walked.affinity, "{}", pod.pod);
        }
    }
}
