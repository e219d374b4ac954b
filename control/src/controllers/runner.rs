//! Drives one controller: changes in its caches become keys in its work queue, and each
//! key is reconciled in turn (kube-runtime's `Controller`). A reconcile is idempotent: it
//! reads the caches, decides, writes, and says when to look again.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use super::queue::WorkQueue;
use super::reflector::{Cache, Change};
use super::ControllerError;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Action {
    pub requeue_after: Option<Duration>,
}

impl Action {
    pub fn done() -> Action {
        Action::default()
    }

    pub fn requeue(after: Duration) -> Action {
        Action {
            requeue_after: Some(after),
        }
    }
}

/// Maps a changed object of a watched cache to the keys to reconcile.
pub type Mapper<K> = Arc<dyn Fn(&Value) -> Vec<K> + Send + Sync>;

/// A cache whose changes trigger reconciles.
pub struct Source<K> {
    pub cache: Cache,
    pub mapper: Mapper<K>,
}

/// How long a failed reconcile waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until every source closes. `name` is for logs.
pub async fn run<K, F, Fut>(
    name: &'static str,
    sources: Vec<Source<K>>,
    mut reconcile: F,
) -> Result<(), ControllerError>
where
    K: Clone + Eq + Hash + Send + std::fmt::Debug + 'static,
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<Action, ControllerError>>,
{
    let (tx, mut keys) = mpsc::unbounded_channel::<K>();
    // Dropped (aborting the forwarders) when the controller stops.
    let mut forwarders = JoinSet::new();
    for source in sources {
        // Subscribed before the sync wait, so nothing between the list and now is missed.
        let changes = source.cache.subscribe();
        source.cache.synced().await;
        forwarders.spawn(forward(source, changes, tx.clone()));
    }
    drop(tx);
    let mut queue = WorkQueue::default();
    loop {
        while let Ok(k) = keys.try_recv() {
            queue.add(k);
        }
        if let Some(key) = queue.pop(Instant::now()) {
            match reconcile(key.clone()).await {
                Ok(Action {
                    requeue_after: Some(after),
                }) => queue.add_at(key, Instant::now() + after),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(controller = name, ?key, error = %e, "reconcile failed");
                    queue.add_at(key, Instant::now() + RETRY);
                }
            }
            continue;
        }
        let due = queue.next_due();
        tokio::select! {
            k = keys.recv() => match k {
                Some(k) => queue.add(k),
                None => return Ok(()),
            },
            _ = sleep_until(due) => {}
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Turns one cache's changes into keys; a resync (or falling behind) queues every object.
async fn forward<K>(
    source: Source<K>,
    mut changes: broadcast::Receiver<Change>,
    tx: mpsc::UnboundedSender<K>,
) {
    let send_all = |tx: &mpsc::UnboundedSender<K>| {
        for o in source.cache.all() {
            for k in (source.mapper)(&o) {
                let _ = tx.send(k);
            }
        }
    };
    send_all(&tx);
    loop {
        let objects: Vec<Arc<Value>> = match changes.recv().await {
            Ok(Change::Applied { old, new }) => old.into_iter().chain([new]).collect(),
            Ok(Change::Deleted(last)) => vec![last],
            Ok(Change::Resynced) | Err(broadcast::error::RecvError::Lagged(_)) => {
                send_all(&tx);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for o in objects {
            for k in (source.mapper)(&o) {
                if tx.send(k).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{resources, Api};
    use crate::controllers::reflector::Reflector;
    use crate::controllers::Key;
    use crate::store::Store;
    use serde_json::json;

    #[tokio::test]
    async fn changes_become_reconciles_and_requeues_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let api = Api::new(store);
        crate::bootstrap::ensure(&api).await.unwrap();
        let cms = resources::find("", "v1", "configmaps").unwrap();
        let (reflector, cache) = Reflector::new(api.clone(), cms);
        let reflecting = tokio::spawn(reflector.run());
        // Objects come after the first list, so each is seen once: by its ADDED event.
        cache.synced().await;
        let (tx, mut seen) = mpsc::unbounded_channel();
        let sources = vec![Source {
            cache: cache.clone(),
            mapper: Arc::new(|o: &Value| vec![Key::of(o)]),
        }];
        let mut requeued = false;
        let running = tokio::spawn(run("test", sources, move |key: Key| {
            let again = key.name == "again" && !std::mem::replace(&mut requeued, true);
            let _ = tx.send(key.name);
            async move {
                Ok(match again {
                    true => Action::requeue(Duration::from_millis(10)),
                    false => Action::done(),
                })
            }
        }));
        for name in ["once", "again"] {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
            api.create(cms, Some("default"), cm, false).await.unwrap();
        }
        let mut names = Vec::new();
        while names.len() < 3 {
            names.push(seen.recv().await.unwrap());
        }
        assert_eq!(names, ["once", "again", "again"]);
        running.abort();
        reflecting.abort();
    }
}
