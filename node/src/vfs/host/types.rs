//! `wasi:filesystem/types`: virtual descriptors served from their snapshot, host-backed
//! ones delegated to wasmtime-wasi.

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode, Filesize,
    HostDescriptor, HostDirectoryEntryStream, MetadataHashValue, NewTimestamp, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, FsError, FsResult, ReaddirIterator};

use super::{trap, VirtualDescriptor, VirtualReaddir, MAX_READ};
use crate::vfs::tree::Node;
use crate::vfs::VfsView;

fn read_only<T>() -> FsResult<T> {
    Err(ErrorCode::ReadOnly.into())
}

/// Methods that change something: refused on a virtual descriptor, delegated otherwise.
macro_rules! read_only_if_virtual {
    ($(async fn $name:ident(&mut self, fd: Resource<Descriptor> $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            async fn $name(&mut self, fd: Resource<Descriptor> $(, $arg: $ty)*) -> $ret {
                if self.is_virtual(&fd)? {
                    return read_only();
                }
                HostDescriptor::$name(&mut self.host(), fd $(, $arg)*).await
            }
        )*
    };
}

impl types::Host for VfsView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.host(), err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.host(), err)
    }
}

fn stat_of(d: &VirtualDescriptor) -> DescriptorStat {
    let (snapshot, node) = d.current();
    node_stat(&node, snapshot.at)
}

fn node_stat(node: &Node, at: std::time::SystemTime) -> DescriptorStat {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let time = Some(Datetime {
        seconds: since.as_secs(),
        nanoseconds: since.subsec_nanos(),
    });
    DescriptorStat {
        type_: descriptor_type(node),
        link_count: 1,
        size: node.size(),
        data_access_timestamp: time,
        data_modification_timestamp: time,
        status_change_timestamp: time,
    }
}

fn descriptor_type(node: &Node) -> DescriptorType {
    match node {
        Node::Dir(_) => DescriptorType::Directory,
        Node::File(_) => DescriptorType::RegularFile,
    }
}

fn metadata_hash(node: &Node) -> MetadataHashValue {
    // Distinct nodes are distinct `Arc`s while both are alive, which is what the hash
    // promises (same object <=> same hash, among live descriptors).
    MetadataHashValue {
        lower: node.id() as u64,
        upper: node.size(),
    }
}

