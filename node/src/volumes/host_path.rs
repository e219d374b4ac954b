//! `hostPath` volumes: kubelet's `type` checks before the directory is mounted.

use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    /// Kubelet's wording (`checkType`).
    #[error("hostPath type check failed: {path} is not a {what}")]
    WrongType { path: String, what: &'static str },
    #[error("hostPath type {0:?} is not supported")]
    UnknownType(String),
    #[error("creating {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Checks (and for the `...OrCreate` types, creates) `path` as `type` says.
pub fn check(path: &Path, kind: Option<&str>) -> Result<(), HostPathError> {
    let shown = || path.display().to_string();
    let create = |r: std::io::Result<()>| {
        r.map_err(|source| HostPathError::Create {
            path: shown(),
            source,
        })
    };
    let meta = std::fs::metadata(path).ok();
    let is = |f: fn(&std::fs::Metadata) -> bool| meta.as_ref().is_some_and(f);
    let (ok, what) = match kind.unwrap_or_default() {
        "" => return Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_none() {
                create(
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(path),
                )?;
                return Ok(());
            }
            (is(|m| m.is_dir()), "directory")
        }
        "Directory" => (is(|m| m.is_dir()), "directory"),
        "FileOrCreate" => {
            if meta.is_none() {
                create(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map(drop),
                )?;
                return Ok(());
            }
            (is(|m| m.is_file()), "file")
        }
        "File" => (is(|m| m.is_file()), "file"),
        "Socket" => (is(|m| m.file_type().is_socket()), "socket file"),
        "CharDevice" => (is(|m| m.file_type().is_char_device()), "character device"),
        "BlockDevice" => (is(|m| m.file_type().is_block_device()), "block device"),
        other => return Err(HostPathError::UnknownType(other.to_string())),
    };
    if ok {
        Ok(())
    } else {
        Err(HostPathError::WrongType {
            path: shown(),
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let missing = dir.path().join("missing");
        let cases: Vec<(&Path, Option<&str>, Result<(), String>)> = vec![
            (dir.path(), None, Ok(())),
            (&missing, Some(""), Ok(())),
            (dir.path(), Some("Directory"), Ok(())),
            (&file, Some("File"), Ok(())),
            (
                &file,
                Some("Directory"),
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    file.display()
                )),
            ),
            (
                dir.path(),
                Some("File"),
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    dir.path().display()
                )),
            ),
            (
                &missing,
                Some("Socket"),
                Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    missing.display()
                )),
            ),
            (
                &file,
                Some("Sometimes"),
                Err("hostPath type \"Sometimes\" is not supported".into()),
            ),
        ];
        for (path, kind, want) in cases {
            assert_eq!(
                check(path, kind).map_err(|e| e.to_string()),
                want,
                "{path:?} {kind:?}"
            );
        }
        let created = dir.path().join("new/dir");
        check(&created, Some("DirectoryOrCreate")).unwrap();
        assert!(created.is_dir());
        let created_file = dir.path().join("new-file");
        check(&created_file, Some("FileOrCreate")).unwrap();
        assert!(created_file.is_file());
    }
}
