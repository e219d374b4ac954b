//! The shared watch cache: one reflector per kind lists and watches it through the `Api`
//! (like any client) and is the only writer of its [`Cache`]; controllers read the cache
//! cheaply (`Arc`ed objects) and subscribe to its changes.
//!
//! The reflector is an explicit state machine advanced one step at a time (kube-runtime's
//! `watcher`): `Empty` lists and becomes `Watching` from the list's revision; an ERROR event
//! (410 Gone: the watch fell behind or its revision was compacted) goes back to `Empty`,
//! i.e. relists.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::ControllerError;
use crate::api::objects::{ListOptions, Watch};
use crate::api::resources::ResourceInfo;
use crate::api::Api;
use crate::obj;
use crate::store::revision_of;

/// How many changes a slow subscriber may fall behind before it is told to resync.
const CHANGES_BUFFER: usize = 4096;

/// How long a controller waits for the cache to show its own write before it goes on
/// anyway (a later event or resync corrects whatever it then decides).
const CATCH_UP: Duration = Duration::from_secs(5);

/// What a subscriber hears.
#[derive(Debug, Clone)]
pub enum Change {
    /// An object was added or modified (`old` is the cached version before, if any).
    Applied {
        old: Option<Arc<Value>>,
        new: Arc<Value>,
    },
    /// An object was deleted; the last state seen.
    Deleted(Arc<Value>),
    /// The cache was (re)filled from a list: anything may have changed.
    Resynced,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

struct Shared {
    res: &'static ResourceInfo,
    objects: RwLock<Objects>,
    /// The store revision the cache reflects; 0 until the first list.
    revision: watch::Sender<u64>,
    changes: broadcast::Sender<Change>,
}

/// A read handle on one kind's cache. Cloning is cheap.
#[derive(Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

fn key_of(o: &Value) -> (String, String) {
    (obj::namespace(o).to_string(), obj::name(o).to_string())
}

impl Cache {
    pub fn resource(&self) -> &'static ResourceInfo {
        self.shared.res
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects> {
        self.shared
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.read()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object in `namespace`.
    pub fn list(&self, namespace: &str) -> Vec<Arc<Value>> {
        let from = (namespace.to_string(), String::new());
        self.read()
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<Arc<Value>> {
        self.read().values().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared.changes.subscribe()
    }

    /// Waits until the first list has filled the cache.
    pub async fn synced(&self) {
        let mut rx = self.shared.revision.subscribe();
        let _ = rx.wait_for(|r| *r > 0).await;
    }

    /// Waits (bounded) until the cache reflects `revision`: a controller that wrote an
    /// object of this kind calls it with the written object's resourceVersion before it
    /// decides again, so it never acts on a cache that misses its own writes.
    pub async fn caught_up(&self, revision: u64) {
        let mut rx = self.shared.revision.subscribe();
        let reached = rx.wait_for(|r| *r >= revision);
        if tokio::time::timeout(CATCH_UP, reached).await.is_err() {
            tracing::warn!(
                kind = self.shared.res.kind,
                revision,
                "cache did not catch up"
            );
        }
    }
}

/// The single writer of a cache.
struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    fn new(res: &'static ResourceInfo) -> (Writer, Cache) {
        let shared = Arc::new(Shared {
            res,
            objects: RwLock::default(),
            revision: watch::channel(0).0,
            changes: broadcast::channel(CHANGES_BUFFER).0,
        });
        (
            Writer {
                shared: shared.clone(),
            },
            Cache { shared },
        )
    }

    fn objects(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.shared
            .objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn replace(&self, items: Vec<Value>, revision: u64) {
        *self.objects() = items
            .into_iter()
            .map(|o| (key_of(&o), Arc::new(o)))
            .collect();
        self.shared.revision.send_replace(revision.max(1));
        let _ = self.shared.changes.send(Change::Resynced);
    }

    fn apply(&self, kind: &str, object: Value) {
        let revision = revision_of(&object);
        let key = key_of(&object);
        let new = Arc::new(object);
        let change = if kind == "DELETED" {
            self.objects().remove(&key);
            Change::Deleted(new)
        } else {
            let old = self.objects().insert(key, new.clone());
            Change::Applied { old, new }
        };
        self.shared
            .revision
            .send_modify(|r| *r = (*r).max(revision));
        // No subscriber is fine: controllers subscribe when they start.
        let _ = self.shared.changes.send(change);
    }
}

enum State {
    /// Nothing listed yet, or the watch failed (410 Gone: it fell behind, or its revision
    /// is no longer kept): list next.
    Empty,
    /// The watch's feed closed without an error: watch again from the last revision seen
    /// (if that is gone too, the new watch fails and the cache relists).
    Resuming,
    Watching(Watch),
}

/// How long a reflector waits before it resumes a closed watch, so a store that is going
/// away is not asked again in a tight loop.
const RESUME_DELAY: Duration = Duration::from_millis(200);

/// Keeps one kind's cache filled: list, then watch from the list's revision.
pub struct Reflector {
    api: Api,
    writer: Writer,
    state: State,
}

impl Reflector {
    pub fn new(api: Api, res: &'static ResourceInfo) -> (Reflector, Cache) {
        let (writer, cache) = Writer::new(res);
        let reflector = Reflector {
            api,
            writer,
            state: State::Empty,
        };
        (reflector, cache)
    }

    fn watch_from(&self, revision: u64) -> Result<Watch, ControllerError> {
        let from = ListOptions {
            resource_version: Some(revision),
            ..Default::default()
        };
        Ok(self.api.watch(self.writer.shared.res, None, from)?)
    }

    /// Advances one step.
    async fn step(&mut self) -> Result<(), ControllerError> {
        let res = self.writer.shared.res;
        match &mut self.state {
            State::Empty => {
                let (items, revision) = self.api.list(res, None, &ListOptions::default())?;
                self.writer.replace(items, revision);
                self.state = State::Watching(self.watch_from(revision)?);
            }
            State::Resuming => {
                tokio::time::sleep(RESUME_DELAY).await;
                let revision = *self.writer.shared.revision.borrow();
                self.state = State::Watching(self.watch_from(revision)?);
            }
            State::Watching(watch) => match watch.next().await {
                None => self.state = State::Resuming,
                Some(e) if e.kind == "ERROR" => {
                    tracing::info!(kind = res.kind, status = %e.object, "watch failed; relisting");
                    self.state = State::Empty;
                }
                Some(e) => self.writer.apply(e.kind, e.object),
            },
        }
        Ok(())
    }

    /// Runs until it fails or is dropped (its controllers stop with the leadership).
    pub async fn run(mut self) -> Result<(), ControllerError> {
        loop {
            self.step().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;
    use crate::store::Store;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[tokio::test]
    async fn the_cache_follows_the_store_and_shows_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let api = Api::new(store);
        crate::bootstrap::ensure(&api).await.unwrap();
        let cms = resources::find("", "v1", "configmaps").unwrap();
        api.create(cms, Some("default"), cm("a"), false)
            .await
            .unwrap();
        let (reflector, cache) = Reflector::new(api.clone(), cms);
        let mut changes = cache.subscribe();
        let task = tokio::spawn(reflector.run());
        cache.synced().await;
        assert!(matches!(changes.recv().await.unwrap(), Change::Resynced));
        assert!(cache.get("default", "a").is_some());

        let b = api
            .create(cms, Some("default"), cm("b"), false)
            .await
            .unwrap();
        cache.caught_up(revision_of(&b)).await;
        assert_eq!(cache.list("default").len(), 2);
        let (gone, _) = api
            .delete(cms, Some("default"), "a", &Default::default())
            .await
            .unwrap();
        cache.caught_up(revision_of(&gone)).await;
        assert!(cache.get("default", "a").is_none());
        assert!(cache.list("other").is_empty());
        task.abort();
    }
}
