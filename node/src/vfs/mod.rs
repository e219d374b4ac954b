//! The virtual filesystem that ConfigMap, Secret, downwardAPI and projected volumes are
//! for WASI guests: served from memory, so a Secret's bytes never reach the node's disk,
//! and swapped atomically on update.
//!
//! ## Design
//!
//! A guest reaches files only through `wasi:filesystem` (`types` + `preopens`). We link
//! our own host for those two interfaces ([`host::types`], [`host::preopens`]), written
//! against the host traits that `bindgen!` generated in wasmtime-wasi
//! (`wasmtime_wasi::p2::bindings::filesystem`), the same way wasmtime-wasi implements
//! them for its `WasiFilesystemCtxView`. Using wasmtime-wasi's generated traits (instead
//! of a second `bindgen!`) keeps every type the guest sees identical: `descriptor` is
//! still `wasmtime_wasi::filesystem::Descriptor`, streams are wasmtime-wasi-io streams,
//! errors are its `ErrorCode`, so nothing is converted and `wasi:io` works unchanged.
//!
//! Virtual and host-backed directories coexist in the guest's one resource table:
//! - a **host-backed** descriptor (emptyDir, hostPath: real directories preopened through
//!   `WasiCtxBuilder::preopened_dir`) is a `wasmtime_wasi::filesystem::Descriptor` entry;
//!   our host delegates every call on it to wasmtime-wasi's own implementation, which keeps
//!   its capability checks (no `..` escapes, read-only perms).
//! - a **virtual** descriptor is a [`host::VirtualDescriptor`] entry. The handle the guest
//!   holds is typed `Resource<Descriptor>` like any descriptor; each call looks at the
//!   entry's Rust type (`ResourceTable::get_any_mut` + downcast) and serves it from memory.
//!   wasmtime-wasi never sees such a handle: the table would refuse the downcast (a trap,
//!   not undefined behaviour) if it did. Directory listings use the same scheme.
//!
//! ## Versions and atomic updates
//!
//! A mount's content is a [`tree::Snapshot`]: an immutable tree, replaced whole through a
//! `tokio::sync::watch` channel when the ConfigMap/Secret changes (see `crate::volumes`).
//! The preopened root descriptor of a mount is *live*: every path lookup through it uses
//! the newest snapshot. Every descriptor opened from it *pins* the snapshot it was opened
//! in (an `Arc`), like kubelet's `..data` symlink: a guest that opens the directory once
//! and reads several files relative to that descriptor reads them all from one version,
//! and an open file never changes under its reader. Updates need no guest cooperation and
//! no restart; a snapshot is freed when the last descriptor pinning it is closed.
//!
//! Every mount is read-only: mutations fail with `read-only`. WASI preview 2 stat has no
//! permission bits, so `defaultMode`/`mode` show as access: a file whose mode grants no
//! read permission cannot be opened (`access`).
//!
//! ## Limits (guest-controlled sizes)
//! - [`host::MAX_OPEN`] virtual descriptors and listings open at once per guest, since each
//!   may pin an old version in memory;
//! - [`host::MAX_READ`] bytes per `read` call;
//! - [`tree::MAX_PATH`] / [`tree::MAX_NAME`] for paths looked up.

pub mod host;
pub mod tree;

use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::component::HasData;
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;

pub use tree::{Dir, File, Node, Snapshot};

/// The current content of a virtual volume; each update is a new snapshot.
pub type Content = watch::Receiver<Arc<Snapshot>>;

/// A virtual directory the guest sees as a preopen at `guest_path`.
#[derive(Clone)]
pub struct VirtualMount {
    pub guest_path: String,
    pub content: Content,
}

/// The guest's virtual filesystem state, kept in its store beside the WASI context.
#[derive(Default)]
pub struct VfsState {
    pub mounts: Vec<VirtualMount>,
    /// Virtual descriptors and listings currently in the table (bounded by `MAX_OPEN`).
    open: usize,
}

impl VfsState {
    pub fn new(mounts: Vec<VirtualMount>) -> Self {
        VfsState { mounts, open: 0 }
    }
}

/// What our filesystem host works on: wasmtime-wasi's filesystem view (for host-backed
/// descriptors and the shared table) and our state.
pub struct VfsView<'a> {
    pub wasi: WasiFilesystemCtxView<'a>,
    pub state: &'a mut VfsState,
}

/// Marks [`VfsView`] as the data of our `wasi:filesystem` host in `add_to_linker`.
pub struct Vfs;

impl HasData for Vfs {
    type Data<'a> = VfsView<'a>;
}

/// Replaces wasmtime-wasi's `wasi:filesystem/{types,preopens}` in `linker` (which must
/// already hold the rest of WASI) with ours.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> VfsView<'_>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
    linker.allow_shadowing(true);
    types::add_to_linker::<T, Vfs>(linker, view)?;
    preopens::add_to_linker::<T, Vfs>(linker, view)?;
    linker.allow_shadowing(false);
    Ok(())
}
