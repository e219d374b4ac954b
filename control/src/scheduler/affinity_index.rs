//! The snapshot's placed pods indexed for inter-pod (anti-)affinity, kept up to date as pods
//! are placed, assumed and removed, so that a scheduling cycle costs the same however many
//! pods are placed. Walking every placed pod per cycle (what kube-scheduler's PreFilter
//! does) made 5,000 pods with anti-affinity quadratic.
//!
//! Two indexes:
//! - placed pods by label `key=value`: the candidates for a term whose selector needs one of
//!   some values for a key (`matchLabels`, `In`); other selectors walk every pod;
//! - the terms of placed pods that act on incoming pods (required anti-affinity filters;
//!   preferred terms and required affinity score), identical terms grouped with how many
//!   pods on each node carry them, so a cycle matches each distinct term once.
//!
//! Counts are per node, not per topology domain: a node's labels can change without its
//! pods changing, so the cycle reads domains from the nodes as they are then.

use std::collections::HashMap;
use std::sync::Arc;

use super::plugins::pod_affinity::{AffinityTerm, HARD_AFFINITY_WEIGHT};
use super::snapshot::PodInfo;
use crate::controllers::Key;
use crate::obj;
use crate::selectors::{LabelSelector, Operator};

/// What a placed pod's term does to an incoming pod it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Required anti-affinity: the incoming pod may not go to the term's domain.
    Repel,
    /// Preferred (anti-)affinity, or required affinity: this weight is added to the score
    /// of the term's domain.
    Score(i64),
}

/// Placed pods by label and by the terms they carry.
#[derive(Debug, Default)]
pub struct AffinityIndex {
    /// Label key -> value (as selectors compare it) -> the placed pods with that label.
    by_label: HashMap<String, HashMap<String, HashMap<Key, Arc<PodInfo>>>>,
    /// Each distinct acting term -> node name -> how many pods there carry it.
    terms: HashMap<(Effect, AffinityTerm), HashMap<String, i64>>,
}

/// The terms of `pod` that act on other pods, with their effect.
fn acting_terms(pod: &PodInfo) -> impl Iterator<Item = (Effect, &AffinityTerm)> {
    let a = &pod.affinity;
    let repel = a.required_anti_affinity.iter().map(|t| (Effect::Repel, t));
    let preferred = a
        .preferred_affinity
        .iter()
        .map(|(w, t)| (Effect::Score(*w), t));
    let preferred_anti = a
        .preferred_anti_affinity
        .iter()
        .map(|(w, t)| (Effect::Score(-*w), t));
    let hard = a
        .required_affinity
        .iter()
        .map(|t| (Effect::Score(HARD_AFFINITY_WEIGHT), t));
    repel.chain(preferred).chain(preferred_anti).chain(hard)
}

/// A label's value as [`LabelSelector`] compares it.
fn label_values(pod: &PodInfo) -> impl Iterator<Item = (&String, String)> {
    pod.labels
        .iter()
        .flatten()
        .map(|(k, v)| (k, obj::scalar_string(v)))
}

impl AffinityIndex {
    /// Counts `pod`, placed on `node`.
    pub fn add(&mut self, key: &Key, node: &str, pod: &Arc<PodInfo>) {
        for (k, v) in label_values(pod) {
            self.by_label
                .entry(k.clone())
                .or_default()
                .entry(v)
                .or_default()
                .insert(key.clone(), pod.clone());
        }
        for (effect, term) in acting_terms(pod) {
            *self
                .terms
                .entry((effect, term.clone()))
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
        }
    }

    /// Stops counting `pod` (as it was added) on `node`.
    pub fn remove(&mut self, key: &Key, node: &str, pod: &PodInfo) {
        for (k, v) in label_values(pod) {
            let Some(values) = self.by_label.get_mut(k) else {
                continue;
            };
            if let Some(pods) = values.get_mut(&v) {
                pods.remove(key);
                if pods.is_empty() {
                    values.remove(&v);
                }
            }
            if values.is_empty() {
                self.by_label.remove(k);
            }
        }
        for (effect, term) in acting_terms(pod) {
            let group = (effect, term.clone());
            let Some(per_node) = self.terms.get_mut(&group) else {
                continue;
            };
            if let Some(n) = per_node.get_mut(node) {
                *n -= 1;
                if *n == 0 {
                    per_node.remove(node);
                }
            }
            if per_node.is_empty() {
                self.terms.remove(&group);
            }
        }
    }

