//! The object store: Kubernetes objects as JSON in sled, changed only through a raft-rs log
//! (even with one member), so the resourceVersion of every object is the raft index of the
//! entry that last wrote it. Reads are served from the applied state; writes are proposed,
//! committed, applied, and only then acknowledged. Members reach each other over the QUIC
//! links of [`crate::transport`].

#[cfg(test)]
mod cluster_tests;
mod commit_record;
mod encryption;
mod members;
mod raft_node;
mod raft_storage;
mod state;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{ConfState, Message, SnapshotMetadata};
use raft::{Config, RawNode, Storage as _};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

pub use encryption::{CheckReport, EncryptionError, Kek};
pub use members::{new_member_id, Member};
pub use state::{revision_of, Op};
pub use watch::{Event, EventKind, Subscription, WatchError};

use crate::pki::CertPair;
use crate::transport::{Inbound, Transport, TransportError};
use encryption::{Keyring, Sealer, KEYRING};
use raft_node::{MembershipChange, RaftDriver, Request};
use raft_storage::{RaftStorageError, SledStorage};
use state::StateMachine;
use watch::WatchHub;

/// The most entry bytes one append message carries (etcd's `MaxSizePerMsg`).
const MAX_APPEND_BYTES: u64 = 1 << 20;
/// How long a write may wait to be committed and applied: a member cut off from the
/// majority answers with a timeout, never a success.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object already exists")]
    AlreadyExists,
    #[error("the object has been modified; please apply your changes to the latest version and try again")]
    Conflict,
    #[error("the store is unavailable: no raft leader is reachable")]
    Unavailable,
    #[error("the write was not committed within {0:?}; it may still be")]
    Timeout(Duration),
    #[error("another membership change is in progress; try again")]
    Busy,
    #[error("the raft leader changed before the write was confirmed; it may or may not have been applied")]
    LeaderChanged,
    #[error("{0}")]
    Membership(String),
    #[error("this member has been removed from the cluster")]
    Removed,
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("data directory holds corrupt state: {0}")]
    Corrupt(String),
    #[error(transparent)]
    RaftStorage(#[from] RaftStorageError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("stored object is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A Secret sealed with a data key that is no longer current (a rotation came first).
    #[error("the encryption key changed while the object was written; try again")]
    StaleKey,
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    #[error("Secrets sealed with older keys remain after {0} re-encryption passes: writers keep using them; run the rotation again")]
    RotationUnfinished(usize),
}

impl From<raft::Error> for StoreError {
    fn from(e: raft::Error) -> Self {
        StoreError::Raft(e.to_string())
    }
}

/// How much raft log a member keeps. Once more than `keep + compact_every` entries are
/// applied past the log's start, the log is cut to the last `keep`: a follower that far
/// behind is still served from the log, one further behind gets a snapshot. Cutting often,
/// a little at a time, keeps the cost of dropping entries level: cutting 10 000 at once
/// doubled every write's latency for a third of a second (BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
pub struct LogRetention {
    pub keep: u64,
    pub compact_every: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            keep: 1_000,
            compact_every: 1_000,
        }
    }
}

/// How often a write that met a change of keys (a Secret sealed with a key a rotation has
/// just replaced, a keyring update that lost a race) is tried again.
const KEY_RETRIES: usize = 8;
/// Re-encryption passes a rotation makes before it reports that writers keep using old keys.
const ROTATION_PASSES: usize = 8;

/// How a member with an empty data directory starts; one that has state continues as it was.
#[derive(Debug, Clone)]
pub enum FreshStart {
    /// As the first member of a new cluster, serving the API at `api_url`.
    Bootstrap { api_url: String, node_name: String },
    /// As member `id`, to be brought in by an existing cluster (see [`Store::add_member`]);
    /// it learns where the others are when the leader first contacts it.
    Join { id: u64 },
}

/// The QUIC listener for the other members, and the certificates both ends check.
pub struct PeerLinks {
    pub listen: SocketAddr,
    pub ca: CertPair,
    pub certificate: CertPair,
}

