//! One pod watch, opened before any bench pod is created, that stamps each pod's changes
//! on arrival: when it was bound, Running, deleted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use tokio::sync::mpsc;

/// What the watch saw of a pod, with the instant it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seen {
    Bound,
    Running,
    Deleted,
}

/// The bench pods' changes as seen by one watch opened before any pod was created.
pub struct PodWatch {
    events: mpsc::UnboundedReceiver<anyhow::Result<(String, Seen, Instant)>>,
    seen: HashMap<(String, Seen), Instant>,
    patience: Duration,
    _task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    /// Watches the pods labelled `label`; a wait gives up after `patience`.
    pub async fn open(pods: &Api<Pod>, label: &str, patience: Duration) -> anyhow::Result<Self> {
        let params = WatchParams::default().labels(label).timeout(3600);
        let stream = pods.watch(&params, "0").await?;
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                let event = match stream.try_next().await {
                    Ok(Some(e)) => e,
                    Ok(None) => {
                        let _ = tx.send(Err(anyhow::anyhow!("the pod watch ended")));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                // Stamped on arrival, before anything else is done with the event.
                let at = Instant::now();
                let (pod, deleted) = match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
                    WatchEvent::Deleted(p) => (p, true),
                    WatchEvent::Bookmark(_) => continue,
                    WatchEvent::Error(e) => {
                        let _ = tx.send(Err(anyhow::anyhow!("watch error: {e}")));
                        return;
                    }
                };
                let name = pod.metadata.name.clone().unwrap_or_default();
                let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                let running =
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let seen = [
                    (bound, Seen::Bound),
                    (running, Seen::Running),
                    (deleted, Seen::Deleted),
                ];
                for (_, what) in seen.into_iter().filter(|(yes, _)| *yes) {
                    if tx.send(Ok((name.clone(), what, at))).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(PodWatch {
            events,
            seen: HashMap::new(),
            patience,
            _task: task,
        })
    }

    /// When `name` was first seen in state `what`, waiting for it if need be.
    pub async fn wait_for(&mut self, name: &str, what: Seen) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            if let Some(at) = self.seen.get(&(name.to_string(), what)) {
                return Ok(*at);
            }
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("{name} not {what:?} within {:?}", self.patience))?
                .ok_or_else(|| anyhow::anyhow!("the pod watch task ended"))??;
            let (name, seen, at) = event;
            self.seen.entry((name, seen)).or_insert(at);
        }
    }

    /// When `name` was first seen in state `what`; it must have been already.
    pub fn seen(&self, name: &str, what: Seen) -> anyhow::Result<Instant> {
        self.seen
            .get(&(name.to_string(), what))
            .copied()
            .ok_or_else(|| anyhow::anyhow!("{name} was never seen {what:?}"))
    }
}
