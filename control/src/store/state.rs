//! The state machine: Kubernetes objects as JSON in sled, changed only by applying
//! committed raft entries. The applied index is written in the same atomic batch as the
//! changes it applies, so after a crash each entry is applied exactly once.

use std::collections::HashMap;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::SnapshotMetadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::encryption::{self, KEYRING};
use super::members::Member;
use super::watch::{Event, EventKind, WatchHub};
use super::StoreError;

/// Internal records start with a NUL byte, which no object key does.
const APPLIED: &[u8] = b"\0applied";
/// The metadata of the raft snapshot the state was last restored from (see [`StateMachine::restore`]).
const RESTORED_FROM: &[u8] = b"\0snapshot";
/// Member records: replicated state (unlike the NUL records, part of every snapshot), but
/// never an object, so listed apart.
const MEMBER_PREFIX: &[u8] = b"\x01member/";
/// Ids of removed members: they never come back (ids are random), and a removed member that
/// still talks is told so.
const REMOVED_PREFIX: &[u8] = b"\x01removed/";

/// A change proposed through raft. Everything nondeterministic (uids, timestamps) is decided
/// before proposing, so every member applies an entry to the same result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    Create {
        key: String,
        object: Value,
    },
    /// Replaces the object if its resourceVersion is still `expected_revision`.
    Update {
        key: String,
        object: Value,
        expected_revision: u64,
    },
    Delete {
        key: String,
        expected_revision: Option<u64>,
    },
}

/// Entries applied together: one sled batch for all of them. sled rolls its log buffer
/// twice for every atomic batch (a write and a sync each), so a batch per entry would cost
/// the disk more than the entries themselves. Later entries of the group see what earlier
/// ones wrote; watchers hear of the changes only once the batch is written.
#[derive(Default)]
pub struct Applying {
    batch: sled::Batch,
    /// Keys this group has written (`None`: deleted), as they now are.
    written: HashMap<String, Option<Arc<Value>>>,
    after: Vec<AfterWrite>,
    /// The last index applied in this group (0: none yet).
    applied: u64,
}

enum AfterWrite {
    Publish(Event),
    Floor(u64),
}

/// The sled tree holding the objects.
pub const TREE: &str = "state";

pub struct StateMachine {
    tree: sled::Tree,
    hub: Arc<WatchHub>,
}

pub fn revision_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn with_revision(mut obj: Value, revision: u64) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    obj
}

impl StateMachine {
    pub fn open(db: &sled::Db, hub: Arc<WatchHub>) -> Result<Self, StoreError> {
        Ok(StateMachine {
            tree: db.open_tree(TREE)?,
            hub,
        })
    }

    /// Applies a membership change: `joined` is recorded, `left` forgotten.
    pub fn apply_membership(
        &self,
        index: u64,
        joined: Option<&Member>,
        left: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(APPLIED, &index.to_be_bytes());
        if let Some(member) = joined {
            batch.insert(member_key(member.id), serde_json::to_vec(member)?);
        }
        if let Some(id) = left {
            batch.remove(member_key(id));
            batch.insert([REMOVED_PREFIX, &id.to_be_bytes()].concat(), &[]);
        }
        self.tree.apply_batch(batch)?;
        self.hub.advance_floor_if_empty(index);
        Ok(())
    }

    pub fn members(&self) -> Result<Vec<Member>, StoreError> {
        members(&self.tree)
    }

