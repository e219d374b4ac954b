//! The object store: Kubernetes objects as JSON in sled, changed only through a raft-rs log
//! (even with one member), so the resourceVersion of every object is the raft index of the
//! entry that last wrote it. Reads are served from the applied state; writes are proposed,
//! committed, applied, and only then acknowledged.

mod raft_node;
mod raft_storage;
mod state;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use raft::eraftpb::ConfState;
use raft::{Config, RawNode};
use serde_json::Value;
use tokio::sync::oneshot;

pub use state::{revision_of, Op};
pub use watch::{Event, EventKind, Subscription, WatchError};

use raft_node::{RaftDriver, Request};
use raft_storage::{RaftStorageError, SledStorage};
use state::StateMachine;
use watch::WatchHub;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object already exists")]
    AlreadyExists,
    #[error("the object has been modified; please apply your changes to the latest version and try again")]
    Conflict,
    #[error("this member is not the raft leader")]
    NotLeader,
    #[error("the store is unavailable")]
    Unavailable,
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("data directory holds corrupt state: {0}")]
    Corrupt(String),
    #[error(transparent)]
    RaftStorage(#[from] RaftStorageError),
    #[error("stored object is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<raft::Error> for StoreError {
    fn from(e: raft::Error) -> Self {
        StoreError::Raft(e.to_string())
    }
}

/// How much raft log a member keeps. Once more than `keep + compact_every` entries are
/// applied past the log's start, the log is cut to the last `keep`: a follower that far
/// behind is still served from the log, one further behind gets a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    pub keep: u64,
    pub compact_every: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            keep: 1_000,
            compact_every: 10_000,
        }
    }
}

/// The id of the only member of a one-member cluster.
const FIRST_MEMBER: u64 = 1;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    hub: Arc<WatchHub>,
    requests: Mutex<mpsc::Sender<Request>>,
    applied: Arc<AtomicU64>,
    /// Distinguishes this process's proposals from those of earlier runs in the log.
    nonce: u64,
    counter: AtomicU64,
}

/// The driver thread's outcome; resolves when the member stops (an error is fatal).
pub type DriverHandle = std::thread::JoinHandle<Result<(), StoreError>>;

impl Store {
    /// Opens (or creates) the store in `dir` and starts its raft driver. A fresh directory
    /// becomes a one-member cluster that elects itself at once.
    pub fn open(dir: &Path) -> Result<(Store, DriverHandle), StoreError> {
        Self::open_with(dir, LogRetention::default())
    }

