//! `wasi:filesystem/preopens`: wasmtime-wasi's host-backed preopens, then one live root
//! descriptor per virtual mount.

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::preopens;

use super::{trap, VirtualDescriptor};
use crate::vfs::VfsView;

impl preopens::Host for VfsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let mut dirs = preopens::Host::get_directories(&mut self.host())?;
        let mounts = self.state.mounts.clone();
        for m in mounts {
            let fd = self
                .push(VirtualDescriptor::root(&m.content))
                .map_err(trap)?;
            dirs.push((fd, m.guest_path));
        }
        Ok(dirs)
    }
}