    pub fn was_removed(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self
            .tree
            .contains_key([REMOVED_PREFIX, &id.to_be_bytes()].concat())?)
    }

    /// Records an entry that changes no object (leader no-ops, configuration changes).
    pub fn apply_noop(&self, applying: &mut Applying, index: u64) {
        applying.applied = index;
        applying.after.push(AfterWrite::Floor(index));
    }

    /// Applies one committed op at `index` into `applying`. The outer error is a storage
    /// failure (fatal for the member); the inner one is the op's own outcome, returned to its
    /// proposer once the group is written.
    pub fn apply(
        &self,
        applying: &mut Applying,
        index: u64,
        op: Op,
    ) -> Result<Result<Arc<Value>, StoreError>, StoreError> {
        let key = match &op {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key.clone(),
        };
        // A create needs to know only whether the key is taken, not what holds it (so no
        // read and parse of the stored object; `Null` stands in for it).
        let current = match &op {
            Op::Create { .. } => self.exists(applying, &key)?.then_some(Value::Null),
            _ => self.as_applied(applying, &key)?,
        };
        // Looked up for sealed writes only: the keyring is no business of other objects.
        let stale_seal = match &op {
            Op::Create { object, .. } | Op::Update { object, .. }
                if encryption::sealed_with(object).is_some() =>
            {
                let keyring = self.as_applied(applying, KEYRING)?;
                !encryption::check_sealed_write(object, keyring.as_ref())
            }
            _ => false,
        };
        applying.applied = index;
        let outcome = match (op, current) {
            _ if stale_seal => Err(StoreError::StaleKey),
            (Op::Create { object, .. }, None) => {
                let object = Arc::new(with_revision(object, index));
                Ok((EventKind::Added, object, None))
            }
            (Op::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists),
            (Op::Update { .. }, None) | (Op::Delete { .. }, None) => Err(StoreError::NotFound),
            (
                Op::Update {
                    object,
                    expected_revision,
                    ..
                },
                Some(cur),
            ) => {
                if revision_of(&cur) != expected_revision {
                    Err(StoreError::Conflict)
                } else {
                    let object = Arc::new(with_revision(object, index));
                    Ok((EventKind::Modified, object, Some(Arc::new(cur))))
                }
            }
            (
                Op::Delete {
                    expected_revision, ..
                },
                Some(cur),
            ) => {
                if expected_revision.is_some_and(|r| r != revision_of(&cur)) {
                    Err(StoreError::Conflict)
                } else {
                    let prev = Arc::new(cur);
                    let object = Arc::new(with_revision((*prev).clone(), index));
                    Ok((EventKind::Deleted, object, Some(prev)))
                }
            }
        };
        Ok(match outcome {
            Ok((kind, object, previous)) => {
                if kind == EventKind::Deleted {
                    applying.batch.remove(key.as_bytes());
                    applying.written.insert(key.clone(), None);
                } else {
                    applying
                        .batch
                        .insert(key.as_bytes(), serde_json::to_vec(&*object)?);
                    applying.written.insert(key.clone(), Some(object.clone()));
                }
                applying.after.push(AfterWrite::Publish(Event {
                    revision: index,
                    kind,
                    key,
                    object: object.clone(),
                    previous,
                }));
                Ok(object)
            }
            Err(e) => {
                applying.after.push(AfterWrite::Floor(index));
                Err(e)
            }
        })
    }

    /// Writes a group of applied entries in one atomic batch with their last index, then
    /// tells the watchers. Returns the last index applied (0: the group was empty).
    pub fn commit(&self, applying: Applying) -> Result<u64, StoreError> {
        let Applying {
            mut batch,
            after,
            applied,
            ..
        } = applying;
        if applied == 0 {
            return Ok(0);
        }
        batch.insert(APPLIED, &applied.to_be_bytes());
        self.tree.apply_batch(batch)?;
        for step in after {
            match step {
                AfterWrite::Publish(event) => self.hub.publish(event),
                AfterWrite::Floor(index) => self.hub.advance_floor_if_empty(index),
            }
        }
        Ok(applied)
    }

    pub fn read(&self, key: &str) -> Result<Option<Value>, StoreError> {
        read(&self.tree, key)
    }

    /// Whether `key` exists as the entries applied so far, including those of `applying`,
    /// left it.
    fn exists(&self, applying: &Applying, key: &str) -> Result<bool, StoreError> {
        match applying.written.get(key) {
            Some(value) => Ok(value.is_some()),
            None => Ok(self.tree.contains_key(key.as_bytes())?),
        }
    }

    /// `key` as the entries applied so far, including those of `applying`, left it.
    fn as_applied(&self, applying: &Applying, key: &str) -> Result<Option<Value>, StoreError> {
        match applying.written.get(key) {
            Some(value) => Ok(value.as_deref().cloned()),
            None => self.read(key),
        }
    }

    /// Replaces the whole state with a raft snapshot's (see [`export`]), in one atomic batch
    /// that also records the snapshot's metadata: if the member crashes before raft's own
    /// record of the snapshot is durable, [`restored_snapshot`] lets it finish the job.
    pub fn restore(&self, meta: &SnapshotMetadata, data: &[u8]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for item in self.tree.iter() {
            batch.remove(item?.0);
        }
        for record in Records(data) {
            let (key, value) = record?;
            batch.insert(key, value);
        }
        batch.insert(APPLIED, &meta.index.to_be_bytes());
        let encoded = meta
            .write_to_bytes()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        batch.insert(RESTORED_FROM, encoded);
        self.tree.apply_batch(batch)?;
        // Watchers cannot be told what changed across a snapshot: their watches end, and
        // they list again, as after etcd compaction.
        self.hub.reset(meta.index);
        Ok(())
    }
}