impl HostDescriptor for VfsView<'_> {
    read_only_if_virtual! {
        async fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()>;
        async fn set_times(&mut self, fd: Resource<Descriptor>, atim: NewTimestamp, mtim: NewTimestamp) -> FsResult<()>;
        async fn write(&mut self, fd: Resource<Descriptor>, buf: Vec<u8>, offset: Filesize) -> FsResult<Filesize>;
        async fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()>;
        async fn set_times_at(&mut self, fd: Resource<Descriptor>, path_flags: PathFlags, path: String, atim: NewTimestamp, mtim: NewTimestamp) -> FsResult<()>;
        async fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()>;
        async fn symlink_at(&mut self, fd: Resource<Descriptor>, src_path: String, dest_path: String) -> FsResult<()>;
        async fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()>;
    }

    async fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        if self.is_virtual(&fd)? {
            return Ok(());
        }
        HostDescriptor::advise(&mut self.host(), fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        if self.is_virtual(&fd)? {
            return Ok(());
        }
        HostDescriptor::sync_data(&mut self.host(), fd).await
    }

    async fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        if self.is_virtual(&fd)? {
            return Ok(());
        }
        HostDescriptor::sync(&mut self.host(), fd).await
    }

    async fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        if self.is_virtual(&fd)? {
            return Ok(DescriptorFlags::READ);
        }
        HostDescriptor::get_flags(&mut self.host(), fd).await
    }

    async fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        match self.virtual_fd(&fd)? {
            Some(d) => Ok(descriptor_type(&d.current().1)),
            None => HostDescriptor::get_type(&mut self.host(), fd).await,
        }
    }

    async fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::read(&mut self.host(), fd, len, offset).await;
        };
        let Node::File(f) = d.current().1 else {
            return Err(ErrorCode::BadDescriptor.into());
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(f.data.len());
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_READ);
        let end = start.saturating_add(len).min(f.data.len());
        // Like wasmtime-wasi's files: end of stream only when nothing was read.
        Ok((f.data[start..end].to_vec(), start == end))
    }

    async fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<ReaddirIterator>> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::read_directory(&mut self.host(), fd).await;
        };
        let Node::Dir(dir) = d.current().1 else {
            return Err(ErrorCode::NotDirectory.into());
        };
        let entries: Vec<DirectoryEntry> = dir
            .entries
            .iter()
            .map(|(name, node)| DirectoryEntry {
                type_: descriptor_type(node),
                name: name.clone(),
            })
            .collect();
        self.reserve()?;
        let r = self.wasi.table.push(VirtualReaddir(entries.into_iter()))?;
        Ok(Resource::new_own(r.rep()))
    }

    async fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        match self.virtual_fd(&fd)? {
            Some(d) => Ok(stat_of(&d)),
            None => HostDescriptor::stat(&mut self.host(), fd).await,
        }
    }

    async fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::stat_at(&mut self.host(), fd, path_flags, path).await;
        };
        let (snapshot, node) = d.current();
        let found = node.resolve(&path).map_err(ErrorCode::from)?;
        Ok(node_stat(&found, snapshot.at))
    }

    async fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        if self.is_virtual(&fd)? || self.is_virtual(&new_descriptor)? {
            return read_only();
        }
        HostDescriptor::link_at(
            &mut self.host(),
            fd,
            old_path_flags,
            old_path,
            new_descriptor,
            new_path,
        )
        .await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        if self.is_virtual(&fd)? || self.is_virtual(&new_fd)? {
            return read_only();
        }
        HostDescriptor::rename_at(&mut self.host(), fd, old_path, new_fd, new_path).await
    }

    async fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::open_at(&mut self.host(), fd, path_flags, path, oflags, flags)
                .await;
        };
        // The lookup and the new descriptor use one snapshot: the newest one when `fd`
        // is a live root, else the one `fd` pinned.
        let (snapshot, node) = d.current();
        let found = match node.resolve(&path) {
            Ok(found) => found,
            Err(_) if oflags.contains(OpenFlags::CREATE) => return read_only(),
            Err(e) => return Err(ErrorCode::from(e).into()),
        };
        if oflags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE) {
            return Err(ErrorCode::Exist.into());
        }
        match &found {
            Node::File(f) => {
                if oflags.contains(OpenFlags::DIRECTORY) {
                    return Err(ErrorCode::NotDirectory.into());
                }
                if flags.contains(DescriptorFlags::WRITE) || oflags.contains(OpenFlags::TRUNCATE) {
                    return read_only();
                }
                if f.mode & 0o444 == 0 {
                    return Err(ErrorCode::Access.into());
                }
            }
            Node::Dir(_) => {
                if flags.contains(DescriptorFlags::WRITE) {
                    return Err(ErrorCode::IsDirectory.into());
                }
            }
        }
        self.push(VirtualDescriptor {
            live: None,
            snapshot,
            node: found,
        })
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        if self.is_virtual(&fd).map_err(trap)? {
            self.wasi
                .table
                .delete(Resource::<VirtualDescriptor>::new_own(fd.rep()))?;
            self.release();
            return Ok(());
        }
        HostDescriptor::drop(&mut self.host(), fd)
    }

    async fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::readlink_at(&mut self.host(), fd, path).await;
        };
        // There are no symlinks in a virtual tree: an existing path is "not a link".
        d.current().1.resolve(&path).map_err(ErrorCode::from)?;
        Err(ErrorCode::Invalid.into())
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::read_via_stream(&mut self.host(), fd, offset);
        };
        let Node::File(f) = d.current().1 else {
            return Err(ErrorCode::IsDirectory.into());
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(f.data.len());
        // `Bytes::slice` shares the snapshot's buffer: no copy until the guest reads.
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(f.data.slice(start..)));
        Ok(self.wasi.table.push(stream)?)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        if self.is_virtual(&fd)? {
            return read_only();
        }
        HostDescriptor::write_via_stream(&mut self.host(), fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        if self.is_virtual(&fd)? {
            return read_only();
        }
        HostDescriptor::append_via_stream(&mut self.host(), fd)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        let va = self.virtual_fd(&a).map_err(trap)?;
        let vb = self.virtual_fd(&b).map_err(trap)?;
        match (va, vb) {
            (Some(x), Some(y)) => Ok(x.current().1.id() == y.current().1.id()),
            (None, None) => HostDescriptor::is_same_object(&mut self.host(), a, b).await,
            _ => Ok(false),
        }
    }

    async fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        match self.virtual_fd(&fd)? {
            Some(d) => Ok(metadata_hash(&d.current().1)),
            None => HostDescriptor::metadata_hash(&mut self.host(), fd).await,
        }
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        let Some(d) = self.virtual_fd(&fd)? else {
            return HostDescriptor::metadata_hash_at(&mut self.host(), fd, path_flags, path).await;
        };
        let found = d.current().1.resolve(&path).map_err(ErrorCode::from)?;
        Ok(metadata_hash(&found))
    }
}

impl HostDirectoryEntryStream for VfsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<ReaddirIterator>,
    ) -> FsResult<Option<DirectoryEntry>> {
        let entry = self.wasi.table.get_any_mut(stream.rep())?;
        match entry.downcast_mut::<VirtualReaddir>() {
            Some(listing) => Ok(listing.0.next()),
            None => HostDirectoryEntryStream::read_directory_entry(&mut self.host(), stream).await,
        }
    }

    fn drop(&mut self, stream: Resource<ReaddirIterator>) -> wasmtime::Result<()> {
        if self
            .wasi
            .table
            .get_any_mut(stream.rep())?
            .is::<VirtualReaddir>()
        {
            self.wasi
                .table
                .delete(Resource::<VirtualReaddir>::new_own(stream.rep()))?;
            self.release();
            return Ok(());
        }
        HostDirectoryEntryStream::drop(&mut self.host(), stream)
    }
}
