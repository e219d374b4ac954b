//! WASI components run in-process by wasmtime.
//!
//! One [`wasmtime::Engine`] per node, configured for many short-lived instances:
//! - **component model + WASI preview 2** (`wasi:cli/command`), no network (TCP, UDP
//!   and name lookup are denied); the only files a guest sees are its pod's volumes, each
//!   a preopen: host directories (emptyDir, hostPath) through wasmtime-wasi, virtual
//!   ones (ConfigMap, Secret, ...) through our `wasi:filesystem` host ([`crate::vfs`]);
//! - **pooling allocator** with copy-on-write memory images, so instantiation is
//!   mostly bookkeeping: slots are reserved up front (see [`WasmConfig`]);
//! - **epoch interruption**: a thread bumps the epoch every [`WasmConfig::epoch_tick`],
//!   and every store yields to the executor when its deadline (one tick) passes.
//!   A busy guest therefore returns to tokio every ~10 ms, which is what lets
//!   [`RunningContainer::stop`] interrupt it: the stop drops the guest's future.
//!
//! Components are compiled once per node and cached on disk by layer digest
//! (`<cache_dir>/sha256-<hex>.cwasm`), then kept in memory pre-linked as a
//! [`CommandPre`] (an `InstancePre`) per digest, so [`Runtime::start`] is
//! "new store + instantiate + spawn `run`".
//!
//! Each run is metered ([`super::guest_meter`]): its CPU time and the size of its memories
//! and tables, listed by [`WasmRuntime::guests`] while it runs.
//!
//! Exit mapping: `run` returning `ok` -> 0; `err` -> 1; `wasi:cli/exit` with a code ->
//! that code (`exit(err)` is 1); a trap -> 134 (128 + SIGABRT, as the wasmtime CLI
//! reports traps), reason `Error` with the trap and its wasm backtrace as message;
//! stopped by us -> 137, `Killed`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use super::guest_meter::{CpuTimed, GuestMeter, MemoryMeter};
use super::{
    ContainerConfig, ContainerUsage, ExitStatus, MountSource, RunningContainer, Runtime,
    RuntimeError,
};
use crate::images::ResolvedImage;
use crate::logs::{Stream, StreamWriter};
use crate::vfs::{self, VfsState, VfsView, VirtualMount};

/// Exit code for a trapped guest: 128 + SIGABRT, what the wasmtime CLI reports.
pub const TRAP_EXIT_CODE: i32 = 134;

/// Kubernetes caps `terminationMessage` at 4096 bytes; a trap message is one.
const MAX_MESSAGE: usize = 4096;

/// Engine sizing. The defaults suit the node this was written on (2 cores,
/// 24 GiB): at most 1000 guests at once, each with at most 1 GiB of linear memory.
/// Memory slots are virtual reservations (4 GiB + guard each, for bounds-check-free
/// code), not committed RAM: 1000 slots take ~4 TiB of the 128 TiB x86-64 address
/// space and nothing else until a guest touches its pages.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Component instances (one per running container) the pool has room for.
    pub max_instances: u32,
    /// Largest linear memory of one guest, in bytes.
    pub max_memory_bytes: usize,
    /// How often the epoch advances; also a busy guest's time slice.
    pub epoch_tick: Duration,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            max_instances: 1000,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// What one store holds: the guest's WASI context and resource table, its virtual
/// mounts, and the limiter that counts its memory.
pub struct GuestState {
    wasi: Wasi,
    vfs: VfsState,
    memory: MemoryMeter,
}

/// A separate struct so that the virtual filesystem's view can borrow it beside `vfs`.
struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Wasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

impl GuestState {
    fn vfs(&mut self) -> VfsView<'_> {
        VfsView {
            wasi: self.wasi.filesystem(),
            state: &mut self.vfs,
        }
    }
}

/// How many components were compiled and how many were loaded from the disk cache,
/// since this runtime was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub compiled: u64,
    pub loaded_from_cache: u64,
}

/// Timings of repeated instantiations of one prepared component.
#[derive(Debug, Clone)]
pub struct InstantiationTimes {
    /// `Store::new` + `instantiate_async` (what `start` pays before spawning).
    pub with_store: Vec<Duration>,
}