fn member_key(id: u64) -> Vec<u8> {
    [MEMBER_PREFIX, &id.to_be_bytes()].concat()
}

/// Every member the state knows of.
pub fn members(tree: &sled::Tree) -> Result<Vec<Member>, StoreError> {
    tree.scan_prefix(MEMBER_PREFIX)
        .map(|item| Ok(serde_json::from_slice(&item?.1)?))
        .collect()
}

/// The state of a cluster that has just this one member: what bootstrapping installs.
pub fn initial_state(member: &Member) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    record(
        &mut out,
        &member_key(member.id),
        &serde_json::to_vec(member)?,
    )?;
    Ok(out)
}

/// The index of the last entry applied to the state in `tree`.
pub fn applied(tree: &sled::Tree) -> Result<u64, StoreError> {
    Ok(match tree.get(APPLIED)? {
        Some(b) => u64::from_be_bytes(
            b.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("applied index".into()))?,
        ),
        None => 0,
    })
}

/// The state at its applied index as one blob, for a raft snapshot: every object record as
/// (key length, key, value length, value), lengths as big-endian u32.
pub fn export(tree: &sled::Tree) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (key, value) = item?;
        if key.first() != Some(&0) {
            record(&mut out, &key, &value)?;
        }
    }
    Ok(out)
}

fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    for part in [key, value] {
        let len = u32::try_from(part.len())
            .map_err(|_| StoreError::Corrupt("record over 4 GiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(())
}

/// The snapshot the state was restored from, if any.
pub fn restored_snapshot(tree: &sled::Tree) -> Result<Option<SnapshotMetadata>, StoreError> {
    tree.get(RESTORED_FROM)?
        .map(|b| {
            SnapshotMetadata::parse_from_bytes(&b)
                .map_err(|e| StoreError::Corrupt(format!("snapshot record: {e}")))
        })
        .transpose()
}

/// Reads the records [`export`] writes.
struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    fn part(&mut self) -> Result<&'a [u8], StoreError> {
        let corrupt = || StoreError::Corrupt("truncated snapshot data".into());
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        let (part, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(part)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.part().and_then(|key| Ok((key, self.part()?))))
    }
}

pub fn read(tree: &sled::Tree, key: &str) -> Result<Option<Value>, StoreError> {
    match tree.get(key.as_bytes())? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine() -> (tempfile::TempDir, sled::Db, Arc<WatchHub>, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let hub = Arc::new(WatchHub::new(0));
        let state = StateMachine::open(&db, hub.clone()).unwrap();
        (dir, db, hub, state)
    }

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.into(),
            object: json!({"metadata": {"name": key}}),
        }
    }

    #[test]
    fn entries_of_one_group_see_each_other_and_are_written_together() {
        let (_d, db, hub, state) = machine();
        let mut group = Applying::default();
        state.apply(&mut group, 1, create("a")).unwrap().unwrap();
        // The second entry sees the first one's write though nothing is written yet.
        let update = Op::Update {
            key: "a".into(),
            object: json!({"metadata": {"name": "a", "labels": {"v": "2"}}}),
            expected_revision: 1,
        };
        state.apply(&mut group, 2, update).unwrap().unwrap();
        let refused = state.apply(&mut group, 3, create("a")).unwrap();
        assert!(matches!(refused, Err(StoreError::AlreadyExists)));
        state.apply_noop(&mut group, 4);
        assert_eq!(state.read("a").unwrap(), None);
        assert!(hub.subscribe(0).unwrap().backlog.is_empty());

        assert_eq!(state.commit(group).unwrap(), 4);
        assert_eq!(applied(&db.open_tree(TREE).unwrap()).unwrap(), 4);
        let a = state.read("a").unwrap().unwrap();
        assert_eq!(revision_of(&a), 2);
        assert_eq!(a["metadata"]["labels"]["v"], "2");
        let revisions: Vec<u64> = hub
            .subscribe(0)
            .unwrap()
            .backlog
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(revisions, [1, 2]);
    }

    #[test]
    fn a_key_deleted_in_a_group_is_gone_for_later_entries() {
        let (_d, _db, _hub, state) = machine();
        let mut group = Applying::default();
        state.apply(&mut group, 1, create("a")).unwrap().unwrap();
        let delete = Op::Delete {
            key: "a".into(),
            expected_revision: None,
        };
        state.apply(&mut group, 2, delete.clone()).unwrap().unwrap();
        let again = state.apply(&mut group, 3, delete).unwrap();
        assert!(matches!(again, Err(StoreError::NotFound)));
        state.commit(group).unwrap();
        assert_eq!(state.read("a").unwrap(), None);
    }
}
