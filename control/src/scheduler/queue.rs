//! The scheduling queue (kube-scheduler's `PriorityQueue`, without priorities): pods waiting
//! for a cycle are *active*, in arrival order; pods that fit nowhere are *parked* until the
//! cluster changes in a way that could help (or the periodic flush), and then wait out
//! their backoff (1 s after the first failure, doubling up to 10 s, as kube-scheduler's
//! defaults), so a pod that cannot be placed is not tried in a hot loop however busy the
//! cluster is.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controllers::Key;
use crate::obj;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(4);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    /// The latest version of every pod waiting to be scheduled.
    pending: HashMap<Key, Arc<Value>>,
    active: VecDeque<Key>,
    queued: HashSet<Key>,
    /// How many cycles each pending pod has failed.
    failures: HashMap<Key, u32>,
    /// Parked pods, with the end of their backoff.
    parked: HashMap<Key, Instant>,
    /// Woken pods still backing off, by the end of their backoff.
    backing_off: BTreeSet<(Instant, Key)>,
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
    /// Takes in a new or changed pending pod. A parked pod stays parked unless its spec or
    /// labels changed.
    pub fn update(&mut self, pod: Arc<Value>) {
        let key = Key::of(&pod);
        let changed = self
            .pending
            .get(&key)
            .is_none_or(|old| placement_relevant(old) != placement_relevant(&pod));
        self.pending.insert(key.clone(), pod);
        if self.parked.contains_key(&key) && !changed {
            return;
        }
        self.parked.remove(&key);
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
        self.parked.remove(key);
        self.failures.remove(key);
        // Left in `active` and `backing_off`; `pop` skips keys no longer pending.
        self.queued.remove(key);
    }

    /// The next pod to schedule at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Value>> {
        while let Some((due, key)) = self.backing_off.first().cloned() {
            if due > now {
                break;
            }
            self.backing_off.pop_first();
            if self.pending.contains_key(&key) && !self.parked.contains_key(&key) {
                self.activate(key);
            }
        }
        while let Some(key) = self.active.pop_front() {
            if self.queued.remove(&key) {
                if let Some(pod) = self.pending.get(&key) {
                    return Some(pod.clone());
                }
            }
        }
        None
    }

    /// When the next woken pod's backoff ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.backing_off.first().map(|(due, _)| *due)
    }

    /// The pod fits nowhere at `now`.
    pub fn park(&mut self, key: Key, now: Instant) {
        if self.pending.contains_key(&key) {
            let failures = self.failures.entry(key.clone()).or_default();
            *failures += 1;
            self.parked.insert(key, now + backoff(*failures));
        }
    }

    /// Something changed that may make room: every parked pod gets another cycle once its
    /// backoff ends.
    pub fn unpark_all(&mut self, now: Instant) {
        for (key, due) in std::mem::take(&mut self.parked) {
            if due <= now {
                self.activate(key);
            } else {
                self.backing_off.insert((due, key));
            }
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

    fn drain(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now))
            .map(|p| crate::obj::name(&p).to_string())
            .collect()
    }

    #[test]
    fn pods_come_out_once_in_order_and_parked_ones_wait() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.update(pod("a", json!({}), json!({})));
        q.update(pod("b", json!({}), json!({})));
        q.update(pod("a", json!({}), json!({})));
        assert_eq!(drain(&mut q, t0), ["a", "b"]);

        let a = Key::new("default", "a");
        q.park(a.clone(), t0);
        // The scheduler's own status write does not wake it...
        q.update(pod(
            "a",
            json!({}),
            json!({"conditions": [{"type": "PodScheduled"}]}),
        ));
        assert!(drain(&mut q, t0).is_empty());
        // ...a spec change does, at once.
        q.update(pod("a", json!({"nodeSelector": {"x": "y"}}), json!({})));
        assert_eq!(drain(&mut q, t0), ["a"]);

        // A cluster change wakes it once its backoff (2 s after a second failure) is over.
        q.park(a.clone(), t0);
        q.unpark_all(t0);
        assert!(drain(&mut q, t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(2)), ["a"]);
        // Without a change it stays parked.
        q.park(a.clone(), t0);
        assert!(drain(&mut q, t0 + Duration::from_secs(60)).is_empty());
        q.unpark_all(t0 + Duration::from_secs(60));
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(60)), ["a"]);

        q.update(pod("c", json!({}), json!({})));
        q.remove(&Key::new("default", "c"));
        assert!(drain(&mut q, t0).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }
}