pub struct StoreConfig {
    pub fresh: FreshStart,
    pub retention: LogRetention,
    /// None for a member that will never have company (tests, embedded use).
    pub peers: Option<PeerLinks>,
    /// The key-encryption key of the cluster's Secrets (see [`encryption`]); `None`: a key
    /// for this process only (tests, embedded use).
    pub kek: Option<Kek>,
}

impl StoreConfig {
    /// A one-member cluster without member links.
    pub fn single() -> Self {
        StoreConfig {
            fresh: FreshStart::Bootstrap {
                api_url: String::new(),
                node_name: String::new(),
            },
            retention: LogRetention::default(),
            peers: None,
            kek: None,
        }
    }
}

/// One member's view of the cluster (`wkube cluster status`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub id: u64,
    /// 0 while no leader is known.
    pub leader: u64,
    pub role: String,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub members: Vec<MemberStatus>,
}

/// What `wkube secrets rotate-key` did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// The data key that seals every Secret now.
    pub current_key: String,
    /// Secrets sealed again (or for the first time: plaintext from before encryption).
    pub reencrypted: u64,
    /// Data keys removed from the keyring: no Secret used them any more.
    pub retired_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    #[serde(flatten)]
    pub member: Member,
    pub voter: bool,
    /// How far its log matches the leader's (known on the leader only).
    pub matched: Option<u64>,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    tree: sled::Tree,
    /// The raft log, read (never written) by [`Store::check_encryption`].
    log: SledStorage,
    sealer: Sealer,
    /// The last keyring read, with the bytes it was parsed from.
    keyring: Mutex<Option<(sled::IVec, Arc<Keyring>)>>,
    hub: Arc<WatchHub>,
    requests: Mutex<mpsc::Sender<Request>>,
    applied: Arc<AtomicU64>,
    peer_addr: Option<SocketAddr>,
    leading: tokio::sync::watch::Receiver<bool>,
    /// Distinguishes this process's proposals from those of earlier runs in the log.
    nonce: u64,
    counter: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The member links hold a sender too, so the driver is told explicitly.
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let _ = requests.send(Request::Shutdown);
    }
}

/// Hands what other members send to the raft thread.
struct ToRaft(Mutex<mpsc::Sender<Request>>);

impl Inbound for ToRaft {
    fn message(&self, message: Message) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Step(message));
    }

    fn snapshot_sent(&self, to: u64, delivered: bool) {
        let request = Request::SnapshotSent { to, delivered };
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(request);
    }

    fn removed(&self) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Removed);
    }
}

/// The driver thread's outcome; resolves when the member stops (an error is fatal).
pub type DriverHandle = std::thread::JoinHandle<Result<(), StoreError>>;

impl Store {
    /// Opens (or creates) a one-member store in `dir`: a fresh directory becomes a cluster
    /// of one that elects itself at once.
    pub fn open(dir: &Path) -> Result<(Store, DriverHandle), StoreError> {
        Self::open_with(dir, StoreConfig::single())
    }

    /// Opens (or creates) the store in `dir` and starts its raft driver. Must run within a
    /// tokio runtime when `config.peers` is set (the member links are tokio tasks).
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<(Store, DriverHandle), StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let storage = SledStorage::open(&db)?;
        let state_tree = db.open_tree(state::TREE)?;
        let (tx, rx) = mpsc::channel();
        let transport = match &config.peers {
            Some(p) => Some(Transport::bind(
                p.listen,
                &p.ca,
                &p.certificate,
                Arc::new(ToRaft(Mutex::new(tx.clone()))),
            )?),
            None => None,
        };
        let peer_addr = transport.as_ref().map(|t| t.local_addr()).transpose()?;
        let hub = Arc::new(WatchHub::new(state::applied(&state_tree)?));
        let state = StateMachine::open(&db, hub.clone())?;