    /// The placed pods that may match `selector`: those having a value it accepts for the
    /// key of its narrowest value requirement. `None` when no requirement names values
    /// (`Exists`, `NotIn`, an empty selector): only every pod then answers.
    pub fn candidates<'a>(
        &'a self,
        selector: &LabelSelector,
    ) -> Option<impl Iterator<Item = &'a Arc<PodInfo>> + use<'a>> {
        let with =
            |key: &str, value: &str| self.by_label.get(key).and_then(|values| values.get(value));
        let narrowest = selector
            .requirements()
            .iter()
            .filter(|r| {
                matches!(
                    r.op,
                    Operator::In | Operator::Equals | Operator::DoubleEquals
                )
            })
            .min_by_key(|r| {
                r.values
                    .iter()
                    .map(|v| with(&r.key, v).map_or(0, HashMap::len))
                    .sum::<usize>()
            })?;
        // A pod has one value per key, so the value lists are disjoint. Collected so that
        // the result borrows the index only, not the selector.
        let lists: Vec<&'a HashMap<Key, Arc<PodInfo>>> = narrowest
            .values
            .iter()
            .filter_map(|v| with(&narrowest.key, v))
            .collect();
        Some(lists.into_iter().flat_map(HashMap::values))
    }

    /// The distinct acting terms of placed pods, each with its pods per node name.
    pub fn terms(&self) -> impl Iterator<Item = (Effect, &AffinityTerm, &HashMap<String, i64>)> {
        self.terms
            .iter()
            .map(|((effect, term), per_node)| (*effect, term, per_node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::snapshot::{self, Snapshot};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn pod(name: &str, node: &str, set: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"set": set}},
               "spec": {"nodeName": node, "affinity": {"podAntiAffinity": {
                   "requiredDuringSchedulingIgnoredDuringExecution": [
                       {"labelSelector": {"matchLabels": {"set": set}}, "topologyKey": "kubernetes.io/hostname"}]}}}})
    }

    fn selector(set: &str) -> LabelSelector {
        LabelSelector::from_json(&json!({"matchLabels": {"set": set}})).unwrap()
    }

    /// The names of the pods the index offers for `set=<set>`, sorted.
    fn candidates(s: &Snapshot, set: &str) -> Vec<String> {
        let selector = selector(set);
        let mut names: Vec<String> = s
            .affinity_index()
            .candidates(&selector)
            .unwrap()
            .map(|p| obj::name(&p.pod).to_string())
            .collect();
        names.sort();
        names
    }

    /// Per node, how many pods repel pods of `set`.
    fn repelling(s: &Snapshot, set: &str) -> BTreeMap<String, i64> {
        let probe = PodInfo::new(Arc::new(pod("probe", "", set)));
        s.affinity_index()
            .terms()
            .filter(|(e, t, _)| *e == Effect::Repel && t.matches(&probe))
            .flat_map(|(_, _, per_node)| per_node.iter().map(|(n, c)| (n.clone(), *c)))
            .collect()
    }

    fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn counts_follow_pods_placed_moved_and_removed() {
        let mut s = snapshot::of(
            &[],
            &[
                pod("p1", "a", "x"),
                pod("p2", "a", "x"),
                pod("p3", "b", "y"),
            ],
        );
        assert_eq!(candidates(&s, "x"), ["p1", "p2"]);
        assert_eq!(repelling(&s, "x"), counts(&[("a", 2)]));
        assert_eq!(repelling(&s, "y"), counts(&[("b", 1)]));
        // Moved (a rebind after a re-create).
        s.update_pod(Arc::new(pod("p2", "b", "x")));
        assert_eq!(repelling(&s, "x"), counts(&[("a", 1), ("b", 1)]));
        // Finished pods count nowhere.
        let mut done = pod("p1", "a", "x");
        done["status"]["phase"] = json!("Succeeded");
        s.update_pod(Arc::new(done));
        assert_eq!(candidates(&s, "x"), ["p2"]);
        assert_eq!(repelling(&s, "x"), counts(&[("b", 1)]));
        s.remove_pod(&Key::new("default", "p2"));
        s.remove_pod(&Key::new("default", "p3"));
        assert!(candidates(&s, "x").is_empty());
        assert_eq!(s.affinity_index().terms().count(), 0);
        assert!(s.affinity_index().by_label.is_empty());
    }

    #[test]
    fn a_pod_whose_labels_change_moves_in_the_label_index() {
        let mut s = snapshot::of(&[], &[pod("p", "a", "x")]);
        let mut relabelled = pod("p", "a", "x");
        relabelled["metadata"]["labels"] = json!({"set": "y", "tier": "web"});
        s.update_pod(Arc::new(relabelled));
        assert!(candidates(&s, "x").is_empty());
        assert_eq!(candidates(&s, "y"), ["p"]);
        // Its terms did not change.
        assert_eq!(repelling(&s, "x"), counts(&[("a", 1)]));
    }

    #[test]
    fn assumed_pods_count_until_forgotten_and_once_when_confirmed() {
        let mut s = snapshot::of(&[], &[]);
        let p = pod("p", "", "x");
        s.assume(&p, "a");
        assert_eq!(candidates(&s, "x"), ["p"]);
        assert_eq!(repelling(&s, "x"), counts(&[("a", 1)]));
        s.forget(&Key::of(&p));
        assert!(candidates(&s, "x").is_empty());
        assert_eq!(repelling(&s, "x"), counts(&[]));
        // Assumed, then confirmed by the API: counted once.
        s.assume(&p, "a");
        s.update_pod(Arc::new(pod("p", "a", "x")));
        assert_eq!(candidates(&s, "x"), ["p"]);
        assert_eq!(repelling(&s, "x"), counts(&[("a", 1)]));
        // Assumed again elsewhere (a retry): moves.
        s.assume(&p, "b");
        assert_eq!(repelling(&s, "x"), counts(&[("b", 1)]));
    }

    #[test]
    fn candidates_use_the_narrowest_value_requirement() {
        let mut labelled = pod("q", "a", "x");
        labelled["metadata"]["labels"]["tier"] = json!("web");
        let s = snapshot::of(&[], &[pod("p", "a", "x"), labelled]);
        let index = s.affinity_index();
        let names = |sel: Value| {
            let sel = LabelSelector::from_json(&sel).unwrap();
            let found = index.candidates(&sel).map(|c| {
                let mut n: Vec<String> = c.map(|p| obj::name(&p.pod).to_string()).collect();
                n.sort();
                n
            });
            found
        };
        assert_eq!(
            names(json!({"matchLabels": {"set": "x", "tier": "web"}})),
            Some(vec!["q".to_string()])
        );
        assert_eq!(
            names(
                json!({"matchExpressions": [{"key": "set", "operator": "In", "values": ["x", "z"]}]})
            ),
            Some(vec!["p".to_string(), "q".to_string()])
        );
        assert_eq!(
            names(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})),
            None
        );
        assert_eq!(names(json!({})), None);
    }
}
