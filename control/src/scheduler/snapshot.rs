//! The scheduler's view of the cluster (kube-scheduler's cache and `NodeInfo`): every node
//! with the pods on it and what they request, kept up to date incrementally from the watch
//! caches, so a scheduling cycle reads it without decoding anything.
//!
//! A pod counts on its node from the moment its bind is issued ("assumed"), before the API
//! confirms it: the next cycle, which runs before that confirmation arrives, must see it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::affinity_index::AffinityIndex;
use super::plugins::pod_affinity::AffinityTerms;
use super::plugins::ports::{host_ports, HostPort};
use super::plugins::taints;
use super::requests::{allocatable, pod_non_zero_requests, pod_requests, Resources};
use crate::controllers::Key;
use crate::obj;
use crate::selectors::LabelSelector;

/// A pod with what the cycle reads of it, parsed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Value>,
    pub namespace: String,
    pub labels: Option<Map<String, Value>>,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub ports: Vec<HostPort>,
    pub affinity: AffinityTerms,
}

impl PodInfo {
    pub fn new(pod: Arc<Value>) -> PodInfo {
        PodInfo {
            requests: pod_requests(&pod),
            non_zero_requests: pod_non_zero_requests(&pod),
            ports: host_ports(&pod),
            affinity: AffinityTerms::of(&pod),
            namespace: obj::namespace(&pod).to_string(),
            labels: obj::labels(&pod).cloned(),
            pod,
        }
    }

    /// The uid of the pod's controller (its managing owner), if any.
    pub fn controller(&self) -> Option<&str> {
        obj::array(&self.pod, &["metadata", "ownerReferences"])
            .iter()
            .find(|r| obj::bool_or_false(r, &["controller"]))
            .and_then(|r| obj::get_str(r, &["uid"]))
    }
}

/// One node and the pods on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// `None` while pods name a node the cache has not seen (or that was deleted).
    node: Option<Arc<Value>>,
    pub pods: Vec<Arc<PodInfo>>,
    /// `status.allocatable`, and how many pods the node takes, read once per node update.
    pub allocatable: Resources,
    pub max_pods: i64,
    /// Its taints, with the implicit not-ready one ([`taints::effective`]).
    pub taints: Vec<Value>,
    pub requested: Resources,
    pub non_zero_requested: Resources,
}

impl NodeInfo {
    pub fn node(&self) -> &Value {
        self.node.as_deref().unwrap_or(&Value::Null)
    }

    pub fn name(&self) -> &str {
        obj::name(self.node())
    }

    /// The node's label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        obj::labels(self.node())
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
    }

    fn add(&mut self, pod: Arc<PodInfo>) {
        self.requested = self.requested + pod.requests;
        self.non_zero_requested = self.non_zero_requested + pod.non_zero_requests;
        self.pods.push(pod);
    }

    fn remove(&mut self, key: &Key) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| is(&p.pod, key))?;
        let pod = self.pods.swap_remove(i);
        self.requested = self.requested - pod.requests;
        self.non_zero_requested = self.non_zero_requested - pod.non_zero_requests;
        Some(pod)
    }
}

/// Pods that finished hold nothing on their node (kube-scheduler does not even watch them).
fn is_terminal(pod: &Value) -> bool {
    matches!(
        obj::str_or_empty(pod, &["status", "phase"]),
        "Succeeded" | "Failed"
    )
}

/// Whether `pod` is the one `key` names; without building its key, which allocates: this
/// runs for the pods of a node on every pod update.
fn is(pod: &Value, key: &Key) -> bool {
    obj::name(pod) == key.name && obj::namespace(pod) == key.namespace
}

fn node_name(pod: &Value) -> &str {
    obj::str_or_empty(pod, &["spec", "nodeName"])
}

/// All nodes with their pods, by node name.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: BTreeMap<String, NodeInfo>,
    /// Where each counted pod is.
    placed: HashMap<Key, String>,
    /// Pods whose bind is in flight: counted on the chosen node until the API says.
    assumed: HashSet<Key>,
    /// The counted pods by label and by the affinity terms they carry.
    index: AffinityIndex,
}

