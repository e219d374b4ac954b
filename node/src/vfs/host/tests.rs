//! The host against a resource table directly: flags, errors, pinning and the open limit.

use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtx, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
    OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::FsResult;

use super::MAX_OPEN;
use crate::testing::snapshot;
use crate::vfs::{Snapshot, VfsState, VfsView, VirtualMount};

/// A guest's filesystem state with one virtual mount at `/cfg`.
struct Guest {
    ctx: WasiFilesystemCtx,
    table: ResourceTable,
    state: VfsState,
    content: watch::Sender<Arc<Snapshot>>,
}

impl Guest {
    fn new() -> Self {
        let (content, rx) = watch::channel(snapshot(&[
            ("a", "one", 0o644),
            ("dir/b", "two", 0o644),
            ("locked", "x", 0o200),
        ]));
        Guest {
            ctx: WasiFilesystemCtx::default(),
            table: ResourceTable::new(),
            state: VfsState::new(vec![VirtualMount {
                guest_path: "/cfg".into(),
                content: rx,
            }]),
            content,
        }
    }

    fn view(&mut self) -> VfsView<'_> {
        VfsView {
            wasi: WasiFilesystemCtxView {
                ctx: &mut self.ctx,
                table: &mut self.table,
            },
            state: &mut self.state,
        }
    }

    fn root(&mut self) -> Resource<Descriptor> {
        let mut dirs = self.view().get_directories().unwrap();
        assert_eq!(dirs.len(), 1);
        let (fd, path) = dirs.pop().unwrap();
        assert_eq!(path, "/cfg");
        fd
    }
}

fn borrow(fd: &Resource<Descriptor>) -> Resource<Descriptor> {
    Resource::new_borrow(fd.rep())
}

async fn open(
    g: &mut Guest,
    dir: &Resource<Descriptor>,
    path: &str,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> FsResult<Resource<Descriptor>> {
    g.view()
        .open_at(borrow(dir), PathFlags::empty(), path.into(), oflags, flags)
        .await
}

async fn read_all(g: &mut Guest, fd: &Resource<Descriptor>) -> String {
    let (bytes, _) = g.view().read(borrow(fd), 1 << 20, 0).await.unwrap();
    String::from_utf8(bytes).unwrap()
}

fn code<T>(r: FsResult<T>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.downcast().expect("an error code, not a trap"),
    }
}

#[tokio::test]
async fn open_flags_and_errors_table() {
    let mut g = Guest::new();
    let root = g.root();
    let none = OpenFlags::empty();
    let read = DescriptorFlags::READ;
    let cases = [
        ("missing", none, read, ErrorCode::NoEntry),
        ("../escape", none, read, ErrorCode::NotPermitted),
        ("/abs", none, read, ErrorCode::NotPermitted),
        ("a/x", none, read, ErrorCode::NotDirectory),
        ("a", OpenFlags::DIRECTORY, read, ErrorCode::NotDirectory),
        ("a", none, DescriptorFlags::WRITE, ErrorCode::ReadOnly),
        ("a", OpenFlags::TRUNCATE, read, ErrorCode::ReadOnly),
        ("new", OpenFlags::CREATE, read, ErrorCode::ReadOnly),
        (
            "a",
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
            read,
            ErrorCode::Exist,
        ),
        ("dir", none, DescriptorFlags::WRITE, ErrorCode::IsDirectory),
        ("locked", none, read, ErrorCode::Access),
    ];
    for (path, oflags, flags, want) in cases {
        let got = code(open(&mut g, &root, path, oflags, flags).await);
        assert_eq!(got, want, "{path} {oflags:?} {flags:?}");
    }
    let dir = open(&mut g, &root, "dir", OpenFlags::DIRECTORY, read)
        .await
        .unwrap();
    let b = open(&mut g, &dir, "b", none, read).await.unwrap();
    assert_eq!(read_all(&mut g, &b).await, "two");
    let mut v = g.view();
    assert_eq!(
        v.get_type(borrow(&dir)).await.unwrap(),
        DescriptorType::Directory
    );
    assert_eq!(v.stat(borrow(&b)).await.unwrap().size, 3);
    assert_eq!(
        code(v.unlink_file_at(borrow(&dir), "b".into()).await),
        ErrorCode::ReadOnly
    );
    assert_eq!(
        code(v.write(borrow(&b), b"x".to_vec(), 0).await),
        ErrorCode::ReadOnly
    );
    assert_eq!(
        code(v.read(borrow(&dir), 1, 0).await),
        ErrorCode::BadDescriptor
    );
    let listing = v.read_directory(borrow(&root)).await.unwrap();
    let mut names = Vec::new();
    while let Some(e) = v
        .read_directory_entry(Resource::new_borrow(listing.rep()))
        .await
        .unwrap()
    {
        names.push((e.name, e.type_));
    }
    assert_eq!(
        names,
        [
            ("a".to_string(), DescriptorType::RegularFile),
            ("dir".to_string(), DescriptorType::Directory),
            ("locked".to_string(), DescriptorType::RegularFile),
        ]
    );
    HostDirectoryEntryStream::drop(&mut v, listing).unwrap();
}

#[tokio::test]
async fn opened_descriptors_pin_their_version_and_the_root_follows() {
    let mut g = Guest::new();
    let root = g.root();
    let read = DescriptorFlags::READ;
    let old_dir = open(&mut g, &root, ".", OpenFlags::DIRECTORY, read)
        .await
        .unwrap();
    let old_a = open(&mut g, &root, "a", OpenFlags::empty(), read)
        .await
        .unwrap();
    g.content
        .send_replace(snapshot(&[("a", "ONE", 0o644), ("c", "new", 0o644)]));

    let new_a = open(&mut g, &root, "a", OpenFlags::empty(), read)
        .await
        .unwrap();
    assert_eq!(read_all(&mut g, &new_a).await, "ONE");
    assert_eq!(read_all(&mut g, &old_a).await, "one");
    // Through the directory opened before the update: the old version, whole.
    let a = open(&mut g, &old_dir, "a", OpenFlags::empty(), read)
        .await
        .unwrap();
    assert_eq!(read_all(&mut g, &a).await, "one");
    let missing = open(&mut g, &old_dir, "c", OpenFlags::empty(), read).await;
    assert_eq!(code(missing), ErrorCode::NoEntry);
    let mut v = g.view();
    assert!(!v
        .is_same_object(borrow(&old_a), borrow(&new_a))
        .await
        .unwrap());
    assert!(v.is_same_object(borrow(&old_a), borrow(&a)).await.unwrap());
}

#[tokio::test]
async fn open_descriptors_are_bounded_and_released_on_drop() {
    let mut g = Guest::new();
    let root = g.root();
    let mut open_fds = Vec::new();
    // The root counts as one.
    for _ in 1..MAX_OPEN {
        open_fds.push(
            open(
                &mut g,
                &root,
                "a",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .await
            .unwrap(),
        );
    }
    let over = open(
        &mut g,
        &root,
        "a",
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )
    .await;
    assert_eq!(code(over), ErrorCode::InsufficientMemory);
    let fd = open_fds.pop().unwrap();
    HostDescriptor::drop(&mut g.view(), fd).unwrap();
    assert!(open(
        &mut g,
        &root,
        "a",
        OpenFlags::empty(),
        DescriptorFlags::READ
    )
    .await
    .is_ok());
}