impl InstantiationTimes {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut v = self.with_store.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i]
    }
}

#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<GuestState>,
    cache_dir: PathBuf,
    /// Per layer digest; the cell makes concurrent prepares of one image compile once.
    prepared: Mutex<HashMap<String, Arc<OnceCell<CommandPre<GuestState>>>>>,
    compiled: AtomicU64,
    loaded_from_cache: AtomicU64,
    /// The guests running now, by container run id.
    running: Mutex<HashMap<String, RunningGuest>>,
    _ticker: EpochTicker,
}

struct RunningGuest {
    pod_uid: String,
    name: String,
    meter: Arc<GuestMeter>,
}

/// Keeps a run in [`Inner::running`] until dropped (its exit, or a failed start).
struct Registration {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.running_guests().remove(&self.id);
    }
}

impl WasmRuntime {
    /// A runtime with the default [`WasmConfig`], caching compiled components in
    /// `cache_dir` (created if missing).
    pub fn new(cache_dir: &Path) -> Result<Self, RuntimeError> {
        Self::with_config(cache_dir, WasmConfig::default())
    }

    pub fn with_config(cache_dir: &Path, cfg: WasmConfig) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| RuntimeError::Cache {
            path: cache_dir.to_owned(),
            source,
        })?;

        let n = cfg.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            // A Rust wasip2 command is its main module plus wit-component's shim
            // and fixup modules: 3 core instances and 2 tables; 4 and 3 leave room
            // for components from other toolchains.
            .total_core_instances(n.saturating_mul(4))
            .total_tables(n.saturating_mul(3))
            .total_memories(n)
            // One fiber stack per running `run` call.
            .total_stacks(n)
            .max_memory_size(cfg.max_memory_bytes);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(chain(&e)))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| vfs::add_to_linker(&mut linker, GuestState::vfs))
            .map_err(|e| RuntimeError::Engine(chain(&e)))?;

        let ticker = EpochTicker::start(engine.clone(), cfg.epoch_tick);
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache_dir: cache_dir.to_owned(),
                prepared: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
                loaded_from_cache: AtomicU64::new(0),
                running: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            loaded_from_cache: self.inner.loaded_from_cache.load(Ordering::Relaxed),
        }
    }

    /// The usage of every guest running now.
    pub fn guests(&self) -> Vec<ContainerUsage> {
        self.inner
            .running_guests()
            .iter()
            .map(|(id, g)| ContainerUsage {
                id: id.clone(),
                pod_uid: g.pod_uid.clone(),
                name: g.name.clone(),
                cpu_ns: g.meter.cpu_ns(),
                memory_bytes: g.meter.memory_bytes(),
            })
            .collect()
    }

    /// Where the compiled form of the layer `digest` is cached.
    pub fn cache_path(&self, digest: &str) -> PathBuf {
        self.inner.cache_path(digest)
    }

    async fn command_pre(
        &self,
        image: &ResolvedImage,
    ) -> Result<CommandPre<GuestState>, RuntimeError> {
        let Some((digest, path)) = image.wasm_layer.clone() else {
            return Err(RuntimeError::NotWasm {
                reference: image.reference.clone(),
            });
        };
        let cell = {
            let mut prepared = self
                .inner
                .prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            prepared.entry(digest.clone()).or_default().clone()
        };
        let pre = cell
            .get_or_try_init(|| {
                let inner = self.inner.clone();
                async move {
                    // Compiling is seconds of CPU; deserializing is file I/O.
                    tokio::task::spawn_blocking(move || inner.load(&digest, &path))
                        .await
                        .map_err(|e| RuntimeError::Other(format!("prepare task failed: {e}")))?
                }
            })
            .await?;
        Ok(pre.clone())
    }

    /// Instantiates the prepared `image` `runs` times without running it, timing
    /// store creation + instantiation: the fixed cost of every container start.
    pub async fn measure_instantiation(
        &self,
        image: &ResolvedImage,
        runs: usize,
    ) -> Result<InstantiationTimes, RuntimeError> {
        let pre = self.command_pre(image).await?;
        let mut with_store = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let mut store = self.inner.new_store(
                WasiCtx::builder().arg("bench").build(),
                VfsState::default(),
                MemoryMeter::new(Arc::default(), None),
            );
            let command = pre.instantiate_async(&mut store).await;
            with_store.push(t.elapsed());
            command.map_err(|e| RuntimeError::Instantiate {
                id: "bench".into(),
                message: chain(&e),
            })?;
        }
        Ok(InstantiationTimes { with_store })
    }
}

