//! ConfigMap, Secret, downwardAPI and projected volumes for OCI containers: the virtual
//! content ([`crate::vfs`]) written to a memory-backed directory the container
//! bind-mounts, and kept current with kubelet's `AtomicWriter` layout:
//!
//! ```text
//! <dir>/..2024_01_01_12_00_00.000000001/   one version, written whole before it is shown
//! <dir>/..data -> ..2024_01_01_12_00_00.000000001
//! <dir>/<key>  -> ..data/<key>             one link per top-level entry
//! ```
//!
//! A new version is written beside the old one, then `..data` is replaced by renaming a
//! fresh symlink over it (atomic), then the top-level links are added or removed, then the
//! old version is deleted. A reader that resolves paths through `..data` (or a top-level
//! link) sees one version or the other, never a mix. The directory lives on tmpfs, so a
//! Secret's bytes never reach the node's disk.

use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::vfs::{Content, Dir, Node, Snapshot};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

#[derive(Debug, thiserror::Error)]
#[error("writing volume content to {path}: {source}")]
pub struct WriteError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// The name of a version directory: kubelet's `..<timestamp>` form, unique per write.
fn version_name() -> String {
    let now = chrono::Utc::now();
    format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"))
}

/// Writes `snapshot` into `dir` as its new current version.
pub fn write(dir: &Path, snapshot: &Snapshot) -> Result<(), WriteError> {
    let Node::Dir(root) = &snapshot.root else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut version = dir.join(version_name());
    while version.exists() {
        version = dir.join(version_name());
    }
    write_tree(&version, root)?;
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    let name = version.file_name().unwrap_or_default();
    symlink(name, &tmp).map_err(at(&tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(at(dir))?;
    for entry in root.entries.keys() {
        let link = dir.join(entry);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(entry), &link).map_err(at(&link))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(at(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !root.entries.contains_key(&name) {
            std::fs::remove_file(entry.path()).map_err(at(&entry.path()))?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != name) {
        let old = dir.join(old);
        std::fs::remove_dir_all(&old).map_err(at(&old))?;
    }
    Ok(())
}

fn write_tree(path: &Path, dir: &Dir) -> Result<(), WriteError> {
    std::fs::create_dir(path).map_err(at(path))?;
    for (name, node) in &dir.entries {
        let child = path.join(name);
        match node {
            Node::Dir(d) => write_tree(&child, d)?,
            Node::File(f) => {
                std::fs::write(&child, &f.data).map_err(at(&child))?;
                let mode = std::fs::Permissions::from_mode(f.mode);
                std::fs::set_permissions(&child, mode).map_err(at(&child))?;
            }
        }
    }
    // Directories stay listable whatever the files' modes, as kubelet leaves them.
    let mode = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(path, mode).map_err(at(path))
}

/// A volume's content kept written to a directory until dropped (which removes it).
pub struct Materialized {
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Materialized {
    /// Writes the current version now (so the container starts with it), then every
    /// new one as it comes.
    pub fn start(mut content: Content, dir: PathBuf) -> Result<Materialized, WriteError> {
        let first: Arc<Snapshot> = content.borrow_and_update().clone();
        write(&dir, &first)?;
        let target = dir.clone();
        let task = tokio::spawn(async move {
            while content.changed().await.is_ok() {
                let next = content.borrow_and_update().clone();
                if let Err(e) = write(&target, &next) {
                    tracing::warn!(error = %e, "cannot update a volume");
                }
            }
        });
        Ok(Materialized { dir, task })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Materialized {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::File;
    use std::collections::BTreeMap;

    fn snapshot(files: &[(&str, &str)]) -> Arc<Snapshot> {
        let files = files.iter().map(|(path, text)| {
            let file = File {
                data: bytes::Bytes::copy_from_slice(text.as_bytes()),
                mode: 0o644,
            };
            (path.to_string(), file)
        });
        Snapshot::new(Dir::from_files(files).unwrap())
    }

    fn read(dir: &Path) -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .map(|n| {
                let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_else(|_| "<dir>".into());
                (n, text)
            })
            .collect()
    }

    #[test]
    fn versions_swap_with_kubelets_layout() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("config");
        write(&dir, &snapshot(&[("a", "1"), ("b", "2"), ("sub/c", "3")])).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/c")).unwrap(), "3");
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        write(&dir, &snapshot(&[("a", "10"), ("d", "4")])).unwrap();
        let expected: BTreeMap<String, String> = [("a", "10"), ("d", "4")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(read(&dir), expected);
        // The old version is gone; only one version directory and `..data` remain.
        assert!(!dir.join(first).exists());
        let dots: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".."))
            .collect();
        assert_eq!(dots.len(), 2, "{dots:?}");
    }

    #[tokio::test]
    async fn a_reader_never_sees_a_mix_of_versions() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("config");
        let (tx, rx) = tokio::sync::watch::channel(snapshot(&[("a", "0"), ("b", "0")]));
        let materialized = Materialized::start(rx, dir.clone()).unwrap();
        let reader = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                let mut last = 0;
                while last < 200 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "stuck at version {last}"
                    );
                    // Pin one version through `..data`, as a reader holding it open would.
                    let Ok(version) = std::fs::read_link(dir.join(DATA)) else {
                        continue;
                    };
                    let v = dir.join(version);
                    let (Ok(a), Ok(b)) = (
                        std::fs::read_to_string(v.join("a")),
                        std::fs::read_to_string(v.join("b")),
                    ) else {
                        continue; // that version was deleted meanwhile: look again
                    };
                    assert_eq!(a, b, "torn read");
                    last = a.parse().unwrap();
                }
            })
        };
        for n in 1..=200 {
            let text = n.to_string();
            tx.send_replace(snapshot(&[("a", &text), ("b", &text)]));
            tokio::task::yield_now().await;
        }
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(materialized.dir().join("a")).unwrap(),
            "200"
        );
        drop(materialized);
        assert!(!dir.exists());
    }
}
