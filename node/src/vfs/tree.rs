//! The content of a virtual mount at one moment: an immutable tree of directories and
//! read-only files, shared by `Arc`, so pinning a version is a reference count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Longest path a guest may resolve in a virtual mount, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// Longest name of one path component, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("no such file or directory")]
    NoEntry,
    #[error("not a directory")]
    NotDirectory,
    #[error("path leaves the mount")]
    Escapes,
    #[error("name too long")]
    NameTooLong,
    #[error("two files at one path")]
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Bytes,
    /// Permission bits (`defaultMode`/`mode`), e.g. `0o644`.
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dir {
    pub entries: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(Arc<Dir>),
    File(Arc<File>),
}

impl Node {
    pub fn size(&self) -> u64 {
        match self {
            Node::Dir(d) => d.entries.len() as u64,
            Node::File(f) => f.data.len() as u64,
        }
    }

    /// Identity of this node within its snapshot (the same `Arc` is the same object).
    pub fn id(&self) -> usize {
        match self {
            Node::Dir(d) => Arc::as_ptr(d) as usize,
            Node::File(f) => Arc::as_ptr(f) as usize,
        }
    }

    /// The node at `path` relative to `self`. `.` and empty components are skipped, `..`
    /// goes up but never above `self` (that is [`TreeError::Escapes`], as a WASI
    /// directory descriptor is a capability for what is below it only).
    pub fn resolve(&self, path: &str) -> Result<Node, TreeError> {
        if path.len() > MAX_PATH {
            return Err(TreeError::NameTooLong);
        }
        if path.starts_with('/') {
            return Err(TreeError::Escapes);
        }
        if path.is_empty() {
            return Err(TreeError::NoEntry);
        }
        let mut stack = vec![self.clone()];
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if stack.len() == 1 {
                        return Err(TreeError::Escapes);
                    }
                    stack.pop();
                }
                name => {
                    if name.len() > MAX_NAME {
                        return Err(TreeError::NameTooLong);
                    }
                    let Node::Dir(dir) = stack.last().expect("never empty") else {
                        return Err(TreeError::NotDirectory);
                    };
                    let next = dir.entries.get(name).ok_or(TreeError::NoEntry)?.clone();
                    stack.push(next);
                }
            }
        }
        let found = stack.pop().expect("never empty");
        if path.ends_with('/') && matches!(found, Node::File(_)) {
            return Err(TreeError::NotDirectory);
        }
        Ok(found)
    }
}

impl Dir {
    /// A tree holding `files` at their relative paths (`a/b/c` makes directories `a`
    /// and `a/b`). Paths were validated by the API (no `..`, not absolute).
    pub fn from_files(files: impl IntoIterator<Item = (String, File)>) -> Result<Dir, TreeError> {
        let mut root = Builder::default();
        for (path, file) in files {
            let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let name = parts.pop().ok_or(TreeError::NoEntry)?;
            let mut dir = &mut root;
            for part in parts {
                dir = match dir
                    .entries
                    .entry(part.to_string())
                    .or_insert_with(|| BuilderNode::Dir(Builder::default()))
                {
                    BuilderNode::Dir(d) => d,
                    BuilderNode::File(_) => return Err(TreeError::Conflict),
                };
            }
            if dir
                .entries
                .insert(name.to_string(), BuilderNode::File(file))
                .is_some()
            {
                return Err(TreeError::Conflict);
            }
        }
        Ok(root.build())
    }
}

#[derive(Default)]
struct Builder {
    entries: BTreeMap<String, BuilderNode>,
}

enum BuilderNode {
    Dir(Builder),
    File(File),
}

impl Builder {
    fn build(self) -> Dir {
        let entries = self
            .entries
            .into_iter()
            .map(|(name, n)| {
                let node = match n {
                    BuilderNode::Dir(d) => Node::Dir(Arc::new(d.build())),
                    BuilderNode::File(f) => Node::File(Arc::new(f)),
                };
                (name, node)
            })
            .collect();
        Dir { entries }
    }
}

/// One version of a mount's content. A new version is a new `Snapshot`; descriptors that
/// pinned the old one keep reading it.
#[derive(Debug)]
pub struct Snapshot {
    pub root: Node,
    /// When this version was made: the modification time every node of it shows.
    pub at: SystemTime,
}

impl Snapshot {
    pub fn new(root: Dir) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            root: Node::Dir(Arc::new(root)),
            at: SystemTime::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> File {
        File {
            data: Bytes::from(s.to_string()),
            mode: 0o644,
        }
    }

    fn tree() -> Node {
        let d = Dir::from_files([
            ("a".to_string(), file("A")),
            ("sub/b".to_string(), file("B")),
            ("sub/deeper/c".to_string(), file("C")),
        ])
        .unwrap();
        Node::Dir(Arc::new(d))
    }

    #[test]
    fn resolve_table() {
        let t = tree();
        let cases: Vec<(&str, Result<&str, TreeError>)> = vec![
            ("a", Ok("A")),
            ("./a", Ok("A")),
            ("sub/b", Ok("B")),
            ("sub//deeper/./c", Ok("C")),
            ("sub/../a", Ok("A")),
            ("sub/deeper/../../a", Ok("A")),
            ("..", Err(TreeError::Escapes)),
            ("sub/../../a", Err(TreeError::Escapes)),
            ("/a", Err(TreeError::Escapes)),
            ("missing", Err(TreeError::NoEntry)),
            ("", Err(TreeError::NoEntry)),
            ("a/x", Err(TreeError::NotDirectory)),
            ("a/", Err(TreeError::NotDirectory)),
        ];
        for (path, want) in cases {
            let got = t.resolve(path).map(|n| match n {
                Node::File(f) => String::from_utf8(f.data.to_vec()).unwrap(),
                Node::Dir(_) => "<dir>".into(),
            });
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{path}");
        }
        assert!(matches!(t.resolve("sub/"), Ok(Node::Dir(_))));
        assert!(matches!(t.resolve("."), Ok(Node::Dir(_))));
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(t.resolve(&long), Err(TreeError::NameTooLong));
        assert_eq!(
            t.resolve(&"a/".repeat(MAX_PATH)),
            Err(TreeError::NameTooLong)
        );
    }

    #[test]
    fn two_files_at_one_path_conflict() {
        let dup = Dir::from_files([("a".to_string(), file("1")), ("a".to_string(), file("2"))]);
        assert_eq!(dup, Err(TreeError::Conflict));
        let under_file =
            Dir::from_files([("a".to_string(), file("1")), ("a/b".to_string(), file("2"))]);
        assert_eq!(under_file, Err(TreeError::Conflict));
    }
}