        let id = match storage.member_id()? {
            Some(id) => id,
            None => {
                let id = start_fresh(&storage, &state, &config.fresh, peer_addr)?;
                db.flush()?;
                id
            }
        };
        // A crash between installing a snapshot into the state and recording it in the raft
        // storage: finish the second half now.
        if let Some(restored) = state::restored_snapshot(&state_tree)? {
            if restored.index > storage.snapshot_meta()?.index {
                storage.apply_snapshot_meta(&restored)?;
                db.flush()?;
            }
        }
        let applied = state::applied(&state_tree)?;
        let mut hs = storage.hard_state()?;
        if applied > hs.commit {
            // Only committed entries are applied, but a commit index alone is not flushed
            // (see `RaftDriver::on_ready`): the state may have outlived the record of it.
            let last = storage.last_index()?;
            if applied > last {
                return Err(StoreError::Corrupt(format!(
                    "applied index {applied} is beyond the end of the raft log ({last})"
                )));
            }
            storage.set_commit(applied)?;
            hs.commit = applied;
        }
        commit_record::check(dir, hs.commit)?;
        let raft_config = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            pre_vote: true,
            check_quorum: true,
            // raft-rs' defaults send one entry per append message, and one message per
            // proposal: under load every entry then costs a message and an acknowledgement
            // per follower. Like etcd, let one message carry up to 1 MiB of entries, and
            // merge the appends queued for one follower.
            max_size_per_msg: MAX_APPEND_BYTES,
            batch_append: true,
            ..Default::default()
        };
        raft_config.validate()?;
        // raft-rs logs through slog; our driver reports what matters through tracing.
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&raft_config, storage.clone(), &logger)?;
        let log_reader = storage.clone();
        let kek = match config.kek {
            Some(kek) => kek,
            None => Kek::generate()?,
        };
        if storage.conf_state()?.voters == [id] {
            node.campaign()?;
        }
        let applied_counter = Arc::new(AtomicU64::new(applied));
        // A one-member cluster is its own leader from `campaign` on.
        let leader = node.raft.leader_id;
        let (leading, leading_rx) = tokio::sync::watch::channel(leader == id);
        let driver = RaftDriver {
            node,
            storage,
            db,
            state,
            requests: rx,
            applied: applied_counter.clone(),
            retention: config.retention,
            transport,
            pending: HashMap::new(),
            leader,
            leading,
            durable_commit: hs.commit,
            commit_record: commit_record::CommitRecord::new(dir),
            reads_asked: HashMap::new(),
            reads_ready: Vec::new(),
        };
        driver.connect_members()?;
        let handle = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || driver.run())
            .map_err(|e| StoreError::Raft(format!("cannot start the raft thread: {e}")))?;
        let store = Store {
            inner: Arc::new(Inner {
                id,
                tree: state_tree,
                log: log_reader,
                sealer: Sealer::new(kek),
                keyring: Mutex::default(),
                hub,
                requests: Mutex::new(tx),
                applied: applied_counter,
                peer_addr,
                leading: leading_rx,
                nonce: uuid::Uuid::new_v4().as_u64_pair().0,
                counter: AtomicU64::new(0),
            }),
        };
        Ok((store, handle))
    }

    /// This member's raft id.
    pub fn member_id(&self) -> u64 {
        self.inner.id
    }

    /// Whether this member leads the cluster now; changes are seen through the receiver.
    pub fn leading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.leading.clone()
    }

    /// Where this member listens for the others, if it does.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    /// The revision of the latest applied change: what a list returns as its resourceVersion.
    pub fn revision(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// The object under `key`, opened if it is a sealed Secret.
    pub fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        match state::read(&self.inner.tree, key)? {
            Some(stored) if encryption::sealed_with(&stored).is_some() => Ok(Some(self.unseal(
                self.keyring()?.as_deref(),
                key,
                &stored,
            )?)),
            other => Ok(other),
        }
    }

    /// Every object whose key starts with `prefix`, in key order, and the revision the list
    /// is consistent with.
    pub fn list(&self, prefix: &str) -> Result<(Vec<Value>, u64), StoreError> {
        // Read the revision first: objects may only be newer, never older, than it, and a
        // watch from it replays anything that changed during the scan.
        let revision = self.revision();
        // Read once per list, at the first sealed object: other kinds never need it.
        let mut keyring: Option<Option<Arc<Keyring>>> = None;
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix(prefix.as_bytes()) {
            let (key, v) = item?;
            let stored: Value = serde_json::from_slice(&v)?;
            if encryption::sealed_with(&stored).is_none() {
                out.push(stored);
                continue;
            }
            let keyring = match &keyring {
                Some(k) => k,
                None => keyring.insert(self.keyring()?),
            };
            let key = String::from_utf8_lossy(&key);
            out.push(self.unseal(keyring.as_deref(), &key, &stored)?);
        }
        Ok((out, revision))
    }

    /// An object as the store holds it (a watch event's), opened if it is a sealed Secret.
    pub fn reveal(&self, key: &str, stored: &Arc<Value>) -> Result<Arc<Value>, StoreError> {
        if encryption::sealed_with(stored).is_none() {
            return Ok(stored.clone());
        }
        let opened = self.unseal(self.keyring()?.as_deref(), key, stored)?;
        Ok(Arc::new(opened))
    }

    fn unseal(
        &self,
        keyring: Option<&Keyring>,
        key: &str,
        stored: &Value,
    ) -> Result<Value, StoreError> {
        match self.inner.sealer.open(keyring, key, stored) {
            // A data key added after `keyring` was read: read the keyring again.
            Err(EncryptionError::UnknownKey(_)) => {
                Ok(self
                    .inner
                    .sealer
                    .open(self.keyring()?.as_deref(), key, stored)?)
            }
            other => Ok(other?),
        }
    }

    /// The keyring as this member has applied it. Parsed only when its bytes changed: every
    /// Secret read and write asks for it.
    fn keyring(&self) -> Result<Option<Arc<Keyring>>, StoreError> {
        let Some(raw) = self.inner.tree.get(KEYRING)? else {
            return Ok(None);
        };
        let mut cache = self.inner.keyring.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, keyring)) = &*cache {
            if *bytes == raw {
                return Ok(Some(keyring.clone()));
            }
        }
        let keyring = Arc::new(Keyring::parse(&serde_json::from_slice(&raw)?)?);
        *cache = Some((raw, keyring.clone()));
        Ok(Some(keyring))
    }

    /// The keyring, created with a first data key if the cluster has none yet (a new
    /// cluster's first Secret, or a data directory from before encryption).
    async fn ensure_keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        if let Some(keyring) = self.keyring()? {
            return Ok(keyring);
        }
        let key = self.inner.sealer.new_data_key()?;
        let keyring = Keyring {
            metadata: serde_json::json!({}),
            current: key.id.clone(),
            keys: vec![key],
        };
        let create = Op::Create {
            key: KEYRING.into(),
            object: keyring.to_value(),
        };
        match self.propose(create).await {
            // Another member (or writer) created it first: theirs is the one.
            Ok(_) | Err(StoreError::AlreadyExists) => self.keyring()?.ok_or(StoreError::NotFound),
            Err(e) => Err(e),
        }
    }

    fn next_id(&self) -> u128 {
        ((self.inner.nonce as u128) << 64)
            | self.inner.counter.fetch_add(1, Ordering::Relaxed) as u128
    }

    /// Sends a request to the raft thread and waits for its answer, at most `WRITE_TIMEOUT`.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(request(reply))
            .map_err(|_| StoreError::Unavailable)?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(answer) => answer.map_err(|_| StoreError::Unavailable)?,
            Err(_) => Err(StoreError::Timeout(WRITE_TIMEOUT)),
        }
    }

    /// Proposes `op`, waits until it is committed and applied here, and returns the stored
    /// object (for a deletion, the deleted object). A Secret is sealed before it is
    /// proposed, and returned opened.
    pub async fn write(&self, op: Op) -> Result<Value, StoreError> {
        let (key, object) = match &op {
            Op::Create { key, object } | Op::Update { key, object, .. }
                if encryption::is_sealed_key(key) =>
            {
                (key.clone(), object.clone())
            }
            Op::Delete { key, .. } if encryption::is_sealed_key(key) => {
                let stored = self.propose(op.clone()).await?;
                return self.unseal(self.keyring()?.as_deref(), key, &stored);
            }
            _ => return self.propose(op).await,
        };
        let mut attempt = 0;
        loop {
            let keyring = self.ensure_keyring().await?;
            let envelope = self.inner.sealer.seal(&keyring, &key, &object)?;
            let sealed = match &op {
                Op::Update {
                    expected_revision, ..
                } => Op::Update {
                    key: key.clone(),
                    object: envelope,
                    expected_revision: *expected_revision,
                },
                _ => Op::Create {
                    key: key.clone(),
                    object: envelope,
                },
            };
            match self.propose(sealed).await {
                Err(StoreError::StaleKey) if attempt < KEY_RETRIES => attempt += 1,
                // The envelope holds `object`: no need to open it again.
                Ok(stored) => return Ok(encryption::with_revision_of(object, &stored)),
                Err(e) => return Err(e),
            }
        }
    }

    async fn propose(&self, op: Op) -> Result<Value, StoreError> {
        let id = self.next_id();
        let op = serde_json::to_vec(&op)?;
        let stored = self.ask(|reply| Request::Propose { id, op, reply }).await?;
        Ok(Arc::unwrap_or_clone(stored))
    }

    /// Makes a new data key current, seals every Secret with it through compare-and-set
    /// writes, and retires the keys no Secret uses any more. Safe with concurrent writers
    /// on any member: once the new key is current, the state machine applies no write
    /// sealed with an older one (see [`encryption`]). If it fails midway, every Secret is
    /// still readable (old keys are retired last), and running it again finishes the job.
    pub async fn rotate_key(&self) -> Result<Rotation, StoreError> {
        self.add_current_key().await?;
        let mut reencrypted = 0;
        for _ in 0..ROTATION_PASSES {
            // Read each pass: a concurrent rotation may have made yet another key current.
            let keyring = self.ensure_keyring().await?;
            let stale = self.sealed_records(|id| id != Some(keyring.current.as_str()))?;
            if stale.is_empty() {
                let retired = self.retire_unused_keys().await?;
                return Ok(Rotation {
                    current_key: keyring.current.clone(),
                    reencrypted,
                    retired_keys: retired,
                });
            }
            for (key, stored) in stale {
                let object = self.unseal(Some(&keyring), &key, &stored)?;
                let op = Op::Update {
                    key,
                    object,
                    expected_revision: revision_of(&stored),
                };
                match self.write(op).await {
                    Ok(_) => reencrypted += 1,
                    // Written (so sealed with the current key) or deleted meanwhile; the
                    // next pass looks again.
                    Err(StoreError::Conflict | StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(StoreError::RotationUnfinished(ROTATION_PASSES))
    }

    /// Adds a new data key to the keyring and makes it the current one.
    async fn add_current_key(&self) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            let keyring = self.ensure_keyring().await?;
            let key = self.inner.sealer.new_data_key()?;
            let mut next = (*keyring).clone();
            next.current = key.id.clone();
            next.keys.push(key);
            match self.replace_keyring(&keyring, next).await {
                Err(StoreError::Conflict) if attempt < KEY_RETRIES => attempt += 1,
                other => return other.map(drop),
            }
        }
    }

    async fn replace_keyring(&self, old: &Keyring, new: Keyring) -> Result<Keyring, StoreError> {
        let op = Op::Update {
            key: KEYRING.into(),
            object: new.to_value(),
            expected_revision: old.revision(),
        };
        Ok(Keyring::parse(&self.propose(op).await?)?)
    }

    /// Drops the data keys that neither seal new writes nor any stored Secret.
    async fn retire_unused_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut attempt = 0;
        loop {
            let keyring = self.ensure_keyring().await?;
            let in_use = self.sealed_records(|_| true)?;
            let used = |id: &str| {
                id == keyring.current
                    || in_use
                        .iter()
                        .any(|(_, stored)| encryption::sealed_with(stored) == Some(id))
            };
            let (kept, retired): (Vec<_>, Vec<_>) =
                keyring.keys.iter().cloned().partition(|k| used(&k.id));
            if retired.is_empty() {
                return Ok(Vec::new());
            }
            let mut next = (*keyring).clone();
            next.keys = kept;
            match self.replace_keyring(&keyring, next).await {
                Err(StoreError::Conflict) if attempt < KEY_RETRIES => attempt += 1,
                other => return other.map(|_| retired.into_iter().map(|k| k.id).collect()),
            }
        }
    }

    /// The raw Secret records (storage key, stored value) whose sealing key passes `pick`
    /// (`None`: plaintext).
    fn sealed_records(
        &self,
        pick: impl Fn(Option<&str>) -> bool,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let mut out = Vec::new();
        for record in secret_records(&self.inner.tree) {
            let (key, stored) = record?;
            if pick(encryption::sealed_with(&stored)) {
                out.push((key, stored));
            }
        }
        Ok(out)
    }

    /// Scans this member's raw state and retained raft log for Secrets in plaintext.
    pub fn check_encryption(&self) -> Result<CheckReport, StoreError> {
        check(&self.inner.tree, &self.inner.log)
    }

    /// Waits until this member has applied everything the cluster had committed when it was
    /// called: a read after it is linearizable (raft's ReadIndex).
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let id = self.next_id();
        self.ask(|reply| Request::ReadIndex { id, reply }).await
    }

    /// Adds `member` as a learner (the leader promotes it to voter once it has caught up);
    /// returns once the change is applied here.
    pub async fn add_member(&self, member: Member) -> Result<(), StoreError> {
        let id = self.next_id();
        let change = MembershipChange::Add(member);
        self.ask(|reply| Request::ChangeMembers { id, change, reply })
            .await
    }

    /// Records new addresses for an existing member, on every member.
    pub async fn update_member(&self, member: Member) -> Result<(), StoreError> {
        let id = self.next_id();
        let change = MembershipChange::Update(member);
        self.ask(|reply| Request::ChangeMembers { id, change, reply })
            .await
    }

    /// Removes member `member` (raft id); refused if it would leave no voter. A removed
    /// member's store stops with [`StoreError::Removed`].
    pub async fn remove_member(&self, member: u64) -> Result<(), StoreError> {
        let id = self.next_id();
        let change = MembershipChange::Remove(member);
        self.ask(|reply| Request::ChangeMembers { id, change, reply })
            .await
    }

    pub async fn status(&self) -> Result<ClusterStatus, StoreError> {
        self.ask(|reply| Request::Status { reply }).await
    }

    /// Changes after `revision`, then live changes.
    pub fn watch(&self, revision: u64) -> Result<Subscription, WatchError> {
        self.inner.hub.subscribe(revision)
    }
}

