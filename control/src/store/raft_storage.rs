//! raft-rs `Storage` over sled: the raft log, the hard state, the conf state and the
//! metadata of the last snapshot, all durable.
//!
//! Layout (tree `raft`): `hs` -> HardState, `cs` -> ConfState, `snap` -> SnapshotMetadata;
//! tree `raft_log`: big-endian index -> Entry. Values are protobuf-encoded raft messages.
//! Writes are not flushed here: the Ready loop flushes once per Ready (group commit).
//!
//! Snapshots are not stored: the state machine's tree is the snapshot, read when raft asks
//! for one. The log is compacted up to a point the state has applied, which is recorded as
//! the snapshot metadata.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
const SNAPSHOT_META: &[u8] = b"snap";
const MEMBER_ID: &[u8] = b"id";

#[derive(Debug, thiserror::Error)]
pub enum RaftStorageError {
    #[error("raft storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("raft storage holds an undecodable record under {key}: {source}")]
    Corrupt {
        key: String,
        source: protobuf::ProtobufError,
    },
}

#[derive(Clone)]
pub struct SledStorage {
    meta: sled::Tree,
    log: sled::Tree,
    /// The state machine's tree, read (never written) to build snapshots.
    state: sled::Tree,
}

fn decode<M: protobuf::Message>(key: &[u8], bytes: &[u8]) -> Result<M, RaftStorageError> {
    M::parse_from_bytes(bytes).map_err(|source| RaftStorageError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory message cannot fail (no required fields in eraftpb).
    m.write_to_bytes().unwrap_or_default()
}

fn to_raft(e: RaftStorageError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl SledStorage {
    pub fn open(db: &sled::Db) -> Result<Self, RaftStorageError> {
        Ok(SledStorage {
            meta: db.open_tree("raft")?,
            log: db.open_tree("raft_log")?,
            state: db.open_tree(super::state::TREE)?,
        })
    }

    /// This member's raft id, once it has one.
    pub fn member_id(&self) -> Result<Option<u64>, RaftStorageError> {
        Ok(self
            .meta
            .get(MEMBER_ID)?
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes))
    }

    pub fn set_member_id(&self, id: u64) -> Result<(), RaftStorageError> {
        self.meta.insert(MEMBER_ID, &id.to_be_bytes())?;
        Ok(())
    }

    /// True once a conf state was written: the member has been bootstrapped or has joined.
    pub fn is_initialized(&self) -> Result<bool, RaftStorageError> {
        Ok(self.meta.contains_key(CONF_STATE)?)
    }

    pub fn hard_state(&self) -> Result<HardState, RaftStorageError> {
        self.read(HARD_STATE)
    }

    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), RaftStorageError> {
        self.meta.insert(HARD_STATE, encode(hs))?;
        Ok(())
    }

    pub fn conf_state(&self) -> Result<ConfState, RaftStorageError> {
        self.read(CONF_STATE)
    }

    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), RaftStorageError> {
        self.meta.insert(CONF_STATE, encode(cs))?;
        Ok(())
    }

    pub fn set_commit(&self, commit: u64) -> Result<(), RaftStorageError> {
        let mut hs = self.hard_state()?;
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    pub fn snapshot_meta(&self) -> Result<SnapshotMetadata, RaftStorageError> {
        self.read(SNAPSHOT_META)
    }

    fn read<M: protobuf::Message + Default>(&self, key: &[u8]) -> Result<M, RaftStorageError> {
        match self.meta.get(key)? {
            Some(bytes) => decode(key, &bytes),
            None => Ok(M::default()),
        }
    }

    /// Appends entries, replacing any conflicting suffix (raft may overwrite an uncommitted
    /// tail after a leader change).
    pub fn append(&self, entries: &[Entry]) -> Result<(), RaftStorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for old in self.log.range(first.index.to_be_bytes()..) {
            let (k, _) = old?;
            batch.remove(k);
        }
        for e in entries {
            batch.insert(&e.index.to_be_bytes(), encode(e));
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    fn last_log_index(&self) -> Result<Option<u64>, RaftStorageError> {
        Ok(self.log.last()?.map(|(k, _)| index_of(&k)))
    }

    fn first_log_index(&self) -> Result<Option<u64>, RaftStorageError> {
        Ok(self.log.first()?.map(|(k, _)| index_of(&k)))
    }

    fn entry(&self, idx: u64) -> Result<Option<Entry>, RaftStorageError> {
        let key = idx.to_be_bytes();
        match self.log.get(key)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records a snapshot's metadata and drops the log it covers.
    pub fn apply_snapshot_meta(&self, meta: &SnapshotMetadata) -> Result<(), RaftStorageError> {
        self.set_conf_state(meta.get_conf_state())?;
        let mut hs = self.hard_state()?;
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.set_hard_state(&hs)?;
        self.trim_log(meta)
    }

    /// Drops the log up to `index`, which the state machine has applied: the state is the
    /// snapshot of everything up to there.
    pub fn compact(&self, index: u64) -> Result<(), RaftStorageError> {
        let Some(last) = self.entry(index)? else {
            return Ok(()); // compacted already
        };
        let meta = SnapshotMetadata {
            index,
            term: last.term,
            conf_state: Some(self.conf_state()?).into(),
            ..Default::default()
        };
        self.trim_log(&meta)
    }

    fn trim_log(&self, meta: &SnapshotMetadata) -> Result<(), RaftStorageError> {
        self.meta.insert(SNAPSHOT_META, encode(meta))?;
        let mut batch = sled::Batch::default();
        for old in self.log.range(..=meta.index.to_be_bytes()) {
            batch.remove(old?.0);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }
}

fn index_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state().map_err(to_raft)?,
            self.conf_state().map_err(to_raft)?,
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index()? {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let mut entries = Vec::with_capacity((high - low) as usize);
        for item in self.log.range(low.to_be_bytes()..high.to_be_bytes()) {
            let (k, v) = item.map_err(|e| to_raft(e.into()))?;
            entries.push(decode::<Entry>(&k, &v).map_err(to_raft)?);
        }
        if entries.len() as u64 != high - low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot_meta().map_err(to_raft)?;
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entry(idx).map_err(to_raft)? {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        let snap = self.snapshot_meta().map_err(to_raft)?;
        Ok(match self.first_log_index().map_err(to_raft)? {
            Some(i) => i.min(snap.index + 1),
            None => snap.index + 1,
        })
    }

    fn last_index(&self) -> raft::Result<u64> {
        let snap = self.snapshot_meta().map_err(to_raft)?;
        Ok(self
            .last_log_index()
            .map_err(to_raft)?
            .unwrap_or(snap.index))
    }

    /// The state machine as it is now (the raft thread, which calls this, is also the only
    /// writer of the state, so it cannot change underneath).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = super::state::applied(&self.state)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        if applied < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        let data = super::state::export(&self.state)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = self.term(applied)?;
        meta.set_conf_state(self.conf_state().map_err(to_raft)?);
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = format!("e{index}").into_bytes().into();
        e
    }

    fn storage() -> (tempfile::TempDir, SledStorage) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, SledStorage::open(&db).unwrap())
    }

    #[test]
    fn append_overwrites_conflicting_tail() {
        let (_d, s) = storage();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        s.append(&[entry(2, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        let got = s
            .entries(1, 3, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn empty_storage_is_truncated_at_zero() {
        let (_d, s) = storage();
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(s.last_index().unwrap(), 0);
        assert_eq!(s.term(0).unwrap(), 0);
        assert!(!s.is_initialized().unwrap());
    }

    #[test]
    fn snapshot_meta_compacts_the_log() {
        let (_d, s) = storage();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        let mut meta = SnapshotMetadata::default();
        meta.index = 2;
        meta.term = 1;
        s.apply_snapshot_meta(&meta).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(s
            .entries(1, 3, None, GetEntriesContext::empty(false))
            .is_err());
        assert_eq!(s.hard_state().unwrap().commit, 2);
    }

    #[test]
    fn compaction_keeps_terms_and_the_tail() {
        let (_d, s) = storage();
        s.append(&[entry(1, 1), entry(2, 2), entry(3, 2)]).unwrap();
        s.compact(2).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(matches!(
            s.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(
            s.entries(3, 4, None, GetEntriesContext::empty(false))
                .unwrap()[0]
                .index,
            3
        );
        s.compact(1).unwrap(); // behind the snapshot: nothing to do
        assert_eq!(s.first_index().unwrap(), 3);
    }
}
