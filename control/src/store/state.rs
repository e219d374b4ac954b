//! The state machine: Kubernetes objects as JSON in sled, changed only by applying
//! committed raft entries. The applied index is written in the same atomic batch as the
//! change it applies, so after a crash each entry is applied exactly once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::watch::{Event, EventKind, WatchHub};
use super::StoreError;

const APPLIED: &[u8] = b"\0applied";

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
            tree: db.open_tree("state")?,
            hub,
        })
    }

    pub fn applied(tree: &sled::Tree) -> Result<u64, StoreError> {
        Ok(match tree.get(APPLIED)? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 8])),
            Some(_) => return Err(StoreError::Corrupt("applied index".into())),
            None => 0,
        })
    }

    /// Records an entry that changes no object (leader no-ops, configuration changes).
    pub fn apply_noop(&self, index: u64) -> Result<(), StoreError> {
        self.tree.insert(APPLIED, &index.to_be_bytes())?;
        self.hub.advance_floor_if_empty(index);
        Ok(())
    }

    /// Applies one committed op at `index`. The outer error is a storage failure (fatal for
    /// the member); the inner one is the op's own outcome, returned to its proposer.
    pub fn apply(&self, index: u64, op: Op) -> Result<Result<Value, StoreError>, StoreError> {
        let key = match &op {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key.clone(),
        };
        let current = self.read(&key)?;
        let mut batch = sled::Batch::default();
        batch.insert(APPLIED, &index.to_be_bytes());
        let outcome = match (op, current) {
            (Op::Create { object, .. }, None) => {
                let object = Arc::new(with_revision(object, index));
                batch.insert(key.as_bytes(), serde_json::to_vec(&*object)?);
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
                    batch.insert(key.as_bytes(), serde_json::to_vec(&*object)?);
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
                    batch.remove(key.as_bytes());
                    let prev = Arc::new(cur);
                    let object = Arc::new(with_revision((*prev).clone(), index));
                    Ok((EventKind::Deleted, object, Some(prev)))
                }
            }
        };
        self.tree.apply_batch(batch)?;
        Ok(match outcome {
            Ok((kind, object, previous)) => {
                self.hub.publish(Event {
                    revision: index,
                    kind,
                    key,
                    object: object.clone(),
                    previous,
                });
                Ok((*object).clone())
            }
            Err(e) => {
                self.hub.advance_floor_if_empty(index);
                Err(e)
            }
        })
    }

    pub fn read(&self, key: &str) -> Result<Option<Value>, StoreError> {
        read(&self.tree, key)
    }
}

pub fn read(tree: &sled::Tree, key: &str) -> Result<Option<Value>, StoreError> {
    match tree.get(key.as_bytes())? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}