/// The Secret records of a state tree as stored: (storage key, sealed or plaintext object).
fn secret_records(
    tree: &sled::Tree,
) -> impl Iterator<Item = Result<(String, Value), StoreError>> + '_ {
    tree.scan_prefix(encryption::SEALED_PREFIX).map(|item| {
        let (key, value) = item?;
        Ok((
            String::from_utf8_lossy(&key).into_owned(),
            serde_json::from_slice(&value)?,
        ))
    })
}

/// Scans a member's raw state and the raft log it still holds for Secrets in plaintext.
fn check(tree: &sled::Tree, log: &SledStorage) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    if let Some(keyring) = state::read(tree, KEYRING)? {
        let keyring = Keyring::parse(&keyring)?;
        report.keys = keyring.keys.iter().map(|k| k.id.clone()).collect();
        report.current_key = Some(keyring.current);
    }
    for record in secret_records(tree) {
        let (key, stored) = record?;
        match encryption::sealed_with(&stored) {
            Some(id) => *report.sealed.entry(id.to_string()).or_default() += 1,
            None => report.plaintext.push(key),
        }
    }
    for entry in log.stored_entries() {
        let entry = entry?;
        if entry.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
            continue;
        }
        // Leader no-ops are empty; everything else normal is an op.
        let Ok(op) = serde_json::from_slice::<Op>(&entry.data) else {
            continue;
        };
        if let Op::Create { key, object } | Op::Update { key, object, .. } = &op {
            if encryption::is_sealed_key(key) && encryption::sealed_with(object).is_none() {
                report.plaintext_log_entries.push(entry.index);
            }
        }
    }
    Ok(report)
}

