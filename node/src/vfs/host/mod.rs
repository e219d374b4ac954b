//! Our `wasi:filesystem` host: one module per interface, as in wasmtime-wasi's
//! `p2/host/`. Shared here: the virtual descriptor and the helpers that tell virtual
//! handles from host-backed ones.

pub mod preopens;
pub mod types;

use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::{FsError, FsResult};

use super::tree::{Node, Snapshot, TreeError};
use super::{Content, VfsView};

/// At most this many virtual descriptors and directory listings open at once per guest:
/// each may pin an old snapshot in memory.
pub const MAX_OPEN: usize = 1024;
/// Largest `read` one call returns, in bytes (as wasmtime-wasi's host files).
pub const MAX_READ: usize = 64 * 1024;

/// A descriptor of a virtual mount. `live` is set on a mount's preopened root, which
/// follows updates; any other descriptor pins the snapshot it was opened in.
#[derive(Clone)]
pub struct VirtualDescriptor {
    live: Option<Content>,
    snapshot: Arc<Snapshot>,
    node: Node,
}

impl VirtualDescriptor {
    fn root(content: &Content) -> Self {
        let snapshot = content.borrow().clone();
        VirtualDescriptor {
            live: Some(content.clone()),
            node: snapshot.root.clone(),
            snapshot,
        }
    }

    /// The snapshot and node this descriptor stands for now.
    fn current(&self) -> (Arc<Snapshot>, Node) {
        match &self.live {
            Some(content) => {
                let s = content.borrow().clone();
                let root = s.root.clone();
                (s, root)
            }
            None => (self.snapshot.clone(), self.node.clone()),
        }
    }
}

/// A directory listing of a virtual directory, taken at `read-directory`.
pub struct VirtualReaddir(
    std::vec::IntoIter<wasmtime_wasi::p2::bindings::filesystem::types::DirectoryEntry>,
);

impl From<TreeError> for ErrorCode {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::NoEntry => ErrorCode::NoEntry,
            TreeError::NotDirectory => ErrorCode::NotDirectory,
            TreeError::Escapes => ErrorCode::NotPermitted,
            TreeError::NameTooLong => ErrorCode::NameTooLong,
            TreeError::Conflict => ErrorCode::Io,
        }
    }
}

impl VfsView<'_> {
    /// wasmtime-wasi's view, for delegating host-backed descriptors.
    fn host(&mut self) -> WasiFilesystemCtxView<'_> {
        WasiFilesystemCtxView {
            ctx: &mut *self.wasi.ctx,
            table: &mut *self.wasi.table,
        }
    }

    /// The virtual descriptor behind `fd`, or `None` when it is host-backed.
    fn virtual_fd(&mut self, fd: &Resource<Descriptor>) -> FsResult<Option<VirtualDescriptor>> {
        let entry = self.wasi.table.get_any_mut(fd.rep())?;
        Ok(entry.downcast_ref::<VirtualDescriptor>().cloned())
    }

    fn is_virtual(&mut self, fd: &Resource<Descriptor>) -> FsResult<bool> {
        Ok(self.virtual_fd(fd)?.is_some())
    }

    /// Counts one more open virtual resource, refusing past [`MAX_OPEN`].
    fn reserve(&mut self) -> FsResult<()> {
        if self.state.open >= MAX_OPEN {
            return Err(ErrorCode::InsufficientMemory.into());
        }
        self.state.open += 1;
        Ok(())
    }

    fn release(&mut self) {
        self.state.open = self.state.open.saturating_sub(1);
    }

    /// Puts a virtual descriptor in the table under a `descriptor` handle.
    fn push(&mut self, d: VirtualDescriptor) -> FsResult<Resource<Descriptor>> {
        self.reserve()?;
        let r = self.wasi.table.push(d)?;
        Ok(Resource::new_own(r.rep()))
    }
}

/// An error where the interface allows only a trap (e.g. a bad handle in `drop`).
fn trap(e: FsError) -> wasmtime::Error {
    e.downcast()
        .map_or_else(|e| e, |code| wasmtime::Error::msg(format!("{code:?}")))
}

#[cfg(test)]
mod tests;
