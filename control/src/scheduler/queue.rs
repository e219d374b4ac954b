//! The scheduling queue (kube-scheduler's `PriorityQueue`, without priorities): pods waiting
//! for a cycle are *active*, in arrival order; pods that fit nowhere wait *unschedulable*
//! until the cluster changes in a way that could help (or the periodic flush), so a pod
//! that cannot be placed is not tried in a hot loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::controllers::Key;
use crate::obj;

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    /// The latest version of every pod waiting to be scheduled.
    pending: HashMap<Key, Arc<Value>>,
    active: VecDeque<Key>,
    queued: HashSet<Key>,
    unschedulable: HashSet<Key>,
}

/// What a change of the pod could alter in where it fits: not its status (which the
/// scheduler itself writes when the pod fits nowhere).
fn placement_relevant(pod: &Value) -> (&Value, &Value) {
    let none = &Value::Null;
    (
        obj::get(pod, &["spec"]).unwrap_or(none),
        obj::get(pod, &["metadata", "labels"]).unwrap_or(none),
    )
}

impl SchedulingQueue {
    /// Takes in a new or changed pending pod. An unschedulable pod waits on unless its
    /// spec or labels changed.
    pub fn update(&mut self, pod: Arc<Value>) {
        let key = Key::of(&pod);
        let changed = self
            .pending
            .get(&key)
            .is_none_or(|old| placement_relevant(old) != placement_relevant(&pod));
        self.pending.insert(key.clone(), pod);
        if self.unschedulable.contains(&key) && !changed {
            return;
        }
        self.unschedulable.remove(&key);
        self.activate(key);
    }

    fn activate(&mut self, key: Key) {
        if self.queued.insert(key.clone()) {
            self.active.push_back(key);
        }
    }

    /// The pod was bound, deleted, or is no longer the scheduler's.
    pub fn remove(&mut self, key: &Key) {
        self.pending.remove(key);
        self.unschedulable.remove(key);
        // Left in `active`; `pop` skips keys no longer pending.
        self.queued.remove(key);
    }

    /// The next pod to schedule.
    pub fn pop(&mut self) -> Option<Arc<Value>> {
        while let Some(key) = self.active.pop_front() {
            if self.queued.remove(&key) {
                if let Some(pod) = self.pending.get(&key) {
                    return Some(pod.clone());
                }
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// The pod fits nowhere for now.
    pub fn park(&mut self, key: Key) {
        if self.pending.contains_key(&key) {
            self.unschedulable.insert(key);
        }
    }

    /// Something changed that may make room: every parked pod gets another cycle.
    pub fn unpark_all(&mut self) {
        let parked: Vec<Key> = self.unschedulable.drain().collect();
        for key in parked {
            self.activate(key);
        }
    }

    /// Forgets everything (before a resync refills it).
    pub fn clear(&mut self) {
        *self = SchedulingQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, spec: Value, status: Value) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status}),
        )
    }

    fn drain(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|p| crate::obj::name(&p).to_string())
            .collect()
    }

    #[test]
    fn pods_come_out_once_in_order_and_parked_ones_wait() {
        let mut q = SchedulingQueue::default();
        q.update(pod("a", json!({}), json!({})));
        q.update(pod("b", json!({}), json!({})));
        q.update(pod("a", json!({}), json!({})));
        assert_eq!(drain(&mut q), ["a", "b"]);
        assert!(q.is_empty());

        q.park(Key::new("default", "a"));
        // The scheduler's own status write does not wake it...
        q.update(pod(
            "a",
            json!({}),
            json!({"conditions": [{"type": "PodScheduled"}]}),
        ));
        assert_eq!(drain(&mut q), Vec::<String>::new());
        // ...a spec change does, and so does a cluster change.
        q.update(pod("a", json!({"nodeSelector": {"x": "y"}}), json!({})));
        assert_eq!(drain(&mut q), ["a"]);
        q.park(Key::new("default", "a"));
        q.unpark_all();
        assert_eq!(drain(&mut q), ["a"]);

        q.update(pod("c", json!({}), json!({})));
        q.remove(&Key::new("default", "c"));
        assert_eq!(drain(&mut q), Vec::<String>::new());
    }
}
