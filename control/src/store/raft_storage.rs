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
/// Entries dropped per step of a compaction (see `SledStorage::trim_some`): about ten times
/// what a Ready appends at 6000 writes/s, so trimming keeps up with the log without making
/// any one Ready much slower than the others.
const TRIM_BATCH: usize = 64;

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
    ///
    /// The writes are single inserts and removals, not one atomic batch (which would cost
    /// sled two log writes of its own, see `state::Applying`), in an order that keeps the log
    /// without gaps if only a prefix of them survives a crash: the conflicting tail is
    /// removed from its end, then the new entries are added from their start. Raft needs no
    /// more, since an entry counts only once the flush after `append` is done.
    pub fn append(&self, entries: &[Entry]) -> Result<(), RaftStorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for old in self.log.range(first.index.to_be_bytes()..).rev() {
            self.log.remove(old?.0)?;
        }
        for e in entries {
            self.log.insert(e.index.to_be_bytes(), encode(e))?;
        }
        Ok(())
    }

    /// Every entry sled still holds, including those a compaction has not trimmed yet: what
    /// is on disk, for [`super::Store::check_encryption`].
    pub fn stored_entries(&self) -> impl Iterator<Item = Result<Entry, RaftStorageError>> + '_ {
        self.log.iter().map(|item| {
            let (key, value) = item?;
            decode(&key, &value)
        })
    }

    fn last_log_index(&self) -> Result<Option<u64>, RaftStorageError> {
        Ok(self.log.last()?.map(|(k, _)| index_of(&k)))
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
        if index <= self.snapshot_meta()?.index {
            return Ok(()); // compacted already
        }
        let Some(last) = self.entry(index)? else {
            return Ok(()); // beyond the log
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
        self.trim_some()
    }

    /// Drops up to `TRIM_BATCH` entries that a snapshot covers. The raft thread calls this
    /// after every Ready, so a compaction of thousands of entries is spread over many small
    /// steps instead of stalling every write behind one large batch. Entries not yet
    /// dropped are invisible: the log starts after the snapshot whatever sled still holds.
    /// So a crash halfway through is harmless, and the removes need no atomic batch (which
    /// would cost sled two log writes, see `state::Applying`).
    pub fn trim_some(&self) -> Result<(), RaftStorageError> {
        let covered = self.snapshot_meta()?.index;
        let old: Vec<_> = self
            .log
            .range(..=covered.to_be_bytes())
            .keys()
            .take(TRIM_BATCH)
            .collect::<Result<_, _>>()?;
        for key in old {
            self.log.remove(key)?;
        }
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
        Ok(self.snapshot_meta().map_err(to_raft)?.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        let snap = self.snapshot_meta().map_err(to_raft)?;
        // Entries the snapshot covers may linger until trimmed (see `trim_some`).
        Ok(self
            .last_log_index()
            .map_err(to_raft)?
            .map_or(snap.index, |last| last.max(snap.index)))
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
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
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
        let meta = SnapshotMetadata {
            index: 2,
            term: 1,
            ..Default::default()
        };
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

    #[test]
    fn a_large_compaction_is_trimmed_in_steps_and_hidden_at_once() {
        let (_d, s) = storage();
        let total = 3 * TRIM_BATCH as u64;
        let entries: Vec<Entry> = (1..=total).map(|i| entry(i, 1)).collect();
        s.append(&entries).unwrap();
        s.compact(total - 1).unwrap();
        // The first step leaves entries behind, but none is visible.
        assert!(s.log.len() > 1);
        assert_eq!(s.first_index().unwrap(), total);
        assert_eq!(s.last_index().unwrap(), total);
        assert!(matches!(
            s.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        s.compact(TRIM_BATCH as u64).unwrap(); // a lingering entry is not compacted again
        assert_eq!(s.first_index().unwrap(), total);
        for _ in 0..3 {
            s.trim_some().unwrap();
        }
        assert_eq!(s.log.len(), 1);
    }

    #[test]
    fn a_snapshot_past_the_log_ends_it_even_before_trimming() {
        let (_d, s) = storage();
        let entries: Vec<Entry> = (1..=2 * TRIM_BATCH as u64).map(|i| entry(i, 1)).collect();
        s.append(&entries).unwrap();
        let meta = SnapshotMetadata {
            index: 5000,
            term: 3,
            ..Default::default()
        };
        s.apply_snapshot_meta(&meta).unwrap();
        assert_eq!(s.first_index().unwrap(), 5001);
        assert_eq!(s.last_index().unwrap(), 5000);
    }
}
