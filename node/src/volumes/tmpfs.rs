//! `emptyDir: {medium: Memory, sizeLimit: ...}`: a tmpfs of its own, sized by the limit,
//! so a container that writes more gets `ENOSPC` (Kubernetes' SizeMemoryBackedVolumes).
//! Memory emptyDirs without a limit share the node's `/dev/shm`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("invalid sizeLimit {0:?}")]
    Size(String),
    #[error("mounting a tmpfs of {bytes} bytes at {path}: {source}")]
    Mount {
        path: PathBuf,
        bytes: u64,
        #[source]
        source: rustix::io::Errno,
    },
}

/// The bytes of a `sizeLimit` quantity, rounded up.
pub fn limit_bytes(quantity: &str) -> Result<u64, TmpfsError> {
    control::validation::parse_quantity(quantity)
        .ok()
        .filter(|b| *b > 0.0)
        .map(|b| b.ceil() as u64)
        .ok_or_else(|| TmpfsError::Size(quantity.into()))
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    match (dev(dir), dir.parent().and_then(dev)) {
        (Some(d), Some(parent)) => d != parent,
        _ => false,
    }
}

/// Mounts a tmpfs of `bytes` at the existing directory `dir`; one already there (this
/// pod's, from before a node restart) is kept with its content.
pub fn mount_sized(dir: &Path, bytes: u64) -> Result<(), TmpfsError> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = std::ffi::CString::new(format!("size={bytes},mode=0777"))
        .map_err(|_| TmpfsError::Size(bytes.to_string()))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    mount("tmpfs", dir, "tmpfs", flags, Some(options.as_c_str())).map_err(|source| {
        TmpfsError::Mount {
            path: dir.to_path_buf(),
            bytes,
            source,
        }
    })
}

/// Detaches the tmpfs at `dir` if there is one (its memory is freed once unused).
pub fn unmount_if_mounted(dir: &Path) {
    if is_mount_point(dir) {
        if let Err(e) = unmount(dir, UnmountFlags::DETACH) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot unmount an emptyDir");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_quantities() {
        assert_eq!(limit_bytes("64Ki").unwrap(), 65536);
        assert_eq!(limit_bytes("1M").unwrap(), 1_000_000);
        assert!(limit_bytes("0").is_err());
        assert!(limit_bytes("lots").is_err());
    }

    #[test]
    fn a_sized_tmpfs_refuses_writes_beyond_its_size() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("scratch");
        std::fs::create_dir(&dir).unwrap();
        mount_sized(&dir, 64 * 1024).unwrap();
        assert!(is_mount_point(&dir));
        std::fs::write(dir.join("small"), vec![0u8; 16 * 1024]).unwrap();
        let err = std::fs::write(dir.join("big"), vec![0u8; 128 * 1024]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}"); // ENOSPC
        unmount_if_mounted(&dir);
        assert!(!is_mount_point(&dir));
    }
}