impl Inner {
    fn running_guests(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningGuest>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache_path(&self, digest: &str) -> PathBuf {
        let name: String = digest
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.cache_dir.join(format!("{name}.cwasm"))
    }

    /// Loads the component from the disk cache, or compiles and caches it, then
    /// links it against WASI.
    fn load(&self, digest: &str, layer: &Path) -> Result<CommandPre<GuestState>, RuntimeError> {
        let cache = self.cache_path(digest);
        let component = match self.load_cached(&cache) {
            Some(c) => {
                self.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = self.compile(digest, layer)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                // A failed cache write costs a recompile next time, nothing more.
                if let Err(e) = c
                    .serialize()
                    .map_err(|e| chain(&e))
                    .and_then(|bytes| write_atomic(&cache, &bytes).map_err(|e| e.to_string()))
                {
                    tracing::warn!(path = %cache.display(), error = %e, "cannot cache compiled component");
                }
                c
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(CommandPre::new)
            .map_err(|e| RuntimeError::Link {
                digest: digest.to_owned(),
                message: chain(&e),
            })?;
        Ok(pre)
    }

    fn load_cached(&self, cache: &Path) -> Option<Component> {
        match wasmtime::Engine::detect_precompiled_file(cache) {
            Ok(Some(wasmtime::Precompiled::Component)) => {}
            Ok(_) => return None,
            Err(_) => return None,
        }
        // SAFETY: `deserialize_file` maps the file and runs its machine code, so it
        // must be an artifact that wasmtime produced and nobody altered since. It is:
        // the file is named by the layer's digest, in a cache directory that only
        // this node agent writes, and we wrote it ourselves with
        // `Component::serialize` (through a temporary file and a rename, so it is
        // never seen half-written). wasmtime itself rejects artifacts from another
        // wasmtime version or an incompatible engine configuration; that error makes
        // us recompile below instead of trusting the file.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(&self.engine, cache) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %cache.display(), error = %chain(&e), "ignoring stale compile cache entry");
                None
            }
        }
    }

    fn compile(&self, digest: &str, layer: &Path) -> Result<Component, RuntimeError> {
        let bytes = std::fs::read(layer).map_err(|source| RuntimeError::Layer {
            digest: digest.to_owned(),
            source,
        })?;
        // The machine code we cache is trusted from here on, so the input must be
        // exactly the blob the image names.
        let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
        if actual != digest {
            return Err(RuntimeError::DigestMismatch {
                digest: digest.to_owned(),
                actual,
            });
        }
        Component::new(&self.engine, &bytes).map_err(|e| RuntimeError::Compile {
            digest: digest.to_owned(),
            message: chain(&e),
        })
    }

    fn new_store(&self, ctx: WasiCtx, vfs: VfsState, memory: MemoryMeter) -> Store<GuestState> {
        let mut store = Store::new(
            &self.engine,
            GuestState {
                wasi: Wasi {
                    ctx,
                    table: ResourceTable::new(),
                },
                vfs,
                memory,
            },
        );
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

impl Runtime for WasmRuntime {
    fn prepare<'a>(&'a self, image: &'a ResolvedImage) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.command_pre(image).await.map(drop) })
    }

    fn start<'a>(
        &'a self,
        image: &'a ResolvedImage,
        config: ContainerConfig,
    ) -> BoxFuture<'a, Result<RunningContainer, RuntimeError>> {
        Box::pin(async move {
            let pre = self.command_pre(image).await?;
            let ContainerConfig {
                id,
                pod_uid,
                name,
                argv,
                env,
                log,
                mounts,
                network,
                memory_limit,
            } = config;

            let mut wasi = WasiCtx::builder();
            wasi.args(&argv)
                .envs(&env)
                .stdout(LogOutput(log.stream(Stream::Stdout)))
                .stderr(LogOutput(log.stream(Stream::Stderr)))
                .allow_tcp(network)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
            if network {
                wasi.inherit_network();
            }
            let mut virtual_mounts = Vec::new();
            for m in mounts {
                match m.source {
                    MountSource::Host { path, read_only } => {
                        let perms = if read_only {
                            FsPerms::ReadOnly
                        } else {
                            FsPerms::ReadWrite
                        };
                        wasi.preopened_dir(&path, &m.guest_path, perms)
                            .map_err(|e| RuntimeError::Mount {
                                path,
                                guest_path: m.guest_path.clone(),
                                message: chain(&e),
                            })?;
                    }
                    MountSource::Virtual(content) => virtual_mounts.push(VirtualMount {
                        guest_path: m.guest_path,
                        content,
                    }),
                }
            }
            let meter = Arc::new(GuestMeter::default());
            self.inner.running_guests().insert(
                id.clone(),
                RunningGuest {
                    pod_uid,
                    name,
                    meter: meter.clone(),
                },
            );
            let registration = Registration {
                inner: self.inner.clone(),
                id: id.clone(),
            };
            let mut store = self.inner.new_store(
                wasi.build(),
                VfsState::new(virtual_mounts),
                MemoryMeter::new(meter.clone(), memory_limit),
            );
            let command =
                pre.instantiate_async(&mut store)
                    .await
                    .map_err(|e| RuntimeError::Instantiate {
                        id: id.clone(),
                        message: chain(&e),
                    })?;

            let (handle, mut task) = RunningContainer::new(id, Utc::now());
            // The task is owned through `handle`: it ends when the guest exits or
            // when every handle is dropped (a stop), never on its own.
            tokio::spawn(async move {
                let status = tokio::select! {
                    result = CpuTimed::new(command.wasi_cli_run().call_run(&mut store), meter) => {
                        if store.data().memory.over_limit() {
                            ExitStatus::oom_killed()
                        } else {
                            exit_status(result)
                        }
                    }
                    // The guest yields at least every epoch tick, so this branch is
                    // polled promptly even while it computes; dropping the `run`
                    // future here abandons the guest mid-execution.
                    _ = task.stop_requested() => ExitStatus::killed(),
                };
                // Returns the instance's slots to the pool before anyone is told.
                drop(store);
                drop(registration);
                if let Err(e) = log.close() {
                    tracing::warn!(path = %log.path().display(), error = %e, "closing container log");
                }
                task.exited(status);
            });
            Ok(handle)
        })
    }
}