impl Snapshot {
    /// The nodes that exist, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    /// The node named `name`, if it exists.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name).filter(|n| n.node.is_some())
    }

    /// Every counted pod on an existing node, with its node.
    pub fn pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.nodes()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
    }

    /// The counted pods on existing nodes that `selector` may select, with their node: a
    /// superset of those it does, found through the label index when the selector allows
    /// (every pod otherwise). `None` selects nothing.
    pub fn pods_maybe_selected<'a>(
        &'a self,
        selector: Option<&LabelSelector>,
    ) -> Box<dyn Iterator<Item = (&'a NodeInfo, &'a Arc<PodInfo>)> + 'a> {
        let Some(selector) = selector else {
            return Box::new(std::iter::empty());
        };
        match self.index.candidates(selector) {
            Some(candidates) => {
                Box::new(candidates.filter_map(|p| self.node(node_name(&p.pod)).map(|n| (n, p))))
            }
            None => Box::new(self.pods()),
        }
    }

    pub fn affinity_index(&self) -> &AffinityIndex {
        &self.index
    }

    pub fn set_node(&mut self, node: Arc<Value>) {
        let name = obj::name(&node).to_string();
        let info = self.nodes.entry(name).or_default();
        (info.allocatable, info.max_pods) = allocatable(&node);
        info.taints = taints::effective(&node);
        info.node = Some(node);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    /// Takes in a pod as the API shows it: bound pods count on their node; unbound or
    /// finished ones do not, unless their bind is in flight.
    pub fn update_pod(&mut self, pod: Arc<Value>) {
        let key = Key::of(&pod);
        if node_name(&pod).is_empty() && self.assumed.contains(&key) {
            return;
        }
        self.remove_pod(&key);
        if !node_name(&pod).is_empty() && !is_terminal(&pod) {
            self.place(key, PodInfo::new(pod));
        }
    }

    pub fn is_assumed(&self, key: &Key) -> bool {
        self.assumed.contains(key)
    }

    /// The pod went (deleted, or no longer counted).
    pub fn remove_pod(&mut self, key: &Key) {
        self.assumed.remove(key);
        self.unplace(key);
    }

    fn unplace(&mut self, key: &Key) {
        if let Some(name) = self.placed.remove(key) {
            if let Some(info) = self.nodes.get_mut(&name) {
                if let Some(pod) = info.remove(key) {
                    self.index.remove(key, &name, &pod);
                }
                if info.pods.is_empty() && info.node.is_none() {
                    self.nodes.remove(&name);
                }
            }
        }
    }

    fn place(&mut self, key: Key, pod: PodInfo) {
        let name = node_name(&pod.pod).to_string();
        let pod = Arc::new(pod);
        self.index.add(&key, &name, &pod);
        self.nodes.entry(name.clone()).or_default().add(pod);
        self.placed.insert(key, name);
    }

    /// Counts `pod` on `node` while its bind is in flight.
    pub fn assume(&mut self, pod: &Value, node: &str) {
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(node);
        let key = Key::of(pod);
        self.unplace(&key);
        self.place(key.clone(), PodInfo::new(Arc::new(bound)));
        self.assumed.insert(key);
    }

    /// Drops an assumed pod whose bind failed.
    pub fn forget(&mut self, key: &Key) {
        if self.assumed.remove(key) {
            self.unplace(key);
        }
    }

    /// A snapshot of `nodes` and `pods`, keeping the binds in flight of `self`.
    pub fn rebuilt(&self, nodes: Vec<Arc<Value>>, pods: Vec<Arc<Value>>) -> Snapshot {
        let mut fresh = Snapshot::default();
        for node in nodes {
            fresh.set_node(node);
        }
        for pod in pods {
            fresh.update_pod(pod);
        }
        for key in &self.assumed {
            let pod = self
                .placed
                .get(key)
                .and_then(|n| self.nodes.get(n))
                .and_then(|n| n.pods.iter().find(|p| is(&p.pod, key)));
            if let Some(pod) = pod {
                if !fresh.placed.contains_key(key) {
                    let pod = pod.pod.clone();
                    fresh.place(key.clone(), PodInfo::new(pod));
                    fresh.assumed.insert(key.clone());
                }
            }
        }
        fresh
    }
}

/// A snapshot of the given nodes and pods (for tests and benches of the pure parts).
#[cfg(test)]
pub fn of(nodes: &[Value], pods: &[Value]) -> Snapshot {
    Snapshot::default().rebuilt(
        nodes.iter().cloned().map(Arc::new).collect(),
        pods.iter().cloned().map(Arc::new).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"},
               "spec": {"nodeName": node, "containers": [{"resources": {"requests": {"cpu": cpu}}}]}})
    }

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    fn requested(s: &Snapshot, node: &str) -> i64 {
        s.nodes()
            .find(|n| n.name() == node)
            .map_or(-1, |n| n.requested.milli_cpu)
    }

    #[test]
    fn pods_count_on_their_node_until_they_go() {
        let mut s = of(
            &[node("a"), node("b")],
            &[pod("p", "a", "1"), pod("q", "", "1")],
        );
        assert_eq!((requested(&s, "a"), requested(&s, "b")), (1000, 0));
        // Moving (a rebind after a delete and re-create) and finishing.
        s.update_pod(Arc::new(pod("p", "b", "1")));
        assert_eq!((requested(&s, "a"), requested(&s, "b")), (0, 1000));
        let mut done = pod("p", "b", "1");
        done["status"]["phase"] = json!("Succeeded");
        s.update_pod(Arc::new(done));
        assert_eq!(requested(&s, "b"), 0);
        // Pods on a node not seen yet are kept for when it comes, but not listed.
        s.update_pod(Arc::new(pod("r", "c", "2")));
        assert_eq!(s.nodes().count(), 2);
        s.set_node(Arc::new(node("c")));
        assert_eq!(requested(&s, "c"), 2000);
        s.remove_node("c");
        assert_eq!(s.pods().count(), 0);
        s.set_node(Arc::new(node("c")));
        assert_eq!(requested(&s, "c"), 2000);
        s.remove_pod(&Key::new("default", "r"));
        assert_eq!(requested(&s, "c"), 0);
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut s = of(&[node("a")], &[]);
        let p = pod("p", "", "500m");
        s.assume(&p, "a");
        assert_eq!(requested(&s, "a"), 500);
        // A status write racing the bind shows the pod unbound: still assumed.
        s.update_pod(Arc::new(p.clone()));
        assert_eq!(requested(&s, "a"), 500);
        // Kept across a resync that does not show the bind yet.
        let s2 = s.rebuilt(vec![Arc::new(node("a"))], vec![Arc::new(p.clone())]);
        assert_eq!(requested(&s2, "a"), 500);
        s.forget(&Key::of(&p));
        assert_eq!(requested(&s, "a"), 0);
        // Confirmed: no longer assumed, so forgetting does nothing.
        s.assume(&p, "a");
        s.update_pod(Arc::new(pod("p", "a", "500m")));
        s.forget(&Key::of(&p));
        assert_eq!(requested(&s, "a"), 500);
    }
}
