//! A record of the raft commit index kept beside sled, so that a store that lost data is
//! noticed instead of served.
//!
//! sled recovers from a damaged log by dropping everything after the damage: the store then
//! opens fine but holds an older, consistent prefix, and a member would serve stale objects
//! and vote with a log it no longer has. Once a second or so, the raft thread writes the
//! commit index that sled has made durable to this file (fsync'd, renamed into place); at
//! open, a store whose durable commit index is below the recorded one refuses to start.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

const FILE: &str = "committed";
/// How often the record is brought up to date: losses older than this are caught.
const EVERY: Duration = Duration::from_secs(1);

pub struct CommitRecord {
    path: PathBuf,
    written: u64,
    at: Instant,
}

impl CommitRecord {
    pub fn new(store_dir: &Path) -> Self {
        CommitRecord {
            path: store_dir.join(FILE),
            written: 0,
            at: Instant::now(),
        }
    }

    /// The commit index recorded by an earlier run, if any.
    pub fn read(store_dir: &Path) -> Result<Option<u64>, StoreError> {
        let path = store_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                StoreError::Corrupt(format!("{}: not a commit index", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Corrupt(format!("{}: {e}", path.display()))),
        }
    }

    /// Records `durable` (a commit index sled has flushed) if it moved and the last record is
    /// old enough.
    pub fn maybe_write(&mut self, durable: u64) -> Result<(), StoreError> {
        if durable <= self.written || self.at.elapsed() < EVERY {
            return Ok(());
        }
        let io = |e: std::io::Error| StoreError::Corrupt(format!("{}: {e}", self.path.display()));
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(durable.to_string().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.written = durable;
        self.at = Instant::now();
        Ok(())
    }
}

/// Refuses a store whose durable commit index went backwards.
pub fn check(store_dir: &Path, commit: u64) -> Result<(), StoreError> {
    match CommitRecord::read(store_dir)? {
        Some(recorded) if commit < recorded => Err(StoreError::Corrupt(format!(
            "the store in {} has lost committed data (it holds entries up to {commit}, but {recorded} \
             were committed); restore it from a backup, or remove it and join the cluster again",
            store_dir.display()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_index_that_went_backwards_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check(dir.path(), 0).is_ok(), "a new store has no record");
        let mut record = CommitRecord::new(dir.path());
        record.at -= EVERY;
        record.maybe_write(40).unwrap();
        assert_eq!(CommitRecord::read(dir.path()).unwrap(), Some(40));
        assert!(check(dir.path(), 40).is_ok());
        assert!(check(dir.path(), 41).is_ok());
        let err = check(dir.path(), 12).unwrap_err().to_string();
        assert!(err.contains("has lost committed data"), "{err}");
        // Within a second of the last record, nothing is written.
        record.maybe_write(50).unwrap();
        assert_eq!(CommitRecord::read(dir.path()).unwrap(), Some(40));
    }
}