/// [`Store::check_encryption`] for a member that is not running: opens its store directory
/// (sled refuses while a running member holds it).
pub fn check_stopped(dir: &Path) -> Result<CheckReport, StoreError> {
    if !dir.join("db").exists() {
        return Err(StoreError::Corrupt(format!(
            "{} holds no store",
            dir.display()
        )));
    }
    let db = sled::Config::new().path(dir).open()?;
    check(&db.open_tree(state::TREE)?, &SledStorage::open(&db)?)
}

/// Sets up an empty data directory; returns the member's id.
fn start_fresh(
    storage: &SledStorage,
    state: &StateMachine,
    fresh: &FreshStart,
    peer_addr: Option<SocketAddr>,
) -> Result<u64, StoreError> {
    if storage.is_initialized()? {
        return Err(StoreError::Corrupt(
            "raft state without a member id (a data directory from an older wkube?)".into(),
        ));
    }
    match fresh {
        FreshStart::Bootstrap { api_url, node_name } => {
            // Bootstrapping installs a snapshot at index 1 of a cluster that is just this
            // member. Members that join later then always start from a snapshot, never
            // from an empty log that lacks this first configuration.
            let id = new_member_id();
            let member = Member {
                id,
                peer_addr: peer_addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
                api_url: api_url.clone(),
                node_name: node_name.clone(),
            };
            let meta = SnapshotMetadata {
                index: 1,
                term: 1,
                conf_state: Some(ConfState::from((vec![id], vec![]))).into(),
                ..Default::default()
            };
            state.restore(&meta, &state::initial_state(&member)?)?;
            storage.apply_snapshot_meta(&meta)?;
            storage.set_member_id(id)?;
            Ok(id)
        }
        FreshStart::Join { id } => {
            storage.set_member_id(*id)?;
            Ok(*id)
        }
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

    #[tokio::test]
    async fn a_commit_index_lost_in_a_crash_is_raised_to_the_applied_state() {
        let dir = tempfile::tempdir().unwrap();
        let rev = {
            let (store, driver) = Store::open(dir.path()).unwrap();
            let rev = create(&store, "a").await;
            drop(store);
            driver.join().unwrap().unwrap();
            rev
        };
        {
            // What a crash leaves when the state's writes reached the disk but the last
            // commit index, which is not flushed on its own, did not.
            let (db, storage) = raft_storage(dir.path());
            storage.set_commit(rev - 1).unwrap();
            db.flush().unwrap();
        }
        let (store, _driver) = Store::open(dir.path()).unwrap();
        assert_eq!(store.list("configmaps/default/").unwrap().0.len(), 1);
        assert!(create(&store, "b").await > rev);
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

    fn small_log() -> StoreConfig {
        StoreConfig {
            retention: SMALL_LOG,
            ..StoreConfig::single()
        }
    }

    #[tokio::test]
    async fn the_log_is_compacted_and_the_state_survives_reopen() {
        use raft::Storage as _;
        let dir = tempfile::tempdir().unwrap();
        let mut revisions = Vec::new();
        {
            let (store, driver) = Store::open_with(dir.path(), small_log()).unwrap();
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
        let (store, _driver) = Store::open_with(dir.path(), small_log()).unwrap();
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
        let member;
        {
            let (store, driver) = Store::open_with(source.path(), small_log()).unwrap();
            member = store.member_id();
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

        // The same member on another disk: it has its id (as a joining member does before
        // any snapshot) and the snapshot installed into its state only, as if it crashed
        // right after. On open, the raft storage catches up with the snapshot the state
        // records.
        let target = tempfile::tempdir().unwrap();
        {
            let db = sled::open(target.path()).unwrap();
            SledStorage::open(&db)
                .unwrap()
                .set_member_id(member)
                .unwrap();
            let state = StateMachine::open(&db, Arc::new(WatchHub::new(0))).unwrap();
            state
                .restore(snapshot.get_metadata(), snapshot.get_data())
                .unwrap();
            db.flush().unwrap();
        }
        let (store, _driver) = Store::open_with(target.path(), small_log()).unwrap();
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

    fn secret(name: &str, password: &str) -> Value {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(password);
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": "default",
                            "annotations": {"note": format!("repeats {password}")}},
               "data": {"password": b64}})
    }

    fn secret_key(name: &str) -> String {
        format!("secrets/default/{name}")
    }

    fn create_secret(name: &str, password: &str) -> Op {
        Op::Create {
            key: secret_key(name),
            object: secret(name, password),
        }
    }

    /// Every file under `dir` that holds `needle`.
    fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_holding(&path, needle));
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn secrets_are_sealed_on_disk_and_read_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let (store, driver) = Store::open(dir.path()).unwrap();
        let written = store
            .write(create_secret("db", "tr0ub4dor-plain"))
            .await
            .unwrap();
        assert_eq!(written["data"], secret("db", "tr0ub4dor-plain")["data"]);
        let read = store.get(&secret_key("db")).unwrap().unwrap();
        assert_eq!(read, written);
        assert_eq!(store.list("secrets/").unwrap().0, vec![written.clone()]);
        let sub = store.watch(revision_of(&written) - 1).unwrap();
        let event = sub
            .backlog
            .iter()
            .find(|e| e.key == secret_key("db"))
            .unwrap();
        assert_eq!(*store.reveal(&event.key, &event.object).unwrap(), written);
        drop((store, sub));
        driver.join().unwrap().unwrap();

        for needle in ["tr0ub4dor-plain", "dHIwdWI0ZG9yLXBsYWlu"] {
            assert_eq!(
                files_holding(dir.path(), needle.as_bytes()),
                Vec::<std::path::PathBuf>::new()
            );
        }
        let report = check_stopped(dir.path()).unwrap();
        assert!(report.clean(), "{report:?}");
        assert_eq!(report.sealed.values().sum::<u64>(), 1);
    }

    #[tokio::test]
    async fn a_secret_of_the_largest_size_is_sealed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        // 1 MiB of data, as validation allows: the envelope is larger than one raft message.
        let big = "x".repeat(1 << 20);
        let written = store.write(create_secret("big", &big)).await.unwrap();
        assert_eq!(store.get(&secret_key("big")).unwrap().unwrap(), written);
        assert_eq!(written["data"], secret("big", &big)["data"]);
    }

    #[tokio::test]
    async fn rotation_seals_every_secret_again_and_retires_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        for name in ["a", "b"] {
            store.write(create_secret(name, "pw")).await.unwrap();
        }
        // A Secret stored before encryption existed, as an older wkube wrote it.
        store.propose(create_secret("old", "pw")).await.unwrap();
        let before = store.check_encryption().unwrap();
        assert_eq!(before.plaintext, [secret_key("old")]);
        let old_key = before.current_key.clone().unwrap();

        let rotation = store.rotate_key().await.unwrap();
        assert_eq!(rotation.reencrypted, 3);
        assert_eq!(rotation.retired_keys, [old_key]);
        let after = store.check_encryption().unwrap();
        assert!(after.plaintext.is_empty());
        assert_eq!(after.keys, std::slice::from_ref(&rotation.current_key));
        assert_eq!(
            after.sealed,
            HashMap::from([(rotation.current_key.clone(), 3)])
        );
        // The old entry is on disk until the log is compacted past it, and is reported.
        assert_eq!(after.plaintext_log_entries.len(), 1);
        for name in ["a", "b", "old"] {
            let s = store.get(&secret_key(name)).unwrap().unwrap();
            assert_eq!(s["data"], secret(name, "pw")["data"]);
        }
    }

    #[tokio::test]
    async fn a_write_sealed_with_a_replaced_key_is_refused_and_sealed_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _driver) = Store::open(dir.path()).unwrap();
        let keyring = store.ensure_keyring().await.unwrap();
        // Sealed by a member that has not yet seen the rotation below.
        let stale = store
            .inner
            .sealer
            .seal(&keyring, &secret_key("s"), &secret("s", "pw"))
            .unwrap();
        store.rotate_key().await.unwrap();
        let refused = store
            .propose(Op::Create {
                key: secret_key("s"),
                object: stale,
            })
            .await;
        assert!(matches!(refused, Err(StoreError::StaleKey)), "{refused:?}");
        store.write(create_secret("s", "pw")).await.unwrap();
        assert!(store.check_encryption().unwrap().clean());
    }
}
