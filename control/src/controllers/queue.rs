//! A de-duplicating work queue (client-go's `workqueue`, kube-runtime's scheduler): a key
//! added while it waits is not added twice, and a delayed key keeps its earliest due time.
//! Pure: the caller passes the clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Instant;

pub struct WorkQueue<K> {
    ready: VecDeque<K>,
    queued: HashSet<K>,
    delayed: HashMap<K, Instant>,
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            delayed: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `key` now, unless it is queued already.
    pub fn add(&mut self, key: K) {
        self.delayed.remove(&key);
        if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues `key` at `at`; the earlier of two due times wins, and a key queued now stays.
    pub fn add_at(&mut self, key: K, at: Instant) {
        if self.queued.contains(&key) {
            return;
        }
        let due = self.delayed.entry(key).or_insert(at);
        *due = (*due).min(at);
    }

    /// The next key to work on, moving delayed keys that are due by `now` first.
    pub fn pop(&mut self, now: Instant) -> Option<K> {
        let due: Vec<K> = self
            .delayed
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.add(k);
        }
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    /// When the next delayed key is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_deduplicated_and_delays_keep_the_earliest() {
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        let mut q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        q.add_at("c", later(10));
        q.add_at("c", later(5));
        q.add_at("c", later(7));
        q.add_at("a", later(1)); // already queued now
        assert_eq!(q.next_due(), Some(later(5)));
        assert_eq!(q.pop(t0), Some("a"));
        assert_eq!(q.pop(t0), Some("b"));
        assert_eq!(q.pop(t0), None);
        assert_eq!(q.pop(later(5)), Some("c"));
        assert_eq!(q.next_due(), None);
        // A key re-added while being worked on is queued again.
        q.add("a");
        assert_eq!(q.pop(t0), Some("a"));
        q.add("a");
        assert_eq!(q.pop(t0), Some("a"));
    }
}