    pub fn open_with(
        dir: &Path,
        retention: LogRetention,
    ) -> Result<(Store, DriverHandle), StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let storage = SledStorage::open(&db)?;
        if !storage.is_initialized()? {
            storage.set_conf_state(&ConfState::from((vec![FIRST_MEMBER], vec![])))?;
            db.flush()?;
        }
        let state_tree = db.open_tree(state::TREE)?;
        let applied = state::applied(&state_tree)?;
        // A crash between installing a snapshot into the state and recording it in the raft
        // storage: finish the second half now.
        if let Some(restored) = state::restored_snapshot(&state_tree)? {
            if restored.index > storage.snapshot_meta()?.index {
                storage.apply_snapshot_meta(&restored)?;
                db.flush()?;
            }
        }
        let hs = storage.hard_state()?;
        if applied > hs.commit {
            return Err(StoreError::Corrupt(format!(
                "applied index {applied} is beyond the committed index {}",
                hs.commit
            )));
        }
        let hub = Arc::new(WatchHub::new(applied));
        let state = StateMachine::open(&db, hub.clone())?;
        let config = Config {
            id: FIRST_MEMBER,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        config.validate()?;
        // raft-rs logs through slog; our driver reports what matters through tracing.
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&config, storage.clone(), &logger)?;
        if storage.conf_state()?.voters == [FIRST_MEMBER] {
            node.campaign()?;
        }
        let (tx, rx) = mpsc::channel();
        let applied_counter = Arc::new(AtomicU64::new(applied));
        let driver = RaftDriver {
            node,
            storage,
            db,
            state,
            requests: rx,
            pending: Default::default(),
            applied: applied_counter.clone(),
            retention,
        };
        let handle = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || driver.run())
            .map_err(|e| StoreError::Raft(format!("cannot start the raft thread: {e}")))?;
        let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
        let store = Store {
            inner: Arc::new(Inner {
                tree: state_tree,
                hub,
                requests: Mutex::new(tx),
                applied: applied_counter,
                nonce,
                counter: AtomicU64::new(0),
            }),
        };
        Ok((store, handle))
    }

    /// The revision of the latest applied change: what a list returns as its resourceVersion.
    pub fn revision(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        state::read(&self.inner.tree, key)
    }

    /// Every object whose key starts with `prefix`, in key order, and the revision the list
    /// is consistent with.
    pub fn list(&self, prefix: &str) -> Result<(Vec<Value>, u64), StoreError> {
        // Read the revision first: objects may only be newer, never older, than it, and a
        // watch from it replays anything that changed during the scan.
        let revision = self.revision();
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix(prefix.as_bytes()) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok((out, revision))
    }

    /// Proposes `op`, waits until it is committed and applied, and returns the stored object
    /// (for a deletion, the deleted object).
    pub async fn write(&self, op: Op) -> Result<Value, StoreError> {
        let id = ((self.inner.nonce as u128) << 64)
            | self.inner.counter.fetch_add(1, Ordering::Relaxed) as u128;
        let (reply, rx) = oneshot::channel();
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Propose { id, op, reply })
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Changes after `revision`, then live changes.
    pub fn watch(&self, revision: u64) -> Result<Subscription, WatchError> {
        self.inner.hub.subscribe(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[tokio::test]
    async fn writes_survive_reopen_with_same_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let (rev_a, rev_b);
        {
            let (store, driver) = Store::open(dir.path()).unwrap();
            let a = store
                .write(Op::Create {
                    key: "configmaps/default/a".into(),
                    object: cm("a"),
                })
                .await
                .unwrap();
            let b = store
                .write(Op::Create {
                    key: "configmaps/default/b".into(),
                    object: cm("b"),
                })
                .await
                .unwrap();
            rev_a = revision_of(&a);
            rev_b = revision_of(&b);
            assert!(rev_b > rev_a && rev_a > 0);
            drop(store);
            driver.join().unwrap().unwrap();
        }
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let (objs, revision) = store.list("configmaps/default/").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(revision_of(&objs[0]), rev_a);
        assert_eq!(revision_of(&objs[1]), rev_b);
        assert!(revision >= rev_b);
        // The log keeps working after the restart (the member re-elects itself).
        store
            .write(Op::Create {
                key: "configmaps/default/c".into(),
                object: cm("c"),
            })
            .await
            .unwrap();
    }

    async fn create(store: &Store, name: &str) -> u64 {
        let key = format!("configmaps/default/{name}");
        revision_of(
            &store
                .write(Op::Create {
                    key,
                    object: cm(name),
                })
                .await
                .unwrap(),
        )
    }

    /// Opens the raft storage of a closed store.
    fn raft_storage(dir: &Path) -> (sled::Db, SledStorage) {
        let db = sled::open(dir).unwrap();
        let storage = SledStorage::open(&db).unwrap();
        (db, storage)
    }

    const SMALL_LOG: LogRetention = LogRetention {
        keep: 5,
        compact_every: 10,
    };

    #[tokio::test]
    async fn the_log_is_compacted_and_the_state_survives_reopen() {
        use raft::Storage as _;
        let dir = tempfile::tempdir().unwrap();
        let mut revisions = Vec::new();
        {
            let (store, driver) = Store::open_with(dir.path(), SMALL_LOG).unwrap();
            for i in 0..40 {
                revisions.push(create(&store, &format!("cm-{i:02}")).await);
            }
            drop(store);
            driver.join().unwrap().unwrap();
        }
        {
            let (_db, storage) = raft_storage(dir.path());
            let first = storage.first_index().unwrap();
            let last = storage.last_index().unwrap();
            assert!(first > 20, "the log was cut: it starts at {first}");
            assert!(
                last - first < SMALL_LOG.keep + SMALL_LOG.compact_every,
                "at most keep + compact_every entries: {first}..={last}"
            );
        }
        let (store, _driver) = Store::open_with(dir.path(), SMALL_LOG).unwrap();
        let (objects, _) = store.list("configmaps/default/").unwrap();
        assert_eq!(
            objects.iter().map(revision_of).collect::<Vec<_>>(),
            revisions
        );
        assert!(create(&store, "after").await > *revisions.last().unwrap());
    }

    #[tokio::test]
    async fn a_snapshot_installs_the_same_state_elsewhere() {
        use raft::Storage as _;
        let source = tempfile::tempdir().unwrap();
        let mut revisions = Vec::new();
        {
            let (store, driver) = Store::open_with(source.path(), SMALL_LOG).unwrap();
            for i in 0..25 {
                revisions.push(create(&store, &format!("cm-{i:02}")).await);
            }
            drop(store);
            driver.join().unwrap().unwrap();
        }
        let snapshot = {
            let (_db, storage) = raft_storage(source.path());
            storage.snapshot(0, 2).unwrap()
        };
        assert!(snapshot.get_metadata().index >= *revisions.last().unwrap());

        // Install it into an empty member's state only, as if it crashed right after: on
        // open, the raft storage catches up with the snapshot the state records.
        let target = tempfile::tempdir().unwrap();
        {
            let db = sled::open(target.path()).unwrap();
            let state = StateMachine::open(&db, Arc::new(WatchHub::new(0))).unwrap();
            state
                .restore(snapshot.get_metadata(), snapshot.get_data())
                .unwrap();
            db.flush().unwrap();
        }
        let (store, _driver) = Store::open_with(target.path(), SMALL_LOG).unwrap();
        let (objects, revision) = store.list("configmaps/default/").unwrap();
        assert_eq!(
            objects.iter().map(revision_of).collect::<Vec<_>>(),
            revisions
        );
        assert_eq!(revision, snapshot.get_metadata().index);
        assert!(create(&store, "after").await > snapshot.get_metadata().index);
        // Watches cannot start before the snapshot: that history is not here.
        assert!(store.watch(revisions[0]).is_err());
    }

    #[tokio::test]
    async fn stale_update_conflicts_and_duplicate_create_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let key = "configmaps/default/a".to_string();
        let v1 = store
            .write(Op::Create {
                key: key.clone(),
                object: cm("a"),
            })
            .await
            .unwrap();
        let rev1 = revision_of(&v1);
        store
            .write(Op::Update {
                key: key.clone(),
                object: cm("a"),
                expected_revision: rev1,
            })
            .await
            .unwrap();
        let stale = store
            .write(Op::Update {
                key: key.clone(),
                object: cm("a"),
                expected_revision: rev1,
            })
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict)));
        let dup = store
            .write(Op::Create {
                key,
                object: cm("a"),
            })
            .await;
        assert!(matches!(dup, Err(StoreError::AlreadyExists)));
    }

    #[tokio::test]
    async fn watch_replays_from_revision_then_streams() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let a = store
            .write(Op::Create {
                key: "configmaps/default/a".into(),
                object: cm("a"),
            })
            .await
            .unwrap();
        store
            .write(Op::Delete {
                key: "configmaps/default/a".into(),
                expected_revision: None,
            })
            .await
            .unwrap();
        let mut sub = store.watch(revision_of(&a)).unwrap();
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].kind, EventKind::Deleted);
        store
            .write(Op::Create {
                key: "configmaps/default/b".into(),
                object: cm("b"),
            })
            .await
            .unwrap();
        let live = sub.live.recv().await.unwrap();
        assert_eq!(live.kind, EventKind::Added);
        assert_eq!(live.key, "configmaps/default/b");
    }

    #[tokio::test]
    async fn concurrent_writes_all_commit_with_distinct_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("c{i}");
                let obj = store
                    .write(Op::Create {
                        key: format!("configmaps/default/{name}"),
                        object: cm(&name),
                    })
                    .await
                    .unwrap();
                revision_of(&obj)
            }));
        }
        let mut revs = Vec::new();
        for t in tasks {
            revs.push(t.await.unwrap());
        }
        revs.sort();
        revs.dedup();
        assert_eq!(revs.len(), 200);
    }
}