fn exit_status(result: wasmtime::Result<Result<(), ()>>) -> ExitStatus {
    match result {
        Ok(Ok(())) => ExitStatus::exited(0),
        Ok(Err(())) => ExitStatus::exited(1),
        Err(e) => {
            if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
                return ExitStatus::exited(*code);
            }
            let mut message = format!("{e:?}");
            if message.len() > MAX_MESSAGE {
                let mut end = MAX_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            let code = if e.downcast_ref::<wasmtime::Trap>().is_some() {
                TRAP_EXIT_CODE
            } else {
                1
            };
            ExitStatus::error(code, message)
        }
    }
}

fn chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Same discipline as the image store: temp file in the same directory + rename,
/// so a concurrent `deserialize_file` never maps a half-written artifact.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Advances the engine's epoch every tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A guest's stdout or stderr, written into the container's CRI log.
///
/// Writes go straight to the log file from the guest's call (a short blocking
/// append, like wasmtime-wasi's own `OutputFile`), so output is in the log by the
/// time the guest's write returns and nothing is lost when it is killed.
#[derive(Clone)]
struct LogOutput(StreamWriter);

/// Largest write a guest may make in one call; WASI's `blocking-write-and-flush`
/// splits bigger buffers.
const WRITE_BUDGET: usize = 64 * 1024;

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0
            .write_all(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LogOutput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
