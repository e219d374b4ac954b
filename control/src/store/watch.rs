//! Change history and fan-out for watches.
//!
//! Every applied change becomes an [`Event`] kept in a bounded in-memory history (so a
//! client can resume a watch from a recent resourceVersion) and broadcast to live
//! watchers. History and broadcast are updated under one lock, so a new watcher sees each
//! revision exactly once: first from the history copy, then live.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;

/// How many past events are kept for resuming watches; older resourceVersions get 410 Gone,
/// as etcd compaction does for Kubernetes.
const HISTORY: usize = 20_000;
/// Live events a slow watcher may fall behind before its watch is ended (it re-lists).
const LIVE_BUFFER: usize = 8_192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: String,
    /// The object after the change; for deletions, the last state with the deletion revision.
    pub object: Arc<Value>,
    /// The object before the change (absent for creations), needed to turn a label-selector
    /// watch's MODIFIED into ADDED/DELETED when an object enters or leaves the selection.
    pub previous: Option<Arc<Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: u64, oldest: u64 },
}

pub struct WatchHub {
    inner: Mutex<Inner>,
}

struct Inner {
    history: VecDeque<Arc<Event>>,
    /// Every event with a revision above `floor` is in `history`.
    floor: u64,
    live: broadcast::Sender<Arc<Event>>,
}

/// A watcher's starting point: the past events it missed, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Arc<Event>>,
}

impl WatchHub {
    pub fn new(applied: u64) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        WatchHub {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                floor: applied,
                live,
            }),
        }
    }

    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.history.len() == HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.revision;
            }
        }
        inner.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = inner.live.send(event);
    }

    /// Moves the floor forward without an event (entries that change no object), so a
    /// watch from the current revision after a restart is not refused.
    pub fn advance_floor_if_empty(&self, revision: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.history.is_empty() {
            inner.floor = inner.floor.max(revision);
        }
    }

    /// Forgets the history: the state jumped to `revision` (a raft snapshot was installed).
    /// Live watchers are disconnected, so they list again instead of missing changes.
    pub fn reset(&self, revision: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.history.clear();
        inner.floor = revision;
        inner.live = broadcast::channel(LIVE_BUFFER).0;
    }

    /// Events after `revision`, then live ones.
    pub fn subscribe(&self, revision: u64) -> Result<Subscription, WatchError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if revision < inner.floor {
            return Err(WatchError::TooOld {
                requested: revision,
                oldest: inner.floor,
            });
        }
        let live = inner.live.subscribe();
        let start = inner.history.partition_point(|e| e.revision <= revision);
        let backlog = inner.history.range(start..).cloned().collect();
        Ok(Subscription { backlog, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64) -> Event {
        Event {
            revision,
            kind: EventKind::Added,
            key: format!("k{revision}"),
            object: Arc::new(Value::Null),
            previous: None,
        }
    }

    #[test]
    fn subscriber_gets_backlog_after_revision_then_live() {
        let hub = WatchHub::new(0);
        for r in 1..=3 {
            hub.publish(event(r));
        }
        let mut sub = hub.subscribe(1).unwrap();
        let revs: Vec<u64> = sub.backlog.iter().map(|e| e.revision).collect();
        assert_eq!(revs, [2, 3]);
        hub.publish(event(4));
        assert_eq!(sub.live.try_recv().unwrap().revision, 4);
    }

    #[test]
    fn reset_ends_live_watches_and_moves_the_floor() {
        let hub = WatchHub::new(0);
        hub.publish(event(1));
        let mut sub = hub.subscribe(0).unwrap();
        hub.reset(50);
        assert!(matches!(
            sub.live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert!(hub.subscribe(10).is_err());
        assert!(hub.subscribe(50).unwrap().backlog.is_empty());
    }

    #[test]
    fn revision_before_history_is_too_old() {
        let hub = WatchHub::new(10);
        assert!(matches!(
            hub.subscribe(5),
            Err(WatchError::TooOld { oldest: 10, .. })
        ));
        assert!(hub.subscribe(10).is_ok());
    }
}
